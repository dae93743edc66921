//! `runner recompute`: a past range re-aggregated with the current plugin,
//! only that range, resumable after a kill.

use std::time::{Duration, Instant};

use chrono::NaiveDate;

use crate::util::{TestDb, config_with_own_plugins, job, plugins_dir, run_ok, runner, text, variant, vitals_version};

#[tokio::test]
async fn recompute_rewrites_only_the_range_and_resumes_after_a_kill() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    runner::db::seed::vitals(&db.client, 40, 4, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()).await.unwrap();
    run_ok(&config, &["run", "--once"]).await;
    let v1 = vitals_version(&std::fs::read(plugins.join("vitals.wasm")).unwrap());

    // A new plugin build; recompute two of the four days with it.
    let v2_bytes = variant(&std::fs::read(plugins_dir().join("vitals.wasm")).unwrap(), "v2");
    std::fs::write(plugins.join("vitals.wasm"), &v2_bytes).unwrap();
    let v2 = vitals_version(&v2_bytes);
    let args = ["recompute", "--job", "vitals", "--from", "2024-01-02", "--to", "2024-01-03", "--batch", "7"];
    let out = text(&run_ok(&config, &args).await);
    assert!(out.contains("Job vitals from 2024-01-02 to 2024-01-03 with "), "{out}");
    assert!(out.contains(": 80 groups recomputed, 0 emptied (no input left: daily rows deleted), 0 failed."), "{out}");
    let by_day = "SELECT count(DISTINCT (user_id, day)) FROM vitals_daily WHERE plugin_version = ";
    assert_eq!(db.count(&format!("{by_day}'{v2}' AND day IN ('2024-01-02', '2024-01-03')")).await, 80);
    assert_eq!(db.count(&format!("{by_day}'{v1}' AND day IN ('2024-01-01', '2024-01-04')")).await, 80);
    assert_eq!(db.count(&format!("{by_day}'{v1}' AND day IN ('2024-01-02', '2024-01-03')")).await, 0);
    let again = text(&run_ok(&config, &args).await);
    assert!(again.contains("already recomputed"), "{again}");

    // The whole range in tiny batches, killed part-way, then resumed.
    let all = ["recompute", "--job", "vitals", "--from", "2024-01-01", "--to", "2024-01-04", "--batch", "1"];
    let mut child = runner(&config, &all).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let progress = "SELECT coalesce(max(groups_done), 0) FROM runner_recompute_progress WHERE from_day = '2024-01-01'";
    while db.count(progress).await < 5 {
        assert!(Instant::now() < deadline, "no progress recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let done_before = db.count(progress).await;
    assert!(done_before < 160, "finished before the kill");
    let out = text(&run_ok(&config, &all).await);
    assert!(out.contains(&format!("Resumed after {done_before} groups")), "{out}");
    assert_eq!(db.count(&format!("{by_day}'{v2}'")).await, 160);
    assert_eq!(db.count("SELECT count(*) FROM runner_recompute_progress WHERE finished_at IS NOT NULL").await, 2);
    assert_eq!(db.count(crate::util::QUEUED).await, 0);
}

#[tokio::test]
async fn recompute_empties_days_without_input_follows_versions_and_retries_failures() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    runner::db::seed::vitals(&db.client, 6, 2, NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()).await.unwrap();
    run_ok(&config, &["run", "--once"]).await;
    let range = ["recompute", "--job", "vitals", "--from", "2024-02-01", "--to", "2024-02-02"];

    // User 2's first day lost all its input: recompute deletes its daily rows.
    db.client.batch_execute("DELETE FROM vitals_raw WHERE user_id = 2 AND recorded_at < '2024-02-02'").await.unwrap();
    // And user 4's writes are refused for now.
    db.client
        .batch_execute(
            "CREATE FUNCTION refuse_4() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.user_id = 4 THEN RAISE EXCEPTION 'user 4 is frozen'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER refuse_4 BEFORE INSERT OR UPDATE ON vitals_daily FOR EACH ROW EXECUTE FUNCTION refuse_4();",
        )
        .await
        .unwrap();
    let out = runner(&config, &range).output().await.unwrap();
    let first = text(&out);
    assert_eq!(out.status.code(), Some(1), "{first}");
    assert!(first.contains("9 groups recomputed, 1 emptied (no input left: daily rows deleted), 2 failed."), "{first}");
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 2 AND day = '2024-02-01'").await, 0);

    // A rerun retries only the failed groups, which now succeed.
    db.client.batch_execute("DROP TRIGGER refuse_4 ON vitals_daily").await.unwrap();
    let second = text(&run_ok(&config, &range).await);
    assert!(second.contains("Retried the groups an earlier run of this range could not do."), "{second}");
    assert!(
        second.contains("2 groups recomputed, 0 emptied (no input left: daily rows deleted), 0 failed."),
        "{second}"
    );
    let third = text(&run_ok(&config, &range).await);
    assert!(third.contains("already recomputed"), "{third}");

    // A new plugin version: the same range is not "already done" for it.
    let v2_bytes = variant(&std::fs::read(plugins_dir().join("vitals.wasm")).unwrap(), "v2");
    std::fs::write(plugins.join("vitals.wasm"), &v2_bytes).unwrap();
    let fourth = text(&run_ok(&config, &range).await);
    assert!(fourth.contains("11 groups recomputed, 0 emptied"), "{fourth}");
    let v2 = vitals_version(&v2_bytes);
    assert_eq!(db.count(&format!("SELECT count(*) FROM vitals_daily WHERE plugin_version <> '{v2}'")).await, 0);
}

#[tokio::test]
async fn a_recompute_that_changes_nothing_writes_nothing_and_a_correction_rewrites_its_group_only() {
    let db = TestDb::new().await;
    let (_dir, config, _plugins) =
        config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    runner::db::seed::vitals(&db.client, 10, 2, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()).await.unwrap();
    run_ok(&config, &["run", "--once"]).await;
    // Each daily row's physical version: a rewrite, even of equal values, changes it.
    let versions = "SELECT string_agg(user_id || '/' || day || '/' || metric || '@' || xmin::text, ',' ORDER BY user_id, day, metric) FROM vitals_daily";
    let written = || async { db.client.query_one(versions, &[]).await.unwrap().get::<_, String>(0) };
    let before = written().await;
    let args = ["recompute", "--job", "vitals", "--from", "2024-01-01", "--to", "2024-01-02", "--restart"];
    let out = text(&run_ok(&config, &args).await);
    assert!(out.contains(": 20 groups recomputed"), "{out}");
    assert_eq!(written().await, before, "equal results rewrote rows");

    // A correction: only its group's changed rows are written.
    db.client
        .execute(
            "UPDATE vitals_raw SET value = value + 1 WHERE id = (SELECT min(id) FROM vitals_raw WHERE user_id = 3 AND metric = 'heart_rate' AND recorded_at < '2024-01-02')",
            &[],
        )
        .await
        .unwrap();
    run_ok(&config, &["run", "--once"]).await;
    let after = written().await;
    let changed: Vec<&str> = after
        .split(',')
        .zip(before.split(','))
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.split('@').next().unwrap())
        .collect();
    assert_eq!(changed, ["3/2024-01-01/heart_rate"], "only the corrected metric's row is rewritten");
}

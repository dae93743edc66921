//! Deploying with confidence: `runner plugin diff` previews what a new
//! plugin would change, and `recompute_after_deploy` makes past days
//! follow a deploy.

use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};

use crate::util::{
    Daemon, TestDb, config_with_own_plugins, daily_text, deploy, job, migrated, plugins_dir, run_ok, runner, text,
    variant, vitals_version, wait_count,
};

async fn reading(db: &TestDb, user: i64, at: &str, metric: &str, value: f64) {
    db.client
        .execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, $2::text::timestamptz, $3, $4, 'bpm')",
            &[&user, &at, &metric, &value],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn diff_shows_nothing_for_a_rebuild_and_exactly_the_rows_a_changed_rule_touches() {
    let db = TestDb::new().await;
    let (dir, config) = migrated(&db, &job("diffy", "diffy.wasm", "")).await;
    for user in 1..=5 {
        reading(&db, user, "2024-06-01 08:00Z", "heart_rate", 60.0).await;
        reading(&db, user, "2024-06-01 09:00Z", "heart_rate", 80.0).await;
        reading(&db, user, "2024-06-01 09:00Z", "spo2", 97.0).await;
    }
    reading(&db, 3, "2024-06-01 10:00Z", "heart_rate", 150.0).await; // changed: 3 readings -> 2
    reading(&db, 4, "2024-06-02 10:00Z", "heart_rate", 150.0).await; // removed: its only reading
    run_ok(&config, &["run", "--once"]).await;
    let before = daily_text(&db.client, "vitals_daily").await;
    let range = ["--job", "diffy", "--from", "2024-06-01", "--to", "2024-06-02", "--fail-on-diff"];

    // The same logic rebuilt (another hash): no difference.
    let rebuilt = dir.path().join("rebuilt.wasm");
    std::fs::write(&rebuilt, variant(&std::fs::read(plugins_dir().join("diffy.wasm")).unwrap(), "rebuild")).unwrap();
    let out =
        runner(&config, &[&["plugin", "diff", rebuilt.to_str().unwrap()][..], &range].concat()).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("groups compared: 6, differing: 0") && text(&out).contains("no difference"),
        "{}",
        text(&out)
    );

    // One changed rule: exactly the two groups it touches.
    let changed = plugins_dir().join("diffy_changed_rule.wasm");
    let args = [&["plugin", "diff", changed.to_str().unwrap()][..], &range, &["--json"]].concat();
    let out = runner(&config, &args).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["groups"], 6, "{report}");
    assert_eq!(report["groups_differing"], 2, "{report}");
    assert_eq!((report["rows_changed"].as_u64(), report["rows_removed"].as_u64()), (Some(1), Some(1)), "{report}");
    assert_eq!((report["rows_added"].as_u64(), report["rows_unchanged"].as_u64()), (Some(0), Some(9)), "{report}");
    assert_eq!(report["columns"]["sample_count"]["changed"], 1, "{report}");
    assert_eq!(report["columns"]["max_value"]["largest_change"], 70.0, "{report}");
    let example = &report["examples"][0];
    assert_eq!((example["user_id"].as_i64(), example["day"].as_str()), (Some(3), Some("2024-06-01")), "{report}");
    // The summary in words, without --json.
    let out = runner(&config, &[&["plugin", "diff", changed.to_str().unwrap()][..], &range[..6]].concat())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "no --fail-on-diff: {}", text(&out));
    let words = text(&out);
    assert!(words.contains("daily rows unchanged: 9, changed: 1, added: 0, removed: 1"), "{words}");
    assert!(words.contains("user 3 day 2024-06-01 metric=`heart_rate`: max_value 150 -> 80"), "{words}");

    // Nothing was written.
    assert_eq!(daily_text(&db.client, "vitals_daily").await, before);
    let bad = runner(
        &config,
        &["plugin", "diff", changed.to_str().unwrap(), "--job", "diffy", "--from", "2024-06-03", "--to", "2024-06-01"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[tokio::test]
async fn diff_locks_nothing_a_running_runner_needs() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let start = NaiveDate::from_ymd_opt(2024, 6, 1).unwrap();
    runner::db::seed::vitals(&db.client, 40, 3, start).await.unwrap();
    run_ok(&config, &["run", "--once"]).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    // New rows arrive while diff reads the old days.
    runner::db::seed::vitals(&db.client, 40, 1, NaiveDate::from_ymd_opt(2024, 6, 4).unwrap()).await.unwrap();
    let file = plugins_dir().join("vitals.wasm");
    let args = [
        "plugin",
        "diff",
        file.to_str().unwrap(),
        "--job",
        "vitals",
        "--from",
        "2024-06-01",
        "--to",
        "2024-06-03",
        "--fail-on-diff",
    ];
    let (diff, ()) = tokio::join!(runner(&config, &args).output(), async {
        crate::util::wait_settled(&db, 120).await;
    });
    let diff = diff.unwrap();
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
    assert!(text(&diff).contains("groups compared: 120, differing: 0"), "{}", text(&diff));
    daemon.stop().await;
}

#[tokio::test]
async fn a_slow_diff_holds_no_transaction_that_an_alter_table_would_wait_for() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("diffy", "diffy.wasm", "")).await;
    // 200 groups whose every call spins (diffy's `slow` metric): tens of
    // seconds of preview, a few milliseconds of reading per group.
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             SELECT u, '2024-06-01 08:00Z', 'slow', 50000000, 'n' FROM generate_series(1, 200) u",
        )
        .await
        .unwrap();
    let changed = plugins_dir().join("diffy_changed_rule.wasm");
    let args =
        ["plugin", "diff", changed.to_str().unwrap(), "--job", "diffy", "--from", "2024-06-01", "--to", "2024-06-01"];
    let mut diff = runner(&config, &args).spawn().unwrap();
    wait_count(
        &db,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runner-cli' AND datname = current_database()
         AND query LIKE '%vitals_raw%'",
        1,
        120,
    )
    .await;
    // With one transaction for the whole preview, this waits for all of it
    // and gives up; with one per group, it waits for one group's read.
    let alter = db.client.batch_execute("SET lock_timeout = '5s'; ALTER TABLE vitals_raw ADD COLUMN note text").await;
    let still_running = diff.try_wait().unwrap().is_none();
    assert!(alter.is_ok(), "ALTER TABLE waited on the diff: {alter:?}");
    assert!(still_running, "the diff ended before the ALTER: the test proved nothing");
    let open = db
        .count(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runner-cli'
             AND datname = current_database() AND state = 'idle in transaction' AND xact_start < now() - interval '2 seconds'",
        )
        .await;
    assert_eq!(open, 0, "a preview session sat in a transaction");
    diff.kill().await.unwrap();
}

#[tokio::test]
async fn past_days_follow_a_deploy_resume_after_a_kill_and_live_rows_still_flow() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) = config_with_own_plugins(
        &db.url,
        &job("vitals", "vitals.wasm", "recompute_after_deploy = \"3d\""),
        &["vitals.wasm"],
    );
    run_ok(&config, &["migrate"]).await;
    let today = Utc::now().date_naive();
    runner::db::seed::vitals(&db.client, 300, 3, today - chrono::Days::new(2)).await.unwrap();
    let daemon = Daemon::start(&config);
    crate::util::wait_settled(&db, 120).await;
    let not_on = |v: &str| format!("SELECT count(*) FROM vitals_daily WHERE plugin_version <> '{v}'");

    // v2 goes live: every daily row of the window comes to carry it.
    let v2 = variant(&std::fs::read(plugins_dir().join("vitals.wasm")).unwrap(), "v2");
    deploy(&plugins.join("vitals.wasm"), &v2);
    let deadline = Instant::now() + Duration::from_secs(180);
    while db.count(&not_on(&vitals_version(&v2))).await > 0 {
        assert!(Instant::now() < deadline, "not converged to v2:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.wait_for("Recompute after deploy finished.", 1, 60).await;

    // v3, killed part-way: the next runner resumes, and live rows still flow.
    let v3 = variant(&v2, "v3");
    deploy(&plugins.join("vitals.wasm"), &v3);
    let v3_rows = format!("SELECT count(*) FROM vitals_daily WHERE plugin_version = '{}'", vitals_version(&v3));
    wait_count(&db, &v3_rows, 1, 120).await;
    drop(daemon); // kill_on_drop: SIGKILL
    let unfinished = format!(
        "SELECT count(*) FROM runner_recompute_progress WHERE plugin_version = '{}' AND finished_at IS NULL",
        vitals_version(&v3)
    );
    assert_eq!(db.count(&unfinished).await, 1, "killed part-way through 900 groups");
    let daemon = Daemon::start(&config);
    runner::db::seed::vitals(&db.client, 5, 1, today).await.unwrap(); // new users, live
    let deadline = Instant::now() + Duration::from_secs(180);
    while db.count(&not_on(&vitals_version(&v3))).await > 0 {
        assert!(Instant::now() < deadline, "not converged to v3:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crate::util::wait_settled(&db, 60).await;
    // The rows converge a moment before the run records its end.
    daemon.wait_for("Recompute after deploy finished.", 1, 120).await;
    let log = daemon.stop().await;
    assert!(log.contains("Recomputing past days after a deploy"), "{log}");
}

#[tokio::test]
async fn a_shadow_candidate_reading_other_columns_is_refused_with_a_pointer_to_diff() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    // diffy reads (value, metric); vitals reads (metric, value, unit).
    deploy(&plugins.join("vitals.candidate.wasm"), &std::fs::read(plugins_dir().join("diffy.wasm")).unwrap());
    daemon.wait_for("Shadow candidate rejected.", 1, 60).await;
    let log = daemon.stop().await;
    assert!(
        log.contains("reads other input columns than the live plugin") && log.contains("runner plugin diff"),
        "{log}"
    );
}

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
    runner::seed::vitals(&db.client, 40, 4, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()).await.unwrap();
    run_ok(&config, &["run", "--once"]).await;
    let v1 = vitals_version(&std::fs::read(plugins.join("vitals.wasm")).unwrap());

    // A new plugin build; recompute two of the four days with it.
    let v2_bytes = variant(&std::fs::read(plugins_dir().join("vitals.wasm")).unwrap(), "v2");
    std::fs::write(plugins.join("vitals.wasm"), &v2_bytes).unwrap();
    let v2 = vitals_version(&v2_bytes);
    let args = ["recompute", "--job", "vitals", "--from", "2024-01-02", "--to", "2024-01-03", "--batch", "7"];
    let out = text(&run_ok(&config, &args).await);
    assert!(out.contains("Recomputed 80 groups of job vitals from 2024-01-02 to 2024-01-03"), "{out}");
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
    assert_eq!(db.count("SELECT count(*) FROM vitals_raw WHERE aggregation_status <> 'completed'").await, 0);
}

//! Crash safety and the daemon: SIGKILL mid-run loses nothing and a rerun
//! finishes at once with the same result; a daemon wakes on NOTIFY and
//! exits 0 on SIGTERM.

use std::time::{Duration, Instant};

use chrono::NaiveDate;

use crate::util::{TestDb, job, migrated, run_ok, runner, vitals_daily_text};

async fn seeded(users: i32, days: i32, extra: &str) -> (TestDb, tempfile::TempDir, std::path::PathBuf) {
    let db = TestDb::new().await;
    let (dir, config) = migrated(&db, &job("vitals", "vitals.wasm", extra)).await;
    runner::db::seed::vitals(&db.client, users, days, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()).await.unwrap();
    (db, dir, config)
}

#[tokio::test]
async fn sigkill_mid_run_loses_nothing_and_a_rerun_finishes_at_once() {
    // One group a transaction: the run lasts long enough to be killed in
    // the middle (tests/group_commit.rs kills a multi-group transaction).
    let extra = "batch_size = 20\nworkers = 2\ngroups_per_transaction = 1";
    let (db, _dir, config) = seeded(150, 3, extra).await;
    let mut child = runner(&config, &["run", "--once"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = db.count("SELECT count(*) FROM vitals_daily").await;
        if done > 0 {
            assert!(
                db.count(crate::util::QUEUED).await > 0,
                "the run finished before it could be killed; seed more rows"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no group completed within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();

    // The dead runner's claims died with its connections: a rerun takes
    // every row at once, with no timeout to wait for.
    run_ok(&config, &["run", "--once"]).await;
    assert_eq!(db.count(crate::util::QUEUED).await, 0);

    // Same data, never interrupted: the daily rows are identical.
    let (clean, _dir2, config2) = seeded(150, 3, extra).await;
    run_ok(&config2, &["run", "--once"]).await;
    let a = vitals_daily_text(&db.client).await;
    let b = vitals_daily_text(&clean.client).await;
    assert!(!a.is_empty());
    assert!(a == b, "daily rows differ after a crash and rerun");
}

#[tokio::test]
async fn daemon_wakes_on_notify_and_stops_cleanly_on_sigterm() {
    let db = TestDb::new().await;
    // Poll every minute: finishing within seconds proves the notification woke it.
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let daemon = crate::util::Daemon::start(&config);
    // Readiness waited for, not slept for: from this line on, a row wakes it.
    daemon.wait_for("Listening for new raw rows.", 1, 60).await;
    db.client
        .execute("INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES (7, now(), 'heart_rate', 61, 'bpm')", &[])
        .await
        .unwrap();
    // Well under the 60 s poll interval: only the notification can wake it in time.
    crate::util::wait_count(&db, "SELECT count(*) FROM vitals_daily WHERE user_id = 7", 1, 40).await;
    daemon.stop().await;
    // Backends notice a closed socket at once, but leave pg_stat_activity a moment later.
    let sessions =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runner' AND datname = current_database()";
    let gone = || async {
        let left = db.count(sessions).await;
        if left == 0 { Ok(()) } else { Err(left) }
    };
    crate::util::eventually(5, gone, |left| format!("{left} of the runner's connections outlived it")).await;
}

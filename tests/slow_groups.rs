//! A slow group holds its own worker and no other (no batch barrier), and a
//! group that failed on a limit is not recomputed at every new change while
//! its backoff holds.

use crate::util::{Daemon, TestDb, job, migrated, run_ok, text, wait_count};

/// One reading of `user` on 2024-05-01.
async fn reading(db: &TestDb, user: i64) {
    db.client
        .execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, '2024-05-01 10:00Z', 'heart_rate', 60, 'bpm')",
            &[&user],
        )
        .await
        .unwrap();
}

/// Waits until `user`'s daily row counts `n` readings.
async fn counted(db: &TestDb, user: i64, n: i64) {
    let sql = format!("SELECT coalesce(sum(sample_count), 0)::int8 FROM vitals_daily WHERE user_id = {user}");
    wait_count(db, &sql, n, 60).await;
}

#[tokio::test]
async fn a_slow_group_holds_its_own_worker_and_no_other() {
    let db = TestDb::new().await;
    // The faulty plugin loops on user 15 until its time limit.
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", "workers = 2\ntime_limit = \"60s\"")).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    reading(&db, 15).await;
    // Its transaction is open: the group's advisory lock is held.
    let in_hand = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    wait_count(&db, in_hand, 1, 60).await;
    for round in 1..=3 {
        reading(&db, 1).await;
        counted(&db, 1, round).await;
    }
    // Each of user 1's syncs was aggregated while user 15's group was still running.
    assert_eq!(db.count(in_hand).await, 1, "{}", daemon.log());
    assert_eq!(db.count("SELECT count(*) FROM runner_group_failures WHERE user_id = 15").await, 0);
}

#[tokio::test]
async fn a_group_failing_on_a_limit_waits_out_its_backoff_whatever_arrives_meanwhile() {
    let db = TestDb::new().await;
    // The faulty plugin asks for 1 GiB on user 16.
    let extra = "retry_backoff = \"1h\"\nmemory_limit_mb = 16";
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", extra)).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    reading(&db, 16).await;
    let failures = |what: &str| format!("SELECT count(*) FROM runner_group_failures WHERE user_id = 16 AND {what}");
    wait_count(&db, &failures("on_limit AND attempts = 1"), 1, 60).await;
    for round in 1..=3 {
        // User 1's sync, after user 16's, being aggregated: the loop has
        // looked at the queue since user 16's new row arrived.
        reading(&db, 16).await;
        reading(&db, 1).await;
        counted(&db, 1, round).await;
    }
    // Still one attempt: the new rows wait with the failure record, not in the queue.
    assert_eq!(db.count(&failures("attempts = 1 AND changed")).await, 1, "{}", daemon.log());
    assert_eq!(db.count("SELECT count(*) FROM runner_changes WHERE user_id = 16").await, 0);
    let status = text(&run_ok(&config, &["status"]).await);
    assert!(status.contains("1 group(s) failed on a limit (memory, time or max_group_rows)"), "{status}");
    // The backoff over, the group is tried once more, with all that arrived.
    db.client.execute("UPDATE runner_group_failures SET not_before = now() WHERE user_id = 16", &[]).await.unwrap();
    reading(&db, 1).await; // wakes the loop
    wait_count(&db, &failures("attempts = 2 AND NOT changed"), 1, 60).await;
}

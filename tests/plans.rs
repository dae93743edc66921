//! Plans that stay index plans: statements first planned while the daily
//! table is empty (every new job, every TRUNCATE) must not scan it whole
//! once it holds a million rows.

use chrono::NaiveDate;

use crate::util::{Daemon, TestDb, job, migrated};

/// (sequential scans, index scans) of a table, as the statistics say now.
async fn scans(db: &TestDb, table: &str) -> (i64, i64) {
    db.client.batch_execute("SELECT pg_stat_clear_snapshot()").await.unwrap();
    let r = db
        .client
        .query_one("SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = $1", &[&table])
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn a_group_write_stays_an_index_lookup_as_the_daily_table_grows_past_a_million_rows() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "workers = 2")).await;
    // Known to be empty (as autovacuum or a TRUNCATE and ANALYZE leave it),
    // then planned and used well past five times per connection.
    db.client.batch_execute("ANALYZE vitals_daily").await.unwrap();
    runner::db::seed::vitals(&db.client, 40, 1, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()).await.unwrap();
    let daemon = Daemon::start(&config);
    crate::util::wait_settled(&db, 120).await;

    // A million daily rows of other users, with no ANALYZE.
    db.client
        .batch_execute(
            "INSERT INTO vitals_daily (user_id, day, metric, unit, sample_count, plugin_version, updated_at)
             SELECT u, date '2020-01-01' + d, 'heart_rate', 'bpm', 1, 'bulk', now()
             FROM generate_series(100000, 100999) u, generate_series(0, 999) d",
        )
        .await
        .unwrap();
    let before = scans(&db, "vitals_daily").await;

    // The same connections aggregate more groups of the first users.
    runner::db::seed::vitals(&db.client, 40, 1, NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()).await.unwrap();
    crate::util::wait_settled(&db, 120).await;
    // Statistics reach the view within a second or so of each transaction.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let after = loop {
        let now = scans(&db, "vitals_daily").await;
        if now.1 >= before.1 + 40 || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    daemon.stop().await;
    assert!(after.1 >= before.1 + 40, "the 40 groups' writes are index lookups: {before:?} -> {after:?}");
    assert_eq!(after.0, before.0, "no group scanned the whole daily table: {before:?} -> {after:?}");
}

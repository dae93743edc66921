//! Plans that keep their shape: statements first planned while the daily
//! table is empty (every new job, every TRUNCATE) must not scan it whole
//! once it holds a million rows, and a many-group claim does per-group
//! work once a group, not once a row.

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

/// Every node's `Actual Loops` in an `EXPLAIN (ANALYZE, FORMAT JSON)` plan,
/// with the node's type.
fn loops(plan: &serde_json::Value, out: &mut Vec<(String, u64)>) {
    if let Some(n) = plan.get("Actual Loops").and_then(|l| l.as_u64()) {
        let kind = plan["Node Type"].as_str().unwrap_or("?");
        let part = plan.get("Subplan Name").and_then(|s| s.as_str()).unwrap_or("");
        out.push((format!("{kind} {part}").trim().to_string(), n));
    }
    for child in plan.get("Plans").and_then(|p| p.as_array()).into_iter().flatten() {
        loops(child, out);
    }
}

#[tokio::test]
async fn a_many_group_claim_does_each_groups_bookkeeping_once_not_once_per_row() {
    let db = TestDb::new().await;
    let (_dir, path) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    // 20 groups of 34 rows each, queued by the capture triggers.
    runner::db::seed::vitals(&db.client, 20, 1, NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()).await.unwrap();

    let config = runner::config::Config::load(&path).unwrap();
    let job = &config.jobs["vitals"];
    let source = runner::db::schema::table(&db.client, &job.source).await.unwrap().expect("the source exists");
    let shape = runner::db::schema::check_source(job, &source).unwrap();
    let column = |name: &str, kind| runner::rows::Column { name: name.into(), kind };
    use runner::rows::ColumnType;
    let description = runner::rows::Description {
        name: "vitals".into(),
        version: "1.0.0".into(),
        input: vec![column("metric", ColumnType::Text), column("value", ColumnType::Float)],
        output: vec![column("metric", ColumnType::Text), column("sample_count", ColumnType::Integer)],
        key: vec!["metric".into()],
        settings: Vec::new(),
        row_fields: runner::rows::RowFields::ALL,
    };
    let statements = runner::db::statements::Statements::new(job, &shape, &description);
    let (_, claim_many) = statements.all().into_iter().find(|(name, _)| *name == "claim_many").unwrap();

    let keys = db
        .client
        .query_one(
            "SELECT count(*), array_agg(user_id)::text, array_agg(day)::text FROM runner_changes WHERE job = 'vitals'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(keys.get::<_, i64>(0), 20, "one queued key a group");
    let (users, days): (String, String) = (keys.get(1), keys.get(2));

    // The simple protocol returns the plan as text; the claim's deletes roll back.
    let messages = db
        .client
        .simple_query(&format!(
            "BEGIN; PREPARE claim_many (int8[], date[], text, text) AS {claim_many};
             EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim_many('{users}', '{days}', 'vitals_daily', 'vitals');
             ROLLBACK"
        ))
        .await
        .unwrap();
    let text = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a plan");
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut nodes = Vec::new();
    loops(&plan[0]["Plan"], &mut nodes);
    // A node run once per row read (680 here) is work that grows with the
    // rows times the groups; the rows' own read runs once per group.
    let per_row: Vec<_> = nodes.iter().filter(|(_, n)| *n > 20).collect();
    assert!(per_row.is_empty(), "nodes run more often than once per group: {per_row:?}\nall: {nodes:?}");
    assert!(nodes.iter().any(|(kind, n)| kind.starts_with("Index Scan") && *n == 20), "one read per group: {nodes:?}");
}

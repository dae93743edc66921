//! Tables that other applications made: int2/int4 ids, naive timestamps,
//! partitions, another schema, NULL keys. Each must give the daily rows the
//! reference schema gives, with nothing changed in it but the change
//! triggers `migrate` installs (no column, no index).

use chrono::NaiveDate;

use crate::util::{
    Daemon, TestDb, config, daily_text, insert_reading, job, job_on, run_ok, runner, text, wait_count, wait_settled,
};

/// Copies the reference raw rows into `table`; `recorded_at` becomes `at_expr`.
async fn copy_raw(db: &TestDb, table: &str, at_expr: &str) {
    db.client
        .batch_execute(&format!(
            "INSERT INTO {table} (user_id, recorded_at, metric, value, unit)
             SELECT user_id, {at_expr}, metric, value, unit FROM vitals_raw ORDER BY id"
        ))
        .await
        .unwrap();
}

/// A daily table shaped like `vitals_daily`, with `user_id` of `user_type`.
fn daily(table: &str, user_type: &str) -> String {
    format!(
        "CREATE TABLE {table} (LIKE vitals_daily INCLUDING ALL);
         ALTER TABLE {table} ALTER COLUMN user_id TYPE {user_type};"
    )
}

#[tokio::test]
async fn tables_made_by_other_applications_give_the_reference_results() {
    let db = TestDb::new().await;
    // The reference schema first, seeded; the other tables copy its rows.
    let (_dir, reference) = config(&db.url, &job("vitals", "vitals.wasm", ""));
    run_ok(&reference, &["migrate"]).await;
    runner::db::seed::vitals(&db.client, 12, 3, NaiveDate::from_ymd_opt(2024, 3, 9).unwrap()).await.unwrap();
    db.client
        .batch_execute(&format!(
            // SQLAlchemy's Integer and DateTime: int4 ids, a naive timestamp.
            "CREATE TABLE int4_raw (id serial PRIMARY KEY, user_id integer NOT NULL,
                 recorded_at timestamptz NOT NULL, metric text, value double precision, unit varchar(16));
             {}
             CREATE TABLE naive_raw (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id smallint,
                 recorded_at timestamp, metric text, value double precision, unit text);
             {}
             CREATE SCHEMA app;
             CREATE TABLE app.part_raw (id bigserial, user_id bigint NOT NULL, recorded_at timestamptz NOT NULL,
                 metric text, value double precision, unit text, PRIMARY KEY (id, recorded_at))
                 PARTITION BY RANGE (recorded_at);
             CREATE TABLE app.part_raw_2024_03a PARTITION OF app.part_raw FOR VALUES FROM ('2024-03-01') TO ('2024-03-10');
             CREATE TABLE app.part_raw_2024_03b PARTITION OF app.part_raw FOR VALUES FROM ('2024-03-10') TO ('2024-04-01');
             CREATE TABLE app.part_daily (LIKE vitals_daily INCLUDING ALL);
             CREATE TABLE nulls_raw (id bigserial PRIMARY KEY, user_id bigint, recorded_at timestamptz,
                 metric text, value double precision, unit text);
             {}",
            daily("int4_daily", "integer"),
            daily("naive_daily", "bigint"),
            daily("nulls_daily", "bigint"),
        ))
        .await
        .unwrap();
    let columns = "SELECT count(*) FROM pg_attribute WHERE attnum > 0 AND attrelid IN
        ('int4_raw'::regclass, 'naive_raw'::regclass, 'app.part_raw'::regclass, 'nulls_raw'::regclass)";
    let indexes = "SELECT count(*) FROM pg_indexes WHERE tablename LIKE '%_raw%' AND tablename <> 'vitals_raw'";
    let before = (db.count(columns).await, db.count(indexes).await);

    let jobs = [
        job("vitals", "vitals.wasm", ""),
        job_on("int4", "vitals.wasm", "int4_raw", "int4_daily", "recorded_at", ""),
        job_on(
            "naive",
            "vitals.wasm",
            "naive_raw",
            "naive_daily",
            "recorded_at",
            "timestamp_zone = \"America/New_York\"",
        ),
        job_on("part", "vitals.wasm", "app.part_raw", "app.part_daily", "recorded_at", ""),
        job_on("nulls", "vitals.wasm", "nulls_raw", "nulls_daily", "recorded_at", ""),
    ];
    let (_dir, config) = config(&db.url, &jobs.concat());
    run_ok(&config, &["migrate"]).await;
    assert_eq!((db.count(columns).await, db.count(indexes).await), before, "migrate added no column or index");
    // Rows written after migrate are captured (the reference rows were
    // seeded after its own migrate).
    copy_raw(&db, "int4_raw", "recorded_at").await;
    // Wall-clock times in New York, as an application would have stored them.
    copy_raw(&db, "naive_raw", "recorded_at AT TIME ZONE 'America/New_York'").await;
    copy_raw(&db, "app.part_raw", "recorded_at").await;
    copy_raw(&db, "nulls_raw", "recorded_at").await;
    db.client
        .batch_execute(
            "INSERT INTO nulls_raw (user_id, recorded_at, metric, value, unit) VALUES
                 (NULL, '2024-03-09 10:00Z', 'heart_rate', 70, 'bpm'),
                 (5, NULL, 'heart_rate', 71, 'bpm')",
        )
        .await
        .unwrap();
    let check = text(&run_ok(&config, &["check"]).await);
    for line in [
        "id is int4: read as bigint",
        "user_id is int2: read as bigint; a row where it is NULL belongs to no group",
        "recorded_at is timestamp without time zone: read as America/New_York",
        "recorded_at is timestamp with time zone; a row where it is NULL belongs to no group",
        "2 raw row(s) belong to no group (NULL user or timestamp): they are never aggregated",
        "int4_raw has no index on (user_id, recorded_at)",
        "CREATE INDEX CONCURRENTLY \"int4_raw_user_time_idx\" ON \"int4_raw\" (user_id, \"recorded_at\");",
    ] {
        assert!(check.contains(line), "`runner check` says how it reads the keys ({line}):\n{check}");
    }

    run_ok(&config, &["run", "--once"]).await;
    let expected = daily_text(&db.client, "vitals_daily").await;
    assert!(expected.lines().count() > 100, "{expected}");
    for table in ["int4_daily", "naive_daily", "app.part_daily", "nulls_daily"] {
        assert_eq!(daily_text(&db.client, table).await, expected, "{table}");
    }
    // Rows without a user or a day belong to no group; every other day is done.
    assert_eq!(db.count(crate::util::QUEUED).await, 0);
    let status: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&run_ok(&config, &["status", "--json"]).await.stdout)).unwrap();
    let nulls = status["jobs"].as_array().unwrap().iter().find(|j| j["job"] == "nulls").unwrap().clone();
    assert_eq!(nulls["ungrouped_rows"], 2, "{nulls}");

    // A partition made after `migrate`: rows written through the parent
    // are captured by its triggers and wake the daemon (its poll is a minute).
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 5, 60).await;
    db.client
        .batch_execute(
            "CREATE TABLE app.part_raw_2024_04 PARTITION OF app.part_raw FOR VALUES FROM ('2024-04-01') TO ('2024-05-01');
             INSERT INTO app.part_raw (user_id, recorded_at, metric, value, unit)
                 VALUES (77, '2024-04-02 08:00Z', 'heart_rate', 64, 'bpm');",
        )
        .await
        .unwrap();
    wait_count(&db, "SELECT count(*) FROM app.part_daily WHERE user_id = 77", 1, 60).await;
    daemon.stop().await;
}

#[tokio::test]
async fn two_jobs_on_one_source_each_follow_every_insert_update_and_delete() {
    let db = TestDb::new().await;
    let jobs = [
        job("vitals", "vitals.wasm", ""),
        job_on("copy", "vitals.wasm", "vitals_raw", "copy_daily", "recorded_at", ""),
    ];
    let (_dir, config) = config(&db.url, &jobs.concat());
    // The team's own daily table, shaped as the reference one.
    let ddl = include_str!("../runner/src/db/reference/vitals_daily.sql").replace("vitals_daily", "copy_daily");
    db.client.batch_execute(&ddl).await.unwrap();
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    for (user, value) in [(1i64, 60.0f64), (1, 70.0), (2, 80.0)] {
        insert_reading(&db, user, "2024-06-01 10:00Z", "heart_rate", value, "bpm").await;
    }
    db.client.execute("UPDATE vitals_raw SET value = 90 WHERE user_id = 2", &[]).await.unwrap();
    db.client.execute("DELETE FROM vitals_raw WHERE user_id = 1 AND value = 70", &[]).await.unwrap();
    wait_settled(&db, 60).await;
    let daily = |table: &str| {
        let sql = format!("SELECT user_id, day, metric, sample_count, avg_value FROM {table} ORDER BY user_id, metric");
        let client = &db.client;
        async move {
            let rows = client.query(&sql, &[]).await.unwrap();
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i32>(3), r.get::<_, Option<f64>>(4)))
                .collect::<Vec<_>>()
        }
    };
    let vitals = daily("vitals_daily").await;
    assert_eq!(vitals, [(1, 1, Some(60.0)), (2, 1, Some(90.0))]);
    assert_eq!(daily("copy_daily").await, vitals, "each job saw every write");
    daemon.stop().await;
}

#[tokio::test]
async fn two_jobs_writing_one_table_are_refused_before_anything_runs() {
    let db = TestDb::new().await;
    let jobs = [
        job("vitals", "vitals.wasm", ""),
        job_on("other", "vitals.wasm", "other_raw", "vitals_daily", "recorded_at", ""),
    ];
    let (_dir2, same_target) = config(&db.url, &jobs.concat());
    let out = runner(&same_target, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("both use table vitals_daily as their target"), "{}", text(&out));
    // Nothing was created: the config was refused before any connection.
    let tables = db.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").await;
    assert_eq!(tables, 0);
}

//! One definition of a row's day, in zones whose midnight is missing or
//! happens twice: the change triggers, the group reads and `recompute` all
//! put every reading on the spec's day (the calendar date of its timestamp
//! in the job's zone), checked against Postgres computing that date itself.

use crate::util::{Daemon, TestDb, counts_by_day, daily_counts, job_on, migrated, run_ok, wait_settled};

/// Readings every 20 minutes from `from` to `to` for users 1 to 3 (SQL
/// `generate_series` over the column's own type).
fn readings(table: &str, from: &str, to: &str, kind: &str) -> String {
    format!(
        "INSERT INTO {table} (user_id, recorded_at, metric, value, unit)
         SELECT u, t, 'heart_rate', 60, 'bpm'
         FROM generate_series(1, 3) u,
              generate_series('{from}'::{kind}, '{to}'::{kind}, interval '20 minutes') t"
    )
}

/// A raw vitals table whose `recorded_at` is a naive `timestamp`.
async fn naive_table(db: &TestDb) {
    db.client
        .batch_execute(
            "CREATE TABLE naive_raw (id bigserial PRIMARY KEY, user_id bigint NOT NULL, recorded_at timestamp NOT NULL,
                 metric text NOT NULL, value double precision, unit text NOT NULL);
             CREATE INDEX ON naive_raw (user_id, recorded_at)",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn havana_midnight_twice_and_missing_every_reading_lands_on_its_local_day() {
    // Havana falls back at 01:00 to 00:00 (2026-11-01: midnight happens
    // twice) and springs forward at midnight (2026-03-08: no midnight).
    let db = TestDb::new().await;
    let job =
        job_on("vitals", "vitals.wasm", "vitals_raw", "vitals_daily", "recorded_at", "timezone = \"America/Havana\"");
    let (_dir, config) = migrated(&db, &job).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    for (from, to) in [("2026-10-30 20:00Z", "2026-11-02 08:00Z"), ("2026-03-06 20:00Z", "2026-03-09 08:00Z")] {
        db.client.batch_execute(&readings("vitals_raw", from, to, "timestamptz")).await.unwrap();
    }
    wait_settled(&db, 120).await;
    let expected = counts_by_day(&db, "vitals_raw", "(recorded_at AT TIME ZONE 'America/Havana')::date").await;
    assert!(expected.contains("1 2026-11-01 "), "{expected}");
    assert_eq!(daily_counts(&db).await, expected, "the daemon, after the triggers; log:\n{}", daemon.log());

    // A reading at 00:30 of the first midnight (04:30Z): day 11-01.
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             VALUES (9, '2026-11-01 04:30Z', 'heart_rate', 70, 'bpm')",
        )
        .await
        .unwrap();
    wait_settled(&db, 120).await;
    assert_eq!(
        db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 9 AND day = '2026-11-01'").await,
        1,
        "{}",
        daemon.log()
    );
    daemon.stop().await;

    // recompute reads the same days.
    db.client.batch_execute("DELETE FROM vitals_daily WHERE user_id = 2").await.unwrap();
    run_ok(&config, &["recompute", "--job", "vitals", "--from", "2026-03-01", "--to", "2026-11-30"]).await;
    let expected = counts_by_day(&db, "vitals_raw", "(recorded_at AT TIME ZONE 'America/Havana')::date").await;
    assert_eq!(daily_counts(&db).await, expected, "after recompute");
}

#[tokio::test]
async fn a_naive_column_in_the_jobs_zone_keeps_its_own_date_through_santiagos_missing_midnight() {
    // Santiago springs forward at midnight (2026-09-06 00:00 to 01:00: a
    // naive 00:30 names no instant) and falls back at midnight (2026-04-05).
    let db = TestDb::new().await;
    naive_table(&db).await;
    let extra = "timezone = \"America/Santiago\"\ntimestamp_zone = \"America/Santiago\"";
    let (_dir, config) =
        migrated(&db, &job_on("vitals", "vitals.wasm", "naive_raw", "vitals_daily", "recorded_at", extra)).await;
    for (from, to) in [("2026-09-04 20:00", "2026-09-07 04:00"), ("2026-04-03 20:00", "2026-04-06 04:00")] {
        db.client.batch_execute(&readings("naive_raw", from, to, "timestamp")).await.unwrap();
    }
    db.client
        .batch_execute(
            "INSERT INTO naive_raw (user_id, recorded_at, metric, value, unit)
             VALUES (9, '2026-09-06 00:30', 'heart_rate', 70, 'bpm')",
        )
        .await
        .unwrap();
    run_ok(&config, &["run", "--once"]).await;
    let expected = counts_by_day(&db, "naive_raw", "recorded_at::date").await;
    assert!(expected.contains("9 2026-09-06 1"), "{expected}");
    assert_eq!(daily_counts(&db).await, expected);
    db.client.batch_execute("DELETE FROM vitals_daily").await.unwrap();
    run_ok(&config, &["recompute", "--job", "vitals", "--from", "2026-04-01", "--to", "2026-09-30"]).await;
    assert_eq!(daily_counts(&db).await, expected, "after recompute");
}

#[tokio::test]
async fn naive_new_york_times_read_by_a_denver_job_land_on_denvers_day() {
    let db = TestDb::new().await;
    naive_table(&db).await;
    let extra = "timezone = \"America/Denver\"\ntimestamp_zone = \"America/New_York\"";
    let (_dir, config) =
        migrated(&db, &job_on("vitals", "vitals.wasm", "naive_raw", "vitals_daily", "recorded_at", extra)).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    for (from, to) in [("2026-03-06 20:00", "2026-03-09 04:00"), ("2026-10-30 20:00", "2026-11-02 04:00")] {
        db.client.batch_execute(&readings("naive_raw", from, to, "timestamp")).await.unwrap();
    }
    wait_settled(&db, 120).await;
    let day = "((recorded_at AT TIME ZONE 'America/New_York') AT TIME ZONE 'America/Denver')::date";
    let expected = counts_by_day(&db, "naive_raw", day).await;
    assert_eq!(daily_counts(&db).await, expected, "{}", daemon.log());
    // A move across Denver's midnight regroups both days.
    db.client
        .batch_execute("UPDATE naive_raw SET recorded_at = recorded_at + interval '2 hours' WHERE user_id = 1")
        .await
        .unwrap();
    wait_settled(&db, 120).await;
    let expected = counts_by_day(&db, "naive_raw", day).await;
    assert_eq!(daily_counts(&db).await, expected, "after a move; log:\n{}", daemon.log());
    daemon.stop().await;
}

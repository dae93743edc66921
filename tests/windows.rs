//! Rolling windows: the bundled `weight_trend` job (`window_days = 7` on
//! `vitals_raw`, beside `vitals`) follows inserts, corrections, moves and
//! deletions of raw rows with a running daemon, and equals a from-scratch
//! computation of the spec's rule after each.

use crate::util::{Daemon, TestDb, config, insert_reading, job, job_on, run_ok, runner, text, wait_settled};

/// The spec's weight_trend, computed from scratch in SQL over every raw
/// row: one row per (user, day that has a raw row of its own) whose 7-day
/// window holds an accepted weight reading. Rounded to compare floats.
const FROM_SCRATCH: &str = "
    WITH raw AS (
        SELECT user_id, id, recorded_at, (recorded_at AT TIME ZONE 'UTC')::date AS d, metric, value,
               lower(trim(unit)) AS unit
        FROM vitals_raw
    ), accepted AS (
        SELECT user_id, id, recorded_at, d, kg FROM (
            SELECT *, CASE WHEN unit = 'kg' THEN value WHEN unit IN ('lb', 'lbs') THEN value * 0.45359237 END AS kg
            FROM raw WHERE metric = 'weight' AND value IS NOT NULL AND value NOT IN ('NaN', 'Infinity', '-Infinity')
        ) w WHERE kg BETWEEN 1 AND 500
    ), days AS (
        SELECT DISTINCT user_id, d AS day FROM raw
    )
    SELECT g.user_id, g.day::text, count(*)::int,
           round(avg(a.kg)::numeric, 6)::text, round(min(a.kg)::numeric, 6)::text, round(max(a.kg)::numeric, 6)::text,
           round(((array_agg(a.kg ORDER BY a.recorded_at DESC, a.id DESC))[1]
                - (array_agg(a.kg ORDER BY a.recorded_at, a.id))[1])::numeric, 6)::text
    FROM days g JOIN accepted a ON a.user_id = g.user_id AND a.d BETWEEN g.day - 6 AND g.day
    GROUP BY g.user_id, g.day ORDER BY 1, 2";

const WRITTEN: &str = "
    SELECT user_id, day::text, readings, round(avg_kg::numeric, 6)::text, round(min_kg::numeric, 6)::text,
           round(max_kg::numeric, 6)::text, round(change_kg::numeric, 6)::text
    FROM weight_trend ORDER BY 1, 2";

type Trend = (i64, String, i32, String, String, String, String);

async fn rows(db: &TestDb, sql: &str) -> Vec<Trend> {
    let rows = db.client.query(sql, &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))).collect()
}

#[tokio::test]
async fn a_seven_day_window_follows_every_change_and_equals_a_from_scratch_computation() {
    let db = TestDb::new().await;
    let jobs = [
        job("vitals", "vitals.wasm", ""),
        job_on("weight_trend", "weight_trend.wasm", "vitals_raw", "weight_trend", "recorded_at", "window_days = 7"),
    ];
    let (_dir, config) = config(&db.url, &jobs.concat());
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    for (user, at, metric, value, unit) in [
        (1, "2026-03-01 08:00Z", "weight", 80.0, "kg"),
        (1, "2026-03-03 08:00Z", "weight", 176.0, "lb"),
        (1, "2026-03-05 23:59Z", "heart_rate", 60.0, "bpm"),
        (1, "2026-03-08 07:00Z", "weight", 78.5, "kg"),
        (1, "2026-03-08 07:00Z", "weight", 9000.0, "kg"),
        (1, "2026-03-12 09:00Z", "heart_rate", 61.0, "bpm"),
        (1, "2026-03-20 09:00Z", "weight", 77.0, "kg"),
        (2, "2026-03-02 00:00Z", "weight", 60.0, "kg"),
        (2, "2026-03-02 00:00Z", "weight", 61.0, "kg"),
    ] {
        insert_reading(&db, user, at, metric, value, unit).await;
    }
    wait_settled(&db, 60).await;
    let expected = rows(&db, FROM_SCRATCH).await;
    // Every day with a row of its own whose 7 days hold a weight (03-05 and
    // 03-12 through the days before them); not 03-04, which has no row.
    let days: Vec<(i64, &str)> = expected.iter().map(|r| (r.0, r.1.as_str())).collect();
    assert_eq!(
        days,
        [
            (1, "2026-03-01"),
            (1, "2026-03-03"),
            (1, "2026-03-05"),
            (1, "2026-03-08"),
            (1, "2026-03-12"),
            (1, "2026-03-20"),
            (2, "2026-03-02")
        ]
    );
    assert_eq!(rows(&db, WRITTEN).await, expected);

    // A correction, a move to another week, a deletion: each reaches every window that holds it.
    db.client
        .execute("UPDATE vitals_raw SET value = 82 WHERE user_id = 1 AND recorded_at = '2026-03-01 08:00Z'", &[])
        .await
        .unwrap();
    db.client
        .execute("UPDATE vitals_raw SET recorded_at = '2026-03-18 08:00Z' WHERE user_id = 1 AND unit = 'lb'", &[])
        .await
        .unwrap();
    db.client.execute("DELETE FROM vitals_raw WHERE user_id = 2 AND value = 61", &[]).await.unwrap();
    wait_settled(&db, 60).await;
    let expected = rows(&db, FROM_SCRATCH).await;
    assert!(expected.iter().any(|r| r.0 == 1 && r.1 == "2026-03-18"), "the moved reading has a day of its own");
    assert_eq!(rows(&db, WRITTEN).await, expected);

    // The only row of a day deleted: its window row goes, the others follow.
    db.client
        .execute("DELETE FROM vitals_raw WHERE user_id = 1 AND recorded_at = '2026-03-12 09:00Z'", &[])
        .await
        .unwrap();
    wait_settled(&db, 60).await;
    assert_eq!(rows(&db, WRITTEN).await, rows(&db, FROM_SCRATCH).await);
    let log = daemon.stop().await;
    assert!(!log.contains("ERROR"), "{log}");

    // The window shapes the capture: another width is said by `check` until `migrate`.
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("window_days = 7", "window_days = 3"))
        .unwrap();
    let out = runner(&config, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("was installed for another configuration"), "{}", text(&out));
    run_ok(&config, &["migrate"]).await;
    run_ok(&config, &["check"]).await;
}

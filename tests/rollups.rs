//! Rollups of rollups and periods: the bundled `vitals_weekly` job reads
//! the `vitals` job's daily table, a week per group, and follows every raw
//! change through both jobs with a running daemon; a cycle is refused.

use crate::util::{Daemon, TestDb, config, insert_reading, job, job_on, run_ok, runner, text, wait_settled};

/// The spec's vitals_weekly, computed from scratch over vitals_daily.
const FROM_SCRATCH: &str = "
    SELECT user_id, (day - (EXTRACT(isodow FROM day)::int - 1))::text AS week, metric, min(unit),
           (count(*) FILTER (WHERE sample_count > 0))::int, sum(sample_count)::int, sum(rejected_count)::int,
           round((min(min_value) FILTER (WHERE sample_count > 0))::numeric, 6)::text,
           round((max(max_value) FILTER (WHERE sample_count > 0))::numeric, 6)::text,
           round((sum(avg_value * sample_count) FILTER (WHERE sample_count > 0)
                  / nullif(sum(sample_count) FILTER (WHERE sample_count > 0), 0))::numeric, 6)::text,
           round(((array_agg(last_value ORDER BY day DESC) FILTER (WHERE sample_count > 0))[1])::numeric, 6)::text
    FROM vitals_daily GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";

const WRITTEN: &str = "
    SELECT user_id, week::text, metric, unit, days_with_data, sample_count, rejected_count,
           round(min_value::numeric, 6)::text, round(max_value::numeric, 6)::text,
           round(avg_value::numeric, 6)::text, round(last_value::numeric, 6)::text
    FROM vitals_weekly ORDER BY 1, 2, 3";

type Week = (
    i64,
    String,
    String,
    Option<String>,
    i32,
    i32,
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn weeks(db: &TestDb, sql: &str) -> Vec<Week> {
    let rows = db.client.query(sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
                r.get(10),
            )
        })
        .collect()
}

fn weekly_job() -> String {
    job_on(
        "vitals_weekly",
        "vitals_weekly.wasm",
        "vitals_daily",
        "vitals_weekly",
        "day",
        "period = \"week\"\ntarget_day_column = \"week\"",
    )
}

#[tokio::test]
async fn a_weekly_rollup_of_the_daily_rows_follows_raw_corrections_moves_and_deletions() {
    let db = TestDb::new().await;
    let (_dir, config) = config(&db.url, &[job("vitals", "vitals.wasm", ""), weekly_job()].concat());
    let out = text(&run_ok(&config, &["migrate"]).await);
    assert!(out.contains("created reference table vitals_weekly (job vitals_weekly names it)"), "{out}");
    let check = text(&run_ok(&config, &["check"]).await);
    assert!(check.contains("day is a date"), "the daily table is read as a source: {check}");
    let daemon = Daemon::start(&config);
    // Two weeks (Mon 2026-03-02 … Sun 03-15) and a Sunday-to-Monday edge.
    for (user, at, metric, value, unit) in [
        (1i64, "2026-03-02 08:00Z", "heart_rate", 60.0f64, "bpm"),
        (1, "2026-03-02 20:00Z", "heart_rate", 70.0, "bpm"),
        (1, "2026-03-04 08:00Z", "heart_rate", 80.0, "bpm"),
        (1, "2026-03-04 09:00Z", "heart_rate", 999.0, "bpm"),
        (1, "2026-03-08 23:59Z", "weight", 176.0, "lb"),
        (1, "2026-03-09 00:00Z", "weight", 80.0, "kg"),
        (1, "2026-03-11 08:00Z", "spo2", 0.97, "fraction"),
        (2, "2026-03-05 08:00Z", "weight", 9000.0, "kg"),
    ] {
        insert_reading(&db, user, at, metric, value, unit).await;
    }
    wait_settled(&db, 60).await;
    let expected = weeks(&db, FROM_SCRATCH).await;
    let keys: Vec<(i64, &str, &str)> = expected.iter().map(|w| (w.0, w.1.as_str(), w.2.as_str())).collect();
    assert_eq!(
        keys,
        [
            (1, "2026-03-02", "heart_rate"),
            (1, "2026-03-02", "weight"),
            (1, "2026-03-09", "spo2"),
            (1, "2026-03-09", "weight"),
            (2, "2026-03-02", "weight")
        ]
    );
    assert_eq!(weeks(&db, WRITTEN).await, expected);
    let rejected_only = &expected[4];
    assert_eq!((rejected_only.5, rejected_only.6, &rejected_only.9), (0, 1, &None), "{rejected_only:?}");

    // A correction, a move into the other week, a deletion of a week's only reading.
    db.client.execute("UPDATE vitals_raw SET value = 65 WHERE value = 60", &[]).await.unwrap();
    db.client
        .execute(
            "UPDATE vitals_raw SET recorded_at = '2026-03-12 08:00Z' WHERE value = 80 AND metric = 'heart_rate'",
            &[],
        )
        .await
        .unwrap();
    db.client.execute("DELETE FROM vitals_raw WHERE metric = 'spo2'", &[]).await.unwrap();
    wait_settled(&db, 60).await;
    let expected = weeks(&db, FROM_SCRATCH).await;
    assert!(expected.iter().any(|w| w.1 == "2026-03-09" && w.2 == "heart_rate"), "{expected:?}");
    assert!(!expected.iter().any(|w| w.2 == "spo2"), "{expected:?}");
    assert_eq!(weeks(&db, WRITTEN).await, expected);

    // A TRUNCATE of the raw table empties the daily rows (a purge), whose
    // deletes reach the weekly rows; and one of the daily table itself is
    // a purge of the weekly job, read through its `week` column.
    db.client.batch_execute("TRUNCATE vitals_raw").await.unwrap();
    wait_settled(&db, 60).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM vitals_weekly").await, 0);
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES (7, '2026-03-03 08:00Z', 'heart_rate', 61, 'bpm')",
        )
        .await
        .unwrap();
    crate::util::wait_count(&db, "SELECT count(*) FROM vitals_weekly WHERE user_id = 7", 1, 60).await;
    db.client.batch_execute("TRUNCATE vitals_daily").await.unwrap();
    crate::util::wait_count(&db, "SELECT 1 - count(*) FROM vitals_weekly", 1, 60).await;
    let log = daemon.stop().await;
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test]
async fn a_chain_that_feeds_itself_back_is_refused_naming_it() {
    let db = TestDb::new().await;
    let jobs = [
        job_on("up", "vitals.wasm", "a_daily", "b_daily", "day", ""),
        job_on("down", "vitals.wasm", "b_daily", "c_daily", "day", ""),
        job_on("back", "vitals.wasm", "c_daily", "a_daily", "day", ""),
    ];
    let (_dir, config) = config(&db.url, &jobs.concat());
    let out = runner(&config, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert_eq!(all.matches("feed themselves back").count(), 1, "one cycle, said once: {all}");
    assert!(all.contains("back → up → down → back"), "{all}");
}

#[tokio::test]
async fn run_once_drains_a_chain_level_by_level() {
    let db = TestDb::new().await;
    let (_dir, config) = config(&db.url, &[job("vitals", "vitals.wasm", ""), weekly_job()].concat());
    run_ok(&config, &["migrate"]).await;
    runner::db::seed::vitals(&db.client, 6, 9, chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()).await.unwrap();
    run_ok(&config, &["run", "--once"]).await;
    assert_eq!(db.count(crate::util::QUEUED).await, 0, "the weekly job ran after the daily one had drained");
    let expected = weeks(&db, FROM_SCRATCH).await;
    let weeks_seen: std::collections::BTreeSet<&str> = expected.iter().map(|w| w.1.as_str()).collect();
    assert_eq!(weeks_seen.into_iter().collect::<Vec<_>>(), ["2026-03-02", "2026-03-09"]);
    assert_eq!(weeks(&db, WRITTEN).await, expected);
}

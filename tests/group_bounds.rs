//! WIT 0.3: what a plugin is told of its group — its first and last day,
//! the zone when one holds for every row, and each row's local day — for
//! a day, a week and a rolling window over rows with zones of their own,
//! through a plugin built with the kit.

use crate::util::{TestDb, config, job_on, run_ok};

/// Each group as the plugin saw it: user, date, first and last day, zone
/// (`-`: none), rows, and the rows' distinct local days as dates.
async fn seen(db: &TestDb, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT concat_ws(' ', user_id, day, first_day, last_day, coalesce(zone, '-'), readings, days, last_metric)
         FROM {table} ORDER BY user_id, day"
    );
    let rows = db.client.query(&sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| {
            let line: String = r.get(0);
            // The day numbers as dates, for reading.
            let (rest, metric) = line.rsplit_once(' ').unwrap();
            let (head, numbers) = rest.rsplit_once(' ').unwrap();
            let dates: Vec<String> =
                numbers.split(',').map(|n| runner::rows::date_of(n.parse().unwrap()).unwrap().to_string()).collect();
            format!("{head} {} {metric}", dates.join(","))
        })
        .collect()
}

#[tokio::test]
async fn a_plugin_is_told_its_groups_bounds_zone_and_each_rows_local_day() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE readings (id bigserial PRIMARY KEY, user_id bigint, recorded_at timestamptz NOT NULL,
                 metric text, zone text);
             CREATE INDEX ON readings (user_id, recorded_at);",
        )
        .await
        .unwrap();
    for target in ["by_day", "by_week", "by_window"] {
        db.client
            .batch_execute(&format!(
                "CREATE TABLE {target} (user_id bigint, day date, first_day date, last_day date, zone text,
                     readings bigint, days text, last_metric text, plugin_version text, updated_at timestamptz,
                     PRIMARY KEY (user_id, day))"
            ))
            .await
            .unwrap();
    }
    let zoned = "zone_column = \"zone\"";
    let jobs = [
        job_on("by_day", "bounds.wasm", "readings", "by_day", "recorded_at", zoned),
        job_on("by_week", "bounds.wasm", "readings", "by_week", "recorded_at", &format!("{zoned}\nperiod = \"week\"")),
        job_on(
            "by_window",
            "bounds.wasm",
            "readings",
            "by_window",
            "recorded_at",
            &format!("{zoned}\nwindow_days = 3"),
        ),
    ];
    let (_dir, config) = config(&db.url, &jobs.concat());
    run_ok(&config, &["migrate"]).await;
    db.client
        .batch_execute(
            "INSERT INTO readings (user_id, recorded_at, metric, zone) VALUES
                 -- Tokyo: 23:30 on Sunday 1 March, 00:30 on Monday 2 March, noon on Tuesday 3 March.
                 (1, '2026-03-01 14:30Z', 'a', 'Asia/Tokyo'),
                 (1, '2026-03-01 15:30Z', 'b', 'Asia/Tokyo'),
                 (1, '2026-03-03 03:00Z', 'c', 'Asia/Tokyo'),
                 -- Berlin on Monday, New York on Wednesday: a week of two zones.
                 (2, '2026-03-02 10:00Z', 'd', 'Europe/Berlin'),
                 (2, '2026-03-04 15:00Z', 'e', 'America/New_York'),
                 -- No zone of its own: the job's (UTC).
                 (3, '2026-03-02 23:30Z', 'f', NULL)",
        )
        .await
        .unwrap();
    run_ok(&config, &["run", "--once"]).await;

    assert_eq!(
        seen(&db, "by_day").await,
        [
            "1 2026-03-01 2026-03-01 2026-03-01 Asia/Tokyo 1 2026-03-01 a",
            "1 2026-03-02 2026-03-02 2026-03-02 Asia/Tokyo 1 2026-03-02 b",
            "1 2026-03-03 2026-03-03 2026-03-03 Asia/Tokyo 1 2026-03-03 c",
            "2 2026-03-02 2026-03-02 2026-03-02 Europe/Berlin 1 2026-03-02 d",
            "2 2026-03-04 2026-03-04 2026-03-04 America/New_York 1 2026-03-04 e",
            "3 2026-03-02 2026-03-02 2026-03-02 UTC 1 2026-03-02 f",
        ]
    );
    assert_eq!(
        seen(&db, "by_week").await,
        [
            "1 2026-02-23 2026-02-23 2026-03-01 Asia/Tokyo 1 2026-03-01 a",
            "1 2026-03-02 2026-03-02 2026-03-08 Asia/Tokyo 2 2026-03-02,2026-03-03 c",
            "2 2026-03-02 2026-03-02 2026-03-08 - 2 2026-03-02,2026-03-04 e",
            "3 2026-03-02 2026-03-02 2026-03-08 UTC 1 2026-03-02 f",
        ]
    );
    assert_eq!(
        seen(&db, "by_window").await,
        [
            "1 2026-03-01 2026-02-27 2026-03-01 Asia/Tokyo 1 2026-03-01 a",
            "1 2026-03-02 2026-02-28 2026-03-02 Asia/Tokyo 2 2026-03-01,2026-03-02 b",
            "1 2026-03-03 2026-03-01 2026-03-03 Asia/Tokyo 3 2026-03-01,2026-03-02,2026-03-03 c",
            "2 2026-03-02 2026-02-28 2026-03-02 Europe/Berlin 1 2026-03-02 d",
            "2 2026-03-04 2026-03-02 2026-03-04 - 2 2026-03-02,2026-03-04 e",
            "3 2026-03-02 2026-02-28 2026-03-02 UTC 1 2026-03-02 f",
        ]
    );
}

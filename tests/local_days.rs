//! Local days: a job whose rows carry their own zone (`zone_column`, an
//! IANA name or an offset in minutes) groups each reading in its local day,
//! DST-correct, beside a running daemon; an unknown zone never fails the
//! application's insert and is counted; a change of zone regroups both days.

use crate::util::{Daemon, TestDb, config, job_on, run_ok, text, wait_settled};

/// Readings every 10 minutes over the days around both 2026 DST changes of
/// Europe and the US, for each (user, zone) of `zones` (a VALUES list).
fn readings(table: &str, zone_column: &str, zones: &str) -> String {
    format!(
        "INSERT INTO {table} (user_id, recorded_at, metric, value, unit, {zone_column})
         SELECT z.u, t, 'heart_rate', 60 + (extract(epoch FROM t)::bigint / 60) % 100, 'bpm', z.zone
         FROM (VALUES {zones}) z(u, zone),
              unnest(ARRAY['2026-03-07', '2026-03-28', '2026-10-24', '2026-10-31']::timestamptz[]) AS s(start),
              generate_series(s.start, s.start + interval '3 days', interval '10 minutes') t"
    )
}

/// Per user and local day: how many readings, and the latest one's value
/// (latest: greatest time, then id), computed from scratch with `zone_sql`
/// (the zone each row is read in).
fn from_scratch(table: &str, zone_sql: &str) -> String {
    format!(
        "SELECT user_id, (recorded_at AT TIME ZONE {zone_sql})::date::text, count(*)::int,
                (array_agg(value ORDER BY recorded_at DESC, id DESC))[1]
         FROM {table} GROUP BY 1, 2 ORDER BY 1, 2"
    )
}

fn written(table: &str) -> String {
    format!("SELECT user_id, day::text, sample_count + rejected_count, last_value FROM {table} ORDER BY 1, 2")
}

async fn days(db: &TestDb, sql: &str) -> Vec<(i64, String, i32, f64)> {
    let rows = db.client.query(sql, &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
}

#[tokio::test]
async fn each_reading_is_grouped_in_its_own_local_day_across_dst_and_a_zone_change_regroups_both_days() {
    let db = TestDb::new().await;
    let raw = |table: &str, zone: &str| {
        format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, user_id bigint, recorded_at timestamptz NOT NULL,
                metric text, value double precision, unit text, {zone});
             CREATE INDEX ON {table} (user_id, recorded_at);"
        )
    };
    let daily = include_str!("../runner/src/db/reference/vitals_daily.sql");
    db.client.batch_execute(&raw("named", "zone text")).await.unwrap();
    db.client.batch_execute(&raw("offsets", "minutes int")).await.unwrap();
    db.client.batch_execute(&daily.replace("vitals_daily", "named_daily")).await.unwrap();
    db.client.batch_execute(&daily.replace("vitals_daily", "offsets_daily")).await.unwrap();
    let jobs = [
        job_on("named", "vitals.wasm", "named", "named_daily", "recorded_at", "zone_column = \"zone\""),
        job_on("offsets", "vitals.wasm", "offsets", "offsets_daily", "recorded_at", "zone_column = \"minutes\""),
    ];
    let (_dir, config) = config(&db.url, &jobs.concat());
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    // Tokyo, Berlin, New York, a zone Postgres does not know, none.
    let named = "(1, 'Asia/Tokyo'), (2, 'Europe/Berlin'), (3, 'America/New_York'), (4, 'Mars/Olympus'), (5, NULL)";
    db.client.batch_execute(&readings("named", "zone", named)).await.expect("an unknown zone never fails the insert");
    let offsets = "(1, 330), (2, -300), (3, 840), (4, 5000), (5, NULL::int)";
    db.client.batch_execute(&readings("offsets", "minutes", offsets)).await.unwrap();
    wait_settled(&db, 120).await;

    let named_zone = "(CASE WHEN zone IN (SELECT name FROM pg_timezone_names) THEN zone ELSE 'UTC' END)";
    let offset_zone =
        "(CASE WHEN minutes BETWEEN -1080 AND 1080 THEN make_interval(mins => minutes) ELSE interval '0' END)";
    let expected = days(&db, &from_scratch("named", named_zone)).await;
    assert!(expected.len() >= 5 * 16, "{}", expected.len());
    // New York's fall-back day has 25 hours of readings, its spring-forward
    // day 23, the day before each 24 (the four are wholly inside the series).
    let ny = |day: &str| expected.iter().find(|d| d.0 == 3 && d.1 == day).unwrap().2;
    assert_eq!((ny("2026-03-07"), ny("2026-03-08")), (144, 138), "{expected:?}");
    assert_eq!((ny("2026-10-31"), ny("2026-11-01")), (144, 150), "{expected:?}");
    assert_eq!(days(&db, &written("named_daily")).await, expected);
    assert_eq!(days(&db, &written("offsets_daily")).await, days(&db, &from_scratch("offsets", offset_zone)).await);

    // A zone corrected on past rows: their old and their new days both follow.
    db.client
        .execute("UPDATE named SET zone = 'America/Los_Angeles' WHERE user_id = 3 AND recorded_at < '2026-03-09'", &[])
        .await
        .unwrap();
    db.client.execute("UPDATE offsets SET minutes = -600 WHERE user_id = 4", &[]).await.unwrap();
    wait_settled(&db, 120).await;
    assert_eq!(days(&db, &written("named_daily")).await, days(&db, &from_scratch("named", named_zone)).await);
    assert_eq!(days(&db, &written("offsets_daily")).await, days(&db, &from_scratch("offsets", offset_zone)).await);
    // Unknown zones are counted where an operator looks: the console,
    let unknown = db.count("SELECT count(*) FROM named WHERE user_id IN (4, 5)").await;
    let (_, console) = crate::util::http_get(&daemon.http_address().await, "/").await;
    let said =
        format!("{unknown} row(s) or user zone entr(ies) with an unknown zone: grouped in the job's timezone, UTC");
    assert!(console.contains(&said), "{console}");
    daemon.stop().await;

    // `check` and `status`.
    let check = text(&run_ok(&config, &["check"]).await);
    assert!(check.contains(&format!("{unknown} raw row(s) with an unknown zone")), "{check}");
    assert!(check.contains("zone: each row's zone, an IANA name"), "{check}");
    let status: serde_json::Value = serde_json::from_str(&text(&run_ok(&config, &["status", "--json"]).await)).unwrap();
    let named_job = status["jobs"].as_array().unwrap().iter().find(|j| j["job"] == "named").unwrap();
    assert_eq!(named_job["unknown_zones"], unknown, "{status}");
}

#[tokio::test]
async fn each_users_zone_comes_from_their_table_and_a_change_to_it_regroups_their_days() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE readings (id bigserial PRIMARY KEY, user_id bigint, recorded_at timestamptz NOT NULL,
                 metric text, value double precision, unit text);
             CREATE INDEX ON readings (user_id, recorded_at);
             CREATE TABLE zones (user_id bigint NOT NULL, zone text, valid_from timestamptz NOT NULL);
             INSERT INTO zones VALUES (1, 'Asia/Tokyo', '2000-01-01Z'), (2, 'Europe/Berlin', '2000-01-01Z'),
                 (2, 'America/New_York', '2026-03-29 12:00Z'), (4, 'Mars/Olympus', '2000-01-01Z');
             {}",
            include_str!("../runner/src/db/reference/vitals_daily.sql").replace("vitals_daily", "local_daily")
        ))
        .await
        .unwrap();
    let zones = "[jobs.local.user_zones]\ntable = \"zones\"\nfrom_column = \"valid_from\"";
    let (_dir, config) =
        config(&db.url, &job_on("local", "vitals.wasm", "readings", "local_daily", "recorded_at", zones));
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    db.client
        .batch_execute(
            "INSERT INTO readings (user_id, recorded_at, metric, value, unit)
             SELECT u, t, 'heart_rate', 60 + (extract(epoch FROM t)::bigint / 60) % 100, 'bpm'
             FROM generate_series(1, 4) u,
                  unnest(ARRAY['2026-03-07', '2026-03-28', '2026-10-24', '2026-10-31']::timestamptz[]) AS s(start),
                  generate_series(s.start, s.start + interval '3 days', interval '10 minutes') t",
        )
        .await
        .unwrap();
    wait_settled(&db, 120).await;
    // The entry in effect at each reading's time; none, or unknown: UTC.
    let zone = "COALESCE((SELECT CASE WHEN z.zone IN (SELECT name FROM pg_timezone_names) THEN z.zone END FROM zones z
                 WHERE z.user_id = readings.user_id AND z.valid_from <= readings.recorded_at
                 ORDER BY z.valid_from DESC LIMIT 1), 'UTC')";
    let expected = days(&db, &from_scratch("readings", zone)).await;
    let berlin_then_ny = |day: &str| expected.iter().find(|d| d.0 == 2 && d.1 == day).map(|d| d.2);
    // 2026-03-29 is Berlin's until 12:00 UTC (13 h, after its 01:00 UTC
    // spring-forward), then New York's until its midnight (16 h): 29 hours.
    assert_eq!(berlin_then_ny("2026-03-29"), Some(29 * 6), "{expected:?}");
    assert_eq!(days(&db, &written("local_daily")).await, expected);

    // A user moves zones for good, another gets a first entry, a trip is undone.
    db.client
        .batch_execute(
            "UPDATE zones SET zone = 'America/Los_Angeles' WHERE user_id = 1;
             INSERT INTO zones VALUES (3, 'Asia/Kolkata', '2026-10-01Z');
             DELETE FROM zones WHERE user_id = 2 AND zone = 'America/New_York';",
        )
        .await
        .unwrap();
    wait_settled(&db, 120).await;
    assert_eq!(days(&db, &written("local_daily")).await, days(&db, &from_scratch("readings", zone)).await);
    daemon.stop().await;
    let check = text(&run_ok(&config, &["check"]).await);
    assert!(check.contains("1 user zone entr(ies) with an unknown zone"), "{check}");
    assert!(check.contains("each user's zone: zones.zone, the entry in effect"), "{check}");
}

/// An insert into a source whose rows carry their zones queues each user's
/// UTC days, as fixed-zone capture does (no zone looked up per row in the
/// application's statement); the runner turns them into the local days of
/// the user's rows when it takes them. Updates and deletes queue their
/// exact local days. `status` counts the keys not yet turned.
#[tokio::test]
async fn inserts_queue_utc_days_that_the_runner_turns_into_local_days() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE named (id bigserial PRIMARY KEY, user_id bigint, recorded_at timestamptz NOT NULL,
                 metric text, value double precision, unit text, zone text);
             CREATE INDEX ON named (user_id, recorded_at);
             {}",
            include_str!("../runner/src/db/reference/vitals_daily.sql").replace("vitals_daily", "named_daily")
        ))
        .await
        .unwrap();
    // A batch of one: the keys are turned one per peek, and all are.
    let job =
        job_on("named", "vitals.wasm", "named", "named_daily", "recorded_at", "zone_column = \"zone\"\nbatch_size = 1");
    let (_dir, config) = config(&db.url, &job);
    run_ok(&config, &["migrate"]).await;
    // One UTC day, two Tokyo days (+9 h): 10:00 UTC is 19:00 on the 10th,
    // 20:00 UTC is 05:00 on the 11th. A New York user's 02:00 UTC is the
    // 9th there (-5 h).
    db.client
        .batch_execute(
            "INSERT INTO named (user_id, recorded_at, metric, value, unit, zone) VALUES
                 (1, '2026-03-10 10:00Z', 'heart_rate', 60, 'bpm', 'Asia/Tokyo'),
                 (1, '2026-03-10 20:00Z', 'heart_rate', 61, 'bpm', 'Asia/Tokyo'),
                 (2, '2026-03-10 02:00Z', 'heart_rate', 62, 'bpm', 'America/New_York')",
        )
        .await
        .unwrap();
    let queued = |table: &str| format!("SELECT count(*) FROM {table} WHERE job = 'named'");
    assert_eq!(db.count(&queued("runner_changes_utc")).await, 2, "one key per user and UTC day");
    assert_eq!(db.count(&queued("runner_changes")).await, 0);
    let status: serde_json::Value = serde_json::from_str(&text(&run_ok(&config, &["status", "--json"]).await)).unwrap();
    assert_eq!(status["jobs"][0]["queue"]["pending"], 2, "{status}");

    run_ok(&config, &["run", "--once"]).await;
    let expected = vec![
        (1, "2026-03-10".to_string(), 1, 60.0),
        (1, "2026-03-11".to_string(), 1, 61.0),
        (2, "2026-03-09".to_string(), 1, 62.0),
    ];
    assert_eq!(days(&db, &written("named_daily")).await, expected);
    assert_eq!(db.count(&queued("runner_changes_utc")).await, 0);
    assert_eq!(db.count(&queued("runner_changes")).await, 0);

    // A move to Berlin (+1 h): 20:00 UTC is then the 10th, 21:00 there.
    // Queued exactly: the old day and the new one.
    db.client.batch_execute("UPDATE named SET zone = 'Europe/Berlin' WHERE value = 61").await.unwrap();
    assert_eq!(db.count(&queued("runner_changes_utc")).await, 0);
    let keys = db.client.query("SELECT day::text FROM runner_changes ORDER BY 1", &[]).await.unwrap();
    let keys: Vec<String> = keys.iter().map(|r| r.get(0)).collect();
    assert_eq!(keys, ["2026-03-10", "2026-03-11"]);
    run_ok(&config, &["run", "--once"]).await;
    assert_eq!(
        days(&db, &written("named_daily")).await,
        [(1, "2026-03-10".to_string(), 2, 61.0), (2, "2026-03-09".to_string(), 1, 62.0)]
    );
}

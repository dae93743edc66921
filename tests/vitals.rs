//! The vitals rules of the spec, checked on rows in Postgres after
//! `runner migrate` and `runner run --once`.

use std::path::PathBuf;

use crate::util::{
    TestDb, built_plugin, config_with_plugin_file, job, migrated, plugins_dir, run_ok, vitals_daily_text,
};

const VITALS: &str = "vitals.wasm";

/// The three vitals plugins: Rust, Python (componentize-py) and JavaScript
/// (componentize-js), each with its `plugin_version` prefix.
fn vitals_plugins() -> [(PathBuf, &'static str); 3] {
    [
        (plugins_dir().join("vitals.wasm"), "vitals@1.1.0+sha256:"),
        (built_plugin("vitals_py.wasm"), "vitals-py@1.1.0+sha256:"),
        (built_plugin("vitals_js.wasm"), "vitals-js@1.1.0+sha256:"),
    ]
}

/// (metric, unit, sample_count, rejected_count, min, max, avg, last)
type Daily = (String, Option<String>, i32, i32, Option<f64>, Option<f64>, Option<f64>, Option<f64>);

async fn daily(db: &TestDb, user: i64, day: &str) -> Vec<Daily> {
    db.client
        .query(
            "SELECT metric, unit, sample_count, rejected_count, min_value, max_value, avg_value, last_value
             FROM vitals_daily WHERE user_id = $1 AND day = $2::text::date ORDER BY metric",
            &[&user, &day],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)))
        .collect()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

async fn insert(db: &TestDb, rows: &[(i64, &str, &str, Option<f64>, &str)]) {
    for (user, at, metric, value, unit) in rows {
        db.client
            .execute(
                "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, $2::text::timestamptz, $3, $4, $5)",
                &[user, at, metric, value, unit],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn every_vitals_rule_on_rows_in_postgres_rust() {
    let [(file, version), ..] = vitals_plugins();
    every_vitals_rule(&file, version).await;
}

#[tokio::test]
async fn every_vitals_rule_on_rows_in_postgres_python() {
    let [_, (file, version), _] = vitals_plugins();
    every_vitals_rule(&file, version).await;
}

#[tokio::test]
async fn every_vitals_rule_on_rows_in_postgres_javascript() {
    let [.., (file, version)] = vitals_plugins();
    every_vitals_rule(&file, version).await;
}

#[tokio::test]
async fn the_three_vitals_plugins_write_the_same_daily_rows() {
    let mut results = Vec::new();
    for (file, _) in vitals_plugins() {
        let db = TestDb::new().await;
        let (_dir, config) = config_with_plugin_file(&db.url, &job("vitals", VITALS, ""), &file, VITALS);
        run_ok(&config, &["migrate"]).await;
        runner::db::seed::vitals(&db.client, 15, 2, chrono::NaiveDate::from_ymd_opt(2024, 3, 9).unwrap())
            .await
            .unwrap();
        run_ok(&config, &["run", "--once"]).await;
        results.push(vitals_daily_text(&db.client).await);
    }
    assert!(results[0].lines().count() > 100);
    assert_eq!(results[1], results[0], "Python differs from Rust");
    assert_eq!(results[2], results[0], "JavaScript differs from Rust");
}

async fn every_vitals_rule(file: &std::path::Path, version_prefix: &str) {
    let db = TestDb::new().await;
    let (_dir, config) = config_with_plugin_file(&db.url, &job("vitals", VITALS, ""), file, VITALS);
    run_ok(&config, &["migrate"]).await;
    let day = "2024-03-10";
    insert(
        &db,
        &[
            (1, "2024-03-10 08:00Z", "heart_rate", Some(60.0), "bpm"),
            (1, "2024-03-10 09:00Z", "heart_rate", Some(80.0), " BPM "),
            (1, "2024-03-10 10:00Z", "heart_rate", None, "bpm"),
            (1, "2024-03-10 10:30Z", "heart_rate", Some(f64::NAN), "bpm"),
            (1, "2024-03-10 10:45Z", "heart_rate", Some(f64::INFINITY), "bpm"),
            (1, "2024-03-10 11:00Z", "heart_rate", Some(10.0), "bpm"),
            (1, "2024-03-10 12:00Z", "heart_rate", Some(70.0), "mmHg"),
            (1, "2024-03-10 08:00Z", "systolic_bp", Some(16.0), "kPa"),
            (1, "2024-03-10 09:00Z", "systolic_bp", Some(130.0), "mmHg"),
            (1, "2024-03-10 08:00Z", "spo2", Some(0.97), "fraction"),
            (1, "2024-03-10 09:00Z", "spo2", Some(101.0), "%"),
            (1, "2024-03-10 08:00Z", "temperature", Some(98.6), "F"),
            (1, "2024-03-10 06:00Z", "weight", Some(154.0), "lb"),
            (1, "2024-03-10 07:00Z", "weight", Some(70.0), "kg"),
            (1, "2024-03-10 07:00Z", "weight", Some(72.0), "kg"), // same time, greater id: latest
            (1, "2024-03-10 08:00Z", "steps", Some(5000.0), "count"),
            (1, "2024-03-10 08:00Z", "respiratory_rate", Some(0.0), "breaths/min"),
            (1, "2024-03-10 23:59:59Z", "diastolic_bp", Some(10.0), "kPa"),
            (1, "2024-03-11 00:00:00Z", "diastolic_bp", Some(80.0), "mmHg"),
            (2, "2024-03-10 12:00Z", "heart_rate", Some(90.0), "bpm"),
        ],
    )
    .await;
    // A stale daily row the new result does not contain: replaced as a whole.
    db.client
        .execute(
            "INSERT INTO vitals_daily (user_id, day, metric, sample_count) VALUES (1, '2024-03-10', 'glucose', 3)",
            &[],
        )
        .await
        .unwrap();

    run_ok(&config, &["run", "--once"]).await;

    let rows = daily(&db, 1, day).await;
    let metrics: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        metrics,
        ["diastolic_bp", "heart_rate", "respiratory_rate", "spo2", "systolic_bp", "temperature", "weight"]
    );
    let get = |m: &str| rows.iter().find(|r| r.0 == m).unwrap().clone();

    let hr = get("heart_rate");
    assert_eq!((hr.1.as_deref(), hr.2, hr.3), (Some("bpm"), 2, 5), "{hr:?}");
    assert_eq!((hr.4, hr.5, hr.6, hr.7), (Some(60.0), Some(80.0), Some(70.0), Some(80.0)));

    let sys = get("systolic_bp");
    assert_eq!((sys.1.as_deref(), sys.2, sys.3), (Some("mmHg"), 2, 0));
    assert!(close(sys.4, 16.0 * 7.50062) && close(sys.5, 130.0) && close(sys.7, 130.0), "{sys:?}");
    assert!(close(sys.6, (16.0 * 7.50062 + 130.0) / 2.0));

    let spo2 = get("spo2");
    assert_eq!((spo2.1.as_deref(), spo2.2, spo2.3), (Some("%"), 1, 1));
    assert!(close(spo2.7, 97.0), "{spo2:?}");

    let temp = get("temperature");
    assert_eq!(temp.1.as_deref(), Some("C"));
    assert!(close(temp.6, 37.0), "{temp:?}");

    let weight = get("weight");
    assert_eq!((weight.2, weight.3), (3, 0));
    assert!(close(weight.4, 154.0 * 0.45359237) && close(weight.5, 72.0), "{weight:?}");
    assert_eq!(weight.7, Some(72.0), "a tie on timestamp goes to the greatest id");

    let rr = get("respiratory_rate");
    assert_eq!((rr.2, rr.3, rr.4, rr.5, rr.6, rr.7), (0, 1, None, None, None, None));

    // 10 kPa = 75 mmHg on the 10th; the 80 mmHg reading at midnight UTC is the 11th's.
    let dia = get("diastolic_bp");
    assert_eq!(dia.2, 1);
    assert!(close(dia.7, 75.0062), "{dia:?}");
    let next = daily(&db, 1, "2024-03-11").await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].7, Some(80.0));

    assert_eq!(daily(&db, 2, day).await.len(), 1);
    assert_eq!(db.count(crate::util::QUEUED).await, 0);
    let versions = db
        .count(&format!(
            "SELECT count(DISTINCT plugin_version) FROM vitals_daily WHERE plugin_version LIKE '{version_prefix}%'"
        ))
        .await;
    assert_eq!(versions, 1);

    // A late reading recomputes the whole day from all its rows.
    insert(&db, &[(1, "2024-03-10 20:00Z", "heart_rate", Some(100.0), "bpm")]).await;
    run_ok(&config, &["run", "--once"]).await;
    let hr = daily(&db, 1, day).await.into_iter().find(|r| r.0 == "heart_rate").unwrap();
    assert_eq!((hr.2, hr.3, hr.5, hr.6, hr.7), (3, 5, Some(100.0), Some(80.0), Some(100.0)));
    assert_eq!(db.count(crate::util::QUEUED).await, 0);
}

#[tokio::test]
async fn days_follow_the_jobs_time_zone() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", VITALS, "timezone = \"America/New_York\"")).await;
    // 02:00 UTC on the 11th is 22:00 on the 10th in New York (EDT after 10 March 2024... EST before).
    insert(
        &db,
        &[
            (1, "2024-03-11 02:00Z", "heart_rate", Some(60.0), "bpm"),
            (1, "2024-03-10 12:00Z", "heart_rate", Some(80.0), "bpm"),
            (1, "2024-03-11 12:00Z", "heart_rate", Some(100.0), "bpm"),
        ],
    )
    .await;
    run_ok(&config, &["run", "--once"]).await;
    let tenth = daily(&db, 1, "2024-03-10").await;
    assert_eq!((tenth[0].2, tenth[0].6), (2, Some(70.0)), "{tenth:?}");
    let eleventh = daily(&db, 1, "2024-03-11").await;
    assert_eq!((eleventh[0].2, eleventh[0].6), (1, Some(100.0)), "{eleventh:?}");
}

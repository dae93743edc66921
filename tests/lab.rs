//! The lab rules of the spec, on rows in Postgres.

use crate::util::{TestDb, job_on, migrated, run_ok};

/// (unit, result_count, rejected_count, min, max, latest, flag, abnormal_count)
type Daily = (String, i32, i32, Option<f64>, Option<f64>, Option<f64>, Option<String>, i32);

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn every_lab_rule_on_rows_in_postgres() {
    let db = TestDb::new().await;
    let job = job_on("lab", "lab.wasm", "lab_raw", "lab_daily", "collected_at", "");
    let (_dir, config) = migrated(&db, &job).await;
    db.client
        .batch_execute(
            "INSERT INTO lab_raw (user_id, collected_at, test_code, value, unit, ref_low, ref_high) VALUES
                -- glucose: mmol/L converted with its bounds; another unit and NULL rejected
                (1, '2024-03-10 08:00Z', '2345-7', 5.0, 'mmol/L', 3.9, 5.5),
                (1, '2024-03-10 09:00Z', '2345-7', 110, 'mg/dL', 70, 100),
                (1, '2024-03-10 09:30Z', '2345-7', 1.0, 'g/L', NULL, NULL),
                (1, '2024-03-10 09:45Z', '2345-7', NULL, 'mg/dL', NULL, NULL),
                -- creatinine: µmol/L and umol/L (any ASCII case); Greek capital MU is not µ
                (1, '2024-03-10 08:00Z', '2160-0', 88.42, ' µmol/L', NULL, 106.104),
                (1, '2024-03-10 09:00Z', '2160-0', 176.84, 'UMOL/L', 53.052, NULL),
                (1, '2024-03-10 10:00Z', '2160-0', 100, 'ΜMOL/L', NULL, NULL),
                -- hemoglobin: g/L ÷ 10, low; the latest has no bounds: flag NULL
                (1, '2024-03-10 08:00Z', '718-7', 120, 'g/L', 130, 170),
                (1, '2024-03-10 09:00Z', '718-7', 14, 'g/dL', NULL, NULL),
                -- cholesterol: a tie on time goes to the greatest id
                (1, '2024-03-10 10:00Z', '2093-3', 180, 'mg/dL', NULL, 200),
                (1, '2024-03-10 10:00Z', '2093-3', 250, 'mg/dL', NULL, 200),
                -- unknown code: the unit of its latest finite result
                (1, '2024-03-10 08:00Z', 'X-1', 1.0, 'ng/mL', NULL, NULL),
                (1, '2024-03-10 09:00Z', 'X-1', 2.0, 'NG/ML ', NULL, NULL),
                (1, '2024-03-10 10:00Z', 'X-1', 3.0, 'pg/mL', 1, 2),
                (1, '2024-03-10 11:00Z', 'X-1', 'NaN', 'mIU/L', NULL, NULL),
                -- unknown code, no finite result: the unit of its latest result; nothing accepted
                (1, '2024-03-10 08:00Z', 'X-2', NULL, 'a', NULL, NULL),
                (1, '2024-03-10 09:00Z', 'X-2', 'Infinity', 'b', NULL, NULL)",
        )
        .await
        .unwrap();
    run_ok(&config, &["run", "--once"]).await;

    let rows = db
        .client
        .query(
            "SELECT test_code, unit, result_count, rejected_count, min_value, max_value, latest_value, flag, abnormal_count
             FROM lab_daily WHERE user_id = 1 AND day = '2024-03-10' ORDER BY test_code",
            &[],
        )
        .await
        .unwrap();
    let get = |code: &str| -> Daily {
        let r = rows.iter().find(|r| r.get::<_, String>(0) == code).unwrap_or_else(|| panic!("no row for {code}"));
        (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8))
    };
    assert_eq!(rows.len(), 6);

    let g = get("2345-7");
    assert_eq!((g.0.as_str(), g.1, g.2, g.7), ("mg/dL", 2, 2, 1), "{g:?}");
    assert!(close(g.3, 90.08) && close(g.4, 110.0) && close(g.5, 110.0), "{g:?}");
    assert_eq!(g.6.as_deref(), Some("H"));

    let c = get("2160-0");
    assert_eq!((c.0.as_str(), c.1, c.2, c.7), ("mg/dL", 2, 1, 0), "{c:?}");
    assert!(close(c.3, 1.0) && close(c.5, 2.0), "{c:?}");
    assert_eq!(c.6.as_deref(), Some("N"), "one-sided range: only ref_low is checked");

    let h = get("718-7");
    assert_eq!(
        (h.0.as_str(), h.1, h.3, h.5, h.6.as_deref(), h.7),
        ("g/dL", 2, Some(12.0), Some(14.0), None, 1),
        "{h:?}"
    );

    let t = get("2093-3");
    assert_eq!((t.5, t.6.as_deref(), t.7), (Some(250.0), Some("H"), 1), "{t:?}");

    let x = get("X-1");
    assert_eq!((x.0.as_str(), x.1, x.2, x.5, x.6.as_deref()), ("pg/mL", 1, 3, Some(3.0), Some("H")), "{x:?}");

    let none = get("X-2");
    assert_eq!(none, ("b".to_string(), 0, 2, None, None, None, None, 0));

    assert_eq!(db.count(crate::util::QUEUED).await, 0);
}

//! The nutrition rules of the spec, on rows in Postgres.

use crate::util::{TestDb, job_on, migrated, run_ok};

#[tokio::test]
async fn every_nutrition_rule_on_rows_in_postgres() {
    let db = TestDb::new().await;
    let job = job_on("nutrition", "nutrition.wasm", "nutrition_raw", "nutrition_daily", "consumed_at", "");
    let (_dir, config) = migrated(&db, &job).await;
    db.client
        .batch_execute(
            "INSERT INTO nutrition_raw (user_id, consumed_at, meal, calories, protein_g, carbs_g, fat_g, fiber_g, sugar_g, sodium_mg, water_ml) VALUES
                (1, '2024-03-10 08:00Z', 'breakfast', 400, 20, 50, 10, NULL, NULL, NULL, 250),
                (1, '2024-03-10 12:00Z', ' Lunch ', 600, 30, 70, 20, 5, NULL, 800, NULL),
                (1, '2024-03-10 13:00Z', 'brunch', 300, 10, 10, 10, NULL, NULL, NULL, NULL),
                (1, '2024-03-10 15:00Z', 'snack', -5, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                (1, '2024-03-10 16:00Z', 'snack', NULL, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL),
                (1, '2024-03-10 19:00Z', 'dinner', NULL, NULL, NULL, 'Infinity', NULL, NULL, NULL, NULL),
                (2, '2024-03-10 08:00Z', 'elevenses', 100, 1, 1, 1, NULL, NULL, NULL, NULL),
                (3, '2024-03-10 08:00Z', 'SNACK', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 500)",
        )
        .await
        .unwrap();
    run_ok(&config, &["run", "--once"]).await;

    let row = |user: i64| {
        let client = &db.client;
        async move {
            client
                .query_one(
                    "SELECT entry_count, rejected_count, meals_logged, calories, protein_g, carbs_g, fat_g, fiber_g, sugar_g,
                            sodium_mg, water_ml, protein_pct, carbs_pct, fat_pct, plugin_version
                     FROM nutrition_daily WHERE user_id = $1 AND day = '2024-03-10'",
                    &[&user],
                )
                .await
                .unwrap()
        }
    };
    let r = row(1).await;
    let counts: (i32, i32, i32) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(counts, (2, 4, 2), "two accepted entries, four rejected, two distinct meals");
    let sums: Vec<f64> = (3..11).map(|i| r.get(i)).collect();
    assert_eq!(sums, [1000.0, 50.0, 120.0, 30.0, 5.0, 0.0, 800.0, 250.0]);
    let energy = 4.0 * 50.0 + 4.0 * 120.0 + 9.0 * 30.0;
    let pct: (f64, f64, f64) = (r.get(11), r.get(12), r.get(13));
    assert!((pct.0 - 100.0 * 200.0 / energy).abs() < 1e-9, "{pct:?}");
    assert!((pct.1 - 100.0 * 480.0 / energy).abs() < 1e-9, "{pct:?}");
    assert!((pct.2 - 100.0 * 270.0 / energy).abs() < 1e-9, "{pct:?}");
    assert!(r.get::<_, String>(14).starts_with("nutrition@1.0.0+sha256:"));

    // Every entry rejected: still exactly one row, zero sums, NULL percentages.
    let r = row(2).await;
    assert_eq!((r.get::<_, i32>(0), r.get::<_, i32>(1), r.get::<_, i32>(2)), (0, 1, 0));
    assert_eq!(r.get::<_, f64>(3), 0.0);
    assert_eq!(
        (r.get::<_, Option<f64>>(11), r.get::<_, Option<f64>>(12), r.get::<_, Option<f64>>(13)),
        (None, None, None)
    );

    // No macro energy (water only): NULL percentages; NULL nutrients count as 0.
    let r = row(3).await;
    assert_eq!((r.get::<_, i32>(0), r.get::<_, f64>(3), r.get::<_, f64>(10)), (1, 0.0, 500.0));
    assert_eq!(r.get::<_, Option<f64>>(11), None);

    assert_eq!(db.count("SELECT count(*) FROM nutrition_daily").await, 3);
    assert_eq!(db.count(crate::util::QUEUED).await, 0);
}

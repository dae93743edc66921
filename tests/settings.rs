//! Job settings (`[jobs.<name>.settings]`, WIT 0.2): they reach the plugin
//! and name the rows they produced, `check` refuses what does not fit with
//! file and line, a change applies live (a bad one keeps the old), and a
//! plugin of a package version the runner does not provide is refused
//! clearly. Plugins of 0.1.0 (faulty, vitals-py, vitals-js) run unchanged
//! in the other tests.

use crate::util::{Daemon, TestDb, config_with_own_plugins, http_get, job, migrated, run_ok, runner, text, wait_count};

/// Inserts one heart-rate reading of `bpm` for `user` on 2024-03-10.
async fn reading(db: &TestDb, user: i64, bpm: f64) {
    db.client
        .execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, '2024-03-10 10:00Z', 'heart_rate', $2, 'bpm')",
            &[&user, &bpm],
        )
        .await
        .unwrap();
}

/// `(sample_count, rejected_count, plugin_version)` of a user's heart-rate row.
async fn heart_rate(db: &TestDb, user: i64) -> (i32, i32, String) {
    let row = db
        .client
        .query_one(
            "SELECT sample_count, rejected_count, plugin_version FROM vitals_daily WHERE user_id = $1 AND metric = 'heart_rate'",
            &[&user],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The 1-based line of the first line of `config` that starts with `start`.
fn line_of(config: &std::path::Path, start: &str) -> usize {
    let text = std::fs::read_to_string(config).unwrap();
    text.lines().position(|l| l.starts_with(start)).expect(start) + 1
}

#[tokio::test]
async fn settings_reach_the_plugin_and_name_the_rows_they_produced() {
    let db = TestDb::new().await;
    let jobs = format!("{}[jobs.vitals.settings]\nheart_rate_max = 100\n", job("vitals", "vitals.wasm", ""));
    let (_dir, config) = migrated(&db, &jobs).await;
    reading(&db, 1, 60.0).await;
    reading(&db, 1, 150.0).await;

    let check = text(&run_ok(&config, &["check"]).await);
    assert!(check.contains(r#""heart_rate_max":100.0,"heart_rate_min":20.0,"#), "{check}");
    run_ok(&config, &["run", "--once"]).await;
    let (samples, rejected, version) = heart_rate(&db, 1).await;
    assert_eq!((samples, rejected), (1, 1), "150 bpm is above the job's heart_rate_max");
    let (file_version, settings) = version.split_once("+settings:").unwrap_or_else(|| panic!("{version}"));
    assert!(file_version.starts_with("vitals@1.1.0+sha256:"), "{version}");
    assert_eq!(settings.len(), 12, "{version}");
    assert!(check.contains(&version), "check names the same version: {check}");

    // Without settings: the spec's range, and the file's version alone.
    let (_dir2, plain) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    reading(&db, 2, 150.0).await;
    run_ok(&plain, &["run", "--once"]).await;
    let (samples, rejected, version) = heart_rate(&db, 2).await;
    assert_eq!((samples, rejected, version.as_str()), (1, 0, file_version));
}

#[tokio::test]
async fn check_refuses_settings_that_do_not_fit_with_file_and_line() {
    let db = TestDb::new().await;
    let jobs = format!(
        "{}[jobs.vitals.settings]\nheart_rate_min = \"low\"\nheart_rate_maxx = 250\n",
        job("vitals", "vitals.wasm", "")
    );
    let (_dir, config) = migrated(&db, &jobs).await;
    let out = runner(&config, &["check"]).output().await.unwrap();
    let out_text = text(&out);
    assert!(!out.status.success(), "{out_text}");
    let file = config.display();
    let (min, maxx) = (line_of(&config, "heart_rate_min"), line_of(&config, "heart_rate_maxx"));
    for expected in [
        format!("{file}:{maxx}: setting `heart_rate_maxx` is not one the plugin reads (it declares: heart_rate_min,"),
        format!(
            "{file}:{min}: setting `heart_rate_min` must be a number (lowest plausible heart_rate, bpm), got the string \"low\""
        ),
    ] {
        assert!(out_text.contains(&expected), "expected {expected:?} in:\n{out_text}");
    }

    // A plugin built against 0.1.0 reads no settings: the hint says why.
    let jobs = format!("{}[jobs.faulty.settings]\nstrict = true\n", job("faulty", "faulty.wasm", ""));
    let (_dir, config) = migrated(&db, &jobs).await;
    let out = text(&runner(&config, &["check"]).output().await.unwrap());
    let strict = line_of(&config, "strict");
    for expected in [
        format!(
            "{}:{strict}: setting `strict` is not one the plugin reads (it declares no settings)",
            config.display()
        ),
        "is built against health:aggregation@0.1.0, which has no settings".to_string(),
    ] {
        assert!(out.contains(&expected), "expected {expected:?} in:\n{out}");
    }

    // A value that is no setting value at all is a config error, with its line.
    let bad = std::fs::read_to_string(&config).unwrap().replace("strict = true", "strict = [1, 2]");
    std::fs::write(&config, bad).unwrap();
    let out = runner(&config, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let expected =
        format!("line {strict}: jobs.faulty.settings.strict: expected a string, number or boolean, got array");
    assert!(text(&out).contains(&expected), "{}", text(&out));
}

#[tokio::test]
async fn a_settings_change_applies_live_and_a_bad_one_keeps_the_old() {
    let db = TestDb::new().await;
    let (_dir, config, _plugins) =
        config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let original = std::fs::read_to_string(&config).unwrap();
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Job started.", 1, 60).await;
    let completed = |user: i64| format!("SELECT count(*) FROM vitals_daily WHERE user_id = {user}");

    reading(&db, 1, 150.0).await;
    wait_count(&db, &completed(1), 1, 60).await;
    let (_, rejected, before) = heart_rate(&db, 1).await;
    assert_eq!(rejected, 0);

    std::fs::write(&config, format!("{original}\n[jobs.vitals.settings]\nheart_rate_max = 100\n")).unwrap();
    daemon.wait_for("Settings applied.", 1, 60).await;
    reading(&db, 2, 150.0).await;
    wait_count(&db, &completed(2), 1, 60).await;
    let (_, rejected, after) = heart_rate(&db, 2).await;
    assert_eq!(rejected, 1, "the new heart_rate_max applies to the next group");
    assert!(after.starts_with(&format!("{before}+settings:")), "{before} -> {after}");

    // A value of the wrong type: refused, said, and the previous settings stay.
    std::fs::write(&config, format!("{original}\n[jobs.vitals.settings]\nheart_rate_max = \"high\"\n")).unwrap();
    daemon.wait_for("Settings rejected; the previous settings stay in force.", 1, 60).await;
    let (_, plugins) = http_get(&addr, "/plugins").await;
    assert!(plugins.contains("setting `heart_rate_max` must be a number"), "{plugins}");
    assert!(plugins.contains(r#""heart_rate_max":100.0"#), "the live settings are shown: {plugins}");
    reading(&db, 3, 150.0).await;
    wait_count(&db, &completed(3), 1, 60).await;
    assert_eq!(heart_rate(&db, 3).await, (0, 1, after));

    // Edited back to the settings in force: the rejection is cleared.
    std::fs::write(&config, format!("{original}\n[jobs.vitals.settings]\nheart_rate_max = 100\n")).unwrap();
    daemon.wait_for("Settings are back to those in force; the rejection is cleared.", 1, 60).await;
    let (_, plugins) = http_get(&addr, "/plugins").await;
    assert!(plugins.contains(r#""last_reload_error":null"#), "{plugins}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_plugin_of_a_package_version_the_runner_lacks_is_refused_clearly() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) = config_with_own_plugins(&db.url, "", &[]);
    let future = wat::parse_str(
        r#"(component
            (import "health:aggregation/host@0.9.0" (instance (export "log" (func (param "message" string)))))
        )"#,
    )
    .unwrap();
    let file = plugins.join("future.wasm");
    std::fs::write(&file, future).unwrap();
    let out = runner(&config, &["plugin", "validate", file.to_str().unwrap()]).output().await.unwrap();
    assert!(!out.status.success());
    let expected = "is built against health:aggregation@0.9.0, which this runner does not provide (it provides 0.1.0, 0.2.0, 0.3.0, 0.4.0): upgrade the runner";
    assert!(text(&out).contains(expected), "{}", text(&out));
}

//! One instance per transaction, verified pure: a plugin that keeps state
//! between groups is caught by the probe at load (Rust and Python) or by
//! the check while running (state that shows only after several groups),
//! its groups then run on fresh instances, the groups it wrote are
//! recomputed, and every daily row ends as a fresh instance computes it.

use crate::util::{
    Daemon, TestDb, built_plugin, config_with_plugin_file, eventually, http_get, job, migrated, plugins_dir, run_ok,
    text, wait_http,
};

/// Readings for users `1..=users` on 2026-03-02: `user % 4 + 1` heart
/// rates and one step count each.
async fn readings(db: &TestDb, users: i64) {
    db.client
        .execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             SELECT u, '2026-03-02 08:00Z'::timestamptz + make_interval(mins => i), m, 60, 'bpm'
             FROM generate_series(1, $1::int8) u,
                  LATERAL (SELECT i, 'heart_rate' m FROM generate_series(1, (u % 4 + 1)::int) i
                           UNION ALL SELECT 0, 'steps') r",
            &[&users],
        )
        .await
        .unwrap();
}

/// Each daily row's count, and the same computed from the raw rows: a
/// fresh instance's result for every group.
async fn written_and_truth(db: &TestDb) -> (String, String) {
    let one = |sql: &str| {
        let sql = format!(
            "SELECT coalesce(string_agg(user_id || ' ' || day || ' ' || metric || ' ' || n, E'\\n' ORDER BY user_id, day, metric), '') FROM ({sql}) g"
        );
        async move { db.client.query_one(&sql, &[]).await.unwrap().get::<_, String>(0) }
    };
    let written = one("SELECT user_id, day, metric, sample_count n FROM vitals_daily").await;
    let truth = one(
        "SELECT user_id, (recorded_at AT TIME ZONE 'UTC')::date AS day, metric, count(*) n FROM vitals_raw GROUP BY 1, 2, 3",
    )
    .await;
    (written, truth)
}

async fn assert_every_row_fresh(db: &TestDb) {
    let (written, truth) = written_and_truth(db).await;
    assert!(!truth.is_empty());
    assert_eq!(written, truth, "daily rows differ from a fresh instance's results");
}

#[tokio::test]
async fn a_module_level_cache_is_caught_at_load_and_its_groups_run_on_fresh_instances() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("stateful", "stateful.wasm", "")).await;
    readings(&db, 40).await;

    let file = plugins_dir().join("stateful.wasm");
    let validated = run_ok(&config, &["plugin", "validate", file.to_str().unwrap(), "--job", "stateful"]).await;
    let said = text(&validated);
    assert!(said.contains("the plugin keeps state between groups"), "{said}");
    assert!(said.contains("column `sample_count`"), "names the first differing column: {said}");

    let out = run_ok(&config, &["run", "--once"]).await;
    let log = text(&out);
    assert!(log.contains("Plugin keeps state between groups"), "{log}");
    assert!(log.contains("column=sample_count"), "{log}");
    assert_every_row_fresh(&db).await;

    // Off, the probe does not run and nothing is said: a fresh instance per group.
    let (_dir, off) = migrated(&db, &job("stateful", "stateful.wasm", "reuse_instance = false")).await;
    db.client.batch_execute("DELETE FROM vitals_daily").await.unwrap();
    let log =
        text(&run_ok(&off, &["recompute", "--job", "stateful", "--from", "2026-03-02", "--to", "2026-03-02"]).await);
    assert!(!log.contains("keeps state"), "{log}");
    assert_every_row_fresh(&db).await;
}

#[tokio::test]
async fn a_python_module_level_cache_is_caught_at_load() {
    let db = TestDb::new().await;
    let jobs = job("stateful", "stateful_py.wasm", "");
    let (_dir, config) = config_with_plugin_file(&db.url, &jobs, &built_plugin("stateful_py.wasm"), "stateful_py.wasm");
    run_ok(&config, &["migrate"]).await;
    readings(&db, 12).await;

    let file = built_plugin("stateful_py.wasm");
    let said = text(&run_ok(&config, &["plugin", "validate", file.to_str().unwrap(), "--job", "stateful"]).await);
    assert!(said.contains("the plugin keeps state between groups"), "{said}");
    assert!(said.contains("column `sample_count`"), "{said}");

    let log = text(&run_ok(&config, &["run", "--once"]).await);
    assert!(log.contains("Plugin keeps state between groups"), "{log}");
    assert_every_row_fresh(&db).await;
}

#[tokio::test]
async fn state_that_shows_after_several_groups_is_caught_while_running_and_its_groups_are_recomputed() {
    let db = TestDb::new().await;
    // Transactions of 20 groups on one instance; one reused call in 40 checked:
    // the first transactions write wrong rows before the check finds it.
    let extra = "verify_every = 40\ntransaction_budget = \"10s\"\ngroups_per_transaction = 20\nbatch_size = 400";
    let (_dir, config) = migrated(&db, &job("stateful", "stateful_late.wasm", extra)).await;
    // A pure plugin's check passes: the probe at load sees three groups only.
    let file = plugins_dir().join("stateful_late.wasm");
    let said = text(&run_ok(&config, &["plugin", "validate", file.to_str().unwrap(), "--job", "stateful"]).await);
    assert!(said.contains("purity:        pure"), "{said}");
    readings(&db, 300).await;

    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    let ready = wait_http(&daemon, &addr, "/ready", 120, |status, body| {
        status == 200 && body.contains("\"degraded\"") && body.contains("keeps state between groups")
    })
    .await;
    assert!(ready.contains("sample_count"), "names the column: {ready}");
    daemon.wait_for("Plugin is not a function of its input", 1, 60).await;
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("Plugin is not a function of its input")).unwrap();
    assert!(line.contains("ERROR") && line.contains("job=stateful") && line.contains("column=sample_count"), "{line}");
    assert!(line.contains("plugin=stateful@0.1.0+sha256:") && line.contains("user="), "{line}");

    // Every row ends as a fresh instance computes it.
    let fresh = || async {
        let (written, truth) = written_and_truth(&db).await;
        if written == truth { Ok(()) } else { Err(written) }
    };
    eventually(120, fresh, |w| format!("daily rows never matched a fresh computation:\n{w}\nlog:\n{}", daemon.log()))
        .await;
    daemon.wait_for("Queued the groups this stateful plugin wrote", 1, 60).await;
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert!(metrics.contains("runner_plugin_stateful{job=\"stateful\"} 1"), "{metrics}");
    assert!(metrics.contains("runner_purity_differences_total{job=\"stateful\"} 1"), "{metrics}");
    // `runner status` asks the daemon.
    let at_daemon = config.with_file_name("status.toml");
    let pointed =
        std::fs::read_to_string(&config).unwrap().replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    std::fs::write(&at_daemon, pointed).unwrap();
    let status = text(&run_ok(&at_daemon, &["status"]).await);
    assert!(status.contains("keeps state between groups"), "{status}");

    // New rows keep being right: the file runs on fresh instances now.
    readings(&db, 330).await;
    db.client.batch_execute("DELETE FROM vitals_raw WHERE user_id <= 300").await.unwrap();
    eventually(120, fresh, |w| format!("new rows never matched:\n{w}")).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_group_that_fails_on_a_reused_instance_is_retried_on_a_fresh_one() {
    let db = TestDb::new().await;
    let extra = "transaction_budget = \"10s\"\ngroups_per_transaction = 20\nmax_attempts = 1";
    let (_dir, config) = migrated(&db, &job("stateful", "stateful_late.wasm", extra)).await;
    // A reading that traps an instance from its fourth group on.
    db.client
        .execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             SELECT u, '2026-03-02 08:00Z', 'trap_when_reused', 1, 'x' FROM generate_series(1, 30) u",
            &[],
        )
        .await
        .unwrap();
    let log = text(&run_ok(&config, &["run", "--once"]).await);
    assert!(!log.contains("keeps state"), "{log}");
    assert_eq!(db.count("SELECT count(*) FROM runner_group_failures").await, 0, "{log}");
    assert_every_row_fresh(&db).await;
}

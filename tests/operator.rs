//! The operator's surface over real HTTP and the command line: health,
//! readiness, pool, metrics and plugins while aggregating; `runner status`,
//! `retry-failed`, `seed`; JSON logs; SIGTERM mid-run.

use chrono::NaiveDate;

use crate::util::{
    Daemon, TestDb, config, config_with_own_plugins, http_get, job, migrated, run_ok, runner, text, wait_count,
};

#[tokio::test]
async fn endpoints_answer_while_aggregating_and_never_show_the_password() {
    let db = TestDb::new().await;
    // Trust authentication ignores the password, so it can be planted in the URL.
    let url = db.url.replacen("postgres@", "postgres:s3cret@", 1);
    let (_dir, config, plugins) =
        config_with_own_plugins(&url, &job("vitals", "vitals.wasm", "batch_size = 50"), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    runner::db::seed::vitals(&db.client, 60, 3, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()).await.unwrap();

    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    let mut seen = String::new();

    let (code, body) = http_get(&addr, "/health").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&addr, "/health/db-pool").await;
    assert_eq!(code, 200);
    let pool: serde_json::Value = serde_json::from_str(&body).unwrap();
    for key in ["status", "usage_percent", "in_use", "available", "waiting", "max"] {
        assert!(pool.get(key).is_some(), "{key} missing in {body}");
    }
    assert!(["healthy", "busy", "exhausted"].contains(&pool["status"].as_str().unwrap()));
    assert_eq!(pool["max"], 4);
    seen.push_str(&body);
    let (code, body) = http_get(&addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("runner_pool_connections{state=\"max\"} 4"), "{body}");
    seen.push_str(&body);

    crate::util::wait_settled(&db, 60).await;
    let (code, body) = http_get(&addr, "/ready").await;
    assert_eq!(code, 200, "{body}");
    seen.push_str(&body);
    // The queue gauges come from a snapshot up to 2 s old.
    let done = "runner_queue_groups{job=\"vitals\",status=\"pending\"} 0\n";
    let metrics = crate::util::wait_http(&daemon, &addr, "/metrics", 60, |_, m| m.contains(done)).await;
    for expected in [
        "runner_queue_groups{job=\"vitals\",status=\"failed\"} 0".to_string(),
        "runner_groups_total{job=\"vitals\",result=\"completed\"} 180".to_string(),
        "runner_group_seconds_bucket{job=\"vitals\",le=".to_string(),
        "runner_batch_seconds_count{job=\"vitals\"}".to_string(),
        "runner_rows_rejected_total{job=\"vitals\"}".to_string(),
        "runner_plugin_info{job=\"vitals\",version=\"vitals@1.1.0+sha256:".to_string(),
        "runner_queue_oldest_pending_seconds{job=\"vitals\"} 0".to_string(),
    ] {
        assert!(metrics.contains(&expected), "no `{expected}` in:\n{metrics}");
    }
    // The bound status and operating.md state: the pool of 4, + 3 beside it.
    let sessions: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND application_name IN ('runner', 'runner-operator', 'runner-maintenance')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((1..=7).contains(&sessions), "{sessions} runner sessions against a bound of 7");
    promtool_accepts(&metrics).await;
    seen.push_str(&metrics);
    let (code, body) = http_get(&addr, "/plugins").await;
    assert_eq!(code, 200);
    let plugins_json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let vitals = &plugins_json["jobs"][0];
    assert_eq!(vitals["job"], "vitals");
    assert!(vitals["plugin"]["version"].as_str().unwrap().starts_with("vitals@1.1.0+sha256:"));
    assert_eq!(vitals["plugin"]["hash"].as_str().unwrap().len(), 64);
    assert!(vitals["plugin"]["loaded_at_unix"].as_u64().unwrap() > 0);
    seen.push_str(&body);

    // Not ready while an enabled job has no plugin.
    std::fs::remove_file(plugins.join("vitals.wasm")).unwrap();
    daemon.wait_for("job paused", 1, 60).await;
    let (code, body) = http_get(&addr, "/ready").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"jobs_without_plugin\":[\"vitals\"]"), "{body}");

    let log = daemon.stop().await;
    assert!(!seen.contains("s3cret") && !log.contains("s3cret"), "the password leaked");
}

#[tokio::test]
async fn status_shows_the_queue_and_retry_failed_puts_rows_back() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", "max_attempts = 1")).await;
    for user in [1i64, 2, 13] {
        db.client
            .execute("INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, '2024-05-01 10:00Z', 'heart_rate', 60, 'bpm')", &[&user])
            .await
            .unwrap();
    }
    run_ok(&config, &["run", "--once"]).await;
    db.client.execute("INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES (3, now() - interval '90 seconds', 'heart_rate', 60, 'bpm')", &[]).await.unwrap();

    let out = text(&run_ok(&config, &["status"]).await);
    let line = out.lines().find(|l| l.starts_with("faulty")).unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["1", "0", "1"], "groups pending, in backoff, failed: {out}");
    assert!(line.contains("faulty@0.1.0+sha256:"), "{out}");

    assert!(out.contains("user 13 is refused"), "the most common errors: {out}");
    assert!(out.contains("runner session(s) connected; each runner holds at most"), "{out}");

    let json: serde_json::Value = serde_json::from_str(&text(&run_ok(&config, &["status", "--json"]).await)).unwrap();
    assert_eq!(json["jobs"][0]["queue"]["failed"], 1);
    assert_eq!(json["jobs"][0]["queue"]["pending"], 1);
    assert!(json["jobs"][0]["queue"]["oldest_pending_seconds"].as_f64().is_some(), "{json}");
    assert_eq!(json["jobs"][0]["top_errors"][0]["groups"], 1);

    let out = text(&run_ok(&config, &["retry-failed", "--job", "faulty", "--error-contains", "no such error"]).await);
    assert!(out.contains("0 failed group(s) of job faulty are queued again."), "{out}");
    let out = text(
        &run_ok(&config, &["retry-failed", "--job", "faulty", "--since", "2024-05-01", "--error-contains", "REFUSED"])
            .await,
    );
    assert!(out.contains("1 failed group(s) of job faulty are queued again."), "{out}");
    assert_eq!(db.count("SELECT count(*) FROM runner_changes WHERE user_id = 13").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM runner_group_failures WHERE user_id = 13").await, 0, "attempts reset");
}

#[tokio::test]
async fn seed_inserts_realistic_rows_in_time_order_across_users() {
    let db = TestDb::new().await;
    let jobs = format!(
        "{}{}",
        job("vitals", "vitals.wasm", ""),
        crate::util::job_on("lab", "lab.wasm", "lab_raw", "lab_daily", "collected_at", "")
    );
    let (_dir, config) = crate::util::config(&db.url, &jobs);
    run_ok(&config, &["migrate"]).await;
    // No job names nutrition, so its table was not created: said, not a raw SQL error.
    let out = runner(&config, &["seed", "--users", "1", "--days", "1", "--jobs", "nutrition"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("table nutrition_raw does not exist: run `runner migrate --reference-schema`"),
        "{}",
        text(&out)
    );
    // Every reference table, not only those the enabled jobs name.
    run_ok(&config, &["migrate", "--reference-schema"]).await;
    let out = text(
        &run_ok(&config, &["seed", "--users", "5", "--days", "2", "--jobs", "vitals,lab", "--start", "2024-02-01"])
            .await,
    );
    assert!(out.contains("vitals_raw: 340 rows"), "{out}");
    assert_eq!(db.count("SELECT count(*) FROM nutrition_raw").await, 0);
    // Ingestion order: ids follow time, and consecutive rows change user.
    let out_of_order = db.count("SELECT count(*) FROM (SELECT recorded_at < lag(recorded_at) OVER (ORDER BY id) AS back FROM vitals_raw) x WHERE back").await;
    assert_eq!(out_of_order, 0);
    let same_user = db.count("SELECT count(*) FROM (SELECT user_id = lag(user_id) OVER (ORDER BY id) AS same FROM vitals_raw) x WHERE same").await;
    assert!(same_user < 340 / 2, "rows are interleaved across users ({same_user} repeats)");
    // About 1.2 % bad input: among 3,400 more rows, none bad has odds of 1e-18.
    runner::db::seed::vitals(&db.client, 100, 1, chrono::NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()).await.unwrap();
    let bad = db.count("SELECT count(*) FROM vitals_raw WHERE value IS NULL OR unit = 'furlongs'").await;
    assert!(bad > 0, "some bad input among {} rows", db.count("SELECT count(*) FROM vitals_raw").await);
}

#[tokio::test]
async fn json_logs_carry_the_job_user_day_and_plugin_version() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", "max_attempts = 1")).await;
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES
                (13, '2024-05-01 10:00Z', 'heart_rate', 60, 'bpm'), (1, '2024-05-01 10:00Z', 'heart_rate', 60, 'bpm')",
        )
        .await
        .unwrap();
    let out = runner(&config, &["run", "--once", "--log-format", "json"]).output().await.unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> =
        stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let failed = lines.iter().find(|l| l["fields"]["message"] == "Group failed.").expect("a Group failed line");
    assert_eq!(failed["span"]["name"], "batch");
    assert_eq!(failed["span"]["job"], "faulty");
    assert_eq!(failed["fields"]["user"], 13);
    // A plugin's own log line sits in its batch and group spans.
    let plugin_line = lines.iter().find(|l| l["target"] == "plugin").expect("the plugin's log line");
    assert_eq!(plugin_line["fields"]["message"], "aggregating 1 rows");
    let spans = plugin_line["spans"].as_array().unwrap_or_else(|| panic!("no spans: {plugin_line}"));
    let batch = spans.iter().find(|s| s["name"] == "batch").unwrap();
    assert_eq!(batch["job"], "faulty");
    let group = spans.iter().find(|s| s["name"] == "group").unwrap();
    assert_eq!(group["user"], 1);
    assert_eq!(group["day"], "2024-05-01");
    assert!(group["plugin"].as_str().unwrap().starts_with("faulty@0.1.0+sha256:"));
}

#[tokio::test]
async fn sigterm_mid_run_exits_zero_and_loses_nothing() {
    let db = TestDb::new().await;
    // One group a transaction: the run lasts long enough to be stopped in
    // the middle (tests/group_commit.rs kills a multi-group transaction).
    let extra = "batch_size = 10\ngroups_per_transaction = 1";
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", extra)).await;
    runner::db::seed::vitals(&db.client, 200, 3, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()).await.unwrap();
    let daemon = Daemon::start(&config);
    wait_count(&db, "SELECT count(*) FROM vitals_daily", 1, 60).await;
    // `stop` waits for the exit with a generous limit of its own.
    let log = daemon.stop().await;
    assert!(log.contains("Shutting down: no new claims") && log.contains("every connection released"), "{log}");
    assert!(db.count(crate::util::QUEUED).await > 0, "stopped before finishing");
    run_ok(&config, &["run", "--once"]).await;
    assert_eq!(db.count(crate::util::QUEUED).await, 0);
    assert_eq!(db.count("SELECT count(DISTINCT (user_id, day)) FROM vitals_daily").await, 200 * 3);
    let _ = config;
}

#[tokio::test]
async fn http_listen_errors_are_clear() {
    let db = TestDb::new().await;
    let (_dir, path) = config(&db.url, &job("vitals", "vitals.wasm", ""));
    run_ok(&path, &["migrate"]).await;
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let text_cfg = std::fs::read_to_string(&path).unwrap().replace("127.0.0.1:0", &taken);
    std::fs::write(&path, text_cfg).unwrap();
    let out = runner(&path, &["run"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains(&format!("[http] listen = \"{taken}\": cannot listen there")), "{}", text(&out));
    assert!(!text(&out).contains("Plugins loaded"), "said before any plugin is compiled: {}", text(&out));
    let text_cfg = std::fs::read_to_string(&path).unwrap().replace(&taken, "127.0.0.1:0");
    let console_taken = text_cfg.replace("[http]\n", &format!("[http]\nconsole_listen = \"{taken}\"\n"));
    std::fs::write(&path, console_taken).unwrap();
    let out = runner(&path, &["run"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("[http] console_listen = \"{taken}\": cannot listen there")),
        "{}",
        text(&out)
    );

    // A plugin folder that cannot be read: said before anything is compiled too.
    let text_cfg = std::fs::read_to_string(&path).unwrap();
    let dir_line = text_cfg.lines().find(|l| l.starts_with("dir = ")).unwrap().to_string();
    std::fs::write(&path, text_cfg.replace(&dir_line, "dir = \"/nonexistent/plugins\"")).unwrap();
    let out = runner(&path, &["run"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("cannot read the plugin folder /nonexistent/plugins"), "{}", text(&out));
}

#[tokio::test]
async fn callers_queueing_for_the_pool_are_a_warning_and_a_wait_that_runs_out_an_error() {
    let db = TestDb::new().await;
    // Eight workers share one pooled connection: they queue for it (one
    // group a transaction, so the queue lasts long enough to be sampled),
    // each only a moment: a warning, never an error.
    let extra = "workers = 8\nbatch_size = 400\ngroups_per_transaction = 1";
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", extra)).await;
    let one = std::fs::read_to_string(&config)
        .unwrap()
        .replace("connect_attempts = 2", "connect_attempts = 2\nmax_connections = 1\nwait_timeout = \"2s\"");
    std::fs::write(&config, one).unwrap();
    runner::db::seed::vitals(&db.client, 600, 3, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()).await.unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_for("Callers are waiting for a database connection.", 1, 120).await;
    let addr = daemon.http_address().await;
    let (_, body) = http_get(&addr, "/health/db-pool").await;
    assert!(body.contains("\"max\":1"), "{body}");
    crate::util::wait_settled(&db, 300).await;
    let log = daemon.stop().await;
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains("queueing_for=")), "{log}");
    assert!(!log.contains("the pool is exhausted"), "no wait ran out:\n{log}");

    // A plugin holds the one connection longer than wait_timeout: the other
    // worker's wait runs out, and that is an error.
    let db = TestDb::new().await;
    let extra = "workers = 2\ngroups_per_transaction = 1\ntime_limit = \"120s\"";
    let (_dir, config) = migrated(&db, &job("diffy", "diffy.wasm", extra)).await;
    let one = std::fs::read_to_string(&config)
        .unwrap()
        .replace("connect_attempts = 2", "connect_attempts = 2\nmax_connections = 1\nwait_timeout = \"1s\"");
    std::fs::write(&config, one).unwrap();
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES
                 (1, '2024-06-01 08:00Z', 'slow', 6000000000, 'n'), (2, '2024-06-01 08:00Z', 'heart_rate', 60, 'bpm')",
        )
        .await
        .unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_for("the pool is exhausted", 1, 120).await;
    let log = daemon.stop().await;
    assert!(log.lines().any(|l| l.contains("ERROR") && l.contains("callers_gave_up=")), "{log}");
}

/// The Prometheus project's own lint of the exposition (`promtool check
/// metrics`: help text, names, units). `cargo xtask test` installs promtool.
async fn promtool_accepts(metrics: &str) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; `cargo xtask test` installs it)");
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "promtool check metrics:\n{}", text(&out));
}

#[tokio::test]
async fn retry_failed_since_a_date_takes_whole_days_of_the_jobs_zone_and_status_groups_errors() {
    let db = TestDb::new().await;
    let extra = "max_attempts = 1\ntimezone = \"America/New_York\"";
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", extra)).await;
    // User 13 is refused on every day (three New York days); 2024-05-01 23:00
    // in New York is already 2 May in UTC.
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES
                (13, '2024-05-01 10:00-04', 'heart_rate', 60, 'bpm'),
                (13, '2024-05-01 23:00-04', 'heart_rate', 61, 'bpm'),
                (13, '2024-05-02 01:00-04', 'heart_rate', 62, 'bpm'),
                (13, '2024-05-03 09:00-04', 'heart_rate', 63, 'bpm')",
        )
        .await
        .unwrap();
    run_ok(&config, &["run", "--once"]).await;
    assert_eq!(db.count(crate::util::FAILED_GROUPS).await, 3);

    // One cause on three groups is one line of the most common errors.
    let out = text(&run_ok(&config, &["status", "--json"]).await);
    let json: serde_json::Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
    let top = &json["jobs"][0]["top_errors"];
    assert_eq!(top.as_array().unwrap().len(), 1, "{top}");
    assert_eq!(top[0]["groups"], 3, "{top}");
    assert!(top[0]["error"].as_str().unwrap().contains("on user … day …: plugin error: user 13 is refused"), "{top}");

    let out = text(&run_ok(&config, &["retry-failed", "--job", "faulty", "--since", "2024-05-02"]).await);
    assert!(out.contains("2 failed group(s) of job faulty are queued again."), "{out}");
    let pending: Vec<String> = db
        .client
        .query("SELECT day::text FROM runner_changes ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pending, ["2024-05-02", "2024-05-03"], "whole New York days");
}

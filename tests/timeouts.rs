//! What a production database does to the runner: locks held by other
//! sessions, a server that goes away, and a job loop that dies. Every wait
//! is bounded, nothing stops quietly, and health tells the truth.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use runner::db::throwaway::TempPostgres;

use crate::util::{Daemon, TestDb, config, connect, http_get, job, migrated, run_ok, runner, wait_count, wait_http};

const NOT_DONE: &str = crate::util::QUEUED;

/// The oldest open transaction among the runner's sessions, in seconds.
const RUNNER_XACT_AGE: &str = "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8
    FROM pg_stat_activity WHERE application_name = 'runner' AND xact_start IS NOT NULL AND datname = current_database()";

#[tokio::test]
async fn a_foreign_lock_never_holds_a_runner_transaction_and_every_row_completes_after() {
    let db = TestDb::new().await;
    let (_dir, config) =
        migrated(&db, &job("vitals", "vitals.wasm", "batch_size = 20\nretry_backoff = \"200ms\"")).await;
    // A short lock timeout, and a lock held by "the API" far longer.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("connect_attempts = 2", "connect_attempts = 2\nlock_timeout = \"1s\"");
    std::fs::write(&config, text).unwrap();
    runner::db::seed::vitals(&db.client, 30, 2, NaiveDate::from_ymd_opt(2024, 6, 1).unwrap()).await.unwrap();

    let mut api = connect(&db.url).await;
    let lock = api.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE vitals_daily IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("waited_on=lock_timeout", 3, 60).await;
    // Groups keep timing out: not ready, naming the job and the cause.
    let body = wait_http(&daemon, &addr, "/ready", 60, |s, b| s == 503 && b.contains("keep timing out")).await;
    assert!(body.contains("\"vitals\"") && body.contains("lock timeout"), "{body}");
    // While the lock lasts, no runner transaction stays open for long.
    let held = Instant::now();
    let mut oldest = 0f64;
    while held.elapsed() < Duration::from_secs(8) {
        oldest = oldest.max(db.client.query_one(RUNNER_XACT_AGE, &[]).await.unwrap().get(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(oldest < 4.0, "a runner transaction stayed open {oldest:.1} s behind a foreign lock held 8 s");
    assert_eq!(db.count("SELECT count(*) FROM runner_group_failures").await, 0, "no attempt spent");
    lock.rollback().await.unwrap();

    crate::util::wait_settled(&db, 120).await;
    wait_http(&daemon, &addr, "/ready", 60, |s, _| s == 200).await;
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert!(metrics.contains("runner_db_timeouts_total{job=\"vitals\",kind=\"lock_timeout\"}"), "{metrics}");
    let log = daemon.stop().await;
    assert!(log.contains("Group rolled back by the database; its keys stay queued"), "{log}");
    assert_eq!(db.count(NOT_DONE).await, 0);
}

#[tokio::test]
async fn sigterm_during_a_foreign_lock_leaves_no_backend_behind() {
    let db = TestDb::new().await;
    let extra = "batch_size = 5";
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", extra)).await;
    // The runner would wait on the lock for a minute; its grace is a second.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("connect_attempts = 2", "connect_attempts = 2\nlock_timeout = \"60s\"\nstatement_timeout = \"120s\"")
        .replace("poll_interval = \"60s\"", "poll_interval = \"60s\"\nshutdown_grace = \"1s\"");
    std::fs::write(&config, text).unwrap();
    runner::db::seed::vitals(&db.client, 4, 1, NaiveDate::from_ymd_opt(2024, 6, 1).unwrap()).await.unwrap();
    let mut api = connect(&db.url).await;
    let lock = api.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE vitals_daily IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let daemon = Daemon::start(&config);
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runner' AND wait_event_type = 'Lock'
        AND datname = current_database()";
    wait_count(&db, waiting, 1, 60).await;
    let log = daemon.stop().await;
    assert!(log.contains("cancelled the queries in flight"), "{log}");
    // Every runner backend is gone while the lock is still held.
    let sessions =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runner' AND datname = current_database()";
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.count(sessions).await > 0 {
        assert!(Instant::now() < deadline, "runner backends outlived the process");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lock.rollback().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 0);
}

#[tokio::test]
async fn health_is_false_while_the_database_is_down_and_true_again_after() {
    // A server of its own, since this test stops it.
    let mut pg = TempPostgres::start().unwrap();
    connect(&pg.url("postgres")).await.batch_execute("CREATE DATABASE down").await.unwrap();
    let (_dir, config) = config(&pg.url("down"), &job("vitals", "vitals.wasm", ""));
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Job started.", 1, 60).await;
    wait_http(&daemon, &addr, "/health/db-pool", 30, |s, _| s == 200).await;

    pg.stop();
    let body = wait_http(&daemon, &addr, "/health/db-pool", 60, |s, _| s == 503).await;
    assert!(body.contains("\"status\":\"unreachable\""), "{body}");
    let body = wait_http(&daemon, &addr, "/ready", 10, |s, _| s == 503).await;
    assert!(body.contains("unreachable for"), "{body}");
    // The console still answers, saying its figures could not be read.
    wait_http(&daemon, &addr, "/", 60, |s, page| s == 200 && page.contains("figures incomplete: ")).await;

    pg.restart().unwrap();
    wait_http(&daemon, &addr, "/health/db-pool", 60, |s, _| s == 200).await;
    wait_http(&daemon, &addr, "/ready", 30, |s, _| s == 200).await;
    wait_http(&daemon, &addr, "/", 60, |_, page| !page.contains("figures incomplete")).await;
    let log = daemon.stop().await;
    assert_eq!(
        log.matches("Database connection lost; reconnecting with backoff.").count(),
        1,
        "one line per outage:\n{log}"
    );
    assert!(log.contains("Database reachable again."), "{log}");
}

#[tokio::test]
async fn a_job_loop_that_dies_is_logged_shown_and_restarted() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    // A fixed port, so that `runner status` can ask the daemon.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = std::fs::read_to_string(&config).unwrap().replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).unwrap();
    runner::db::seed::vitals(&db.client, 5, 1, NaiveDate::from_ymd_opt(2024, 6, 1).unwrap()).await.unwrap();
    // The loop panics the first four times round (a debug-build test hook),
    // restarted after 1, 2, 4 and 8 s.
    let mut cmd = runner(&config, &["run"]);
    cmd.env("RUNNER_FAILPOINT", "job-loop-panic:vitals:4");
    let daemon = Daemon::spawn(cmd);
    let addr = daemon.http_address().await;
    let body = wait_http(&daemon, &addr, "/ready", 30, |s, b| s == 503 && b.contains("restarting")).await;
    assert!(body.contains("\"vitals\"") && body.contains("panicked: failpoint job-loop-panic"), "{body}");
    let status = crate::util::text(&run_ok(&config, &["status"]).await);
    assert!(status.contains(&format!("runner daemon at 127.0.0.1:{port}: NOT READY")), "{status}");
    assert!(status.contains("its loop stopped and is restarting"), "{status}");
    daemon.wait_for("Job loop stopped unexpectedly; restarting it.", 4, 60).await;
    crate::util::wait_settled(&db, 60).await;
    wait_http(&daemon, &addr, "/ready", 30, |s, _| s == 200).await;
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert!(metrics.contains("runner_job_restarts_total{job=\"vitals\"} 4"), "{metrics}");
    let status = crate::util::text(&run_ok(&config, &["status"]).await);
    assert!(status.contains(&format!("runner daemon at 127.0.0.1:{port}: ready")), "{status}");
    let log = daemon.stop().await;
    assert!(log.contains("ERROR"), "logged at error level: {log}");
}

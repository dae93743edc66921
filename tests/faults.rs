//! Faults injected into real processes: repeated SIGKILLs, a Postgres
//! restart, backends terminated under the runner, connection slots taken
//! from outside, and three runners on one database while rows arrive; and
//! the test server's own death, said and healed.
//! Each ends with every row processed per the spec and the daily rows equal
//! to a clean single run's.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use runner::db::throwaway::TempPostgres;

use crate::util::{
    Daemon, TestDb, config, connect, job, migrated, run_ok, runner, text, vitals_daily_text, wait_count,
};

const NOT_DONE: &str = crate::util::QUEUED;

fn start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
}

/// The daily rows a clean, uninterrupted run produces for the same seed.
async fn clean_daily(users: i32, days: i32) -> String {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    runner::db::seed::vitals(&db.client, users, days, start()).await.unwrap();
    run_ok(&config, &["run", "--once"]).await;
    vitals_daily_text(&db.client).await
}

async fn daily(db: &TestDb) -> String {
    vitals_daily_text(&db.client).await
}

#[tokio::test]
async fn killed_at_random_points_many_times_loses_nothing() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "batch_size = 20")).await;
    runner::db::seed::vitals(&db.client, 150, 4, start()).await.unwrap();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    for _ in 0..6 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let after = Duration::from_millis(50 + (seed >> 33) % 500);
        let mut child = runner(&config, &["run", "--once"]).spawn().unwrap();
        tokio::time::sleep(after).await;
        let _ = child.start_kill(); // SIGKILL, wherever it is
        child.wait().await.unwrap();
    }
    run_ok(&config, &["run", "--once"]).await;
    assert_eq!(db.count(NOT_DONE).await, 0);
    assert_eq!(daily(&db).await, clean_daily(150, 4).await);
}

#[tokio::test]
async fn a_postgres_restart_mid_run_is_survived() {
    // A server of its own, since this test restarts it.
    let mut pg = TempPostgres::start().unwrap();
    let admin = connect(&pg.url("postgres")).await;
    admin.batch_execute("CREATE DATABASE restart").await.unwrap();
    let url = pg.url("restart");
    let (_dir, config) = config(&url, &job("vitals", "vitals.wasm", "batch_size = 20"));
    run_ok(&config, &["migrate"]).await;
    runner::db::seed::vitals(&connect(&url).await, 150, 4, start()).await.unwrap();

    let daemon = Daemon::start(&config);
    let progress = connect(&url).await;
    let completed = "SELECT count(*) FROM vitals_daily";
    while progress.query_one(completed, &[]).await.unwrap().get::<_, i64>(0) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pg.restart().unwrap();
    let client = connect(&url).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while client.query_one(NOT_DONE, &[]).await.unwrap().get::<_, i64>(0) > 0 {
        assert!(Instant::now() < deadline, "not finished after the restart:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = daemon.stop().await;
    assert!(log.contains("Database error; the keys stay queued and will be retried."), "{log}");
    assert!(log.contains("Database connection lost; reconnecting with backoff."), "{log}");
    let result = vitals_daily_text(&client).await;
    assert_eq!(result, clean_daily(150, 4).await);
    assert_eq!(client.query_one(crate::util::FAILED_GROUPS, &[]).await.unwrap().get::<_, i64>(0), 0);
}

/// A refused connection says what became of the shared server and shows
/// the end of its log, not a bare "connection refused".
#[tokio::test]
#[should_panic(expected = "the shared test server's process is still running; the end of its log:")]
async fn a_refused_test_connection_says_what_became_of_the_shared_server() {
    let _started = TestDb::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    connect(&format!("postgres://postgres@127.0.0.1:{closed}/postgres")).await;
}

/// The harness's server (`tests/util.rs` watches the shared one with
/// `revive`): killed, it says how it ended with the end of its log and
/// comes back on the same data and port.
#[tokio::test]
async fn a_test_server_that_dies_says_how_and_comes_back_with_its_data() {
    let mut pg = TempPostgres::start().unwrap();
    let admin = connect(&pg.url("postgres")).await;
    admin.batch_execute("CREATE DATABASE kept").await.unwrap();
    let postmaster = pg.pid().unwrap();
    assert!(pg.revive().is_none(), "revived a running server");
    drop(admin);

    // SAFETY: plain kill(2) on the server this test started.
    unsafe { libc::kill(postmaster as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let said = loop {
        if let Some(said) = pg.revive() {
            break said;
        }
        assert!(Instant::now() < deadline, "the killed server was never seen to exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(said.contains("SIGKILL") && said.contains("ready to accept connections"), "{said}");
    assert!(said.ends_with("It was started again."), "{said}");
    let kept = connect(&pg.url("kept")).await;
    assert_eq!(kept.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
}

#[tokio::test]
async fn backends_terminated_under_the_runner_are_survived() {
    let db = TestDb::new().await;
    let (_dir, config) =
        migrated(&db, &job("vitals", "vitals.wasm", "batch_size = 20\ngroups_per_transaction = 1")).await;
    runner::db::seed::vitals(&db.client, 150, 4, start()).await.unwrap();
    // One group a transaction: the run lasts long enough to be cut into.
    let daemon = Daemon::start(&config);
    wait_count(&db, "SELECT count(*) FROM vitals_daily", 1, 60).await;
    let mut terminated = 0i64;
    for _ in 0..15 {
        let row = db
            .client
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'runner' AND datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        terminated += row.get::<_, i64>(0);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(terminated > 0);
    let deadline = Instant::now() + Duration::from_secs(90);
    while db.count(NOT_DONE).await > 0 {
        assert!(Instant::now() < deadline, "not finished:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = daemon.stop().await;
    assert!(log.contains("Database error"), "{log}");
    assert_eq!(db.count(crate::util::FAILED_GROUPS).await, 0);
    assert_eq!(daily(&db).await, clean_daily(150, 4).await);
}

#[tokio::test]
async fn connection_slots_taken_from_outside_give_a_clear_error_then_recover() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    runner::db::seed::vitals(&db.client, 20, 2, start()).await.unwrap();
    // An application role with a budget of one connection (superusers have
    // no such limits), and that one connection taken from outside.
    let role: String = db.client.query_one("SELECT 'app_' || current_database()", &[]).await.unwrap().get(0);
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN CONNECTION LIMIT 1;
             GRANT ALL ON SCHEMA public TO {role};
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let as_role = std::fs::read_to_string(&config).unwrap().replace(&db.url, &url);
    std::fs::write(&config, as_role).unwrap();
    let holder = connect(&url).await;
    let out = runner(&config, &["run", "--once"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(err.contains("cannot reach the database") && err.contains("too many connections"), "{err}");
    assert!(err.contains("retrying"), "{err}");
    drop(holder);
    db.client.batch_execute(&format!("ALTER ROLE {role} CONNECTION LIMIT 4")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    run_ok(&config, &["run", "--once"]).await;
    assert_eq!(db.count(NOT_DONE).await, 0);
}

#[tokio::test]
async fn three_runners_while_rows_arrive_equal_one_runner_and_never_share_a_group() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "batch_size = 20\nworkers = 2")).await;
    // Two transactions writing the same group at once would trip this: the
    // runner's group lock is what keeps it quiet.
    db.client
        .batch_execute(
            "CREATE FUNCTION one_writer() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NOT pg_try_advisory_xact_lock(hashtextextended('audit/' || NEW.user_id || '/' || NEW.day, 0)) THEN
                     RAISE EXCEPTION 'group % % written by two transactions at once', NEW.user_id, NEW.day;
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER one_writer BEFORE INSERT ON vitals_daily FOR EACH ROW EXECUTE FUNCTION one_writer();",
        )
        .await
        .unwrap();
    let runners: Vec<Daemon> = (0..3).map(|_| Daemon::start(&config)).collect();
    for r in &runners {
        r.wait_for("Job started.", 1, 60).await;
    }
    // Rows keep arriving, a day at a time, while the three run.
    for day in 0..4 {
        runner::db::seed::seed(
            &db.client,
            runner::db::seed::Kind::Vitals,
            100,
            1,
            start() + chrono::Days::new(day),
            |_| {},
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while db.count(NOT_DONE).await > 0 {
        assert!(Instant::now() < deadline, "not finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut worked = 0;
    for r in runners {
        let log = r.stop().await;
        assert!(!log.contains("written by two transactions at once"), "{log}");
        worked += usize::from(log.contains("Batch done."));
    }
    assert!(worked >= 2, "the work was shared");
    assert_eq!(db.count(crate::util::FAILED_GROUPS).await, 0);
    // The seed is per day, so seeding the days one by one gives the same rows as at once.
    assert_eq!(daily(&db).await, clean_daily(100, 4).await);
}

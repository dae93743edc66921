//! Hostile plugins, a sandbox escape attempt, hostile names and broken
//! tables: each is stopped with a message naming the cause, and the runner
//! keeps serving the other jobs.

use crate::util::{TestDb, job, job_on, migrated, one_reading, run_ok, runner, text};

async fn error_of(db: &TestDb, user: i64) -> (String, String) {
    let (state, _, error) = crate::util::group_state(db, user).await;
    (state, error.unwrap_or_default())
}

#[tokio::test]
async fn hostile_plugins_hit_their_limits_and_other_jobs_carry_on() {
    let db = TestDb::new().await;
    let jobs = format!(
        "{}{}",
        job("faulty", "faulty.wasm", "max_attempts = 1\ntime_limit = \"3s\"\nmemory_limit_mb = 16\nworkers = 4"),
        job_on("nutrition", "nutrition.wasm", "nutrition_raw", "nutrition_daily", "consumed_at", "")
    );
    let (_dir, config) = migrated(&db, &jobs).await;
    for user in [1, 14, 15, 16, 17, 19, 20, 21, 22, 23, 2] {
        one_reading(&db, user, "2024-05-01").await;
    }
    db.client
        .batch_execute("INSERT INTO nutrition_raw (user_id, consumed_at, meal, calories) VALUES (1, '2024-05-01 08:00Z', 'breakfast', 300)")
        .await
        .unwrap();
    let out = run_ok(&config, &["run", "--once"]).await;

    let expected = [
        (14, "trapped"),
        (15, "exceeded its time limit of 3s"),
        (16, "exceeded its memory limit of 16 MiB"),
        (17, "output row 0 has 1 values but 2 columns are declared"),
        (19, "trapped"),
        (20, "exceeded its memory limit of 16 MiB"),
        (21, "column `sample_count` is declared integer but the value is text"),
    ];
    for (user, cause) in expected {
        let (state, error) = error_of(&db, user).await;
        assert_eq!(state, "failed", "user {user}: {error}");
        assert!(error.contains(cause) && error.contains("plugin faulty@0.1.0"), "user {user}: {error}");
    }
    // A Rust guest's stack lives in its linear memory: overflowing it runs
    // off the start of that memory (or, for frames on the wasm stack, into
    // wasmtime's stack limit). Either way it is a trap, not a crash.
    let (_, stack) = error_of(&db, 19).await;
    assert!(stack.contains("out of bounds memory access") || stack.contains("call stack exhausted"), "{stack}");
    assert!(error_of(&db, 14).await.1.contains("wasm `unreachable` instruction executed"), "a panic");
    for user in [1, 2] {
        assert_eq!(error_of(&db, user).await.0, "completed");
    }
    // A large valid output is written whole, beyond one statement's parameters.
    assert_eq!(error_of(&db, 22).await.0, "completed");
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 22").await, 6000);
    assert_eq!(db.count("SELECT count(*) FROM nutrition_daily").await, 1);
    assert!(text(&out).contains("Group failed."));
}

#[tokio::test]
async fn a_plugin_cannot_read_files_open_sockets_see_the_environment_or_the_clock() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", "max_attempts = 1")).await;
    one_reading(&db, 23, "2024-05-01").await;
    run_ok(&config, &["run", "--once"]).await;
    let (_, error) = error_of(&db, 23).await;
    assert!(error.contains("escape: file=denied socket=denied env_vars=0 clock_secs=0"), "{error}");
}

#[tokio::test]
async fn a_hostile_table_name_cannot_run_sql() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let hostile = std::fs::read_to_string(&config).unwrap().replace(
        "target = \"vitals_daily\"",
        "target = \"vitals_daily (user_id) VALUES (1); DROP TABLE vitals_raw; --\"",
    );
    std::fs::write(&config, hostile).unwrap();
    for command in [&["migrate"][..], &["run", "--once"], &["check"]] {
        let out = runner(&config, command).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("is not a valid table or column name"), "{}", text(&out));
    }
    assert_eq!(db.count("SELECT count(*) FROM pg_tables WHERE tablename = 'vitals_raw'").await, 1);
}

#[tokio::test]
async fn a_raw_table_missing_a_column_fails_check_naming_it() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    db.client.batch_execute("ALTER TABLE vitals_raw DROP COLUMN unit").await.unwrap();
    let out = runner(&config, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = text(&out);
    assert!(out.contains("job vitals: table vitals_raw has no column `unit` (plugin vitals@1.1.0"), "{out}");
    assert!(out.contains("reads it as text"), "{out}");
}

#[tokio::test]
async fn status_never_shows_the_password() {
    let db = TestDb::new().await;
    let url = db.url.replacen("postgres@", "postgres:s3cret@", 1);
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let with_password = std::fs::read_to_string(&config).unwrap().replace(&db.url, &url);
    std::fs::write(&config, with_password).unwrap();
    for args in [&["status"][..], &["status", "--json"], &["check"], &["run", "--once"]] {
        let out = text(&run_ok(&config, args).await);
        assert!(out.contains("postgres@127.0.0.1") || args[0] == "run", "{out}");
        assert!(!out.contains("s3cret"), "{args:?} leaked the password: {out}");
    }
}

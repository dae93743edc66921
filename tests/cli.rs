//! The command line and the config file as an operator meets them: clear
//! errors for bad config, unreachable databases and mismatched plugins.

use std::time::Duration;

use crate::util::{TestDb, config, config_with_own_plugins, job, migrated, run_ok, runner, text};

#[tokio::test]
async fn bad_config_names_the_file_line_and_key() {
    let (_dir, path) = config("postgres://x@127.0.0.1:1/x", &job("vitals", "vitals.wasm", "batch = 10"));
    let out = runner(&path, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("line 19, column 1: unknown field `batch`, expected one of"), "{err}");

    let out = runner(std::path::Path::new("/nonexistent/runner.toml"), &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent/runner.toml") && text(&out).contains("cannot read the file"));
}

#[tokio::test]
async fn unreachable_database_retries_then_says_where_without_the_password() {
    let (_dir, path) = config("postgres://runner:s3cret@127.0.0.1:1/health", &job("vitals", "vitals.wasm", ""));
    let out = tokio::time::timeout(Duration::from_secs(30), runner(&path, &["run", "--once"]).output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(err.contains("cannot reach the database runner@127.0.0.1:1/health after 2 attempts"), "{err}");
    assert!(err.contains("retrying"), "{err}");
    assert!(!err.contains("s3cret"), "the password leaked: {err}");
}

#[tokio::test]
async fn check_reports_a_plugin_that_does_not_fit_its_tables() {
    let db = TestDb::new().await;
    let mismatched = "[jobs.vitals]\nplugin = \"vitals.wasm\"\nsource = \"vitals_raw\"\ntarget = \"nutrition_daily\"\ntimestamp_column = \"recorded_at\"\n";
    let (_dir, path) = migrated(&db, mismatched).await;
    let out = runner(&path, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(err.contains("job vitals: table nutrition_daily has no column `metric`"), "{err}");
    assert!(err.contains("no unique key on (day, metric, user_id)"), "{err}");

    // And `run` refuses to start with the same message.
    let out = runner(&path, &["run", "--once"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("table nutrition_daily has no column `metric`"));
}

#[tokio::test]
async fn check_reports_a_file_that_is_not_a_component() {
    let db = TestDb::new().await;
    let (_dir, path, plugins) = config_with_own_plugins(&db.url, &job("vitals", "junk.wasm", ""), &[]);
    run_ok(&path, &["migrate"]).await;
    std::fs::write(plugins.join("junk.wasm"), b"\0asm not really").unwrap();
    let out = runner(&path, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(
        err.contains("problem: job vitals: plugin ") && err.contains("junk.wasm is not a WebAssembly file"),
        "{err}"
    );
}

#[tokio::test]
async fn migrate_adopts_an_existing_raw_table_and_is_idempotent() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE readings (id bigserial PRIMARY KEY, user_id bigint NOT NULL, taken_at timestamptz NOT NULL,
                                    metric text NOT NULL, value double precision, unit text NOT NULL);
             INSERT INTO readings (user_id, taken_at, metric, value, unit) VALUES (1, '2024-02-02 10:00Z', 'weight', 80, 'kg');",
        )
        .await
        .unwrap();
    let jobs = "[jobs.readings]\nplugin = \"vitals.wasm\"\nsource = \"readings\"\ntarget = \"vitals_daily\"\ntimestamp_column = \"taken_at\"\n";
    let (_dir, path) = config(&db.url, jobs);
    let columns = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'readings'::regclass AND attnum > 0";
    let before = db.count(columns).await;
    let first = text(&run_ok(&path, &["migrate"]).await);
    assert!(first.contains("applied migration 1") && first.contains("installed change capture on readings"), "{first}");
    // The history from before: said, with the command that aggregates it.
    let hint = "1 user-day(s) of readings have raw rows but no daily rows (from before change capture); \
                aggregate them with `runner recompute --job readings --from 2024-02-02 --to 2024-02-02`";
    assert!(first.contains(hint), "{first}");
    let second = text(&run_ok(&path, &["migrate"]).await);
    assert!(second.contains("schema is up to date"), "{second}");
    assert_eq!(db.count(columns).await, before, "no column added");
    run_ok(&path, &["check"]).await;
    run_ok(&path, &["recompute", "--job", "readings", "--from", "2024-02-02", "--to", "2024-02-02"]).await;
    let avg: f64 =
        db.client.query_one("SELECT avg_value FROM vitals_daily WHERE user_id = 1", &[]).await.unwrap().get(0);
    assert_eq!(avg, 80.0);
    // New rows are captured and aggregated with no command.
    db.client
        .batch_execute("INSERT INTO readings (user_id, taken_at, metric, value, unit) VALUES (1, '2024-02-02 11:00Z', 'weight', 82, 'kg')")
        .await
        .unwrap();
    run_ok(&path, &["run", "--once"]).await;
    let avg: f64 =
        db.client.query_one("SELECT avg_value FROM vitals_daily WHERE user_id = 1", &[]).await.unwrap().get(0);
    assert_eq!(avg, 81.0);
}

#[tokio::test]
async fn compiled_plugins_are_cached_and_a_bad_cache_entry_is_recompiled() {
    let db = TestDb::new().await;
    let (dir, path) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let cache = dir.path().join("cache");
    let text_cfg = std::fs::read_to_string(&path).unwrap();
    let text_cfg = text_cfg.replace("[plugins]\n", &format!("[plugins]\ncache_dir = \"{}\"\n", cache.display()));
    std::fs::write(&path, text_cfg).unwrap();
    run_ok(&path, &["check"]).await;
    let mut entries: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    assert_eq!(entries.len(), 2, "an artifact and its recorded hash: {entries:?}");
    assert!(entries[0].extension().is_some_and(|e| e == "cwasm"));
    assert!(entries[1].extension().is_some_and(|e| e == "sha256"));
    // A damaged or swapped entry is not trusted: it is compiled again.
    std::fs::write(&entries[0], b"not a compiled component").unwrap();
    let out = text(&run_ok(&path, &["check"]).await);
    assert!(out.contains("Unusable cached component; compiling again."), "{out}");
    assert!(out.contains("its bytes do not match the hash recorded when it was written"), "{out}");
    assert!(out.contains("job vitals: plugin vitals@1.1.0"), "{out}");
}

#[tokio::test]
async fn the_compile_cache_lives_in_the_runners_state_directory() {
    let db = TestDb::new().await;
    let (dir, path) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let home = dir.path().join("home");
    let check = || {
        runner(&path, &["check"]).env("HOME", &home).env_remove("XDG_STATE_HOME").env_remove("STATE_DIRECTORY").output()
    };
    let out = check().await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let cache = home.join(".local/state/runner/components");
    let cwasm = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    assert_eq!(cwasm, 1);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o700, "private to the runner");
    // A folder others may write is not used.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = check().await.unwrap();
    assert!(out.status.success());
    assert!(text(&out).contains("it is writable by other users (mode 777); make it 0700"), "{}", text(&out));
}

#[tokio::test]
async fn the_readme_demo_command_runs_at_a_small_size() {
    // What `cargo xtask demo -- --users 500 --days 30` runs after building
    // the plugins (xtask's own argument handling is unit-tested there).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["demo", "--users", "3", "--days", "1"])
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("102"), "3 users x 1 day x 34 readings: {}", text(&out));
}

#[tokio::test]
async fn bad_usage_exits_2_and_help_describes_each_command() {
    let db = TestDb::new().await;
    let (_dir, path) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    for args in [
        &["retry-failed", "--job", "nosuch"][..],
        &["retry-failed", "--job", "vitals", "--since", "yesterday"],
        &["recompute", "--job", "vitals", "--from", "2024-03-02", "--to", "2024-03-01"],
        &["recompute", "--job", "vitals", "--from", "2024-03-01", "--to", "2024-03-02", "--batch", "0"],
        &["recompute", "--job", "nosuch", "--from", "2024-03-01", "--to", "2024-03-02"],
    ] {
        let out = runner(&path, args).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    let out = runner(&path, &["status"]).env("DATABASE_URL", "postgres://bad url:x/").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a valid connection string"), "{}", text(&out));

    let help = text(&runner(&path, &["--help"]).output().await.unwrap());
    let line = |cmd: &str| help.lines().find(|l| l.trim_start().starts_with(cmd)).unwrap_or_default().to_string();
    assert!(line("recompute").contains("Re-aggregate a past range"), "{help}");
    assert!(line("demo").contains("Start a throwaway Postgres"), "{help}");
    let recompute = text(&runner(&path, &["recompute", "--help"]).output().await.unwrap());
    assert!(recompute.starts_with("Re-aggregate a past range"), "{recompute}");
}

#[tokio::test]
async fn check_names_the_config_line_of_a_missing_plugin_and_an_unknown_zone() {
    let db = TestDb::new().await;
    let jobs = format!(
        "{}{}",
        job("vitals", "vitals.wasm", "timezone = \"utc\""),
        crate::util::job_on(
            "lab",
            "nosuch.wasm",
            "lab_raw",
            "lab_daily",
            "collected_at",
            "timezone = \"Mars/Olympus\""
        )
    );
    let (_dir, path) = migrated(&db, &jobs).await;
    let out = runner(&path, &["check"]).output().await.unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let origin = format!("{}:", path.display());
    assert!(
        all.contains("nosuch.wasm does not exist") && all.contains(&origin) && all.contains("enabled = false"),
        "{all}"
    );
    assert!(all.contains("timezone `Mars/Olympus` is not a time zone Postgres knows"), "{all}");
    assert!(!all.contains("`utc`"), "Postgres knows `utc`: {all}");
}

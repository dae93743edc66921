//! Plugins written carelessly or with ill intent, straight against the WIT
//! (`tests/guests/hostile`): whatever they hand the host is bounded and
//! checked before use, and a plugin refused for a reason outside its file
//! heals by itself once that reason is gone.

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;

use crate::util::{
    Daemon, TestDb, config_with_own_plugins, deploy, http_get, job, job_on, migrated, plugins_dir, run_ok, runner,
    text, wait_count,
};

/// Runs the runner to its end; returns its output and peak resident memory in MiB.
#[allow(clippy::zombie_processes, reason = "reaped by wait4, which also reports the child's peak memory")]
fn run_measured(config: &Path, args: &[&str]) -> (i32, String, f64) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut readers = Vec::new();
    for mut stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        readers.push(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stream.read_to_string(&mut s);
            s
        }));
    }
    use std::io::Read as _;
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waits for our own child; wait4 reports that child's own peak memory.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let out: String = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let code = std::process::ExitStatus::from_raw(status).code().unwrap_or(-1);
    (code, out, usage.ru_maxrss as f64 / 1024.0)
}

#[tokio::test]
async fn an_amplifying_describe_is_refused_in_bounded_memory_and_words() {
    let db = TestDb::new().await;
    let (_dir, config, _plugins) =
        config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let file = plugins_dir().join("hostile_amplify.wasm");
    let baseline = run_measured(&config, &["plugin", "validate", plugins_dir().join("vitals.wasm").to_str().unwrap()]);
    assert_eq!(baseline.0, 0, "{}", baseline.1);
    let (code, out, peak) = run_measured(&config, &["plugin", "validate", file.to_str().unwrap(), "--job", "vitals"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("describes itself out of bounds"), "{out}");
    assert!(out.contains("(8388608 bytes)") && out.contains("100000 input columns"), "{out}");
    assert!(out.len() < 4096, "{} bytes of output", out.len());
    // The guest built ~10 MB of description inside its own 64 MiB; the host
    // copies it once to check it, then drops it.
    println!("peak RSS: validating vitals {:.0} MiB, refusing the amplifier {peak:.0} MiB", baseline.2);
    assert!(peak < baseline.2 + 150.0, "refusing it took {peak:.0} MiB (a good plugin: {:.0} MiB)", baseline.2);
}

#[tokio::test]
async fn a_describe_that_never_returns_names_the_limit_it_hit() {
    let file = plugins_dir().join("hostile_slow_describe.wasm");
    let out =
        runner(Path::new("/nonexistent.toml"), &["plugin", "validate", file.to_str().unwrap()]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("`describe` failed: exceeded its time limit of 2s"), "{}", text(&out));
}

#[tokio::test]
async fn a_setting_doc_reaches_the_terminal_with_its_control_characters_escaped() {
    let file = plugins_dir().join("hostile.wasm");
    let out =
        runner(Path::new("/nonexistent.toml"), &["plugin", "validate", file.to_str().unwrap()]).output().await.unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains('\x1b'), "a raw escape code reached the terminal: {said:?}");
    assert!(said.contains(r"\u{1b}[2J\u{1b}[31mred\u{1b}[0m\nproblem: none"), "{said}");
    assert!(!said.lines().any(|l| l.starts_with("problem:")), "a forged line: {said}");
}

#[tokio::test]
async fn output_is_checked_before_sql_logs_are_bounded_and_results_are_deterministic() {
    let db = TestDb::new().await;
    // User 1's million log calls must finish at any machine speed: a time
    // limit far above what they need (about a second on a quiet machine).
    let settings = "max_attempts = 1\nlog_lines = 100\ntime_limit = \"120s\"";
    let (_dir, config) = migrated(&db, &job("hostile", "hostile.wasm", settings)).await;
    for user in 1..=7i64 {
        crate::util::one_reading(&db, user, "2024-05-01").await;
    }
    let out = text(&run_ok(&config, &["run", "--once"]).await);
    let error = |user: i64| {
        let db = &db;
        async move {
            let (state, _, error) = crate::util::group_state(db, user).await;
            (state, error.unwrap_or_default())
        }
    };
    for (user, cause) in [
        (2, "output row 1: column `avg_value` is NaN; only finite numbers can be stored"),
        (3, "output row 0: column `avg_value` is inf"),
        (4, "output row 0: column `metric` contains a NUL character"),
        (5, "output row 2 repeats the key (metric=`same`) of an earlier row"),
    ] {
        let (status, e) = error(user).await;
        assert_eq!(status, "failed", "user {user}: {e}");
        assert!(e.contains(cause) && e.contains("plugin hostile@0.1.0+sha256:"), "user {user}: {e}");
        assert!(e.contains(&format!("user {user} day 2024-05-01")), "{e}");
    }
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id BETWEEN 2 AND 5").await, 0);

    // A million log calls and a 10 MB line: 100 lines kept, each cut and escaped.
    assert_eq!(error(1).await.0, "completed");
    assert!(out.len() < 1 << 20, "{} bytes of log", out.len());
    let kept = out.lines().filter(|l| l.contains("forged: INFO runner: all is well")).count();
    assert_eq!(kept, 99, "99 flood lines after the big one");
    assert!(!out.lines().any(|l| l.starts_with("forged")), "no forged log lines");
    assert!(out.contains("more bytes cut"), "the 10 MB line is cut");
    assert!(
        out.contains("dropped=999901") && out.contains("Plugin log lines dropped"),
        "{}",
        &out[..out.len().min(3000)]
    );

    // Clocks and randomness are fixed: the same input gives the same output.
    let values = || async {
        let rows = db
            .client
            .query("SELECT metric, avg_value, updated_at FROM vitals_daily WHERE user_id = 6 ORDER BY metric", &[])
            .await
            .unwrap();
        rows.iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1), r.get::<_, chrono::DateTime<chrono::Utc>>(2)))
            .collect::<Vec<_>>()
    };
    let first = values().await;
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(first[2].0, "wall");
    assert_eq!(first[2].1, 0.0, "the wall clock reads zero");
    let args = ["recompute", "--job", "hostile", "--from", "2024-05-01", "--to", "2024-05-01", "--users", "6"];
    let out = text(&run_ok(&config, &args).await);
    assert!(out.contains(": 1 groups recomputed"), "{out}");
    // Same input, same output: so identical that the rows are not even
    // rewritten (their updated_at stays).
    assert_eq!(values().await, first);
}

#[tokio::test]
async fn no_state_carries_from_one_group_to_the_next() {
    // One worker: every group reuses the same pooled slot, reset in place;
    // and since instances are shared per transaction, the probe at load
    // must find the state (tests/purity.rs has the rest).
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("hostile", "hostile.wasm", "workers = 1")).await;
    for day in ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"] {
        for user in [7, 8] {
            crate::util::one_reading(&db, user, day).await;
        }
    }
    run_ok(&config, &["run", "--once"]).await;
    let rows = db
        .client
        .query("SELECT metric, avg_value FROM vitals_daily WHERE user_id IN (7, 8) ORDER BY user_id, day, metric", &[])
        .await
        .unwrap();
    let seen: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(seen.len(), 16, "{seen:?}");
    for (metric, value) in &seen {
        let fresh = if metric == "calls" { 1.0 } else { 0.0 };
        assert_eq!(*value, fresh, "{metric}: every group starts from the plugin's initial state: {seen:?}");
    }
}

#[tokio::test]
async fn a_plugin_refused_for_a_missing_column_heals_when_the_column_is_added() {
    let db = TestDb::new().await;
    let jobs = job_on("h", "h.wasm", "vitals_raw", "h_daily", "recorded_at", "");
    let (_dir, config, plugins) = config_with_own_plugins(&db.url, &jobs, &[]);
    std::fs::copy(plugins_dir().join("faulty.wasm"), plugins.join("h.wasm")).unwrap();
    run_ok(&config, &["migrate"]).await;
    db.client
        .batch_execute(
            "CREATE TABLE h_daily (user_id bigint, day date, metric text, sample_count int, plugin_version text,
                 updated_at timestamptz, PRIMARY KEY (user_id, day, metric))",
        )
        .await
        .unwrap();
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Job started.", 1, 60).await;

    // The new plugin writes avg_value, which the table does not have yet.
    deploy(&plugins.join("h.wasm"), &std::fs::read(plugins_dir().join("hostile.wasm")).unwrap());
    daemon.wait_for("Plugin rejected; the previous version keeps running.", 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(body.contains("has no column `avg_value`") && body.contains("checked again every 5s"), "{body}");
    assert!(body.contains("faulty@0.1.0"), "{body}");
    db.client.batch_execute("ALTER TABLE h_daily ADD COLUMN avg_value float8").await.unwrap();
    daemon.wait_for("Plugin swapped.", 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(body.contains("hostile@0.1.0") && body.contains("\"last_reload_error\":null"), "{body}");
    db.client
        .execute("INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES (9, '2024-05-01 10:00Z', 'hr', 60, 'bpm')", &[])
        .await
        .unwrap();
    wait_count(&db, "SELECT count(*) FROM h_daily WHERE avg_value = 1", 1, 60).await;

    // A file the runner cannot read (here: a folder swapped in) keeps the old version.
    let folder = plugins.join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    let link = plugins.join(".h.wasm.tmp");
    std::os::unix::fs::symlink(&folder, &link).unwrap();
    std::fs::rename(&link, plugins.join("h.wasm")).unwrap();
    daemon.wait_for("Plugin file cannot be read; the previous version keeps running.", 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(
        body.contains("\"paused\":false") && body.contains("cannot read") && body.contains("hostile@0.1.0"),
        "{body}"
    );
    let log = daemon.stop().await;
    assert_eq!(log.matches("Plugin rejected;").count(), 1, "a waiting file is reported once:\n{log}");
}

#[tokio::test]
async fn a_day_of_a_million_rows_fails_at_max_group_rows_and_the_runner_stays_small() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "max_attempts = 1")).await;
    // One application statement of 1,000,000 rows for one group.
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             SELECT 1, '2024-05-01 00:00Z'::timestamptz + i * interval '50 ms', 'heart_rate', 60, 'bpm'
             FROM generate_series(0, 999999) i",
        )
        .await
        .unwrap();
    for user in 2..=4 {
        crate::util::one_reading(&db, user, "2024-05-01").await;
    }
    let daemon = crate::util::Daemon::start(&config);
    crate::util::wait_count(&db, crate::util::FAILED_GROUPS, 1, 120).await;
    crate::util::wait_settled(&db, 120).await;
    let (state, _, error) = crate::util::group_state(&db, 1).await;
    let error = error.unwrap_or_default();
    assert_eq!(state, "failed");
    assert!(error.contains("more than 250000 raw rows (max_group_rows)"), "{error}");
    assert_eq!(db.count("SELECT count(DISTINCT user_id) FROM vitals_daily").await, 3, "the other groups complete");
    let peak = daemon.peak_rss_mib();
    println!("peak RSS with a 1,000,000-row group: {peak:.0} MiB");
    assert!(peak < 256.0, "the runner grew to {peak:.0} MiB reading one group");
    daemon.stop().await;
}

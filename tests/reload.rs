//! Hot reload through real files on disk: plugins deployed by rename while
//! rows keep arriving, bad files, deleted files, shadow candidates, and
//! config edits — against a running `runner run`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{
    Daemon, TestDb, config_with_own_plugins, deploy, job, plugins_dir, run_ok, runner, text, variant, vitals_version,
    wait_count, wait_http,
};

const PENDING: &str = crate::util::QUEUED;

/// Waits until some daily row names `version`.
async fn wait_for_version(db: &TestDb, version: &str) {
    wait_count(db, &format!("SELECT count(*) FROM vitals_daily WHERE plugin_version = '{version}'"), 1, 60).await;
}

async fn insert(db: &TestDb, user: i64) {
    db.client
        .execute("INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, now(), 'heart_rate', 70, 'bpm')", &[&user])
        .await
        .unwrap();
}

/// Inserts a row every 10 ms until stopped; returns how many it inserted.
fn load(db_url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let client = crate::util::connect(&db_url).await;
        let n = AtomicI64::new(0);
        while !stop.load(Ordering::SeqCst) {
            let i = n.fetch_add(1, Ordering::SeqCst);
            client
                .execute(
                    "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, now(), 'heart_rate', 60 + $2::int % 40, 'bpm')",
                    &[&(i % 25), &((i % 40) as i32)],
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n.load(Ordering::SeqCst)
    })
}

#[tokio::test]
async fn a_plugin_replaced_by_rename_under_load_takes_over_with_nothing_lost() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) =
        config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", "batch_size = 20"), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;

    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(db.url.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;

    let v2 = variant(&std::fs::read(plugins_dir().join("vitals.wasm")).unwrap(), "v2");
    let new_version = vitals_version(&v2);
    let deployed = Instant::now();
    deploy(&plugins.join("vitals.wasm"), &v2);
    wait_for_version(&db, &new_version).await;
    let took = deployed.elapsed();
    eprintln!("new plugin_version in daily rows {took:?} after the rename");
    let swapped_at: chrono::DateTime<chrono::Utc> = db.client.query_one("SELECT now()", &[]).await.unwrap().get(0);

    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::SeqCst);
    let inserted = loader.await.unwrap();
    // Everything completes: nothing failed, nothing lost.
    let drained = || async {
        let left = db.count(PENDING).await;
        if left == 0 { Ok(()) } else { Err(left) }
    };
    crate::util::eventually(30, drained, |left| format!("{left} rows left pending:\n{}", daemon.log())).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_raw").await, inserted);
    assert_eq!(db.count(crate::util::FAILED_GROUPS).await, 0);
    // Every daily row written after the swap names the new component.
    let stale = db
        .client
        .query_one(
            "SELECT count(*) FROM vitals_daily WHERE updated_at > $1 AND plugin_version <> $2",
            &[&swapped_at, &new_version],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(stale, 0);
    let log = daemon.stop().await;
    assert!(log.contains("Plugin swapped.") && log.contains(&new_version), "{log}");
    assert!(!log.contains("Group failed."), "{log}");
}

#[tokio::test]
async fn bad_files_are_rejected_and_a_deleted_plugin_pauses_its_job() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let good = std::fs::read(plugins.join("vitals.wasm")).unwrap();
    let good_version = vitals_version(&good);
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;

    let junk: [(&str, Vec<u8>, &str); 4] = [
        ("random bytes", vec![7; 3000], "is not a WebAssembly file"),
        ("a truncated file", good[..good.len() / 2].to_vec(), "is not a valid WebAssembly component"),
        ("a core module", b"\0asm\x01\0\0\0".to_vec(), "is a core WebAssembly module"),
        ("a component of another world", b"\0asm\x0d\0\x01\0".to_vec(), "is not a component of the world"),
    ];
    for (i, (what, bytes, reason)) in junk.iter().enumerate() {
        deploy(&plugins.join("vitals.wasm"), bytes);
        daemon.wait_for("Plugin rejected; the previous version keeps running.", i + 1, 60).await;
        assert!(daemon.log().contains(reason), "{what}: {}", daemon.log());
        // The old version still runs.
        insert(&db, 100 + i as i64).await;
        wait_count(
            &db,
            &format!(
                "SELECT count(*) FROM vitals_daily WHERE user_id = {} AND plugin_version = '{good_version}'",
                100 + i
            ),
            1,
            20,
        )
        .await;
    }
    let log = daemon.log();
    assert!(log.contains(&plugins.join("vitals.wasm").display().to_string()), "the log names the file: {log}");

    // Deleting the file pauses the job: new rows wait, nothing fails.
    std::fs::remove_file(plugins.join("vitals.wasm")).unwrap();
    daemon.wait_for("Plugin file is gone: job paused", 1, 60).await;
    let addr = daemon.http_address().await;
    // Not a sleep: the loop answered the new row's notification, and left it queued.
    let woken = crate::util::wakeups(&addr, "vitals").await;
    insert(&db, 200).await;
    wait_http(&daemon, &addr, "/metrics", 60, |_, m| crate::util::wakeups_in(m, "vitals") > woken).await;
    assert_eq!(db.count("SELECT count(*) FROM runner_changes WHERE user_id = 200").await, 1);

    // Putting it back resumes the job.
    deploy(&plugins.join("vitals.wasm"), &good);
    wait_count(&db, "SELECT count(*) FROM vitals_daily WHERE user_id = 200", 1, 60).await;
    assert_eq!(db.count(PENDING).await, 0);
    daemon.stop().await;
}

#[tokio::test]
async fn a_shadow_candidate_records_where_it_differs_and_writes_nothing() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let live_version = vitals_version(&std::fs::read(plugins.join("vitals.wasm")).unwrap());
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;

    // The same logic as a candidate: no differences.
    let same = variant(&std::fs::read(plugins_dir().join("vitals.wasm")).unwrap(), "candidate");
    deploy(&plugins.join("vitals.candidate.wasm"), &same);
    daemon.wait_for("Shadow candidate loaded", 1, 60).await;
    insert(&db, 1).await;
    wait_count(&db, "SELECT count(*) FROM vitals_daily WHERE user_id = 1", 1, 60).await;
    assert_eq!(db.count("SELECT count(*) FROM runner_shadow_diffs").await, 0);

    // Different logic: its differences are recorded; the live plugin still writes.
    deploy(&plugins.join("vitals.candidate.wasm"), &std::fs::read(plugins_dir().join("faulty.wasm")).unwrap());
    daemon.wait_for("Shadow candidate loaded", 2, 60).await;
    insert(&db, 2).await;
    wait_count(&db, "SELECT count(*) FROM runner_shadow_diffs", 1, 60).await;
    let diff = db
        .client
        .query_one("SELECT job, user_id, live_version, candidate_version, live_only::text, candidate_only::text FROM runner_shadow_diffs", &[])
        .await
        .unwrap();
    assert_eq!((diff.get::<_, String>(0).as_str(), diff.get::<_, i64>(1)), ("vitals", 2));
    assert_eq!(diff.get::<_, String>(2), live_version);
    assert!(diff.get::<_, String>(3).starts_with("faulty@0.1.0+sha256:"));
    assert!(diff.get::<_, String>(4).contains("\"avg_value\": 70.0"), "{}", diff.get::<_, String>(4));
    assert!(diff.get::<_, String>(5).contains("\"sample_count\": 1"), "{}", diff.get::<_, String>(5));
    let written = db
        .count(&format!("SELECT count(*) FROM vitals_daily WHERE user_id = 2 AND plugin_version = '{live_version}'"))
        .await;
    assert_eq!(written, 1, "the candidate writes no daily rows");

    // Promoting is a rename.
    std::fs::rename(plugins.join("vitals.candidate.wasm"), plugins.join("vitals.wasm")).unwrap();
    daemon.wait_for("Plugin swapped.", 1, 60).await;
    daemon.wait_for("Shadow candidate removed.", 1, 60).await;
    daemon.stop().await;
}

#[tokio::test]
async fn config_edits_apply_live_and_a_bad_edit_keeps_the_running_config() {
    let db = TestDb::new().await;
    let (_dir, config, _plugins) =
        config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", "enabled = true"), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let original = std::fs::read_to_string(&config).unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;

    // Disable the job: new rows wait.
    std::fs::write(&config, original.replace("enabled = true", "enabled = false")).unwrap();
    daemon.wait_for("Config reloaded.", 1, 60).await;
    let addr = daemon.http_address().await;
    let woken = crate::util::wakeups(&addr, "vitals").await;
    insert(&db, 1).await;
    wait_http(&daemon, &addr, "/metrics", 60, |_, m| crate::util::wakeups_in(m, "vitals") > woken).await;
    assert_eq!(db.count(PENDING).await, 1);

    // A broken edit is rejected with its error; the running config stays.
    std::fs::write(&config, original.replace("enabled = true", "enabled = true\nbatch = 3")).unwrap();
    daemon.wait_for("Config rejected; the running config stays in force.", 1, 60).await;
    assert!(daemon.log().contains("unknown field `batch`"), "{}", daemon.log());

    // Enable it again, and change a setting that needs a restart.
    let edited = original
        .replace("connect_attempts = 2", "connect_attempts = 3")
        .replace("[runner]\n", "[runner]\nshutdown_grace = \"5s\"\n")
        .replace("[http]\n", "[http]\nconsole_listen = \"127.0.0.1:0\"\n");
    std::fs::write(&config, edited).unwrap();
    daemon.wait_for("Config reloaded.", 2, 60).await;
    wait_count(&db, "SELECT count(*) FROM vitals_daily WHERE user_id = 1", 1, 60).await;
    let log = daemon.stop().await;
    for setting in ["[database]", "[http]", "[runner] shutdown_grace or keep_history"] {
        assert!(
            log.contains(&format!("setting={setting}")) || log.contains(&format!("setting=\"{setting}\"")),
            "{setting}: {log}"
        );
    }
    assert!(log.contains("needs a restart"), "{log}");
}

#[tokio::test]
async fn chunked_writes_and_a_recreated_folder_are_followed() {
    let db = TestDb::new().await;
    let (dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;

    // Written in place, in chunks: the burst is debounced into one reload.
    let v3 = variant(&std::fs::read(plugins_dir().join("vitals.wasm")).unwrap(), "v3");
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(plugins.join("vitals.wasm")).unwrap();
        for chunk in v3.chunks(v3.len() / 4 + 1) {
            file.write_all(chunk).unwrap();
            file.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    daemon.wait_for("Plugin swapped.", 1, 60).await;
    insert(&db, 1).await;
    wait_for_version(&db, &vitals_version(&v3)).await;

    // The folder itself removed and recreated: watches are re-established.
    std::fs::remove_dir_all(&plugins).unwrap();
    daemon.wait_for("Plugin file is gone: job paused", 1, 60).await;
    std::fs::create_dir(&plugins).unwrap();
    let v4 = variant(&std::fs::read(plugins_dir().join("vitals.wasm")).unwrap(), "v4");
    deploy(&plugins.join("vitals.wasm"), &v4);
    daemon.wait_for_swap_to(&vitals_version(&v4), 60).await;
    insert(&db, 2).await;
    wait_for_version(&db, &vitals_version(&v4)).await;
    // A later deploy is seen too (through the new watch, or at worst the
    // periodic rescan: how soon is the benchmark's business, not a test's).
    let v5 = variant(&v4, "v5");
    deploy(&plugins.join("vitals.wasm"), &v5);
    daemon.wait_for_swap_to(&vitals_version(&v5), 60).await;
    let log = daemon.stop().await;
    assert!(log.contains("Watches re-established."), "{log}");
    drop(dir);
}

#[tokio::test]
async fn a_symlink_out_of_the_plugin_folder_is_refused_and_one_within_it_goes_live() {
    let db = TestDb::new().await;
    let (dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let good = std::fs::read(plugins.join("vitals.wasm")).unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;

    // A link to a file outside the folder: refused, the live version runs on.
    let outside = dir.path().join("elsewhere.wasm");
    std::fs::write(&outside, variant(&good, "outside")).unwrap();
    let link = plugins.join(".vitals.link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    std::fs::rename(&link, plugins.join("vitals.wasm")).unwrap();
    daemon.wait_for("outside the plugin folder: refused", 1, 60).await;
    let out = runner(&config, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("outside the plugin folder: refused"), "{}", text(&out));

    // A link within the folder (a releases/ subfolder, swapped atomically): live.
    std::fs::create_dir(plugins.join("releases")).unwrap();
    let release = variant(&good, "v2");
    std::fs::write(plugins.join("releases/vitals-2.wasm"), &release).unwrap();
    std::os::unix::fs::symlink("releases/vitals-2.wasm", &link).unwrap();
    std::fs::rename(&link, plugins.join("vitals.wasm")).unwrap();
    daemon.wait_for_swap_to(&vitals_version(&release), 60).await;
    daemon.stop().await;
}

//! Production deployment: removing everything the runner installed, the
//! pruning of its history tables, and what `deploy/` ships.

use crate::util::{
    Daemon, TestDb, config, config_with_own_plugins, connect, deploy, http_get, http_post, job, job_on, migrated,
    one_reading, run_ok, runner, text, variant, vitals_version, wait_count, wait_http, wait_settled,
};

/// A team's own tables, made before the runner is installed.
const TEAM_TABLES: &str = "
    CREATE TABLE team_raw (id bigserial PRIMARY KEY, user_id bigint NOT NULL, recorded_at timestamptz NOT NULL,
        metric text NOT NULL, value double precision, unit text NOT NULL);
    CREATE INDEX team_raw_user_time ON team_raw (user_id, recorded_at);
    CREATE TABLE team_daily (user_id bigint NOT NULL, day date NOT NULL, metric text NOT NULL, unit text,
        sample_count int, rejected_count int, min_value double precision, max_value double precision,
        avg_value double precision, last_value double precision, plugin_version text, updated_at timestamptz,
        PRIMARY KEY (user_id, day, metric));
    INSERT INTO team_raw (user_id, recorded_at, metric, value, unit) VALUES
        (1, '2024-06-01 08:00Z', 'heart_rate', 60, 'bpm'), (1, '2024-06-01 09:00Z', 'heart_rate', 80, 'bpm'),
        (2, '2024-06-02 08:00Z', 'heart_rate', 70, 'bpm');";

/// `pg_dump` of one table, definition and data, without the random
/// `\restrict` keys of recent releases. Its lines are sorted: an UPDATE by
/// the application moves a row within the heap, and so in the dump.
fn dump(db: &TestDb, table: &str) -> String {
    let beside_server = runner::db::throwaway::find_bin_dir().map(|b| b.join("pg_dump"));
    let pg_dump = beside_server.ok().filter(|p| p.is_file()).unwrap_or_else(|| "pg_dump".into());
    let out = std::process::Command::new(pg_dump)
        .args(["--no-owner", "--table", table, "--dbname", &db.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<&str> =
        text.lines().filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")).collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// The runner's objects left in the database: triggers, functions, tables.
async fn runner_objects(db: &TestDb) -> Vec<String> {
    db.client
        .query(
            "SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgname LIKE 'runner%'
             UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE proname LIKE 'runner%'
             UNION ALL SELECT 'table ' || relname FROM pg_class WHERE relname LIKE 'runner%' AND relkind IN ('r', 'p')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn uninstall_removes_every_object_of_the_runner_and_leaves_the_source_as_it_was() {
    let db = TestDb::new().await;
    db.client.batch_execute(TEAM_TABLES).await.unwrap();
    let before = dump(&db, "team_raw");
    let (_dir, config) = config(&db.url, &job_on("team", "vitals.wasm", "team_raw", "team_daily", "recorded_at", ""));
    let migrated = text(&run_ok(&config, &["migrate"]).await);
    assert!(!migrated.contains("reference table"), "{migrated}");
    let reference = "SELECT count(*) FROM pg_class WHERE relname ~ '^(vitals|nutrition|lab)_(raw|daily)$'";
    assert_eq!(db.count(reference).await, 0, "migrate created tables no job names");
    run_ok(&config, &["recompute", "--job", "team", "--from", "2024-06-01", "--to", "2024-06-02"]).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    // The API corrects a reading, then puts it back: the source ends as it began.
    db.client.batch_execute("UPDATE team_raw SET value = 100 WHERE id = 2").await.unwrap();
    wait_settled(&db, 60).await;
    assert_eq!(db.count("SELECT max(max_value)::bigint FROM team_daily").await, 100);
    db.client.batch_execute("UPDATE team_raw SET value = 80 WHERE id = 2").await.unwrap();
    wait_settled(&db, 60).await;
    daemon.stop().await;
    assert!(!runner_objects(&db).await.is_empty());

    // Without --yes it lists and removes nothing.
    let listed = text(&run_ok(&config, &["uninstall"]).await);
    for what in
        ["trigger runner_capture_team_insert on team_raw", "function runner_capture_team()", "table runner_changes"]
    {
        assert!(listed.contains(what), "{what} is not listed:\n{listed}");
    }
    assert!(listed.contains("--yes"), "{listed}");
    assert!(db.count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'runner%'").await > 0);

    let removed = text(&run_ok(&config, &["uninstall", "--yes"]).await);
    assert!(removed.contains("removed table runner_group_failures"), "{removed}");
    assert_eq!(runner_objects(&db).await, Vec::<String>::new(), "{removed}");
    assert_eq!(dump(&db, "team_raw"), before, "the source is not as it was before `migrate`");
    assert_eq!(db.count("SELECT count(*) FROM team_daily").await, 2, "the daily rows stay");
    // The API's writes work as before.
    db.client.batch_execute("INSERT INTO team_raw (user_id, recorded_at, metric, value, unit) VALUES (3, now(), 'heart_rate', 1, 'bpm')").await.unwrap();

    let dropped = text(&run_ok(&config, &["uninstall", "--drop-daily", "--yes"]).await);
    assert!(dropped.contains("removed table team_daily"), "{dropped}");
    assert_eq!(db.count("SELECT count(*) FROM pg_class WHERE relname = 'team_daily'").await, 0);
    assert!(text(&run_ok(&config, &["uninstall", "--yes"]).await).contains("nothing of the runner's"));
}

#[tokio::test]
async fn the_daemon_prunes_history_older_than_keep_history() {
    let db = TestDb::new().await;
    let jobs = job_on("vitals", "vitals.wasm", "vitals_raw", "vitals_daily", "recorded_at", "");
    let (_dir, config) = migrated(&db, &jobs).await;
    let text_of = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text_of.replace("[runner]\n", "[runner]\nkeep_history = \"7d\"\n")).unwrap();
    db.client
        .batch_execute(
            "INSERT INTO runner_shadow_diffs (job, user_id, day, live_version, candidate_version, live_only, candidate_only, recorded_at)
             SELECT 'vitals', u, '2024-06-01', 'a', 'b', '[]', '[]', now() - interval '8 days' FROM generate_series(1, 12000) u;
             INSERT INTO runner_shadow_diffs (job, user_id, day, live_version, candidate_version, live_only, candidate_only)
             VALUES ('vitals', 1, '2024-06-01', 'a', 'b', '[]', '[]');
             INSERT INTO runner_recompute_progress (job, from_day, to_day, users, plugin_version, finished_at, updated_at) VALUES
                 ('vitals', '2024-01-01', '2024-01-31', '', 'v1', now() - interval '9 days', now() - interval '9 days'),
                 ('vitals', '2024-02-01', '2024-02-28', '', 'v1', NULL, now() - interval '9 days'),
                 ('vitals', '2024-03-01', '2024-03-31', '', 'v1', now() - interval '1 day', now() - interval '1 day'),
                 ('vitals', '2024-01-01', '2024-01-31', 'after-deploy', 'v1', now() - interval '20 days', now() - interval '20 days'),
                 ('vitals', '2024-01-01', '2024-01-31', 'after-deploy', 'v2', now() - interval '9 days', now() - interval '9 days');",
        )
        .await
        .unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_for("Pruned old history.", 1, 120).await;
    assert_eq!(db.count("SELECT count(*) FROM runner_shadow_diffs").await, 1, "{}", daemon.log());
    let kept: Vec<String> = db
        .client
        .query(
            "SELECT from_day::text || ' ' || users || ' ' || plugin_version FROM runner_recompute_progress ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Unfinished and recent runs stay, and the newest after-deploy row (which
    // says which version the history follows).
    assert_eq!(kept, ["2024-01-01 after-deploy v2", "2024-02-01  v1", "2024-03-01  v1"]);
    daemon.stop().await;
}

#[tokio::test]
async fn a_prune_turn_that_cannot_take_its_lock_gives_up_in_lock_timeout_and_the_daemon_runs_on() {
    let db = TestDb::new().await;
    let jobs = job_on("vitals", "vitals.wasm", "vitals_raw", "vitals_daily", "recorded_at", "");
    let (_dir, config) = migrated(&db, &jobs).await;
    db.client
        .batch_execute(
            "INSERT INTO runner_shadow_diffs (job, user_id, day, live_version, candidate_version, live_only, candidate_only, recorded_at)
             SELECT 'vitals', u, '2024-06-01', 'a', 'b', '[]', '[]', now() - interval '40 days' FROM generate_series(1, 10) u",
        )
        .await
        .unwrap();
    // Someone else holds the history table (a long backup, a DBA's migration).
    let other = connect(&db.url).await;
    other.batch_execute("BEGIN; LOCK TABLE runner_shadow_diffs IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let daemon = Daemon::start(&config);
    daemon.wait_for("Pruning old history failed; it is tried again in an hour.", 1, 120).await;
    let log = daemon.log();
    let warning = log.lines().find(|l| l.contains("Pruning old history failed")).unwrap_or_default();
    assert!(warning.contains("lock timeout"), "the warning says why: {warning}");
    // The groups do not wait for maintenance.
    one_reading(&db, 7, "2024-06-02").await;
    wait_count(&db, "SELECT count(*) FROM vitals_daily WHERE user_id = 7", 1, 120).await;
    other.batch_execute("COMMIT").await.unwrap();
    // Nothing was half-deleted: the turn failed as a whole and is tried again next turn.
    assert_eq!(db.count("SELECT count(*) FROM runner_shadow_diffs").await, 10);
    let log = daemon.stop().await;
    assert!(!log.contains("panicked"), "{log}");
}

/// A lab reading of `user` on 2024-03-10.
async fn lab_reading(db: &TestDb, user: i64) {
    db.client
        .execute(
            "INSERT INTO lab_raw (user_id, collected_at, test_code, value, unit, ref_low, ref_high)
             VALUES ($1, '2024-03-10 08:00Z', '2345-7', 5.0, 'mmol/L', 3.9, 5.5)",
            &[&user],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn rollback_puts_back_the_previous_live_version_and_a_second_rollback_undoes_it() {
    let db = TestDb::new().await;
    let (_dir, config, own) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let live = own.join("vitals.wasm");
    let first = std::fs::read(&live).unwrap();
    // The commands that only look write nothing into the plugin folder.
    run_ok(&config, &["check"]).await;
    run_ok(&config, &["status"]).await;
    run_ok(&config, &["plugin", "validate", live.to_str().unwrap(), "--job", "vitals"]).await;
    assert!(!own.join(".kept").exists(), "a read-only command kept a version");
    let out = runner(&config, &["plugin", "rollback", "--job", "vitals"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "nothing is kept yet: {}", text(&out));
    assert!(text(&out).contains("no earlier version of"), "{}", text(&out));

    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    let second = variant(&first, "v2");
    deploy(&live, &second);
    daemon.wait_for("Plugin swapped.", 1, 120).await;
    let rolled = text(&run_ok(&config, &["plugin", "rollback", "--job", "vitals"]).await);
    assert!(rolled.contains("Rolled back"), "{rolled}");
    assert_eq!(std::fs::read(&live).unwrap(), first);
    let v1 = vitals_version(&first);
    wait_http(&daemon, &addr, "/plugins", 120, |_, body| body.contains(&v1)).await;
    one_reading(&db, 1, "2024-06-01").await;
    wait_settled(&db, 60).await;
    let version: String = db.client.query_one("SELECT plugin_version FROM vitals_daily", &[]).await.unwrap().get(0);
    assert_eq!(version, v1);
    // Run again, it goes back to the version it rolled back from.
    run_ok(&config, &["plugin", "rollback", "--job", "vitals"]).await;
    assert_eq!(std::fs::read(&live).unwrap(), second);
    wait_http(&daemon, &addr, "/plugins", 120, |_, body| body.contains(&vitals_version(&second))).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_garbage_plugin_file_at_start_runs_its_last_good_version_and_never_stops_the_other_jobs() {
    let db = TestDb::new().await;
    let jobs = format!(
        "{}{}",
        job("vitals", "vitals.wasm", ""),
        job_on("lab", "lab.wasm", "lab_raw", "lab_daily", "collected_at", "")
    );
    let (_dir, config, own) = config_with_own_plugins(&db.url, &jobs, &["vitals.wasm", "lab.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let live = own.join("vitals.wasm");
    let good = std::fs::read(&live).unwrap();
    // A first start keeps the good version.
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 2, 120).await;
    daemon.stop().await;

    // A crash in the middle of a deploy leaves garbage in the live file.
    std::fs::write(&live, b"half a file").unwrap();
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Plugin file refused at start", 1, 60).await;
    assert!(daemon.log().contains("ERROR"), "{}", daemon.log());
    one_reading(&db, 1, "2024-06-01").await;
    lab_reading(&db, 1).await;
    wait_settled(&db, 60).await;
    let version: String = db.client.query_one("SELECT plugin_version FROM vitals_daily", &[]).await.unwrap().get(0);
    assert_eq!(version, vitals_version(&good), "the last good version runs");
    assert_eq!(db.count("SELECT count(*) FROM lab_daily").await, 1, "the other job runs");
    let ready = wait_http(&daemon, &addr, "/ready", 30, |status, _| status == 200).await;
    assert!(ready.contains("refused_files") && ready.contains("not a WebAssembly"), "{ready}");
    assert!(daemon.log().contains("the job runs its last good version"), "{}", daemon.log());
    // `runner status` says what the daemon runs and what it refused, and compiles nothing.
    let text_of = std::fs::read_to_string(&config).unwrap();
    let at_daemon = config.with_file_name("status.toml");
    std::fs::write(&at_daemon, text_of.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""))).unwrap();
    let status = text(&run_ok(&at_daemon, &["status"]).await);
    assert!(status.contains(&format!("{} (the daemon runs it)", vitals_version(&good))), "{status}");
    assert!(status.contains("plugin reload refused") && status.contains("not a WebAssembly"), "{status}");
    assert!(!status.contains("Compil"), "{status}");
    let metrics = wait_http(&daemon, &addr, "/metrics", 30, |_, body| body.contains("runner_plugin_refused{")).await;
    assert!(metrics.contains("runner_plugin_refused{job=\"vitals\"} 1"), "{metrics}");
    daemon.stop().await;

    // No good version kept either: the job waits, paused; the others run;
    // a good file deployed later heals it without a restart.
    std::fs::remove_dir_all(own.join(".kept")).unwrap();
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("no good version to run", 1, 60).await;
    let ready = wait_http(&daemon, &addr, "/ready", 30, |status, _| status == 503).await;
    assert!(ready.contains("\"jobs_without_plugin\":[\"vitals\"]"), "{ready}");
    one_reading(&db, 2, "2024-06-01").await;
    lab_reading(&db, 2).await;
    wait_count(&db, "SELECT count(*) FROM lab_daily", 2, 60).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 2").await, 0);
    deploy(&live, &good);
    daemon.wait_for("Plugin swapped.", 1, 120).await;
    wait_settled(&db, 60).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 2").await, 1);
    wait_http(&daemon, &addr, "/ready", 30, |status, _| status == 200).await;
    daemon.stop().await;
}

#[tokio::test]
async fn console_listen_serves_the_console_apart_from_the_metrics_a_remote_prometheus_scrapes() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let text_of = std::fs::read_to_string(&config).unwrap();
    let token = "a-long-enough-admin-token";
    let split = format!("[http]\nconsole_listen = \"127.0.0.1:0\"\nadmin_token = \"{token}\"\n");
    std::fs::write(&config, text_of.replace("[http]\n", &split)).unwrap();
    let daemon = Daemon::start(&config);
    let metrics_addr = daemon.http_address().await;
    daemon.wait_for("Console listening", 1, 60).await;
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("Console listening")).unwrap();
    let console_addr = line[line.find("address=").unwrap() + 8..].split_whitespace().next().unwrap().to_string();
    assert_ne!(metrics_addr, console_addr);

    for path in ["/metrics", "/health", "/ready", "/health/db-pool"] {
        wait_http(&daemon, &metrics_addr, path, 30, |status, _| status == 200).await;
    }
    assert_eq!(http_get(&console_addr, "/plugins").await.0, 200);
    for path in ["/", "/console.js", "/plugins"] {
        assert_eq!(http_get(&metrics_addr, path).await.0, 404, "{path} is served beside the metrics");
    }
    let (status, _) = http_post(&metrics_addr, "/jobs/vitals/pause", Some(token), "").await;
    assert_eq!(status, 404, "an action is served beside the metrics");

    assert_eq!(http_get(&console_addr, "/").await.0, 200);
    let (status, body) = http_post(&console_addr, "/jobs/vitals/pause", Some(token), "").await;
    assert_eq!(status, 200, "{body}");
    wait_http(&daemon, &metrics_addr, "/metrics", 30, |_, body| body.contains("runner_job_paused{job=\"vitals\"} 1"))
        .await;
    daemon.stop().await;
}

/// The repository's `deploy/` folder.
fn deploy_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn the_systemd_unit_verifies_and_stops_later_than_the_shipped_grace() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/runner.service")).unwrap();
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("runner.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/runner", env!("CARGO_BIN_EXE_runner"))).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package `systemd`; `cargo xtask test` installs it)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // It exits 0 on unknown keys, but names them.
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    let config = runner::config::Config::load(&deploy_dir().join("runner.toml")).unwrap();
    let stop = unit.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).unwrap();
    let stop = humantime_serde::re::humantime::parse_duration(stop).unwrap();
    assert!(stop > config.runner.shutdown_grace + std::time::Duration::from_secs(5), "{stop:?}");
    assert!(unit.contains("--config /etc/runner/runner.toml"));
    assert_eq!(config.plugins.dir, std::path::Path::new("/var/lib/runner/plugins"));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    // The reference config is consistent too.
    let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/runner.toml");
    let reference = runner::config::Config::load(&reference).unwrap();
    assert!(reference.warnings().is_empty(), "{:?}", reference.warnings());
}

#[tokio::test]
async fn during_a_rolling_upgrade_an_earlier_runner_works_on_the_newer_schema_and_a_newer_one_waits_for_migrate() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    // A later release's migration, as each one is: it only adds.
    db.client
        .batch_execute(
            "INSERT INTO runner_schema_migrations (version, name) VALUES (1000, 'a later release');
             ALTER TABLE runner_changes ADD COLUMN later text DEFAULT 'x';
             CREATE TABLE runner_later (id int);",
        )
        .await
        .unwrap();
    one_reading(&db, 1, "2024-06-01").await;
    run_ok(&config, &["run", "--once"]).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 1);

    // This release on a schema that lacks one of its migrations: refused,
    // naming the command, before anything runs.
    db.client.batch_execute("DELETE FROM runner_schema_migrations WHERE version = 5").await.unwrap();
    for args in [&["run"][..], &["check"]] {
        let out = runner(&config, args).output().await.unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains("lacks migration(s) 5 (change capture)") && said.contains("runner migrate"), "{said}");
    }
    run_ok(&config, &["migrate"]).await;
    run_ok(&config, &["check"]).await;
}

#[tokio::test]
async fn migrate_creates_the_reference_tables_a_job_names_or_all_when_asked() {
    let db = TestDb::new().await;
    let (_dir, config) = config(&db.url, &job("vitals", "vitals.wasm", ""));
    let said = text(&run_ok(&config, &["migrate"]).await);
    for table in ["vitals_raw", "vitals_daily"] {
        assert!(said.contains(&format!("created reference table {table} (job vitals names it)")), "{said}");
    }
    let reference = "SELECT count(*) FROM pg_class WHERE relname ~ '^(vitals|nutrition|lab)_(raw|daily)$'";
    assert_eq!(db.count(reference).await, 2);
    assert!(text(&run_ok(&config, &["migrate"]).await).contains("schema is up to date"));
    let said = text(&run_ok(&config, &["migrate", "--reference-schema"]).await);
    assert!(said.contains("created reference table lab_daily (--reference-schema)"), "{said}");
    assert_eq!(db.count(reference).await, 6);
}

#[tokio::test]
async fn a_plugin_folder_where_versions_cannot_be_kept_loses_rollback_only() {
    let db = TestDb::new().await;
    let (_dir, config, own) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    // A file where the folder of kept versions would go.
    std::fs::write(own.join(".kept"), b"not a folder").unwrap();
    run_ok(&config, &["migrate"]).await;
    one_reading(&db, 1, "2024-06-01").await;
    let log = text(&run_ok(&config, &["run", "--once"]).await);
    assert!(log.contains("Cannot keep a copy of the live plugin for rollback; it runs anyway."), "{log}");
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 1);
}

//! Production deployment: removing everything the runner installed, the
//! pruning of its history tables, and what `deploy/` ships.

use crate::util::{Daemon, TestDb, config, job_on, migrated, run_ok, text, wait_settled};

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
    run_ok(&config, &["migrate"]).await;
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

//! Change capture: the daily rows follow every insert, correction, move,
//! deletion and truncate of raw rows with no command, the runner never
//! writes a source (it runs as a role that may only read them), and what
//! the triggers record never makes an application's statement fail.

use std::time::Duration;

use crate::util::{Daemon, TestDb, config, daily_text, job, job_on, migrated, run_ok, runner, text, wait_settled};

/// The daily rows a fresh database computes from `db`'s current raw vitals
/// rows, aggregated from scratch by `run --once`.
async fn from_scratch(db: &TestDb) -> String {
    let rows = db
        .client
        .query("SELECT user_id, recorded_at, metric, value, unit FROM vitals_raw ORDER BY id", &[])
        .await
        .unwrap();
    let fresh = TestDb::new().await;
    let (_dir, config) = migrated(&fresh, &job("vitals", "vitals.wasm", "")).await;
    for r in &rows {
        let (user, at, metric, value, unit): (i64, chrono::DateTime<chrono::Utc>, String, Option<f64>, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        fresh
            .client
            .execute(
                "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, $2, $3, $4, $5)",
                &[&user, &at, &metric, &value, &unit],
            )
            .await
            .unwrap();
    }
    run_ok(&config, &["run", "--once"]).await;
    daily_text(&fresh.client, "vitals_daily").await
}

/// Runs `sql` on the raw table, waits for the runner, and checks the daily
/// rows against a recomputation from scratch.
async fn change_and_compare(db: &TestDb, daemon: &Daemon, what: &str, sql: &str) {
    db.client.batch_execute(sql).await.unwrap();
    wait_settled(db, 60).await;
    let (now, expected) = (daily_text(&db.client, "vitals_daily").await, from_scratch(db).await);
    assert_eq!(now, expected, "after {what}:\n{}", daemon.log());
}

#[tokio::test]
async fn daily_rows_follow_corrections_moves_deletions_and_truncate_with_no_command() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    let readings = "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES
        (1, '2024-06-01 08:00Z', 'heart_rate', 60, 'bpm'), (1, '2024-06-01 09:00Z', 'heart_rate', 80, 'bpm'),
        (1, '2024-06-01 09:30Z', 'weight', 81, 'kg'), (2, '2024-06-01 10:00Z', 'heart_rate', 70, 'bpm'),
        (2, '2024-06-02 10:00Z', 'spo2', 97, '%'), (3, '2024-06-01 07:00Z', 'heart_rate', 55, 'bpm')";
    change_and_compare(&db, &daemon, "inserts", readings).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 5);

    let cases = [
        ("a corrected value", "UPDATE vitals_raw SET value = 100 WHERE user_id = 1 AND value = 80"),
        (
            "a reading moved to the next day",
            "UPDATE vitals_raw SET recorded_at = recorded_at + interval '1 day' WHERE metric = 'weight'",
        ),
        ("a reading moved to another user", "UPDATE vitals_raw SET user_id = 4 WHERE user_id = 3"),
        ("a single deletion", "DELETE FROM vitals_raw WHERE user_id = 1 AND value = 60"),
        ("a whole day deleted", "DELETE FROM vitals_raw WHERE user_id = 2 AND recorded_at < '2024-06-02'"),
    ];
    for (what, sql) in cases {
        change_and_compare(&db, &daemon, what, sql).await;
    }
    // The emptied days lost their daily rows.
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 3").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 2 AND day = '2024-06-01'").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 4").await, 1);

    // TRUNCATE: every day that had daily rows is queued, and emptied.
    change_and_compare(&db, &daemon, "a TRUNCATE", "TRUNCATE vitals_raw").await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 0);
    let log = daemon.stop().await;
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test]
async fn a_change_committed_while_its_group_runs_is_aggregated_after() {
    let db = TestDb::new().await;
    // diffy spins `value` iterations on a `slow` reading: the group's
    // transaction stays open while the plugin runs.
    let (_dir, config) = migrated(&db, &job("diffy", "diffy.wasm", "time_limit = \"60s\"")).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             VALUES (1, '2024-06-01 08:00Z', 'slow', 300000000, 'n')",
        )
        .await
        .unwrap();
    // The group has taken its key and read its day: its session waits on the plugin.
    crate::util::wait_runner_in_transaction(&db).await;
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             VALUES (1, '2024-06-01 09:00Z', 'heart_rate', 70, 'bpm')",
        )
        .await
        .unwrap();
    wait_settled(&db, 120).await;
    let metrics: Vec<String> = db
        .client
        .query("SELECT metric FROM vitals_daily WHERE user_id = 1 ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(metrics, ["heart_rate", "slow"], "the reading that arrived mid-group is in:\n{}", daemon.log());
    daemon.stop().await;
}

#[tokio::test]
async fn the_daemon_and_commands_run_as_the_role_print_grants_describes_and_the_api_needs_no_new_right() {
    let db = TestDb::new().await;
    let (_dir, owner_config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    // Roles are the cluster's: named after this test's database.
    let name: String = db.client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    let (runner_role, api_role) = (format!("{name}_runner"), format!("{name}_api"));
    let grants = text(&run_ok(&owner_config, &["migrate", "--print-grants", &runner_role]).await);
    assert!(grants.contains("GRANT SELECT ON \"vitals_raw\" TO"), "{grants}");
    // The printed text runs as it is on a database without the role: it creates it.
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {api_role} LOGIN;
             {grants}
             GRANT SELECT, INSERT, UPDATE, DELETE ON vitals_raw TO {api_role};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {api_role};"
        ))
        .await
        .unwrap();
    let as_role = |role: &str| db.url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let text_of = std::fs::read_to_string(&owner_config).unwrap();
    let config = owner_config.with_file_name("as-runner.toml");
    std::fs::write(&config, text_of.replace(&db.url, &as_role(&runner_role))).unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    let api = crate::util::connect(&as_role(&api_role)).await;
    api.batch_execute(
        "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES
            (1, '2024-06-01 08:00Z', 'heart_rate', 60, 'bpm'), (1, '2024-06-01 09:00Z', 'heart_rate', 80, 'bpm'),
            (2, '2024-06-01 09:00Z', 'heart_rate', 0, 'bpm');
         UPDATE vitals_raw SET value = 90 WHERE value = 80;",
    )
    .await
    .unwrap();
    wait_settled(&db, 60).await;
    let avg: f64 =
        db.client.query_one("SELECT avg_value FROM vitals_daily WHERE user_id = 1", &[]).await.unwrap().get(0);
    assert_eq!(avg, 75.0);
    daemon.stop().await;
    // Every other command of the daemon's role works with those rights too.
    let status = text(&run_ok(&config, &["status"]).await);
    assert!(status.contains("vitals"), "{status}");
    run_ok(&config, &["recompute", "--job", "vitals", "--from", "2024-06-01", "--to", "2024-06-01"]).await;
    run_ok(&config, &["retry-failed", "--job", "vitals"]).await;
    run_ok(&config, &["check"]).await;
    let rights: bool = db
        .client
        .query_one(
            &format!(
                "SELECT has_table_privilege('{runner_role}', 'vitals_raw', 'INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER')
                     OR has_schema_privilege('{runner_role}', 'public', 'CREATE')"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!rights, "the daemon's role may change the source or the schema:\n{grants}");

    // A login with no grants at all can neither attach the capture function
    // (SECURITY DEFINER) to a table of its own to flood the queue, nor do
    // anything through the runner's other function (it runs with the
    // caller's rights).
    let nobody = format!("{name}_nobody");
    db.client.batch_execute(&format!("CREATE ROLE {nobody} LOGIN")).await.unwrap();
    let nobody = crate::util::connect(&as_role(&nobody)).await;
    nobody
        .batch_execute(
            "CREATE TEMP TABLE mine (id bigint, user_id bigint, recorded_at timestamptz, metric text,
                 value double precision, unit text)",
        )
        .await
        .unwrap();
    for sql in [
        "CREATE TRIGGER flood AFTER INSERT ON mine REFERENCING NEW TABLE AS runner_new FOR EACH STATEMENT
             EXECUTE FUNCTION public.runner_capture_vitals()",
        "SELECT * FROM public.runner_expand_purges('vitals', 'vitals_daily')",
    ] {
        let e = nobody.batch_execute(sql).await.unwrap_err();
        assert!(e.as_db_error().is_some_and(|d| d.message().contains("permission denied")), "{sql}: {e:?}");
    }
}

#[tokio::test]
async fn keys_of_no_group_and_timestamps_at_the_ends_of_time_never_fail_an_insert() {
    let db = TestDb::new().await;
    migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    db.client
        .batch_execute(
            "CREATE TABLE loose_raw (id bigserial PRIMARY KEY, user_id bigint, recorded_at timestamptz,
                 metric text, value double precision, unit text);
             CREATE TABLE loose_daily (LIKE vitals_daily INCLUDING ALL);",
        )
        .await
        .unwrap();
    // A zone 14 hours ahead: the last representable instants overflow there.
    let loose =
        job_on("loose", "vitals.wasm", "loose_raw", "loose_daily", "recorded_at", "timezone = \"Pacific/Kiritimati\"");
    let (_dir, config) = crate::util::config(&db.url, &format!("{}{loose}", job("vitals", "vitals.wasm", "")));
    run_ok(&config, &["migrate"]).await;
    for at in ["NULL", "'infinity'", "'-infinity'", "'4713-01-01 00:00:00+00 BC'", "'294276-12-31 23:00:00+00'"] {
        db.client
            .batch_execute(&format!(
                "INSERT INTO loose_raw (user_id, recorded_at, metric, value, unit) VALUES (1, {at}, 'heart_rate', 60, 'bpm')"
            ))
            .await
            .unwrap_or_else(|e| panic!("an insert at {at} failed: {e:?}"));
    }
    db.client
        .batch_execute(
            "INSERT INTO loose_raw (user_id, recorded_at, metric, value, unit) VALUES
                 (NULL, '2024-06-01 08:00Z', 'heart_rate', 60, 'bpm'), (2, '2024-06-01 08:00Z', 'heart_rate', 61, 'bpm')",
        )
        .await
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM runner_changes WHERE job = 'loose'").await, 1, "only user 2's day");
    run_ok(&config, &["run", "--once"]).await;
    assert_eq!(db.count("SELECT count(*) FROM loose_daily").await, 1);
    let status = text(&run_ok(&config, &["status"]).await);
    assert!(status.contains("6 raw row(s) belong to no group"), "{status}");
    let check = text(&run_ok(&config, &["check"]).await);
    assert!(check.contains("6 raw row(s) belong to no group"), "{check}");
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    crate::util::wait_http(&daemon, &addr, "/", 60, |_, page| page.contains("6 raw row(s) belong to no group")).await;
    daemon.stop().await;
}

/// A trigger wakes the runners only when its job's queue held nothing
/// before. That check stays one index probe whatever the statistics say:
/// written as `NOT EXISTS (… id < first)` and planned from statistics taken
/// while the job had a backlog, it became a sequential scan of every job's
/// keys on each insert once the job's own keys were taken and another's
/// remained (60 ms an insert behind 600,000 keys, measured).
#[tokio::test]
async fn another_jobs_backlog_never_makes_an_insert_scan_the_queue() {
    let db = TestDb::new().await;
    migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let second = job_on("second", "vitals.wasm", "vitals_raw", "second_daily", "recorded_at", "");
    db.client.batch_execute("CREATE TABLE second_daily (LIKE vitals_daily INCLUDING ALL)").await.unwrap();
    let (_dir, config) = crate::util::config(&db.url, &format!("{}{second}", job("vitals", "vitals.wasm", "")));
    run_ok(&config, &["migrate"]).await;
    // Statistics taken while both jobs had a backlog; then `vitals`'s keys
    // are taken and `second`'s remain.
    db.client
        .batch_execute(
            "INSERT INTO runner_changes (job, user_id, day)
                 SELECT v.job, g, DATE '2024-06-01' FROM generate_series(1, 50000) g, (VALUES ('vitals'), ('second')) v(job);
             ANALYZE runner_changes;
             DELETE FROM runner_changes WHERE job = 'vitals';",
        )
        .await
        .unwrap();
    // Inserts one statement at a time, as an API does (PL/pgSQL plans the
    // check at its first calls and may settle on a generic plan after five),
    // then this transaction's own scans of the queue. On a session of its
    // own: a session's counts not yet reported include its earlier work.
    let api = crate::util::connect(&db.url).await;
    api.batch_execute("BEGIN").await.unwrap();
    for user in 1..=10 {
        api.batch_execute(&format!(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
                     VALUES ({user}, '2024-06-02 08:00Z', 'heart_rate', 60, 'bpm')"
        ))
        .await
        .unwrap();
    }
    let scans = api
        .query_one(
            "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = 'runner_changes'",
            &[],
        )
        .await
        .unwrap();
    api.batch_execute("COMMIT").await.unwrap();
    let (seq, index): (i64, i64) = (scans.get(0), scans.get(1));
    assert_eq!(seq, 0, "the wake-up checks scanned the whole queue ({seq} sequential scans, {index} index scans)");
    assert!(index >= 20, "each insert's two checks read the queue by index: {index}");
    assert_eq!(db.count("SELECT count(*) FROM runner_changes WHERE day = '2024-06-02'").await, 20);
}

#[tokio::test]
async fn a_capture_that_no_longer_fits_the_config_is_named_and_migrate_fixes_it() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, original.replace("[jobs.vitals]\n", "[jobs.vitals]\ntimezone = \"America/New_York\"\n"))
        .unwrap();
    for command in [&["check"][..], &["run", "--once"]] {
        let out = runner(&config, command).output().await.unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("was installed for another configuration") && text(&out).contains("runner migrate"),
            "{}",
            text(&out)
        );
    }
    run_ok(&config, &["migrate"]).await;
    run_ok(&config, &["check"]).await;
    // A trigger dropped by hand: named too.
    db.client.batch_execute("DROP TRIGGER runner_capture_vitals_delete ON vitals_raw").await.unwrap();
    let out = runner(&config, &["check"]).output().await.unwrap();
    assert!(text(&out).contains("lacks 1 of the job's 4 change triggers"), "{}", text(&out));
    run_ok(&config, &["migrate"]).await;
    run_ok(&config, &["check"]).await;
}

#[tokio::test]
async fn migrate_refuses_a_view_or_a_missing_column_naming_it_and_changes_nothing() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE base (id bigserial PRIMARY KEY, user_id bigint NOT NULL, recorded_at timestamptz NOT NULL,
                 metric text, value double precision, unit text);
             CREATE VIEW readings_view AS SELECT * FROM base;
             CREATE TABLE no_time (id bigserial PRIMARY KEY, user_id bigint NOT NULL, metric text);
             CREATE TABLE some_daily (LIKE base);",
        )
        .await
        .unwrap();
    let jobs = format!(
        "{}{}",
        job_on("viewed", "vitals.wasm", "readings_view", "some_daily", "recorded_at", ""),
        job_on("timeless", "vitals.wasm", "no_time", "other_daily", "recorded_at", "")
    );
    let (_dir, config) = config(&db.url, &jobs);
    let out = runner(&config, &["migrate"]).output().await.unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("job viewed: source readings_view is a view"), "{said}");
    assert!(said.contains("job timeless: table no_time has no column `recorded_at`"), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(db.count("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'runner_%'").await, 0, "{said}");
}

#[tokio::test]
async fn a_retention_purge_keeps_the_daily_history_before_the_frozen_horizon() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "frozen_before = \"30d\"")).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    db.client
        .batch_execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES
                 (1, now() - interval '90 days', 'heart_rate', 60, 'bpm'),
                 (1, now() - interval '1 day', 'heart_rate', 70, 'bpm'),
                 (1, now() - interval '1 day' + interval '1 minute', 'heart_rate', 80, 'bpm')",
        )
        .await
        .unwrap();
    // A day before the horizon is not aggregated any more; recent ones are.
    wait_settled(&db, 60).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 1);
    // History aggregated earlier (say, before the horizon was set) stays
    // through a purge of its raw rows.
    let today = chrono::Utc::now().date_naive();
    let (from, to) = ((today - chrono::Days::new(100)).to_string(), (today + chrono::Days::new(1)).to_string());
    run_ok(&config, &["recompute", "--job", "vitals", "--from", &from, "--to", &to]).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 2);
    db.client.batch_execute("DELETE FROM vitals_raw WHERE recorded_at < now() - interval '60 days'").await.unwrap();
    db.client.batch_execute("DELETE FROM vitals_raw WHERE value = 80").await.unwrap();
    wait_settled(&db, 60).await;
    run_ok(&config, &["recompute", "--job", "vitals", "--from", &from, "--to", &to, "--restart"]).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 2, "{}", daemon.log());
    let recent: f64 = db
        .client
        .query_one("SELECT avg_value FROM vitals_daily WHERE day > current_date - 10", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recent, 70.0, "a recent correction still applies");

    // The horizon's own day (today less 30 days) is not frozen: its last
    // raw row deleted, its daily row goes.
    let horizon_day = "((now() AT TIME ZONE 'UTC')::date - 30)::timestamp AT TIME ZONE 'UTC' + interval '12 hours'";
    db.client
        .batch_execute(&format!(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES (2, {horizon_day}, 'heart_rate', 60, 'bpm')"
        ))
        .await
        .unwrap();
    wait_settled(&db, 60).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 2").await, 1, "{}", daemon.log());
    db.client.batch_execute("DELETE FROM vitals_raw WHERE user_id = 2").await.unwrap();
    wait_settled(&db, 60).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 2").await, 0, "{}", daemon.log());
    daemon.stop().await;
}

#[tokio::test]
async fn concurrent_inserts_updates_and_deletes_beside_two_runners_end_equal_to_a_recomputation() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "batch_size = 10")).await;
    let first = Daemon::start(&config);
    let second = Daemon::start(&config);
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let url = db.url.clone();
            tokio::spawn(async move {
                let client = crate::util::connect(&url).await;
                // A fixed pseudo-random walk per producer: reproducible.
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ p;
                let mut next = move |n: u64| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % n
                };
                for _ in 0..150 {
                    let (user, day, value) = (1 + next(6) as i64, next(3), 40.0 + next(120) as f64);
                    let at = format!("2024-06-0{} {:02}:00Z", 1 + day, next(24));
                    let sql = match next(10) {
                        0..=5 => format!(
                            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
                             VALUES ({user}, '{at}', 'heart_rate', {value}, 'bpm')"
                        ),
                        6 | 7 => format!(
                            "UPDATE vitals_raw SET value = {value}, recorded_at = '{at}'
                             WHERE id = (SELECT id FROM vitals_raw WHERE user_id = {user} ORDER BY id LIMIT 1)"
                        ),
                        8 => format!(
                            "UPDATE vitals_raw SET user_id = {user} WHERE id = (SELECT max(id) FROM vitals_raw)"
                        ),
                        _ => format!(
                            "DELETE FROM vitals_raw WHERE id = (SELECT min(id) FROM vitals_raw WHERE user_id = {user})"
                        ),
                    };
                    client.batch_execute(&sql).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(next(15))).await;
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    wait_settled(&db, 120).await;
    let (now, expected) = (daily_text(&db.client, "vitals_daily").await, from_scratch(&db).await);
    assert_eq!(now, expected, "first runner:\n{}\nsecond:\n{}", first.log(), second.log());
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn two_runners_share_one_recompute_after_deploy_through_the_queue() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) = crate::util::config_with_own_plugins(
        &db.url,
        &job("vitals", "vitals.wasm", "recompute_after_deploy = \"3d\""),
        &["vitals.wasm"],
    );
    run_ok(&config, &["migrate"]).await;
    let today = chrono::Utc::now().date_naive();
    runner::db::seed::vitals(&db.client, 40, 3, today - chrono::Days::new(2)).await.unwrap();
    let (first, second) = (Daemon::start(&config), Daemon::start(&config));
    wait_settled(&db, 120).await;
    let v2 = crate::util::variant(&std::fs::read(crate::util::plugins_dir().join("vitals.wasm")).unwrap(), "v2");
    crate::util::deploy(&plugins.join("vitals.wasm"), &v2);
    let finished = "Recompute after deploy finished";
    first.wait_for(finished, 1, 180).await;
    second.wait_for(finished, 1, 180).await;
    wait_settled(&db, 120).await;
    let stale =
        format!("SELECT count(*) FROM vitals_daily WHERE plugin_version <> '{}'", crate::util::vitals_version(&v2));
    assert_eq!(db.count(&stale).await, 0);
    // Each group of the window was queued once, by one runner or the other.
    let queued = |log: &str| -> u64 {
        let line = log.lines().find(|l| l.contains(finished)).unwrap();
        let at = line.find("queued_by_this_runner=").unwrap() + "queued_by_this_runner=".len();
        line[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let (a, b) = (queued(&first.log()), queued(&second.log()));
    assert_eq!(a + b, 40 * 3, "{a} + {b}");
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn migrate_by_a_role_that_may_not_trigger_on_the_source_says_so_and_changes_nothing() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE theirs (id bigserial PRIMARY KEY, user_id bigint NOT NULL, recorded_at timestamptz NOT NULL,
                 metric text, value double precision, unit text);
             CREATE ROLE migrator LOGIN;
             GRANT CREATE, USAGE ON SCHEMA public TO migrator;
             GRANT SELECT ON theirs TO migrator;",
        )
        .await
        .unwrap();
    let url = db.url.replacen("postgres://postgres@", "postgres://migrator@", 1);
    let (_dir, config) = config(&url, &job_on("theirs", "vitals.wasm", "theirs", "theirs_daily", "recorded_at", ""));
    let out = runner(&config, &["migrate"]).output().await.unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("job theirs: cannot install the change triggers on theirs")
            && said.contains("run `runner migrate` as the table's owner"),
        "{said}"
    );
    assert_eq!(db.count("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'runner_%'").await, 0, "{said}");
    assert_eq!(db.count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'theirs'::regclass").await, 0);
}

#[tokio::test]
async fn a_truncate_whose_snapshot_predates_the_daily_rows_still_empties_them_at_every_isolation_level() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;
    for level in ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"] {
        // The truncating transaction takes its snapshot first...
        let app = crate::util::connect(&db.url).await;
        app.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM vitals_daily")).await.unwrap();
        // ...then a reading arrives and the runner commits its daily row.
        crate::util::one_reading(&db, 1, "2024-06-01").await;
        wait_settled(&db, 60).await;
        assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 1, "{level}");
        app.batch_execute("TRUNCATE vitals_raw; COMMIT").await.unwrap();
        wait_settled(&db, 60).await;
        assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 0, "{level}: stale daily rows");
    }
    daemon.stop().await;
}

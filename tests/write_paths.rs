//! Every way a write reaches a source, beside a running daemon: writes
//! made directly on partitions, partitions created, attached, truncated,
//! detached and dropped, writes under `session_replication_role = replica`,
//! and change triggers disabled meanwhile (said loudly, then mended).

use std::path::Path;

use crate::util::{Daemon, TestDb, config, counts_by_day, daily_counts, http_get, job_on, run_ok, runner, text};

/// Waits until the daily rows are those of the raw rows now in `table`.
async fn wait_followed(db: &TestDb, daemon: &Daemon, table: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (now, want) =
            (daily_counts(db).await, counts_by_day(db, table, "(recorded_at AT TIME ZONE 'UTC')::date").await);
        if now == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "after {what}:\n daily {now}\n  want {want}\n{}", daemon.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A config with one vitals job on `source`, watched every second.
fn watched(db: &TestDb, source: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = config(&db.url, &job_on("vitals", "vitals.wasm", source, "vitals_daily", "recorded_at", ""));
    let text = std::fs::read_to_string(&path).unwrap().replace("poll_interval = \"60s\"", "poll_interval = \"1s\"");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// One reading of `user` at `at` (an SQL expression).
fn insert(table: &str, user: i64, at: &str) -> String {
    format!(
        "INSERT INTO {table} (user_id, recorded_at, metric, value, unit) VALUES ({user}, {at}, 'heart_rate', 60, 'bpm')"
    )
}

/// `readings`, a raw vitals table partitioned by month, with the 2024
/// partitions of `months` (`readings_2024_MM`).
async fn partitioned(db: &TestDb, months: &[u32]) {
    let mut sql = "CREATE TABLE readings (id bigserial, user_id bigint NOT NULL, recorded_at timestamptz NOT NULL,
         metric text NOT NULL, value double precision, unit text NOT NULL) PARTITION BY RANGE (recorded_at);
         CREATE INDEX ON readings (user_id, recorded_at);"
        .to_string();
    for m in months {
        sql.push_str(&format!(
            "CREATE TABLE readings_2024_{m:02} PARTITION OF readings FOR VALUES FROM ('2024-{m:02}-01Z') TO ('2024-{:02}-01Z');",
            m + 1
        ));
    }
    db.client.batch_execute(&sql).await.unwrap();
}

async fn check(config: &Path) -> (Option<i32>, String) {
    let out = runner(config, &["check"]).output().await.unwrap();
    (out.status.code(), text(&out))
}

#[tokio::test]
async fn partitions_written_directly_created_attached_truncated_detached_and_dropped_are_followed() {
    let db = TestDb::new().await;
    partitioned(&db, &[5, 6]).await;
    let (_dir, config) = watched(&db, "readings");
    let out = text(&run_ok(&config, &["migrate"]).await);
    assert!(out.contains("installed change capture on readings and its 2 partition(s)"), "{out}");
    let (code, said) = check(&config).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("change capture covers 2 partition(s): readings_2024_05 (2024-04-30 to 2024-06-02)"),
        "{said}"
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for("Job started.", 1, 60).await;

    // Through the parent, and directly on each partition.
    for (table, user, at) in [
        ("readings", 1, "2024-05-03 10:00Z"),
        ("readings_2024_05", 2, "2024-05-04 10:00Z"),
        ("readings_2024_06", 3, "2024-06-04 10:00Z"),
        ("readings_2024_06", 3, "2024-06-05 10:00Z"),
    ] {
        db.client.batch_execute(&insert(table, user, &format!("'{at}'"))).await.unwrap();
    }
    wait_followed(&db, &daemon, "readings", "inserts on partitions").await;
    db.client.batch_execute("UPDATE readings_2024_06 SET recorded_at = recorded_at + interval '1 day'").await.unwrap();
    db.client.batch_execute("DELETE FROM readings_2024_05 WHERE user_id = 2").await.unwrap();
    wait_followed(&db, &daemon, "readings", "an update and a delete on partitions").await;

    // A partition created while the daemon runs gets capture of its own.
    db.client
        .batch_execute(
            "CREATE TABLE readings_2024_07 PARTITION OF readings FOR VALUES FROM ('2024-07-01Z') TO ('2024-08-01Z')",
        )
        .await
        .unwrap();
    daemon.wait_for("A partition joined the source", 1, 60).await;
    db.client.batch_execute(&insert("readings_2024_07", 4, "'2024-07-02 10:00Z'")).await.unwrap();
    wait_followed(&db, &daemon, "readings", "an insert on a new partition").await;

    // A table with rows attached: its days are queued.
    db.client
        .batch_execute(&format!(
            "CREATE TABLE readings_2024_08 (LIKE readings INCLUDING DEFAULTS);
             {};
             ALTER TABLE readings ATTACH PARTITION readings_2024_08 FOR VALUES FROM ('2024-08-01Z') TO ('2024-09-01Z')",
            insert("readings_2024_08", 5, "'2024-08-09 10:00Z'")
        ))
        .await
        .unwrap();
    wait_followed(&db, &daemon, "readings", "an attach").await;

    // A partition truncated, detached, dropped: its days are emptied.
    db.client.batch_execute("TRUNCATE readings_2024_05").await.unwrap();
    wait_followed(&db, &daemon, "readings", "a truncate of a partition").await;
    db.client.batch_execute("ALTER TABLE readings DETACH PARTITION readings_2024_06").await.unwrap();
    wait_followed(&db, &daemon, "readings", "a detach").await;
    db.client.batch_execute("DROP TABLE readings_2024_07").await.unwrap();
    wait_followed(&db, &daemon, "readings", "a drop").await;
    assert_eq!(daily_counts(&db).await, "5 2024-08-09 1");
    let status = text(&run_ok(&config, &["status"]).await);
    assert!(
        status.contains(
            "change capture covers 2 partition(s): readings_2024_05 (2024-04-30 to 2024-06-02), readings_2024_08"
        ),
        "{status}"
    );
    let log = daemon.stop().await;
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test]
async fn replica_role_writes_are_captured_and_disabled_triggers_are_said_loudly_then_mended() {
    let db = TestDb::new().await;
    let (_dir, config) = watched(&db, "vitals_raw");
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Job started.", 1, 60).await;

    // Logical replication's apply writes as `replica`: captured all the same.
    db.client
        .batch_execute(&format!(
            "SET session_replication_role = replica; {}; RESET session_replication_role",
            insert("vitals_raw", 1, "now()")
        ))
        .await
        .unwrap();
    wait_followed(&db, &daemon, "vitals_raw", "an insert as replica").await;

    // Triggers disabled while the daemon runs: said at error level, on
    // /ready (degraded, still 200), in a metric, and by `check`.
    db.client.batch_execute("ALTER TABLE vitals_raw DISABLE TRIGGER USER").await.unwrap();
    daemon.wait_for("Change capture does not fire on every write", 1, 60).await;
    assert!(daemon.log().lines().any(|l| l.contains("ERROR") && l.contains("Change capture does not fire")));
    let (code, body) = http_get(&addr, "/ready").await;
    assert!(
        code == 200 && body.contains("\"status\":\"degraded\"") && body.contains("changes may be missed"),
        "{body}"
    );
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert!(metrics.contains("runner_capture_complete{job=\"vitals\"} 0"), "{metrics}");
    let (code, said) = check(&config).await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("has 4 of the job's change triggers disabled"), "{said}");
    // A write meanwhile (today's, as live writes are) is missed...
    db.client.batch_execute(&insert("vitals_raw", 2, "now()")).await.unwrap();

    // ...until capture is restored: the daemon names the repair.
    run_ok(&config, &["migrate"]).await;
    daemon.wait_for("Change capture fires on every write again", 1, 60).await;
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("fires on every write again")).unwrap();
    let command = line.split("command=").nth(1).unwrap();
    let args: Vec<&str> = command.trim_matches('"').split_whitespace().skip(1).take(7).collect();
    assert_eq!(args[..3], ["recompute", "--job", "vitals"], "{line}");
    let (_, body) = http_get(&addr, "/ready").await;
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    run_ok(&config, &args).await;
    wait_followed(&db, &daemon, "vitals_raw", "the named recompute").await;
    daemon.stop().await;

    // With --repair, the daemon queues the missed days itself.
    let repairing = Daemon::spawn({
        let mut cmd = runner(&config, &["run", "--repair"]);
        cmd.kill_on_drop(true);
        cmd
    });
    repairing.wait_for("Job started.", 1, 60).await;
    db.client.batch_execute("ALTER TABLE vitals_raw DISABLE TRIGGER runner_capture_vitals_insert").await.unwrap();
    repairing.wait_for("Change capture does not fire on every write", 1, 60).await;
    db.client.batch_execute(&insert("vitals_raw", 3, "now()")).await.unwrap();
    run_ok(&config, &["migrate"]).await;
    repairing.wait_for("the days that may have missed changes are queued (--repair)", 1, 60).await;
    wait_followed(&db, &repairing, "vitals_raw", "a repair").await;
    repairing.stop().await;
}

#[tokio::test]
async fn a_partition_the_daemons_role_cannot_cover_is_said_loudly_and_migrate_mends_it() {
    let db = TestDb::new().await;
    partitioned(&db, &[5]).await;
    let (_dir, owner_config) = watched(&db, "readings");
    run_ok(&owner_config, &["migrate"]).await;
    // The daemon runs as the least-privilege role `--print-grants` creates.
    let name: String = db.client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    let role = format!("{name}_daemon");
    let grants = text(&run_ok(&owner_config, &["migrate", "--print-grants", &role]).await);
    db.client.batch_execute(&grants).await.unwrap();
    let url = db.url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let config = owner_config.with_file_name("as-daemon.toml");
    std::fs::write(&config, std::fs::read_to_string(&owner_config).unwrap().replace(&db.url, &url)).unwrap();
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Job started.", 1, 60).await;

    // The application adds a partition: the daemon may not put triggers on it.
    db.client
        .batch_execute(
            "CREATE TABLE readings_2024_06 PARTITION OF readings FOR VALUES FROM ('2024-06-01Z') TO ('2024-07-01Z')",
        )
        .await
        .unwrap();
    daemon.wait_for("Cannot install change capture on a new partition", 1, 60).await;
    daemon.wait_for("Change capture does not fire on every write", 1, 60).await;
    let (code, body) = http_get(&addr, "/ready").await;
    assert!(code == 200 && body.contains("readings_2024_06"), "{body}");
    // Through the parent, writes are still captured; straight into the new
    // partition, not yet.
    db.client.batch_execute(&insert("readings", 1, "'2024-05-05 10:00Z'")).await.unwrap();
    db.client.batch_execute(&insert("readings_2024_06", 2, "'2024-06-03 10:00Z'")).await.unwrap();

    // The owner's migrate covers it; the daemon names what to recompute.
    run_ok(&owner_config, &["migrate"]).await;
    daemon.wait_for("Change capture fires on every write again", 1, 60).await;
    run_ok(&config, &["recompute", "--job", "vitals", "--from", "2024-06-01", "--to", "2024-06-30"]).await;
    wait_followed(&db, &daemon, "readings", "migrate and the recompute").await;
    daemon.stop().await;
}

//! Failure handling: a failing group rolls back alone, its keys stay queued
//! with a backoff and the group is `failed` after `max_attempts`, and the
//! rest of the batch completes. And a table from the seed's worker.

use crate::util::{TestDb, group_state as status, job, migrated, run_ok, text};

/// One reading per user, each on its own day group.
async fn one_row_per_user(db: &TestDb, users: &[i64]) {
    for user in users {
        db.client
            .execute(
                "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, '2024-05-01 10:00Z', 'heart_rate', 60, 'bpm')",
                &[user],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_failing_group_rolls_back_alone_and_names_its_cause() {
    let db = TestDb::new().await;
    let extra = "max_attempts = 1\ntime_limit = \"3s\"\nmemory_limit_mb = 16\nbatch_size = 4";
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", extra)).await;
    // An SQL failure inside the group's transaction, for user 18 only.
    db.client
        .batch_execute(
            "CREATE FUNCTION refuse_18() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.user_id = 18 THEN RAISE EXCEPTION 'user 18 may not be written'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER refuse_18 BEFORE INSERT ON vitals_daily FOR EACH ROW EXECUTE FUNCTION refuse_18();
             CREATE FUNCTION refuse_31() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 -- Only the claim, which holds the group's advisory lock.
                 IF EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) THEN
                     RAISE EXCEPTION 'user 31 may not be claimed';
                 END IF;
                 RETURN OLD;
             END $$;
             CREATE TRIGGER refuse_31 BEFORE DELETE ON runner_changes FOR EACH ROW
                 WHEN (OLD.user_id = 31) EXECUTE FUNCTION refuse_31();",
        )
        .await
        .unwrap();
    one_row_per_user(&db, &[1, 13, 2, 14, 3, 15, 4, 16, 5, 17, 6, 18, 7, 31]).await;

    let out = run_ok(&config, &["run", "--once"]).await;

    for user in [1, 2, 3, 4, 5, 6, 7] {
        assert_eq!(status(&db, user).await.0, "completed", "user {user}");
    }
    let completed_daily = db.count("SELECT count(*) FROM vitals_daily WHERE sample_count = 1").await;
    assert_eq!(completed_daily, 7);
    let expect = [
        (13, "plugin error: user 13 is refused"),
        (14, "trapped"),
        (15, "exceeded its time limit of 3s"),
        (16, "exceeded its memory limit of 16 MiB"),
        (17, "output row 0 has 1 values but 2 columns are declared"),
        (18, "user 18 may not be written"),
        (31, "user 31 may not be claimed"),
    ];
    for (user, cause) in expect {
        let (state, attempts, error) = status(&db, user).await;
        let error = error.unwrap_or_default();
        assert_eq!((state.as_str(), attempts), ("failed", 1), "user {user}: {error}");
        assert!(error.contains(cause), "user {user}: {error}");
        if user < 18 {
            assert!(error.contains("plugin faulty@0.1.0+sha256:"), "names the plugin: {error}");
        }
        assert!(error.contains(&format!("user {user} day 2024-05-01")), "names the group: {error}");
        let written = db.count(&format!("SELECT count(*) FROM vitals_daily WHERE user_id = {user}")).await;
        assert_eq!(written, 0, "user {user}'s work was rolled back");
    }
    let log = text(&out);
    assert!(log.contains("Group failed."), "{log}");
    assert!(
        log.contains("aggregating 1 rows") && log.contains("faulty@0.1.0"),
        "plugin log lines carry the plugin: {log}"
    );
}

#[tokio::test]
async fn retries_with_backoff_then_marks_failed_after_max_attempts() {
    let db = TestDb::new().await;
    // No backoff: `--once` retries at once until max_attempts is spent.
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", "max_attempts = 3\nretry_backoff = \"0s\"")).await;
    one_row_per_user(&db, &[13, 1]).await;
    run_ok(&config, &["run", "--once"]).await;
    let (state, attempts, error) = status(&db, 13).await;
    assert_eq!((state.as_str(), attempts), ("failed", 3));
    assert!(error.unwrap().contains("user 13 is refused"));
    assert_eq!(status(&db, 1).await.0, "completed");

    // With a backoff, a failed group waits: pending, not yet due.
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", "max_attempts = 3\nretry_backoff = \"1h\"")).await;
    one_row_per_user(&db, &[13]).await;
    run_ok(&config, &["run", "--once"]).await;
    let (state, attempts, error) = status(&db, 13).await;
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert!(error.is_some());
    let due_later =
        db.count("SELECT count(*) FROM runner_group_failures WHERE not_before > now() + interval '50 minutes'").await;
    assert_eq!(due_later, 1);
}

#[tokio::test]
async fn a_table_of_the_seeds_worker_has_its_pending_groups_queued_once_and_its_columns_left_alone() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE legacy_raw (id bigserial PRIMARY KEY, user_id bigint NOT NULL, recorded_at timestamptz NOT NULL,
                 metric text NOT NULL, value double precision, unit text NOT NULL,
                 aggregation_status text NOT NULL DEFAULT 'pending', aggregation_error text);
             INSERT INTO legacy_raw (user_id, recorded_at, metric, value, unit, aggregation_status) VALUES
                 (1, '2024-05-01 08:00Z', 'heart_rate', 60, 'bpm', 'completed'),
                 (2, '2024-05-01 08:00Z', 'heart_rate', 70, 'bpm', 'pending'),
                 (2, '2024-05-01 09:00Z', 'heart_rate', 80, 'bpm', 'processing'),
                 (3, '2024-05-02 08:00Z', 'heart_rate', 90, 'bpm', 'pending');",
        )
        .await
        .unwrap();
    let jobs = crate::util::job_on("legacy", "vitals.wasm", "legacy_raw", "vitals_daily", "recorded_at", "");
    let (_dir, config) = migrated(&db, &jobs).await;
    let again = text(&run_ok(&config, &["migrate"]).await);
    assert!(!again.contains("queued"), "queued once only: {again}");
    assert_eq!(db.count("SELECT groups_queued FROM runner_adopted_sources").await, 2);
    run_ok(&config, &["run", "--once"]).await;
    let avg: f64 =
        db.client.query_one("SELECT avg_value FROM vitals_daily WHERE user_id = 2", &[]).await.unwrap().get(0);
    assert_eq!(avg, 75.0);
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 3").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM vitals_daily WHERE user_id = 1").await,
        0,
        "completed before: not queued"
    );
    // The old columns are left as they were.
    assert_eq!(db.count("SELECT count(*) FROM legacy_raw WHERE aggregation_status = 'pending'").await, 2);
}

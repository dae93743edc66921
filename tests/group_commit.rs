//! Group commit: one transaction carries several due groups, each still
//! isolated — a plugin's failure costs its own group, a refused statement
//! is replayed group by group, a budget puts back what it cannot finish,
//! and a runner killed between the claim and the `COMMIT` loses nothing.

use chrono::NaiveDate;

use crate::util::{
    Daemon, TestDb, daily_text, group_state, job, migrated, one_reading, run_ok, text, wait_count, wait_settled,
};

/// The `key=value` fields of every "Batch done." line, summed.
fn batch_total(log: &str, field: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("Batch done."))
        .filter_map(|l| {
            let at = l.find(&format!(" {field}="))? + field.len() + 2;
            l[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok()
        })
        .sum()
}

/// One `slow` reading (diffy spins `spins` iterations on it) for each of
/// users 1..=`users`, one day: that many slow groups.
async fn slow_groups(db: &TestDb, users: i32, spins: i64) {
    db.client
        .batch_execute(&format!(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             SELECT u, '2024-06-01 08:00Z', 'slow', {spins}, 'n' FROM generate_series(1, {users}) u"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_transaction_carries_many_groups_and_writes_what_one_group_a_transaction_writes() {
    let start = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
    let mut results = Vec::new();
    for per_transaction in [1, 20] {
        let db = TestDb::new().await;
        let extra = format!("workers = 1\ngroups_per_transaction = {per_transaction}\ntransaction_budget = \"10s\"");
        let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", &extra)).await;
        runner::db::seed::vitals(&db.client, 20, 3, start).await.unwrap();
        let log = text(&run_ok(&config, &["run", "--once"]).await);
        assert_eq!(db.count(crate::util::QUEUED).await, 0);
        let (groups, transactions) = (batch_total(&log, "completed"), batch_total(&log, "transactions"));
        assert_eq!(groups, 60, "{log}");
        if per_transaction == 1 {
            assert_eq!(transactions, 60, "{log}");
        } else {
            assert!(transactions <= 6, "60 groups in {transactions} transactions:\n{log}");
        }
        results.push(daily_text(&db.client, "vitals_daily").await);
    }
    assert_eq!(results[0], results[1]);
}

#[tokio::test]
async fn failures_inside_a_shared_transaction_cost_only_their_groups_and_a_refused_write_is_replayed() {
    let db = TestDb::new().await;
    let extra = "max_attempts = 1\nworkers = 1\ngroups_per_transaction = 20\ntransaction_budget = \"10s\"\ntime_limit = \"10s\"";
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", extra)).await;
    // The server refuses user 18's daily rows: the shared write fails, and
    // its groups are replayed one by one.
    db.client
        .batch_execute(
            "CREATE FUNCTION refuse_18() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.user_id = 18 THEN RAISE EXCEPTION 'user 18 may not be written'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER refuse_18 BEFORE INSERT ON vitals_daily FOR EACH ROW EXECUTE FUNCTION refuse_18();",
        )
        .await
        .unwrap();
    for user in [1, 13, 2, 14, 3, 16, 4, 17, 5] {
        one_reading(&db, user, "2024-05-01").await;
    }
    let log = text(&run_ok(&config, &["run", "--once"]).await);
    for user in [1, 2, 3, 4, 5] {
        assert_eq!(group_state(&db, user).await.0, "completed", "user {user}:\n{log}");
    }
    for user in [13, 14, 16, 17] {
        let (state, attempts, error) = group_state(&db, user).await;
        assert_eq!((state.as_str(), attempts), ("failed", 1), "user {user}: {error:?}");
    }
    assert!(batch_total(&log, "transactions") < 9, "several groups a transaction:\n{log}");

    // Now with user 18 in the transaction: only 18 fails, after a replay.
    for user in [6, 18, 7] {
        one_reading(&db, user, "2024-05-02").await;
    }
    let log = text(&run_ok(&config, &["run", "--once"]).await);
    assert!(log.contains("Group commit refused; replaying its groups one by one."), "{log}");
    let (state, _, error) = group_state(&db, 18).await;
    assert_eq!(state, "failed");
    assert!(error.unwrap_or_default().contains("user 18 may not be written"));
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily WHERE user_id IN (6, 7) AND day = '2024-05-02'").await, 2);
}

#[tokio::test]
async fn groups_failing_together_count_every_attempt_and_end_failed() {
    let db = TestDb::new().await;
    // Users 13 and 14 always fail; with no backoff they are retried at once,
    // both in one transaction, whose claim takes their failure records.
    let extra = "max_attempts = 3\nretry_backoff = \"0s\"\nworkers = 1\ngroups_per_transaction = 20";
    let (_dir, config) = migrated(&db, &job("faulty", "faulty.wasm", extra)).await;
    for user in [13, 14] {
        one_reading(&db, user, "2024-05-01").await;
    }
    let run = tokio::time::timeout(std::time::Duration::from_secs(180), run_ok(&config, &["run", "--once"]));
    let log = text(&run.await.expect("the run ends: each retry counts one more attempt"));
    for user in [13, 14] {
        let (state, attempts, _) = group_state(&db, user).await;
        assert_eq!((state.as_str(), attempts), ("failed", 3), "user {user}:\n{log}");
    }
}

#[tokio::test]
async fn a_spent_budget_puts_the_rest_back_and_every_group_still_completes() {
    let db = TestDb::new().await;
    // diffy spins on `slow` readings: each group takes a while, so a 1 ms
    // budget is spent after the first group of every transaction.
    let extra = "workers = 1\ngroups_per_transaction = 10\ntransaction_budget = \"1ms\"\ntime_limit = \"30s\"";
    let (_dir, config) = migrated(&db, &job("diffy", "diffy.wasm", extra)).await;
    slow_groups(&db, 12, 2_000_000).await;
    let log = text(&run_ok(&config, &["run", "--once"]).await);
    assert_eq!(db.count(crate::util::QUEUED).await, 0, "{log}");
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 12);
    assert_eq!(batch_total(&log, "completed"), 12, "{log}");
    assert!(batch_total(&log, "put_back") > 0, "the budget put groups back:\n{log}");
}

#[tokio::test]
async fn a_runner_killed_between_the_claim_and_the_commit_loses_no_key() {
    let db = TestDb::new().await;
    let extra = "workers = 1\ngroups_per_transaction = 10\ntransaction_budget = \"60s\"\ntime_limit = \"60s\"";
    let (_dir, config) = migrated(&db, &job("diffy", "diffy.wasm", extra)).await;
    slow_groups(&db, 6, 100_000_000).await;
    let daemon = Daemon::start(&config);
    // The transaction has claimed its groups and waits on their plugins.
    crate::util::wait_runner_in_transaction(&db).await;
    drop(daemon); // SIGKILL
    // Its claim died with it: every key is queued again at once.
    wait_count(&db, "SELECT count(DISTINCT user_id) FROM runner_changes", 6, 60).await;
    let daemon = Daemon::start(&config);
    wait_settled(&db, 120).await;
    assert_eq!(db.count("SELECT count(*) FROM vitals_daily").await, 6, "{}", daemon.log());
    daemon.stop().await;
}

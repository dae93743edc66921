//! Group commit: one transaction carries several due groups, each still
//! isolated. One statement locks and claims them all and reads their days;
//! the plugin runs once per group (a fresh instance each); one statement
//! writes the daily rows of every group that succeeded; the failures of the
//! others are recorded in the same transaction; one `COMMIT`.
//!
//! - A plugin error, trap, limit or invalid output costs only its group: it
//!   is left out of the write and its failure recorded, nothing to undo.
//! - A statement the server refuses rolls everything back, and the groups
//!   are replayed one per transaction (`group::process`), so the bad group
//!   is found and only it fails. A lock or statement timeout defers them
//!   all, without spending attempts.
//! - The budget: once a transaction has run `transaction_budget`, the
//!   groups it claimed but has not aggregated yet are put back in the
//!   queue, so the longest transaction stays within the budget and one
//!   group. (The worker sizes transactions from recent per-group times, so
//!   this rarely happens.)

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use deadpool_postgres::{Object, Pool};
use tokio_postgres::types::ToSql;

use super::group::{self, GroupError, Outcome, Purpose};
use super::job::{JobState, Live};
use crate::db::pipelined::Pipelined;
use crate::db::sql::ColumnArray;
use crate::rows::{GroupKey, Value};

/// What a transaction did, per group, and how long it stayed open.
pub struct Committed {
    pub outcomes: Vec<(GroupKey, Outcome)>,
    /// From `BEGIN` to the end of the `COMMIT` (or rollback).
    pub open_for: Duration,
    /// Groups the transaction carried to its end (written or failed).
    pub carried: usize,
}

/// Processes `keys` in one transaction (one key: `group::process`). `Err`
/// is a lost connection: everything rolled back, the keys stay queued.
pub async fn process_many(
    pool: &Pool,
    client: Object,
    job: &str,
    state: &JobState,
    live: &Live,
    keys: &[GroupKey],
) -> Result<Committed, tokio_postgres::Error> {
    let started = Instant::now();
    if let [key] = keys {
        let outcome = group::process(client, job, state, live, *key, Purpose::Pending).await?;
        return Ok(Committed { outcomes: vec![(*key, outcome)], open_for: started.elapsed(), carried: 1 });
    }
    let config = &state.config;
    let sql = &live.sql;
    let claim = client.prepare_cached(&sql.claim_many).await?;
    let users: Vec<i64> = keys.iter().map(|k| k.user_id).collect();
    let days: Vec<NaiveDate> = keys.iter().map(|k| k.day).collect();
    let target = config.target.as_str();
    let params: [&(dyn ToSql + Sync); 4] = [&users, &days, &target, &job];
    let (tx, raw) = Pipelined::begin_with(client, &claim, &params).await?;
    let raw = match raw {
        Ok(raw) => raw,
        Err(source) => {
            let e = GroupError::Sql { step: "claiming and reading", key: keys[0], source };
            return abandon(tx, pool, job, state, live, keys, e, started).await;
        }
    };
    // Rows: id, at, input..., taken, locked, n — grouped by n, in order.
    let width = raw.first().map_or(0, tokio_postgres::Row::len);
    let mut outcomes = Vec::with_capacity(keys.len());
    let mut written: Vec<(GroupKey, Vec<Vec<Value>>, usize, u32)> = Vec::new();
    let mut failures: Vec<(GroupKey, GroupError)> = Vec::new();
    let mut put_back: Vec<GroupKey> = Vec::new();
    // First the groups as the claim left them; those with input to
    // aggregate are collected, in order.
    let mut to_run: Vec<(GroupKey, &[tokio_postgres::Row])> = Vec::new();
    let mut emptied: Vec<GroupKey> = Vec::new();
    let mut start = 0;
    while start < raw.len() {
        let n: i64 = raw[start].try_get(width - 1).unwrap_or(0);
        let end = start + raw[start..].iter().take_while(|r| r.try_get::<_, i64>(width - 1).ok() == Some(n)).count();
        let rows = &raw[start..end];
        start = end;
        let Some(&key) = usize::try_from(n - 1).ok().and_then(|i| keys.get(i)) else { continue };
        let first = &rows[0];
        if !first.try_get::<_, bool>(width - 2).unwrap_or(false) {
            outcomes.push((key, Outcome::Busy));
        } else if first.try_get::<_, i64>(width - 3).unwrap_or(0) == 0 {
            outcomes.push((key, Outcome::Empty));
        } else if first.try_get::<_, Option<i64>>(0).ok().flatten().is_none() {
            // No input left: emptied, unless the day is frozen.
            emptied.push(key);
        } else {
            to_run.push((key, rows));
        }
    }
    if !emptied.is_empty() {
        let horizon = match group::horizon(tx.client(), config).await {
            Ok(horizon) => horizon,
            Err(source) => {
                let e = GroupError::Sql { step: "reading the frozen horizon", key: emptied[0], source };
                return abandon(tx, pool, job, state, live, keys, e, started).await;
            }
        };
        for key in emptied {
            match horizon {
                Some(h) if key.day < h => outcomes.push((key, Outcome::Empty)),
                _ => written.push((key, Vec::new(), 0, 0)),
            }
        }
    }
    if state.candidate.is_none() {
        // The plugin calls of the whole transaction on one blocking thread,
        // one fresh instance each: one hand-over, not one per group.
        let inputs: Vec<(GroupKey, Result<Vec<crate::rows::InputRow>, String>, usize)> = to_run
            .iter()
            .map(|(key, rows)| (*key, group::input_rows(rows, width - 3, live.sql.max_rows), rows.len()))
            .collect();
        let (plugin, limits, budget) = (live.plugin.clone(), state.limits, config.transaction_budget);
        let span = tracing::Span::current();
        let results = tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                let mut results = Vec::with_capacity(inputs.len());
                for (i, (key, input, read)) in inputs.into_iter().enumerate() {
                    // The budget spent: the rest goes back to the queue.
                    if i > 0 && started.elapsed() >= budget {
                        results.push((key, None, read));
                        continue;
                    }
                    let result = input.map(|rows| plugin.aggregate(key, rows, limits));
                    results.push((key, Some(result), read));
                }
                results
            })
        })
        .await
        .expect("plugin calls panicked in the host");
        let plugin = &live.plugin;
        for (key, result, read) in results {
            match result {
                None => put_back.push(key),
                Some(Err(message)) => failures.push((key, GroupError::Read { key, message })),
                Some(Ok(Err(source))) => {
                    failures.push((key, GroupError::Plugin { plugin: plugin.version.clone(), key, source }))
                }
                Some(Ok(Ok(output))) => match plugin.check_output(&output) {
                    Ok(()) => written.push((key, output.rows, read, output.rejected)),
                    Err(message) => {
                        failures.push((key, GroupError::InvalidOutput { plugin: plugin.version.clone(), key, message }))
                    }
                },
            }
        }
    } else {
        // A shadow candidate runs beside each group and records its
        // differences in the transaction: group by group.
        for (key, rows) in to_run {
            if started.elapsed() >= config.transaction_budget && !(written.is_empty() && failures.is_empty()) {
                put_back.push(key);
                continue;
            }
            match group::checked_output(tx.client(), job, state, live, key, rows, width - 3).await {
                Ok(output) => written.push((key, output.rows, rows.len(), output.rejected)),
                // A statement of the transaction failed (a shadow difference's
                // write): the transaction is aborted, so everyone is replayed.
                Err(e @ GroupError::Sql { .. }) => {
                    return abandon(tx, pool, job, state, live, keys, e, started).await;
                }
                Err(e) => failures.push((key, e)),
            }
        }
    }
    let carried = written.len() + failures.len();
    // The rest of the transaction's statements: put back, failures, then
    // the write with `COMMIT`. A refusal of any rolls everything back.
    let done = async {
        if !put_back.is_empty() {
            let users: Vec<i64> = put_back.iter().map(|k| k.user_id).collect();
            let days: Vec<NaiveDate> = put_back.iter().map(|k| k.day).collect();
            tx.client()
                .execute(
                    "INSERT INTO runner_changes (job, user_id, day) SELECT $1, u, d FROM unnest($2::int8[], $3::date[]) AS k(u, d)",
                    &[&job, &users, &days],
                )
                .await?;
        }
        let mut failed = Vec::with_capacity(failures.len());
        if !failures.is_empty() {
            let fail = tx.client().prepare_cached(&sql.fail).await?;
            let (backoff, version) = (config.retry_backoff.as_secs_f64(), &*live.plugin.version);
            for (key, e) in &failures {
                let error = e.to_string();
                let row = tx
                    .client()
                    .query_one(&fail, &[&job, &key.user_id, &key.day, &error, &config.max_attempts, &backoff, &version])
                    .await?;
                failed.push((*key, Outcome::Failed { error, last: row.try_get::<_, bool>(0).unwrap_or(false) }));
            }
        }
        Ok::<_, tokio_postgres::Error>(failed)
    }
    .await;
    let failed = match done {
        Ok(failed) => failed,
        Err(source) => {
            let e = GroupError::Sql { step: "recording failures of", key: keys[0], source };
            return abandon(tx, pool, job, state, live, keys, e, started).await;
        }
    };
    let replace = match tx.client().prepare_cached(&sql.replace_many).await {
        Ok(statement) => statement,
        Err(source) => {
            let e = GroupError::Sql { step: "writing", key: keys[0], source };
            return abandon(tx, pool, job, state, live, keys, e, started).await;
        }
    };
    let plugin = &live.plugin;
    let version: &str = &plugin.version;
    let w_users: Vec<i64> = written.iter().map(|w| w.0.user_id).collect();
    let w_days: Vec<NaiveDate> = written.iter().map(|w| w.0.day).collect();
    let versions: Vec<&str> = written.iter().map(|_| version).collect();
    let group_of: Vec<i64> =
        written.iter().enumerate().flat_map(|(i, w)| std::iter::repeat_n(i as i64 + 1, w.1.len())).collect();
    let all_rows: Vec<Vec<Value>> = written.iter().flat_map(|w| w.1.iter().cloned()).collect();
    let columns = match group::output_columns(plugin, &all_rows) {
        Ok(columns) => columns,
        // Checked per group already; should one still not encode, the
        // groups go one by one, where it fails alone.
        Err(message) => {
            let e = GroupError::InvalidOutput { plugin: plugin.version.clone(), key: keys[0], message };
            return abandon(tx, pool, job, state, live, keys, e, started).await;
        }
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&w_users, &w_days, &versions, &group_of];
    params.extend(columns.iter().map(ColumnArray::as_param));
    let (client, result) = tx.commit_with(&replace, &params).await;
    drop(client);
    if let Err(source) = result {
        let e = GroupError::Sql { step: "writing", key: keys[0], source };
        return fallback(pool, job, state, live, keys, e, started).await;
    }
    for (key, rows, read, rejected) in written {
        let outcome = if read == 0 {
            Outcome::Emptied { deleted: 0 }
        } else {
            Outcome::Completed { rows: read, written: rows.len(), rejected }
        };
        outcomes.push((key, outcome));
    }
    outcomes.extend(failed);
    outcomes.extend(put_back.into_iter().map(|key| (key, Outcome::PutBack)));
    Ok(Committed { outcomes, open_for: started.elapsed(), carried })
}

/// Rolls the transaction back, then [`fallback`].
#[allow(clippy::too_many_arguments, reason = "the transaction's context, passed on whole")]
async fn abandon(
    tx: Pipelined,
    pool: &Pool,
    job: &str,
    state: &JobState,
    live: &Live,
    keys: &[GroupKey],
    e: GroupError,
    started: Instant,
) -> Result<Committed, tokio_postgres::Error> {
    drop(tx.rollback_keeping().await?);
    fallback(pool, job, state, live, keys, e, started).await
}

/// After a rollback: a lock or statement timeout defers every group; any
/// other refusal replays them one per transaction, so that only the group
/// at fault fails.
async fn fallback(
    pool: &Pool,
    job: &str,
    state: &JobState,
    live: &Live,
    keys: &[GroupKey],
    e: GroupError,
    started: Instant,
) -> Result<Committed, tokio_postgres::Error> {
    let open_for = started.elapsed();
    if let Some(kind) = e.transient() {
        let error = e.to_string();
        let outcomes = keys.iter().map(|k| (*k, Outcome::Deferred { kind, error: error.clone() })).collect();
        return Ok(Committed { outcomes, open_for, carried: keys.len() });
    }
    tracing::info!(job, error = %e, groups = keys.len(), "Group commit refused; replaying its groups one by one.");
    let mut outcomes = Vec::with_capacity(keys.len());
    for key in keys {
        let client = match pool.get().await {
            Ok(client) => client,
            Err(deadpool_postgres::PoolError::Backend(e)) => return Err(e),
            Err(other) => {
                let error = format!("no database connection: {other}");
                outcomes.push((*key, Outcome::Deferred { kind: crate::db::Transient::Connection, error }));
                continue;
            }
        };
        outcomes.push((*key, group::process(client, job, state, live, *key, Purpose::Pending).await?));
    }
    Ok(Committed { outcomes, open_for, carried: keys.len() })
}

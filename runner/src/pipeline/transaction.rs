//! One short transaction of a job, for one group or several (group
//! commit), in one way through: claim → plugin → check → write.
//!
//! 1. **Claim**: `BEGIN` and one statement that locks the groups, takes
//!    their queued keys and reads their input (one snapshot).
//! 2. **Plugin**: one instance for the transaction's groups (or a fresh one
//!    per group: `reuse_instance = false`, a stateful file, a shadow
//!    candidate beside it, whose differences are recorded in the
//!    transaction), on a blocking thread. Once the transaction has run
//!    `transaction_budget`, the groups not yet aggregated are put back in
//!    the queue, untouched.
//! 3. **Check**: the output against the plugin's contract. A plugin error,
//!    trap, limit or invalid output costs only its group: its failure is
//!    recorded in the same transaction, nothing to undo.
//! 4. **Write**: one statement writes every group's daily rows, with
//!    `COMMIT` in the same round trip.
//!
//! A statement the server refuses rolls everything back. A lock or
//! statement timeout defers the groups (no attempt spent); any other
//! refusal replays several groups one per transaction, so the group at
//! fault is found and fails alone, and records one group's failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{ClientWrapper, Object, Pool};
use tokio_postgres::Error;

use super::job::{JobState, Live};
use super::shadow;
use crate::db::Transient;
use crate::db::pipelined::Pipelined;
use crate::db::statements::{Claimed, Daily, Failure, Read};
use crate::plugin::purity::Impurity;
use crate::plugin::{CallError, Limits, Plugin, Reuse};
use crate::rows::{GroupKey, InputRow, Output, Value};

/// What happened to a group.
#[derive(Debug)]
pub enum Outcome {
    /// Another worker or runner holds the group; its keys stay queued for later.
    Busy,
    /// Nothing was queued any more (another runner did it first), or a day
    /// before the frozen horizon lost its raw rows (its daily rows stay).
    Empty,
    /// Daily rows written from the day's `rows` raw rows; keys taken.
    Completed { rows: usize, written: usize, rejected: u32 },
    /// The group's failure is recorded: its keys wait out a backoff, or
    /// (`last`) the group is `failed` after the job's `max_attempts`.
    Failed { error: String, last: bool },
    /// Rolled back because of the database, not the group (a lock or
    /// statement timeout, a conflict): the keys stay queued, no attempt spent.
    Deferred { kind: Transient, error: String },
    /// A day with no raw rows left: its daily rows deleted.
    Emptied,
    /// Claimed by a transaction that ran out of its budget first: its keys
    /// were put back in the queue, untouched.
    PutBack,
}

/// Why a group is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Its keys were queued: aggregate it if they still are.
    Pending,
    /// `runner recompute`: aggregate it even if nothing is queued.
    Recompute,
}

/// The job a transaction works for, as one consistent view.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub job: &'a str,
    pub state: &'a JobState,
    pub live: &'a Live,
}

/// One transaction's work: the job, the keys, why, and when it began.
#[derive(Clone, Copy)]
struct Unit<'a> {
    pool: &'a Pool,
    cx: Context<'a>,
    keys: &'a [GroupKey],
    purpose: Purpose,
    started: Instant,
}

/// What a transaction did, per group, and how long it stayed open.
pub struct Committed {
    pub outcomes: Vec<(GroupKey, Outcome)>,
    /// From `BEGIN` to the end of the `COMMIT` (or rollback).
    pub open_for: Duration,
    /// Groups the transaction carried to its end (written or failed).
    pub carried: usize,
}

/// Why a group failed inside its transaction.
#[derive(Debug, thiserror::Error)]
enum GroupError {
    #[error("plugin {plugin} on {key}: {source}")]
    Plugin { plugin: Arc<str>, key: GroupKey, source: CallError },
    #[error("plugin {plugin} on {key}: {message}")]
    InvalidOutput { plugin: Arc<str>, key: GroupKey, message: String },
    #[error("{step} {key}: {}", crate::db::describe_error(.source))]
    Sql { step: &'static str, key: GroupKey, source: Error },
    #[error("reading {key}: {message}")]
    Read { key: GroupKey, message: String },
}

impl GroupError {
    /// A limit refused it (memory, time, `max_group_rows`): the same day,
    /// only larger, would fail again.
    fn on_limit(&self) -> bool {
        matches!(
            self,
            GroupError::Read { .. }
                | GroupError::Plugin { source: CallError::MemoryLimit(..) | CallError::TimeLimit(_), .. }
        )
    }
}

/// A claimed group's aggregation: its checked output, or why it failed.
struct Ran {
    key: GroupKey,
    /// Raw rows read.
    read: usize,
    /// The attempts of the failure record the claim took.
    attempts: i32,
    /// `None`: the budget ran out before it; put back.
    result: Option<Result<Output, GroupError>>,
}

/// What the transaction will do with its groups when it ends.
#[derive(Default)]
struct Plan {
    outcomes: Vec<(GroupKey, Outcome)>,
    /// Groups to write: their daily rows, raw rows read, rows rejected.
    write: Vec<(GroupKey, Vec<Vec<Value>>, usize, u32)>,
    /// Groups that failed, with the attempts of the record their claim took.
    failures: Vec<(GroupKey, i32, GroupError)>,
    put_back: Vec<GroupKey>,
}

/// Runs `keys` in one transaction on `client`. `Err` is a lost connection:
/// everything rolled back, the keys stay queued.
pub async fn run(
    pool: &Pool,
    client: Object,
    cx: Context<'_>,
    keys: &[GroupKey],
    purpose: Purpose,
) -> Result<Committed, Error> {
    let started = Instant::now();
    let unit = Unit { pool, cx, keys, purpose, started };
    let target = cx.state.config.target.as_str();
    let (tx, claim) = cx.live.sql.claim(client, cx.job, target, keys).await?;
    let claim = match claim {
        Ok(claim) => claim,
        Err(source) => {
            return refused(tx, unit, sql_error("claiming and reading", keys, source)).await;
        }
    };
    let mut plan = Plan::default();
    let claimed = claim.groups(keys);
    let claim = Arc::new(claim);
    let to_run = match triage(tx.client(), cx, claimed, purpose, &mut plan).await {
        Ok(to_run) => to_run,
        Err(source) => {
            return refused(tx, unit, sql_error("reading the frozen horizon of", keys, source)).await;
        }
    };
    if plan.write.is_empty() && to_run.is_empty() {
        // Nothing to aggregate or write (busy, nothing queued any more, or
        // a frozen day's keys taken): committed as it is.
        drop(tx.commit_keeping().await);
        return Ok(Committed { outcomes: plan.outcomes, open_for: started.elapsed(), carried: 0 });
    }
    let ran = match aggregate(tx.client(), cx, &claim, to_run, started).await {
        Ok((ran, found)) => {
            if let Some(found) = found {
                super::purity::found_while_running(cx.job, &cx.live.plugin, &found);
            }
            ran
        }
        // A statement of the transaction failed (a shadow difference's write).
        Err(e) => return refused(tx, unit, e).await,
    };
    for group in ran {
        match group.result {
            None => plan.put_back.push(group.key),
            Some(Ok(output)) => plan.write.push((group.key, output.rows, group.read, output.rejected)),
            Some(Err(e)) => plan.failures.push((group.key, group.attempts, e)),
        }
    }
    finish(tx, unit, plan).await
}

/// Sorts the claimed groups: busy, nothing queued, no input left (emptied,
/// unless before the frozen horizon), or to aggregate.
async fn triage(
    client: &ClientWrapper,
    cx: Context<'_>,
    claimed: Vec<Claimed>,
    purpose: Purpose,
    plan: &mut Plan,
) -> Result<Vec<Claimed>, Error> {
    let mut to_run = Vec::with_capacity(claimed.len());
    let mut emptied = Vec::new();
    for group in claimed {
        if !group.locked {
            plan.outcomes.push((group.key, Outcome::Busy));
        } else if group.taken == 0 && purpose == Purpose::Pending {
            plan.outcomes.push((group.key, Outcome::Empty));
        } else if group.read() == 0 {
            emptied.push(group.key);
        } else {
            to_run.push(group);
        }
    }
    if !emptied.is_empty() {
        let horizon = horizon(client, &cx.state.config).await?;
        for key in emptied {
            match horizon {
                // Raw rows purged for retention: the daily history stays.
                Some(h) if key.day < h => plan.outcomes.push((key, Outcome::Empty)),
                // No input left: writing no rows deletes the day's daily rows.
                _ => plan.write.push((key, Vec::new(), 0, 0)),
            }
        }
    }
    Ok(to_run)
}

/// The job's frozen horizon, when it has one: a day before it keeps its
/// daily rows once its raw rows are gone (purged for retention). The queue
/// drops changes to such days with the same horizon (`peek`): today in the
/// job's zone, less `frozen_before`.
async fn horizon(client: &ClientWrapper, config: &crate::config::Job) -> Result<Option<chrono::NaiveDate>, Error> {
    let Some(days) = config.frozen_days() else { return Ok(None) };
    let today = crate::db::clock::today_in(&**client, &config.timezone).await?;
    Ok(today.checked_sub_days(chrono::Days::new(u64::from(days.unsigned_abs()))))
}

/// Runs the plugin on each group, checks its output, and (with a shadow
/// candidate) runs the candidate beside it and records the differences
/// in the transaction. `Err`: that record was refused.
async fn aggregate(
    client: &ClientWrapper,
    cx: Context<'_>,
    claim: &Arc<Read>,
    groups: Vec<Claimed>,
    started: Instant,
) -> Result<(Vec<Ran>, Option<Impurity>), GroupError> {
    let (plugin, max_rows) = (&cx.live.plugin, cx.live.sql.max_rows);
    let checked = |key: GroupKey, result: Result<Output, CallError>| {
        let version = plugin.version.clone();
        let output = result.map_err(|source| GroupError::Plugin { plugin: version.clone(), key, source })?;
        plugin.check_output(&output).map_err(|message| GroupError::InvalidOutput { plugin: version, key, message })?;
        Ok(output)
    };
    let attempts: Vec<i32> = groups.iter().map(|g| g.attempts).collect();
    let Some(candidate) = &cx.state.candidate else {
        // The whole transaction's rows decoded and its plugin calls made on
        // one blocking thread, in one session: one hand-over, not one per
        // group, and a large day's decoding never on an async thread.
        let (results, found) = call_all(
            plugin,
            claim.clone(),
            groups,
            max_rows,
            (cx.state.limits, super::purity::reuse(&cx.state.config)),
            cx.state.config.transaction_budget,
            started,
        )
        .await;
        let ran = results
            .into_iter()
            .zip(attempts)
            .map(|((key, read, result), attempts)| Ran {
                key,
                read,
                attempts,
                result: result
                    .map(|r| r.map_err(|message| GroupError::Read { key, message }).and_then(|r| checked(key, r))),
            })
            .collect();
        return Ok((ran, found));
    };
    let inputs: Vec<(GroupKey, Result<Vec<InputRow>, String>, usize)> =
        groups.iter().map(|g| (g.key, claim.input_of(g, max_rows), g.read())).collect();
    // With a shadow candidate, group by group.
    let mut ran = Vec::with_capacity(inputs.len());
    for (i, ((key, input, read), attempts)) in inputs.into_iter().zip(attempts).enumerate() {
        if i > 0 && started.elapsed() >= cx.state.config.transaction_budget {
            ran.push(Ran { key, read, attempts, result: None });
            continue;
        }
        let rows = match input {
            Ok(rows) => rows,
            Err(message) => {
                ran.push(Ran { key, read, attempts, result: Some(Err(GroupError::Read { key, message })) });
                continue;
            }
        };
        // The candidate reads the live plugin's first input columns (checked when it was loaded).
        let width = candidate.description.input.len();
        let shadow_rows: Vec<InputRow> = rows
            .iter()
            .map(|r| InputRow { values: r.values.iter().take(width).cloned().collect(), ..r.clone() })
            .collect();
        let output = checked(key, call(plugin, key, rows, cx.state.limits).await);
        if let Ok(output) = &output {
            let result = call(candidate, key, shadow_rows, cx.state.limits).await.map_err(|e| e.to_string());
            let result = result.and_then(|out| candidate.check_output(&out).map(|()| out));
            if let Some(diff) = shadow::compare(plugin, candidate, output, result) {
                shadow::record(client, cx.job, key, plugin, candidate, &diff)
                    .await
                    .map_err(|source| GroupError::Sql { step: "writing", key, source })?;
            }
        }
        ran.push(Ran { key, read, attempts, result: Some(output) });
    }
    Ok((ran, None))
}

/// A group's input, raw rows read, and its plugin call (`None`: put back).
type Called = (GroupKey, usize, Option<Result<Result<Output, CallError>, String>>);

/// Decodes each group's rows and calls the plugin on them, in turn, on
/// one blocking thread, in one session (one instance when the job reuses
/// them); once `budget` has passed since `started`, the rest are not
/// called. Also returns what the session's purity check found.
async fn call_all(
    plugin: &Arc<Plugin>,
    claim: Arc<Read>,
    groups: Vec<Claimed>,
    max_rows: u32,
    (limits, reuse): (Limits, Reuse),
    budget: Duration,
    started: Instant,
) -> (Vec<Called>, Option<Impurity>) {
    let plugin = plugin.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let mut session = plugin.session(limits, reuse);
            let mut results = Vec::with_capacity(groups.len());
            for (i, group) in groups.iter().enumerate() {
                // The budget spent: the rest goes back to the queue.
                if i > 0 && started.elapsed() >= budget {
                    results.push((group.key, group.read(), None));
                    continue;
                }
                // Decoded again only for a retry or a check on a fresh instance.
                let again = || claim.input_of(group, max_rows).unwrap_or_default();
                let result = claim.input_of(group, max_rows).map(|rows| session.aggregate(group.key, rows, again));
                results.push((group.key, group.read(), Some(result)));
            }
            (results, session.found)
        })
    })
    .await
    .expect("plugin calls panicked in the host")
}

/// Runs a plugin on a blocking thread, so a slow plugin never stalls the runtime.
pub(crate) async fn call(
    plugin: &Arc<Plugin>,
    key: GroupKey,
    rows: Vec<InputRow>,
    limits: Limits,
) -> Result<Output, CallError> {
    let plugin = plugin.clone();
    // The plugin's log lines belong to the group's span, on whatever thread.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| plugin.aggregate(key, rows, limits)))
        .await
        .expect("plugin call panicked in the host")
}

/// Ends the transaction: puts back what the budget left, records the
/// failures, writes the daily rows with `COMMIT`.
async fn finish(tx: Pipelined, unit: Unit<'_>, mut plan: Plan) -> Result<Committed, Error> {
    let Unit { cx, keys, started, .. } = unit;
    let sql = &cx.live.sql;
    let version: &str = &cx.live.plugin.version;
    let recorded = async {
        crate::db::queue::put_back(&**tx.client(), cx.job, &plan.put_back).await?;
        let mut failed = Vec::with_capacity(plan.failures.len());
        for (key, prior_attempts, e) in &plan.failures {
            let error = e.to_string();
            let last = sql.fail(tx.client(), &failure(cx, *key, e, &error, *prior_attempts)).await?;
            failed.push((*key, Outcome::Failed { error, last }));
        }
        Ok::<_, Error>(failed)
    }
    .await;
    let failed = match recorded {
        Ok(failed) => failed,
        Err(source) => {
            return refused(tx, unit, sql_error("recording failures of", keys, source)).await;
        }
    };
    let daily: Vec<Daily<'_>> = plan.write.iter().map(|(key, rows, ..)| Daily { key: *key, rows }).collect();
    let encoded = match sql.encode(&daily) {
        Ok(encoded) => encoded,
        // Checked per group already; should one still not encode, the
        // groups go one by one, where it fails alone.
        Err(message) => {
            let e = GroupError::InvalidOutput { plugin: cx.live.plugin.version.clone(), key: keys[0], message };
            return refused(tx, unit, e).await;
        }
    };
    let (client, written) = sql.commit_write(tx, version, &encoded).await?;
    if let Err(source) = written {
        return after_rollback(client, unit, sql_error("writing", keys, source)).await;
    }
    drop(client);
    let carried = plan.write.len() + plan.failures.len();
    for (key, rows, read, rejected) in plan.write {
        let outcome = match read {
            0 => Outcome::Emptied,
            _ => Outcome::Completed { rows: read, written: rows.len(), rejected },
        };
        plan.outcomes.push((key, outcome));
    }
    plan.outcomes.extend(failed);
    plan.outcomes.extend(plan.put_back.into_iter().map(|key| (key, Outcome::PutBack)));
    Ok(Committed { outcomes: plan.outcomes, open_for: started.elapsed(), carried })
}

fn sql_error(step: &'static str, keys: &[GroupKey], source: Error) -> GroupError {
    GroupError::Sql { step, key: keys[0], source }
}

/// The failure record of group `key` (`prior_attempts`: see [`Failure`]).
fn failure<'a>(cx: Context<'a>, key: GroupKey, e: &GroupError, error: &'a str, prior_attempts: i32) -> Failure<'a> {
    let config = &cx.state.config;
    Failure {
        job: cx.job,
        key,
        error,
        max_attempts: config.max_attempts,
        backoff: config.retry_backoff,
        plugin_version: &cx.live.plugin.version,
        prior_attempts,
        on_limit: e.on_limit(),
    }
}

/// Rolls the transaction back, then [`after_rollback`].
async fn refused(tx: Pipelined, unit: Unit<'_>, e: GroupError) -> Result<Committed, Error> {
    let client = tx.rollback_keeping().await?;
    after_rollback(client, unit, e).await
}

/// After a rollback: a lock or statement timeout defers every group; any
/// other refusal replays several groups one per transaction, so that only
/// the group at fault fails, or records one group's failure.
async fn after_rollback(client: Object, unit: Unit<'_>, e: GroupError) -> Result<Committed, Error> {
    let Unit { pool, cx, keys, purpose, started } = unit;
    let transient = match &e {
        GroupError::Sql { source, .. } => crate::db::transient(source),
        _ => None,
    };
    if let Some(kind) = transient {
        let error = e.to_string();
        let outcomes = keys.iter().map(|k| (*k, Outcome::Deferred { kind, error: error.clone() })).collect();
        return Ok(Committed { outcomes, open_for: started.elapsed(), carried: keys.len() });
    }
    if let [key] = keys {
        let error = e.to_string();
        // Rolled back: the group's failure record, if any, is still there.
        let last = cx.live.sql.fail(&client, &failure(cx, *key, &e, &error, 0)).await?;
        let outcomes = vec![(*key, Outcome::Failed { error, last })];
        return Ok(Committed { outcomes, open_for: started.elapsed(), carried: 1 });
    }
    drop(client);
    tracing::info!(job = cx.job, error = %e, groups = keys.len(), "Group commit refused; replaying its groups one by one.");
    let open_for = started.elapsed();
    let mut outcomes = Vec::with_capacity(keys.len());
    for key in keys {
        let client = match pool.get().await {
            Ok(client) => client,
            Err(deadpool_postgres::PoolError::Backend(e)) => return Err(e),
            Err(other) => {
                let error = format!("no database connection: {other}");
                outcomes.push((*key, Outcome::Deferred { kind: Transient::Connection, error }));
                continue;
            }
        };
        let one = Box::pin(run(pool, client, cx, std::slice::from_ref(key), purpose)).await?;
        outcomes.extend(one.outcomes);
    }
    Ok(Committed { outcomes, open_for, carried: keys.len() })
}

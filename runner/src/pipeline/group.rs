//! One group's short transaction: lock the group, claim its pending rows,
//! read the whole day, call the plugin, replace the daily rows, mark the
//! claimed rows completed — or roll the work back and record the failure.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Client, Object};
use tokio_postgres::types::ToSql;

use super::job::{JobState, Live, Statements};
use super::shadow;
use crate::db::Transient;
use crate::db::pipelined::Pipelined;
use crate::db::sql::{self, ColumnArray};
use crate::plugin::{CallError, Limits, Plugin};
use crate::rows::{GroupKey, InputRow, Output};

/// What happened to a group.
#[derive(Debug)]
pub enum Outcome {
    /// Another worker or runner holds the group; its rows stay pending for later.
    Busy,
    /// Nothing pending was left (another runner finished it first).
    Empty,
    /// Daily rows written, claimed rows completed.
    Completed { claimed: usize, written: usize, rejected: u32 },
    /// Rolled back; claimed rows were sent back to pending with a backoff,
    /// or (`last`) marked failed after the job's `max_attempts`.
    Failed { claimed: usize, error: String, last: bool },
    /// Rolled back because of the database, not the group (a lock or
    /// statement timeout, a conflict): the rows stay pending, no attempt spent.
    Deferred { kind: Transient, error: String },
    /// `runner recompute` of a day with no input left: its daily rows deleted.
    Emptied { deleted: i64 },
}

/// Why a group failed inside its transaction.
#[derive(Debug, thiserror::Error)]
enum GroupError {
    #[error("plugin {plugin} on {key}: {source}")]
    Plugin { plugin: Arc<str>, key: GroupKey, source: CallError },
    #[error("plugin {plugin} on {key}: {message}")]
    InvalidOutput { plugin: Arc<str>, key: GroupKey, message: String },
    #[error("{step} {key}: {}", crate::db::describe_error(.source))]
    Sql { step: &'static str, key: GroupKey, source: tokio_postgres::Error },
    #[error("reading {key}: {message}")]
    Read { key: GroupKey, message: String },
}

impl GroupError {
    /// The database's failure, when it is not the group's.
    fn transient(&self) -> Option<Transient> {
        match self {
            GroupError::Sql { source, .. } => crate::db::transient(source),
            _ => None,
        }
    }
}

/// Why a group is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// It has pending rows: aggregate it if any are still pending.
    Pending,
    /// `runner recompute`: aggregate it even if nothing is pending.
    Recompute,
}

/// Processes one group in one transaction of two round trips: `BEGIN` with
/// the statement that locks the group, claims its pending rows and reads
/// the day; then, after the plugin, the statement that replaces the day's
/// daily rows with `COMMIT` (see `db::pipelined`). An `Err` is a lost
/// connection: everything is rolled back and the rows stay pending
/// untouched, to be retried without spending an attempt.
pub async fn process(
    client: Object,
    job: &str,
    state: &JobState,
    live: &Live,
    key: GroupKey,
    purpose: Purpose,
) -> Result<Outcome, tokio_postgres::Error> {
    let config = &state.config;
    let sql = &live.sql;
    let claim = client.prepare_cached(&sql.claim).await?;
    let target = config.target.as_str();
    // One statement: the group lock, the claim, and the day's input.
    let (tx, raw) = Pipelined::begin_with(client, &claim, &[&key.user_id, &key.day, &config.timezone, &target]).await?;
    let raw = match raw {
        Ok(raw) => raw,
        Err(source) => {
            let e = GroupError::Sql { step: "claiming and reading", key, source };
            let client = tx.rollback_keeping().await?;
            if let Some(kind) = e.transient() {
                return Ok(Outcome::Deferred { kind, error: e.to_string() });
            }
            // The statement failed on the server for a reason of the group's
            // own: the failure is recorded on its pending rows.
            let pending = client.prepare_cached(&sql.pending).await?;
            let rows = client.query(&pending, &[&key.user_id, &key.day, &config.timezone]).await?;
            let ids: Vec<i64> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
            return record_failure(&client, state, live, &ids, e).await;
        }
    };
    if raw.is_empty() {
        if purpose == Purpose::Recompute {
            return empty_day(tx, sql, key, target).await;
        }
        tx.rollback().await?;
        return Ok(Outcome::Empty);
    }
    // The last two columns are `claimed` and `locked`.
    let width = raw[0].len();
    let flag = |r: &tokio_postgres::Row, i: usize| r.try_get::<_, bool>(i).unwrap_or(false);
    if !flag(&raw[0], width - 1) {
        // Another worker or runner has the group.
        tx.rollback().await?;
        return Ok(Outcome::Busy);
    }
    let claimed: Vec<i64> =
        raw.iter().filter(|r| flag(r, width - 2)).filter_map(|r| r.try_get::<_, i64>(0).ok()).collect();
    if claimed.is_empty() && purpose == Purpose::Pending {
        tx.rollback().await?;
        return Ok(Outcome::Empty);
    }
    let result = aggregate(tx.client(), job, state, live, key, &raw, width - 2).await;
    // Prepared here, not before `BEGIN`: a statement the daily table cannot
    // take (a lock held on it, a column gone) fails the group like the write
    // itself, instead of looking like a lost connection.
    let result = match result {
        Ok(write) => tx
            .client()
            .prepare_cached(&sql.replace)
            .await
            .map(|replace| (write, replace))
            .map_err(|source| GroupError::Sql { step: "writing", key, source }),
        Err(e) => Err(e),
    };
    let (client, result) = match result {
        Ok((write, replace)) => {
            let version: &str = &write.version;
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&key.user_id, &key.day, &version];
            params.extend(write.columns.iter().map(ColumnArray::as_param));
            let (client, done) = tx.commit_with(&replace, &params).await;
            let result = done.map(|_| (write.rows, write.rejected));
            (client, result.map_err(|source| GroupError::Sql { step: "writing", key, source }))
        }
        // Undo everything, claim included. If the connection is gone, the
        // rollback fails and the rows simply stay pending.
        Err(e) => (tx.rollback_keeping().await?, Err(e)),
    };
    match result {
        Ok((written, rejected)) => Ok(Outcome::Completed { claimed: claimed.len(), written, rejected }),
        Err(e) => match e.transient() {
            Some(kind) => Ok(Outcome::Deferred { kind, error: e.to_string() }),
            None => record_failure(&client, state, live, &claimed, e).await,
        },
    }
}

/// `runner recompute` of a day with no input left: the day's daily rows
/// go, under the group's lock.
async fn empty_day(
    tx: Pipelined,
    sql: &Statements,
    key: GroupKey,
    target: &str,
) -> Result<Outcome, tokio_postgres::Error> {
    let row = tx.client().query_one(&sql.empty_day, &[&key.user_id, &key.day, &target]).await;
    match row.as_ref().map(|r| (r.try_get::<_, bool>(0), r.try_get::<_, i64>(1))) {
        Ok((Ok(true), Ok(deleted))) => {
            tx.commit().await?;
            Ok(if deleted > 0 { Outcome::Emptied { deleted } } else { Outcome::Empty })
        }
        Ok(_) => {
            tx.rollback().await?;
            Ok(Outcome::Busy)
        }
        Err(_) => {
            tx.rollback().await?;
            let source = row.expect_err("matched Err");
            let e = GroupError::Sql { step: "deleting the daily rows of", key, source };
            let kind = e.transient().unwrap_or(Transient::Conflict);
            Ok(Outcome::Deferred { kind, error: e.to_string() })
        }
    }
}

/// Records a group's failure on its rows, pending again after the rollback:
/// one more attempt, the error, and a backoff (or `failed` at
/// `max_attempts`). Should another runner take them in between, it either
/// completes them — and this update matches nothing — or fails them too.
async fn record_failure(
    client: &Client,
    state: &JobState,
    live: &Live,
    claimed: &[i64],
    e: GroupError,
) -> Result<Outcome, tokio_postgres::Error> {
    let config = &state.config;
    let error = e.to_string();
    let backoff = config.retry_backoff.as_secs_f64();
    let fail = client.prepare_cached(&live.sql.fail).await?;
    let rows = client.query(&fail, &[&claimed, &error, &config.max_attempts, &backoff]).await?;
    let last = rows.iter().any(|r| r.get::<_, &str>(0) == "failed");
    Ok(Outcome::Failed { claimed: claimed.len(), error, last })
}

/// A day's rows as a plugin's input: id, timestamp, then the input columns
/// up to `values_end` (as `claim` and `read_day` return them).
pub(crate) fn input_rows(raw: &[tokio_postgres::Row], values_end: usize) -> Result<Vec<InputRow>, String> {
    let mut rows = Vec::with_capacity(raw.len());
    for r in raw {
        let at: DateTime<Utc> = r.try_get(1).map_err(|e| e.to_string())?;
        let values = (2..values_end).map(|i| sql::read(r, i)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        rows.push(InputRow { id: r.try_get(0).map_err(|e| e.to_string())?, at: at.timestamp_micros(), values });
    }
    Ok(rows)
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

/// A group's daily rows, ready to write: one typed array per output column.
struct Write {
    version: Arc<str>,
    columns: Vec<ColumnArray>,
    rows: usize,
    rejected: u32,
}

/// Runs the plugin (and the shadow candidate) on the day's rows and returns
/// the daily rows to write.
async fn aggregate(
    client: &deadpool_postgres::ClientWrapper,
    job: &str,
    state: &JobState,
    live: &Live,
    key: GroupKey,
    raw: &[tokio_postgres::Row],
    values_end: usize,
) -> Result<Write, GroupError> {
    let rows = input_rows(raw, values_end).map_err(|message| GroupError::Read { key, message })?;

    // The candidate gets the same rows; they are copied only when there is one.
    let shadow_rows = state.candidate.as_ref().map(|candidate| {
        // It reads the live plugin's first input columns (checked when it was loaded).
        let width = candidate.description.input.len();
        rows.iter()
            .map(|r| InputRow { id: r.id, at: r.at, values: r.values.iter().take(width).cloned().collect() })
            .collect::<Vec<_>>()
    });
    let plugin = &live.plugin;
    let output = call(plugin, key, rows, state.limits).await.map_err(|source| GroupError::Plugin {
        plugin: plugin.version.clone(),
        key,
        source,
    })?;
    plugin.check_output(&output).map_err(|message| GroupError::InvalidOutput {
        plugin: plugin.version.clone(),
        key,
        message,
    })?;

    if let (Some(candidate), Some(rows)) = (&state.candidate, shadow_rows) {
        let result = call(candidate, key, rows, state.limits).await.map_err(|e| e.to_string());
        let result = result.and_then(|out| candidate.check_output(&out).map(|()| out));
        if let Some(diff) = shadow::compare(plugin, candidate, &output, result) {
            shadow::record(client, job, key, plugin, candidate, &diff).await.map_err(|source| GroupError::Sql {
                step: "writing",
                key,
                source,
            })?;
        }
    }

    // One statement replaces the day's daily rows: the rows go as one typed
    // array per output column.
    let columns = plugin
        .description
        .output
        .iter()
        .enumerate()
        .map(|(i, c)| ColumnArray::collect(c.kind, &output.rows, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|message| GroupError::InvalidOutput { plugin: plugin.version.clone(), key, message })?;
    Ok(Write { version: plugin.version.clone(), columns, rows: output.rows.len(), rejected: output.rejected })
}

//! One group's short transaction: lock the group, take its queued keys
//! and read the whole day (one statement, one snapshot), call the plugin,
//! replace the daily rows — or roll back and record the group's failure.
//! The source table is only read.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{Client, Object};
use tokio_postgres::types::ToSql;

use super::job::{JobState, Live};
use super::shadow;
use crate::db::Transient;
use crate::db::pipelined::Pipelined;
use crate::db::sql::{self, ColumnArray};
use crate::plugin::{CallError, Limits, Plugin};
use crate::rows::{GroupKey, InputRow, Output};

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
    /// Rolled back; the group's keys stay queued with a backoff, or
    /// (`last`) the group is `failed` after the job's `max_attempts`.
    Failed { error: String, last: bool },
    /// Rolled back because of the database, not the group (a lock or
    /// statement timeout, a conflict): the keys stay queued, no attempt spent.
    Deferred { kind: Transient, error: String },
    /// A day with no raw rows left: its daily rows deleted.
    Emptied { deleted: u64 },
    /// Claimed by a transaction that ran out of its budget first: its keys
    /// were put back in the queue, untouched.
    PutBack,
}

/// Why a group failed inside its transaction.
#[derive(Debug, thiserror::Error)]
pub(super) enum GroupError {
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
    pub(super) fn transient(&self) -> Option<Transient> {
        match self {
            GroupError::Sql { source, .. } => crate::db::transient(source),
            _ => None,
        }
    }
}

/// Why a group is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Its keys were queued: aggregate it if they still are.
    Pending,
    /// `runner recompute`: aggregate it even if nothing is queued.
    Recompute,
}

/// Processes one group in one transaction of two round trips: `BEGIN` with
/// the statement that locks the group, takes its queued keys and reads the
/// day; then, after the plugin, the statement that replaces the day's daily
/// rows with `COMMIT` (see `db::pipelined`). An `Err` is a lost connection:
/// everything is rolled back and the keys stay queued, to be retried
/// without spending an attempt.
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
    // One statement: the group lock, the keys, and the day's input.
    let params: [&(dyn ToSql + Sync); 4] = [&key.user_id, &key.day, &target, &job];
    let (tx, raw) = Pipelined::begin_with(client, &claim, &params).await?;
    let raw = match raw {
        Ok(raw) => raw,
        Err(source) => {
            let e = GroupError::Sql { step: "claiming and reading", key, source };
            let client = tx.rollback_keeping().await?;
            if let Some(kind) = e.transient() {
                return Ok(Outcome::Deferred { kind, error: e.to_string() });
            }
            // The statement failed on the server for a reason of the group's own.
            return record_failure(&client, job, state, live, key, e).await;
        }
    };
    // Always one row at least; the last two columns are `taken` and `locked`.
    let Some(first) = raw.first() else {
        tx.rollback().await?;
        return Ok(Outcome::Empty);
    };
    let width = first.len();
    if !first.try_get::<_, bool>(width - 1).unwrap_or(false) {
        // Another worker or runner has the group.
        tx.rollback().await?;
        return Ok(Outcome::Busy);
    }
    let taken = first.try_get::<_, i64>(width - 2).unwrap_or(0);
    if taken == 0 && purpose == Purpose::Pending {
        tx.rollback().await?;
        return Ok(Outcome::Empty);
    }
    // A NULL id: the day has no raw rows.
    let rows: &[tokio_postgres::Row] =
        if first.try_get::<_, Option<i64>>(0).ok().flatten().is_some() { &raw } else { &[] };
    if rows.is_empty() && horizon(tx.client(), config).await?.is_some_and(|h| key.day < h) {
        // Raw rows purged for retention: the daily history stays.
        tx.commit().await?;
        return Ok(Outcome::Empty);
    }
    let result = if rows.is_empty() {
        // No input left: the replace with no rows deletes the day's daily rows.
        Ok(Write::nothing(&live.plugin))
    } else {
        aggregate(tx.client(), job, state, live, key, rows, width - 2).await
    };
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
            let result = done.map(|deleted| (write.rows, write.rejected, deleted));
            (client, result.map_err(|source| GroupError::Sql { step: "writing", key, source }))
        }
        // Undo everything, keys included. If the connection is gone, the
        // rollback fails and the keys simply stay queued.
        Err(e) => (tx.rollback_keeping().await?, Err(e)),
    };
    match result {
        Ok((_, _, deleted)) if rows.is_empty() => Ok(Outcome::Emptied { deleted }),
        Ok((written, rejected, _)) => Ok(Outcome::Completed { rows: rows.len(), written, rejected }),
        Err(e) => match e.transient() {
            Some(kind) => Ok(Outcome::Deferred { kind, error: e.to_string() }),
            None => record_failure(&client, job, state, live, key, e).await,
        },
    }
}

/// The job's frozen horizon, when it has one: a day before it keeps its
/// daily rows once its raw rows are gone (purged for retention). The queue
/// drops changes to such days with the same horizon (`peek`): today in the
/// job's zone, less `frozen_before`.
pub(super) async fn horizon(
    client: &tokio_postgres::Client,
    config: &crate::config::Job,
) -> Result<Option<NaiveDate>, tokio_postgres::Error> {
    let Some(days) = config.frozen_days() else { return Ok(None) };
    let row =
        client.query_one("SELECT (now() AT TIME ZONE $1::text)::date - $2::int4", &[&config.timezone, &days]).await?;
    Ok(Some(row.try_get(0)?))
}

/// Records a group's failure after its rollback: one more attempt, the
/// error, and a backoff (or `failed` at `max_attempts`, when its keys go).
pub(super) async fn record_failure(
    client: &Client,
    job: &str,
    state: &JobState,
    live: &Live,
    key: GroupKey,
    e: GroupError,
) -> Result<Outcome, tokio_postgres::Error> {
    let config = &state.config;
    let error = e.to_string();
    let backoff = config.retry_backoff.as_secs_f64();
    let version: &str = &live.plugin.version;
    let fail = client.prepare_cached(&live.sql.fail).await?;
    let row = client
        .query_one(&fail, &[&job, &key.user_id, &key.day, &error, &config.max_attempts, &backoff, &version])
        .await?;
    let last = row.try_get::<_, bool>(0).unwrap_or(false);
    Ok(Outcome::Failed { error, last })
}

/// A day's rows as a plugin's input: id, timestamp, then the input columns
/// up to `values_end` (as `claim` and `read_day` return them).
pub(crate) fn input_rows(raw: &[tokio_postgres::Row], values_end: usize, max: u32) -> Result<Vec<InputRow>, String> {
    // The read stopped one row past `max_group_rows`: a day this large is
    // refused before anything more is built from it.
    if raw.len() > max as usize {
        return Err(format!(
            "the day has more than {max} raw rows (max_group_rows); the read stopped there: raise max_group_rows \
             (and memory_limit_mb) if such days are real"
        ));
    }
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

impl Write {
    /// No daily rows: the replace deletes the day's.
    fn nothing(plugin: &Plugin) -> Write {
        let columns = output_columns(plugin, &[]).unwrap_or_default();
        Write { version: plugin.version.clone(), columns, rows: 0, rejected: 0 }
    }
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
    let output = checked_output(client, job, state, live, key, raw, values_end).await?;
    let plugin = &live.plugin;
    let columns = output_columns(plugin, &output.rows).map_err(|message| GroupError::InvalidOutput {
        plugin: plugin.version.clone(),
        key,
        message,
    })?;
    Ok(Write { version: plugin.version.clone(), columns, rows: output.rows.len(), rejected: output.rejected })
}

/// Daily rows as the replace statements take them: one typed array per
/// output column, whatever the number of rows.
pub(super) fn output_columns(plugin: &Plugin, rows: &[Vec<crate::rows::Value>]) -> Result<Vec<ColumnArray>, String> {
    plugin.description.output.iter().enumerate().map(|(i, c)| ColumnArray::collect(c.kind, rows, i)).collect()
}

/// The plugin's output for the day's rows, checked against its contract
/// (and the shadow candidate run beside it, its differences recorded).
pub(super) async fn checked_output(
    client: &deadpool_postgres::ClientWrapper,
    job: &str,
    state: &JobState,
    live: &Live,
    key: GroupKey,
    raw: &[tokio_postgres::Row],
    values_end: usize,
) -> Result<Output, GroupError> {
    let rows = input_rows(raw, values_end, live.sql.max_rows).map_err(|message| GroupError::Read { key, message })?;

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

    Ok(output)
}

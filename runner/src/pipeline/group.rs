//! One group's short transaction: lock the group, claim its pending rows,
//! read the whole day, call the plugin, replace the daily rows, mark the
//! claimed rows completed — or roll the work back and record the failure.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Client, Transaction};
use tokio_postgres::types::ToSql;

use super::job::{GROUP_LOCK, JobState, Live};
use super::shadow;
use crate::db::sql::{self, Param};
use crate::plugin::{CallError, Limits, Plugin};
use crate::rows::{GroupKey, InputRow, Output, Value, days_since_epoch};

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
}

/// Why a group failed inside its transaction.
#[derive(Debug, thiserror::Error)]
enum GroupError {
    #[error("plugin {plugin} on {key}: {source}")]
    Plugin { plugin: Arc<str>, key: GroupKey, source: CallError },
    #[error("plugin {plugin} on {key}: {message}")]
    InvalidOutput { plugin: Arc<str>, key: GroupKey, message: String },
    #[error("writing {1}: {0}")]
    Sql(String, GroupKey),
}

/// Why a group is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// It has pending rows: aggregate it if any are still pending.
    Pending,
    /// `runner recompute`: aggregate it even if nothing is pending.
    Recompute,
}

/// Processes one group in one transaction. An `Err` is a database failure
/// (connection lost, ...): everything is rolled back and the rows stay
/// pending untouched, to be retried without spending an attempt.
pub async fn process(
    client: &mut Client,
    job: &str,
    state: &JobState,
    live: &Live,
    key: GroupKey,
    purpose: Purpose,
) -> Result<Outcome, tokio_postgres::Error> {
    let config = &state.config;
    let mut tx = client.transaction().await?;
    let lock = tx.prepare_cached(GROUP_LOCK).await?;
    let locked: bool = tx.query_one(&lock, &[&config.target.as_str(), &key.user_id, &key.day]).await?.get(0);
    if !locked {
        return Ok(Outcome::Busy);
    }
    let claim = tx.prepare_cached(&live.sql.claim).await?;
    let claimed: Vec<i64> =
        tx.query(&claim, &[&key.user_id, &key.day, &config.timezone]).await?.iter().map(|r| r.get(0)).collect();
    if claimed.is_empty() && purpose == Purpose::Pending {
        tx.commit().await?;
        return Ok(Outcome::Empty);
    }

    // The work runs in a savepoint: on failure it is undone while the row
    // locks are kept, so recording the failure cannot race another runner.
    // If the connection itself is gone, the rollback fails and the `?`
    // returns: the whole transaction dies and the rows stay pending as they
    // were, retried later without spending an attempt.
    let mut savepoint = tx.savepoint("aggregate").await?;
    let outcome = match aggregate(&mut savepoint, job, state, live, key, &claimed).await {
        Ok((written, rejected)) => {
            savepoint.commit().await?;
            Outcome::Completed { claimed: claimed.len(), written, rejected }
        }
        Err(e) => {
            savepoint.rollback().await?;
            let error = e.to_string();
            let backoff = config.retry_backoff.as_secs_f64();
            let fail = tx.prepare_cached(&live.sql.fail).await?;
            let rows = tx.query(&fail, &[&claimed, &error, &config.max_attempts, &backoff]).await?;
            let last = rows.iter().any(|r| r.get::<_, &str>(0) == "failed");
            Outcome::Failed { claimed: claimed.len(), error, last }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Runs a plugin on a blocking thread, so a slow plugin never stalls the runtime.
async fn call(plugin: &Arc<Plugin>, key: GroupKey, rows: Vec<InputRow>, limits: Limits) -> Result<Output, CallError> {
    let plugin = plugin.clone();
    // The plugin's log lines belong to the group's span, on whatever thread.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| plugin.aggregate(key, rows, limits)))
        .await
        .expect("plugin call panicked in the host")
}

/// Reads the day, runs the plugin (and the shadow candidate), replaces the
/// daily rows and completes the claimed rows. Returns (rows written, rows rejected).
async fn aggregate(
    tx: &mut Transaction<'_>,
    job: &str,
    state: &JobState,
    live: &Live,
    key: GroupKey,
    claimed: &[i64],
) -> Result<(usize, u32), GroupError> {
    let sql_err = |e: tokio_postgres::Error| GroupError::Sql(crate::db::describe_error(&e), key);
    let input = tx.prepare_cached(&live.sql.input).await.map_err(sql_err)?;
    let raw = tx.query(&input, &[&key.user_id, &key.day, &state.config.timezone]).await.map_err(sql_err)?;
    let mut rows = Vec::with_capacity(raw.len());
    for r in &raw {
        let at: DateTime<Utc> = r.try_get(1).map_err(sql_err)?;
        let values = (2..r.len()).map(|i| sql::read(r, i)).collect::<Result<_, _>>().map_err(sql_err)?;
        rows.push(InputRow { id: r.try_get(0).map_err(sql_err)?, at: at.timestamp_micros(), values });
    }

    // The candidate gets the same rows; they are copied only when there is one.
    let shadow_rows = state.candidate.as_ref().map(|_| rows.clone());
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
            shadow::record(tx, job, key, plugin, candidate, &diff).await.map_err(sql_err)?;
        }
    }

    let delete = tx.prepare_cached(&live.sql.delete).await.map_err(sql_err)?;
    tx.execute(&delete, &[&key.user_id, &key.day]).await.map_err(sql_err)?;
    let version = Value::Text(plugin.version.to_string());
    let day = Value::Date(days_since_epoch(key.day));
    let user = Value::Integer(key.user_id);
    let now = Value::Timestamp(Utc::now().timestamp_micros());
    // Chunks keep each INSERT well under Postgres's 65535-parameter limit.
    let per_chunk = (60_000 / (plugin.description.output.len() + 4)).max(1);
    for chunk in output.rows.chunks(per_chunk) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * (chunk[0].len() + 4));
        for row in chunk {
            params.extend([Param(&user), Param(&day), Param(&version), Param(&now)]);
            params.extend(row.iter().map(Param));
        }
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let statement = tx.prepare_cached(&live.sql.insert(chunk.len())).await.map_err(sql_err)?;
        tx.execute(&statement, &refs).await.map_err(sql_err)?;
    }
    let complete = tx.prepare_cached(&live.sql.complete).await.map_err(sql_err)?;
    tx.execute(&complete, &[&claimed]).await.map_err(sql_err)?;
    Ok((output.rows.len(), output.rejected))
}

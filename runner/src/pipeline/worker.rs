//! A job's loop: claim a small batch, aggregate its groups with bounded
//! concurrency (each group borrows one pooled connection for one short
//! transaction), then wait for a notification or the poll interval.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt as _;
use tokio::sync::{Notify, watch};
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::group::{self, Outcome};
use super::job::Job;
use crate::db::pool;
use crate::rows::GroupKey;

/// How a job loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run until shut down, sleeping when there is no work.
    Daemon { poll_interval: Duration },
    /// Drain every due pending row, then return.
    Once,
}

/// Counts for one job's run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub batches: u64,
    pub groups_completed: u64,
    pub groups_failed: u64,
    pub rows_completed: u64,
    pub rows_rejected: u64,
    pub daily_rows_written: u64,
    /// Database errors (connection lost, pool timeout, ...): rows stayed pending.
    pub db_errors: u64,
    pub last_db_error: Option<String>,
    /// How long the loop ran.
    pub elapsed: Duration,
}

/// Consecutive database errors after which `--once` gives up.
const MAX_CONSECUTIVE_DB_ERRORS: u32 = 5;

/// Runs one job until `shutdown` turns true (or, with `Mode::Once`, until
/// nothing due is left).
pub async fn run(
    pool: Pool,
    job: Arc<Job>,
    mode: Mode,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Report {
    let mut report = Report::default();
    let started = std::time::Instant::now();
    let mut consecutive_errors = 0u32;
    while !*shutdown.borrow() {
        let batch = match claim_batch(&pool, &job).await {
            Ok(batch) => {
                consecutive_errors = 0;
                batch
            }
            Err(e) => {
                consecutive_errors += 1;
                record_db_error(&mut report, &job.name, &e);
                if mode == Mode::Once && consecutive_errors >= MAX_CONSECUTIVE_DB_ERRORS {
                    break;
                }
                let delay = Duration::from_millis(250 << consecutive_errors.min(5));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        if batch.is_empty() {
            match mode {
                Mode::Once => break,
                Mode::Daemon { poll_interval } => {
                    tokio::select! {
                        _ = wake.notified() => debug!(job = %job.name, "Woken by a notification."),
                        _ = tokio::time::sleep(poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            }
        }
        run_batch(&pool, &job, batch, &shutdown, &mut report).await;
    }
    report.elapsed = started.elapsed();
    report
}

/// Claims a batch: the distinct groups of up to `batch_size` due pending
/// rows that no other transaction holds. The connection goes back to the
/// pool right after.
async fn claim_batch(pool: &Pool, job: &Job) -> anyhow::Result<Vec<GroupKey>> {
    let client = pool.get().await?;
    let peek = client.prepare_cached(&job.sql.peek).await?;
    let rows = client.query(&peek, &[&job.config.timezone, &job.config.batch_size]).await?;
    Ok(rows.iter().map(|r| GroupKey { user_id: r.get(0), day: r.get(1) }).collect())
}

async fn run_batch(
    pool: &Pool,
    job: &Job,
    batch: Vec<GroupKey>,
    shutdown: &watch::Receiver<bool>,
    report: &mut Report,
) {
    pool::log_status(pool, &job.name, "before batch");
    let groups = batch.len();
    let span = info_span!("batch", job = %job.name, groups, plugin = %job.plugin.version);
    let results: Vec<_> = futures::stream::iter(batch)
        // Stop starting groups on shutdown; the ones in hand finish.
        .take_while(|_| std::future::ready(!*shutdown.borrow()))
        .map(|key| async move {
            let span = info_span!("group", user = key.user_id, day = %key.day);
            let result = async {
                let mut client = pool.get().await?;
                anyhow::Ok(group::process(&mut client, job, key).await?)
            }
            .instrument(span)
            .await;
            (key, result)
        })
        .buffer_unordered(job.config.workers)
        .collect()
        .instrument(span.clone())
        .await;

    report.batches += 1;
    let (mut completed, mut failed) = (0, 0);
    for (key, result) in results {
        match result {
            Ok(Outcome::Completed { claimed, written, rejected }) => {
                completed += 1;
                report.rows_completed += claimed as u64;
                report.daily_rows_written += written as u64;
                report.rows_rejected += u64::from(rejected);
            }
            Ok(Outcome::Failed { claimed, error }) => {
                failed += 1;
                warn!(parent: &span, user = key.user_id, day = %key.day, rows = claimed, error = %error, "Group failed.");
            }
            Ok(Outcome::Busy | Outcome::Empty) => {}
            Err(e) => record_db_error(report, &job.name, &e),
        }
    }
    report.groups_completed += completed;
    report.groups_failed += failed;
    pool::log_status(pool, &job.name, "after batch");
    info!(parent: &span, completed, failed, "Batch done.");
}

fn record_db_error(report: &mut Report, job: &str, e: &anyhow::Error) {
    report.db_errors += 1;
    let message = format!("{e:#}");
    warn!(job, error = %message, "Database error; the rows stay pending and will be retried.");
    report.last_db_error = Some(message);
}

//! A job's loop: claim a small batch, aggregate its groups with bounded
//! concurrency (each group borrows one pooled connection for one short
//! transaction), then wait for a notification, a state change or the poll
//! interval. A paused job (disabled, or its plugin file gone) claims nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures::StreamExt as _;
use tokio::sync::watch;
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::group::{self, Outcome, Purpose};
use super::job::{Job, JobState};
use super::throttle::{Observed, Throttle};
use crate::db::pool;
use crate::rows::GroupKey;

/// How a job loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run until shut down, sleeping when there is no work.
    Daemon,
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
    /// Group transaction times (completed and failed groups).
    pub group_latency: super::latency::Histogram,
    /// Batches after which the job backed off (see `throttle`).
    pub backoffs: u64,
}

/// Consecutive database errors after which `--once` gives up.
const MAX_CONSECUTIVE_DB_ERRORS: u32 = 5;

/// Runs one job until `shutdown` turns true (or, with `Mode::Once`, until
/// nothing due is left).
pub async fn run(pool: Pool, job: Arc<Job>, mode: Mode, mut shutdown: watch::Receiver<bool>) -> Report {
    let mut report = Report::default();
    let started = Instant::now();
    let mut consecutive_errors = 0u32;
    let mut throttle = Throttle::new(&job.current().config);
    while !*shutdown.borrow() {
        let state = job.current();
        let batch = if state.running().is_none() {
            Ok(Vec::new()) // paused: nothing to claim
        } else {
            claim_batch(&pool, &state, throttle.batch(&state.config)).await
        };
        let batch = match batch {
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
            if mode == Mode::Once {
                break;
            }
            tokio::select! {
                _ = job.wake.notified() => debug!(job = %job.name, "Woken."),
                _ = tokio::time::sleep(state.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let seen = run_batch(&pool, &job, batch, throttle.concurrency(&state.config), &shutdown, &mut report).await;
        if throttle.observe(&state.config, &seen) {
            report.backoffs += 1;
            debug!(job = %job.name, batch = throttle.batch(&state.config), concurrency = throttle.concurrency(&state.config),
                group_p50 = ?seen.group_p50, pool_wait = ?seen.longest_pool_wait, "Backing off.");
        }
        metrics::gauge!("runner_job_batch_size", "job" => job.name.clone()).set(throttle.batch(&state.config) as f64);
        metrics::gauge!("runner_job_concurrency", "job" => job.name.clone())
            .set(throttle.concurrency(&state.config) as f64);
    }
    report.elapsed = started.elapsed();
    report
}

/// Claims a batch: the distinct groups of up to `batch_size` due pending
/// rows that no other transaction holds. The connection goes back to the
/// pool right after.
async fn claim_batch(pool: &Pool, state: &JobState, batch_size: i64) -> anyhow::Result<Vec<GroupKey>> {
    let Some(live) = state.running() else { return Ok(Vec::new()) };
    let client = pool.get().await?;
    let peek = client.prepare_cached(&live.sql.peek).await?;
    let rows = client.query(&peek, &[&state.config.timezone, &batch_size]).await?;
    Ok(rows.iter().map(|r| GroupKey { user_id: r.get(0), day: r.get(1) }).collect())
}

/// Runs a batch's groups, `concurrency` at once; returns what the throttle needs.
async fn run_batch(
    pool: &Pool,
    job: &Job,
    batch: Vec<GroupKey>,
    concurrency: usize,
    shutdown: &watch::Receiver<bool>,
    report: &mut Report,
) -> Observed {
    pool::log_status(pool, &job.name, "before batch");
    let groups = batch.len();
    let started = Instant::now();
    let span = info_span!("batch", job = %job.name, groups);
    let results: Vec<_> = futures::stream::iter(batch)
        // Stop starting groups on shutdown; the ones in hand finish.
        .take_while(|_| std::future::ready(!*shutdown.borrow()))
        .map(|key| async move {
            // Each group takes the job's state as it is now: a plugin swapped
            // mid-batch applies to the next group, never to one in flight.
            let state = job.current();
            let Some(live) = state.running() else { return (key, Ok(Outcome::Busy), Duration::ZERO, Duration::ZERO) };
            let span = info_span!("group", user = key.user_id, day = %key.day, plugin = %live.plugin.version);
            let started = Instant::now();
            let mut waited = Duration::ZERO;
            let result = async {
                let mut client = pool.get().await?;
                waited = started.elapsed();
                pool::usage(pool); // records the peak
                anyhow::Ok(group::process(&mut client, &job.name, &state, live, key, Purpose::Pending).await?)
            }
            .instrument(span)
            .await;
            let took = started.elapsed();
            metrics::histogram!("runner_group_seconds", "job" => job.name.clone()).record(took);
            (key, result, took, waited)
        })
        .buffer_unordered(concurrency)
        .collect()
        .instrument(span.clone())
        .await;

    report.batches += 1;
    let (mut completed, mut failed) = (0, 0);
    let counter =
        |result: &'static str| metrics::counter!("runner_groups_total", "job" => job.name.clone(), "result" => result);
    let mut times: Vec<Duration> = results.iter().map(|r| r.2).collect();
    times.sort_unstable();
    let seen = Observed {
        group_p50: times.get(times.len() / 2).copied().unwrap_or_default(),
        longest_pool_wait: results.iter().map(|r| r.3).max().unwrap_or_default(),
    };
    for (key, result, took, _) in results {
        match result {
            Ok(Outcome::Completed { claimed, written, rejected }) => {
                completed += 1;
                report.group_latency.record(took);
                report.rows_completed += claimed as u64;
                report.daily_rows_written += written as u64;
                report.rows_rejected += u64::from(rejected);
                counter("completed").increment(1);
                job.rows_completed.fetch_add(claimed as u64, std::sync::atomic::Ordering::Relaxed);
                metrics::counter!("runner_rows_completed_total", "job" => job.name.clone()).increment(claimed as u64);
                metrics::counter!("runner_rows_rejected_total", "job" => job.name.clone())
                    .increment(u64::from(rejected));
            }
            Ok(Outcome::Failed { claimed, error, last }) => {
                failed += 1;
                report.group_latency.record(took);
                counter(if last { "failed" } else { "retried" }).increment(1);
                warn!(parent: &span, user = key.user_id, day = %key.day, rows = claimed, final_attempt = last, error = %error, "Group failed.");
            }
            Ok(Outcome::Busy | Outcome::Empty) => {}
            Err(e) => record_db_error(report, &job.name, &e),
        }
    }
    report.groups_completed += completed;
    report.groups_failed += failed;
    metrics::histogram!("runner_batch_seconds", "job" => job.name.clone()).record(started.elapsed());
    pool::log_status(pool, &job.name, "after batch");
    info!(parent: &span, completed, failed, "Batch done.");
    seen
}

fn record_db_error(report: &mut Report, job: &str, e: &anyhow::Error) {
    report.db_errors += 1;
    let message = format!("{e:#}");
    warn!(job, error = %message, "Database error; the rows stay pending and will be retried.");
    report.last_db_error = Some(message);
}

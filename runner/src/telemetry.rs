//! Metrics in the Prometheus text format: counters and histograms recorded
//! where things happen (`metrics::counter!` ...), gauges for the pool, the
//! queue and the plugins refreshed when `/metrics` is scraped.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::db::pool;
use crate::pipeline::Job;
use crate::snapshot::Snapshot;

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the runner records, with its help text (`promtool check
/// metrics` wants one for each).
const METRICS: &[(Kind, &str, &str)] = &[
    (
        Kind::Counter,
        "runner_groups_total",
        "Groups a batch took, by result: completed, emptied (no raw row left), retried (backoff), failed (max_attempts reached), deferred (the database's timeout), busy (held by another worker or runner), empty (nothing queued any more), put_back (its transaction ran out of budget first).",
    ),
    (Kind::Counter, "runner_rows_completed_total", "Raw rows marked completed."),
    (Kind::Counter, "runner_rows_rejected_total", "Raw rows rejected as bad data by the plugin (not failures)."),
    (Kind::Counter, "runner_job_wakeups_total", "Notifications of new rows a job's loop answered (paused or not)."),
    (
        Kind::Histogram,
        "runner_group_seconds",
        "A group's share of its transaction's time (the transaction's time over the groups it carried).",
    ),
    (Kind::Histogram, "runner_batch_seconds", "One batch of groups."),
    (
        Kind::Histogram,
        "runner_transaction_seconds",
        "One group-commit transaction, from taking a connection to commit (it carries one or more groups).",
    ),
    (Kind::Counter, "runner_plugin_reloads_total", "Plugin file changes, by result: swapped, rejected, paused."),
    (Kind::Counter, "runner_config_reloads_total", "Config file changes, by result: applied, rejected."),
    (
        Kind::Counter,
        "runner_shadow_differences_total",
        "Groups where a shadow candidate's output differed from the live plugin's.",
    ),
    (
        Kind::Counter,
        "runner_purity_differences_total",
        "Groups whose result on a reused plugin instance differed from a fresh instance's (the plugin keeps state between groups).",
    ),
    (Kind::Counter, "runner_job_restarts_total", "Times a job's loop ended unexpectedly and was restarted."),
    (
        Kind::Counter,
        "runner_db_timeouts_total",
        "Groups rolled back by the database (lock_timeout, statement_timeout, conflict, connection) and retried without spending an attempt.",
    ),
    (
        Kind::Counter,
        "runner_plugin_log_lines_dropped_total",
        "Plugin log lines dropped beyond a job's log_lines limit, by plugin name.",
    ),
    (Kind::Gauge, "runner_pool_connections", "The runner's pooled connections, by state: in_use, available, max."),
    (Kind::Gauge, "runner_pool_waiting", "Callers waiting for a pooled connection."),
    (Kind::Gauge, "runner_pool_peak_in_use", "The most pooled connections in use at once since start."),
    (Kind::Gauge, "runner_plugin_info", "The live plugin of each job (value 1), by version."),
    (
        Kind::Gauge,
        "runner_plugin_loaded_timestamp_seconds",
        "When each job's live plugin was loaded, in seconds since the Unix epoch.",
    ),
    (
        Kind::Gauge,
        "runner_job_paused",
        "1 while a job claims nothing: disabled, paused by an operator, or without a plugin (its file gone, or refused at start with no good version kept).",
    ),
    (
        Kind::Gauge,
        "runner_plugin_refused",
        "1 while the job's plugin file (or its settings) now in the folder is refused; the previous version runs, or the job is paused.",
    ),
    (
        Kind::Gauge,
        "runner_plugin_stateful",
        "1 while the job's live plugin file was found to keep state between groups: its groups run on fresh instances until the file changes.",
    ),
    (
        Kind::Gauge,
        "runner_config_refused",
        "1 while the config file on disk is refused (the running config stays in force); 0 once it loads.",
    ),
    (Kind::Gauge, "runner_job_up", "0 while a job's loop is down and waiting to be restarted."),
    (
        Kind::Counter,
        "runner_http_connections_refused_total",
        "HTTP connections closed as soon as accepted, their listener being at its connection cap.",
    ),
    (
        Kind::Gauge,
        "runner_capture_complete",
        "0 while a job's change capture does not fire on every write to its source (triggers disabled or dropped, a partition without them).",
    ),
    (
        Kind::Gauge,
        "runner_queue_groups",
        "Groups (a user's day) by state: pending (changes queued, backoff included), in_backoff, failed.",
    ),
    (
        Kind::Gauge,
        "runner_queue_oldest_pending_seconds",
        "Age of the oldest queued change, since it was recorded; 0 when none is queued.",
    ),
    (
        Kind::Gauge,
        "runner_recompute_after_deploy_groups",
        "Progress of the background recompute after a deploy, by state: done, total (groups).",
    ),
    (
        Kind::Counter,
        "runner_operator_snapshots_total",
        "Snapshots of the queue figures taken for the console and /metrics (at most one per 2 s, on the operator's own connection).",
    ),
    (Kind::Gauge, "runner_job_batch_size", "Raw rows a job claims per batch now (see backpressure)."),
    (Kind::Gauge, "runner_job_concurrency", "Groups a job runs at once now (see backpressure)."),
];

/// Installs the process-wide recorder; returns the handle that renders it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let seconds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)?
        .install_recorder()?;
    for &(kind, name, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    Ok(handle)
}

/// Refreshes the gauges (the queue's from the operator's shared
/// `snapshot`: a scrape takes no connection of its own), then renders every
/// metric.
pub fn render(handle: &PrometheusHandle, pool: &Pool, jobs: &[Arc<Job>], snapshot: &Snapshot) -> String {
    let u = pool::usage(pool);
    metrics::gauge!("runner_pool_connections", "state" => "in_use").set(u.in_use as f64);
    metrics::gauge!("runner_pool_connections", "state" => "available").set(u.available as f64);
    metrics::gauge!("runner_pool_connections", "state" => "max").set(u.max as f64);
    metrics::gauge!("runner_pool_waiting").set(u.waiting as f64);
    metrics::gauge!("runner_pool_peak_in_use").set(pool::peak_in_use() as f64);

    for job in jobs {
        let state = job.current();
        let name = job.name.clone();
        if let Some(live) = &state.live {
            let loaded = live.plugin.loaded_at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            metrics::gauge!("runner_plugin_info", "job" => name.clone(), "version" => live.plugin.version.to_string())
                .set(1.0);
            metrics::gauge!("runner_plugin_loaded_timestamp_seconds", "job" => name.clone()).set(loaded);
        }
        metrics::gauge!("runner_job_paused", "job" => name.clone()).set(f64::from(u8::from(state.running().is_none())));
        let stateful = job.health().stateful.is_some();
        metrics::gauge!("runner_plugin_stateful", "job" => name.clone()).set(f64::from(u8::from(stateful)));
        let refused = job.last_reload_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some();
        metrics::gauge!("runner_plugin_refused", "job" => name.clone()).set(f64::from(u8::from(refused)));
        let Some(figures) = snapshot.jobs.get(&name) else { continue };
        let q = &figures.queue;
        for (status, n) in [("pending", q.pending), ("in_backoff", q.in_backoff), ("failed", q.failed)] {
            metrics::gauge!("runner_queue_groups", "job" => name.clone(), "status" => status).set(n as f64);
        }
        metrics::gauge!("runner_queue_oldest_pending_seconds", "job" => name.clone())
            .set(q.oldest_pending_seconds.unwrap_or(0.0));
    }
    handle.render()
}

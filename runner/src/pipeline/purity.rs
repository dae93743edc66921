//! The runner's side of plugin purity (`plugin::purity`): the probe at
//! every load, on two of the job's recent groups (or groups made from the
//! plugin's declared columns); what a difference found while running does
//! (an error line, a metric, the job shown degraded: `Job::health`); and
//! the repair. Rows written while the file shared instances may carry
//! state: once no transaction that began before the finding is still open,
//! every group whose daily rows the file wrote is queued again, and is
//! recomputed on fresh instances.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Days, Utc};
use deadpool_postgres::{Client, Pool};

use super::job::Live;
use crate::config;
use crate::db::queue;
use crate::plugin::purity::{self, Impurity, Probe, Sample, Stateful};
use crate::plugin::{Limits, Plugin, Reuse};

/// How far back the probe looks for the job's recent groups.
const RECENT_DAYS: u64 = 60;

/// A job's instance reuse, as configured.
pub fn reuse(cfg: &config::Job) -> Reuse {
    Reuse { on: cfg.reuse_instance, verify_every: cfg.verify_every }
}

/// Probes a plugin about to go live for a job that reuses instances; a
/// stateful file is marked so (its groups run on fresh instances) and
/// named in a warning.
pub async fn probe_at_load(client: &Client, job: &str, live: &Live, limits: Limits) -> Probe {
    let samples = match recent_samples(client, job, live).await {
        Some(samples) => samples,
        None => purity::made_up_samples(&live.plugin.description),
    };
    let plugin = live.plugin.clone();
    let probe = tokio::task::spawn_blocking(move || purity::probe(&plugin, limits, [&samples[0], &samples[1]]))
        .await
        .unwrap_or_else(|e| Probe::Inconclusive(format!("the probe panicked: {e}")));
    match &probe {
        Probe::Stateful(found) => {
            let why = format!("the probe at load, group {}: {}", found.key, found.difference);
            live.plugin.mark_stateful(Stateful::found(why, false));
            tracing::warn!(job, plugin = %live.plugin.version, file = %live.plugin.path.display(),
                column = %found.difference.column, difference = %found.difference,
                "Plugin keeps state between groups (a reused instance gave another result than a fresh one): \
                 its groups run on fresh instances until the file changes.");
        }
        Probe::Inconclusive(why) => {
            tracing::info!(job, plugin = %live.plugin.version, why = %why,
                "Purity probe inconclusive; groups share instances, checked while running.");
        }
        Probe::Pure => {}
    }
    probe
}

/// Two of the job's groups as the claim reads them: queued ones (what it
/// is about to aggregate), else two of the last [`RECENT_DAYS`]; `None`
/// when there are not two (or the database does not answer).
async fn recent_samples(client: &Client, job: &str, live: &Live) -> Option<[Sample; 2]> {
    let mut keys = queue::some_queued(&***client, job, 2).await.ok()?;
    if keys.len() < 2 {
        let today = Utc::now().date_naive();
        let from = today.checked_sub_days(Days::new(RECENT_DAYS))?;
        let to = today.checked_add_days(Days::new(1))?;
        keys = live.sql.sample_groups(client, from, to, 2).await.ok()?;
    }
    let mut samples = Vec::with_capacity(2);
    for key in keys {
        let rows = live.sql.read_day(client, key).await.ok()?.input(live.sql.max_rows).ok()?;
        samples.push((key, rows));
    }
    samples.try_into().ok()
}

/// A difference found while running: said at error level and counted.
pub fn found_while_running(job: &str, plugin: &Plugin, found: &Impurity) {
    metrics::counter!("runner_purity_differences_total", "job" => job.to_string()).increment(1);
    tracing::error!(job, plugin = %plugin.version, user = found.key.user_id, day = %found.key.day,
        column = %found.difference.column, difference = %found.difference,
        "Plugin is not a function of its input: a reused instance gave another result than a fresh one. \
         Its groups run on fresh instances until the file changes; the groups it wrote are recomputed.");
}

/// Queues again every group the live file wrote once it was found
/// stateful while running, when no transaction that began before that is
/// still open (`oldest_running`); once per file version (`repaired`).
pub async fn repair_if_due(
    pool: &Pool,
    job_name: &str,
    cfg: &config::Job,
    plugin: &Plugin,
    oldest_running: Option<Instant>,
    repaired: &mut Option<Arc<str>>,
) {
    let Some(found) = plugin.stateful().filter(|s| s.while_running) else { return };
    if repaired.as_deref() == Some(&*plugin.file_version) || oldest_running.is_some_and(|t| t <= found.since) {
        return;
    }
    let queued = match pool.get().await {
        Ok(client) => {
            queue::queue_written_by(&**client, job_name, cfg, &plugin.file_version).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match queued {
        Ok(groups) => {
            tracing::warn!(job = job_name, plugin = %plugin.file_version, groups,
                "Queued the groups this stateful plugin wrote, to recompute them on fresh instances.");
            *repaired = Some(plugin.file_version.clone());
        }
        Err(e) => tracing::warn!(job = job_name, error = %e,
            "Queueing the groups of a stateful plugin failed; it is tried again."),
    }
}

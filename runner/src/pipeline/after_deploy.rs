//! `recompute_after_deploy`: once a new plugin version goes live, the past
//! days follow it. A background task per job queues the configured
//! window's groups in the shared change queue, a chunk at a time while the
//! job's queue is short (live changes first), so every runner's workers
//! take a share; progress is saved per chunk (it resumes after a restart,
//! and runners move it on in turn), and it starts over for a version that
//! goes live meanwhile.
//!
//! Which version is "new" is kept in the progress table: a version with a
//! row of its own (users `after-deploy`) has been or is being recomputed. At
//! start, a live version without one is new if another version had one
//! (it went live while the runner was down); the very first version only
//! records itself.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use deadpool_postgres::Pool;
use tokio::sync::watch;

use super::job::Job;
use super::recompute::{self, AFTER_DEPLOY, Range};
use crate::db::{progress, queue};

/// Watches `job` until `shutdown`, recomputing after each deploy.
pub async fn run(pool: Pool, job: Arc<Job>, window: Duration, mut shutdown: watch::Receiver<bool>) {
    let days = window.as_secs().div_ceil(86_400).max(1);
    let mut first = true;
    loop {
        let version = job.current().live.as_ref().map(|l| l.plugin.version.to_string());
        if let Some(version) = &version {
            let work = async {
                match plan(&pool, &job, version, days, first).await {
                    Ok(Plan::Window(range)) => recompute_window(&pool, &job, version, range).await,
                    Ok(Plan::Finished(range)) => {
                        if let Err(e) = sweep(&pool, &job, version, &range).await {
                            tracing::warn!(job = %job.name, error = %format!("{e:#}"),
                                "Recompute after deploy could not look for rows of older versions.");
                        }
                    }
                    Ok(Plan::Nothing) => {}
                    Err(e) => tracing::warn!(job = %job.name, error = %format!("{e:#}"),
                        "Recompute after deploy could not start; it tries again at the next deploy or start."),
                }
            };
            tokio::select! {
                () = work => {}
                // A newer version ends this run; the next one starts over for it.
                () = version_changes(&job, Some(version)) => {
                    tracing::info!(job = %job.name, "Another plugin version went live: recompute after deploy starts over for it.");
                    first = false;
                    continue;
                }
                _ = shutdown.changed() => return,
            }
        }
        first = false;
        tokio::select! {
            () = version_changes(&job, version.as_deref()) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Resolves once the job has a live version other than `version`.
async fn version_changes(job: &Job, version: Option<&str>) {
    loop {
        let now = job.current().live.as_ref().map(|l| l.plugin.version.to_string());
        if now.is_some() && now.as_deref() != version {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a runner that runs `version` does after a deploy.
enum Plan {
    /// Recompute this window (a new run, or an unfinished one).
    Window(Range),
    /// Another runner finished the window: only requeue its groups that
    /// still carry another version ([`sweep`]).
    Finished(Range),
    /// The first version ever: nothing to follow.
    Nothing,
}

/// The window to recompute for `version`, if any: an unfinished run's, or
/// a new one ending today.
async fn plan(pool: &Pool, job: &Job, version: &str, days: u64, first: bool) -> anyhow::Result<Plan> {
    let client = pool.get().await?;
    let runs = progress::runs(&**client, &job.name, AFTER_DEPLOY).await?;
    let range = |from: NaiveDate, to: NaiveDate| Range { from, to, users: None, background: true };
    Ok(match runs.iter().find(|r| r.plugin_version == version) {
        Some(r) if r.finished => Plan::Finished(range(r.from, r.to)),
        Some(r) => Plan::Window(range(r.from, r.to)),
        // Started with a version never recorded and nothing before it: a baseline.
        None if first && runs.is_empty() => {
            let today = Utc::now().date_naive();
            let baseline =
                progress::Run { job: &job.name, from: today, to: today, users: AFTER_DEPLOY, plugin_version: version };
            baseline.record_finished(&**client).await?;
            Plan::Nothing
        }
        None => {
            let to = Utc::now().date_naive();
            Plan::Window(range(to - chrono::Days::new(days - 1), to))
        }
    })
}

/// Queues the window's groups whose daily rows another version wrote.
/// Runners notice a deploy at different moments: one still running the old
/// version may take groups another runner queued for the new one. Each
/// runner sweeps once it runs the new version, so the last to switch
/// leaves no group behind. Returns the groups queued.
async fn sweep(pool: &Pool, job: &Job, version: &str, range: &Range) -> anyhow::Result<u64> {
    let client = pool.get().await?;
    let config = job.current().config.clone();
    let queued = queue::queue_written_by_others(&**client, &job.name, &config, (range.from, range.to), version).await?;
    if queued > 0 {
        tracing::info!(job = %job.name, plugin = version, groups = queued,
            "Groups of the window still written by another version are queued again.");
        job.wake.notify_one();
    }
    Ok(queued)
}

async fn recompute_window(pool: &Pool, job: &Job, version: &str, range: Range) {
    tracing::info!(job = %job.name, plugin = version, from = %range.from, to = %range.to,
        "Recomputing past days after a deploy, in the background, through the shared queue.");
    let done = metrics::gauge!("runner_recompute_after_deploy_groups", "job" => job.name.clone(), "state" => "done");
    let total = metrics::gauge!("runner_recompute_after_deploy_groups", "job" => job.name.clone(), "state" => "total");
    let mut last_logged = 0u64;
    let result = recompute::queue_window(pool, job, &range, CHUNK, |d, t| {
        done.set(d as f64);
        total.set(t as f64);
        // About every tenth of the way.
        if t > 0 && (d - last_logged.min(d)) * 10 >= t {
            tracing::info!(job = %job.name, queued = d, total = t, "Recompute after deploy progressing.");
            last_logged = d;
        }
    })
    .await;
    let result = match result {
        Ok(queued) => sweep(pool, job, version, &range).await.map(|requeued| (queued, requeued)),
        Err(e) => Err(e),
    };
    match result {
        Ok((queued, requeued)) => tracing::info!(job = %job.name, plugin = version, queued_by_this_runner = queued,
            requeued_from_other_versions = requeued, "Recompute after deploy finished." ),
        Err(e) => tracing::warn!(job = %job.name, error = %format!("{e:#}"),
            "Recompute after deploy stopped; it resumes at the next start or deploy."),
    }
}

/// Groups queued at a time (and the most live changes wait behind).
const CHUNK: i64 = 20;

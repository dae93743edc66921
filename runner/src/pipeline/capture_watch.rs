//! A job's watch on its change capture, taken by the job's loop at its
//! start and then once per poll interval (`run --once`: at its start):
//!
//! - partitions that joined or left the source since the last look
//!   (`db::partitions::sync`): a partition gone is purged, a new one gets
//!   the capture triggers where this role may create them and its days are
//!   queued;
//! - capture triggers that do not fire on every write (disabled, dropped,
//!   or not set to fire always): logged at ERROR at once, shown as
//!   degraded on `/ready`, `status` and the console, and as
//!   `runner_capture_complete 0`. When they fire again, the runner names
//!   the days that may have missed changes and the `recompute` that mends
//!   them, or, started with `--repair`, queues it itself.

use chrono::{NaiveDate, Utc};
use deadpool_postgres::Pool;

use super::job::{CaptureGap, Job};
use crate::db::{capture, partitions, queue};

/// One look at a job's capture.
pub async fn look(pool: &Pool, job: &Job, repair: bool) -> anyhow::Result<()> {
    let state = job.current();
    let Some(live) = state.running() else { return Ok(()) };
    let cfg = &state.config;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // One runner at a time turns a partition's coming or going into work.
    let ours = partitions::try_lock(&*tx, &job.name).await?;
    let changes = match ours {
        true => partitions::sync(&*tx, &job.name, cfg, &live.shape, true).await?,
        false => partitions::Changes::default(),
    };
    let problems = capture::trigger_problems(&*tx, &job.name, cfg).await?;
    let today = crate::db::clock::today_in(&*tx, &cfg.timezone).await?;
    let gap = job.health().capture;
    // Capture is whole again: the window it missed is mended or named.
    let repaired = match (&gap, problems.is_empty(), repair) {
        (Some(gap), true, true) => {
            let days = missed_days(gap, today);
            Some(queue::queue_days(&*tx, &job.name, cfg, &live.shape, days).await?)
        }
        _ => None,
    };
    tx.commit().await?;

    for p in &changes.left {
        tracing::warn!(job = %job.name, partition = %p.describe(),
            "A partition left the source (detached or dropped): the days it held are recomputed from what remains.");
    }
    for p in &changes.joined {
        tracing::info!(job = %job.name, partition = %p.describe(), "A partition joined the source: its days are queued.");
    }
    for (partition, why) in &changes.uncovered {
        tracing::error!(job = %job.name, %partition, error = %why,
            "Cannot install change capture on a new partition: writes made directly to it are not seen until \
             `runner migrate` runs as the table's owner.");
    }
    if !changes.left.is_empty() || !changes.joined.is_empty() || repaired.is_some() {
        job.wake.notify_one();
    }
    let complete = metrics::gauge!("runner_capture_complete", "job" => job.name.clone());
    match (gap, problems.is_empty()) {
        (None, false) => {
            tracing::error!(job = %job.name, problems = %problems.join("; "),
                "Change capture does not fire on every write: changes made meanwhile are not seen. Run \
                 `runner migrate` (as the table's owner) to restore it.");
            // It may have stopped firing any time since the last look.
            let since = Utc::now() - state.poll_interval;
            job.set_health(|h| h.capture = Some(CaptureGap { problems, since }));
            complete.set(0.0);
        }
        (Some(_), false) => {
            job.set_health(|h| {
                if let Some(gap) = h.capture.as_mut() {
                    gap.problems = problems;
                }
            });
            complete.set(0.0);
        }
        (Some(gap), true) => {
            job.set_health(|h| h.capture = None);
            complete.set(1.0);
            let (from, to) = missed_days(&gap, today);
            let since = gap.since.format("%Y-%m-%d %H:%M:%S UTC");
            match repaired {
                Some(queued) => tracing::warn!(job = %job.name, %since, %from, %to, groups_queued = queued,
                    "Change capture fires on every write again; the days that may have missed changes are queued \
                     (--repair)."),
                None => tracing::warn!(job = %job.name, %since, %from, %to,
                    command = %format!("runner recompute --job {} --from {from} --to {to}", job.name),
                    "Change capture fires on every write again. Changes written since it stopped were not seen: \
                     rows written then most likely belong to these days (older ones too, if a backfill ran \
                     meanwhile). Run the command to mend them, or start the daemon with --repair."),
            }
        }
        (None, true) => complete.set(1.0),
    }
    Ok(())
}

/// The days that may have missed changes while capture did not fire: from
/// the day before it stopped (a poll interval before it was noticed) to today.
fn missed_days(gap: &CaptureGap, today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let from = gap.since.date_naive().pred_opt().unwrap_or(NaiveDate::MIN).min(today);
    (from, today)
}

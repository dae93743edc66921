//! `runner recompute`: re-aggregate a past range of days with the current
//! plugin (after a logic change). Day by day, in small batches of groups,
//! each group its own short transaction through the same code as the live
//! pipeline, within the same pool. Progress is saved after every batch in
//! `runner_recompute_progress`, so an interrupted run resumes where it was.

use std::time::Duration;

use chrono::NaiveDate;
use deadpool_postgres::Pool;
use futures::StreamExt as _;

use super::job::Job;
use super::transaction::{self, Context, Outcome, Purpose};
use crate::db::progress::Run;
use crate::db::queue;
use crate::rows::GroupKey;

/// What to recompute.
#[derive(Debug, Clone)]
pub struct Range {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Only these users; `None` for all.
    pub users: Option<Vec<i64>>,
    /// Run in the background beside the live pipeline
    /// (`recompute_after_deploy`): one group at a time, each batch waiting
    /// while the job has live work (at most a second), progress kept apart.
    pub background: bool,
}

/// The `users` key of background runs in the progress table.
pub const AFTER_DEPLOY: &str = "after-deploy";

impl Range {
    /// The `--users` filter as stored in the progress table.
    fn users_key(&self) -> String {
        if self.background {
            return AFTER_DEPLOY.into();
        }
        let mut users = self.users.clone().unwrap_or_default();
        users.sort_unstable();
        users.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    }
}

/// How a recompute run went, in groups (one user's one day).
#[derive(Debug, Default)]
pub struct Summary {
    /// Groups in the range.
    pub total: u64,
    /// Groups done before this run (resumed).
    pub resumed: u64,
    /// Aggregated again.
    pub recomputed: u64,
    /// No input left: their daily rows deleted.
    pub emptied: u64,
    /// The plugin or the database refused them; a rerun retries them.
    pub failed: u64,
    /// The range had been finished by an earlier run with this plugin version.
    pub already_done: bool,
    /// This run only retried the groups an earlier run could not do.
    pub retried_failures: bool,
}

/// Attempts at a group another transaction holds, 50 ms apart.
const BUSY_RETRIES: u32 = 100;

/// Recomputes `range` for `job`; `progress(done, total)` is called after
/// each batch. Progress is kept per plugin version; a finished range is
/// done again only with `restart`, but the groups that failed in it are
/// retried by any rerun.
pub async fn recompute(
    pool: &Pool,
    job: &Job,
    range: &Range,
    batch: i64,
    restart: bool,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<Summary> {
    let state = job.current();
    let live = state.live.as_ref().ok_or_else(|| anyhow::anyhow!("job {} has no plugin loaded", job.name))?;
    let version = live.plugin.version.to_string();
    let users_key = range.users_key();
    let run = Run { job: &job.name, from: range.from, to: range.to, users: &users_key, plugin_version: &version };
    let cx = Context { job: &job.name, state: &state, live };
    let workers = if range.background { 1 } else { state.config.workers };

    let client = pool.get().await?;
    if restart {
        run.forget(&**client).await?;
    }
    run.start(&**client).await?;
    let saved = run.saved(&**client).await?;
    let (mut day, mut after_user) = saved.last.unwrap_or((range.from, i64::MIN));
    let mut summary = Summary { resumed: saved.groups_done, ..Summary::default() };
    summary.total = live.sql.count_groups(&client, range.from, range.to, range.users.as_deref()).await?;
    if saved.finished {
        // Only the groups that failed last time are left to do.
        let groups = run.failures(&**client).await?;
        drop(client);
        summary.already_done = groups.is_empty();
        summary.retried_failures = !groups.is_empty();
        for chunk in groups.chunks(batch.max(1) as usize) {
            run_groups(pool, cx, &run, chunk, workers, &mut summary).await?;
        }
        return Ok(summary);
    }
    drop(client);
    let mut done = summary.resumed;
    progress(done, summary.total);

    while day <= range.to {
        let users = live.sql.day_users(&pool.get().await?, day, range.users.as_deref(), after_user, batch).await?;
        let Some(&last) = users.last() else {
            day = day.succ_opt().ok_or_else(|| anyhow::anyhow!("date out of range after {day}"))?;
            after_user = i64::MIN;
            continue;
        };
        let groups: Vec<GroupKey> = users.iter().map(|&user_id| GroupKey { user_id, day }).collect();
        if range.background {
            // Live groups first: wait while the job has work in hand.
            let waited = std::time::Instant::now();
            while job.busy.load(std::sync::atomic::Ordering::Relaxed) && waited.elapsed() < Duration::from_secs(1) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        run_groups(pool, cx, &run, &groups, workers, &mut summary).await?;
        done += users.len() as u64;
        after_user = last;
        run.advance(&**pool.get().await?, (day, last), done, summary.failed).await?;
        progress(done, summary.total);
    }
    run.finish(&**pool.get().await?).await?;
    Ok(summary)
}

/// Recomputes some groups, `workers` at once, counting each outcome; a
/// failed group is remembered for the next run, a recomputed one forgotten.
async fn run_groups(
    pool: &Pool,
    cx: Context<'_>,
    run: &Run<'_>,
    groups: &[GroupKey],
    workers: usize,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let outcomes: Vec<(GroupKey, anyhow::Result<Outcome>)> = futures::stream::iter(groups.iter().copied())
        .map(|key| async move { (key, recompute_group(pool, cx, key).await) })
        .buffer_unordered(workers)
        .collect()
        .await;
    let client = pool.get().await?;
    for (key, outcome) in outcomes {
        let error = match outcome {
            Ok(Outcome::Failed { error, .. }) => error,
            Err(e) => format!("{e:#}"),
            Ok(outcome) => {
                match outcome {
                    Outcome::Emptied => summary.emptied += 1,
                    _ => summary.recomputed += 1,
                }
                run.done(&**client, key).await?;
                continue;
            }
        };
        summary.failed += 1;
        tracing::warn!(job = %cx.job, user = key.user_id, day = %key.day, error = %error, "Group failed while recomputing.");
        run.failed(&**client, key, &error).await?;
    }
    Ok(())
}

/// Recomputes one group in its own transaction, waiting (a while) for
/// another transaction that holds it.
async fn recompute_group(pool: &Pool, cx: Context<'_>, key: GroupKey) -> anyhow::Result<Outcome> {
    for _ in 0..BUSY_RETRIES {
        let client = pool.get().await?;
        let done = transaction::run(pool, client, cx, &[key], Purpose::Recompute).await?;
        match done.outcomes.into_iter().next().map(|(_, outcome)| outcome) {
            Some(Outcome::Busy | Outcome::Deferred { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Some(outcome) => return Ok(outcome),
            None => anyhow::bail!("group {key} was not claimed"),
        }
    }
    anyhow::bail!("group {key} stayed locked by other transactions")
}

/// `recompute_after_deploy` through the shared queue: the window's groups
/// are queued a chunk at a time in `runner_changes`, where every runner's
/// workers take them like any change — so several runners share one
/// recompute instead of each redoing it. Whichever runner moves the
/// progress row on (a compare-and-set on its last day and user, in the
/// transaction that queues the chunk) queues that chunk; the others see the
/// row moved and go on from there. A chunk is queued only once the job's
/// queue holds less than a chunk: live changes never wait behind more than
/// one. Returns the groups this runner queued once the window is all
/// queued (the progress row is then finished).
pub async fn queue_window(
    pool: &Pool,
    job: &Job,
    range: &Range,
    chunk: i64,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<u64> {
    let state = job.current();
    let live = state.live.as_ref().ok_or_else(|| anyhow::anyhow!("job {} has no plugin loaded", job.name))?;
    let cfg = &state.config;
    let version = live.plugin.version.to_string();
    let users_key = range.users_key();
    let run = Run { job: &job.name, from: range.from, to: range.to, users: &users_key, plugin_version: &version };
    let total = {
        let client = pool.get().await?;
        run.start(&**client).await?;
        live.sql.count_groups(&client, range.from, range.to, range.users.as_deref()).await?
    };
    let mut queued_here = 0u64;
    loop {
        // Live work first: wait while the job's queue holds a chunk or more.
        while queue::holds_at_least(&**pool.get().await?, &job.name, chunk).await? {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut client = pool.get().await?;
        let saved = run.saved(&**client).await?;
        progress(saved.groups_done, total);
        if saved.finished {
            return Ok(queued_here);
        }
        let (day, after_user) = saved.last.unwrap_or((range.from, i64::MIN));
        let tx = client.transaction().await?;
        let moved = if day > range.to {
            run.finish(&*tx).await?
        } else {
            let users = live.sql.day_users(&tx, day, range.users.as_deref(), after_user, chunk).await?;
            // The next position: this day's last user, or the next day.
            let next = match users.last() {
                Some(&last) => (day, last),
                None => (day.succ_opt().ok_or_else(|| anyhow::anyhow!("date out of range after {day}"))?, i64::MIN),
            };
            let moved = run.advance_from(&*tx, saved.last, next, users.len() as u64).await?;
            if moved && !users.is_empty() {
                queue::queue_users(&*tx, &job.name, day, &users).await?;
                queued_here += users.len() as u64;
            }
            moved
        };
        tx.commit().await?;
        if moved {
            // Wake the workers: the triggers' notification is for writers.
            queue::notify(&**client, cfg).await?;
        }
    }
}

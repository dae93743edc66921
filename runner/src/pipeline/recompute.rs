//! `runner recompute`: re-aggregate a past range of days with the current
//! plugin (after a logic change). Day by day, in small batches of groups,
//! each group its own short transaction through the same code as the live
//! pipeline, within the same pool. Progress is saved after every batch in
//! `runner_recompute_progress`, so an interrupted run resumes where it was.

use std::time::Duration;

use chrono::NaiveDate;
use deadpool_postgres::Pool;
use futures::StreamExt as _;

use super::group::{self, Outcome, Purpose};
use super::job::{Job, JobState, Live};
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

/// A run's row in `runner_recompute_progress`, by its key ($1 job, $2 from,
/// $3 to, $4 users, $5 plugin version).
const WHERE: &str = "job = $1 AND from_day = $2 AND to_day = $3 AND users = $4 AND plugin_version = $5";
/// Records a run (by the same key) unless it is recorded already.
const START: &str = "INSERT INTO runner_recompute_progress (job, from_day, to_day, users, plugin_version)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

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
    let cfg = &state.config;
    let version = live.plugin.version.to_string();
    let key = (job.name.as_str(), range.from, range.to, range.users_key(), version.as_str());
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [&key.0, &key.1, &key.2, &key.3, &key.4];

    let client = pool.get().await?;
    if restart {
        client.execute(&format!("DELETE FROM runner_recompute_progress WHERE {WHERE}"), &params).await?;
        client.execute(&format!("DELETE FROM runner_recompute_failures WHERE {WHERE}"), &params).await?;
    }
    client.execute(START, &params).await?;
    let saved = client
        .query_one(
            &format!(
                "SELECT last_day, last_user, groups_done, finished_at IS NOT NULL FROM runner_recompute_progress WHERE {WHERE}"
            ),
            &params,
        )
        .await?;
    let (mut day, mut after_user): (NaiveDate, i64) = match (saved.try_get(0)?, saved.try_get(1)?) {
        (Some(d), Some(u)) => (d, u),
        _ => (range.from, i64::MIN),
    };
    let finished: bool = saved.try_get(3)?;
    let mut summary = Summary { resumed: saved.try_get::<_, i64>(2)? as u64, ..Summary::default() };
    let count = client.prepare_cached(&live.sql.count_groups).await?;
    summary.total =
        client.query_one(&count, &[&range.from, &range.to, &range.users]).await?.try_get::<_, i64>(0)? as u64;
    if finished {
        // Only the groups that failed last time are left to do.
        let rows = client
            .query(
                &format!("SELECT user_id, day FROM runner_recompute_failures WHERE {WHERE} ORDER BY day, user_id"),
                &params,
            )
            .await?;
        drop(client);
        let groups: Vec<GroupKey> = rows
            .iter()
            .filter_map(|r| Some(GroupKey { user_id: r.try_get(0).ok()?, day: r.try_get(1).ok()? }))
            .collect();
        summary.already_done = groups.is_empty();
        summary.retried_failures = !groups.is_empty();
        for chunk in groups.chunks(batch.max(1) as usize) {
            let workers = if range.background { 1 } else { cfg.workers };
            run_groups(pool, job, &state, live, chunk, &params, workers, &mut summary).await?;
        }
        return Ok(summary);
    }
    drop(client);
    let mut done = summary.resumed;
    progress(done, summary.total);

    while day <= range.to {
        let users: Vec<i64> = {
            let client = pool.get().await?;
            let statement = client.prepare_cached(&live.sql.day_users).await?;
            let rows = client.query(&statement, &[&day, &range.users, &after_user, &batch]).await?;
            rows.iter().filter_map(|r| r.try_get(0).ok()).collect()
        };
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
        let workers = if range.background { 1 } else { state.config.workers };
        run_groups(pool, job, &state, live, &groups, &params, workers, &mut summary).await?;
        done += users.len() as u64;
        after_user = last;
        pool.get()
            .await?
            .execute(
                &format!(
                    "UPDATE runner_recompute_progress SET last_day = $6, last_user = $7, groups_done = $8,
                        groups_failed = $9, updated_at = now() WHERE {WHERE}"
                ),
                &[&key.0, &key.1, &key.2, &key.3, &key.4, &day, &last, &(done as i64), &(summary.failed as i64)],
            )
            .await?;
        progress(done, summary.total);
    }
    pool.get()
        .await?
        .execute(
            &format!("UPDATE runner_recompute_progress SET finished_at = now(), updated_at = now() WHERE {WHERE}"),
            &params,
        )
        .await?;
    Ok(summary)
}

/// Recomputes some groups, `workers` at once, counting each outcome; a
/// failed group is remembered for the next run, a recomputed one forgotten.
#[allow(clippy::too_many_arguments, reason = "one call site per mode; a struct would only rename them")]
async fn run_groups(
    pool: &Pool,
    job: &Job,
    state: &JobState,
    live: &Live,
    groups: &[GroupKey],
    progress_key: &[&(dyn tokio_postgres::types::ToSql + Sync); 5],
    workers: usize,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let outcomes: Vec<(GroupKey, anyhow::Result<Outcome>)> = futures::stream::iter(groups.iter().copied())
        .map(|key| async move {
            let outcome = async {
                for _ in 0..BUSY_RETRIES {
                    let client = pool.get().await?;
                    match group::process(client, &job.name, state, live, key, Purpose::Recompute).await? {
                        Outcome::Busy | Outcome::Deferred { .. } => tokio::time::sleep(Duration::from_millis(50)).await,
                        outcome => return Ok(outcome),
                    }
                }
                anyhow::bail!("group {key} stayed locked by other transactions")
            };
            (key, outcome.await)
        })
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
                    Outcome::Emptied { .. } => summary.emptied += 1,
                    _ => summary.recomputed += 1,
                }
                client
                    .execute(
                        "DELETE FROM runner_recompute_failures WHERE job = $1 AND from_day = $2 AND to_day = $3
                         AND users = $4 AND plugin_version = $5 AND user_id = $6 AND day = $7",
                        &[
                            progress_key[0],
                            progress_key[1],
                            progress_key[2],
                            progress_key[3],
                            progress_key[4],
                            &key.user_id,
                            &key.day,
                        ],
                    )
                    .await?;
                continue;
            }
        };
        summary.failed += 1;
        tracing::warn!(job = %job.name, user = key.user_id, day = %key.day, error = %error, "Group failed while recomputing.");
        client
            .execute(
                "INSERT INTO runner_recompute_failures (job, from_day, to_day, users, plugin_version, user_id, day, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (job, from_day, to_day, users, plugin_version, day, user_id)
                 DO UPDATE SET error = excluded.error",
                &[progress_key[0], progress_key[1], progress_key[2], progress_key[3], progress_key[4], &key.user_id, &key.day, &error],
            )
            .await?;
    }
    Ok(())
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
    let key = (job.name.as_str(), range.from, range.to, range.users_key(), version.as_str());
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [&key.0, &key.1, &key.2, &key.3, &key.4];
    let total = {
        let client = pool.get().await?;
        client.execute(START, &params).await?;
        let count = client.prepare_cached(&live.sql.count_groups).await?;
        client.query_one(&count, &[&range.from, &range.to, &range.users]).await?.try_get::<_, i64>(0)? as u64
    };
    let mut queued_here = 0u64;
    loop {
        // Live work first: wait while the job's queue holds a chunk or more.
        loop {
            let queued: i64 = pool
                .get()
                .await?
                .query_one(
                    "SELECT count(*) FROM (SELECT 1 FROM runner_changes WHERE job = $1 LIMIT $2) q",
                    &[&key.0, &chunk],
                )
                .await?
                .try_get(0)?;
            if queued < chunk {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut client = pool.get().await?;
        let saved = client
            .query_one(
                &format!("SELECT last_day, last_user, groups_done, finished_at IS NOT NULL FROM runner_recompute_progress WHERE {WHERE}"),
                &params,
            )
            .await?;
        let (seen_day, seen_user): (Option<NaiveDate>, Option<i64>) = (saved.try_get(0)?, saved.try_get(1)?);
        let done = saved.try_get::<_, i64>(2)? as u64;
        progress(done, total);
        if saved.try_get::<_, bool>(3)? {
            return Ok(queued_here);
        }
        let (day, after_user) = match (seen_day, seen_user) {
            (Some(d), Some(u)) => (d, u),
            _ => (range.from, i64::MIN),
        };
        let tx = client.transaction().await?;
        let moved = if day > range.to {
            tx.execute(&format!("UPDATE runner_recompute_progress SET finished_at = now(), updated_at = now() WHERE {WHERE} AND finished_at IS NULL"), &params).await?
        } else {
            let statement = tx.prepare_cached(&live.sql.day_users).await?;
            let users: Vec<i64> = tx
                .query(&statement, &[&day, &range.users, &after_user, &chunk])
                .await?
                .iter()
                .filter_map(|r| r.try_get(0).ok())
                .collect();
            // The next position: this day's last user, or the next day.
            let (next_day, next_user) = match users.last() {
                Some(&last) => (day, last),
                None => (day.succ_opt().ok_or_else(|| anyhow::anyhow!("date out of range after {day}"))?, i64::MIN),
            };
            let moved = tx
                .execute(
                    &format!(
                        "UPDATE runner_recompute_progress SET last_day = $6, last_user = $7,
                            groups_done = groups_done + $8, updated_at = now()
                         WHERE {WHERE} AND last_day IS NOT DISTINCT FROM $9 AND last_user IS NOT DISTINCT FROM $10"
                    ),
                    &[
                        &key.0,
                        &key.1,
                        &key.2,
                        &key.3,
                        &key.4,
                        &next_day,
                        &next_user,
                        &(users.len() as i64),
                        &seen_day,
                        &seen_user,
                    ],
                )
                .await?;
            if moved == 1 && !users.is_empty() {
                tx.execute(
                    "INSERT INTO runner_changes (job, user_id, day) SELECT $1, u, $2 FROM unnest($3::int8[]) u",
                    &[&key.0, &day, &users],
                )
                .await?;
                queued_here += users.len() as u64;
            }
            moved
        };
        tx.commit().await?;
        if moved == 1 {
            // Wake the workers: the triggers' notification is for writers.
            client.execute("SELECT pg_notify($1, $2)", &[&crate::db::migrate::CHANNEL, &cfg.source.name()]).await?;
        }
    }
}

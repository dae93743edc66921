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
use super::job::Job;
use crate::rows::GroupKey;

/// What to recompute.
#[derive(Debug, Clone)]
pub struct Range {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Only these users; `None` for all.
    pub users: Option<Vec<i64>>,
}

impl Range {
    /// The `--users` filter as stored in the progress table.
    fn users_key(&self) -> String {
        let mut users = self.users.clone().unwrap_or_default();
        users.sort_unstable();
        users.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    }
}

/// How a recompute run went.
#[derive(Debug, Default)]
pub struct Summary {
    /// Groups in the range.
    pub total: u64,
    /// Groups done before this run (resumed).
    pub resumed: u64,
    pub recomputed: u64,
    pub failed: u64,
    /// The range had been finished by an earlier run.
    pub already_done: bool,
}

/// Attempts at a group another transaction holds, 50 ms apart.
const BUSY_RETRIES: u32 = 100;

/// Recomputes `range` for `job`; `progress(done, total)` is called after each batch.
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
    let (src, ts) = (cfg.source.quoted(), cfg.timestamp_column.quoted());
    let day_users = format!(
        "SELECT DISTINCT user_id FROM {src}
         WHERE {ts} >= ($1::date::timestamp AT TIME ZONE $2) AND {ts} < (($1::date + 1)::timestamp AT TIME ZONE $2)
           AND aggregation_status <> 'failed' AND ($3::bigint[] IS NULL OR user_id = ANY($3)) AND user_id > $4
         ORDER BY user_id LIMIT $5"
    );
    let count = format!(
        "SELECT count(*) FROM (SELECT DISTINCT user_id, ({ts} AT TIME ZONE $2)::date FROM {src}
         WHERE {ts} >= ($1::date::timestamp AT TIME ZONE $2) AND {ts} < (($3::date + 1)::timestamp AT TIME ZONE $2)
           AND aggregation_status <> 'failed' AND ($4::bigint[] IS NULL OR user_id = ANY($4))) g"
    );
    let key = (job.name.as_str(), range.from, range.to, range.users_key());
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&key.0, &key.1, &key.2, &key.3];

    let client = pool.get().await?;
    if restart {
        client
            .execute(
                "DELETE FROM runner_recompute_progress WHERE job = $1 AND from_day = $2 AND to_day = $3 AND users = $4",
                &params,
            )
            .await?;
    }
    client
        .execute(
            "INSERT INTO runner_recompute_progress (job, from_day, to_day, users) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &params,
        )
        .await?;
    let saved = client
        .query_one(
            "SELECT last_day, last_user, groups_done, finished_at IS NOT NULL FROM runner_recompute_progress
             WHERE job = $1 AND from_day = $2 AND to_day = $3 AND users = $4",
            &params,
        )
        .await?;
    let (mut day, mut after_user): (NaiveDate, i64) = match (saved.get(0), saved.get(1)) {
        (Some(d), Some(u)) => (d, u),
        _ => (range.from, i64::MIN),
    };
    let mut summary =
        Summary { resumed: saved.get::<_, i64>(2) as u64, already_done: saved.get(3), ..Summary::default() };
    summary.total =
        client.query_one(&count, &[&range.from, &cfg.timezone, &range.to, &range.users]).await?.get::<_, i64>(0) as u64;
    drop(client);
    if summary.already_done {
        return Ok(summary);
    }
    let mut done = summary.resumed;
    progress(done, summary.total);

    while day <= range.to {
        let users: Vec<i64> = {
            let client = pool.get().await?;
            let statement = client.prepare_cached(&day_users).await?;
            let rows = client.query(&statement, &[&day, &cfg.timezone, &range.users, &after_user, &batch]).await?;
            rows.iter().map(|r| r.get(0)).collect()
        };
        let Some(&last) = users.last() else {
            day = day.succ_opt().expect("date in range");
            after_user = i64::MIN;
            continue;
        };
        let outcomes: Vec<anyhow::Result<Outcome>> =
            futures::stream::iter(users.iter().map(|&user_id| GroupKey { user_id, day }))
                .map(|key| {
                    let state = &*state;
                    async move {
                        for _ in 0..BUSY_RETRIES {
                            let mut client = pool.get().await?;
                            match group::process(&mut client, &job.name, state, live, key, Purpose::Recompute).await? {
                                Outcome::Busy => tokio::time::sleep(Duration::from_millis(50)).await,
                                outcome => return Ok(outcome),
                            }
                        }
                        anyhow::bail!("group {key} stayed locked by another transaction")
                    }
                })
                .buffer_unordered(cfg.workers)
                .collect()
                .await;
        for outcome in outcomes {
            match outcome? {
                Outcome::Failed { error, .. } => {
                    summary.failed += 1;
                    tracing::warn!(job = %job.name, error = %error, "Group failed while recomputing.");
                }
                _ => summary.recomputed += 1,
            }
        }
        done += users.len() as u64;
        after_user = last;
        pool.get()
            .await?
            .execute(
                "UPDATE runner_recompute_progress SET last_day = $5, last_user = $6, groups_done = $7, updated_at = now()
                 WHERE job = $1 AND from_day = $2 AND to_day = $3 AND users = $4",
                &[&key.0, &key.1, &key.2, &key.3, &day, &last, &(done as i64)],
            )
            .await?;
        progress(done, summary.total);
    }
    pool.get()
        .await?
        .execute(
            "UPDATE runner_recompute_progress SET finished_at = now(), updated_at = now()
             WHERE job = $1 AND from_day = $2 AND to_day = $3 AND users = $4",
            &params,
        )
        .await?;
    Ok(summary)
}

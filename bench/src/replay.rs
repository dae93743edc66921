//! The protocol ceilings: the runner's own transactions issued by `workers`
//! clients that know every group in advance — no batch peek, no throttle,
//! no WebAssembly (the native vitals logic, a few µs a group). With
//! `per_transaction` 1, one group a transaction (`transaction::run` with one key: `BEGIN`,
//! lock-claim-and-read, replace, `COMMIT`); above, group commit
//! (`transaction::run`, that many groups a transaction). The runner's
//! time over this is its share of the ceiling: what scheduling, peeking and
//! the sandbox add to the statements alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use runner::config::Config;
use runner::db::pool;
use runner::pipeline::transaction::{self, Context, Outcome, Purpose};
use runner::pipeline::{self, JobState};
use runner::plugin::Runtime;
use runner::rows::GroupKey;

/// Seconds to replay every queued group of the job's table.
pub async fn run(config: &Config, workers: usize, per_transaction: usize) -> anyhow::Result<f64> {
    let pool = pool::build(&config.database, "replay")?;
    let runtime = Runtime::new(config.plugins.cache_dir.clone())?;
    let jobs = pipeline::prepare(config, &pool, &runtime).await.map_err(|p| anyhow::anyhow!(p.join("\n")))?;
    let job = jobs[0].clone();
    let plugin = Arc::new(crate::native::vitals());
    job.update(|s| JobState { live: s.live.as_ref().map(|l| l.with_plugin(&s.config, plugin)), ..s.clone() });
    let state = job.current();
    let live = state.live.clone().ok_or_else(|| anyhow::anyhow!("the job has no plugin"))?;
    let groups: Arc<Vec<GroupKey>> = Arc::new(
        pool.get()
            .await?
            .query("SELECT DISTINCT user_id, day FROM runner_changes WHERE job = $1 ORDER BY 2, 1", &[&job.name])
            .await?
            .iter()
            .map(|r| GroupKey { user_id: r.get(0), day: r.get(1) })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (pool, groups, next, state, live, name) =
            (pool.clone(), groups.clone(), next.clone(), state.clone(), live.clone(), job.name.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(per_transaction, Ordering::Relaxed);
                let Some(keys) = groups.get(i..(i + per_transaction).min(groups.len())).filter(|k| !k.is_empty())
                else {
                    return anyhow::Ok(());
                };
                let client = pool.get().await?;
                let cx = Context { job: &name, state: &state, live: &live };
                let done = transaction::run(&pool, client, cx, keys, Purpose::Pending).await?;
                for (key, outcome) in done.outcomes {
                    if !matches!(outcome, Outcome::Completed { .. }) {
                        anyhow::bail!("replaying {key}: {outcome:?}");
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    pool.close();
    Ok(seconds)
}

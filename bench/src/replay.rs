//! The per-group protocol ceiling: the runner's own transaction for every
//! group (`group::process`: `BEGIN`, lock-claim-and-read, replace, `COMMIT`)
//! issued by `workers` clients that know every group in advance — no batch
//! claim, no throttle, no WebAssembly (the native vitals logic, a few µs a
//! group). The runner's time over this one is its share of the ceiling:
//! what scheduling, claiming and the sandbox add to the statements alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use runner::config::Config;
use runner::db::pool;
use runner::pipeline::group::{self, Outcome, Purpose};
use runner::pipeline::{self, JobState};
use runner::plugin::Runtime;
use runner::rows::GroupKey;

/// Seconds to replay every pending group of the job's table.
pub async fn run(config: &Config, workers: usize) -> anyhow::Result<f64> {
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
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&key) = groups.get(i) else { return anyhow::Ok(()) };
                let client = pool.get().await?;
                match group::process(client, &name, &state, &live, key, Purpose::Pending).await? {
                    Outcome::Completed { .. } => {}
                    other => anyhow::bail!("replaying {key}: {other:?}"),
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

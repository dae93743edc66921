//! The aggregation pipeline: load and check each job, then run one loop per
//! job over a shared, bounded pool, while `deploy` swaps plugins and
//! settings in as files change.

pub mod deploy;
pub mod group;
pub mod job;
pub mod latency;
pub mod recompute;
pub mod shadow;
pub mod throttle;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::db::{listen, schema};
use crate::plugin::{Limits, Plugin, Runtime};
pub use job::{Job, JobState};
pub use worker::{Mode, Report};

/// Loads every enabled job's plugin and checks it against the job's tables;
/// disabled jobs start paused. Returns the jobs, or every problem found
/// (one sentence each).
pub async fn prepare(config: &Config, pool: &Pool, runtime: &Runtime) -> Result<Vec<Arc<Job>>, Vec<String>> {
    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    for name in config.jobs.keys() {
        match prepare_job(config, pool, runtime, name).await {
            Ok(job) => jobs.push(job),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() { Ok(jobs) } else { Err(problems) }
}

/// Loads and checks one job (paused, with no plugin, when disabled).
pub async fn prepare_job(config: &Config, pool: &Pool, runtime: &Runtime, name: &str) -> Result<Arc<Job>, Vec<String>> {
    let cfg =
        config.jobs.get(name).ok_or_else(|| vec![format!("there is no job `{name}` in {}", config.path.display())])?;
    if !cfg.enabled {
        return Ok(Arc::new(Job::new(name, JobState::new(cfg, config.runner.poll_interval, None))));
    }
    let client = pool.get().await.map_err(|e| vec![format!("cannot get a database connection: {e}")])?;
    let mut problems = Vec::new();
    let plugin = match Plugin::load(runtime, &config.plugin_path(cfg), job_limits(cfg)) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            problems.push(format!("{e:#}"));
            None
        }
    };
    problems.extend(check_tables(&client, cfg, plugin.as_deref()).await);
    match plugin {
        Some(plugin) if problems.is_empty() => {
            Ok(Arc::new(Job::new(name, JobState::new(cfg, config.runner.poll_interval, Some(plugin)))))
        }
        _ => Err(problems.into_iter().map(|p| format!("job {name}: {p}")).collect()),
    }
}

/// The memory and time limits of a job's plugin calls.
pub fn job_limits(cfg: &config::Job) -> Limits {
    Limits { memory_bytes: cfg.memory_limit_mb << 20, time: cfg.time_limit }
}

/// Checks a job's tables, its time zone, and (when given) its plugin's
/// description against them; returns every problem, one sentence each.
pub async fn check_tables(
    client: &deadpool_postgres::Client,
    cfg: &config::Job,
    plugin: Option<&Plugin>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut tables = Vec::new();
    for table in [&cfg.source, &cfg.target] {
        match schema::table(&***client, table).await {
            Ok(Some(t)) => tables.push(t),
            Ok(None) => problems.push(format!("table {table} does not exist (run `runner migrate`?)")),
            Err(e) => problems.push(format!("reading table {table}: {}", crate::db::describe_error(&e))),
        }
    }
    if let [source, target] = tables.as_slice() {
        problems.extend(schema::check_source(cfg, source));
        if let Some(p) = plugin {
            problems.extend(schema::check_plugin(&p.description, &p.version, source, target));
        }
    }
    let tz =
        client.query_one("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)", &[&cfg.timezone]).await;
    match tz {
        Ok(row) if row.get::<_, bool>(0) => {}
        Ok(_) => problems.push(format!("timezone `{}` is not a time zone Postgres knows", cfg.timezone)),
        Err(e) => problems.push(format!("checking timezone: {}", crate::db::describe_error(&e))),
    }
    problems
}

/// Runs every job until shutdown (or, with `Mode::Once`, until drained).
/// As a daemon it also listens for new rows.
pub async fn run(
    config: &Config,
    pool: Pool,
    jobs: &[Arc<Job>],
    mode: Mode,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<(String, Report)>> {
    let mut wakers: HashMap<String, Vec<Arc<tokio::sync::Notify>>> = HashMap::new();
    let mut tasks = Vec::new();
    for job in jobs {
        let state = job.current();
        wakers.entry(state.config.source.name().to_string()).or_default().push(job.wake.clone());
        match state.running() {
            Some(live) => tracing::info!(job = %job.name, plugin = %live.plugin.version, source = %state.config.source,
                target = %state.config.target, "Job started."),
            None => tracing::info!(job = %job.name, "Job paused (disabled)."),
        }
        let name = job.name.clone();
        tasks.push((name, tokio::spawn(worker::run(pool.clone(), job.clone(), mode, shutdown.clone()))));
    }
    let listener = match mode {
        Mode::Daemon => {
            let pg = crate::db::pool::pg_config(&config.database.url)?;
            Some(tokio::spawn(listen::listen(pg, wakers, shutdown.clone())))
        }
        Mode::Once => None,
    };
    let mut reports = Vec::new();
    for (name, task) in tasks {
        reports.push((name.clone(), task.await.with_context(|| format!("job {name} panicked"))?));
    }
    if let Some(listener) = listener {
        listener.abort();
    }
    Ok(reports)
}

//! The aggregation pipeline: load and check each job, then run one loop per
//! job over a shared, bounded pool, while `deploy` swaps plugins and
//! settings in as files change.

pub mod after_deploy;
pub mod capture_watch;
pub mod deploy;
pub mod diff;
mod flight;
pub mod job;
pub mod latency;
pub mod purity;
pub mod recompute;
pub mod shadow;
pub mod throttle;
pub mod transaction;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::db::{listen, schema};
use crate::plugin::{Limits, Plugin, Runtime};
pub use job::{Job, JobState};
pub use worker::{Mode, Report};

/// What to do at start-up with a job whose plugin file is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRefusedFile {
    /// A problem like any other: the command fails (`check`, `run --once`).
    Fail,
    /// The daemon: the job runs its last good version (`plugin::kept`) or
    /// starts paused, says why at error level, and the other jobs run.
    RunLastGood,
}

/// Loads every enabled job's plugin and checks it against the job's tables;
/// disabled jobs start paused. Returns the jobs, or every problem found
/// (one sentence each).
pub async fn prepare(config: &Config, pool: &Pool, runtime: &Runtime) -> Result<Vec<Arc<Job>>, Vec<String>> {
    prepare_all(config, pool, runtime, OnRefusedFile::Fail).await
}

/// As [`prepare`], choosing what a refused plugin file does.
pub async fn prepare_all(
    config: &Config,
    pool: &Pool,
    runtime: &Runtime,
    on_refused: OnRefusedFile,
) -> Result<Vec<Arc<Job>>, Vec<String>> {
    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    // A release run before its own migrations cannot know what is missing.
    match pool.get().await {
        Ok(client) => match crate::db::migrate::behind(&**client).await {
            Ok(None) => {}
            Ok(Some(why)) => return Err(vec![why]),
            Err(e) => problems.push(format!("reading the schema's version: {}", crate::db::describe_error(&e))),
        },
        Err(e) => return Err(vec![format!("cannot get a database connection: {e}")]),
    }
    for name in config.jobs.keys() {
        match prepare_one(config, pool, runtime, name, on_refused).await {
            Ok(job) => jobs.push(job),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() { Ok(jobs) } else { Err(problems) }
}

/// Loads and checks one job (paused, with no plugin, when disabled).
pub async fn prepare_job(config: &Config, pool: &Pool, runtime: &Runtime, name: &str) -> Result<Arc<Job>, Vec<String>> {
    prepare_one(config, pool, runtime, name, OnRefusedFile::Fail).await
}

async fn prepare_one(
    config: &Config,
    pool: &Pool,
    runtime: &Runtime,
    name: &str,
    on_refused: OnRefusedFile,
) -> Result<Arc<Job>, Vec<String>> {
    let cfg =
        config.jobs.get(name).ok_or_else(|| vec![format!("there is no job `{name}` in {}", config.path.display())])?;
    let job_with = |live| Arc::new(Job::new(name, JobState::new(cfg, config.runner.poll_interval, live)));
    if !cfg.enabled {
        return Ok(job_with(None));
    }
    let client = pool.get().await.map_err(|e| vec![format!("cannot get a database connection: {e}")])?;
    let path = config.plugin_path(cfg);
    let named = |problems: Vec<String>| problems.into_iter().map(|p| format!("job {name}: {p}")).collect::<Vec<_>>();
    let loaded = load_checked(&client, cfg, runtime, &path).await;
    // Nothing is live yet: the floor is the version that last went live here.
    let loaded = loaded.and_then(|(shape, plugin)| match not_older(&path, &plugin, None) {
        Ok(()) => Ok((shape, plugin)),
        Err(why) => Err(vec![format!("plugin {} refused: {why}", path.display())]),
    });
    let problems = match loaded {
        Ok((shape, plugin)) => {
            warn_unwritten(&client, name, cfg, &plugin).await;
            return Ok(job_with(Some((shape, plugin))));
        }
        Err(problems) => problems,
    };
    // Only a problem of the file's own may fall back: when the tables do
    // not fit even without the plugin, no other version would run either.
    if on_refused == OnRefusedFile::Fail || check_tables(&client, cfg, None).await.is_err() {
        return Err(named(problems));
    }
    let why = problems.join("; ");
    let bad = std::fs::read(&path).ok().map(|b| crate::plugin::sha256_hex(&b));
    let fallback = match crate::plugin::kept::newest_other_than(&path, bad.as_deref()) {
        Some(kept) => load_checked(&client, cfg, runtime, &kept.path).await.map_err(|p| (kept.path, p.join("; "))),
        None => Err((path.clone(), "no earlier version is kept".into())),
    };
    let (job, reason) = match fallback {
        Ok((shape, plugin)) => {
            let reason = format!("{why} (running its last good version {} instead)", plugin.version);
            tracing::error!(job = %name, file = %path.display(), reason = %why, running = %plugin.version,
                "Plugin file refused at start: the job runs its last good version until a good file is deployed.");
            (job_with(Some((shape, plugin))), reason)
        }
        Err((tried, kept_why)) => {
            let reason = format!("{why} (the job is paused until a good file is deployed)");
            tracing::error!(job = %name, file = %path.display(), reason = %why, last_good = %kept_why, tried = %tried.display(),
                "Plugin file refused at start and no good version to run: the job is paused, its changes stay queued.");
            (job_with(None), reason)
        }
    };
    *job.last_reload_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    Ok(job)
}

/// Loads a plugin file, configures it with the job's settings and checks it
/// against the job's tables.
async fn load_checked(
    client: &deadpool_postgres::Client,
    cfg: &config::Job,
    runtime: &Runtime,
    path: &std::path::Path,
) -> Result<(schema::SourceShape, Arc<Plugin>), Vec<String>> {
    let loaded = crate::plugin::read_in_folder(path)
        .map_err(|why| anyhow::anyhow!(why))
        .and_then(|bytes| Plugin::from_bytes(runtime, path, &bytes, job_limits(cfg)));
    let plugin = match loaded {
        Ok(p) => configure(cfg, &p).map(Arc::new),
        Err(_) if !path.exists() => Err(vec![format!(
            "its plugin file {} does not exist (plugin = \"{}\", {}): build or deploy it \
             (`cargo xtask build-plugins` for the bundled ones), or set `enabled = false` for this job",
            path.display(),
            cfg.plugin,
            cfg.origin
        )]),
        Err(e) => Err(vec![format!("{e:#}")]),
    };
    // The tables are checked either way, so every problem is named at once.
    let shape = check_tables(client, cfg, plugin.as_deref().ok()).await;
    match (plugin, shape) {
        (Ok(plugin), Ok(shape)) => {
            probe_purity(client, cfg, &shape, &plugin).await;
            Ok((shape, plugin))
        }
        (plugin, shape) => Err(plugin.err().into_iter().chain(shape.err()).flatten().collect()),
    }
}

/// A plugin that fits a job which shares instances is probed for state
/// kept between groups before it goes live (`purity`).
pub async fn probe_purity(
    client: &deadpool_postgres::Client,
    cfg: &config::Job,
    shape: &schema::SourceShape,
    plugin: &Arc<Plugin>,
) {
    if cfg.reuse_instance && plugin.stateful().is_none() {
        let live = job::Live::new(cfg, shape.clone(), plugin.clone());
        purity::probe_at_load(client, &cfg.name, &live, job_limits(cfg)).await;
    }
}

/// Logs the daily columns a plugin that goes live never writes.
pub async fn warn_unwritten(client: &deadpool_postgres::Client, job: &str, cfg: &config::Job, plugin: &Plugin) {
    let warnings = schema::unwritten_in(&***client, cfg, &plugin.description, &plugin.version).await;
    for warning in warnings.unwrap_or_default() {
        tracing::warn!(job = %job, "{warning}");
    }
}

/// Refuses a signed downgrade of the job's file at `live_path`: `plugin`
/// may not have been signed before the version live now, nor before the
/// version that last went live here (which holds across restarts), unless
/// signed with `--allow-downgrade` or put back by `runner plugin rollback`.
pub fn not_older(live_path: &std::path::Path, plugin: &Plugin, live: Option<&Plugin>) -> Result<(), String> {
    use crate::{plugin::kept, trust};
    let Some(signer) = &plugin.signer else { return Ok(()) };
    let floor = live.and_then(|l| l.signer.as_ref()?.signed_at).max(kept::signed_floor(live_path));
    trust::not_older(signer, floor, kept::rollback_asked(live_path, &plugin.hash))
}

/// Keeps the version that went live for rollback (`plugin::kept`); a
/// folder the runner may not write costs rollback only, with a warning.
pub fn remember(job: &str, path: &std::path::Path, plugin: &Plugin) {
    crate::plugin::kept::rollback_done(path, &plugin.hash);
    if let Err(e) = crate::plugin::kept::remember(path, &plugin.hash, &plugin.version) {
        tracing::warn!(job = %job, file = %path.display(), error = %e,
            "Cannot keep a copy of the live plugin for rollback; it runs anyway.");
    }
}

/// The memory and time limits of a job's plugin calls.
pub fn job_limits(cfg: &config::Job) -> Limits {
    Limits {
        memory_bytes: cfg.memory_limit_mb << 20,
        time: cfg.time_limit,
        log_lines: cfg.log_lines,
        log_line_bytes: cfg.log_line_bytes,
    }
}

/// A job's limits when no job is named (`runner plugin validate FILE`):
/// the config's defaults.
pub fn default_limits() -> Limits {
    use config::defaults;
    Limits {
        memory_bytes: defaults::memory_limit_mb() << 20,
        time: defaults::time_limit(),
        log_lines: defaults::log_lines(),
        log_line_bytes: defaults::log_line_bytes(),
    }
}

/// The plugin with the job's settings, or every problem with them (each
/// naming the file and line of the setting, or of the job).
pub fn configure(cfg: &config::Job, plugin: &Plugin) -> Result<Plugin, Vec<String>> {
    let origin = |name: Option<&str>| cfg.setting_origin(name);
    match crate::plugin::settings::resolve(&plugin.description.settings, &cfg.setting_values(), &origin) {
        Ok(settings) => Ok(plugin.configure(settings)),
        Err(mut problems) => {
            if plugin.wit_version.as_deref() == Some("0.1.0") {
                problems.push(format!(
                    "{} is built against health:aggregation@0.1.0, which has no settings: rebuild it against 0.2.0 \
                     or later to read them",
                    plugin.path.display()
                ));
            }
            Err(problems)
        }
    }
}

/// Checks a job's tables, its time zones, and (when given) its plugin's
/// description against them; returns how the raw table is read, or every
/// problem, one sentence each.
pub async fn check_tables(
    client: &deadpool_postgres::Client,
    cfg: &config::Job,
    plugin: Option<&Plugin>,
) -> Result<schema::SourceShape, Vec<String>> {
    let mut problems = Vec::new();
    let mut tables = Vec::new();
    for table in [&cfg.source, &cfg.target] {
        match schema::table(&***client, table).await {
            Ok(Some(t)) => tables.push(t),
            Ok(None) => problems.push(format!("table {table} does not exist (run `runner migrate`?)")),
            Err(e) => problems.push(format!("reading table {table}: {}", crate::db::describe_error(&e))),
        }
    }
    if let Some(zones) = &cfg.user_zones {
        match schema::table(&***client, &zones.table).await {
            Ok(Some(t)) => problems.extend(crate::db::user_zones::check_table(zones, &t)),
            Ok(None) => problems.push(format!("table {} (user_zones) does not exist", zones.table)),
            Err(e) => problems.push(format!("reading table {}: {}", zones.table, crate::db::describe_error(&e))),
        }
    }
    let mut shape = None;
    if let [source, target] = tables.as_slice() {
        match schema::check_source(cfg, source) {
            Ok(s) => {
                // The triggers must record changes as this config counts days.
                match crate::db::capture::problems(&***client, &cfg.name, cfg, &s).await {
                    Ok(p) => problems.extend(p),
                    Err(e) => problems.push(format!("reading the change capture: {}", crate::db::describe_error(&e))),
                }
                shape = Some(s);
            }
            Err(p) => problems.extend(p),
        }
        if let Some(p) = plugin {
            // Named after the plugin's own columns: as many as it declares, so bounded.
            problems.extend(crate::plugin::contract::bounded(schema::check_plugin(
                &p.description,
                &p.version,
                source,
                target,
                cfg.target_day_column.as_str(),
            )));
        }
    }
    for (key, zone) in [("timezone", &cfg.timezone), ("timestamp_zone", &cfg.timestamp_zone)] {
        // Postgres accepts any spelling it can resolve (`utc`, `Europe/Paris`, `+02`).
        let known = crate::db::clock::knows_zone(&***client, zone).await;
        if let Err(e) = known {
            match e.as_db_error() {
                Some(_) => problems.push(format!("{key} `{zone}` is not a time zone Postgres knows ({})", cfg.origin)),
                None => problems.push(format!("checking {key}: {}", crate::db::describe_error(&e))),
            }
        }
    }
    match shape {
        Some(shape) if problems.is_empty() => Ok(shape),
        _ => Err(problems),
    }
}

/// Runs a job's loop, restarting it with backoff should it ever end
/// unexpectedly: logged at error level at once, and shown by `/ready`,
/// `status` (the job's health) and `runner_job_up` while down.
async fn supervise(pool: Pool, job: Arc<Job>, mode: Mode, repair: bool, shutdown: watch::Receiver<bool>) -> Report {
    let up = metrics::gauge!("runner_job_up", "job" => job.name.clone());
    let mut delay = Duration::from_secs(1);
    loop {
        up.set(1.0);
        let task = tokio::spawn(worker::run(pool.clone(), job.clone(), mode, repair, shutdown.clone()));
        let reason = match task.await {
            Ok(report) => return report,
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("panicked: {message}")
            }
            Err(e) => format!("ended: {e}"),
        };
        up.set(0.0);
        metrics::counter!("runner_job_restarts_total", "job" => job.name.clone()).increment(1);
        tracing::error!(job = %job.name, reason = %reason, restart_in = ?delay,
            "Job loop stopped unexpectedly; restarting it. Its changes stay queued.");
        job.set_health(|h| h.loop_down = Some(reason));
        let mut stop = shutdown.clone();
        if *stop.borrow() {
            return Report::default();
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return Report::default(),
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// Runs every job until shutdown (or, with `Mode::Once`, until drained).
/// As a daemon it also listens for new rows. Each job's loop watches its
/// change capture (`capture_watch`); `repair` queues the days a capture gap
/// may have missed.
pub async fn run(
    config: &Config,
    pool: Pool,
    jobs: &[Arc<Job>],
    mode: Mode,
    repair: bool,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<(String, Report)>> {
    let mut wakers: HashMap<String, Vec<Arc<tokio::sync::Notify>>> = HashMap::new();
    for job in jobs {
        wakers.entry(job.current().config.source.name().to_string()).or_default().push(job.wake.clone());
    }
    let listener = match mode {
        Mode::Daemon => {
            let mut pg = crate::db::pool::pg_config(&config.database.url)?;
            pg.connect_timeout(config.database.connect_timeout);
            Some(tokio::spawn(listen::listen(pg, wakers, shutdown.clone())))
        }
        Mode::Once => None,
    };
    // A daemon runs every job at once (a chain's downstream jobs are woken
    // by their capture). `--once` runs a chain level by level, so a job
    // reading another's target starts when that one has drained: its queue
    // then holds every key the run will give it.
    let levels = match mode {
        Mode::Daemon => vec![jobs.to_vec()],
        Mode::Once => chain_levels(jobs),
    };
    let mut reports = Vec::new();
    for level in levels {
        let mut tasks = Vec::new();
        for job in level {
            let state = job.current();
            match state.running() {
                Some(live) => {
                    tracing::info!(job = %job.name, plugin = %live.plugin.version, source = %state.config.source,
                    target = %state.config.target, "Job started.")
                }
                None => tracing::info!(job = %job.name, "Job paused (disabled)."),
            }
            let name = job.name.clone();
            tasks.push((name, tokio::spawn(supervise(pool.clone(), job.clone(), mode, repair, shutdown.clone()))));
        }
        for (name, task) in tasks {
            reports.push((name.clone(), task.await.with_context(|| format!("job {name} panicked"))?));
        }
    }
    if let Some(listener) = listener {
        listener.abort();
    }
    Ok(reports)
}

/// The jobs in levels: first those reading no other job's target, then
/// those reading a target of the levels before (the config refuses cycles;
/// any job left over is run last rather than never).
fn chain_levels(jobs: &[Arc<Job>]) -> Vec<Vec<Arc<Job>>> {
    let configs: Vec<config::Job> = jobs.iter().map(|j| j.current().config.clone()).collect();
    let feeds = |upstream: &config::Job, downstream: &config::Job| {
        upstream.target.as_str().trim_start_matches("public.")
            == downstream.source.as_str().trim_start_matches("public.")
    };
    let mut placed = vec![false; jobs.len()];
    let mut levels = Vec::new();
    while placed.contains(&false) {
        let ready: Vec<usize> = (0..jobs.len())
            .filter(|&i| !placed[i])
            .filter(|&i| (0..jobs.len()).all(|u| placed[u] || u == i || !feeds(&configs[u], &configs[i])))
            .collect();
        let level = if ready.is_empty() { (0..jobs.len()).filter(|&i| !placed[i]).collect() } else { ready };
        for &i in &level {
            placed[i] = true;
        }
        levels.push(level.into_iter().map(|i| jobs[i].clone()).collect());
    }
    levels
}

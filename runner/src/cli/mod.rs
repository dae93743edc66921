//! The commands. Nothing in the library imports this module.
//!
//! Exit codes: 0 success; 1 the command failed (database unreachable,
//! plugin or schema problems, rows left unprocessed by database errors);
//! 2 bad usage or an invalid config file.

mod demo;
mod plugin;
mod recompute;
mod seed;
mod status;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use runner::config::{self, Config};
use runner::daemon::{Daemon, Ended};
use runner::db::{migrate, pool};
use runner::pipeline::{self, Mode};
use runner::plugin::Runtime;

#[derive(Parser)]
#[command(
    version,
    about = "Keeps daily aggregates of raw health data in Postgres in step with every change, with WebAssembly plugins, in short transactions."
)]
struct Cli {
    /// The TOML config file. Relative paths inside it resolve against its folder.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH, value_name = "PATH")]
    config: PathBuf,
    /// Log lines as text (default on a terminal) or JSON objects; overrides `[log] format`.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<config::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

/// Logs to stderr: the level from RUST_LOG, else `[log] level`, else
/// `default`; text or JSON lines.
fn init_logging(format: config::LogFormat, level: Option<&str>, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or(default)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        config::LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
        config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create or update the schema: the runner's tables, the reference tables
    /// a job names that do not exist (all eight with --reference-schema), and
    /// the change-capture triggers on every enabled job's source (no column
    /// or index is added to it). Exits 2, changing nothing, when a job
    /// cannot be prepared.
    ///
    /// Run it as the owner role; `--print-grants ROLE` prints the GRANTs a
    /// least-privilege role needs to run every enabled job, and changes nothing.
    ///
    /// Example: runner migrate --config config/runner.toml
    Migrate {
        /// Print the GRANT statements for this role (it runs `run`,
        /// `status`, `recompute`, `retry-failed`) and exit.
        #[arg(long, value_name = "ROLE")]
        print_grants: Option<String>,
        /// Also create all eight reference tables of the aggregation spec
        /// (vitals, nutrition, lab; raw and daily) that do not exist.
        /// Without it, only those an enabled job names are created.
        #[arg(long)]
        reference_schema: bool,
    },
    /// Remove everything `runner migrate` created for the runner: the
    /// change-capture triggers and functions and the runner_* tables, in one
    /// transaction. The sources are left as they were before `migrate`; the
    /// daily tables stay unless --drop-daily. Without --yes, only lists what
    /// it would remove. Stop every runner first.
    ///
    /// Example: runner uninstall --yes
    Uninstall {
        /// Also drop every configured job's daily table.
        #[arg(long)]
        drop_daily: bool,
        /// Remove (without it, the command only lists what it would remove).
        #[arg(long)]
        yes: bool,
    },
    /// Keep every job's daily rows in step with its raw rows until stopped
    /// (SIGINT or SIGTERM finish the groups in hand, then exit 0).
    ///
    /// Example: DATABASE_URL=postgres://runner@db/health runner run
    Run {
        /// Drain every group that is due, then exit. Exits 1 if groups were
        /// left queued for a reason other than a plugin's verdict.
        #[arg(long)]
        once: bool,
        /// When change capture fires again after a gap (triggers disabled or
        /// dropped meanwhile), queue the days that may have missed changes
        /// instead of only naming the `recompute` that mends them.
        #[arg(long)]
        repair: bool,
    },
    /// Check the config, the database, the schema and every enabled job's
    /// plugin against its tables; print every problem found.
    ///
    /// Example: runner check --config /etc/runner/runner.toml
    Check,
    /// Re-aggregate a past range of days with the job's current plugin, in
    /// small batches within the pool's budget. Resumes where an interrupted
    /// run with the same arguments stopped.
    ///
    /// Example: runner recompute --job vitals --from 2024-03-01 --to 2024-03-31 --users 17,42
    Recompute(recompute::Args),
    /// Show each job's queue in groups (pending, in backoff, failed), the
    /// oldest queued change, rows that belong to no group, the most common
    /// errors, the plugin, what the daemon refused, and the runner's
    /// connections.
    ///
    /// Example: runner status --json
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue a job's failed groups again (attempts reset), saying how many.
    ///
    /// Example: runner retry-failed --job lab --since 2024-03-01 --error-contains timeout
    RetryFailed(status::RetryArgs),
    /// Insert realistic synthetic raw rows (in time order across users, with a
    /// small share of bad input), with a progress bar.
    ///
    /// Example: runner seed --users 1000 --days 30 --jobs vitals,lab
    Seed(seed::Args),
    /// Work with plugin files: validate, try on rows, start a new one,
    /// preview a change, sign and verify, roll back.
    Plugin {
        #[command(subcommand)]
        command: plugin::Command,
    },
    /// Start a throwaway Postgres, migrate, seed realistic vitals, aggregate
    /// them to completion, print a summary, and clean up.
    ///
    /// Example: runner demo --users 100 --days 7
    Demo {
        /// Synthetic users.
        #[arg(long, default_value_t = 200)]
        users: i32,
        /// Days of data per user (34 readings a day each).
        #[arg(long, default_value_t = 14)]
        days: i32,
        /// Leave the database running and print how to connect.
        #[arg(long)]
        keep: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.command {
        // `plugin` commands read the config only when asked to (`--job`).
        Command::Plugin { .. } => None,
        _ => match Config::load(&cli.config) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let log = config.as_ref().map(|c| c.log.clone()).unwrap_or_default();
    // The demo shows a progress bar and its own summary: per-batch log lines
    // would drown them, so the config's level is not its; RUST_LOG still is.
    let level = if matches!(cli.command, Command::Demo { .. }) { Some("warn") } else { log.level.as_deref() };
    init_logging(cli.log_format.unwrap_or(log.format), level, "info");
    let runtime = tokio::runtime::Runtime::new().expect("starting the async runtime");
    let result = runtime.block_on(async {
        match (cli.command, config) {
            (Command::Plugin { command }, _) => plugin::run(command, &cli.config).await,
            (Command::Migrate { print_grants: Some(role), .. }, Some(config)) => {
                let database =
                    pool::pg_config(&config.database.url).ok().and_then(|pg| pg.get_dbname().map(str::to_string));
                print!("{}", runner::db::roles::grants(&config, &role, database.as_deref()));
                Ok(ExitCode::SUCCESS)
            }
            (Command::Migrate { print_grants: None, reference_schema }, Some(config)) => {
                migrate_cmd(&config, reference_schema).await
            }
            (Command::Uninstall { drop_daily, yes }, Some(config)) => uninstall_cmd(&config, drop_daily, yes).await,
            (Command::Run { once, repair }, Some(config)) => run_cmd(&config, once, repair).await,
            (Command::Check, Some(config)) => check_cmd(&config).await,
            (Command::Recompute(args), Some(config)) => recompute::run(&config, args).await,
            (Command::Status { json }, Some(config)) => status::status(&config, json).await,
            (Command::RetryFailed(args), Some(config)) => status::retry_failed(&config, args).await,
            (Command::Seed(args), Some(config)) => seed::run(&config, args).await,
            (Command::Demo { users, days, keep }, Some(config)) => demo::run(config, users, days, keep).await,
            (_, None) => unreachable!("loaded above"),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<Usage>() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// Bad usage: an argument or setting that can never work (exit 2, as the
/// README says), as opposed to a failure of the command (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Usage(pub String);

/// Fails with [`Usage`] unless `ok`.
pub(crate) fn usage(ok: bool, message: impl FnOnce() -> String) -> anyhow::Result<()> {
    if ok { Ok(()) } else { Err(Usage(message()).into()) }
}

/// The plugin runtime for a command: the config's compile cache, and its
/// trusted keys (plugins must be signed by one of them to load) and revoked hashes.
pub(crate) fn runtime(config: &Config) -> anyhow::Result<Runtime> {
    let runtime = Runtime::new(config.plugins.cache_dir.clone())?;
    runtime.set_trust(config.plugins.trust());
    Ok(runtime)
}

/// A pool for a command; its sessions show as `runner-cli`, so `runner
/// status` counts only the aggregating runners' sessions.
pub(crate) async fn connect(config: &Config) -> anyhow::Result<deadpool_postgres::Pool> {
    connect_as(config, "runner-cli").await
}

async fn connect_as(config: &Config, application_name: &str) -> anyhow::Result<deadpool_postgres::Pool> {
    // A connection string that does not parse is bad usage, not an outage.
    pool::pg_config(&config.database.url).map_err(|e| Usage(format!("{e:#}")))?;
    let pool = pool::build(&config.database, application_name)?;
    pool::wait_until_reachable(&pool, &config.database.url, config.database.connect_attempts).await?;
    Ok(pool)
}

async fn migrate_cmd(config: &Config, reference_schema: bool) -> anyhow::Result<ExitCode> {
    let pool = connect(config).await?;
    let mut client = pool.get().await?;
    let changes = match migrate::migrate(&mut client, config, reference_schema).await {
        Ok(changes) => changes,
        // A job that cannot be prepared is the config's or the schema's problem.
        Err(e) if e.is::<migrate::Refused>() => return Err(Usage(format!("nothing was changed:\n{e}")).into()),
        Err(e) => return Err(e),
    };
    if changes.is_empty() {
        println!("schema is up to date");
    }
    for change in changes {
        println!("{change}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn uninstall_cmd(config: &Config, drop_daily: bool, yes: bool) -> anyhow::Result<ExitCode> {
    let pool = connect(config).await?;
    let mut client = pool.get().await?;
    if !yes {
        let steps = runner::db::uninstall::plan(&**client, config, drop_daily).await?;
        if steps.is_empty() {
            println!("nothing of the runner's is installed in {}", pool::describe(&config.database.url));
        } else {
            println!("would remove from {}:", pool::describe(&config.database.url));
            for (what, _) in steps {
                println!("  {what}");
            }
            println!("run again with --yes to remove them (stop every runner first)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let removed = runner::db::uninstall::uninstall(&mut client, config, drop_daily).await?;
    for what in &removed {
        println!("removed {what}");
    }
    if removed.is_empty() {
        println!("nothing of the runner's was installed");
    }
    Ok(ExitCode::SUCCESS)
}

async fn check_cmd(config: &Config) -> anyhow::Result<ExitCode> {
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    let pool = connect(config).await?;
    println!("database {} reachable", pool::describe(&config.database.url));
    let runtime = runtime(config)?;
    match pipeline::prepare(config, &pool, &runtime).await {
        Ok(jobs) => {
            let mut incomplete = false;
            for job in jobs {
                let state = job.current();
                match &state.live {
                    Some(live) => incomplete |= !check_job(&pool, &job.name, &state.config, live).await?,
                    None => println!("job {}: disabled", job.name),
                }
            }
            Ok(if incomplete { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Err(problems) => {
            for p in problems {
                println!("problem: {p}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What `check` says of one loaded job; whether its change capture is whole.
async fn check_job(
    pool: &deadpool_postgres::Pool,
    name: &str,
    cfg: &runner::config::Job,
    live: &pipeline::job::Live,
) -> anyhow::Result<bool> {
    let mut whole = true;
    println!("job {}: plugin {} matches {} -> {}", name, live.plugin.version, cfg.source, cfg.target);
    for line in &live.shape.reading {
        println!("  {line}");
    }
    if !live.plugin.settings.values.is_empty() {
        println!("  settings {}", live.plugin.settings.json());
    }
    let client = pool.get().await?;
    if let Some(warning) = runner::db::capture::missing_index(&**client, cfg).await? {
        println!("  warning: {warning}");
    }
    let (desc, version) = (&live.plugin.description, &live.plugin.version);
    for warning in runner::db::schema::unwritten_in(&**client, cfg, desc, version).await? {
        println!("  warning: {warning}");
    }
    let partitions = runner::db::partitions::of(&**client, cfg, &live.shape).await?;
    if !partitions.is_empty() {
        let names: Vec<String> = partitions.iter().map(|p| p.describe()).collect();
        println!("  change capture covers {} partition(s): {}", partitions.len(), names.join(", "));
    }
    for problem in runner::db::capture::trigger_problems(&**client, name, cfg).await? {
        whole = false;
        println!(
            "problem: job {}: {problem}: changes made meanwhile are not seen; run `runner migrate` \
                 as the table's owner",
            name
        );
    }
    if let Some(unknown) = runner::db::queue::unknown_zones(&**client, cfg, &live.shape).await?
        && unknown > 0
    {
        println!(
            "  {unknown} raw row(s) with an unknown zone (NULL, a name Postgres does not know, or an \
                 offset beyond ±18 h): grouped in the job's timezone, {}",
            cfg.timezone
        );
    }
    if let Some(unknown) = runner::db::user_zones::unknown(&**client, cfg).await?
        && unknown > 0
    {
        println!(
            "  {unknown} user zone entr(ies) with an unknown zone (NULL, or a name Postgres does \
                 not know): those users' rows are grouped in the job's timezone, {}",
            cfg.timezone
        );
    }
    let ungrouped = runner::db::queue::ungrouped(&**client, cfg, &live.shape).await?;
    if ungrouped > 0 {
        println!("  {ungrouped} raw row(s) belong to no group (NULL user or timestamp): they are never aggregated");
    }
    Ok(whole)
}

async fn run_cmd(config: &Config, once: bool, repair: bool) -> anyhow::Result<ExitCode> {
    let pool = connect_as(config, "runner").await?;
    let runtime = runtime(config)?;
    log_start_warnings(config);
    // What fails without a plugin fails before any is compiled.
    std::fs::read_dir(&config.plugins.dir)
        .map_err(|e| anyhow::anyhow!("cannot read the plugin folder {}: {e}", config.plugins.dir.display()))?;
    let bound = match once || config.http.listen.is_empty() {
        true => None,
        false => Some(runner::http::bind(config).await?),
    };
    let loading = Instant::now();
    // A daemon starts whatever one job's file is like; `--once` is strict.
    let on_refused = if once { pipeline::OnRefusedFile::Fail } else { pipeline::OnRefusedFile::RunLastGood };
    let daemon = Daemon::load(config, pool, runtime, on_refused).await?;
    tracing::info!(jobs = daemon.jobs.len(), elapsed = ?loading.elapsed(), "Plugins loaded and checked.");
    daemon.remember_live(config);
    let mode = if once { Mode::Once } else { Mode::Daemon };
    if mode == Mode::Daemon {
        let metrics = runner::telemetry::install()?;
        if let Some(bound) = bound {
            let at = daemon.serve(config, bound, metrics)?;
            match at.console {
                None => tracing::info!(address = %at.addr,
                    "HTTP endpoints listening: / (console) /health /ready /health/db-pool /metrics /plugins."),
                Some(console) => {
                    tracing::info!(address = %at.addr, "HTTP endpoints listening: /health /ready /health/db-pool /metrics /plugins.");
                    tracing::info!(address = %console, "Console listening: / and its actions (and the endpoints above).");
                }
            }
        }
        daemon.spawn_background(config);
    }
    let started = Instant::now();
    let reports = match daemon.run(config, mode, repair, wait_for_signal(), config.runner.shutdown_grace).await? {
        Ended::Reports(reports) => reports,
        Ended::Abandoned { cancelled } => {
            tracing::warn!(
                cancelled,
                "Grace period over: cancelled the queries in flight and abandoned the groups in hand; their keys stay queued."
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    daemon.pool.close();
    finished(&reports, started.elapsed(), once)
}

/// Says who may run: the trust settings, and the config's warnings.
fn log_start_warnings(config: &Config) {
    match &config.plugins.trusted {
        None => tracing::warn!(
            "Plugins are not verified: [plugins] trusted_keys is not set, so any file in the plugin folder runs."
        ),
        Some(keys) => {
            tracing::info!(keys = %keys.iter().map(|k| format!("{} ({})", k.id, k.name)).collect::<Vec<_>>().join(", "),
            "Plugins must be signed by a trusted key.")
        }
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
}

/// Logs each job's report; `--once` fails when database errors left rows pending.
fn finished(
    reports: &[(String, pipeline::Report)],
    elapsed: std::time::Duration,
    once: bool,
) -> anyhow::Result<ExitCode> {
    let mut unprocessed = false;
    for (job, r) in reports {
        tracing::info!(
            job = %job,
            groups_completed = r.groups_completed,
            groups_failed = r.groups_failed,
            rows_completed = r.rows_completed,
            rows_rejected = r.rows_rejected,
            db_errors = r.db_errors,
            elapsed = ?elapsed,
            "Job finished."
        );
        unprocessed |= r.db_errors > 0;
    }
    if once && unprocessed {
        let errors: Vec<_> =
            reports.iter().filter_map(|(j, r)| Some(format!("job {j}: {}", r.last_db_error.as_ref()?))).collect();
        eprintln!("error: rows were left pending by database errors:\n{}", errors.join("\n"));
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!("Stopped; every connection released.");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

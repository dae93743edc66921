//! The commands. Nothing in the library imports this module.
//!
//! Exit codes: 0 success; 1 the command failed (database unreachable,
//! plugin or schema problems, rows left unprocessed by database errors);
//! 2 bad usage or an invalid config file.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::sync::watch;

use runner::config::{self, Config};
use runner::db::{migrate, pool, throwaway::TempPostgres};
use runner::pipeline::{self, Mode, Report};
use runner::plugin::Runtime;

#[derive(Parser)]
#[command(
    version,
    about = "Aggregates raw health data in Postgres with WebAssembly plugins, one short transaction per user and day."
)]
struct Cli {
    /// The TOML config file. Relative paths inside it resolve against its folder.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH, value_name = "PATH")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update the schema: the reference tables, and the bookkeeping
    /// columns, indexes and notify trigger of every enabled job's raw table.
    ///
    /// Example: runner migrate --config config/runner.toml
    Migrate,
    /// Aggregate pending rows until stopped (SIGINT or SIGTERM finish the
    /// groups in hand, then exit 0).
    ///
    /// Example: DATABASE_URL=postgres://runner@db/health runner run
    Run {
        /// Drain every pending row that is due, then exit. Exits 1 if rows
        /// were left unprocessed for a reason other than a plugin's verdict.
        #[arg(long)]
        once: bool,
    },
    /// Check the config, the database, the schema and every enabled job's
    /// plugin against its tables; print every problem found.
    ///
    /// Example: runner check --config /etc/runner/runner.toml
    Check,
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("starting the async runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate => migrate_cmd(&config).await,
            Command::Run { once } => run_cmd(&config, once).await,
            Command::Check => check_cmd(&config).await,
            Command::Demo { users, days, keep } => demo_cmd(config, users, days, keep).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(config: &Config) -> anyhow::Result<deadpool_postgres::Pool> {
    let pool = pool::build(&config.database)?;
    pool::wait_until_reachable(&pool, &config.database.url, config.database.connect_attempts).await?;
    Ok(pool)
}

async fn migrate_cmd(config: &Config) -> anyhow::Result<ExitCode> {
    let pool = connect(config).await?;
    let mut client = pool.get().await?;
    let changes = migrate::migrate(&mut client, config).await?;
    if changes.is_empty() {
        println!("schema is up to date");
    }
    for change in changes {
        println!("{change}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn check_cmd(config: &Config) -> anyhow::Result<ExitCode> {
    let pool = connect(config).await?;
    println!("database {} reachable", pool::describe(&config.database.url));
    let runtime = Runtime::new()?;
    match pipeline::prepare(config, &pool, &runtime).await {
        Ok(jobs) => {
            for job in jobs {
                println!(
                    "job {}: plugin {} matches {} -> {}",
                    job.name, job.plugin.version, job.config.source, job.config.target
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in problems {
                println!("problem: {p}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn run_cmd(config: &Config, once: bool) -> anyhow::Result<ExitCode> {
    let pool = connect(config).await?;
    let runtime = Runtime::new()?;
    let jobs = pipeline::prepare(config, &pool, &runtime)
        .await
        .map_err(|problems| anyhow::anyhow!("cannot start:\n{}", problems.join("\n")))?;
    let mode = if once { Mode::Once } else { Mode::Daemon { poll_interval: config.runner.poll_interval } };
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutting down: finishing the groups in hand.");
        let _ = stop.send(true);
    });
    let started = Instant::now();
    let reports = pipeline::run(config, pool.clone(), jobs, mode, shutdown).await?;
    let elapsed = started.elapsed();
    let mut unprocessed = false;
    for (job, r) in &reports {
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
    pool.close();
    if once && unprocessed {
        let errors: Vec<_> =
            reports.iter().filter_map(|(j, r)| Some(format!("job {j}: {}", r.last_db_error.as_ref()?))).collect();
        eprintln!("error: rows were left pending by database errors:\n{}", errors.join("\n"));
        return Ok(ExitCode::FAILURE);
    }
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

async fn demo_cmd(mut config: Config, users: i32, days: i32, keep: bool) -> anyhow::Result<ExitCode> {
    println!("Starting a throwaway PostgreSQL...");
    let server = if keep { TempPostgres::start_detached()? } else { TempPostgres::start()? };
    {
        let (admin, conn) = tokio_postgres::connect(&server.url("postgres"), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        admin.batch_execute("CREATE DATABASE health").await?;
    }
    config.database.url = server.url("health");
    let pool = connect(&config).await?;
    let mut client = pool.get().await?;
    migrate::migrate(&mut client, &config).await?;
    let start = chrono::Utc::now().date_naive() - chrono::Days::new(days as u64);
    let seeded = Instant::now();
    let rows = runner::seed::vitals(&**client, users, days, start).await.context("seeding")?;
    println!("Seeded {rows} raw vitals rows ({users} users x {days} days) in {:.1?}.", seeded.elapsed());
    drop(client);

    let runtime = Runtime::new()?;
    let jobs = pipeline::prepare(&config, &pool, &runtime)
        .await
        .map_err(|problems| anyhow::anyhow!("cannot start:\n{}", problems.join("\n")))?;
    let (_stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let reports = pipeline::run(&config, pool.clone(), jobs, Mode::Once, shutdown).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!();
    println!(
        "{:<10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>10}",
        "job", "rows", "groups", "rejected", "failed", "seconds", "rows/s"
    );
    for (job, r) in &reports {
        print_report(job, r, elapsed);
    }
    let client = pool.get().await?;
    println!("\nSample of vitals_daily:");
    let sample = client
        .query(
            "SELECT user_id, day::text, metric, unit, sample_count, rejected_count,
                    round(min_value::numeric, 1)::text, round(max_value::numeric, 1)::text,
                    round(avg_value::numeric, 1)::text, plugin_version
             FROM vitals_daily ORDER BY user_id, day, metric LIMIT 7",
            &[],
        )
        .await?;
    println!(
        "{:>4} {:<10} {:<16} {:<11} {:>3} {:>3} {:>6} {:>6} {:>6}  plugin",
        "user", "day", "metric", "unit", "n", "rej", "min", "max", "avg"
    );
    for r in sample {
        let text = |i: usize| r.get::<_, Option<String>>(i).unwrap_or_else(|| "-".into());
        println!(
            "{:>4} {:<10} {:<16} {:<11} {:>3} {:>3} {:>6} {:>6} {:>6}  {}",
            r.get::<_, i64>(0),
            text(1),
            text(2),
            text(3),
            r.get::<_, i32>(4),
            r.get::<_, i32>(5),
            text(6),
            text(7),
            text(8),
            text(9)
        );
    }
    drop(client);
    pool.close();
    if keep {
        let url = server.url("health");
        let dir = server.keep();
        println!(
            "\nThe database is still running: psql {url}\nIts files are in {}; stop it with: kill $(head -1 {}/data/postmaster.pid)",
            dir.display(),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(job: &str, r: &Report, seconds: f64) {
    println!(
        "{job:<10} {:>10} {:>9} {:>9} {:>8} {:>9.2} {:>10.0}",
        r.rows_completed,
        r.groups_completed,
        r.rows_rejected,
        r.groups_failed,
        seconds,
        r.rows_completed as f64 / seconds.max(1e-9)
    );
}

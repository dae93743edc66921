//! `cargo xtask bench`: on a throwaway Postgres, seeds time-ordered raw
//! vitals rows once, then runs on identical copies of them: the set-based
//! SQL reference, the runner with the WebAssembly plugin, the runner with
//! the same logic compiled in, and an API read load with the runner idle
//! and busy. Prints figures and the ratios between them. See
//! docs/performance.md.

mod console;
mod freshness;
mod history;
mod ingest;
mod languages;
mod messy;
mod models;
mod native;
mod reads;
mod replay;
mod setbased;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::Parser;
use tokio_postgres::{Client, NoTls};

use runner::config::Config;
use runner::daemon::{Daemon, Ended};
use runner::db::seed::{self, Kind};
use runner::db::{migrate, pool, throwaway::TempPostgres};
use runner::pipeline::{JobState, Mode, OnRefusedFile};
use runner::plugin::Runtime;

#[derive(Parser)]
#[command(about = "Benchmarks the runner against the set-based SQL reference and a native build.")]
struct Args {
    /// Users (each with `days` × 34 readings).
    #[arg(long, default_value_t = 1000)]
    users: i32,
    #[arg(long, default_value_t = 30)]
    days: i32,
    /// The runner's `[database] max_connections`.
    #[arg(long, default_value_t = 4)]
    max_connections: usize,
    /// The job's `workers`.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// The job's `batch_size`.
    #[arg(long, default_value_t = 200)]
    batch_size: i64,
    /// Concurrent API readers.
    #[arg(long, default_value_t = 16)]
    readers: usize,
    /// Seconds of the idle read load.
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
    /// Runs of each variant (set-based, WebAssembly, native), each on a
    /// fresh copy: the figures are reported as min / median / max, so that
    /// a slow mode shows instead of hiding in one lucky run.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Rows a second for the freshness runs (live ingest beside the runner).
    #[arg(long, default_value_t = 2000)]
    ingest_rate: u32,
    /// Seconds of each freshness run (0: none).
    #[arg(long, default_value_t = 10)]
    ingest_seconds: u64,
    /// A durable server: fsync and full_page_writes on (the default server
    /// trades durability for speed, as a test server may).
    #[arg(long)]
    durable: bool,
    /// `synchronous_commit` of the server and of the runner's sessions
    /// (`[database] synchronous_commit`): with `--durable`, what an operator
    /// chooses between (on: each group's commit waits for its WAL flush).
    #[arg(long, default_value = "off", value_parser = ["on", "off"])]
    synchronous_commit: String,
    /// Completed raw rows already in the table before the pending ones
    /// (history: older days of other users), to show the cost per row
    /// stays flat as the table grows.
    #[arg(long, default_value_t = 0)]
    history: i64,
    /// The shape of the seeded rows: `ordered` (34 readings per user and
    /// day, in time order across users) or `messy` (uneven groups from 1
    /// to ~130 rows, arriving as shuffled device syncs; see `messy.rs`).
    #[arg(long, default_value = "ordered", value_parser = ["ordered", "messy"])]
    data: String,
    /// Take `max_connections`, `workers` and `batch_size` from the shipped
    /// `config/runner.toml` (its `vitals` job) instead of the flags.
    #[arg(long)]
    shipped: bool,
    /// HTTP clients reloading the console and scraping `/metrics` in a loop
    /// during one more runner run (0: none), to show what operators
    /// watching cost the pipeline.
    #[arg(long, default_value_t = 8)]
    console_clients: usize,
    /// Measure only the plugin call per language (no database), the
    /// figures of docs/performance.md "Per-language cost of a group".
    #[arg(long)]
    languages: bool,
    /// Measure only the group models (local-day capture on ingest, a
    /// 7-day window's cost per group): docs/performance.md, round 9.
    #[arg(long)]
    group_models: bool,
    /// Measure only the freshness under live ingest (`--runs` pairs of
    /// one-row groups alone and beside a big day).
    #[arg(long)]
    freshness: bool,
    /// The folder holding vitals.wasm (`cargo xtask build-plugins`).
    #[arg(long, default_value = "target/plugins")]
    plugins: PathBuf,
}

const START: (i32, u32, u32) = (2024, 1, 1);

pub(crate) async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn config(url: &str, args: &Args, dir: &Path) -> anyhow::Result<Config> {
    Ok(Config::parse(&config_text(url, args, dir)?, &dir.join("bench.toml"))?)
}

/// The bench's config with the weekly rollup of its daily rows beside it.
fn chain_config(url: &str, args: &Args, dir: &Path) -> anyhow::Result<Config> {
    let weekly = "\n[jobs.vitals_weekly]\nplugin = \"vitals_weekly.wasm\"\nsource = \"vitals_daily\"\n\
                  target = \"vitals_weekly\"\ntimestamp_column = \"day\"\nperiod = \"week\"\n\
                  target_day_column = \"week\"\nworkers = 1\n";
    Ok(Config::parse(&(config_text(url, args, dir)? + weekly), &dir.join("bench.toml"))?)
}

/// The bench's config file: one `vitals` job with the flags' sizes.
fn config_text(url: &str, args: &Args, dir: &Path) -> anyhow::Result<String> {
    Ok(format!(
        "[database]\nurl = \"{url}\"\nmax_connections = {}\nsynchronous_commit = {}\n\n[plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\n\n\
         [jobs.vitals]\nplugin = \"vitals.wasm\"\nsource = \"vitals_raw\"\ntarget = \"vitals_daily\"\n\
         timestamp_column = \"recorded_at\"\nworkers = {}\nbatch_size = {}\n",
        args.max_connections,
        args.synchronous_commit == "on",
        args.plugins.canonicalize().context("the plugin folder (run `cargo xtask build-plugins`)")?.display(),
        dir.join("cache").display(),
        args.workers,
        args.batch_size,
    ))
}

/// Freshness under live ingest (`freshness`): device syncs, one-row groups
/// alone and beside a big day, and a chain to the weekly row.
async fn report_freshness(admin: &Client, pg: &TempPostgres, args: &Args, work: &Path) -> anyhow::Result<()> {
    println!();
    println!(
        "freshness under live ingest at {} rows/s for {} s (raw row written -> its daily row written)",
        args.ingest_rate, args.ingest_seconds
    );
    let url = pg.url("bench_fresh");
    copy(admin, "bench_fresh").await?;
    let load = (args.ingest_rate, 20, args.ingest_seconds);
    let f = freshness::run(&config(&url, args, work)?, &url, load, "vitals_daily", false).await?;
    print_freshness("device syncs, 20 rows a commit", &f);
    // One-row groups alone, then beside a user whose day is 80,000 rows
    // and grows every second (a slow group must not hold the others),
    // pair by pair so that the machine's moods touch both.
    let mut ratios = Vec::new();
    for _ in 0..args.runs.max(1) {
        let load = (args.ingest_rate, 1, args.ingest_seconds);
        copy(admin, "bench_fresh").await?;
        let alone = freshness::run(&config(&url, args, work)?, &url, load, "vitals_daily", false).await?;
        print_freshness("one-row groups", &alone);
        copy(admin, "bench_fresh").await?;
        let beside = freshness::run(&config(&url, args, work)?, &url, load, "vitals_daily", true).await?;
        print_freshness("one-row groups beside a big day", &beside);
        if let Some((median, max)) = beside.big_day {
            println!("  {:<32} the big day's own row behind its syncs: median {median:.2} s, max {max:.2} s", "");
        }
        ratios.push(beside.p95 / alone.p95);
    }
    let (min, median, max) = spread(ratios);
    println!("  {:<32} p95 beside ÷ alone: {min:.2} / {median:.2} / {max:.2} (min / median / max)", "");
    // A chain: raw -> daily (vitals) -> weekly (vitals_weekly, reading
    // vitals_daily), the weekly row's write against the raw row's.
    copy(admin, "bench_fresh").await?;
    let chain = chain_config(&url, args, work)?;
    {
        let pool = pool::build(&chain.database, "bench")?;
        let mut client = pool.get().await?;
        migrate::migrate(&mut client, &chain, true).await?;
        pool.close();
    }
    let load = (args.ingest_rate, 20, args.ingest_seconds);
    let f = freshness::run(&chain, &url, load, "vitals_weekly", false).await?;
    print_freshness("a chain to the weekly row, syncs", &f);
    Ok(())
}

/// Min, median and max of a run's figures.
pub(crate) fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn print_freshness(shape: &str, f: &freshness::Freshness) {
    println!(
        "  {shape:<32} {:>7} rows   p50 {:>8.1} ms   p95 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms",
        f.rows,
        f.p50 * 1e3,
        f.p95 * 1e3,
        f.p99 * 1e3,
        f.max * 1e3
    );
}

/// The day of a `vitals_raw` row (unqualified) as the bench's job counts it.
fn vitals_day(config: &Config) -> String {
    let shape = runner::db::schema::SourceShape {
        naive_zone: None,
        dated: false,
        has_id: true,
        zone: None,
        reading: Vec::new(),
    };
    runner::db::day::Day::new(&config.jobs["vitals"], &shape).of("")
}

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// CPU seconds (user + system) of the processes `/proc/<pid>/stat` lists
/// whose command is `comm`, or of this process for `None`.
fn cpu_seconds(comm: Option<&str>) -> f64 {
    let ticks = |stat: &str| -> Option<f64> {
        // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
    };
    let hz = 100.0; // USER_HZ on Linux
    match comm {
        None => std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(ticks).unwrap_or(0.0) / hz,
        Some(comm) => {
            let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
            dir.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|stat| stat.contains(&format!("({comm})")))
                .filter_map(|stat| ticks(&stat))
                .sum::<f64>()
                / hz
        }
    }
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(crate) struct RunnerRun {
    seconds: f64,
    rows: u64,
    groups: u64,
    p50: Duration,
    p99: Duration,
    max_connections_seen: i64,
    peak_rss_mib: f64,
    batches: u64,
    backoffs: u64,
    /// CPU seconds used by this process (the runner) and by Postgres.
    runner_cpu: f64,
    postgres_cpu: f64,
    /// The most callers seen waiting for a pooled connection at once.
    max_waiting: usize,
    /// Console and `/metrics` requests answered during the run.
    console_requests: u64,
    /// The longest group-commit transaction.
    longest_transaction: Duration,
    /// Transactions by the groups they carried.
    transaction_sizes: std::collections::BTreeMap<usize, u64>,
    /// Time spent on purity checks: the probe at load and the checks while
    /// running (`verify_every`).
    purity_seconds: f64,
}

/// Runs the runner in this process until every row is done; with
/// `console_clients`, its HTTP endpoints too, reloaded by that many clients.
async fn run_runner(config: &Config, native: bool, db: &str, console_clients: usize) -> anyhow::Result<RunnerRun> {
    let pool = pool::build(&config.database, "runner")?;
    let runtime = Runtime::new(config.plugins.cache_dir.clone())?;
    let purity0 = runner::plugin::purity::time_spent();
    let daemon = Daemon::load(config, pool.clone(), runtime, OnRefusedFile::Fail).await?;
    if native {
        let plugin = Arc::new(native::vitals());
        let job = &daemon.jobs[0];
        job.update(|s| JobState { live: s.live.as_ref().map(|l| l.with_plugin(&s.config, plugin)), ..s.clone() });
    }
    // Sample the runner's sessions as Postgres sees them.
    let sampler = connect(&config.database.url).await?;
    let seen = Arc::new(AtomicI64::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = {
        let (seen, waiting, stop, db, pool) =
            (seen.clone(), waiting.clone(), stop.clone(), db.to_string(), pool.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                waiting.fetch_max(pool.status().waiting, Ordering::Relaxed);
                let n: i64 = sampler
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runner' AND datname = $1",
                        &[&db],
                    )
                    .await
                    .map_or(0, |r| r.get(0));
                seen.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    reset_peak_rss();
    let load = if console_clients > 0 {
        static METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
        let metrics = match METRICS.get() {
            Some(m) => m.clone(),
            None => METRICS.get_or_init(|| runner::telemetry::install().expect("one recorder")).clone(),
        };
        let mut config = config.clone();
        config.http.listen = "127.0.0.1:0".into();
        let bound = runner::http::bind(&config).await?;
        let addr = daemon.serve(&config, bound, metrics)?.addr;
        Some(console::start(addr, console_clients))
    } else {
        None
    };
    let (cpu0, pg0) = (cpu_seconds(None), cpu_seconds(Some("postgres")));
    let started = Instant::now();
    let Ended::Reports(reports) = daemon.run(config, Mode::Once, false, std::future::pending(), Duration::ZERO).await?
    else {
        anyhow::bail!("the run was abandoned");
    };
    let seconds = started.elapsed().as_secs_f64();
    let (runner_cpu, postgres_cpu) = (cpu_seconds(None) - cpu0, cpu_seconds(Some("postgres")) - pg0);
    let console_requests = match load {
        Some(load) => load.stop().await,
        None => 0,
    };
    stop.store(true, Ordering::Relaxed);
    sampling.await?;
    pool.close();
    let (_, r) = &reports[0];
    anyhow::ensure!(r.groups_failed == 0 && r.db_errors == 0, "the run had failures: {r:?}");
    Ok(RunnerRun {
        seconds,
        rows: r.rows_completed,
        groups: r.groups_completed,
        p50: r.group_latency.quantile(0.5),
        p99: r.group_latency.quantile(0.99),
        max_connections_seen: seen.load(Ordering::Relaxed),
        peak_rss_mib: peak_rss_mib(),
        batches: r.batches,
        backoffs: r.backoffs,
        runner_cpu,
        postgres_cpu,
        max_waiting: waiting.load(Ordering::Relaxed),
        console_requests,
        longest_transaction: r.longest_transaction,
        transaction_sizes: r.transaction_sizes.clone(),
        purity_seconds: (runner::plugin::purity::time_spent() - purity0).as_secs_f64(),
    })
}

/// A fresh copy of the seeded database.
/// A fresh copy of the seeded database (replacing an earlier run's).
async fn copy(admin: &Client, name: &str) -> anyhow::Result<()> {
    for sql in
        [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name} TEMPLATE bench_seed")]
    {
        admin.batch_execute(&sql).await.map_err(|e| {
            anyhow::anyhow!("copying the seeded database to {name}: {}", runner::db::describe_error(&e))
        })?;
    }
    Ok(())
}

/// Each daily row as text, values rounded to 6 decimals (sums in another
/// order may differ in the last bits).
const DAILY: &str = "SELECT concat_ws(',', user_id, day, metric, unit, sample_count, rejected_count,
    round(min_value::numeric, 6), round(max_value::numeric, 6), round(avg_value::numeric, 6), round(last_value::numeric, 6))
    FROM vitals_daily ORDER BY user_id, day, metric";

async fn daily_rows(url: &str) -> anyhow::Result<Vec<String>> {
    let client = connect(url).await?;
    Ok(client.query(DAILY, &[]).await?.iter().map(|r| r.get(0)).collect())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// With `--shipped`: the pool and job settings of the shipped
/// `config/runner.toml` replace the flags.
fn apply_shipped(args: &mut Args) -> anyhow::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/runner.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let shipped = Config::parse(&text, &path)?;
    let job = shipped.jobs.get("vitals").context("config/runner.toml has no vitals job")?;
    (args.max_connections, args.workers, args.batch_size) =
        (shipped.database.max_connections, job.workers, job.batch_size);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.shipped {
        apply_shipped(&mut args)?;
    }
    if args.languages {
        report_languages(&args.plugins);
        return Ok(());
    }
    let work = tempfile_dir()?;
    let pg = if args.durable {
        println!("Starting a throwaway PostgreSQL (jit = off; durable: fsync on, full_page_writes on)...");
        TempPostgres::start_durable()?
    } else {
        println!("Starting a throwaway PostgreSQL (jit = off; fsync off)...");
        TempPostgres::start()?
    };
    let admin = connect(&pg.url("postgres")).await?;
    admin.batch_execute(&format!("ALTER SYSTEM SET synchronous_commit = {}", args.synchronous_commit)).await?;
    admin.batch_execute("SELECT pg_reload_conf()").await?;
    admin.batch_execute("CREATE DATABASE bench_seed").await?;

    let seed_url = pg.url("bench_seed");
    let cfg = config(&seed_url, &args, &work)?;
    let day = vitals_day(&cfg);
    {
        let pool = pool::build(&cfg.database, "bench")?;
        let mut client = pool.get().await?;
        migrate::migrate(&mut client, &cfg, true).await?;
        let started = Instant::now();
        let start = NaiveDate::from_ymd_opt(START.0, START.1, START.2).expect("valid date");
        let rows = seed::seed(&**client, Kind::Vitals, args.users, args.days, start, |_| {}).await?;
        // Seeding and vacuuming a large table outlast the runner's statement timeout.
        client.batch_execute("SET statement_timeout = 0").await?;
        if args.data == "messy" {
            client.batch_execute(messy::RESHAPE).await?;
        }
        if args.history > 0 {
            let started = Instant::now();
            client.batch_execute(&history::insert(args.history, args.users)).await?;
            println!("Added {} completed history rows in {:.1?}.", args.history, started.elapsed());
        }
        // Hint bits and statistics settled once, so every copy starts equal.
        client.batch_execute("VACUUM (ANALYZE) vitals_raw").await?;
        if args.data == "messy" {
            let shape = client
                .query_one(
                    "SELECT (SELECT count(*) FROM vitals_raw), (SELECT count(DISTINCT (user_id, day)) FROM runner_changes)",
                    &[],
                )
                .await?;
            let sizes = client
                .query_one(
                    &format!(
                        "SELECT min(n), percentile_disc(0.5) WITHIN GROUP (ORDER BY n), max(n)
                         FROM (SELECT count(*) n FROM vitals_raw GROUP BY user_id, {day}) g"
                    ),
                    &[],
                )
                .await?;
            println!(
                "Seeded {} raw vitals rows in {} groups ({} users x {} days, messy: rows per group min {} / median {} / max {}, \
                 arriving as shuffled device syncs), in {:.1?}.",
                shape.get::<_, i64>(0),
                shape.get::<_, i64>(1),
                args.users,
                args.days,
                sizes.get::<_, i64>(0),
                sizes.get::<_, i64>(1),
                sizes.get::<_, i64>(2),
                started.elapsed()
            );
        } else {
            println!(
                "Seeded {rows} raw vitals rows ({} users x {} days x 34), in time order across users, in {:.1?}.",
                args.users,
                args.days,
                started.elapsed()
            );
        }
        pool.close();
    }

    if args.freshness {
        return report_freshness(&admin, &pg, &args, &work).await;
    }
    if args.group_models {
        return models::run(
            &admin,
            |db| pg.url(db),
            |url| config(url, &args, &work),
            args.runs,
            args.idle_seconds.max(1) as f64,
        )
        .await;
    }

    // 1.–3. The set-based reference and the runner (WebAssembly, native),
    // interleaved run by run so that the machine's moods touch all three.
    let (mut set_runs, mut wasm_runs, mut native_runs, mut replay_runs, mut fresh_runs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut commit_replay_runs = Vec::new();
    let (set_url, wasm_url, native_url) = (pg.url("bench_set"), pg.url("bench_wasm"), pg.url("bench_native"));
    let replay_url = pg.url("bench_replay");
    let mut set_pg_cpu = 0.0;
    for run in 1..=args.runs.max(1) {
        copy(&admin, "bench_set").await?;
        let client = connect(&set_url).await?;
        let pg0 = cpu_seconds(Some("postgres"));
        let started = Instant::now();
        client.batch_execute(&setbased::aggregate(&day)).await?;
        set_runs.push(started.elapsed().as_secs_f64());
        set_pg_cpu = cpu_seconds(Some("postgres")) - pg0;
        drop(client);
        copy(&admin, "bench_wasm").await?;
        wasm_runs.push(run_runner(&config(&wasm_url, &args, &work)?, false, "bench_wasm", 0).await?);
        copy(&admin, "bench_native").await?;
        native_runs.push(run_runner(&config(&native_url, &args, &work)?, true, "bench_native", 0).await?);
        // The same with a fresh instance for every group.
        copy(&admin, "bench_wasm_fresh").await?;
        let mut fresh_config = config(&pg.url("bench_wasm_fresh"), &args, &work)?;
        if let Some(job) = fresh_config.jobs.get_mut("vitals") {
            job.reuse_instance = false;
        }
        fresh_runs.push(run_runner(&fresh_config, false, "bench_wasm_fresh", 0).await?.seconds);
        copy(&admin, "bench_replay").await?;
        replay_runs.push(replay::run(&config(&replay_url, &args, &work)?, args.workers, 1).await?);
        copy(&admin, "bench_replay").await?;
        // The ceiling: always the full number of groups a transaction, no budget.
        let mut replay_config = config(&replay_url, &args, &work)?;
        if let Some(job) = replay_config.jobs.get_mut("vitals") {
            job.transaction_budget = Duration::from_secs(3600);
        }
        let per_transaction = replay_config.jobs["vitals"].groups_per_transaction;
        commit_replay_runs.push(replay::run(&replay_config, args.workers, per_transaction).await?);
        println!(
            "run {run}: set-based {:.2} s, runner (WebAssembly) {:.2} s, runner (native) {:.2} s, \
             runner (WebAssembly, a fresh instance per group) {:.2} s, replay {:.2} s, group-commit replay {:.2} s",
            set_runs[run - 1],
            wasm_runs[run - 1].seconds,
            native_runs[run - 1].seconds,
            fresh_runs[run - 1],
            replay_runs[run - 1],
            commit_replay_runs[run - 1]
        );
    }
    let median_run = |runs: &mut Vec<RunnerRun>| {
        runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        runs.swap_remove(runs.len() / 2)
    };
    let ratio_runs = |a: &[f64], b: &[f64]| spread(a.iter().zip(b).map(|(a, b)| a / b).collect());
    let wasm_secs: Vec<f64> = wasm_runs.iter().map(|r| r.seconds).collect();
    let native_secs: Vec<f64> = native_runs.iter().map(|r| r.seconds).collect();
    let set_vs_wasm = ratio_runs(&set_runs, &wasm_secs);
    let native_vs_wasm = ratio_runs(&native_secs, &wasm_secs);
    let native_vs_fresh = ratio_runs(&native_secs, &fresh_runs);
    let set_vs_fresh = ratio_runs(&set_runs, &fresh_runs);
    let fresh_vs_wasm = ratio_runs(&fresh_runs, &wasm_secs);
    let purity_share = spread(wasm_runs.iter().map(|r| r.purity_seconds / r.runner_cpu.max(1e-9)).collect());
    let fresh_spread = spread(fresh_runs.clone());
    let replay_vs_wasm = ratio_runs(&replay_runs, &wasm_secs);
    let commit_replay_vs_wasm = ratio_runs(&commit_replay_runs, &wasm_secs);
    let commit_replay_spread = spread(commit_replay_runs.clone());
    let replay_spread = spread(replay_runs.clone());
    let (set_min, set_secs, set_max) = spread(set_runs.clone());
    let wasm_spread = spread(wasm_secs.clone());
    let native_spread = spread(native_secs.clone());
    let wasm = median_run(&mut wasm_runs);
    let native = median_run(&mut native_runs);

    let reference = daily_rows(&set_url).await?;
    let same = reference == daily_rows(&wasm_url).await? && reference == daily_rows(&native_url).await?;

    // 4. API latency: idle (the aggregated copy, no runner), then while a runner aggregates a fresh copy.
    let stop = Arc::new(AtomicBool::new(false));
    let idle = tokio::spawn(reads::run_owned(wasm_url.clone(), args.readers, args.users, args.days, stop.clone()));
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let idle = idle.await??;
    copy(&admin, "bench_busy").await?;
    let busy_url = pg.url("bench_busy");
    let stop = Arc::new(AtomicBool::new(false));
    let busy_reads =
        tokio::spawn(reads::run_owned(busy_url.clone(), args.readers, args.users, args.days, stop.clone()));
    let busy = run_runner(&config(&busy_url, &args, &work)?, false, "bench_busy", 0).await?;
    stop.store(true, Ordering::Relaxed);
    let busy_reads = busy_reads.await??;

    // 5. Ingest with change capture ÷ without, on a copy (its rows go to users of their own).
    copy(&admin, "bench_ingest").await?;
    let (with_capture, without) = ingest::measure(&pg.url("bench_ingest"), args.idle_seconds.max(1) as f64).await?;

    // 6. Operators watching: the console and /metrics reloaded in a loop
    // while the runner drains a fresh copy.
    let watched = if args.console_clients > 0 {
        copy(&admin, "bench_console").await?;
        let url = pg.url("bench_console");
        Some(run_runner(&config(&url, &args, &work)?, false, "bench_console", args.console_clients).await?)
    } else {
        None
    };

    let rows = wasm.rows as f64;
    println!();
    println!(
        "{} raw rows, {} groups; runner: max_connections {}, workers {}, batch_size {}",
        wasm.rows, wasm.groups, args.max_connections, args.workers, args.batch_size
    );
    println!(
        "{:<28} {:>8} {:>9} {:>9} {:>10} {:>10} {:>6} {:>9} {:>8} {:>8}",
        "", "seconds", "rows/s", "groups/s", "p50 group", "p99 group", "conns", "peak RSS", "cpu run", "cpu pg"
    );
    println!(
        "{:<28} {:>8.2} {:>9.0} {:>9} {:>10} {:>10} {:>6} {:>9} {:>8} {:>8.1}",
        "set-based SQL",
        set_secs,
        rows / set_secs,
        "",
        "",
        "",
        "",
        "",
        "",
        set_pg_cpu
    );
    for (name, r) in
        [("runner, WebAssembly", &wasm), ("runner, native", &native), ("runner, WebAssembly + reads", &busy)]
    {
        println!(
            "{name:<28} {:>8.2} {:>9.0} {:>9.0} {:>10} {:>10} {:>6} {:>5.0} MiB {:>8.1} {:>8.1}",
            r.seconds,
            r.rows as f64 / r.seconds,
            r.groups as f64 / r.seconds,
            ms(r.p50),
            ms(r.p99),
            r.max_connections_seen,
            r.peak_rss_mib,
            r.runner_cpu,
            r.postgres_cpu
        );
    }
    println!();
    println!("{:<24} {:>9} {:>10} {:>10} {:>10} {:>9}", "API reads", "reads", "p50", "p99", "max", "timeouts");
    for (name, r) in [("runner idle", &idle), ("runner aggregating", &busy_reads)] {
        println!(
            "{name:<24} {:>9} {:>10} {:>10} {:>10} {:>9}",
            r.latency.count(),
            ms(r.latency.quantile(0.5)),
            ms(r.latency.quantile(0.99)),
            ms(r.latency.max()),
            r.timeouts + r.errors
        );
    }
    println!(
        "backpressure: {} of {} batches backed off alone, {} of {} beside the read load",
        wasm.backoffs, wasm.batches, busy.backoffs, busy.batches
    );
    println!(
        "transactions (median run): longest {}; groups a transaction: {}",
        ms(wasm.longest_transaction),
        wasm.transaction_sizes.iter().map(|(size, n)| format!("{size}×{n}")).collect::<Vec<_>>().join(" ")
    );
    println!();
    println!("spread over {} runs (min / median / max seconds)", set_runs.len());
    for (name, (lo, mid, hi)) in [
        ("set-based SQL", (set_min, set_secs, set_max)),
        ("runner, WebAssembly", wasm_spread),
        ("runner, native", native_spread),
        ("runner, fresh instances", fresh_spread),
        ("replay, one group a transaction", replay_spread),
        ("replay, group commit", commit_replay_spread),
    ] {
        println!("  {name:<28} {lo:>7.2} {mid:>7.2} {hi:>7.2}");
    }
    println!();
    println!("ratios, each from one run (min / median / max over the runs)");
    let (lo, mid, hi) = set_vs_wasm;
    println!("  runner ÷ set-based (speed, ≥ 1 is faster): {lo:.2} / {mid:.2} / {hi:.2}");
    let (lo, mid, hi) = native_vs_wasm;
    println!("  WebAssembly ÷ native (speed):              {lo:.2} / {mid:.2} / {hi:.2}");
    let (lo, mid, hi) = fresh_vs_wasm;
    println!("  reuse_instance true ÷ false (speed):       {lo:.2} / {mid:.2} / {hi:.2}");
    let (lo, mid, hi) = set_vs_fresh;
    println!("  runner ÷ set-based, reuse_instance false:  {lo:.2} / {mid:.2} / {hi:.2}");
    let (lo, mid, hi) = native_vs_fresh;
    println!("  WebAssembly ÷ native, reuse_instance false: {lo:.2} / {mid:.2} / {hi:.2}");
    let (lo, mid, hi) = purity_share;
    println!(
        "  purity checks ÷ the drain's runner CPU:    {:.2} % / {:.2} % / {:.2} % (probe at load and verify_every)",
        lo * 100.0,
        mid * 100.0,
        hi * 100.0
    );
    let (lo, mid, hi) = replay_vs_wasm;
    println!("  runner ÷ replay, one group a transaction:  {lo:.2} / {mid:.2} / {hi:.2}");
    let (lo, mid, hi) = commit_replay_vs_wasm;
    println!("  runner ÷ replay, group commit:             {lo:.2} / {mid:.2} / {hi:.2}");
    println!(
        "  runner seconds per million rows:           {:.2} (history: {} completed rows)",
        wasm.seconds / rows * 1e6,
        args.history
    );
    println!(
        "  read p99 busy ÷ idle:                      {:.2}",
        busy_reads.latency.quantile(0.99).as_secs_f64() / idle.latency.quantile(0.99).as_secs_f64()
    );
    println!(
        "  connections held ≤ cap ({}):               {}",
        args.max_connections,
        wasm.max_connections_seen.max(busy.max_connections_seen) <= args.max_connections as i64
    );
    println!("  daily rows identical across the three:     {same}");
    println!(
        "  ingest with change capture ÷ without:       {:.2} ({:.0} vs {:.0} rows/s, syncs of 20 rows, 4 producers)",
        with_capture / without,
        with_capture,
        without
    );
    if let Some(w) = &watched {
        println!(
            "  drain with {} console clients ÷ quiet:      {:.2} ({} requests answered; pool waiters at most {} vs {} quiet)",
            args.console_clients,
            w.seconds / wasm.seconds,
            w.console_requests,
            w.max_waiting,
            wasm.max_waiting
        );
    }
    if args.ingest_seconds > 0 {
        report_freshness(&admin, &pg, &args, &work).await?;
    }
    println!();
    report_languages(&args.plugins);
    drop(pg);
    let _ = std::fs::remove_dir_all(&work);
    anyhow::ensure!(same, "the runner's daily rows differ from the set-based reference");
    Ok(())
}

/// The plugin call per group and per row of each language's vitals
/// component, and its ratio to Rust's: first as the runner calls it with
/// the shipped settings, then with a fresh instance per group.
fn report_languages(plugins: &Path) {
    let shipped = languages::shipped();
    println!(
        "plugin call by language (the best of 5 turns' medians, {} calls in all; a group is one day of {} readings)",
        languages::CALLS,
        languages::ROWS
    );
    println!(
        "  (slots reset in place with PAGEMAP_SCAN: {})",
        if runner::plugin::engine::resets_in_place() { "yes" } else { "no, by madvise" }
    );
    let measured = languages::measure(plugins);
    let rust = measured.first().and_then(|(_, cost)| *cost);
    let (reuse, every, n) = (shipped.reuse.on, shipped.reuse.verify_every, shipped.groups_per_transaction);
    println!(
        "  as the runner calls it, shipped settings (reuse_instance = {reuse}, verify_every = {every}, {n} groups a transaction):"
    );
    let line = |language: &str, pick: fn(&languages::Cost) -> f64, c: &languages::Cost, r: &languages::Cost| {
        println!("  {language:<13} group {:>7.1} µs (× {:>4.1} of Rust)", pick(c) * 1e6, pick(c) / pick(r));
    };
    for (language, cost) in &measured {
        match (cost, rust) {
            (Some(c), Some(r)) => line(language, |c| c.shipped, c, &r),
            _ => println!("  {language:<13} not built (cargo xtask build-plugins)"),
        }
    }
    println!("  with reuse_instance = false (a fresh instance per group):");
    for (language, cost) in &measured {
        if let (Some(c), Some(r)) = (cost, rust) {
            line(language, |c| c.fresh, c, &r);
        }
    }
    println!("  a call's fixed cost (a one-row group on an instance that served it before):");
    for (language, cost) in &measured {
        if let (Some(c), Some(r)) = (cost, rust) {
            line(language, |c| c.one_row_reused, c, &r);
        }
    }
    println!("  per row (the full group less its first row alone, on one instance):");
    for (language, cost) in &measured {
        if let (Some(c), Some(r)) = (cost, rust) {
            println!(
                "  {language:<13} row {:>7.2} µs (× {:>4.1} of Rust)",
                c.per_row() * 1e6,
                c.per_row() / r.per_row()
            );
        }
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("runner-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

//! `runner plugin diff`: the command around `pipeline::diff`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{NaiveDate, Utc};

use runner::config::Config;
use runner::pipeline::{self, diff, job::Live};
use runner::plugin::{Plugin, Runtime};

use crate::cli::{Usage, connect, usage};

#[derive(clap::Args)]
pub struct Args {
    /// The new component.
    file: PathBuf,
    /// The job whose live plugin and tables to compare against.
    #[arg(long)]
    job: String,
    /// The last N days up to today, in the job's time zone (default 7).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    days: Option<u32>,
    /// First day (YYYY-MM-DD); with --to.
    #[arg(long, requires = "to")]
    from: Option<NaiveDate>,
    /// Last day, inclusive; with --from.
    #[arg(long, requires = "from")]
    to: Option<NaiveDate>,
    /// At most this many groups (user-days), spread over the range.
    #[arg(long, default_value_t = 500)]
    sample: i64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Exit 1 when anything differs.
    #[arg(long)]
    fail_on_diff: bool,
}

pub async fn run(args: Args, config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path).map_err(|e| Usage(e.to_string()))?;
    let cfg = config
        .jobs
        .get(&args.job)
        .ok_or_else(|| Usage(format!("there is no job `{}` in {}", args.job, config_path.display())))?
        .clone();
    usage(args.sample > 0, || "--sample must be above 0".into())?;
    let (from, to) = match (args.from, args.to, args.days) {
        (Some(from), Some(to), _) => {
            usage(from <= to, || format!("--from {from} is after --to {to}"))?;
            (from, to)
        }
        (_, _, days) => {
            let days = days.unwrap_or(7);
            usage(days > 0, || "--days must be above 0".into())?;
            let today = Utc::now().date_naive();
            (today - chrono::Days::new(u64::from(days) - 1), today)
        }
    };
    let pool = connect(&config).await?;
    let runtime = crate::cli::runtime(&config)?;
    let job = pipeline::prepare_job(&config, &pool, &runtime, &args.job)
        .await
        .map_err(|problems| anyhow::anyhow!("the live plugin cannot load:\n{}", problems.join("\n")))?;
    let live = job.current().live.clone().ok_or_else(|| anyhow::anyhow!("job {} has no live plugin", args.job))?;
    // The new file is not deployed yet: it need not be signed.
    let limits = pipeline::job_limits(&cfg);
    let plugin = Plugin::load(&Runtime::new(config.plugins.cache_dir.clone())?, &args.file, limits)?;
    let shape = match pipeline::configure(&cfg, &plugin) {
        Ok(configured) => {
            let shape = pipeline::check_tables(&pool.get().await?, &cfg, Some(&configured)).await;
            shape.map(|shape| (shape, configured))
        }
        Err(problems) => Err(problems),
    };
    let new = match shape.map(|(shape, plugin)| (shape, std::sync::Arc::new(plugin))) {
        Ok((shape, plugin)) => Live::new(&cfg, shape, plugin),
        Err(problems) => {
            for p in problems {
                println!("problem: {p}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let report = diff::compare(&pool, &live, &new, limits, (from, to), args.sample).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report, &live, &new, from, to);
    }
    Ok(if args.fail_on_diff && report.differs() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn print(r: &diff::Report, live: &Live, new: &Live, from: NaiveDate, to: NaiveDate) {
    println!("{} -> {}, {from} to {to}", live.plugin.version, new.plugin.version);
    println!(
        "groups compared: {}, differing: {}; daily rows unchanged: {}, changed: {}, added: {}, removed: {}",
        r.groups, r.groups_differing, r.rows_unchanged, r.rows_changed, r.rows_added, r.rows_removed
    );
    if !r.columns.is_empty() {
        println!("\n{:<24} {:>8}  largest change", "column", "changed");
        for (name, c) in &r.columns {
            println!("{name:<24} {:>8}  {}", c.changed, c.largest_change.map_or("-".into(), |d| format!("{d}")));
        }
    }
    if !r.failures.is_empty() {
        println!("\nplugin failures:");
        for f in &r.failures {
            println!("  user {} day {} ({} plugin): {}", f.user_id, f.day, f.plugin, f.error);
        }
    }
    if !r.examples.is_empty() {
        println!("\nexamples:");
        for e in &r.examples {
            println!("  user {} day {} {}: {} {} -> {}", e.user_id, e.day, e.key, e.column, e.old, e.new);
        }
    }
    if !r.differs() {
        println!("no difference");
    }
}

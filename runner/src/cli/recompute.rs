//! `runner recompute`, with a progress bar.

use std::process::ExitCode;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};

use runner::config::Config;
use runner::pipeline::{self, recompute};

use super::connect;

#[derive(clap::Args)]
pub struct Args {
    /// The job whose daily rows to recompute.
    #[arg(long)]
    job: String,
    /// First day (YYYY-MM-DD), in the job's time zone.
    #[arg(long)]
    from: NaiveDate,
    /// Last day, inclusive.
    #[arg(long)]
    to: NaiveDate,
    /// Only these users (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    users: Option<Vec<i64>>,
    /// Users per batch (each group is its own transaction).
    #[arg(long, default_value_t = 100)]
    batch: i64,
    /// Start over instead of resuming an interrupted run.
    #[arg(long)]
    restart: bool,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    super::usage(args.from <= args.to, || format!("--from {} is after --to {}", args.from, args.to))?;
    super::usage(args.batch > 0, || "--batch must be above 0".into())?;
    super::usage(config.jobs.contains_key(&args.job), || {
        format!("there is no job `{}` in {}", args.job, config.path.display())
    })?;
    let pool = connect(config).await?;
    let runtime = super::runtime(config)?;
    let job = pipeline::prepare_job(config, &pool, &runtime, &args.job)
        .await
        .map_err(|problems| anyhow::anyhow!("cannot start:\n{}", problems.join("\n")))?;
    let version = job.current().live.as_ref().map(|l| l.plugin.version.to_string()).unwrap_or_default();
    let range = recompute::Range { from: args.from, to: args.to, users: args.users, background: false };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} groups, {per_sec}, {eta} left")
            .expect("valid template"),
    );
    let summary = recompute::recompute(&pool, &job, &range, args.batch, args.restart, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    if summary.already_done {
        println!(
            "This range was already recomputed with {version} ({} groups); pass --restart to do it again.",
            summary.total
        );
        return Ok(ExitCode::SUCCESS);
    }
    if summary.retried_failures {
        println!("Retried the groups an earlier run of this range could not do.");
    } else if summary.resumed > 0 {
        println!("Resumed after {} groups done by an earlier run.", summary.resumed);
    }
    println!(
        "Job {} from {} to {} with {version}: {} groups recomputed, {} emptied (no input left: daily rows deleted), {} failed.",
        args.job, args.from, args.to, summary.recomputed, summary.emptied, summary.failed
    );
    if summary.failed > 0 {
        println!("Run the same command again to retry the failed groups.");
    }
    Ok(if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

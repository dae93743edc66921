//! `runner seed`: synthetic raw rows, with a progress bar per kind.

use std::process::ExitCode;
use std::time::Instant;

use chrono::NaiveDate;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio_postgres::GenericClient;

use runner::config::Config;
use runner::db::seed::{self, Kind};

use super::connect;

#[derive(clap::Args)]
pub struct Args {
    /// Synthetic users.
    #[arg(long, default_value_t = 100)]
    users: i32,
    /// Days of data, ending yesterday (or starting at --start).
    #[arg(long, default_value_t = 7)]
    days: i32,
    /// First day (YYYY-MM-DD); default: `days` days ago.
    #[arg(long)]
    start: Option<NaiveDate>,
    /// Which kinds of rows (comma-separated); default: all.
    #[arg(long, value_delimiter = ',', value_enum)]
    jobs: Option<Vec<Kind>>,
}

/// Seeds each kind day by day, showing a bar per kind; returns rows per kind.
pub async fn seed_with_progress(
    client: &impl GenericClient,
    kinds: &[Kind],
    users: i32,
    days: i32,
    start: NaiveDate,
) -> anyhow::Result<Vec<(Kind, u64)>> {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>10} {wide_bar} {pos}/{len} days {msg}").expect("valid template");
    let mut seeded = Vec::new();
    for &kind in kinds {
        let bar = bars.add(ProgressBar::new(days as u64).with_style(style.clone()).with_prefix(kind.table()));
        let mut rows = 0;
        seed::seed(client, kind, users, days, start, |n| {
            rows += n;
            bar.set_message(format!("{rows} rows"));
            bar.inc(1);
        })
        .await?;
        bar.finish();
        seeded.push((kind, rows));
    }
    bars.clear()?;
    Ok(seeded)
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.users > 0 && args.days > 0, "--users and --days must be above 0");
    let pool = connect(config).await?;
    let client = pool.get().await?;
    let start = args.start.unwrap_or_else(|| chrono::Utc::now().date_naive() - chrono::Days::new(args.days as u64));
    let kinds = args.jobs.unwrap_or_else(|| Kind::ALL.to_vec());
    for kind in &kinds {
        anyhow::ensure!(
            runner::db::reference::exists(&**client, kind.table()).await?,
            "table {} does not exist: run `runner migrate --reference-schema` (or seed only the kinds your jobs name, --jobs)",
            kind.table()
        );
    }
    let started = Instant::now();
    for (kind, rows) in seed_with_progress(&**client, &kinds, args.users, args.days, start).await? {
        println!("{}: {rows} rows", kind.table());
    }
    println!("Seeded {} users x {} days from {start} in {:.1?}.", args.users, args.days, started.elapsed());
    Ok(ExitCode::SUCCESS)
}

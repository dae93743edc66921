//! `runner demo`: the whole product in one command, on a throwaway Postgres.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::watch;

use runner::config::Config;
use runner::db::seed::Kind;
use runner::db::{migrate, pool, throwaway::TempPostgres};
use runner::pipeline::{self, Mode, Report};

use super::{connect, seed::seed_with_progress};

pub async fn run(mut config: Config, users: i32, days: i32, keep: bool) -> anyhow::Result<ExitCode> {
    println!("Starting a throwaway PostgreSQL...");
    let server = if keep { TempPostgres::start_detached()? } else { TempPostgres::start()? };
    server.create_database("health").await?;
    config.database.url = server.url("health");
    let pool = connect(&config).await?;
    let mut client = pool.get().await?;
    migrate::migrate(&mut client, &config, true).await?;
    let start = chrono::Utc::now().date_naive() - chrono::Days::new(days as u64);
    let seeding = Instant::now();
    let seeded = seed_with_progress(&**client, &Kind::ALL, users, days, start).await?;
    let summary: Vec<String> = seeded.iter().map(|(k, n)| format!("{n} {}", k.table())).collect();
    println!("Seeded {} ({users} users x {days} days) in {:.1?}.", summary.join(", "), seeding.elapsed());
    drop(client);
    let (reports, elapsed) = run_jobs(&config, &pool, &seeded).await?;
    print_summary(&config, &reports, elapsed);
    let client = pool.get().await?;
    println!("\nSample of vitals_daily:");
    let sample = runner::db::reference::vitals_daily_sample(&**client, 7).await?;
    println!(
        "{:>4} {:<10} {:<16} {:<11} {:>3} {:>3} {:>6} {:>6} {:>6}  plugin",
        "user", "day", "metric", "unit", "n", "rej", "min", "max", "avg"
    );
    let text = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    for r in sample {
        println!(
            "{:>4} {:<10} {:<16} {:<11} {:>3} {:>3} {:>6} {:>6} {:>6}  {}",
            r.user_id,
            r.day,
            text(&r.metric),
            text(&r.unit),
            r.sample_count,
            r.rejected_count,
            text(&r.min),
            text(&r.max),
            text(&r.avg),
            text(&r.plugin_version)
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
    } else {
        println!("\nThe throwaway database is removed. `--keep` leaves it running.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs every job until the seeded rows are done, a progress bar per job;
/// the reports and the seconds it took.
async fn run_jobs(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    seeded: &[(Kind, u64)],
) -> anyhow::Result<(Vec<(String, Report)>, f64)> {
    let runtime = super::runtime(config)?;
    let jobs = pipeline::prepare(config, pool, &runtime)
        .await
        .map_err(|problems| anyhow::anyhow!("cannot start:\n{}", problems.join("\n")))?;

    // A bar per job: raw rows completed out of those seeded.
    let bars = MultiProgress::new();
    let style =
        ProgressStyle::with_template("{prefix:>10} {wide_bar} {pos}/{len} rows {per_sec}").expect("valid template");
    let tracked: Vec<_> = jobs
        .iter()
        .map(|job| {
            let total =
                seeded.iter().find(|(k, _)| k.table() == job.current().config.source.as_str()).map_or(0, |(_, n)| *n);
            (job.clone(), bars.add(ProgressBar::new(total).with_style(style.clone()).with_prefix(job.name.clone())))
        })
        .collect();
    let (_stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let run = pipeline::run(config, pool.clone(), &jobs, Mode::Once, false, shutdown);
    tokio::pin!(run);
    let reports = loop {
        tokio::select! {
            reports = &mut run => break reports?,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                for (job, bar) in &tracked {
                    bar.set_position(job.rows_completed.load(Ordering::Relaxed));
                }
            }
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    bars.clear()?;
    Ok((reports, elapsed))
}

/// Each job's figures, the transactions' sizes, and what isolation and the pool did.
fn print_summary(config: &Config, reports: &[(String, Report)], elapsed: f64) {
    println!();
    println!(
        "{:<14} {:>10} {:>9} {:>9} {:>8} {:>9} {:>10}",
        "job", "rows", "groups", "rejected", "failed", "seconds", "rows/s"
    );
    for (job, r) in reports {
        print_report(job, r, r.elapsed.as_secs_f64());
    }
    let total = Report {
        rows_completed: reports.iter().map(|(_, r)| r.rows_completed).sum(),
        groups_completed: reports.iter().map(|(_, r)| r.groups_completed).sum(),
        rows_rejected: reports.iter().map(|(_, r)| r.rows_rejected).sum(),
        groups_failed: reports.iter().map(|(_, r)| r.groups_failed).sum(),
        ..Report::default()
    };
    print_report("all", &total, elapsed);
    let mut sizes = BTreeMap::new();
    for (_, r) in reports {
        for (carried, n) in &r.transaction_sizes {
            *sizes.entry(*carried).or_insert(0) += n;
        }
    }
    let longest = reports.iter().map(|(_, r)| r.longest_transaction).max().unwrap_or_default();
    println!("\n{}, the longest open {longest:.0?}.", transactions(&sizes));
    println!(
        "Each group was isolated: a plugin error, trap or bad output fails only its own group, and a \
         statement the server refuses is replayed one group per transaction."
    );
    println!(
        "Pool: at most {} of {} connections in use at once, none held while idle.",
        pool::peak_in_use(),
        config.database.max_connections
    );
}

fn print_report(job: &str, r: &Report, seconds: f64) {
    println!(
        "{job:<14} {:>10} {:>9} {:>9} {:>8} {:>9.2} {:>10.0}",
        r.rows_completed,
        r.groups_completed,
        r.rows_rejected,
        r.groups_failed,
        seconds,
        r.rows_completed as f64 / seconds.max(1e-9)
    );
}

/// "610 groups in 31 transactions (26 of 20–49 groups, 5 of 1)": how many
/// transactions carried how many groups, largest first, in ranges.
fn transactions(sizes: &BTreeMap<usize, u64>) -> String {
    const RANGES: [(usize, usize); 7] = [(100, usize::MAX), (50, 99), (20, 49), (10, 19), (5, 9), (2, 4), (1, 1)];
    if sizes.is_empty() {
        return "No group was due, so no transaction ran".into();
    }
    let groups: u64 = sizes.iter().map(|(carried, n)| *carried as u64 * n).sum();
    let total: u64 = sizes.values().sum();
    let plural = |n: u64, one: &str| if n == 1 { one.to_string() } else { format!("{one}s") };
    let parts: Vec<String> = RANGES
        .iter()
        .filter_map(|&(low, high)| {
            let n: u64 = sizes.range(low..=high).map(|(_, n)| n).sum();
            let range = match (low, high) {
                (1, 1) => "1 group".to_string(),
                (low, usize::MAX) => format!("{low}+ groups"),
                (low, high) => format!("{low}–{high} groups"),
            };
            (n > 0).then(|| format!("{n} of {range}"))
        })
        .collect();
    format!("{groups} {} in {total} {} ({})", plural(groups, "group"), plural(total, "transaction"), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_are_counted_by_the_groups_they_carried() {
        let sizes = BTreeMap::from([(1, 5), (3, 1), (20, 20), (24, 6)]);
        assert_eq!(
            transactions(&sizes),
            "552 groups in 32 transactions (26 of 20–49 groups, 1 of 2–4 groups, 5 of 1 group)"
        );
        assert_eq!(transactions(&BTreeMap::from([(1, 1)])), "1 group in 1 transaction (1 of 1 group)");
        assert_eq!(transactions(&BTreeMap::new()), "No group was due, so no transaction ran");
    }
}

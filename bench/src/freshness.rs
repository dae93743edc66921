//! Freshness under live ingest: rows arrive at a set rate while the runner
//! runs as a daemon (woken by NOTIFY); each raw row's commit is compared
//! with the write of its daily row. Two shapes: device syncs (a user's
//! readings in one commit) and one-row groups (every row a new group).
//!
//! A raw row's `recorded_at` is `clock_timestamp()` at its insert and a
//! daily row's `updated_at` is `clock_timestamp()` at its write, so the
//! figure is from insert to write, a hair under commit to commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use runner::config::Config;
use runner::daemon::Daemon;
use runner::db::pool;
use runner::pipeline::{Mode, OnRefusedFile};
use runner::plugin::Runtime;

/// Concurrent producer connections, sharing the rate.
const PRODUCERS: usize = 4;

/// Rows of the big day: a reading a second, most of a day.
pub const BIG_DAY: i64 = 80_000;

/// Gives `user` today's [`BIG_DAY`] rows, before the measurement: the
/// issue's user already has such a day when the syncs come.
async fn insert_big_day(client: &tokio_postgres::Client, user: i64) -> anyhow::Result<()> {
    client
        .execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             SELECT $1::int8, date_trunc('day', now()) + (now() - date_trunc('day', now())) * (g::float8 / $2::int8),
                    'heart_rate', 60 + g % 40, 'bpm'
             FROM generate_series(1, $2::int8) g",
            &[&user, &BIG_DAY],
        )
        .await?;
    Ok(())
}

/// The big day's user syncs 15 rows every second for `seconds`, and
/// watches its own daily row: every 100 ms, how long the oldest raw row
/// its counts do not cover yet has waited (0 when they cover all). Returns
/// the median and the largest of those waits, in seconds.
async fn big_day_syncs(url: String, user: i64, seconds: u64) -> anyhow::Result<(f64, f64)> {
    const SYNC: i64 = 15;
    let client = crate::connect(&url).await?;
    let watcher = crate::connect(&url).await?;
    let started = Instant::now();
    // (when a sync was sent, the rows the user had after it)
    let mut syncs: Vec<(Instant, i64)> = Vec::new();
    let mut waits = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut look = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::select! {
            _ = tick.tick() => {
                let sent = Instant::now();
                client
                    .execute(
                        "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
                         SELECT $1::int8, clock_timestamp(), 'heart_rate', 60 + g % 40, 'bpm' FROM generate_series(1, $2::int8) g",
                        &[&user, &SYNC],
                    )
                    .await?;
                syncs.push((sent, BIG_DAY + SYNC * (syncs.len() as i64 + 1)));
            }
            _ = look.tick() => {
                let counted: i64 = watcher
                    .query_one(
                        "SELECT coalesce(sum(sample_count + rejected_count), 0)::int8 FROM vitals_daily WHERE user_id = $1",
                        &[&user],
                    )
                    .await?
                    .get(0);
                let oldest_missing = syncs.iter().find(|(_, had)| *had > counted);
                waits.push(oldest_missing.map_or(0.0, |(sent, _)| sent.elapsed().as_secs_f64()));
            }
        }
    }
    anyhow::ensure!(!waits.is_empty(), "the big day's row was never looked at");
    let (_, median, max) = crate::spread(waits);
    Ok((median, max))
}

/// Waits until `user` has nothing queued and a row in `target`.
async fn settled(client: &tokio_postgres::Client, target: &str, user: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let sql = format!(
        "SELECT NOT EXISTS (SELECT FROM runner_changes WHERE user_id = $1)
            AND NOT EXISTS (SELECT FROM runner_changes_utc WHERE user_id = $1)
            AND EXISTS (SELECT FROM {target} WHERE user_id = $1)"
    );
    while !client.query_one(&sql, &[&user]).await?.get::<_, bool>(0) {
        anyhow::ensure!(Instant::now() < deadline, "the big day was not aggregated within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// p50, p95, p99 and max of the delay from a raw row to its daily row.
pub struct Freshness {
    pub rows: i64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    /// With a big day: how long its own newest rows waited for its daily
    /// row, median and max of samples every 100 ms (seconds).
    pub big_day: Option<(f64, f64)>,
}

/// Inserts `rate` rows a second for `seconds`, `per_commit` rows (of one
/// user, a new one each commit) at a time, with the runner running; the
/// delay is to the user's last write in `target` (`vitals_daily`, or the
/// end of a chain: `vitals_weekly`). With `big_day`, another user has a day
/// of [`BIG_DAY`] rows (a 1 Hz sensor) and syncs 15 more every second
/// meanwhile: what the measured users' freshness must not depend on.
pub async fn run(
    config: &Config,
    url: &str,
    (rate, per_commit, seconds): (u32, u32, u64),
    target: &str,
    big_day: bool,
) -> anyhow::Result<Freshness> {
    // Steady state: the seeded backlog already aggregated (and vacuumed,
    // as autovacuum would have), so only the live rows are pending.
    let setup = crate::connect(url).await?;
    setup.batch_execute("TRUNCATE runner_changes").await?;
    setup.batch_execute("VACUUM (ANALYZE) vitals_raw").await?;
    drop(setup);
    let pool = pool::build(&config.database, "runner")?;
    let runtime = Runtime::new(config.plugins.cache_dir.clone())?;
    let daemon = Arc::new(Daemon::load(config, pool.clone(), runtime, OnRefusedFile::Fail).await?);
    let runner = {
        let (config, daemon) = (config.clone(), daemon.clone());
        tokio::spawn(
            async move { daemon.run(&config, Mode::Daemon, false, std::future::pending(), Duration::ZERO).await },
        )
    };
    let producer = crate::connect(url).await?;
    // Users far above the seeded ones: every commit starts new groups.
    let first_user: i64 = 1_000_000 + i64::from(per_commit) * 1_000_000;
    if big_day {
        // The day exists and is aggregated before the measured rows come:
        // the steady state of a 1 Hz sensor, not its first upload.
        insert_big_day(&producer, first_user - 1).await?;
        settled(&producer, target, first_user - 1).await?;
    }
    let sensor = match big_day {
        true => Some(tokio::spawn(big_day_syncs(url.to_string(), first_user - 1, seconds))),
        false => None,
    };
    // Several producers, as many devices sync at once: one connection
    // cannot commit a row every 0.5 ms.
    let commits = Arc::new(AtomicI64::new(0));
    let mut producers = Vec::new();
    for _ in 0..PRODUCERS {
        let (url, commits) = (url.to_string(), commits.clone());
        producers.push(tokio::spawn(async move {
            let client = crate::connect(&url).await?;
            let every = Duration::from_secs_f64(f64::from(per_commit) * PRODUCERS as f64 / f64::from(rate.max(1)));
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(seconds) {
                tick.tick().await;
                let user = first_user + commits.fetch_add(1, Ordering::Relaxed);
                client
                    .execute(
                        "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
                         SELECT $1::int8, clock_timestamp(), 'heart_rate', 60 + g % 40, 'bpm' FROM generate_series(1, $2::int) g",
                        &[&user, &(per_commit as i32)],
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for p in producers {
        p.await??;
    }
    let big_day = match sensor {
        Some(sensor) => Some(sensor.await??),
        None => None,
    };
    let commit = commits.load(Ordering::Relaxed);
    // Let the runner finish what arrived.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending: i64 =
            producer.query_one("SELECT count(*) FROM runner_changes WHERE user_id >= $1", &[&first_user]).await?.get(0);
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop();
    let _ = tokio::time::timeout(Duration::from_secs(30), runner).await;
    pool.close();
    let lags = format!(
        "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag),
                percentile_cont(0.95) WITHIN GROUP (ORDER BY lag)
         FROM (SELECT extract(epoch FROM d.written - r.arrived)::float8 AS lag
               FROM (SELECT user_id, max(recorded_at) AS arrived FROM vitals_raw WHERE user_id >= $1 GROUP BY 1) r
               JOIN (SELECT user_id, max(updated_at) AS written FROM {target} WHERE user_id >= $1 GROUP BY 1) d
               USING (user_id)) x"
    );
    let row = producer.query_one(&lags, &[&first_user]).await?;
    Ok(Freshness {
        rows: commit * i64::from(per_commit),
        p50: row.get::<_, Option<f64>>(1).unwrap_or(f64::NAN),
        p95: row.get::<_, Option<f64>>(4).unwrap_or(f64::NAN),
        p99: row.get::<_, Option<f64>>(2).unwrap_or(f64::NAN),
        max: row.get::<_, Option<f64>>(3).unwrap_or(f64::NAN),
        big_day,
    })
}

//! What the group models cost (`--group-models`): API-style ingest with
//! each kind of local-day capture (the job's zone, each reading's zone
//! column, each user's zone from a table) over the same ingest without
//! triggers; a 7-day window's time per group against the day's; and a zone
//! column job's drain with inserts' keys queued as UTC days against the
//! same keys as local days, all on the same seeded rows. Interleaved run by run, reported as min /
//! median / max of ratios taken within one run.

use std::time::Duration;

use runner::config::{Config, Identifier, UserZones};

use crate::{connect, copy, ingest, run_runner, spread};

type Spread = (f64, f64, f64);

/// Installs the vitals job's capture as `config` counts days.
async fn capture_as(url: &str, config: &Config) -> anyhow::Result<()> {
    let client = connect(url).await?;
    runner::db::capture::install(&client, "vitals", &config.jobs["vitals"])
        .await
        .map_err(|p| anyhow::anyhow!(p.join("\n")))?;
    Ok(())
}

pub async fn run(
    admin: &tokio_postgres::Client,
    url: impl Fn(&str) -> String,
    base: impl Fn(&str) -> anyhow::Result<Config>,
    runs: usize,
    seconds: f64,
) -> anyhow::Result<()> {
    let name = |s: &str| Identifier::parse(s).expect("a plain name");
    let (mut column, mut user, mut fixed) = (Vec::new(), Vec::new(), Vec::new());
    let (mut window, mut widen, mut widened_groups) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs.max(1) {
        // Ingest, triggers as each model installs them, each on a fresh
        // copy of the seeded rows: ingest grows the table, and a variant
        // measured after another would pay for its rows.
        let db = url("bench_models");
        let fresh = async || -> anyhow::Result<tokio_postgres::Client> {
            copy(admin, "bench_models").await?;
            let client = connect(&db).await?;
            client
                .batch_execute(
                    "ALTER TABLE vitals_raw ADD COLUMN zone text DEFAULT 'Europe/Berlin';
                     CREATE TABLE user_zones (user_id bigint NOT NULL, zone text, valid_from timestamptz NOT NULL);
                     INSERT INTO user_zones SELECT u, 'Asia/Tokyo', '2000-01-01Z' FROM generate_series(10000000, 10400000) u;
                     CREATE INDEX ON user_zones (user_id, valid_from); ANALYZE user_zones;",
                )
                .await?;
            Ok(client)
        };
        let plain = base(&db)?;
        let mut by_column = plain.clone();
        by_column.jobs.get_mut("vitals").expect("the vitals job").zone_column = Some(name("zone"));
        let mut by_user = plain.clone();
        by_user.jobs.get_mut("vitals").expect("the vitals job").user_zones = Some(UserZones {
            table: name("user_zones"),
            user_column: name("user_id"),
            zone_column: name("zone"),
            from_column: Some(name("valid_from")),
        });
        let rate = async |config: Option<&Config>| -> anyhow::Result<f64> {
            let client = fresh().await?;
            match config {
                Some(config) => capture_as(&db, config).await?,
                None => client.batch_execute("ALTER TABLE vitals_raw DISABLE TRIGGER USER").await?,
            }
            drop(client);
            ingest::rate(&db, seconds, 10_000_000).await
        };
        // Each run starts with another variant: the first after a copy
        // was always measured a little apart from the others.
        let variants = [Some(&plain), Some(&by_column), Some(&by_user), None];
        let mut rates = [0.0; 4];
        for k in 0..variants.len() {
            let i = (k + run - 1) % variants.len();
            rates[i] = rate(variants[i]).await?;
        }
        let [with_fixed, with_column, with_user, without] = rates;
        fixed.push(with_fixed / without);
        column.push(with_column / without);
        user.push(with_user / without);

        // A 7-day window against the day, each over every seeded group.
        copy(admin, "bench_models").await?;
        let day = run_runner(&base(&db)?, false, "bench_models", 0).await?;
        copy(admin, "bench_models").await?;
        let mut seven = base(&db)?;
        seven.jobs.get_mut("vitals").expect("the vitals job").window_days = 7;
        capture_as(&db, &seven).await?;
        let week = run_runner(&seven, false, "bench_models", 0).await?;
        let per_group = |r: &crate::RunnerRun| r.seconds / r.groups.max(1) as f64;
        window.push(per_group(&week) / per_group(&day));

        // A zone column's drain of every seeded row, its keys queued as the
        // trigger once did (each row's local day) and as inserts now queue
        // them (a user's UTC day, its first and last instant, which the peek
        // turns into local days): what moving the zone lookup from the
        // insert to the runner costs it. A whole UTC day holds two local
        // days, and a local day two UTC days' rows: its group may be
        // computed once for each (the second time writing nothing).
        let zoned = async |queue: &str| -> anyhow::Result<crate::RunnerRun> {
            copy(admin, "bench_models").await?;
            connect(&db)
                .await?
                .batch_execute(&format!(
                    "ALTER TABLE vitals_raw ADD COLUMN zone text DEFAULT 'Europe/Berlin';
                     DELETE FROM runner_changes; {queue}"
                ))
                .await?;
            capture_as(&db, &by_column).await?;
            run_runner(&by_column, false, "bench_models", 0).await
        };
        let local = zoned(
            "INSERT INTO runner_changes (job, user_id, day)
             SELECT DISTINCT 'vitals', user_id, (recorded_at AT TIME ZONE 'Europe/Berlin')::date FROM vitals_raw",
        )
        .await?;
        let utc = zoned(
            "INSERT INTO runner_changes_utc (job, user_id, day, first_at, last_at)
             SELECT 'vitals', user_id, (recorded_at AT TIME ZONE 'UTC')::date, min(recorded_at), max(recorded_at)
             FROM vitals_raw GROUP BY 2, 3",
        )
        .await?;
        widen.push(utc.seconds / local.seconds);
        widened_groups.push(utc.groups as f64 / local.groups.max(1) as f64);
        println!(
            "run {run}: ingest rows/s with capture by the job's zone {with_fixed:.0}, a zone column {with_column:.0}, \
             user zones {with_user:.0}, none {without:.0}; per group: day {:.3} ms, 7-day window {:.3} ms",
            per_group(&day) * 1e3,
            per_group(&week) * 1e3
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let show = |what: &str, s: Spread| println!("  {what:<52} {:.2} / {:.2} / {:.2}", s.0, s.1, s.2);
    println!("group models (min / median / max over {} runs, each ratio within one run)", runs.max(1));
    show("ingest, capture by the job's zone ÷ no capture", spread(fixed.clone()));
    show("ingest, capture by a zone column ÷ no capture", spread(column.clone()));
    show("ingest, capture by user zones ÷ no capture", spread(user.clone()));
    let over = |a: &[f64]| spread(a.iter().zip(&fixed).map(|(a, f)| a / f).collect());
    show("ingest, zone column ÷ the job's zone (both captured)", over(&column));
    show("ingest, user zones ÷ the job's zone (both captured)", over(&user));
    show("time per group, 7-day window ÷ day", spread(window));
    show("zone column drain, keys as UTC days ÷ as local days", spread(widen));
    show("  its groups computed, UTC keys ÷ local days", spread(widened_groups));
    Ok(())
}

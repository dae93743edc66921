//! What a changed config file means for a running daemon: which changes
//! apply live and which wait for a restart. A pure function of the two
//! configs, so the rule is tested here and the deploy loop only applies it.

use super::{Config, Job};

/// The outcome of comparing the config in force with a changed file.
#[derive(Debug)]
pub struct Reload {
    /// Changed settings that need a restart, named as the log names them.
    pub restart: Vec<String>,
    /// `[plugins] trusted_keys` or `revoked` changed (they apply live).
    pub trust_changed: bool,
    /// The config to run from now on: the one in force, with everything
    /// that applies live taken from the new file.
    pub live: Config,
}

/// A job as it runs after a reload: its structure (what its statements,
/// triggers and plugin file are built from) as started, the rest (limits,
/// batches, settings, retries) as the new file says.
fn live_job(old: &Job, new: &Job) -> Job {
    Job {
        plugin: old.plugin.clone(),
        source: old.source.clone(),
        target: old.target.clone(),
        timestamp_column: old.timestamp_column.clone(),
        timezone: old.timezone.clone(),
        timestamp_zone: old.timestamp_zone.clone(),
        window_days: old.window_days,
        zone_column: old.zone_column.clone(),
        user_zones: old.user_zones.clone(),
        period: old.period,
        week_starts: old.week_starts,
        target_day_column: old.target_day_column.clone(),
        ..new.clone()
    }
}

/// Compares the config in force (`old`) with the changed file (`new`).
pub fn diff(old: &Config, new: &Config) -> Reload {
    let mut restart = Vec::new();
    let mut changed = |differs: bool, what: &str| {
        if differs {
            restart.push(what.to_string());
        }
    };
    changed(new.database != old.database, "[database]");
    changed(
        (&new.plugins.dir, &new.plugins.cache_dir) != (&old.plugins.dir, &old.plugins.cache_dir),
        "[plugins] dir or cache_dir",
    );
    changed(new.http != old.http, "[http]");
    changed(new.log != old.log, "[log]");
    let at_start = |c: &Config| (c.runner.shutdown_grace, c.runner.keep_history);
    changed(at_start(new) != at_start(old), "[runner] shutdown_grace or keep_history");
    for name in new.jobs.keys().filter(|n| !old.jobs.contains_key(*n)) {
        restart.push(format!("[jobs.{name}] (new job)"));
    }
    for name in old.jobs.keys().filter(|n| !new.jobs.contains_key(*n)) {
        restart.push(format!("[jobs.{name}] (removed job)"));
    }
    let mut live = old.clone();
    live.runner.poll_interval = new.runner.poll_interval;
    live.plugins.trusted_keys = new.plugins.trusted_keys.clone();
    live.plugins.trusted = new.plugins.trusted.clone();
    live.plugins.revoked = new.plugins.revoked.clone();
    for (name, job) in &mut live.jobs {
        let Some(new_job) = new.jobs.get(name) else { continue };
        let next = live_job(job, new_job);
        // `next` differs from the new file only in the fields kept as started.
        if next != *new_job {
            restart.push(format!(
                "jobs.{name}: plugin, source, target, timestamp_column, timezone, timestamp_zone, period, week_starts, target_day_column, window_days, zone_column or user_zones"
            ));
        }
        *job = next;
    }
    Reload { restart, trust_changed: new.plugins.trust() != old.plugins.trust(), live }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    /// The config tests' smallest valid file.
    const FILE: &str = super::super::tests::GOOD;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/runner/runner.toml")).unwrap()
    }

    #[test]
    fn limits_and_settings_apply_live_and_structure_waits_for_a_restart() {
        let old = config(FILE);
        let same = diff(&old, &config(FILE));
        assert!(same.restart.is_empty() && !same.trust_changed, "{:?}", same.restart);

        let edited = format!(
            "{}\n[jobs.vitals.settings]\nmax = 3\n",
            FILE.replace("[jobs.vitals]\n", "[jobs.vitals]\nbatch_size = 7\n")
        );
        let reload = diff(&old, &config(&edited));
        assert!(reload.restart.is_empty(), "{:?}", reload.restart);
        assert_eq!(reload.live.jobs["vitals"].batch_size, 7);
        assert_eq!(reload.live.jobs["vitals"].settings["max"].as_integer(), Some(3));

        let moved = FILE
            .replace("\"vitals_daily\"", "\"vitals_daily_v2\"")
            .replace("[plugins]", "max_connections = 9\n\n[plugins]");
        let reload = diff(&old, &config(&moved));
        assert_eq!(
            reload.restart,
            [
                "[database]",
                "jobs.vitals: plugin, source, target, timestamp_column, timezone, timestamp_zone, period, week_starts, target_day_column, window_days, zone_column or user_zones"
            ]
        );
        assert_eq!(reload.live.jobs["vitals"].target.as_str(), "vitals_daily", "kept as started");
        assert_eq!(reload.live.database.max_connections, old.database.max_connections);

        let renamed = FILE
            .replace("[jobs.vitals]", "[jobs.steps]")
            .replace("[plugins]", "[runner]\npoll_interval = \"3s\"\n\n[plugins]");
        let reload = diff(&old, &config(&renamed));
        assert_eq!(reload.restart, ["[jobs.steps] (new job)", "[jobs.vitals] (removed job)"]);
        assert_eq!(reload.live.runner.poll_interval, Duration::from_secs(3));
    }
}

//! The file's schema: one struct per `[section]`, with its defaults. What
//! serde can check alone (types, unknown keys, numbers above 0) is checked
//! here; what needs several keys at once is `validate`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Identifier;
use super::settings::setting_value;

/// `[database]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `url`: a libpq-style connection URL. `DATABASE_URL` overrides it.
    pub url: String,
    /// `max_connections`: hard cap on the runner's pooled connections.
    #[serde(default = "defaults::max_connections", deserialize_with = "positive_usize")]
    pub max_connections: usize,
    /// `connect_timeout`: how long opening one connection may take.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// `wait_timeout`: how long a caller waits for a free pooled connection.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// `recycle_timeout`: how long checking a returned connection may take.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub recycle_timeout: Duration,
    /// `connect_attempts`: tries at start-up before giving up with an error.
    #[serde(default = "defaults::connect_attempts", deserialize_with = "positive_u32")]
    pub connect_attempts: u32,
    /// `synchronous_commit`: whether group commits wait for the WAL flush.
    #[serde(default)]
    pub synchronous_commit: bool,
    /// `lock_timeout`: how long one of the runner's statements waits for a
    /// lock another session holds before it gives up.
    #[serde(default = "defaults::lock_timeout", with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// `statement_timeout`: how long one of the runner's statements may run.
    #[serde(default = "defaults::statement_timeout", with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Derived, not a key: how long a session may sit idle inside a
    /// transaction (a group's transaction is idle while its plugins run).
    #[serde(skip)]
    pub idle_in_transaction_timeout: Duration,
}

/// `[runner]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runner {
    /// `poll_interval`: fallback wake-up when no notification arrives.
    #[serde(default = "defaults::poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// `shutdown_grace`: on SIGINT/SIGTERM, how long groups in hand may take to finish.
    #[serde(default = "defaults::shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// `keep_history`: shadow differences and finished recomputes older
    /// than this are pruned (hourly, by the daemon).
    #[serde(default = "defaults::keep_history", with = "humantime_serde")]
    pub keep_history: Duration,
}

impl Default for Runner {
    fn default() -> Self {
        Runner {
            poll_interval: defaults::poll_interval(),
            shutdown_grace: defaults::shutdown_grace(),
            keep_history: defaults::keep_history(),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// `listen`: address of the health, metrics and plugins endpoints; `""` turns them off.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// `console_listen`: when set, the console and its actions are served
    /// here only, and `listen` serves health, readiness and metrics.
    pub console_listen: Option<String>,
    /// `admin_token`: the bearer token the console's actions need (retry,
    /// pause, resume, promote); unset, the console is read-only.
    /// `RUNNER_ADMIN_TOKEN` overrides it.
    pub admin_token: Option<String>,
}

impl Default for Http {
    fn default() -> Self {
        Http { listen: defaults::listen(), console_listen: None, admin_token: None }
    }
}

impl Http {
    /// A warning when the endpoints are reachable from other hosts with no
    /// admin token: anyone on the network then reads the console, the
    /// queue figures and the errors. Loopback addresses and `localhost` are
    /// quiet; so is an address that does not parse (binding reports it).
    pub fn exposure_warning(&self) -> Option<String> {
        // The address the console is served on is the one that matters.
        let (key, listen) = match &self.console_listen {
            Some(console) => ("console_listen", console.as_str()),
            None => ("listen", self.listen.as_str()),
        };
        if listen.is_empty() || self.admin_token.is_some() {
            return None;
        }
        let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        (!loopback && !host.is_empty()).then(|| {
            format!(
                "[http] {key} = \"{listen}\" is reachable from other hosts and no admin_token is set: whoever \
                 reaches it reads the console (queue figures, errors, plugin versions); serve the console on a \
                 loopback address (`console_listen`, behind an authenticating proxy) unless that is intended, and \
                 set admin_token (or RUNNER_ADMIN_TOKEN) if operators act from it"
            )
        })
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `format`: `text` (default) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// `level`: a tracing filter such as `info` or `runner=debug`; `RUST_LOG` overrides it.
    pub level: Option<String>,
}

/// `[jobs.<name>.user_zones]`: where each user's zone is kept. Without
/// `from_column` a user has one zone for all their rows; with it a row
/// takes the zone in effect at its timestamp (the latest `from_column` not
/// after it), and rows before a user's first entry take the job's zone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserZones {
    /// `table`: the users' zones, optionally `schema.table`.
    pub table: Identifier,
    /// `user_column`: the user, as the source's `user_id` (default `user_id`).
    #[serde(default = "defaults::user_column")]
    pub user_column: Identifier,
    /// `zone_column`: an IANA zone name (default `zone`).
    #[serde(default = "defaults::zone_column")]
    pub zone_column: Identifier,
    /// `from_column`: a `timestamptz`, when the zone is in effect from.
    #[serde(default)]
    pub from_column: Option<Identifier>,
}

/// What a group spans (`period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    #[default]
    Day,
    Week,
    Month,
}

/// The first day of a week (`week_starts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WeekStart {
    #[default]
    Monday,
    Sunday,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[plugins]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugins {
    /// `dir`: the plugin folder; relative paths resolve against the config file's folder.
    pub dir: PathBuf,
    /// `cache_dir`: where compiled components are kept (default: the
    /// runner's state directory, see `config::default_cache_dir`); never
    /// inside the plugin folder. `None` after loading: no cache.
    pub cache_dir: Option<PathBuf>,
    /// `trusted_keys`: the `.pub` lines of the keys whose signatures make a
    /// plugin trusted; unset, plugins are not verified.
    pub trusted_keys: Option<Vec<String>>,
    /// Not a key: `trusted_keys` parsed.
    #[serde(skip)]
    pub trusted: Option<Vec<crate::trust::TrustedKey>>,
    /// `revoked`: SHA-256s of files that never load, signed or not (a
    /// known-bad release); lower-cased when loaded. Applies live.
    #[serde(default)]
    pub revoked: Vec<String>,
}

impl Plugins {
    /// What a plugin file must pass to load.
    pub fn trust(&self) -> crate::trust::Trust {
        crate::trust::Trust { keys: self.trusted.clone(), revoked: self.revoked.clone() }
    }
}

/// `[jobs.<name>]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// `enabled`: a disabled job is neither loaded nor run.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// `plugin`: the component's file name in the plugin folder, e.g. `vitals.wasm`.
    pub plugin: String,
    /// `source`: the raw table, optionally schema-qualified.
    pub source: Identifier,
    /// `target`: the daily table, optionally schema-qualified.
    pub target: Identifier,
    /// `timestamp_column`: the source column that places a row in a day.
    pub timestamp_column: Identifier,
    /// `timezone`: the IANA zone whose calendar days form the groups.
    #[serde(default = "defaults::timezone")]
    pub timezone: String,
    /// `timestamp_zone`: the zone of a `timestamp without time zone` column's
    /// wall-clock values (ignored for `timestamptz`).
    #[serde(default = "defaults::timezone")]
    pub timestamp_zone: String,
    /// `zone_column`: each reading's zone, a column of the source: a `text`
    /// IANA name (`Asia/Tokyo`) or an `integer` offset in minutes east of
    /// UTC (`330`, `-300`). Its day is the local date there; a NULL or
    /// unknown zone is grouped in `timezone` (and counted by `check`).
    #[serde(default)]
    pub zone_column: Option<Identifier>,
    /// `[jobs.<name>.user_zones]`: each user's zone, from a table of theirs.
    #[serde(default)]
    pub user_zones: Option<UserZones>,
    /// `period`: what a group spans: a `day` (default), a `week` or a
    /// `month` of the rows' days; the group's date is the period's first day.
    #[serde(default)]
    pub period: Period,
    /// `week_starts`: `monday` (ISO, default) or `sunday`, for `period = "week"`.
    #[serde(default)]
    pub week_starts: WeekStart,
    /// `target_day_column`: the target's date column, where the runner
    /// writes the group's date (the period's first day); default `day`.
    #[serde(default = "defaults::day_column")]
    pub target_day_column: Identifier,
    /// `window_days`: the days of input of group `(user, d)`: the user's
    /// rows of days `d − N + 1 … d` (a rolling window; 1: the day alone).
    /// A change on day `x` makes `x … x + N − 1` due; a day with no row of
    /// its own has no output. Changing it needs `runner migrate`.
    #[serde(default = "defaults::window_days", deserialize_with = "positive_u32")]
    pub window_days: u32,
    /// `batch_size`: raw rows claimed per batch, at least (the floor under pressure).
    #[serde(default = "defaults::batch_size", deserialize_with = "positive_i64")]
    pub batch_size: i64,
    /// `max_batch_size`: the most raw rows claimed per batch when all is calm
    /// (default: 4 × `batch_size`).
    pub max_batch_size: Option<i64>,
    /// `workers`: groups of one batch aggregated concurrently (each holds one connection).
    #[serde(default = "defaults::workers", deserialize_with = "positive_usize")]
    pub workers: usize,
    /// `transaction_budget`: group commit — a transaction carries as many
    /// due groups as its recent per-group time says fit in this (at least
    /// one, at most `groups_per_transaction`); groups claimed beyond it as
    /// it runs are put back. Each group stays isolated.
    #[serde(default = "defaults::transaction_budget", with = "humantime_serde")]
    pub transaction_budget: Duration,
    /// `groups_per_transaction`: the most groups one transaction carries.
    #[serde(default = "defaults::groups_per_transaction", deserialize_with = "positive_usize")]
    pub groups_per_transaction: usize,
    /// `max_attempts`: failed tries before a row is marked `failed`.
    #[serde(default = "defaults::max_attempts", deserialize_with = "positive_i32")]
    pub max_attempts: i32,
    /// `retry_backoff`: wait before the first retry; doubles each attempt, capped at an hour.
    #[serde(default = "defaults::retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// `memory_limit_mb`: the plugin's linear memory cap per group.
    #[serde(default = "defaults::memory_limit_mb", deserialize_with = "positive_usize")]
    pub memory_limit_mb: usize,
    /// `time_limit`: wall time one plugin call may take.
    #[serde(default = "defaults::time_limit", with = "humantime_serde")]
    pub time_limit: Duration,
    /// `max_group_rows`: raw rows one group may have. The read stops one
    /// row past it, so the runner's own memory is bounded too, and such a
    /// group fails, naming the limit, before the plugin runs.
    #[serde(default = "defaults::max_group_rows", deserialize_with = "positive_u32")]
    pub max_group_rows: u32,
    /// `reuse_instance`: a transaction's groups share one plugin instance
    /// (never across transactions, jobs or versions), while the plugin is
    /// verified to be a function of its input; `false`: a fresh instance
    /// per group.
    #[serde(default = "defaults::yes")]
    pub reuse_instance: bool,
    /// `verify_every`: one group in this many computed on a reused instance
    /// is computed on a fresh one too, and a difference turns reuse off for
    /// the file (0: no check while running; the probe at load still runs).
    #[serde(default = "defaults::verify_every")]
    pub verify_every: u32,
    /// `log_lines`: plugin log lines kept per group; the rest are counted and dropped.
    #[serde(default = "defaults::log_lines")]
    pub log_lines: u32,
    /// `log_line_bytes`: bytes kept of one plugin log line.
    #[serde(default = "defaults::log_line_bytes", deserialize_with = "positive_usize")]
    pub log_line_bytes: usize,
    /// `recompute_after_deploy`: once a new plugin version goes live,
    /// recompute this many past days (whole days, today included) in the
    /// background. Off when unset.
    #[serde(default, with = "humantime_serde")]
    pub recompute_after_deploy: Option<Duration>,
    /// `frozen_before`: raw rows older than this many days (whole days,
    /// counted back from today in `timezone`) may be purged for retention:
    /// changes to days before it are dropped, not aggregated, and no
    /// recompute ever empties such a day. Daily history stays. Off when unset.
    #[serde(default, with = "humantime_serde")]
    pub frozen_before: Option<Duration>,
    /// `[jobs.<name>.settings]`: values for the settings the plugin
    /// declares (strings, integers, floats, booleans), checked against the
    /// plugin on every load; a change applies live.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
    /// Not a key: the job's name (`[jobs.<name>]`).
    #[serde(skip)]
    pub name: String,
    /// Not a key: where the job is in its file, `<file>:<line of [jobs.name]>`,
    /// for problems found later (a missing plugin, an unknown time zone).
    #[serde(skip)]
    pub origin: String,
    /// Not a key: `<file>:<line>` of each setting, and of the settings
    /// table itself under `""`, for problems found against the plugin.
    #[serde(skip)]
    pub settings_origin: BTreeMap<String, String>,
}

impl Job {
    /// `frozen_before` in whole days (rounded up), if set.
    pub fn frozen_days(&self) -> Option<i32> {
        self.frozen_before.map(|d| d.as_secs().div_ceil(86_400).min(i32::MAX as u64) as i32)
    }

    /// The settings as typed values (the file is checked to hold only these).
    pub fn setting_values(&self) -> BTreeMap<String, crate::rows::Value> {
        self.settings.iter().filter_map(|(k, v)| Some((k.clone(), setting_value(v)?))).collect()
    }

    /// Where a setting is written (`None`: the settings table, or the job).
    pub fn setting_origin(&self, name: Option<&str>) -> String {
        let at = |key: &str| self.settings_origin.get(key).cloned();
        name.and_then(at).or_else(|| at("")).unwrap_or_else(|| self.origin.clone())
    }
}

/// The defaults of every key that has one (the commands without a config
/// use them too).
pub mod defaults {
    use std::time::Duration;
    pub fn max_connections() -> usize {
        4
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn lock_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn statement_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn connect_attempts() -> u32 {
        5
    }
    pub fn poll_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(30)
    }
    pub fn keep_history() -> Duration {
        Duration::from_secs(30 * 86_400)
    }
    pub fn listen() -> String {
        "127.0.0.1:9187".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn timezone() -> String {
        "UTC".into()
    }
    pub fn batch_size() -> i64 {
        200
    }
    pub fn workers() -> usize {
        2
    }
    pub fn max_attempts() -> i32 {
        5
    }
    pub fn retry_backoff() -> Duration {
        Duration::from_secs(10)
    }
    pub fn memory_limit_mb() -> usize {
        64
    }
    pub fn log_lines() -> u32 {
        100
    }
    pub fn log_line_bytes() -> usize {
        1024
    }
    pub fn time_limit() -> Duration {
        Duration::from_secs(2)
    }
    /// A reading a second for almost three days: what a day of the densest
    /// device streams holds, and (at a few hundred bytes a row, host and
    /// guest) within the default `memory_limit_mb`.
    pub fn day_column() -> super::Identifier {
        super::Identifier::parse("day").expect("a plain name")
    }
    pub fn user_column() -> super::Identifier {
        super::Identifier::parse("user_id").expect("a plain name")
    }
    pub fn zone_column() -> super::Identifier {
        super::Identifier::parse("zone").expect("a plain name")
    }
    pub fn window_days() -> u32 {
        1
    }
    pub fn max_group_rows() -> u32 {
        250_000
    }
    pub fn transaction_budget() -> Duration {
        Duration::from_millis(20)
    }
    pub fn verify_every() -> u32 {
        200
    }
    pub fn groups_per_transaction() -> usize {
        20
    }
}

fn positive<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + Default + fmt::Display,
{
    let v = T::deserialize(d)?;
    if v > T::default() { Ok(v) } else { Err(serde::de::Error::custom(format!("expected a number above 0, got {v}"))) }
}

fn positive_usize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    positive(d)
}
fn positive_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    positive(d)
}
fn positive_i32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    positive(d)
}
fn positive_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    positive(d)
}

/// The file as written, before cross-field checks. Spans locate the values
/// that the second pass checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub database: Database,
    #[serde(default)]
    pub runner: Runner,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub log: Log,
    pub plugins: Plugins,
    #[serde(default)]
    pub jobs: BTreeMap<String, Spanned<Job>>,
}

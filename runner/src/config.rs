//! The runner's TOML configuration: parsed strictly (unknown keys are
//! errors), then validated as a whole so an operator sees every problem at
//! once, each with the file, the key and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use crate::db::ident::{Identifier, JobName};

/// Default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/runner.toml";

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    pub database: Database,
    pub runner: Runner,
    pub http: Http,
    pub log: Log,
    pub plugins: Plugins,
    /// Jobs by name, in name order.
    pub jobs: BTreeMap<String, Job>,
}

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
    /// runner's state directory, see `plugin::cache::default_dir`); never
    /// inside the plugin folder. `None` after loading: no cache.
    pub cache_dir: Option<PathBuf>,
    /// `trusted_keys`: the `.pub` lines of the keys whose signatures make a
    /// plugin trusted; unset, plugins are not verified.
    pub trusted_keys: Option<Vec<String>>,
    /// Not a key: `trusted_keys` parsed.
    #[serde(skip)]
    pub trusted: Option<Vec<crate::plugin::trust::TrustedKey>>,
    /// `revoked`: SHA-256s of files that never load, signed or not (a
    /// known-bad release); lower-cased when loaded. Applies live.
    #[serde(default)]
    pub revoked: Vec<String>,
}

impl Plugins {
    /// What a plugin file must pass to load.
    pub fn trust(&self) -> crate::plugin::trust::Trust {
        crate::plugin::trust::Trust { keys: self.trusted.clone(), revoked: self.revoked.clone() }
    }

    /// Whether two `[plugins]` differ in what needs a restart (keys apply live).
    pub fn differs_but_keys(&self, other: &Plugins) -> bool {
        (&self.dir, &self.cache_dir) != (&other.dir, &other.cache_dir)
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

/// A setting's TOML value as a typed value (`None`: not a scalar).
pub fn setting_value(v: &toml::Value) -> Option<crate::rows::Value> {
    use crate::rows::Value;
    match v {
        toml::Value::Boolean(b) => Some(Value::Boolean(*b)),
        toml::Value::Integer(i) => Some(Value::Integer(*i)),
        toml::Value::Float(f) => Some(Value::Float(*f)),
        toml::Value::String(s) => Some(Value::Text(s.clone())),
        _ => None,
    }
}

/// `NAME=VALUE` from the command line: VALUE as TOML (`220`, `0.5`, `true`,
/// `"text"`), else as text.
pub fn setting_from_arg(arg: &str) -> Result<(String, crate::rows::Value), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("--set {arg}: expected NAME=VALUE, e.g. --set heart_rate_max=220"))?;
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}")).ok().and_then(|t| setting_value(&t["v"]));
    Ok((name.trim().to_string(), parsed.unwrap_or_else(|| crate::rows::Value::Text(value.to_string()))))
}

mod defaults {
    use std::time::Duration;

    use crate::plugin::Limits;
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
        Limits::DEFAULT.memory_bytes >> 20
    }
    pub fn log_lines() -> u32 {
        Limits::DEFAULT.log_lines
    }
    pub fn log_line_bytes() -> usize {
        Limits::DEFAULT.log_line_bytes
    }
    pub fn time_limit() -> Duration {
        Limits::DEFAULT.time
    }
    /// A reading a second for almost three days: what a day of the densest
    /// device streams holds, and (at a few hundred bytes a row, host and
    /// guest) within the default `memory_limit_mb`.
    pub fn max_group_rows() -> u32 {
        250_000
    }
    pub fn transaction_budget() -> Duration {
        Duration::from_millis(20)
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
struct RawConfig {
    database: Database,
    #[serde(default)]
    runner: Runner,
    #[serde(default)]
    http: Http,
    #[serde(default)]
    log: Log,
    plugins: Plugins,
    #[serde(default)]
    jobs: BTreeMap<String, Spanned<Job>>,
}

/// Everything wrong with a config file, one problem per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid config {}:\n{}", path.display(), problems.join("\n"))]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

impl Config {
    /// Reads, parses and validates `path`. `DATABASE_URL`, when set and not
    /// empty, replaces `[database] url`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            problems: vec![format!("cannot read the file: {e}")],
        })?;
        let mut config = Config::parse(&text, path)?;
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.is_empty()
        {
            config.database.url = url;
        }
        if let Ok(token) = std::env::var("RUNNER_ADMIN_TOKEN")
            && !token.is_empty()
        {
            config.http.admin_token = Some(token);
        }
        if config.http.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError {
                path: path.to_path_buf(),
                problems: vec!["[http] admin_token: expected at least 16 characters (it guards every action)".into()],
            });
        }
        Ok(config)
    }

    /// Parses and validates config text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let error = |problems| ConfigError { path: path.to_path_buf(), problems };
        let raw: RawConfig = toml::from_str(text).map_err(|e| error(every_section_error(text, &e)))?;

        let mut problems = Vec::new();
        let line_of = |span: Range<usize>| line_number(text, span.start);
        let mut jobs = BTreeMap::new();
        let mut lines = BTreeMap::new();
        for (name, job) in raw.jobs {
            let header = line_of(job.span());
            let job = job.into_inner();
            // Each problem at its own key's line (the header's when the key is not written).
            let at = |key: &str| key_line(text, &format!("jobs.{name}"), key).unwrap_or(header);
            let line = header;
            if let Err(why) = JobName::parse(&name) {
                problems.push(format!("line {line}: [jobs.{name}]: {why}"));
            }
            if !job.plugin.ends_with(".wasm") || job.plugin.contains('/') {
                problems.push(format!(
                    "line {}: jobs.{name}.plugin: expected a `.wasm` file name inside the plugin folder, got `{}`",
                    at("plugin"),
                    job.plugin
                ));
            }
            if job.time_limit.is_zero() {
                problems
                    .push(format!("line {}: jobs.{name}.time_limit: expected a duration above 0", at("time_limit")));
            }
            if job.max_batch_size.is_some_and(|m| m < job.batch_size) {
                problems.push(format!(
                    "line {}: jobs.{name}.max_batch_size: must be at least batch_size ({})",
                    at("max_batch_size"),
                    job.batch_size
                ));
            }
            if job.source == job.target {
                problems.push(format!("line {line}: jobs.{name}: `source` and `target` are the same table"));
            }
            for (key, zone) in [("timezone", &job.timezone), ("timestamp_zone", &job.timestamp_zone)] {
                if !is_zone_name(zone) {
                    problems.push(format!("line {}: jobs.{name}.{key}: `{zone}` is not a time zone name", at(key)));
                }
            }
            let section = format!("jobs.{name}.settings");
            let mut settings_origin = BTreeMap::new();
            let table_line = text
                .lines()
                .position(|l| l.trim().trim_start_matches('[').trim_end_matches(']').trim() == section)
                .map_or(at("settings"), |i| i + 1);
            settings_origin.insert(String::new(), format!("{}:{table_line}", path.display()));
            for (key, value) in &job.settings {
                let line = key_line(text, &section, key).unwrap_or(table_line);
                settings_origin.insert(key.clone(), format!("{}:{line}", path.display()));
                if !matches!(
                    value,
                    toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)
                ) {
                    problems.push(format!(
                        "line {line}: {section}.{key}: expected a string, number or boolean, got {} {value}",
                        value.type_str()
                    ));
                } else if value.as_float().is_some_and(|f| !f.is_finite()) {
                    problems.push(format!("line {line}: {section}.{key}: expected a finite number, got {value}"));
                }
            }
            lines.insert(name.clone(), line);
            let job = Job { name: name.clone(), origin: format!("{}:{line}", path.display()), settings_origin, ..job };
            jobs.insert(name, job);
        }
        problems.extend(overlaps(&jobs, &lines));
        let db = &raw.database;
        for (key, value) in [
            ("connect_timeout", db.connect_timeout),
            ("wait_timeout", db.wait_timeout),
            ("lock_timeout", db.lock_timeout),
            ("statement_timeout", db.statement_timeout),
        ] {
            if value.is_zero() {
                let line = key_line(text, "database", key).unwrap_or(1);
                problems
                    .push(format!("line {line}: database.{key}: expected a duration above 0 (every wait is bounded)"));
            }
        }
        if raw.runner.poll_interval < Duration::from_millis(10) {
            let line = key_line(text, "runner", "poll_interval").unwrap_or(1);
            problems.push(format!(
                "line {line}: runner.poll_interval: expected at least 10ms (it paces an idle runner's checks), got {:?}",
                raw.runner.poll_interval
            ));
        }
        if !problems.is_empty() {
            return Err(error(problems));
        }

        let mut database = raw.database;
        // A group's transaction idles while the live plugin and a shadow
        // candidate run; anything longer means the runner itself is stuck.
        let longest_call = jobs.values().map(|j| j.time_limit).max().unwrap_or_default();
        database.idle_in_transaction_timeout = database.statement_timeout + longest_call * 2 + Duration::from_secs(5);
        let base = path.parent().unwrap_or(Path::new("."));
        let mut plugins = raw.plugins;
        if plugins.dir.is_relative() {
            plugins.dir = base.join(&plugins.dir);
        }
        plugins.cache_dir = match plugins.cache_dir.take() {
            Some(dir) if dir.is_relative() => Some(base.join(dir)),
            Some(dir) => Some(dir),
            None => crate::plugin::cache::default_dir(),
        };
        if let Some(cache) = &plugins.cache_dir
            && resolved(cache).starts_with(resolved(&plugins.dir))
        {
            // Cached artifacts are native code loaded as trusted: whoever may
            // deploy a plugin must not be able to plant one.
            return Err(error(vec![format!(
                "[plugins] cache_dir: {} is inside the plugin folder {}; compiled code must live where only the runner writes",
                cache.display(),
                plugins.dir.display()
            )]));
        }
        if let Some(lines) = &plugins.trusted_keys {
            let mut keys = Vec::new();
            let mut problems = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                match crate::plugin::trust::TrustedKey::parse(line) {
                    Ok(k) => keys.push(k),
                    Err(why) => {
                        let at = key_line(text, "plugins", "trusted_keys").unwrap_or(1);
                        problems.push(format!("line {at}: plugins.trusted_keys[{i}]: {why}"));
                    }
                }
            }
            if !problems.is_empty() {
                return Err(error(problems));
            }
            plugins.trusted = Some(keys);
        }
        let revoked: Vec<Result<String, String>> =
            plugins.revoked.iter().map(|e| crate::plugin::trust::parse_revoked(e)).collect();
        let problems: Vec<String> = revoked
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().err().map(|why| (i, why)))
            .map(|(i, why)| {
                let at = key_line(text, "plugins", "revoked").unwrap_or(1);
                format!("line {at}: plugins.revoked[{i}]: {why}")
            })
            .collect();
        if !problems.is_empty() {
            return Err(error(problems));
        }
        plugins.revoked = revoked.into_iter().flatten().collect();
        Ok(Config {
            path: path.to_path_buf(),
            database,
            runner: raw.runner,
            http: raw.http,
            log: raw.log,
            plugins,
            jobs,
        })
    }

    /// What is valid but probably not meant, one sentence each: printed by
    /// `runner check` and logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self.http.exposure_warning().into_iter().collect();
        let workers: usize = self.enabled_jobs().map(|(_, j)| j.workers).sum();
        if self.database.max_connections < workers {
            warnings.push(format!(
                "[database] max_connections = {} is less than the enabled jobs' workers together ({workers}): \
                 jobs wait on each other for connections; raise it to at least {workers}",
                self.database.max_connections
            ));
        }
        warnings
    }

    /// The enabled jobs.
    pub fn enabled_jobs(&self) -> impl Iterator<Item = (&String, &Job)> {
        self.jobs.iter().filter(|(_, j)| j.enabled)
    }

    /// The plugin file of a job.
    pub fn plugin_path(&self, job: &Job) -> PathBuf {
        self.plugins.dir.join(&job.plugin)
    }

    /// The job's shadow candidate: `vitals.wasm` → `vitals.candidate.wasm`.
    pub fn candidate_path(&self, job: &Job) -> PathBuf {
        let stem = job.plugin.strip_suffix(".wasm").unwrap_or(&job.plugin);
        self.plugins.dir.join(format!("{stem}.candidate.wasm"))
    }
}

/// Two enabled jobs reading the same raw table would split its groups
/// between them; two writing the same daily table would delete each
/// other's rows. Both are refused, naming the jobs and the table.
fn overlaps(jobs: &BTreeMap<String, Job>, lines: &BTreeMap<String, usize>) -> Vec<String> {
    let enabled: Vec<(&String, &Job)> = jobs.iter().filter(|(_, j)| j.enabled).collect();
    let mut problems = Vec::new();
    for (i, (a, ja)) in enabled.iter().enumerate() {
        for (b, jb) in &enabled[i + 1..] {
            for (what, ta, tb) in [("source", &ja.source, &jb.source), ("target", &ja.target, &jb.target)] {
                if same_table(ta, tb) {
                    problems.push(format!(
                        "line {}: jobs.{b}.{what}: jobs {a} (line {}) and {b} both use table {tb} as their {what}; \
                         only one enabled job may {}",
                        lines[*b],
                        lines[*a],
                        if what == "source" { "read a raw table" } else { "write a daily table" }
                    ));
                }
            }
        }
    }
    problems
}

/// Whether two names are the same table, `public.x` being `x`.
fn same_table(a: &Identifier, b: &Identifier) -> bool {
    let full = |t: &Identifier| if t.as_str().contains('.') { t.as_str().to_string() } else { format!("public.{t}") };
    full(a) == full(b)
}

/// A plausible IANA zone name or offset: it is embedded in SQL as a literal,
/// so nothing outside this set may reach it. Postgres itself says whether it
/// knows the zone (`runner check`).
fn is_zone_name(zone: &str) -> bool {
    !zone.is_empty() && zone.len() <= 64 && zone.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-:.".contains(c))
}

/// A path with `.` and `..` resolved lexically, for comparing folders that
/// may not exist yet.
/// `path` as the file system will resolve it: the longest part that exists
/// with its symlinks followed (canonicalized), the rest normalized. A cache
/// folder reached through a symlink into the plugin folder is inside it.
fn resolved(path: &Path) -> PathBuf {
    let path = normalized(path);
    let mut rest = Vec::new();
    let mut existing = path.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path,
        }
    }
}

fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The line of `key = ...` inside the `[section]` table of `text`, if it is
/// written there (the usual layout; `None` sends the caller to the header).
fn key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line.trim_start_matches('[').trim_end_matches(']').trim() == section;
        } else if inside
            && let Some(rest) = line.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(i + 1);
        }
    }
    None
}

/// The 1-based line of byte offset `at`.
fn line_number(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// serde stops at a file's first bad value; to show every problem at once,
/// each `[section]` is then read on its own, so that a bad value in one does
/// not hide a bad value in another. Returns the first error when sections
/// cannot be told apart (a syntax error, dotted keys).
fn every_section_error(text: &str, first: &toml::de::Error) -> Vec<String> {
    fn section<T: serde::de::DeserializeOwned>(body: &str, offset: usize, text: &str) -> Option<String> {
        let e = toml::from_str::<T>(body).err()?;
        // Missing keys are the whole file's business (the first pass says so).
        if e.message().starts_with("missing field") {
            return None;
        }
        let shifted = e.span().map(|s| s.start + offset);
        Some(match shifted {
            Some(at) => {
                let line = line_number(text, at);
                let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
                let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
                format!("line {line}, column {column}: {} (in `{snippet}`)", e.message().trim_end())
            }
            None => e.message().trim_end().to_string(),
        })
    }
    let first = describe_toml_error(first, text);
    if toml::from_str::<toml::Table>(text).is_err() {
        return vec![first];
    }
    // Sections by their header lines: (name, header start, body start).
    let mut starts: Vec<(String, usize, usize)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') && !t.starts_with("[[") {
            let name = t.trim_start_matches('[').trim_end_matches(']').trim().to_string();
            starts.push((name, offset, offset + line.len()));
        }
        offset += line.len();
    }
    let mut problems = Vec::new();
    for (i, (name, _, start)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(text.len(), |next| next.1);
        let body = &text[*start..end];
        let error = match name.as_str() {
            "database" => section::<Database>(body, *start, text),
            "runner" => section::<Runner>(body, *start, text),
            "http" => section::<Http>(body, *start, text),
            "log" => section::<Log>(body, *start, text),
            "plugins" => section::<Plugins>(body, *start, text),
            job if job.starts_with("jobs.") => section::<Job>(body, *start, text),
            _ => None,
        };
        problems.extend(error);
    }
    if !problems.contains(&first) {
        problems.insert(0, first);
    }
    problems
}

/// Turns toml's error (which already names the line, column and key) into one
/// compact line: `line 3, column 1: unknown field `foo`, expected ...`.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = line_number(text, start);
            let column = start - text[..start].rfind('\n').map_or(0, |i| i + 1) + 1;
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}, column {column}: {message} (in `{snippet}`)")
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[database]
url = "postgres://localhost/health"

[plugins]
dir = "plugins"

[jobs.vitals]
plugin = "vitals.wasm"
source = "vitals_raw"
target = "vitals_daily"
timestamp_column = "recorded_at"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/runner/runner.toml"))
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.plugins.dir, Path::new("/etc/runner/plugins"));
        let job = &c.jobs["vitals"];
        assert_eq!((job.batch_size, job.workers, job.max_attempts), (200, 2, 5));
        assert_eq!(job.timezone, "UTC");
        assert_eq!(c.database.max_connections, 4);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = GOOD.replace("timestamp_column", "batch = 3\ntimestamp_column");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("/etc/runner/runner.toml"), "{e}");
        assert!(e.contains("line 12, column 1: unknown field `batch`"), "{e}");
    }

    #[test]
    fn zero_pool_is_rejected_with_line() {
        let text = GOOD.replace("[plugins]", "max_connections = 0\n\n[plugins]");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("line 5, column 19: expected a number above 0, got 0"), "{e}");
    }

    #[test]
    fn wrong_type_is_rejected() {
        let text = GOOD.replace("[plugins]", "max_connections = \"many\"\n[plugins]");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("line 5") && e.contains("invalid type: string \"many\""), "{e}");
    }

    #[test]
    fn hostile_table_name_is_rejected() {
        let text = GOOD.replace("\"vitals_daily\"", "\"vitals_daily; drop table users\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("not a valid table or column name"), "{e}");
    }

    #[test]
    fn a_job_name_with_a_dot_or_over_39_bytes_is_refused_naming_why() {
        let e = parse(&GOOD.replace("[jobs.vitals]", "[jobs.\"a.b\"]")).unwrap_err().to_string();
        assert!(e.contains("[jobs.a.b]: a job name must be lower-case letters, digits and `_` (no `.`)"), "{e}");
        let longest = "v".repeat(39);
        assert!(parse(&GOOD.replace("[jobs.vitals]", &format!("[jobs.{longest}]"))).is_ok());
        let over = "v".repeat(40);
        let e = parse(&GOOD.replace("[jobs.vitals]", &format!("[jobs.{over}]"))).unwrap_err().to_string();
        assert!(e.contains("a job name may have at most 39 bytes"), "{e}");
    }

    #[test]
    fn collects_every_cross_field_problem() {
        let text = GOOD.replace("vitals.wasm", "vitals.so").replace("\"vitals_daily\"", "\"vitals_raw\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].starts_with("line 9: jobs.vitals.plugin: "), "{e}");
        assert!(e.problems[1].starts_with("line 8: jobs.vitals: `source` and `target`"), "{e}");
    }

    #[test]
    fn impossible_limits_are_rejected_with_their_key() {
        let text = GOOD.replace("timestamp_column", "max_batch_size = 10\ntime_limit = \"0s\"\ntimestamp_column");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        let all = e.problems.join("\n");
        assert!(all.contains("line 12: jobs.vitals.max_batch_size: must be at least batch_size (200)"), "{e}");
        assert!(all.contains("line 13: jobs.vitals.time_limit: expected a duration above 0"), "{e}");
    }

    #[test]
    fn the_reference_config_parses_with_every_job_enabled() {
        let text = include_str!("../../config/runner.toml");
        let c = Config::parse(text, Path::new("/repo/config/runner.toml")).unwrap();
        assert_eq!(c.jobs.keys().collect::<Vec<_>>(), ["lab", "nutrition", "vitals"]);
        assert!(c.jobs.values().all(|j| j.enabled));
        assert_eq!(c.plugins.dir, Path::new("/repo/config/../target/plugins"));
        assert_eq!(c.http.listen, "127.0.0.1:9187");
        assert!(!c.database.synchronous_commit);
    }

    #[test]
    fn settings_are_scalars_with_their_lines() {
        let e = parse(&format!("{GOOD}\n[jobs.vitals.settings]\nmax = nan\nwhen = 2024-01-01\n")).unwrap_err();
        let all = e.problems.join("\n");
        assert!(all.contains("jobs.vitals.settings.max: expected a finite number, got nan"), "{e}");
        assert!(all.contains("jobs.vitals.settings.when: expected a string, number or boolean, got datetime"), "{e}");
        let c = parse(&format!("{GOOD}\n[jobs.vitals.settings]\nmax = 220\nstrict = true\n")).unwrap();
        let job = &c.jobs["vitals"];
        let line = |n: usize| format!("{}:{n}", c.path.display());
        let table = GOOD.lines().count() + 2;
        assert_eq!(job.setting_origin(None), line(table));
        assert_eq!(job.setting_origin(Some("strict")), line(table + 2));
        assert_eq!(job.setting_origin(Some("unknown")), line(table));
        use crate::rows::Value;
        assert_eq!(job.setting_values()["max"], Value::Integer(220));
    }

    #[test]
    fn overlapping_jobs_are_refused_naming_both() {
        let other = "\n[jobs.more]\nplugin = \"more.wasm\"\nsource = \"public.vitals_raw\"\ntarget = \"vitals_daily\"\ntimestamp_column = \"t\"\n";
        let e = parse(&format!("{GOOD}{other}")).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        let all = e.problems.join("\n");
        assert!(all.contains("jobs more (line 14) and vitals both use table vitals_raw as their source"), "{e}");
        assert!(all.contains("both use table vitals_daily as their target"), "{e}");
        // A disabled job may share its tables (it is neither loaded nor run).
        let disabled = other.replace("[jobs.more]", "[jobs.more]\nenabled = false");
        assert!(parse(&format!("{GOOD}{disabled}")).is_ok());
    }

    #[test]
    fn zone_names_cannot_carry_sql() {
        let text = GOOD.replace("timestamp_column", "timestamp_zone = \"UTC'; drop table x; --\"\ntimestamp_column");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("jobs.vitals.timestamp_zone: `UTC'; drop table x; --` is not a time zone name"), "{e}");
    }

    #[test]
    fn the_compile_cache_may_not_live_in_the_plugin_folder() {
        let text = GOOD.replace("dir = \"plugins\"", "dir = \"plugins\"\ncache_dir = \"plugins/./x/../.cache\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("[plugins] cache_dir: /etc/runner/plugins/./x/../.cache is inside the plugin folder"),
            "{e}"
        );
        let text = GOOD.replace("dir = \"plugins\"", "dir = \"plugins\"\ncache_dir = \"/var/lib/runner\"");
        assert_eq!(parse(&text).unwrap().plugins.cache_dir.unwrap(), Path::new("/var/lib/runner"));
    }

    #[test]
    fn a_cache_folder_reached_through_a_symlink_into_the_plugin_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("plugins"), dir.path().join("looks-elsewhere")).unwrap();
        let path = dir.path().join("runner.toml");
        for cache in ["looks-elsewhere/cache", "looks-elsewhere", "looks-elsewhere/a/../b"] {
            let text = GOOD.replace("dir = \"plugins\"", &format!("dir = \"plugins\"\ncache_dir = \"{cache}\""));
            let e = Config::parse(&text, &path).unwrap_err().to_string();
            assert!(e.contains("is inside the plugin folder"), "{cache}: {e}");
        }
        // A symlinked plugin folder and a real cache beside it are fine.
        std::fs::create_dir(dir.path().join("cache")).unwrap();
        let text = GOOD.replace("dir = \"plugins\"", "dir = \"looks-elsewhere\"\ncache_dir = \"cache\"");
        assert!(Config::parse(&text, &path).is_ok());
    }

    #[test]
    fn zero_waits_and_a_busy_poll_are_refused_at_their_lines() {
        let text = GOOD.replace("[plugins]", "wait_timeout = \"0s\"\n\n[runner]\npoll_interval = \"0s\"\n\n[plugins]");
        let e = parse(&text).unwrap_err();
        assert_eq!(
            e.problems,
            [
                "line 5: database.wait_timeout: expected a duration above 0 (every wait is bounded)",
                "line 8: runner.poll_interval: expected at least 10ms (it paces an idle runner's checks), got 0ns",
            ],
            "{e}"
        );
    }

    #[test]
    fn bad_values_in_several_sections_are_all_reported() {
        let text = GOOD
            .replace("[plugins]", "max_connections = \"many\"\n\n[plugins]")
            .replace("timestamp_column", "workers = -1\ntimestamp_column");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].starts_with("line 5, column 19: invalid type: string \"many\""), "{e}");
        assert!(e.problems[1].starts_with("line 14, column 11: invalid value: integer `-1`"), "{e}");
    }

    #[test]
    fn a_pool_smaller_than_the_jobs_workers_is_warned_about() {
        let two_jobs = format!(
            "{GOOD}\n[jobs.more]\nplugin = \"more.wasm\"\nsource = \"more_raw\"\ntarget = \"more_daily\"\ntimestamp_column = \"at\"\nworkers = 3\n"
        );
        let small = parse(&two_jobs.replace("[database]\n", "[database]\nmax_connections = 4\n")).unwrap();
        let warnings = small.warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("max_connections = 4 is less than the enabled jobs' workers together (")),
            "{warnings:?}"
        );
        let enough = parse(&two_jobs.replace("[database]\n", "[database]\nmax_connections = 8\n")).unwrap();
        assert!(enough.warnings().is_empty(), "{:?}", enough.warnings());
    }

    #[test]
    fn a_listen_address_other_hosts_reach_without_a_token_is_warned_about() {
        let http = |listen: &str, token: Option<&str>| Http {
            listen: listen.into(),
            console_listen: None,
            admin_token: token.map(Into::into),
        };
        for quiet in ["127.0.0.1:9187", "127.0.0.2:1", "[::1]:9187", "localhost:9187", ""] {
            assert_eq!(http(quiet, None).exposure_warning(), None, "{quiet}");
        }
        for open in ["0.0.0.0:9187", "[::]:9187", "10.1.2.3:80", "runner.internal:9187"] {
            let warning = http(open, None).exposure_warning().unwrap_or_default();
            assert!(warning.contains(&format!("listen = \"{open}\" is reachable from other hosts")), "{warning}");
            assert_eq!(http(open, Some("a-long-enough-admin-token")).exposure_warning(), None);
            // Metrics for a remote Prometheus, the console on loopback: quiet.
            let split = Http { console_listen: Some("127.0.0.1:9188".into()), ..http(open, None) };
            assert_eq!(split.exposure_warning(), None);
            let warning = Http { console_listen: Some(open.into()), ..http("127.0.0.1:1", None) }.exposure_warning();
            assert!(warning.unwrap_or_default().contains("console_listen"), "{open}");
        }
    }
}

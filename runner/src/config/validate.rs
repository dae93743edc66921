//! The one validation pass: every cross-field problem of the file (jobs,
//! timeouts, paths, keys, the admin token, whatever the environment
//! overrides) is collected, so an operator sees them all at once, each at
//! its key's line.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use super::paths::resolved;
use super::sections::RawConfig;
use super::source::{every_section_error, key_line, line_number};
use super::{Config, ConfigError, Database, Http, Identifier, Job, JobName, Plugins, Runner};

/// The longest rolling window: a year of days.
const MAX_WINDOW_DAYS: u32 = 366;

/// What the environment replaces: `DATABASE_URL`, `RUNNER_ADMIN_TOKEN`
/// (when set and not empty).
#[derive(Debug, Default)]
pub(super) struct Overrides {
    pub database_url: Option<String>,
    pub admin_token: Option<String>,
}

impl Overrides {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Overrides { database_url: var("DATABASE_URL"), admin_token: var("RUNNER_ADMIN_TOKEN") }
    }
}

/// Parses `text` (the file at `path`) and checks it whole.
pub(super) fn build(text: &str, path: &Path, overrides: Overrides) -> Result<Config, ConfigError> {
    let error = |problems| ConfigError { path: path.to_path_buf(), problems };
    let raw: RawConfig = toml::from_str(text).map_err(|e| error(every_section_error(text, &e)))?;
    let mut problems = Vec::new();
    let jobs = jobs(raw.jobs, text, path, &mut problems);
    database(&raw.database, text, &mut problems);
    runner(&raw.runner, text, &mut problems);
    let plugins = plugins(raw.plugins, text, path, &mut problems);
    let mut http = raw.http;
    if let Some(token) = overrides.admin_token {
        http.admin_token = Some(token);
    }
    admin_token(&http, &mut problems);
    if !problems.is_empty() {
        return Err(error(problems));
    }
    let mut database = raw.database;
    if let Some(url) = overrides.database_url {
        database.url = url;
    }
    // A group's transaction idles while the live plugin and a shadow
    // candidate run; anything longer means the runner itself is stuck.
    let longest_call = jobs.values().map(|j| j.time_limit).max().unwrap_or_default();
    database.idle_in_transaction_timeout = database.statement_timeout + longest_call * 2 + Duration::from_secs(5);
    Ok(Config { path: path.to_path_buf(), database, runner: raw.runner, http, log: raw.log, plugins, jobs })
}

/// Each job checked alone (name, file, limits, zones, settings), then
/// against the others (shared tables).
fn jobs(
    raw: BTreeMap<String, toml::Spanned<Job>>,
    text: &str,
    path: &Path,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Job> {
    let line_of = |span: Range<usize>| line_number(text, span.start);
    let mut jobs = BTreeMap::new();
    let mut lines = BTreeMap::new();
    for (name, job) in raw {
        let line = line_of(job.span());
        let job = job.into_inner();
        let job = one_job(&name, job, line, text, path, problems);
        lines.insert(name.clone(), line);
        jobs.insert(name, job);
    }
    problems.extend(overlaps(&jobs, &lines));
    problems.extend(cycles(&jobs, &lines));
    jobs
}

fn one_job(name: &str, job: Job, header: usize, text: &str, path: &Path, problems: &mut Vec<String>) -> Job {
    // Each problem at its own key's line (the header's when the key is not written).
    let at = |key: &str| key_line(text, &format!("jobs.{name}"), key).unwrap_or(header);
    let line = header;
    if let Err(why) = JobName::parse(name) {
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
        problems.push(format!("line {}: jobs.{name}.time_limit: expected a duration above 0", at("time_limit")));
    }
    if job.max_batch_size.is_some_and(|m| m < job.batch_size) {
        problems.push(format!(
            "line {}: jobs.{name}.max_batch_size: must be at least batch_size ({})",
            at("max_batch_size"),
            job.batch_size
        ));
    }
    if job.window_days > MAX_WINDOW_DAYS {
        problems.push(format!(
            "line {}: jobs.{name}.window_days: expected at most {MAX_WINDOW_DAYS} (a year), got {}",
            at("window_days"),
            job.window_days
        ));
    }
    if job.window_days > 1 && job.period != super::Period::Day {
        problems.push(format!(
            "line {}: jobs.{name}.window_days: a window is a run of days; it needs period = \"day\"",
            at("window_days")
        ));
    }
    if job.zone_column.is_some() && job.user_zones.is_some() {
        problems.push(format!(
            "line {}: jobs.{name}: zone_column and [jobs.{name}.user_zones] both say whose day a row is; keep one",
            at("zone_column")
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
    let settings_origin = settings(name, &job, at("settings"), text, path, problems);
    Job { name: name.to_string(), origin: format!("{}:{line}", path.display()), settings_origin, ..job }
}

/// Checks a job's `[jobs.NAME.settings]` values; returns where each is written.
fn settings(
    name: &str,
    job: &Job,
    fallback_line: usize,
    text: &str,
    path: &Path,
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let section = format!("jobs.{name}.settings");
    let mut origin = BTreeMap::new();
    let table_line = text
        .lines()
        .position(|l| l.trim().trim_start_matches('[').trim_end_matches(']').trim() == section)
        .map_or(fallback_line, |i| i + 1);
    origin.insert(String::new(), format!("{}:{table_line}", path.display()));
    for (key, value) in &job.settings {
        let line = key_line(text, &section, key).unwrap_or(table_line);
        origin.insert(key.clone(), format!("{}:{line}", path.display()));
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
    origin
}

/// Every wait is bounded: no timeout may be 0.
fn database(db: &Database, text: &str, problems: &mut Vec<String>) {
    for (key, value) in [
        ("connect_timeout", db.connect_timeout),
        ("wait_timeout", db.wait_timeout),
        ("lock_timeout", db.lock_timeout),
        ("statement_timeout", db.statement_timeout),
    ] {
        if value.is_zero() {
            let line = key_line(text, "database", key).unwrap_or(1);
            problems.push(format!("line {line}: database.{key}: expected a duration above 0 (every wait is bounded)"));
        }
    }
}

fn runner(runner: &Runner, text: &str, problems: &mut Vec<String>) {
    if runner.poll_interval < Duration::from_millis(10) {
        let line = key_line(text, "runner", "poll_interval").unwrap_or(1);
        problems.push(format!(
            "line {line}: runner.poll_interval: expected at least 10ms (it paces an idle runner's checks), got {:?}",
            runner.poll_interval
        ));
    }
}

fn admin_token(http: &Http, problems: &mut Vec<String>) {
    if http.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        problems.push("[http] admin_token: expected at least 16 characters (it guards every action)".into());
    }
}

/// Folders resolved against the file's, the cache kept out of the plugin
/// folder, trusted keys and revoked hashes parsed.
fn plugins(mut plugins: Plugins, text: &str, path: &Path, problems: &mut Vec<String>) -> Plugins {
    let base = path.parent().unwrap_or(Path::new("."));
    if plugins.dir.is_relative() {
        plugins.dir = base.join(&plugins.dir);
    }
    plugins.cache_dir = match plugins.cache_dir.take() {
        Some(dir) if dir.is_relative() => Some(base.join(dir)),
        Some(dir) => Some(dir),
        None => super::paths::default_cache_dir(),
    };
    if let Some(cache) = &plugins.cache_dir
        && resolved(cache).starts_with(resolved(&plugins.dir))
    {
        // Cached artifacts are native code loaded as trusted: whoever may
        // deploy a plugin must not be able to plant one.
        problems.push(format!(
            "[plugins] cache_dir: {} is inside the plugin folder {}; compiled code must live where only the runner writes",
            cache.display(),
            plugins.dir.display()
        ));
    }
    let listed =
        |key: &str, entries: &[String], parse: &dyn Fn(&str) -> Result<(), String>, problems: &mut Vec<String>| {
            for (i, entry) in entries.iter().enumerate() {
                if let Err(why) = parse(entry) {
                    let at = key_line(text, "plugins", key).unwrap_or(1);
                    problems.push(format!("line {at}: plugins.{key}[{i}]: {why}"));
                }
            }
        };
    use crate::trust::{TrustedKey, parse_revoked};
    if let Some(lines) = &plugins.trusted_keys {
        listed("trusted_keys", lines, &|l| TrustedKey::parse(l).map(drop), problems);
        plugins.trusted = Some(lines.iter().filter_map(|l| TrustedKey::parse(l).ok()).collect());
    }
    listed("revoked", &plugins.revoked, &|e| parse_revoked(e).map(drop), problems);
    plugins.revoked = plugins.revoked.iter().filter_map(|e| parse_revoked(e).ok()).collect();
    plugins
}

/// Two enabled jobs writing the same daily table would delete each
/// other's rows: refused, naming the jobs and the table. Several jobs may
/// read one raw table: change capture queues keys per job.
fn overlaps(jobs: &BTreeMap<String, Job>, lines: &BTreeMap<String, usize>) -> Vec<String> {
    let enabled: Vec<(&String, &Job)> = jobs.iter().filter(|(_, j)| j.enabled).collect();
    let mut problems = Vec::new();
    for (i, (a, ja)) in enabled.iter().enumerate() {
        for (b, jb) in &enabled[i + 1..] {
            if same_table(&ja.target, &jb.target) {
                problems.push(format!(
                    "line {}: jobs.{b}.target: jobs {a} (line {}) and {b} both use table {} as their target; \
                     only one enabled job may write a daily table",
                    lines[*b], lines[*a], jb.target
                ));
            }
        }
    }
    problems
}

/// A job may read another's target (a rollup of a rollup), but not its
/// own, directly or through others: its writes would queue its own groups
/// for ever. Each cycle is refused once, naming its jobs in order.
fn cycles(jobs: &BTreeMap<String, Job>, lines: &BTreeMap<String, usize>) -> Vec<String> {
    let enabled: Vec<(&String, &Job)> = jobs.iter().filter(|(_, j)| j.enabled).collect();
    // The jobs that read what `job` writes.
    let readers = |job: &Job| -> Vec<&String> {
        enabled.iter().filter(|(_, r)| same_table(&r.source, &job.target)).map(|(n, _)| *n).collect()
    };
    let mut problems = Vec::new();
    let mut reported: Vec<Vec<&String>> = Vec::new();
    for (start, _) in &enabled {
        // Depth-first along target → source edges, back to `start`.
        let mut stack: Vec<Vec<&String>> = vec![vec![*start]];
        while let Some(path) = stack.pop() {
            let last = &jobs[*path.last().expect("a path has a job")];
            for next in readers(last) {
                if next == *start && path.len() == 1 {
                    // Its own target: said by the job's own check.
                } else if next == *start {
                    let mut members = path.clone();
                    members.sort();
                    if !reported.contains(&members) {
                        reported.push(members);
                        let chain: Vec<&str> = path.iter().map(|n| n.as_str()).chain([start.as_str()]).collect();
                        problems.push(format!(
                            "line {}: jobs.{start}: its rows feed themselves back: {} (each job's target is the next one's \
                             source); a job may not read its own target, directly or through others",
                            lines[*start],
                            chain.join(" → ")
                        ));
                    }
                } else if !path.contains(&next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
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

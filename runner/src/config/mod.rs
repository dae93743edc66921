//! The runner's TOML configuration: parsed strictly (unknown keys are
//! errors), then validated as a whole so an operator sees every problem at
//! once, each with the file, the key and the line.
//!
//! By concern: `sections` (the schema and its defaults), `validate` (the
//! one pass over the whole file), `source` (lines and toml's errors),
//! `paths`, `settings`, and `reload` (what a changed file means for a
//! running daemon).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod paths;
pub mod reload;
mod sections;
mod settings;
mod source;
mod validate;

pub use crate::db::ident::{Identifier, JobName};
pub use paths::default_cache_dir;
pub use sections::{Database, Http, Job, Log, LogFormat, Period, Plugins, Runner, UserZones, WeekStart, defaults};
pub use settings::{setting_from_arg, setting_value};

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

/// Everything wrong with a config file, one problem per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid config {}:\n{}", path.display(), problems.join("\n"))]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

impl Config {
    /// Reads, parses and validates `path`. `DATABASE_URL` and
    /// `RUNNER_ADMIN_TOKEN`, when set and not empty, replace `[database]
    /// url` and `[http] admin_token` (and are checked with the rest).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            problems: vec![format!("cannot read the file: {e}")],
        })?;
        validate::build(&text, path, validate::Overrides::from_env())
    }

    /// Parses and validates config text, without the environment's
    /// overrides; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        validate::build(text, path, validate::Overrides::default())
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
#[cfg(test)]
mod tests;

//! `runner plugin validate | test | new | diff | keygen | sign | verify |
//! rollback`: the plugin author's, CI's and the operator's commands on
//! plugin files. Only `validate --job` and `diff` need the database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use runner::config::Config;
use runner::pipeline;
use runner::plugin::purity::Probe;
use runner::plugin::{Limits, Plugin, Runtime, WORLD, settings};
use runner::rows::Column;
use runner::trust;

use super::connect;

mod diff;
mod template;
mod try_rows;

#[derive(Subcommand)]
pub enum Command {
    /// Check that FILE is a component of our WIT world, print what it
    /// describes, and (with --job) that its output fits the job's tables.
    /// Exits 1 with one sentence per problem. CI runs this before deploying.
    ///
    /// Example: runner plugin validate target/plugins/vitals.wasm --config config/runner.toml --job vitals
    Validate {
        file: PathBuf,
        /// Check against this job of the config file (needs the database).
        #[arg(long)]
        job: Option<String>,
    },
    /// Run FILE on rows from a CSV or JSON file, with no database, and print
    /// each group's output rows, rejected count, errors and time.
    ///
    /// The input has a column per declared input column, plus `at` (RFC 3339
    /// timestamp), and optionally `user_id` (default 1), `id` and `group`
    /// (YYYY-MM-DD: the group's date, for rows of several days in one group,
    /// as a window or a week gives them; default: the UTC day of `at`).
    /// Exits 1 if any group failed.
    ///
    /// Example: runner plugin test target/plugins/vitals.wasm --input readings.csv
    Test {
        file: PathBuf,
        /// Rows as CSV (with a header) or as a JSON array of objects (`.json`).
        #[arg(long, value_name = "ROWS")]
        input: PathBuf,
        /// Print the output as JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Memory limit per group, in MiB.
        #[arg(long, default_value_t = runner::config::defaults::memory_limit_mb())]
        memory_limit_mb: usize,
        /// Time limit per group, e.g. 2s.
        #[arg(long, default_value = "2s", value_parser = humantime_serde::re::humantime::parse_duration)]
        time_limit: std::time::Duration,
        /// A setting for this run, NAME=VALUE (repeatable; VALUE as in TOML:
        /// 220, 0.5, true, "text"). Overrides the job's (--job).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Take the settings, limits and group bounds (period, window,
        /// zone) of this job of the config file (--config); no database is
        /// needed.
        #[arg(long)]
        job: Option<String>,
        /// What a group spans, as a job's `period`: its `group` date is the
        /// period's first day (default: the job's, else day).
        #[arg(long, value_enum)]
        period: Option<runner::config::Period>,
        /// A rolling window of this many days ending on the `group` date
        /// (default: the job's `window_days`, else 1).
        #[arg(long)]
        window_days: Option<u32>,
        /// The zone the group's days are read in, for a row with no `zone`
        /// field of its own (default: the job's `timezone`, else UTC).
        #[arg(long)]
        zone: Option<String>,
    },
    /// Create a new plugin (a Rust crate, or a Python or JavaScript project)
    /// that builds, passes its own test and validates.
    ///
    /// Example: runner plugin new sleep --dir plugins --lang python
    New {
        /// The plugin's name: lower-case letters, digits and `_`.
        name: String,
        /// Folder to create the crate in (as <dir>/<name>).
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// Path to the plugin kit crate (default: the one this runner was built
        /// from); Rust only.
        #[arg(long)]
        kit: Option<PathBuf>,
        /// The plugin's language: rust (a crate with the kit), python
        /// (componentize-py) or javascript (componentize-js).
        #[arg(long, value_enum, default_value = "rust")]
        lang: template::Lang,
    },
    /// Preview what a new plugin would change in a job's daily rows: read
    /// real groups from the job's raw table (read-only, locking nothing,
    /// writing nothing), run the live plugin and FILE on each, and compare.
    /// Exits 0, or 1 with --fail-on-diff when anything differs (a plugin
    /// failing on a group counts), or 2 for bad usage.
    ///
    /// Example: runner plugin diff target/plugins/vitals.wasm --job vitals --days 7 --fail-on-diff
    Diff(diff::Args),
    /// Make a signing key pair: NAME.key (the secret, mode 0600: keep it in
    /// CI's secret store) and NAME.pub (one line to paste into `[plugins]
    /// trusted_keys`), in the current folder.
    ///
    /// Example: runner plugin keygen ci-2026
    Keygen {
        /// The key's name, shown beside its id in logs and status.
        name: String,
    },
    /// Sign FILE with a secret key: writes FILE.sig (an Ed25519 signature
    /// over the file's SHA-256, the file name it is deployed under and the
    /// signing time) beside it. Deploy the .sig first, then the file. A
    /// runner refuses a file signed earlier than its live version (a
    /// downgrade) unless it was signed with --allow-downgrade or put back
    /// with `rollback`.
    ///
    /// Example: runner plugin sign target/plugins/vitals.wasm --key ci-2026.key
    Sign {
        file: PathBuf,
        /// The secret key (NAME.key from `keygen`).
        #[arg(long, value_name = "NAME.key")]
        key: PathBuf,
        /// The file name it is deployed under in the plugin folder, when
        /// not FILE's own (a signature is valid for that name only).
        #[arg(long = "as", value_name = "NAME.wasm")]
        name: Option<String>,
        /// Let this file replace a newer signed version (a deliberate
        /// downgrade; recorded in the signature).
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Say whether FILE is signed by a key of the config's `[plugins]
    /// trusted_keys`, and by which. Exits 0 when it would load, 1 when not.
    ///
    /// Example: runner plugin verify plugins/vitals.wasm --config /etc/runner/runner.toml
    Verify { file: PathBuf },
    /// Put back the job's previous live plugin: the newest version kept in
    /// <plugins dir>/.kept/<file>/ (the runner keeps the last 3 that went
    /// live) whose content differs from the file now in the folder. It is
    /// written over the live file with its signature, and a running daemon
    /// loads it like any deploy (checked and verified again). Run twice, it
    /// goes back to where it was.
    ///
    /// Example: runner plugin rollback --job vitals --config /etc/runner/runner.toml
    Rollback {
        /// The job whose plugin to roll back.
        #[arg(long)]
        job: String,
    },
}

pub async fn run(command: Command, config_path: &Path) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { file, job } => validate(&file, job.as_deref(), config_path).await,
        Command::Test { file, input, json, memory_limit_mb, time_limit, set, job, period, window_days, zone } => {
            let mut limits = Limits::new(memory_limit_mb << 20, time_limit, pipeline::default_limits());
            let mut values = std::collections::BTreeMap::new();
            let mut origin = "--set".to_string();
            let mut frame = runner::rows::Frame { zone: Some("UTC".into()), ..Default::default() };
            if let Some(name) = &job {
                let config = Config::load(config_path)?;
                let cfg = config
                    .jobs
                    .get(name.as_str())
                    .ok_or_else(|| super::Usage(format!("there is no job `{name}` in {}", config_path.display())))?;
                limits = pipeline::job_limits(cfg);
                values = cfg.setting_values();
                frame = pipeline::job::frame(cfg, false);
                origin = format!("job {name} of {} or --set", config_path.display());
            }
            for arg in &set {
                let (name, value) = runner::config::setting_from_arg(arg).map_err(super::Usage)?;
                values.insert(name, value);
            }
            let plugin = Plugin::load(&cli_runtime(config_path)?, &file, limits)?;
            // Undeclared, mistyped or missing required settings: each named.
            let at = |_: Option<&str>| origin.clone();
            let settings = settings::resolve(&plugin.description.settings, &values, &at)
                .map_err(|problems| super::Usage(problems.join("\n")))?;
            frame.span = match (period, window_days) {
                (Some(runner::config::Period::Week), _) => runner::rows::Span::Week,
                (Some(runner::config::Period::Month), _) => runner::rows::Span::Month,
                (_, Some(n)) => runner::rows::Span::Days(n.max(1)),
                (Some(runner::config::Period::Day), None) => runner::rows::Span::Days(1),
                (None, None) => frame.span,
            };
            if let Some(zone) = zone {
                frame.zone = Some(zone.into());
            }
            let plugin = plugin.configure(settings).in_frame(frame);
            if !json {
                let declared = !plugin.description.settings.is_empty();
                match declared {
                    true => println!("settings: {} ({})", plugin.settings.json(), plugin.version),
                    false => println!("settings: none declared ({})", plugin.version),
                }
            }
            try_rows::run(&plugin, &input, json, limits)
        }
        Command::New { name, dir, kit, lang } => template::create(&name, &dir, kit.as_deref(), lang),
        Command::Diff(args) => diff::run(args, config_path).await,
        Command::Keygen { name } => {
            let (secret, public, key) = trust::keygen(Path::new("."), &name)?;
            println!("Wrote {} (secret, mode 0600) and {}.", secret.display(), public.display());
            println!("Key id {}. Trust it with, in the runner's TOML:", key.id);
            println!("[plugins]\ntrusted_keys = [\"{}\"]", key.line());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign { file, key, name, allow_downgrade } => {
            let (sig, id) = trust::sign(&file, &key, &trust::SignAs { name, allow_downgrade })?;
            println!("Wrote {} (key {id}).", sig.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback { job } => rollback(&job, config_path),
        Command::Verify { file } => {
            let config = Config::load(config_path)?;
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            match config.plugins.trust().check(&file, &bytes) {
                Ok(None) => {
                    println!(
                        "{}: not verified: {} sets no [plugins] trusted_keys, so any plugin loads",
                        file.display(),
                        config_path.display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Ok(Some(signer)) => {
                    println!("{}: signed by trusted key {} ({})", file.display(), signer.key_id, signer.name);
                    if let Some(warning) = signer.legacy_warning() {
                        println!("warning: {warning}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("{}: refused: {why}", file.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn rollback(job: &str, config_path: &Path) -> anyhow::Result<ExitCode> {
    use runner::plugin::kept;
    let config = Config::load(config_path)?;
    let cfg = config
        .jobs
        .get(job)
        .ok_or_else(|| super::Usage(format!("there is no job `{job}` in {}", config_path.display())))?;
    let live = config.plugin_path(cfg);
    let now = std::fs::read(&live).ok().map(|b| runner::plugin::sha256_hex(&b));
    let Some(previous) = kept::newest_other_than(&live, now.as_deref()) else {
        anyhow::bail!(
            "no earlier version of {} is kept in {} (the runner keeps each version that goes live, from this release on)",
            live.display(),
            kept::folder(&live).display()
        );
    };
    let bytes = std::fs::read(&previous.path).with_context(|| format!("reading {}", previous.path.display()))?;
    // Asked for: the daemon lets this kept version replace a newer one.
    kept::ask_rollback(&live, &previous.hash)?;
    // The signature first, so the daemon finds it waiting for the file.
    let (kept_sig, live_sig) = (trust::sig_path(&previous.path), trust::sig_path(&live));
    match std::fs::read(&kept_sig) {
        Ok(sig) => kept::write_atomically(&live_sig, &sig)?,
        Err(_) if live_sig.exists() => std::fs::remove_file(&live_sig)?,
        Err(_) => {}
    }
    kept::write_atomically(&live, &bytes)?;
    let went_live = chrono::DateTime::<chrono::Utc>::from(previous.live_at).format("%Y-%m-%d %H:%M:%S UTC");
    println!(
        "Rolled back {} to the version that last went live at {went_live} (sha256 {}).",
        live.display(),
        &previous.hash[..16]
    );
    println!("A running daemon checks and loads it within seconds: its log says \"Plugin swapped\".");
    Ok(ExitCode::SUCCESS)
}

/// The runtime of the plugin commands, with the daemon's compile cache
/// (the config's `cache_dir` when the config file loads, else the default
/// state directory): the second `test`, `validate` or `diff` of a file
/// loads it without compiling. No trusted keys: these commands look at a
/// file before it is signed.
pub(super) fn cli_runtime(config_path: &Path) -> anyhow::Result<Runtime> {
    let cache = match Config::load(config_path) {
        Ok(config) => config.plugins.cache_dir,
        Err(_) => runner::config::default_cache_dir(),
    };
    Runtime::new(cache)
}

fn columns(columns: &[Column]) -> String {
    columns.iter().map(|c| format!("{} {}", c.name, c.kind)).collect::<Vec<_>>().join(", ")
}

async fn validate(file: &Path, job: Option<&str>, config_path: &Path) -> anyhow::Result<ExitCode> {
    let (config, limits) = match job {
        Some(name) => {
            let config = Config::load(config_path)?;
            let cfg = config.jobs.get(name).with_context(|| format!("no job `{name}` in {}", config_path.display()))?;
            let limits = pipeline::job_limits(cfg);
            (Some((config.clone(), name.to_string())), limits)
        }
        None => (None, pipeline::default_limits()),
    };
    let plugin = match Plugin::load(&cli_runtime(config_path)?, file, limits) {
        Ok(p) => p,
        Err(e) => {
            println!("problem: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let d = &plugin.description;
    let wit_version = plugin.wit_version.as_deref().unwrap_or("?");
    println!("{}: a component of {WORLD}@{wit_version}", file.display());
    println!("  plugin:        {}", plugin.version);
    println!("  input:         {}", columns(&d.input));
    println!("  output:        {}", columns(&d.output));
    let key: Vec<&str> = ["user_id", "day"].into_iter().chain(d.key.iter().map(String::as_str)).collect();
    println!("  key:           ({})", key.join(", "));
    for s in &d.settings {
        let default = s
            .default
            .as_ref()
            .map_or_else(|| "required".to_string(), |v| format!("default {}", settings::json_value(v)));
        // The doc is the plugin's text: escaped like every plugin string
        // that reaches a terminal (no escape codes, no forged lines).
        let doc = runner::plugin::contract::sanitize(&s.doc, settings::MAX_DOC_BYTES);
        println!("  setting:       {} {} ({default}): {doc}", s.name, s.kind);
    }
    let Some((config, name)) = config else { return Ok(ExitCode::SUCCESS) };
    let cfg = &config.jobs[&name];
    let checked = match pipeline::configure(cfg, &plugin) {
        Ok(plugin) => {
            let pool = connect(&config).await?;
            pipeline::check_tables(&pool.get().await?, cfg, Some(&plugin)).await.map(|shape| (shape, plugin))
        }
        Err(problems) => Err(problems),
    };
    match checked {
        Ok((shape, plugin)) => {
            println!("job {name}: fits {} -> {}", cfg.source, cfg.target);
            let client = connect(&config).await?.get().await?;
            let live = pipeline::job::Live::new(cfg, shape, std::sync::Arc::new(plugin.clone()));
            match pipeline::purity::probe_at_load(&client, &name, &live, limits).await {
                Probe::Pure => println!("  purity:        pure (groups A, B, A on one instance match fresh instances)"),
                Probe::Inconclusive(why) => println!("  purity:        not probed: {why}"),
                Probe::Stateful(found) => println!(
                    "warning: job {name}: the plugin keeps state between groups ({}: {}): the runner runs its \
                     groups on fresh instances (docs/writing-a-plugin.md, \"No state between groups\")",
                    found.key, found.difference
                ),
            }
            for warning in
                runner::db::schema::unwritten_in(&**client, cfg, &plugin.description, &plugin.version).await?
            {
                println!("warning: job {name}: {warning}");
            }
            if !plugin.settings.values.is_empty() {
                println!("  settings:      {} as {}", plugin.settings.json(), plugin.version);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in problems {
                println!("problem: job {name}: {p}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

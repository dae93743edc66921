//! Hot reload. Watches the plugin folder and the config file; a changed
//! plugin is built to one side (compiled or taken from the cache,
//! instantiated, described, checked against the job's tables) and swapped in
//! only if all of that succeeds. A rejected file is logged with the reason
//! and the previous version keeps running; a deleted file pauses its job.
//! Changed settings that can apply live do; the rest say they need a restart.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::job::{Job, JobState, Live};
use super::{check_tables, job_limits};
use crate::config::{self, Config};
use crate::db::schema::SourceShape;
use crate::plugin::watch::FolderWatch;
use crate::plugin::{Plugin, Runtime, sha256_hex};

/// Quiet time that ends a burst of file events.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// A burst is cut off after this long, so a file written forever still loads.
const MAX_BURST: Duration = Duration::from_secs(2);
/// Rescan anyway this often: covers missed events and recreated folders.
const RESCAN: Duration = Duration::from_secs(5);

/// What was last seen of a file: its size, modification time and hash, and
/// the size and modification time of its `.sig` (a signature written after
/// the file is a change too).
#[derive(Clone, PartialEq)]
struct Seen {
    len: u64,
    mtime: (i64, i64),
    hash: String,
    sig: Option<(u64, (i64, i64))>,
}

fn sig_stamp(path: &Path) -> Option<(u64, (i64, i64))> {
    let meta = std::fs::metadata(crate::trust::sig_path(path)).ok()?;
    Some((meta.len(), (meta.mtime(), meta.mtime_nsec())))
}

enum Look {
    Missing,
    /// There, but cannot be read (permissions, a folder): the old version stays.
    Unreadable(String),
    Unchanged,
    /// New content: the bytes and their SHA-256.
    Changed(Vec<u8>, String),
}

pub struct Deployer {
    runtime: Runtime,
    pool: Pool,
    /// The config in force (live settings applied, restart-only ones as started).
    config: Config,
    config_hash: String,
    jobs: Vec<Arc<Job>>,
    seen: HashMap<PathBuf, Seen>,
    /// Files refused for a reason outside their bytes (the database was
    /// unreachable, a table did not fit yet): compiled and described, checked
    /// against the tables again on every rescan until they fit.
    waiting: HashMap<PathBuf, Arc<Plugin>>,
    /// The last reason each shadow candidate was refused.
    candidate_errors: HashMap<PathBuf, String>,
    /// Per job, the settings rejection it shows: cleared once the config
    /// says again what is in force (edited back) or new settings apply.
    settings_rejections: HashMap<String, String>,
}

/// Why a file was not swapped in.
struct Rejection {
    reason: String,
    /// The plugin itself is fine; the database or its tables were not.
    retry: Option<Arc<Plugin>>,
}

impl Deployer {
    pub fn new(config: Config, pool: Pool, runtime: Runtime, jobs: Vec<Arc<Job>>) -> Self {
        let config_hash = std::fs::read(&config.path).map(|b| sha256_hex(&b)).unwrap_or_default();
        Deployer {
            runtime,
            pool,
            config,
            config_hash,
            jobs,
            seen: HashMap::new(),
            waiting: HashMap::new(),
            candidate_errors: HashMap::new(),
            settings_rejections: HashMap::new(),
        }
    }

    /// Watches and applies changes until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (tx, mut events) = mpsc::unbounded_channel();
        let config_dir = self.config.path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let mut watch = FolderWatch::new(vec![self.config.plugins.dir.clone(), config_dir], tx);
        metrics::gauge!("runner_config_refused").set(0.0);
        loop {
            tokio::select! {
                Some(()) = events.recv() => {
                    // Debounce: wait for a quiet moment, at most MAX_BURST.
                    let burst = Instant::now();
                    while burst.elapsed() < MAX_BURST
                        && let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await
                    {}
                }
                _ = tokio::time::sleep(RESCAN) => {}
                _ = shutdown.changed() => return,
            }
            watch.ensure();
            self.sync_config().await;
            for job in self.jobs.clone() {
                self.sync_job(&job).await;
            }
        }
    }

    fn look(&mut self, path: &Path) -> Look {
        let Ok(meta) = std::fs::metadata(path) else {
            self.seen.remove(path);
            return Look::Missing;
        };
        let mtime = (meta.mtime(), meta.mtime_nsec());
        let sig = sig_stamp(path);
        if let Some(seen) = self.seen.get(path)
            && seen.len == meta.len()
            && seen.mtime == mtime
            && seen.sig == sig
        {
            return Look::Unchanged;
        }
        let bytes = match crate::plugin::read_in_folder(path) {
            Ok(bytes) => bytes,
            Err(why) => {
                self.seen.remove(path);
                return Look::Unreadable(why);
            }
        };
        let hash = sha256_hex(&bytes);
        let unchanged = self.seen.get(path).is_some_and(|s| s.hash == hash && s.sig == sig);
        self.seen.insert(path.to_path_buf(), Seen { len: bytes.len() as u64, mtime, hash: hash.clone(), sig });
        if unchanged { Look::Unchanged } else { Look::Changed(bytes, hash) }
    }

    /// Builds a plugin to one side, refuses a downgrade of `live`, and
    /// checks it against the job's tables.
    async fn build(
        &self,
        cfg: &config::Job,
        path: &Path,
        bytes: Vec<u8>,
        live: Option<&Plugin>,
    ) -> Result<(SourceShape, Arc<Plugin>), Rejection> {
        let (runtime, owned, limits) = (self.runtime.clone(), path.to_path_buf(), job_limits(cfg));
        let plugin = tokio::task::spawn_blocking(move || Plugin::from_bytes(&runtime, &owned, &bytes, limits))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| format!("{e:#}")))
            .and_then(|p| super::not_older(&self.config.plugin_path(cfg), &p, live).map(|()| p))
            .map_err(|reason| Rejection { reason, retry: None })?;
        self.fit(cfg, Arc::new(plugin)).await
    }

    /// Configures a built plugin with the job's settings and checks it
    /// against the job's tables. Either may heal without a new file (a
    /// config fix, a migration), so the plugin is kept for a retry.
    async fn fit(&self, cfg: &config::Job, plugin: Arc<Plugin>) -> Result<(SourceShape, Arc<Plugin>), Rejection> {
        let configured = match super::configure(cfg, &plugin) {
            Ok(configured) => Arc::new(configured),
            Err(problems) => return Err(Rejection { reason: problems.join("; "), retry: Some(plugin) }),
        };
        let checked = match self.pool.get().await {
            Ok(client) => check_tables(&client, cfg, Some(&configured)).await.map_err(|p| p.join("; ")),
            Err(e) => Err(format!("cannot check it against the tables: {e}")),
        };
        match checked {
            Ok(shape) => {
                if let Ok(client) = self.pool.get().await {
                    super::probe_purity(&client, cfg, &shape, &configured).await;
                }
                Ok((shape, configured))
            }
            Err(reason) => Err(Rejection { reason, retry: Some(plugin) }),
        }
    }

    /// A changed file built, or a waiting one checked again; `None` when
    /// there is nothing new to try.
    async fn attempt(
        &mut self,
        cfg: &config::Job,
        path: &Path,
        look: Look,
        live: Option<&Plugin>,
        live_hash: Option<&str>,
    ) -> Option<Result<(SourceShape, Arc<Plugin>), Rejection>> {
        let result = match look {
            Look::Changed(bytes, hash) if live_hash != Some(hash.as_str()) => self.build(cfg, path, bytes, live).await,
            Look::Unchanged if self.waiting.contains_key(path) => {
                let plugin = self.waiting[path].clone();
                self.fit(cfg, plugin).await
            }
            _ => return None,
        };
        match &result {
            Err(Rejection { retry: Some(plugin), .. }) => {
                self.waiting.insert(path.to_path_buf(), plugin.clone());
            }
            _ => {
                self.waiting.remove(path);
            }
        }
        Some(result)
    }

    /// Brings one job's live plugin and shadow candidate in line with the folder.
    async fn sync_job(&mut self, job: &Job) {
        let state = job.current();
        if !state.config.enabled {
            return;
        }
        self.sync_live(job, &state).await;
        self.sync_candidate(job, &state).await;
    }

    /// Swaps, pauses or keeps the job's live plugin after a look at its file.
    async fn sync_live(&mut self, job: &Job, state: &JobState) {
        let path = self.config.plugin_path(&state.config);
        // An unverified live plugin is built again whenever its file or
        // signature is looked at anew: a signature added later clears it.
        let unverified = job.health().unverified.is_some();
        let live_hash = state.live.as_ref().filter(|_| !unverified).map(|l| l.plugin.hash.clone());
        let live_plugin = state.live.as_ref().map(|l| &*l.plugin);
        let look = self.look(&path);
        // A recheck of a waiting file (nothing changed on disk) is logged only when its reason changes.
        let recheck = matches!(look, Look::Unchanged);
        match look {
            Look::Missing if state.live.is_some() => {
                warn!(job = %job.name, file = %path.display(), "Plugin file is gone: job paused, its changes stay queued.");
                metrics::counter!("runner_plugin_reloads_total", "job" => job.name.clone(), "result" => "paused")
                    .increment(1);
                self.waiting.remove(&path);
                job.update(|s| JobState { live: None, ..s.clone() });
            }
            Look::Unreadable(reason) => {
                let mut last = job.last_reload_error.lock().expect("lock");
                if last.as_deref() != Some(reason.as_str()) {
                    warn!(job = %job.name, file = %path.display(), reason = %reason,
                        "Plugin file cannot be read; the previous version keeps running.");
                    metrics::counter!("runner_plugin_reloads_total", "job" => job.name.clone(), "result" => "rejected")
                        .increment(1);
                    *last = Some(reason);
                }
            }
            look => match self.attempt(&state.config, &path, look, live_plugin, live_hash.as_deref()).await {
                Some(Ok((shape, plugin))) => {
                    // Swapped first, said after: whoever reads the log line
                    // (an operator, CI, a test) finds the new version live.
                    // Loaded under the keys in force: verified if any are.
                    job.set_health(|h| h.unverified = None);
                    *job.last_reload_error.lock().expect("lock") = None;
                    let live = plugin.clone();
                    job.update(|s| JobState { live: Some(Live::new(&s.config, shape, live)), ..s.clone() });
                    info!(job = %job.name, file = %path.display(), from = %state.live.as_ref().map_or("none", |l| &*l.plugin.version),
                        to = %plugin.version, signer = %signer_of(&plugin), "Plugin swapped.");
                    metrics::counter!("runner_plugin_reloads_total", "job" => job.name.clone(), "result" => "swapped")
                        .increment(1);
                    super::remember(&job.name, &path, &plugin);
                    if let Ok(client) = self.pool.get().await {
                        super::warn_unwritten(&client, &job.name, &state.config, &plugin).await;
                    }
                }
                Some(Err(Rejection { reason, retry })) => {
                    let reason = match retry {
                        Some(_) => format!("{}: {reason} (checked again every {}s)", path.display(), RESCAN.as_secs()),
                        None => format!("{}: {reason}", path.display()),
                    };
                    let mut last = job.last_reload_error.lock().expect("lock");
                    if !recheck || last.as_deref() != Some(reason.as_str()) {
                        warn!(job = %job.name, file = %path.display(), reason = %reason,
                            "Plugin rejected; the previous version keeps running.");
                        metrics::counter!("runner_plugin_reloads_total", "job" => job.name.clone(), "result" => "rejected").increment(1);
                        *last = Some(reason);
                    }
                }
                None => {}
            },
        }
    }

    /// Loads, swaps or stops the job's shadow candidate after a look at its file.
    async fn sync_candidate(&mut self, job: &Job, state: &JobState) {
        let live_plugin = state.live.as_ref().map(|l| &*l.plugin);
        let path = self.config.candidate_path(&state.config);
        let look = self.look(&path);
        match look {
            Look::Missing => {
                if job.current().candidate.is_some() {
                    info!(job = %job.name, file = %path.display(), "Shadow candidate removed.");
                    job.update(|s| JobState { candidate: None, ..s.clone() });
                }
                self.waiting.remove(&path);
                self.candidate_errors.remove(&path);
                job.set_candidate_error(None);
            }
            Look::Unreadable(reason) => self.refuse_candidate(job, &path, reason),
            look => match self.attempt(&state.config, &path, look, live_plugin, None).await.map(|r| {
                // A candidate is given the live plugin's input rows (cut to its
                // width): it must read the live plugin's first input columns.
                r.and_then(|(shape, plugin)| match &job.current().live {
                    Some(live) if !live.plugin.description.input.starts_with(&plugin.description.input) => {
                        Err(Rejection {
                            reason: "it reads other input columns than the live plugin, so it cannot run beside it; \
                                     compare it with `runner plugin diff` instead"
                                .into(),
                            retry: None,
                        })
                    }
                    _ => Ok((shape, plugin)),
                })
            }) {
                Some(Ok((_, plugin))) => {
                    self.candidate_errors.remove(&path);
                    job.set_candidate_error(None);
                    let version = plugin.version.clone();
                    job.update(|s| {
                        let framed = s.live.as_ref().map_or(plugin.clone(), |l| l.frame_candidate(&s.config, &plugin));
                        JobState { candidate: Some(framed), ..s.clone() }
                    });
                    info!(job = %job.name, candidate = %version, "Shadow candidate loaded: it runs beside the live plugin and writes nothing.");
                }
                Some(Err(Rejection { reason, .. })) => self.refuse_candidate(job, &path, reason),
                None => {}
            },
        }
    }

    /// A candidate file that did not pass: the shadow stops (what runs
    /// beside the live plugin is always the file in the folder), promote
    /// refuses it, and `/plugins`, the console and `status` say why. Logged
    /// once per reason: a waiting candidate is checked on every rescan.
    fn refuse_candidate(&mut self, job: &Job, path: &Path, reason: String) {
        job.set_candidate_error(Some(format!("{}: {reason}", path.display())));
        if job.current().candidate.is_some() {
            job.update(|s| JobState { candidate: None, ..s.clone() });
        }
        if self.candidate_errors.insert(path.to_path_buf(), reason.clone()).as_ref() != Some(&reason) {
            warn!(job = %job.name, file = %path.display(), reason = %reason, "Shadow candidate rejected.");
            metrics::counter!("runner_plugin_reloads_total", "job" => job.name.clone(), "result" => "rejected")
                .increment(1);
        }
    }

    /// Applies a changed config file: live settings now, a warning for the rest.
    async fn sync_config(&mut self) {
        let Ok(bytes) = std::fs::read(&self.config.path) else { return };
        let hash = sha256_hex(&bytes);
        if hash == self.config_hash {
            return;
        }
        self.config_hash = hash;
        let new = match Config::load(&self.config.path) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "Config rejected; the running config stays in force.");
                metrics::counter!("runner_config_reloads_total", "result" => "rejected").increment(1);
                metrics::gauge!("runner_config_refused").set(1.0);
                return;
            }
        };
        metrics::gauge!("runner_config_refused").set(0.0);
        let reload = config::reload::diff(&self.config, &new);
        for what in &reload.restart {
            warn!(setting = %what, "Config changed a setting that needs a restart to take effect.");
        }
        if reload.trust_changed {
            self.apply_trust(&new);
        }
        self.config.runner.poll_interval = reload.live.runner.poll_interval;
        for job in self.jobs.clone() {
            if let Some(next) = reload.live.jobs.get(&job.name) {
                self.reconfigure(&job, next);
            }
        }
        metrics::counter!("runner_config_reloads_total", "result" => "applied").increment(1);
        info!(path = %self.config.path.display(), "Config reloaded.");
    }

    /// Applies a job's changed settings and limits (everything but its
    /// structure) to its next batch and group.
    fn reconfigure(&mut self, job: &Job, next: &config::Job) {
        let Some(old) = self.config.jobs.get(&job.name).cloned() else { return };
        // Everything but the job's structure applies to the next batch and group.
        let mut live = next.clone();
        // Settings apply to the live plugin and the candidate at once, or
        // not at all: the old ones stay while the new ones do not fit.
        let state = job.current();
        let mut reconfigured = None;
        if live.settings == old.settings
            && let Some(shown) = self.settings_rejections.remove(&job.name)
        {
            let mut last = job.last_reload_error.lock().expect("lock");
            if last.as_deref() == Some(shown.as_str()) {
                info!(job = %job.name, "Settings are back to those in force; the rejection is cleared.");
                *last = None;
            }
        }
        if live.settings != old.settings {
            let apply = |p: &Plugin| super::configure(&live, p).map(Arc::new);
            let plugin = state.live.as_ref().map(|l| apply(&l.plugin)).transpose();
            let candidate = state.candidate.as_deref().map(apply).transpose();
            match (plugin, candidate) {
                (Ok(plugin), Ok(candidate)) => {
                    if let Some(p) = &plugin {
                        info!(job = %job.name, plugin = %p.version, settings = %p.settings.json(), "Settings applied.");
                    }
                    *job.last_reload_error.lock().expect("lock") = None;
                    self.settings_rejections.remove(&job.name);
                    reconfigured = Some((plugin, candidate));
                }
                (Err(problems), _) | (_, Err(problems)) => {
                    let reason = problems.join("; ");
                    error!(job = %job.name, reason = %reason, "Settings rejected; the previous settings stay in force.");
                    metrics::counter!("runner_config_reloads_total", "result" => "rejected").increment(1);
                    *job.last_reload_error.lock().expect("lock") = Some(reason.clone());
                    self.settings_rejections.insert(job.name.clone(), reason);
                    live.settings = old.settings.clone();
                    live.settings_origin = old.settings_origin.clone();
                }
            }
        }
        // The statements read at most max_group_rows: built again when it changes.
        let reads_changed = live.max_group_rows != old.max_group_rows;
        self.config.jobs.insert(job.name.clone(), live.clone());
        let poll_interval = self.config.runner.poll_interval;
        job.update(|s| {
            let mut next = JobState { limits: job_limits(&live), poll_interval, ..s.clone() };
            if reads_changed {
                next.live = s.live.as_ref().map(|l| l.with_plugin(&live, l.plugin.clone()));
            }
            if let Some((plugin, candidate)) = reconfigured {
                next.live = match (&s.live, plugin) {
                    (Some(l), Some(p)) => Some(l.with_plugin(&live, p)),
                    (l, _) => l.clone(),
                };
                next.candidate = match (&next.live, candidate) {
                    (Some(l), Some(c)) => Some(l.frame_candidate(&live, &c)),
                    (_, c) => c,
                };
            }
            JobState { config: live, ..next }
        });
    }
}

impl Deployer {
    /// Key rotation, live: the next load of any file checks the new keys
    /// (every file is looked at again now). A live plugin that the new keys
    /// would not load (unsigned while keys were off, or signed by a removed
    /// key) keeps running, since stopping would stop aggregation; it is
    /// logged at error level and named on `/ready` until a verified file
    /// replaces it or the keys trust it again.
    fn apply_trust(&mut self, new: &Config) {
        let ids: Vec<&str> = new.plugins.trusted.iter().flatten().map(|k| k.id.as_str()).collect();
        info!(trusted_keys = ?ids, revoked = new.plugins.revoked.len(),
            "Trusted keys or revoked hashes changed; they apply to every load from now on.");
        for job in &self.jobs {
            let state = job.current();
            let Some(live) = &state.live else { continue };
            let why = match (&new.plugins.trusted, &live.plugin.signer) {
                _ if new.plugins.revoked.contains(&live.plugin.hash) => Some(format!(
                    "{} is revoked in [plugins] revoked: put a good version back with `runner plugin rollback --job {}` or deploy one",
                    live.plugin.version, job.name
                )),
                (None, _) => None,
                (Some(_), None) => Some(format!("{} is not signed, and trusted_keys is now set", live.plugin.version)),
                (Some(_), Some(s)) if !ids.contains(&s.key_id.as_str()) => {
                    Some(format!("{} was signed by {}, a key no longer trusted", live.plugin.version, s.key_id))
                }
                (Some(_), Some(_)) => None,
            };
            // Shown on /ready before it is logged, as a swap is.
            job.set_health(|h| h.unverified = why.clone());
            if let Some(why) = &why {
                error!(job = %job.name, reason = %why, "The live plugin is no longer trusted: it keeps running until a trusted file replaces it, and its next reload will be refused.");
            }
        }
        self.runtime.set_trust(new.plugins.trust());
        self.config.plugins.trusted = new.plugins.trusted.clone();
        self.config.plugins.trusted_keys = new.plugins.trusted_keys.clone();
        self.config.plugins.revoked = new.plugins.revoked.clone();
        // Every file is verified again, waiting ones included.
        self.seen.clear();
        self.waiting.clear();
    }
}

/// `key-id (name)`, or `unverified`.
fn signer_of(plugin: &Plugin) -> String {
    plugin.signer.as_ref().map_or_else(|| "unverified".into(), |s| format!("{} ({})", s.key_id, s.name))
}

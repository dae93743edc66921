//! Aggregation plugins: loading a component of our WIT world, asking it to
//! describe itself, and calling it on groups inside limited stores: a fresh
//! instance per group, or one per transaction ([`Session`]) while the
//! plugin is verified to be a function of its input ([`purity`]).

mod bindings;
pub mod cache;
pub mod contract;
pub mod engine;
pub mod kept;
pub mod purity;
mod session;
pub mod settings;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::error::Context as _;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use crate::rows::{Description, GroupKey, InputRow, Output};
use crate::trust;
pub use bindings::WIT_VERSIONS;
use bindings::{HostState, Pre};
pub use engine::Runtime;
pub use session::{Reuse, Session};
pub use settings::Settings;

/// Memory, time and log lines a plugin may use for one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub time: Duration,
    /// Log lines kept per call; the rest are counted and dropped.
    pub log_lines: u32,
    /// Bytes kept of one log line; the rest is cut.
    pub log_line_bytes: usize,
}

impl Limits {
    /// These memory and time limits, and log limits of `logs_as`.
    pub fn new(memory_bytes: usize, time: Duration, logs_as: Limits) -> Self {
        Limits { memory_bytes, time, ..logs_as }
    }
}

/// A loaded plugin: compiled once, instantiated for every group or
/// transaction.
/// Cloning is cheap (the compiled code is shared): a job's plugin is a
/// clone [configured](Plugin::configure) with the job's settings.
#[derive(Clone)]
pub struct Plugin {
    backend: Backend,
    pub path: PathBuf,
    pub description: Description,
    /// `name@version+sha256:<12 hex>`, then `+settings:<12 hex>` when the
    /// job sets any setting: names the exact component and settings that
    /// produced a row (`plugin_version`).
    pub version: Arc<str>,
    /// The version without settings: the file alone.
    pub file_version: Arc<str>,
    /// The settings every call sees (`host.settings`).
    pub settings: Settings,
    /// Full SHA-256 of the file, hex.
    pub hash: String,
    /// The `health:aggregation` package version the plugin was built against.
    pub wit_version: Option<String>,
    /// When this runner loaded it.
    pub loaded_at: std::time::SystemTime,
    /// The trusted key that signed it (`None`: plugins are not verified).
    pub signer: Option<trust::Signer>,
    /// How the job's groups span days, and their zone: one day in no zone
    /// until the plugin goes live for a job ([`Plugin::in_frame`]).
    pub frame: crate::rows::Frame,
    /// Calls made on reused instances, shared by its clones: every
    /// `verify_every`-th is checked on a fresh one too ([`Session`]).
    reused_calls: Arc<std::sync::atomic::AtomicU64>,
}

/// Native aggregation logic: `(group, rows) -> output or the plugin's error`.
pub type NativeFn = dyn Fn(GroupKey, Vec<InputRow>) -> Result<Output, String> + Send + Sync;

/// Where a plugin's code runs.
#[derive(Clone)]
enum Backend {
    /// A WebAssembly component, sandboxed.
    Wasm { pre: Pre, runtime: Runtime },
    /// The same logic compiled into the host, unsandboxed: only for
    /// measuring what the WebAssembly boundary costs (the benchmark).
    Native(Arc<NativeFn>),
}

/// The WIT world every plugin implements (any of [`WIT_VERSIONS`]).
pub const WORLD: &str = "health:aggregation/aggregator";

/// What the first bytes of a file say it is.
fn file_kind(bytes: &[u8]) -> Result<(), &'static str> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(
            "is a core WebAssembly module, not a component: build it with `cargo build --target wasm32-wasip2`, which emits a component",
        ),
        _ => Err("is not a WebAssembly file (it does not start with the `\\0asm` header)"),
    }
}

/// Why a call into a plugin did not produce output. Every case fails the
/// group; the message names the cause.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin's own verdict (`plugin-error`).
    #[error("plugin error: {0}")]
    Plugin(String),
    #[error("exceeded its time limit of {0:?}")]
    TimeLimit(Duration),
    #[error("exceeded its memory limit of {mib} MiB ({1})", mib = .0 >> 20)]
    MemoryLimit(usize, String),
    /// A trap or any other failure inside the component (panic, memory limit, ...).
    #[error("trapped: {0}")]
    Trap(String),
}

impl Plugin {
    /// Loads, compiles and links `path`, then asks the plugin to describe
    /// itself. Fails with a message naming the file when it is not a
    /// component of our world.
    pub fn load(runtime: &Runtime, path: &Path, limits: Limits) -> anyhow::Result<Plugin> {
        let bytes = std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))?;
        Self::from_bytes(runtime, path, &bytes, limits)
    }

    /// As [`Plugin::load`], for bytes already read from `path`. A component
    /// too large for the pooling allocator's slots (many core instances,
    /// memories or tables, as interpreter-based toolchains make) is loaded
    /// on an on-demand engine instead.
    pub fn from_bytes(runtime: &Runtime, path: &Path, bytes: &[u8], limits: Limits) -> anyhow::Result<Plugin> {
        // Fail closed, before the compiler ever sees the file.
        let signer = runtime
            .trust()
            .check(path, bytes)
            .map_err(|why| anyhow::anyhow!("plugin {} refused: {why}", path.display()))?;
        if let Some(warning) = signer.as_ref().and_then(trust::Signer::legacy_warning) {
            tracing::warn!(file = %path.display(), "{warning}");
        }
        let hash = sha256_hex(bytes);
        // Found out once (and recorded beside the cache), not at every load:
        // trying the pooling engine first costs a whole load of a large file.
        let known = runtime.pooling && runtime.cache.as_ref().is_some_and(|c| c.on_demand_known(&hash));
        let attempt = if known {
            Self::from_bytes_on(&runtime.on_demand()?, path, bytes, &hash, limits)
        } else {
            Self::from_bytes_on(runtime, path, bytes, &hash, limits)
        };
        let plugin = match attempt {
            Err(Refused::ByPoolingLimits(why)) => {
                tracing::info!(file = %path.display(), reason = %why.root_cause(),
                    "Component exceeds the pooling allocator's per-component limits; allocating its instances on demand.");
                if let Some(cache) = &runtime.cache {
                    cache.mark_on_demand(&hash);
                }
                Self::from_bytes_on(&runtime.on_demand()?, path, bytes, &hash, limits)
            }
            result => result,
        }
        .map_err(Refused::into_error)?;
        Ok(Plugin { signer, ..plugin })
    }

    fn from_bytes_on(
        runtime: &Runtime,
        path: &Path,
        bytes: &[u8],
        hash: &str,
        limits: Limits,
    ) -> Result<Plugin, Refused> {
        let component = Self::compile(runtime, path, bytes, hash)?;
        Ok(Self::link(runtime, path, component, hash, limits)?)
    }

    /// The file as a compiled component of `runtime`'s engine (from the
    /// cache when it is there). A component the on-demand engine compiles
    /// but the pooling engine does not was refused by the pooling
    /// allocator's per-component limits, not for anything of its own.
    fn compile(runtime: &Runtime, path: &Path, bytes: &[u8], hash: &str) -> Result<Component, Refused> {
        if let Err(why) = file_kind(bytes) {
            return Err(Refused::Other(anyhow::anyhow!("plugin {} {why}", path.display())));
        }
        if let Some(component) = runtime.cache.as_ref().and_then(|c| c.get(&runtime.engine, &cache_key(runtime, hash)))
        {
            return Ok(component);
        }
        let refused = |why: anyhow::Error| {
            Refused::Other(why.context(format!("plugin {} is not a valid WebAssembly component", path.display())))
        };
        let component = match Component::new(&runtime.engine, bytes) {
            Ok(component) => component,
            Err(why) if runtime.pooling => {
                let twin = runtime.on_demand()?;
                return match Component::new(&twin.engine, bytes) {
                    Ok(component) => {
                        if let Some(cache) = &twin.cache {
                            cache.put(&twin.engine, &cache_key(&twin, hash), &component);
                        }
                        Err(Refused::ByPoolingLimits(anyhow::Error::from(why)))
                    }
                    Err(_) => Err(refused(anyhow::Error::from(why))),
                };
            }
            Err(why) => return Err(refused(anyhow::Error::from(why))),
        };
        if let Some(cache) = &runtime.cache {
            cache.put(&runtime.engine, &cache_key(runtime, hash), &component);
        }
        Ok(component)
    }

    /// Links a compiled component to the runner's world and asks it to
    /// describe itself.
    fn link(
        runtime: &Runtime,
        path: &Path,
        component: Component,
        hash: &str,
        limits: Limits,
    ) -> anyhow::Result<Plugin> {
        let hash = hash.to_string();
        let wit_version = component.component_type().imports(&runtime.engine).find_map(|(name, _)| {
            let (package, version) = name.split_once('@')?;
            package.starts_with("health:aggregation/").then(|| version.to_string())
        });
        if let Some(version) = wit_version.as_deref().filter(|v| !WIT_VERSIONS.contains(v)) {
            anyhow::bail!(
                "plugin {} is built against health:aggregation@{version}, which this runner does not provide \
                 (it provides {}): upgrade the runner, or build the plugin against a version it provides",
                path.display(),
                WIT_VERSIONS.join(", ")
            );
        }
        let other_world = |why: &str| {
            let version = wit_version.as_deref().unwrap_or(WIT_VERSIONS[WIT_VERSIONS.len() - 1]);
            format!("plugin {} is not a component of the world {WORLD}@{version}: {why}", path.display())
        };
        let instance_pre = runtime
            .linker
            .instantiate_pre(&component)
            .with_context(|| other_world("it imports something the runner does not provide"))?;
        let pre = Pre::new(instance_pre, wit_version.as_deref())
            .with_context(|| other_world("it does not export `describe` and `aggregate` with the expected types"))?;

        let placeholder: Arc<str> = Arc::from(format!("{} (loading)", path.display()));
        let mut store = new_store(runtime, placeholder, None, limits, Settings::default());
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| call_error(e, limits, &store))
            .with_context(|| format!("instantiating plugin {}", path.display()))?;
        store.set_epoch_deadline(engine::ticks(limits.time));
        let description: Description = instance
            .describe(&mut store)
            .map_err(|e| call_error(e, limits, &store))
            .with_context(|| format!("plugin {}: `describe` failed", path.display()))?;
        store.data_mut().finish_logs();
        // Before anything else reads it: the description is untrusted input.
        if let Err(problems) = contract::check_description(&description) {
            anyhow::bail!("plugin {} describes itself out of bounds: {}", path.display(), problems.join("; "));
        }
        let version: Arc<str> =
            Arc::from(format!("{}@{}+sha256:{}", description.name, description.version, &hash[..12]));
        // Until a job configures it: the declared defaults (all there is
        // for `plugin test` and the benchmark).
        let defaults = settings::resolve(&description.settings, &Default::default(), &|_| String::new());
        Ok(Plugin {
            backend: Backend::Wasm { pre, runtime: runtime.clone() },
            path: path.to_path_buf(),
            description,
            file_version: version.clone(),
            version,
            settings: defaults.unwrap_or_default(),
            hash,
            wit_version,
            loaded_at: std::time::SystemTime::now(),
            signer: None,
            frame: Default::default(),
            reused_calls: Arc::default(),
        })
    }

    /// Runs the plugin on one group in a fresh store and instance, so a trap
    /// loses only this group. Blocking: call it from a blocking thread.
    pub fn aggregate(&self, key: GroupKey, rows: Vec<InputRow>, limits: Limits) -> Result<Output, CallError> {
        self.aggregate_on_fresh(key, rows, limits, false)
    }

    /// As [`Plugin::aggregate`]; a `quiet` call is a check, its log lines dropped.
    fn aggregate_on_fresh(
        &self,
        key: GroupKey,
        rows: Vec<InputRow>,
        limits: Limits,
        quiet: bool,
    ) -> Result<Output, CallError> {
        if let Backend::Native(f) = &self.backend {
            return f(key, rows).map_err(CallError::Plugin);
        }
        let mut warm = self.instantiate(key, limits)?;
        if quiet {
            warm.store.data_mut().quiet();
        }
        let result = warm.call(self, key, rows, limits);
        warm.store.data_mut().finish_logs();
        result
    }

    /// A fresh store and instance, for group `key`.
    fn instantiate(&self, key: GroupKey, limits: Limits) -> Result<Warm, CallError> {
        let Backend::Wasm { pre, runtime } = &self.backend else {
            return Err(CallError::Trap("a native plugin has no instance".into()));
        };
        let mut store = new_store(runtime, self.version.clone(), Some(key), limits, self.settings.clone());
        match pre.instantiate(&mut store) {
            Ok(instance) => Ok(Warm { store, instance, served: 0 }),
            Err(e) => {
                let e = call_error(e, limits, &store);
                store.data_mut().finish_logs();
                Err(e)
            }
        }
    }

    /// Why this plugin's file was found stateful, if it was.
    pub fn stateful(&self) -> Option<purity::Stateful> {
        match &self.backend {
            Backend::Wasm { runtime, .. } => runtime.stateful(&self.hash),
            Backend::Native(_) => None,
        }
    }

    /// Records that this plugin's file is stateful; whether that is news.
    pub fn mark_stateful(&self, found: purity::Stateful) -> bool {
        match &self.backend {
            Backend::Wasm { runtime, .. } => runtime.mark_stateful(&self.hash, found),
            Backend::Native(_) => false,
        }
    }

    /// For benchmarks only, not how the runner calls a plugin: the time of
    /// each of `calls` calls on one group, all on one instance, to show what
    /// a fresh instance per group costs (docs/performance.md, "Per-language
    /// cost of a group").
    pub fn time_calls_on_one_instance(
        &self,
        key: GroupKey,
        rows: &[InputRow],
        limits: Limits,
        calls: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        if let Backend::Native(f) = &self.backend {
            return (0..calls)
                .map(|_| {
                    let rows = rows.to_vec();
                    let started = std::time::Instant::now();
                    f(key, rows).map_err(|e| anyhow::anyhow!(e))?;
                    Ok(started.elapsed())
                })
                .collect();
        }
        let mut warm = self.instantiate(key, limits)?;
        (0..calls)
            .map(|_| {
                let rows = rows.to_vec();
                let started = std::time::Instant::now();
                warm.call(self, key, rows, limits)?;
                Ok(started.elapsed())
            })
            .collect()
    }
}

/// A store and its instance of a plugin, and the groups it has served.
struct Warm {
    store: Store<HostState>,
    instance: bindings::Instance,
    served: u32,
}

impl Warm {
    /// Calls the instance of `plugin` on one group, under `limits`.
    fn call(
        &mut self,
        plugin: &Plugin,
        key: GroupKey,
        rows: Vec<InputRow>,
        limits: Limits,
    ) -> Result<Output, CallError> {
        // The deadline counts from now: arm it right before the call.
        self.store.set_epoch_deadline(engine::ticks(limits.time));
        let store = &mut self.store;
        let group = (key, &plugin.frame, &plugin.description);
        match self.instance.aggregate(store, group, rows).map_err(|e| call_error(e, limits, store))? {
            Ok(output) => Ok(output),
            Err(message) => Err(CallError::Plugin(contract::excerpt_long(&message))),
        }
    }
}

/// A compiled component's key in the cache: the artifacts of the two
/// engines differ (slot layout), so they are keyed apart.
fn cache_key(runtime: &Runtime, hash: &str) -> String {
    if runtime.pooling { hash.to_string() } else { format!("{hash}-ondemand") }
}

/// Why a file did not load on an engine.
enum Refused {
    /// The pooling allocator's per-component limits (core instances,
    /// memories, tables, instance sizes): it loads on an on-demand engine.
    ByPoolingLimits(anyhow::Error),
    /// The file itself.
    Other(anyhow::Error),
}

impl Refused {
    fn into_error(self) -> anyhow::Error {
        match self {
            Refused::ByPoolingLimits(e) | Refused::Other(e) => e,
        }
    }
}

impl From<anyhow::Error> for Refused {
    fn from(e: anyhow::Error) -> Self {
        Refused::Other(e)
    }
}

/// One line for `aggregation_error`: which limit a call hit, or the trap's
/// own message (or the error's outermost one), not a backtrace.
fn call_error(e: wasmtime::Error, limits: Limits, store: &Store<HostState>) -> CallError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::TimeLimit(limits.time),
        Some(trap) => CallError::Trap(trap.to_string()),
        // The limiter refused a memory.grow (`trap_on_grow_failure`).
        None if store.data().limits.memory_refused => CallError::MemoryLimit(limits.memory_bytes, e.to_string()),
        None => CallError::Trap(e.to_string()),
    }
}

impl Plugin {
    /// A plugin whose logic is compiled into the host (no sandbox, no
    /// limits): for benchmarks only. Its version reads `name@version+native`.
    pub fn native(description: Description, f: Box<NativeFn>) -> Plugin {
        let version: Arc<str> = Arc::from(format!("{}@{}+native", description.name, description.version));
        Plugin {
            backend: Backend::Native(Arc::from(f)),
            path: PathBuf::from("<native>"),
            description,
            file_version: version.clone(),
            version,
            settings: Settings::default(),
            hash: String::new(),
            wit_version: None,
            loaded_at: std::time::SystemTime::now(),
            signer: None,
            frame: Default::default(),
            reused_calls: Arc::default(),
        }
    }

    /// This plugin with a job's settings: every call sees them, and its
    /// version names them when the job sets any.
    pub fn configure(&self, settings: Settings) -> Plugin {
        let version = match &settings.hash {
            Some(hash) => Arc::from(format!("{}+settings:{hash}", self.file_version)),
            None => self.file_version.clone(),
        };
        Plugin { version, settings, ..self.clone() }
    }

    /// This plugin as a job with `frame` runs it: what it is told of each
    /// group's days and zone.
    pub fn in_frame(&self, frame: crate::rows::Frame) -> Plugin {
        Plugin { frame, ..self.clone() }
    }

    /// Checks a group's output against the contract (`contract::check_output`).
    pub fn check_output(&self, output: &Output) -> Result<(), String> {
        contract::check_output(&self.description, output)
    }
}

/// Core instances one component may create: interpreter-based components
/// (componentize-py: 38) create many; the count is fixed by the file, so
/// this only bounds a hostile one.
const MAX_CORE_INSTANCES: usize = 1000;

fn new_store(
    runtime: &Runtime,
    plugin: Arc<str>,
    group: Option<crate::rows::GroupKey>,
    limits: Limits,
    settings: Settings,
) -> Store<HostState> {
    let store_limits = StoreLimitsBuilder::new()
        .memory_size(limits.memory_bytes)
        .instances(MAX_CORE_INSTANCES)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(&runtime.engine, HostState::new(store_limits, plugin, group, limits, settings));
    store.limiter(|s| &mut s.limits);
    // Instantiation runs guest code (start functions) too.
    store.set_epoch_deadline(engine::ticks(limits.time));
    store
}

/// The SHA-256 of `bytes` in lowercase hex: how a plugin file is known
/// (its `hash`, its cache key, what the deployer last saw, what promote renames).
/// Reads a file of the plugin folder. A symbolic link is followed only to
/// a file inside the folder: one that leads elsewhere is refused, so that
/// whoever may write the folder cannot have the runner load (or quote in
/// its errors) any other file it can read.
pub fn read_in_folder(path: &Path) -> Result<Vec<u8>, String> {
    let linked = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if linked {
        let folder = path.parent().map(std::fs::canonicalize);
        let target = std::fs::canonicalize(path);
        match (folder, target) {
            (Some(Ok(folder)), Ok(target)) if target.starts_with(&folder) => {}
            (_, Ok(target)) => {
                return Err(format!(
                    "{} is a symbolic link to {}, outside the plugin folder: refused (deploy the file itself, or \
                     link within the folder)",
                    path.display(),
                    target.display()
                ));
            }
            (_, Err(e)) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component of `modules` core modules, each defining a memory and
    /// instantiated once.
    fn component_with_memories(modules: usize) -> Vec<u8> {
        let body: String = (0..modules)
            .map(|i| format!("(core module $m{i} (memory 1)) (core instance (instantiate $m{i}))"))
            .collect();
        wat::parse_str(format!("(component {body})")).expect("valid component text")
    }

    #[test]
    fn a_component_over_the_pooling_limits_is_told_from_a_bad_file_without_reading_messages() {
        let runtime = Runtime::new(None).unwrap();
        if !runtime.pooling {
            return; // a host that refuses the pooling allocator's reservation has no limits to exceed
        }
        let path = Path::new("plugins/x.wasm");
        // Within the limits (4 memories a component): compiled on the pooling engine.
        assert!(Plugin::compile(&runtime, path, &component_with_memories(4), "a").is_ok());
        // Over them: the pooling engine refuses it, the on-demand one takes it.
        let over = Plugin::compile(&runtime, path, &component_with_memories(5), "b");
        assert!(matches!(over, Err(Refused::ByPoolingLimits(_))));
        // Not a component at all: refused for itself.
        let bad = Plugin::compile(&runtime, path, b"\0asm\x0d\0\x01\0garbage", "c");
        assert!(matches!(bad, Err(Refused::Other(_))));
    }
}

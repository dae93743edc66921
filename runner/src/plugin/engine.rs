//! The one wasmtime `Engine` of the process, its shared `Linker`, and the
//! epoch ticker that turns wall-time limits into traps.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::HostState;
use super::cache::Cache;
use super::purity::Stateful;
use crate::trust::Trust;

/// How often the epoch advances; time limits are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine and linker every plugin is compiled and instantiated with,
/// and the cache of compiled components.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub linker: Arc<Linker<HostState>>,
    pub cache: Option<Cache>,
    /// Whether `engine` uses the pooling allocator.
    pub pooling: bool,
    /// An on-demand engine for components larger than the pool's slots
    /// (interpreter-based ones: componentize-py, componentize-js), made on
    /// first need.
    fallback: Arc<std::sync::OnceLock<Result<Runtime, String>>>,
    /// `[plugins] trusted_keys` and `revoked` in force; a config reload
    /// changes them for the next load.
    trust: Arc<std::sync::RwLock<Arc<Trust>>>,
    /// Plugin files found stateful, by SHA-256 (shared with the twin):
    /// their groups run on fresh instances until the file changes.
    stateful: Arc<std::sync::Mutex<std::collections::HashMap<String, Stateful>>>,
}

impl Runtime {
    /// Creates the engine with epoch interruption and starts its ticker.
    /// With `cache`, compiled components are kept in that folder.
    pub fn new(cache: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        Self::build(cache, true)
    }

    /// Sets what a plugin must pass to load: the keys it must be signed
    /// by (`None`: any plugin loads) and the hashes that never load.
    pub fn set_trust(&self, trust: Trust) {
        let trust = Arc::new(trust);
        if let Some(Ok(fallback)) = self.fallback.get() {
            *fallback.trust.write().unwrap_or_else(std::sync::PoisonError::into_inner) = trust.clone();
        }
        *self.trust.write().unwrap_or_else(std::sync::PoisonError::into_inner) = trust;
    }

    /// The trust settings in force.
    pub fn trust(&self) -> Arc<Trust> {
        self.trust.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Why the file of SHA-256 `hash` is stateful, if it was found so.
    pub fn stateful(&self, hash: &str) -> Option<Stateful> {
        self.stateful.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(hash).cloned()
    }

    /// Records that the file of SHA-256 `hash` is stateful (the first
    /// finding stands); returns whether it was not known before.
    pub fn mark_stateful(&self, hash: &str, found: Stateful) -> bool {
        let mut known = self.stateful.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.contains_key(hash) {
            return false;
        }
        known.insert(hash.to_string(), found);
        true
    }

    /// The on-demand twin of a pooling runtime (itself if it is one).
    pub fn on_demand(&self) -> anyhow::Result<Runtime> {
        if !self.pooling {
            return Ok(self.clone());
        }
        let dir = self.cache.as_ref().map(|c| c.dir().to_path_buf());
        let twin = self
            .fallback
            .get_or_init(|| {
                let mut twin = Self::build(dir, false).map_err(|e| format!("{e:#}"))?;
                twin.stateful = self.stateful.clone();
                twin.set_trust(Trust::clone(&self.trust()));
                Ok(twin)
            })
            .clone()
            .map_err(anyhow::Error::msg)?;
        Ok(twin)
    }

    fn build(cache: Option<std::path::PathBuf>, pooled: bool) -> anyhow::Result<Self> {
        let mut config = Config::new();
        // Traps are reported in one line; no backtraces to capture.
        config.wasm_component_model(true).epoch_interruption(true).wasm_backtrace_max_frames(None);
        // An instance per group: the pooling allocator keeps memory slots
        // mapped and resets them copy-on-write, instead of an mmap, page
        // faults and munmap for every group. It reserves address space up
        // front, which constrained hosts may refuse: then allocate on demand.
        let mut pooling = pooled;
        if pooled {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(self::pooling()));
        } else {
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
        }
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(error = %e, "Pooling instance allocator unavailable; allocating instances on demand.");
                pooling = false;
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).context("creating the WebAssembly engine")?
            }
        };

        let mut linker = Linker::new(&engine);
        // Rust std guests import wasi:cli/io even when they use none of it;
        // the context behind them grants nothing (see `HostState::new`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).context("linking WASI")?;
        super::bindings::add_to_linker(&mut linker).context("linking the host interface")?;

        // The ticker holds only a weak engine handle, so it ends with the engine.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch ticker")?;

        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            cache: cache.and_then(Cache::open),
            pooling,
            fallback: Arc::default(),
            trust: Arc::default(),
            stateful: Arc::default(),
        })
    }
}

/// Bytes of a plugin's memory and tables kept resident between groups.
const KEEP_RESIDENT: usize = 2 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Whether a pooled slot is reset in place (Linux's PAGEMAP_SCAN), not by
/// `madvise` and page faults: what a group's fixed cost depends on.
pub fn resets_in_place() -> bool {
    PoolingAllocationConfig::is_pagemap_scan_available()
}

/// Pool sizes: enough for every group in flight across jobs, their shadow
/// candidates, and plugins being loaded beside them.
fn pooling() -> PoolingAllocationConfig {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(256)
        .total_core_instances(2048)
        .total_memories(256)
        .total_tables(2048)
        .max_memories_per_component(4)
        // Interpreter-based components (componentize-py: 38 core
        // instances) fit too, and instantiate from a slot: measured 11 %
        // off a Python group's call (docs/performance.md).
        .max_core_instances_per_component(64)
        .max_tables_per_component(64);
    // Resetting a slot for the next group. With Linux's PAGEMAP_SCAN (6.7+)
    // only the pages the last group wrote are reset to the image, in place
    // (up to these many bytes): no madvise, and no page faults when the
    // next group touches them again; it halves a small group's call.
    // Without it, keeping bytes resident means a memset of all of them per
    // group, which costs more than it saves: the default (madvise) stays.
    // wasmtime 50 or newer: its scan goes on past a full buffer of dirty
    // regions, and an interpreter's writes are scattered (48 reset the
    // first 32 regions and faulted the rest back in: a fresh Python
    // instance 1.9 ms, now 1.1 ms).
    if resets_in_place() {
        pooling
            .pagemap_scan(wasmtime::Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT_TABLE);
    }
    pooling
}

/// Epoch ticks for a wall-time limit, rounded up, plus one because the
/// current tick may be almost over.
pub fn ticks(limit: Duration) -> u64 {
    (limit.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1) + 1
}

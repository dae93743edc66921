//! Compiled components cached on disk, keyed by the file's SHA-256 and the
//! engine's compatibility hash, so a restart or a reload of an unchanged
//! plugin does not compile again.
//!
//! A cached artifact is native code that the runner loads as trusted, so
//! the folder is the runner's alone: by default a state directory outside
//! the plugin folder (whoever deploys plugins must not be able to plant
//! code there), created private (0700), and refused when other users may
//! write it. Each artifact is written with the SHA-256 of its bytes beside
//! it and checked against it before use, so a damaged or swapped file is
//! compiled again rather than run.

use std::hash::{Hash as _, Hasher as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of `<sha256>-<engine>.cwasm` files and their `.sha256` sidecars.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating, private) the cache folder; `None`, with a warning,
    /// when it cannot be made or others may write to it.
    pub fn open(dir: PathBuf) -> Option<Self> {
        let refuse = |why: String| {
            tracing::warn!(dir = %dir.display(), reason = %why, "Not using the compile cache; plugins are compiled at each start.");
            None
        };
        if let Err(e) = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
            return refuse(format!("cannot create it: {e}"));
        }
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.mode() & 0o022 != 0 => {
                refuse(format!("it is writable by other users (mode {:o}); make it 0700", meta.mode() & 0o777))
            }
            // SAFETY: geteuid has no preconditions.
            Ok(meta) if meta.uid() != unsafe { libc::geteuid() } => {
                refuse(format!("it belongs to user {}, not to the runner's", meta.uid()))
            }
            Ok(_) => Some(Cache { dir }),
            Err(e) => refuse(e.to_string()),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, engine: &Engine, hash: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir.join(format!("{hash}-{:016x}.cwasm", hasher.finish()))
    }

    /// The compiled component from the cache, or `None` when absent or unusable.
    pub fn get(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.path(engine, hash);
        let bytes = std::fs::read(&path).ok()?;
        let unusable = |why: &str| {
            tracing::warn!(path = %path.display(), reason = why, "Unusable cached component; compiling again.");
            None
        };
        let recorded = std::fs::read_to_string(sidecar(&path)).unwrap_or_default();
        if recorded.trim() != super::sha256_hex(&bytes) {
            return unusable("its bytes do not match the hash recorded when it was written");
        }
        // SAFETY: the bytes are those `put` wrote from a component this
        // engine compiled (checked against their recorded hash, in a folder
        // only the runner may write); the key includes the engine's
        // compatibility hash.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => unusable(&e.to_string()),
        }
    }

    /// Stores a compiled component; failures only cost a future compile.
    pub fn put(&self, engine: &Engine, hash: &str, component: &Component) {
        let path = self.path(engine, hash);
        let result = (|| -> anyhow::Result<()> {
            let bytes = component.serialize()?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            // The hash first: an artifact is never there without it.
            std::fs::write(sidecar(&tmp), super::sha256_hex(&bytes))?;
            std::fs::rename(sidecar(&tmp), sidecar(&path))?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %format!("{e:#}"), "Could not cache a compiled component.");
        }
    }
}

impl Cache {
    fn on_demand_marker(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.on-demand"))
    }

    /// Whether the component of `hash` is known to exceed the pooling
    /// allocator's limits (a process before this one found out).
    pub fn on_demand_known(&self, hash: &str) -> bool {
        self.on_demand_marker(hash).exists()
    }

    /// Records that the component of `hash` exceeds the pooling allocator's
    /// limits, so later loads go straight to the on-demand engine.
    pub fn mark_on_demand(&self, hash: &str) {
        let _ = std::fs::write(self.on_demand_marker(hash), b"");
    }
}

fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

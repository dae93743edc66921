//! Compiled components cached on disk, keyed by the file's SHA-256 and the
//! engine's compatibility hash, so a restart or a reload of an unchanged
//! plugin does not compile again. Only this runner writes the folder; its
//! artifacts are native code and are trusted as such.

use std::hash::{Hash as _, Hasher as _};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of `<sha256>-<engine>.cwasm` files.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Self {
        Cache { dir }
    }

    fn path(&self, engine: &Engine, hash: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir.join(format!("{hash}-{:016x}.cwasm", hasher.finish()))
    }

    /// The compiled component from the cache, or `None` when absent or unusable.
    pub fn get(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.path(engine, hash);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `put` from a component this
        // engine compiled; the key includes the engine's compatibility hash.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Unusable cached component; compiling again.");
                None
            }
        }
    }

    /// Stores a compiled component; failures only cost a future compile.
    pub fn put(&self, engine: &Engine, hash: &str, component: &Component) {
        let path = self.path(engine, hash);
        let result = (|| -> anyhow::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let bytes = component.serialize()?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %format!("{e:#}"), "Could not cache a compiled component.");
        }
    }
}

//! Folders compared as the file system will resolve them.

use std::path::{Path, PathBuf};

/// A path with `.` and `..` resolved lexically, for comparing folders that
/// may not exist yet.
/// `path` as the file system will resolve it: the longest part that exists
/// with its symlinks followed (canonicalized), the rest normalized. A cache
/// folder reached through a symlink into the plugin folder is inside it.
pub(super) fn resolved(path: &Path) -> PathBuf {
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

/// The runner's default state directory for the cache: systemd's
/// `$STATE_DIRECTORY`, else `$XDG_STATE_HOME/runner`, else
/// `~/.local/state/runner`; `None` when there is no home to put it in.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let state = env("STATE_DIRECTORY")
        .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("runner")))
        .or_else(|| env("HOME").map(|h| h.join(".local/state/runner")))?;
    Some(state.join("components"))
}

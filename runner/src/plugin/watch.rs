//! Watches folders for changes (the plugin folder, the config file's folder)
//! and sends a signal on any event. Watches are re-established when a
//! folder is created, removed or replaced, since inotify watches die with
//! the folder they were put on; callers also rescan on a timer, so a missed
//! event only delays a reload.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

pub struct FolderWatch {
    folders: Vec<PathBuf>,
    /// The inode each folder had when watched (`None`: it did not exist).
    watched: Vec<Option<u64>>,
    watcher: Option<RecommendedWatcher>,
    events: mpsc::UnboundedSender<()>,
}

impl FolderWatch {
    /// Watches `folders`; every event sends `()` on `events`.
    pub fn new(folders: Vec<PathBuf>, events: mpsc::UnboundedSender<()>) -> Self {
        let mut w = FolderWatch { watched: vec![None; folders.len()], folders, watcher: None, events };
        w.ensure();
        w
    }

    fn inodes(&self) -> Vec<Option<u64>> {
        self.folders.iter().map(|f| std::fs::metadata(f).ok().map(|m| m.ino())).collect()
    }

    /// Re-creates the watches if any folder appeared, vanished or was replaced.
    pub fn ensure(&mut self) {
        let now = self.inodes();
        if self.watcher.is_some() && now == self.watched {
            return;
        }
        let events = self.events.clone();
        let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            if result.is_ok() {
                let _ = events.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot watch files; relying on periodic rescans.");
                return;
            }
        };
        for (folder, inode) in self.folders.iter().zip(&now) {
            if inode.is_some()
                && let Err(e) = watcher.watch(folder, RecursiveMode::NonRecursive)
            {
                tracing::warn!(folder = %folder.display(), error = %e, "Cannot watch a folder; relying on periodic rescans.");
            }
        }
        if self.watcher.is_some() {
            tracing::info!(folders = ?self.folders, "Watches re-established.");
            // Whatever happened while unwatched is found by the next rescan.
            let _ = self.events.send(());
        }
        self.watcher = Some(watcher);
        self.watched = now;
    }
}

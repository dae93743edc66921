//! The last versions of each plugin file that went live, kept in the plugin
//! folder as `.kept/<file>/<sha256>.wasm` (with the `.sig` it was deployed
//! with): `runner plugin rollback` puts the one before back, and a runner
//! whose file is garbage at start-up runs the newest kept one instead.
//! A kept file is loaded like any other (its signature checked again);
//! keeping is best-effort: a folder the runner may not write only loses
//! rollback, never a deploy.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use crate::files::write_atomically;

use super::sha256_hex;
use crate::trust::sig_path;

/// Versions kept per file (the live one among them).
pub const KEEP: usize = 3;

/// The folder where `live`'s versions are kept.
pub fn folder(live: &Path) -> PathBuf {
    let name = live.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    live.parent().unwrap_or(Path::new(".")).join(".kept").join(name)
}

/// One kept version.
#[derive(Debug, Clone)]
pub struct Kept {
    pub path: PathBuf,
    pub hash: String,
    /// When it last went live.
    pub live_at: SystemTime,
}

/// Keeps a copy of the file at `live` as the version that just went live,
/// if its content is still the one loaded (`hash`); marks it the newest and
/// drops the oldest beyond [`KEEP`].
pub fn remember(live: &Path, hash: &str, version: &str) -> std::io::Result<()> {
    let folder = folder(live);
    let kept = folder.join(format!("{hash}.wasm"));
    if !kept.exists() {
        let bytes = std::fs::read(live)?;
        if sha256_hex(&bytes) != hash {
            return Ok(()); // Replaced since it loaded: its next load keeps it.
        }
        std::fs::create_dir_all(&folder)?;
        write_atomically(&kept, &bytes)?;
    }
    // The signature it was deployed with, so the copy verifies as it did.
    match std::fs::read(sig_path(live)) {
        Ok(sig) => write_atomically(&sig_path(&kept), &sig)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // What it ran as (`runner status` shows it without compiling the file).
    write_atomically(&version_path(&kept), version.as_bytes())?;
    std::fs::File::options().write(true).open(&kept)?.set_modified(SystemTime::now())?;
    // Another runner sharing the folder may prune the same files.
    for old in versions(live).into_iter().skip(KEEP) {
        let _ = std::fs::remove_file(&old.path);
        let _ = std::fs::remove_file(sig_path(&old.path));
        let _ = std::fs::remove_file(version_path(&old.path));
    }
    Ok(())
}

fn version_path(kept: &Path) -> PathBuf {
    kept.with_extension("version")
}

impl Kept {
    /// The plugin version it last ran as (`vitals@1.1.0+sha256:…`).
    pub fn version(&self) -> Option<String> {
        std::fs::read_to_string(version_path(&self.path)).ok()
    }
}

/// The kept versions of `live`, the one live most recently first.
pub fn versions(live: &Path) -> Vec<Kept> {
    let mut out: Vec<Kept> = std::fs::read_dir(folder(live))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let hash = path.file_name()?.to_str()?.strip_suffix(".wasm")?.to_string();
            let live_at = e.metadata().ok()?.modified().ok()?;
            Some(Kept { path, hash, live_at })
        })
        .collect();
    out.sort_by(|a, b| b.live_at.cmp(&a.live_at).then_with(|| a.hash.cmp(&b.hash)));
    out
}

/// The most recently live version whose content is not `hash` (the file
/// now in the folder): what a rollback or a refused start-up falls back to.
pub fn newest_other_than(live: &Path, hash: Option<&str>) -> Option<Kept> {
    versions(live).into_iter().find(|k| Some(k.hash.as_str()) != hash)
}

/// The request `runner plugin rollback` leaves beside the live file
/// (`vitals.wasm.rollback`, holding the hash it puts back): the daemon lets
/// that kept version replace a newer signed one, once.
fn rollback_request(live: &Path) -> PathBuf {
    let mut name = live.as_os_str().to_owned();
    name.push(".rollback");
    PathBuf::from(name)
}

/// Asks for the kept version `hash` to go live although it is older.
pub fn ask_rollback(live: &Path, hash: &str) -> std::io::Result<()> {
    write_atomically(&rollback_request(live), hash.as_bytes())
}

/// Whether a rollback to `hash` was asked for: only a version this runner
/// kept (one that went live here) may be put back over a newer one.
pub fn rollback_asked(live: &Path, hash: &str) -> bool {
    let asked = std::fs::read_to_string(rollback_request(live)).is_ok_and(|h| h.trim() == hash);
    asked && versions(live).iter().any(|k| k.hash == hash)
}

/// The version `hash` went live: a rollback request for it is spent
/// (best-effort, as keeping is).
pub fn rollback_done(live: &Path, hash: &str) {
    if std::fs::read_to_string(rollback_request(live)).is_ok_and(|h| h.trim() == hash) {
        let _ = std::fs::remove_file(rollback_request(live));
    }
}

/// When the version that last went live here was signed: at start-up,
/// before anything is live, no older signed file may take its place.
pub fn signed_floor(live: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    versions(live).first().and_then(|k| crate::trust::signed_at(&sig_path(&k.path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_versions_newest_first_and_skips_a_file_replaced_since_it_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("vitals.wasm");
        let mut hashes = Vec::new();
        for i in 0..5u8 {
            let bytes = vec![i; 10];
            std::fs::write(&live, &bytes).unwrap();
            std::fs::write(sig_path(&live), format!("sig {i}")).unwrap();
            hashes.push(sha256_hex(&bytes));
            remember(&live, hashes.last().unwrap(), &format!("v{i}")).unwrap();
            // Modification times must differ for the order to be seen.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let kept: Vec<String> = versions(&live).into_iter().map(|k| k.hash).collect();
        assert_eq!(kept, [hashes[4].clone(), hashes[3].clone(), hashes[2].clone()]);
        let previous = newest_other_than(&live, Some(&hashes[4])).unwrap();
        assert_eq!(previous.hash, hashes[3]);
        assert_eq!(std::fs::read_to_string(sig_path(&previous.path)).unwrap(), "sig 3");
        assert_eq!(previous.version().as_deref(), Some("v3"));
        // A version that goes live again becomes the newest.
        std::fs::write(&live, vec![3u8; 10]).unwrap();
        remember(&live, &hashes[3], "v3").unwrap();
        assert_eq!(versions(&live)[0].hash, hashes[3]);
        // The file changed after loading: nothing is kept under the old hash.
        remember(&live, &sha256_hex(b"something else"), "v9").unwrap();
        assert_eq!(versions(&live).len(), 3);
    }
}

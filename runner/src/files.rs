//! Files other processes watch: written so that a reader never sees half.

use std::path::Path;

/// Writes aside, then renames: a reader (a watching runner) never sees
/// half a file. Kept versions, rollback and `plugin sign` use it.
pub fn write_atomically(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dest.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dest)
}

//! Writing files so that a reader or a crash never sees half of one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::io::interrupt;

/// Writes `bytes` to `path` with mode 0600 through a temporary file and a
/// rename, so readers see the old or the new content, never a part.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_private_atomic_as(path, bytes, ".nodeimg-")
}

pub fn write_private_atomic_as(path: &Path, bytes: &[u8], prefix: &str) -> Result<()> {
    let dir = parent_of(path);
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    let _swap = interrupt::critical();
    tmp.persist(path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// The folder `path` is in (`.` for a bare file name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

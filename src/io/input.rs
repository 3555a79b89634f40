//! Reading what the user hands nodeimg by path: only regular files (a FIFO
//! would hang, a device would never end), never more than a cap per kind,
//! and, for paths written in the profile, only inside the profile's folder
//! or a folder the profile lists in `trusted_folders`.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The most nodeimg reads of each kind of input, in bytes.
pub const MAX_KEYSTORE: u64 = 256 * 1024;
pub const MAX_PASSWORD: u64 = 4 * 1024;
pub const MAX_CHART: u64 = 64 * 1024 * 1024;
pub const MAX_CHECKSUM_LIST: u64 = 4 * 1024 * 1024;
pub const MAX_BASE_IMAGE: u64 = 64 * 1024 * 1024 * 1024;
/// A profile is a few KiB; 16 MiB is far beyond any real one.
pub const MAX_PROFILE: u64 = 16 * 1024 * 1024;
/// Keystores in one group's folder (a folder of millions is a mistake).
pub const MAX_KEYSTORES: usize = 100_000;

/// `1 KiB`-style size for messages.
pub fn human(bytes: u64) -> String {
    const UNITS: &[(u64, &str)] = &[(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map(|(unit, name)| format!("{} {name}", bytes / unit))
        .unwrap_or_else(|| format!("{bytes} bytes"))
}

/// What kind of thing is at `path` when it is not a regular file.
fn not_regular(kind: fs::FileType) -> Option<&'static str> {
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a folder")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Opens `path` (following symlinks) if it is a regular file of at most
/// `cap` bytes. A FIFO is opened without blocking, so it is refused instead
/// of waiting for a writer.
pub fn open_regular(path: &Path, cap: u64) -> Result<(File, u64), String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if let Some(what) = not_regular(meta.file_type()) {
        return Err(format!("{} is {what}, not a regular file", path.display()));
    }
    if meta.len() > cap {
        return Err(format!(
            "{} is {} bytes, more than the {} nodeimg reads for it",
            path.display(),
            meta.len(),
            human(cap)
        ));
    }
    Ok((file, meta.len()))
}

/// The content of the regular file `path`, at most `cap` bytes (also if it
/// grows while being read).
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    let (file, len) = open_regular(path, cap)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > cap {
        return Err(format!(
            "{} grew past the {} nodeimg reads for it",
            path.display(),
            human(cap)
        ));
    }
    Ok(bytes)
}

/// A [`read_regular`] error about `what` ("the password file"): "cannot read
/// the password file PATH: ..." or "the password file PATH is a FIFO ...".
pub fn about(what: &str, why: &str) -> String {
    match why.strip_prefix("cannot read ") {
        Some(rest) => format!("cannot read {what} {rest}"),
        None => format!("{what} {why}"),
    }
}

/// Where a path written in the profile may point: the profile's own folder
/// and the folders the profile trusts.
#[derive(Debug, Clone)]
pub struct Confinement {
    roots: Vec<PathBuf>,
}

impl Confinement {
    /// `base`: the profile's folder; `trusted`: `trusted_folders` (absolute,
    /// or relative to `base`). Folders that do not exist are left out.
    pub fn new(base: &Path, trusted: &[String]) -> Confinement {
        // The folder of a bare `profile.yaml` is the working directory.
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let mut roots: Vec<PathBuf> = std::iter::once(base.to_path_buf())
            .chain(trusted.iter().map(|t| base.join(t)))
            .filter_map(|p| p.canonicalize().ok())
            .collect();
        roots.dedup();
        Confinement { roots }
    }

    /// `value` (relative to the profile's folder) as a real path inside an
    /// allowed folder, symlinks resolved; or why not.
    pub fn resolve(&self, base: &Path, value: &str) -> Result<PathBuf, PathProblem> {
        let joined = base.join(value);
        let real = joined
            .canonicalize()
            .map_err(|e| PathProblem::Unreadable(format!("{}: {e}", joined.display())))?;
        if self.roots.iter().any(|r| real.starts_with(r)) {
            return Ok(real);
        }
        Err(PathProblem::Outside(format!(
            "{} is outside the profile's folder{}",
            if real == joined {
                real.display().to_string()
            } else {
                format!("{} (really {})", joined.display(), real.display())
            },
            if self.roots.len() > 1 {
                " and its trusted_folders"
            } else {
                ""
            }
        )))
    }
}

/// Why a path from the profile cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    /// Outside the allowed folders (the message says where it really is).
    Outside(String),
    /// Missing or unreadable: `PATH: error`.
    Unreadable(String),
}

impl std::fmt::Display for PathProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathProblem::Outside(m) | PathProblem::Unreadable(m) => f.write_str(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_capped_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        fs::write(&f, b"secret").unwrap();
        assert_eq!(read_regular(&f, 6).unwrap(), b"secret");
        assert!(read_regular(&f, 5)
            .unwrap_err()
            .contains("more than the 5 bytes"));
        assert!(read_regular(dir.path(), 5)
            .unwrap_err()
            .contains("a folder"));
        assert!(read_regular(Path::new("/dev/zero"), 5)
            .unwrap_err()
            .contains("a device"));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_regular(&fifo, 5).unwrap_err().contains("FIFO"));
    }

    #[test]
    fn profile_paths_stay_in_the_profile_folder_unless_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("profile");
        let keys = dir.path().join("keys");
        fs::create_dir_all(base.join("k")).unwrap();
        fs::create_dir_all(&keys).unwrap();
        fs::write(keys.join("pw"), b"x").unwrap();
        std::os::unix::fs::symlink(keys.join("pw"), base.join("k/link")).unwrap();
        let own = Confinement::new(&base, &[]);
        assert!(own.resolve(&base, "k").is_ok());
        let outside = |r: Result<PathBuf, PathProblem>| match r {
            Err(PathProblem::Outside(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(outside(own.resolve(&base, "../keys/pw")).contains("is outside"));
        assert!(outside(own.resolve(&base, "/etc/shadow")).contains("is outside"));
        assert!(outside(own.resolve(&base, "k/link")).contains("really"));
        assert!(matches!(
            own.resolve(&base, "nope"),
            Err(PathProblem::Unreadable(_))
        ));
        let trusting = Confinement::new(&base, &["../keys".to_string()]);
        assert!(trusting.resolve(&base, "k/link").is_ok());
        assert!(trusting.resolve(&base, "/etc/shadow").is_err());
    }
}

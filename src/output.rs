//! Write stage: everything is assembled in a temporary directory beside the
//! output and renamed into place, so a failed build leaves the previous
//! output as it was and never a half-written one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

pub const SUMS_FILE: &str = "SHA256SUMS";

/// Writes `bytes` to `path` with mode 0600 through a temporary file and a
/// rename, so readers see the old or the new content, never a part.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".nodeimg-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    // The umask may have narrowed the mode; secrets must not be wider.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The suffix of a checksum file written beside a large file (disk.img):
/// SHA256SUMS takes the hash from it instead of reading gigabytes again.
pub const SIDECAR_SUFFIX: &str = ".sha256";

/// `SHA256SUMS` over every file of every machine directory in `dir`.
fn sums(dir: &Path) -> Result<String> {
    let mut lines = BTreeMap::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        for file in fs::read_dir(entry.path())? {
            let file = file?;
            if file.file_type()?.is_file() {
                let name = file.file_name().to_string_lossy().into_owned();
                let rel = format!("{}/{name}", entry.file_name().to_string_lossy());
                let sidecar = entry.path().join(format!("{name}{SIDECAR_SUFFIX}"));
                let hash = match fs::read_to_string(&sidecar)
                    .ok()
                    .and_then(|t| crate::fetch::parse_sha256(t.split_whitespace().next()?))
                {
                    Some(h) => h,
                    None => crate::fetch::sha256_file(&file.path())?,
                };
                lines.insert(rel, hash);
            }
        }
    }
    Ok(lines.iter().map(|(p, h)| format!("{h}  {p}\n")).collect())
}

fn looks_like_ours(dir: &Path) -> bool {
    dir.join(SUMS_FILE).is_file()
}

fn staging_dir(out: &Path) -> Result<tempfile::TempDir> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(".nodeimg-staging-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))
}

/// A build being assembled beside its output directory. Files go into
/// [`Stage::machine_dir`]; [`Stage::commit`] moves them into place at once.
/// Dropped without a commit, it leaves the output as it was.
pub struct Stage {
    out: PathBuf,
    tmp: tempfile::TempDir,
    partial: bool,
    machines: Vec<String>,
}

impl Stage {
    /// With `partial`, only the staged machines are replaced on commit and
    /// the others' files are left as they are.
    pub fn new(out: &Path, partial: bool) -> Result<Stage> {
        if out.exists() && !out.is_dir() {
            bail!(
                "{} exists and is not a directory: choose another output with -o",
                out.display()
            );
        }
        if out.is_dir() && !looks_like_ours(out) && fs::read_dir(out)?.next().is_some() {
            bail!(
                "{} is not empty and holds no {SUMS_FILE}, so it was not written by nodeimg: choose another output with -o, or empty it",
                out.display()
            );
        }
        let tmp = staging_dir(out)?;
        fs::create_dir(tmp.path().join("out"))?;
        Ok(Stage {
            out: out.to_path_buf(),
            tmp,
            partial: partial && out.is_dir(),
            machines: Vec::new(),
        })
    }

    /// The output tree being assembled (what becomes DIR).
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("out")
    }

    /// Scratch space on the output's file system, removed with the stage.
    pub fn scratch(&self) -> PathBuf {
        self.tmp.path().to_path_buf()
    }

    /// The directory a machine's files are written to (created on first use).
    pub fn machine_dir(&mut self, machine: &str) -> Result<PathBuf> {
        let dir = self.tmp.path().join("out").join(machine);
        if !self.machines.iter().any(|m| m == machine) {
            fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            self.machines.push(machine.to_string());
        }
        Ok(dir)
    }

    /// Writes one file of a machine; `private` (it holds a secret): 0600.
    pub fn write(&mut self, machine: &str, name: &str, bytes: &[u8], private: bool) -> Result<()> {
        let dir = self.machine_dir(machine)?;
        write_file(&dir.join(name), bytes, private)
    }

    pub fn commit(self) -> Result<()> {
        let tree = self.tmp.path().join("out");
        let out = &self.out;
        if self.partial {
            for name in &self.machines {
                let target = out.join(name);
                let old = self.tmp.path().join(format!(".old-{name}"));
                if target.exists() {
                    fs::rename(&target, &old)
                        .with_context(|| format!("cannot move {} aside", target.display()))?;
                }
                fs::rename(tree.join(name), &target).with_context(|| {
                    format!("cannot move the new {} into place", target.display())
                })?;
            }
            let text = sums(out)?;
            write_private_atomic(&out.join(SUMS_FILE), text.as_bytes())?;
            fs::set_permissions(out.join(SUMS_FILE), fs::Permissions::from_mode(0o644))?;
            return Ok(());
        }
        let text = sums(&tree)?;
        write_file(&tree.join(SUMS_FILE), text.as_bytes(), false)?;
        fs::set_permissions(&tree, fs::Permissions::from_mode(0o755))?;
        let old: Option<PathBuf> = if out.exists() {
            let old = self.tmp.path().join("old");
            fs::rename(out, &old)
                .with_context(|| format!("cannot move the previous {} aside", out.display()))?;
            Some(old)
        } else {
            None
        };
        if let Err(e) = fs::rename(&tree, out) {
            if let Some(old) = old {
                // Put the previous output back: nothing is lost.
                let _ = fs::rename(old, out);
            }
            return Err(e)
                .with_context(|| format!("cannot move the new output into {}", out.display()));
        }
        Ok(())
    }
}

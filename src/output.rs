//! Write stage: everything is assembled in a staging directory beside the
//! output and swapped into place in one step (renameat2 RENAME_EXCHANGE),
//! so an interrupted or failed build leaves the previous output as it was,
//! never a half-written one and never none.
//!
//! An output folder is nodeimg's only if nodeimg wrote it: every build
//! records its files in [`MANIFEST_FILE`], and a folder holding anything
//! not recorded there (the profile, the secrets file, keystores, a
//! downloaded SHA256SUMS, ...) is never replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, Context, Result};

use crate::diag::{Diagnostic, Kind};

use crate::io::write::parent_of;
use crate::io::{interrupt, lock};

pub const SUMS_FILE: &str = "SHA256SUMS";
/// The list of files a build wrote (one relative path a line).
pub const MANIFEST_FILE: &str = ".nodeimg-manifest";
const MANIFEST_HEADER: &str =
    "# nodeimg wrote these files; it replaces this folder only while it holds nothing else\n";
const STAGING_PREFIX: &str = ".nodeimg-staging-";
/// Inside a staging directory: locked by the run that owns it.
const OWNER_LOCK: &str = ".owner.lock";
/// What nodeimg before the manifest wrote at the top of a release folder
/// (its SHA256SUMS listed only the files in subfolders).
const LEGACY_TOP_FILES: &[&str] = &["install.sh", "storage.yaml", "jwt.hex"];
/// Prefix of the temporary file a secrets file is written through; one
/// left by a killed run is removed by the next run that holds the lock.
pub const SECRETS_TMP_PREFIX: &str = ".nodeimg-secrets-";

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The umask may have narrowed the mode; secrets must not be wider.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(())
}

/// The suffix of a checksum file written beside a large file (disk.img):
/// SHA256SUMS takes the hash from it instead of reading gigabytes again.
pub const SIDECAR_SUFFIX: &str = ".sha256";

/// A lock whose holder panicked: the panic goes on in the thread that joins
/// it, and what the lock guards (names, sums) is never left half-changed.
fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `path` is a regular file of ours with exactly `mode` and `bytes`
/// (not followed if it is a symbolic link).
fn holds_exactly(path: &Path, bytes: &[u8], mode: u32) -> bool {
    use std::io::Read;
    let Ok(mut f) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    else {
        return false;
    };
    let Ok(meta) = f.metadata() else { return false };
    if !meta.is_file()
        || meta.mode() & 0o7777 != mode
        || meta.uid() != crate::io::euid()
        || meta.len() != bytes.len() as u64
    {
        return false;
    }
    let mut content = Vec::with_capacity(bytes.len());
    f.read_to_end(&mut content).is_ok() && content == bytes
}

/// The sums a previous build recorded in `out`'s SHA256SUMS, by path.
fn recorded_sums(out: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(out.join(SUMS_FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (hash, rel) = line.split_once("  ")?;
            Some((rel.to_string(), crate::io::hash::parse_sha256(hash)?))
        })
        .collect()
}

/// `SHA256SUMS` over every file of every machine directory in `dir`; a
/// file's sum is taken from `known`, else from its sidecar, else computed.
fn sums(dir: &Path, known: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let list = |d: &Path| fs::read_dir(d).with_context(|| format!("cannot list {}", d.display()));
    let mut lines = BTreeMap::new();
    let mut unknown = Vec::new();
    for entry in list(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        for file in list(&entry.path())? {
            let file = file?;
            if file.file_type()?.is_file() {
                let name = file.file_name().to_string_lossy().into_owned();
                let rel = format!("{}/{name}", entry.file_name().to_string_lossy());
                if let Some(hash) = known.get(&rel) {
                    lines.insert(rel, hash.clone());
                    continue;
                }
                let sidecar = entry.path().join(format!("{name}{SIDECAR_SUFFIX}"));
                match fs::read_to_string(&sidecar)
                    .ok()
                    .and_then(|t| crate::io::hash::parse_sha256(t.split_whitespace().next()?))
                {
                    Some(h) => _ = lines.insert(rel, h),
                    None => unknown.push((rel, file.path())),
                }
            }
        }
    }
    let hashes = crate::io::on_every_core(&unknown, |(_, path)| crate::io::hash::sha256_file(path));
    for ((rel, _), hash) in unknown.into_iter().zip(hashes) {
        lines.insert(rel, hash?);
    }
    Ok(lines)
}

/// The text of `SHA256SUMS` for `sums` (path -> hash).
fn sums_text(sums: &BTreeMap<String, String>) -> String {
    sums.iter().map(|(p, h)| format!("{h}  {p}\n")).collect()
}

/// Every entry below `dir`: (relative path, is a directory), without
/// following links (a link is an entry, never a directory); directories for
/// which `descend` says no are listed but not entered.
fn walk(
    dir: &Path,
    rel: &str,
    descend: &dyn Fn(&str) -> bool,
    out: &mut Vec<(String, bool)>,
) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read {}", entry.path().display()))?;
        if kind.is_dir() {
            out.push((path.clone(), true));
            if descend(&path) {
                walk(&entry.path(), &path, descend, out)?;
            }
        } else {
            out.push((path, false));
        }
    }
    Ok(())
}

/// Every file below `tree` (relative paths).
fn files_in(tree: &Path) -> Result<BTreeSet<String>> {
    let mut entries = Vec::new();
    walk(tree, "", &|_| true, &mut entries)?;
    Ok(entries
        .into_iter()
        .filter(|(_, dir)| !dir)
        .map(|(p, _)| p)
        .collect())
}

fn manifest_text(files: &BTreeSet<String>) -> String {
    let mut text = String::from(MANIFEST_HEADER);
    for f in files {
        text.push_str(f);
        text.push('\n');
    }
    text
}

/// The files nodeimg recorded in `out`, or None if it recorded none.
fn recorded_files(out: &Path) -> Result<Option<BTreeSet<String>>> {
    let manifest = out.join(MANIFEST_FILE);
    if let Ok(text) = fs::read_to_string(&manifest) {
        if !text.starts_with(MANIFEST_HEADER) {
            return Ok(None);
        }
        let mut set: BTreeSet<String> = text.lines().skip(1).map(str::to_string).collect();
        set.insert(MANIFEST_FILE.into());
        return Ok(Some(set));
    }
    // An output of a nodeimg from before the manifest: its SHA256SUMS lists
    // <machine>/<file> lines only (a downloaded one lists other shapes).
    let Ok(text) = fs::read_to_string(out.join(SUMS_FILE)) else {
        return Ok(None);
    };
    let mut set = BTreeSet::from([SUMS_FILE.to_string()]);
    for line in text.lines() {
        let Some((hash, path)) = line.split_once("  ") else {
            return Ok(None);
        };
        let parts: Vec<&str> = path.split('/').collect();
        let plain = |p: &str| !p.is_empty() && !p.starts_with('.') && p != "..";
        if hash.len() != 64
            || !hash.bytes().all(|b| b.is_ascii_hexdigit())
            || parts.len() != 2
            || !parts.iter().all(|p| plain(p))
        {
            return Ok(None);
        }
        set.insert(path.to_string());
    }
    if set.iter().any(|p| p.starts_with("values/")) {
        set.extend(LEGACY_TOP_FILES.iter().map(|f| f.to_string()));
    }
    Ok(Some(set))
}

/// The machine whose folder holds the output-relative path `rel` (a file at
/// the top, such as SHA256SUMS, is its own name).
fn machine_of(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel)
}

/// What in `out` nodeimg did not write (empty: the folder is nodeimg's to
/// replace). A few names, for the message. With `only` (a partial build,
/// which replaces the manifest, SHA256SUMS and those machines' folders),
/// the other machines' folders are not looked into: nothing in them moves.
fn foreign_entries(out: &Path, only: &[String]) -> Result<Vec<String>> {
    let recorded = recorded_files(out)?.unwrap_or_default();
    // Every folder that holds a recorded file; any other folder is foreign
    // as a whole (its contents add nothing to the message).
    let recorded_dirs: BTreeSet<&str> = recorded
        .iter()
        .flat_map(|f| f.match_indices('/').map(move |(i, _)| &f[..i]))
        .collect();
    let replaced = |d: &str| only.is_empty() || only.iter().any(|m| m == machine_of(d));
    let mut entries = Vec::new();
    walk(
        out,
        "",
        &|d| recorded_dirs.contains(d) && replaced(d),
        &mut entries,
    )?;
    Ok(entries
        .into_iter()
        .filter_map(|(path, dir)| match dir {
            true if !recorded_dirs.contains(path.as_str()) => Some(format!("{path}/")),
            false if !recorded.contains(&path) => Some(path),
            _ => None,
        })
        .collect())
}

/// A path that must never end up inside an output folder, which nodeimg
/// replaces whole: the profile, the secrets file, the keystores.
pub struct Protected {
    pub what: &'static str,
    pub path: PathBuf,
}

/// `path` made absolute with every symbolic link resolved, also when its
/// last parts do not exist yet.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            resolved(parent).join(name)
        }
        _ => std::env::current_dir().unwrap_or_default().join(path),
    }
}

/// The real output directory behind `out` (a symbolic link is followed),
/// its parent created. Refuses what cannot be swapped by a rename.
pub fn resolve_output(out: &Path) -> Result<PathBuf> {
    let shown = out.display();
    match fs::symlink_metadata(out) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::read_link(out).unwrap_or_default();
            let real = fs::canonicalize(out).map_err(|_| {
                output_failure(
                    out,
                    format!(
                        "the output is a symbolic link to {}, which does not exist",
                        target.display()
                    ),
                    "create that folder, or remove the link",
                )
            })?;
            if !real.is_dir() {
                bail!(output_failure(
                    out,
                    format!(
                        "the output is a symbolic link to {}, which is not a folder",
                        real.display()
                    ),
                    "choose another output with -o",
                ));
            }
            check_not_mount(&real, out)?;
            Ok(real)
        }
        Ok(meta) if meta.is_dir() => {
            let real = fs::canonicalize(out).with_context(|| format!("cannot resolve {shown}"))?;
            check_not_mount(&real, out)?;
            Ok(real)
        }
        Ok(_) => bail!(output_failure(
            out,
            "the output exists and is not a directory",
            "choose another output with -o"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = parent_of(out);
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            let name = out.file_name().ok_or_else(|| {
                output_failure(
                    out,
                    "the output is not a folder name",
                    "give a folder path such as out/staking",
                )
            })?;
            let parent = fs::canonicalize(parent)
                .with_context(|| format!("cannot resolve {}", parent.display()))?;
            Ok(parent.join(name))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {shown}")),
    }
}

/// An error about the output folder `-o OUT`.
fn output_failure(out: &Path, message: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
    Diagnostic::new(Kind::Output, message)
        .at(format!("-o {}", out.display()))
        .hint(hint)
}

/// A mount point (or /) cannot be renamed: the swap would fail with EBUSY.
fn check_not_mount(real: &Path, shown: &Path) -> Result<()> {
    let Some(parent) = real.parent() else {
        bail!(output_failure(
            shown,
            "nodeimg replaces its output folder whole, and / cannot be replaced",
            "give a folder of its own, e.g. out/staking",
        ));
    };
    let dev = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.dev())
            .with_context(|| format!("cannot read {}", p.display()))
    };
    if dev(real)? != dev(parent)? {
        bail!(output_failure(
            shown,
            format!(
                "{} is a mount point, and nodeimg replaces its output folder whole by renaming it, which a mount point refuses",
                real.display()
            ),
            format!("use a folder inside it, e.g. -o {}", shown.join("staking").display()),
        ));
    }
    Ok(())
}

/// Refuses an output that would hold one of `protected`, or that holds
/// files nodeimg did not write.
fn check_output(out: &Path, shown: &Path, protected: &[Protected], only: &[String]) -> Result<()> {
    for p in protected {
        if resolved(&p.path).starts_with(out) {
            bail!(output_failure(
                shown,
                format!(
                    "the output folder would hold the {} {}, and nodeimg replaces its output folder whole",
                    p.what,
                    p.path.display()
                ),
                format!(
                    "write the output elsewhere (the default is out/<cluster name>), or keep the {} outside it",
                    p.what
                ),
            ));
        }
    }
    if !out.is_dir() {
        return Ok(());
    }
    refuse_foreign(out, shown, only)
}

/// Fails if `out` holds what nodeimg did not write (see [`foreign_entries`]).
fn refuse_foreign(out: &Path, shown: &Path, only: &[String]) -> Result<()> {
    let foreign = foreign_entries(out, only)?;
    if !foreign.is_empty() {
        let mut names: Vec<&str> = foreign.iter().take(3).map(String::as_str).collect();
        if foreign.len() > 3 {
            names.push("...");
        }
        bail!(output_failure(
            shown,
            format!(
                "the folder holds files nodeimg did not write ({}), so nodeimg will not replace it",
                names.join(", ")
            ),
            "choose another output with -o (a new or empty folder), or move those files out",
        ));
    }
    Ok(())
}

/// An output directory nodeimg may replace: resolved, and checked to be
/// new, empty or nodeimg's own, holding none of the protected inputs.
/// Only [`check_target`] makes one, and a [`Stage`] takes it.
pub struct Target {
    real: PathBuf,
}

impl Target {
    /// The real directory (symbolic links resolved).
    pub fn path(&self) -> &Path {
        &self.real
    }
}

/// Checks the output directory `real` (from [`resolve_output`]; `shown` as
/// the user wrote it) before any work (see [`Target`]); `only`: the machines
/// a partial build replaces (empty: all). Call it holding the lock of its
/// parent, and keep that lock until the stage commits, so that the check
/// still holds then.
pub fn check_target(
    real: PathBuf,
    shown: &Path,
    protected: &[Protected],
    only: &[String],
) -> Result<Target> {
    check_output(&real, shown, protected, only)?;
    Ok(Target { real })
}

/// Removes the staging directories in `parent` whose run is gone (killed:
/// nothing holds their owner lock). Only nodeimg's own: a directory of ours,
/// with the lock file nodeimg makes.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let me = crate::io::euid();
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            continue;
        }
        let dir = entry.path();
        let ours = fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if !ours {
            continue;
        }
        let Ok(owner) = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(OWNER_LOCK))
        else {
            continue;
        };
        if lock::try_lock(&owner) {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// Creates a new staging directory in `parent`, registered for removal on
/// interrupt before it exists (so no signal can leave it behind).
fn make_staging_dir(parent: &Path) -> Result<PathBuf> {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..100 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        let name = format!("{STAGING_PREFIX}{}-{:016x}", std::process::id(), h.finish());
        let dir = parent.join(name);
        interrupt::remove_on_interrupt(dir.clone());
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => interrupt::forget(&dir),
            Err(e) => {
                interrupt::forget(&dir);
                return Err(e).with_context(|| {
                    format!("cannot create a staging directory in {}", parent.display())
                });
            }
        }
    }
    bail!(
        "cannot create a staging directory in {}: every name was taken",
        parent.display()
    )
}

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", p.display()))
}

/// renameat2(2): `RENAME_EXCHANGE` swaps two paths in one step,
/// `RENAME_NOREPLACE` moves without clobbering.
fn rename2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let (a, b) = (
        c_path(from).map_err(std::io::Error::other)?,
        c_path(to).map_err(std::io::Error::other)?,
    );
    // SAFETY: both are NUL-terminated paths that live across the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Hard-links (or copies, where links fail) every entry of `from` into
/// `to`, except the listed top-level names.
fn link_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", from.display()))?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            fs::create_dir(&dst).with_context(|| format!("cannot create {}", dst.display()))?;
            fs::set_permissions(&dst, fs::metadata(&src)?.permissions())?;
            link_tree(&src, &dst, &[])?;
        } else if fs::hard_link(&src, &dst).is_err() {
            fs::copy(&src, &dst)
                .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// A build being assembled beside its output directory. Files go into
/// [`Stage::machine_dir`]; [`Stage::commit`] swaps them into place at once.
/// Dropped without a commit (or interrupted), it leaves the output as it was.
pub struct Stage {
    /// The real output directory (symbolic links resolved).
    out: PathBuf,
    /// The staging directory, beside `out`.
    root: PathBuf,
    _owner: File,
    partial: bool,
    /// `out` exists: the files it holds unchanged are linked, not written.
    previous: bool,
    /// The machine folders made so far (writers may run on several threads).
    machines: Mutex<BTreeSet<String>>,
    /// The sha256 of each file written through [`Stage::write`], by path.
    hashes: Mutex<BTreeMap<String, String>>,
}

impl Stage {
    /// Stages a new output for `target`. With `partial`, the machines not
    /// staged keep their files. The caller holds the lock of the target's
    /// parent ([`crate::io::lock::lock_dirs`]).
    pub fn new(target: Target, partial: bool) -> Result<Stage> {
        let real = target.real;
        let parent = parent_of(&real).to_path_buf();
        sweep_stale(&parent);
        let root = make_staging_dir(&parent)?;
        let owner = File::create(root.join(OWNER_LOCK))
            .and_then(|f| lock::lock(&f).map(|()| f))
            .with_context(|| format!("cannot lock the staging directory {}", root.display()));
        let owner = match owner {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_dir_all(&root);
                interrupt::forget(&root);
                return Err(e);
            }
        };
        let stage = Stage {
            out: real.clone(),
            root,
            _owner: owner,
            partial: partial && real.is_dir(),
            previous: real.is_dir(),
            machines: Mutex::default(),
            hashes: Mutex::default(),
        };
        let tree = stage.dir();
        fs::create_dir(&tree).with_context(|| format!("cannot create {}", tree.display()))?;
        Ok(stage)
    }

    /// The output tree being assembled (what becomes DIR).
    pub fn dir(&self) -> PathBuf {
        self.root.join("out")
    }

    /// Scratch space on the output's file system, removed with the stage.
    pub fn scratch(&self) -> PathBuf {
        self.root.clone()
    }

    /// The directory a machine's files are written to (created on first use).
    pub fn machine_dir(&self, machine: &str) -> Result<PathBuf> {
        let dir = self.dir().join(machine);
        let mut made = lock_ignoring_poison(&self.machines);
        if !made.contains(machine) {
            fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            made.insert(machine.to_string());
        }
        Ok(dir)
    }

    /// Writes one file of a machine; `private` (it holds a secret): 0600.
    pub fn write(&self, machine: &str, name: &str, bytes: &[u8], private: bool) -> Result<()> {
        let dir = self.machine_dir(machine)?;
        let rel = format!("{machine}/{name}");
        let mode = if private { 0o600 } else { 0o644 };
        if !self.link_unchanged(&rel, &dir.join(name), bytes, mode)? {
            write_file(&dir.join(name), bytes, private)?;
        }
        let hash = crate::io::hash::sha256_hex(bytes);
        lock_ignoring_poison(&self.hashes).insert(rel, hash);
        Ok(())
    }

    /// Writes a file at the top of the output tree.
    pub fn write_top(&self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let path = self.dir().join(name);
        if self.link_unchanged(name, &path, bytes, mode)? {
            return Ok(());
        }
        write_file(&path, bytes, mode & 0o077 == 0)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))
    }

    /// Puts the previous output's `rel` at `path` as a hard link when it is
    /// exactly `bytes` with `mode`, owned by us: a rebuild then allocates no
    /// inode and writes no data for what did not change (on ext4, creating
    /// files while as many were just deleted costs more than the build).
    /// The file is compared after linking, so what the new tree holds is
    /// what was compared; nothing is ever written into a linked file.
    fn link_unchanged(&self, rel: &str, path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
        if !self.previous || fs::hard_link(self.out.join(rel), path).is_err() {
            return Ok(false);
        }
        if holds_exactly(path, bytes, mode) {
            return Ok(true);
        }
        fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
        Ok(false)
    }

    pub fn commit(self) -> Result<()> {
        let tree = self.dir();
        let made = lock_ignoring_poison(&self.machines).clone();
        let staged = sums(&tree, &lock_ignoring_poison(&self.hashes))?;
        // The other machines' files keep the sums the previous build recorded
        // for them: a partial build reads only what it wrote.
        let mut all = BTreeMap::new();
        if self.partial {
            all = recorded_sums(&self.out);
            all.retain(|rel, _| !made.contains(machine_of(rel)));
        }
        all.extend(staged);
        if self.partial && self.commit_in_place(&made, &all)? {
            return Ok(());
        }
        if self.partial {
            // The other machines' files come along as hard links: the swap
            // below still replaces the whole folder in one step. Their
            // folders were not looked into before (nothing in them was to
            // move): now they must hold nodeimg's files only.
            refuse_foreign(&self.out, &self.out, &[])?;
            let mut skip: Vec<&str> = vec![SUMS_FILE, MANIFEST_FILE];
            skip.extend(made.iter().map(String::as_str));
            link_tree(&self.out, &tree, &skip)?;
        }
        write_file(&tree.join(SUMS_FILE), sums_text(&all).as_bytes(), false)?;
        let manifest = manifest_text(&files_in(&tree)?);
        write_file(&tree.join(MANIFEST_FILE), manifest.as_bytes(), false)?;
        fs::set_permissions(&tree, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot set the mode of {}", tree.display()))?;
        let _swap = interrupt::critical();
        let moved = if self.out.exists() {
            match rename2(&tree, &self.out, libc::RENAME_EXCHANGE) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                    self.swap_by_two_renames(&tree)
                }
                other => other,
            }
        } else {
            rename2(&tree, &self.out, libc::RENAME_NOREPLACE)
        };
        moved.with_context(|| format!("cannot move the new output into {}", self.out.display()))
    }

    /// A partial build's commit, in proportion to what it rebuilt: the
    /// manifest, each rebuilt machine's folder and SHA256SUMS are swapped
    /// into the output one by one, each in one step (RENAME_EXCHANGE), with
    /// signals held off, instead of a whole new tree of hard links. The
    /// manifest goes first, so that the output never holds a folder it does
    /// not record; SHA256SUMS last. A failed swap puts back those done.
    /// False (nothing changed) on a file system without RENAME_EXCHANGE.
    fn commit_in_place(
        &self,
        made: &BTreeSet<String>,
        sums: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let mut files = recorded_files(&self.out)?.unwrap_or_default();
        files.retain(|f| f != MANIFEST_FILE && !made.contains(machine_of(f)));
        files.extend(files_in(&self.dir())?);
        files.insert(SUMS_FILE.to_string());
        let top = self.root.join("top");
        fs::create_dir(&top).with_context(|| format!("cannot create {}", top.display()))?;
        write_file(
            &top.join(MANIFEST_FILE),
            manifest_text(&files).as_bytes(),
            false,
        )?;
        write_file(&top.join(SUMS_FILE), sums_text(sums).as_bytes(), false)?;
        let mut moves: Vec<(PathBuf, PathBuf)> =
            vec![(top.join(MANIFEST_FILE), self.out.join(MANIFEST_FILE))];
        moves.extend(made.iter().map(|m| (self.dir().join(m), self.out.join(m))));
        moves.push((top.join(SUMS_FILE), self.out.join(SUMS_FILE)));

        let _swap = interrupt::critical();
        // (staged, in output, exchanged: the old one is now at `staged`)
        let mut done: Vec<(&Path, &Path, bool)> = Vec::new();
        for (staged, target) in &moves {
            let exchanged = fs::symlink_metadata(target).is_ok();
            let flags = if exchanged {
                libc::RENAME_EXCHANGE
            } else {
                libc::RENAME_NOREPLACE
            };
            match rename2(staged, target, flags) {
                Ok(()) => done.push((staged, target, exchanged)),
                Err(e)
                    if done.is_empty()
                        && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) =>
                {
                    let _ = fs::remove_dir_all(&top);
                    return Ok(false);
                }
                Err(e) => {
                    for (staged, target, exchanged) in done.into_iter().rev() {
                        let _ = match exchanged {
                            true => rename2(staged, target, libc::RENAME_EXCHANGE),
                            false => fs::rename(target, staged),
                        };
                    }
                    return Err(e).with_context(|| {
                        format!("cannot move the new {} into place", target.display())
                    });
                }
            }
        }
        Ok(true)
    }

    /// For file systems without RENAME_EXCHANGE: the old output is moved
    /// aside and put back if the new one cannot take its place.
    fn swap_by_two_renames(&self, tree: &Path) -> std::io::Result<()> {
        let old = self.root.join("old");
        fs::rename(&self.out, &old)?;
        fs::rename(tree, &self.out).inspect_err(|_| {
            let _ = fs::rename(&old, &self.out);
        })
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // After a commit this holds the previous output; before, the new one.
        let _ = fs::remove_dir_all(&self.root);
        interrupt::forget(&self.root);
    }
}

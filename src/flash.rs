//! `nodeimg flash IMAGE DEVICE`: writes a disk image or seed ISO to a
//! block device (or a regular file standing in for one), refusing any
//! device that is in use, and verifies it by reading it back.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Kind};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::disk::human_size;
use crate::io::progress::progress_bar;

const CHUNK: usize = 4 << 20;

/// What `flash` is about to overwrite.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub size: u64,
    /// `Some` for a block device: its sysfs name (sdb, loop0, nvme0n1).
    pub block: Option<String>,
    pub model: Option<String>,
    /// One line per partition found on it now.
    pub partitions: Vec<String>,
}

fn dev_numbers(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}

fn sysfs_block(rdev: u64) -> PathBuf {
    let (ma, mi) = dev_numbers(rdev);
    PathBuf::from(format!("/sys/dev/block/{ma}:{mi}"))
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// "maj:min" of every partition of a block device, and the device's own.
fn device_and_partitions(sys: &Path) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    if let Some(d) = read_trim(&sys.join("dev")) {
        set.insert(d);
    }
    if let Ok(entries) = fs::read_dir(sys) {
        for e in entries.flatten() {
            if e.path().join("partition").is_file() {
                if let Some(d) = read_trim(&e.path().join("dev")) {
                    set.insert(d);
                }
            }
        }
    }
    set
}

/// The partitions in the device's GPT, as text for the confirmation.
fn describe_partitions(path: &Path) -> Vec<String> {
    let Ok(mut f) = File::open(path) else {
        return vec!["(cannot be read)".into()];
    };
    match gptman::GPT::find_from(&mut f) {
        Ok(gpt) => gpt
            .iter()
            .filter(|(_, p)| p.is_used())
            .map(|(i, p)| {
                let bytes = p.size().unwrap_or(0) * gpt.sector_size;
                let name = p.partition_name.as_str();
                format!("partition {i}: {} {name}", human_size(bytes))
                    .trim_end()
                    .to_string()
            })
            .collect(),
        Err(_) => vec!["no GPT partition table".into()],
    }
}

impl Target {
    pub fn inspect(path: &Path) -> Result<Target> {
        let meta = fs::metadata(path).map_err(|e| {
            anyhow::Error::new(
                Diagnostic::new(
                    Kind::Device,
                    if e.kind() == std::io::ErrorKind::NotFound {
                        "no such device or file".to_string()
                    } else {
                        format!("cannot use it as the target: {e}")
                    },
                )
                .at(path.display())
                .hint("name the whole disk (lsblk lists them) or a file to write"),
            )
        })?;
        let ft = meta.file_type();
        if ft.is_block_device() {
            let sys = sysfs_block(meta.rdev());
            if sys.join("partition").is_file() {
                bail!(Diagnostic::new(
                    Kind::Device,
                    "the device is a partition: an image is written to a whole disk"
                )
                .at(path.display())
                .hint("name the disk (e.g. /dev/sdb, not /dev/sdb1); lsblk lists them"));
            }
            let sectors: u64 = read_trim(&sys.join("size"))
                .and_then(|s| s.parse().ok())
                .context("cannot read the device's size from sysfs")?;
            let name = fs::canonicalize(&sys)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            Ok(Target {
                path: path.to_path_buf(),
                size: sectors * 512,
                model: read_trim(&sys.join("device/model")),
                block: name,
                partitions: describe_partitions(path),
            })
        } else if ft.is_file() {
            Ok(Target {
                path: path.to_path_buf(),
                size: meta.len(),
                block: None,
                model: None,
                partitions: describe_partitions(path),
            })
        } else {
            bail!(
                "{} is neither a block device nor a regular file",
                path.display()
            )
        }
    }

    /// The text shown before asking.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}: {} ({} bytes)",
            self.path.display(),
            human_size(self.size),
            self.size
        );
        match (&self.block, &self.model) {
            (Some(_), Some(model)) => s.push_str(&format!(", model {model}")),
            (Some(_), None) => s.push_str(", block device"),
            (None, _) => s.push_str(", regular file"),
        }
        for p in &self.partitions {
            s.push_str(&format!("\n  {p}"));
        }
        s
    }

    /// Refuses a target that is mounted, swapped on, held by another
    /// device (LVM, RAID, dm-crypt) or backs a loop device.
    pub fn check_not_in_use(&self) -> Result<()> {
        let mut users = Vec::new();
        let canonical = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let ours: BTreeSet<String> = match &self.block {
            Some(_) => {
                let meta = fs::metadata(&self.path)?;
                let sys = sysfs_block(meta.rdev());
                if let Ok(holders) = fs::read_dir(sys.join("holders")) {
                    for h in holders.flatten() {
                        users.push(format!(
                            "held by /dev/{} (LVM, RAID or encryption)",
                            h.file_name().to_string_lossy()
                        ));
                    }
                }
                device_and_partitions(&sys)
            }
            None => {
                // A regular file in use as a disk: some loop device is backed by it.
                let mut set = BTreeSet::new();
                if let Ok(loops) = fs::read_dir("/sys/block") {
                    for l in loops.flatten() {
                        let backing = read_trim(&l.path().join("loop/backing_file"));
                        if backing.as_deref().map(Path::new) == Some(canonical.as_path()) {
                            let name = l.file_name().to_string_lossy().into_owned();
                            users.push(format!("backs the loop device /dev/{name}"));
                            set.extend(device_and_partitions(&l.path()));
                        }
                    }
                }
                set
            }
        };
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(devno), Some(point)) = (fields.get(2), fields.get(4)) else {
                continue;
            };
            let source = line
                .split(" - ")
                .nth(1)
                .and_then(|rest| rest.split(' ').nth(1))
                .unwrap_or("");
            let source_devno = fs::metadata(source)
                .ok()
                .filter(|m| m.file_type().is_block_device())
                .map(|m| {
                    let (a, b) = dev_numbers(m.rdev());
                    format!("{a}:{b}")
                });
            if ours.contains(*devno) || source_devno.is_some_and(|d| ours.contains(&d)) {
                let point = point.replace("\\040", " ");
                if point == "/" {
                    users.push("holds the running system (mounted on /)".into());
                } else {
                    users.push(format!("mounted on {point}"));
                }
            }
        }
        let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
        for line in swaps.lines().skip(1) {
            let Some(dev) = line.split_whitespace().next() else {
                continue;
            };
            if let Ok(m) = fs::metadata(dev) {
                let (a, b) = dev_numbers(m.rdev());
                if m.file_type().is_block_device() && ours.contains(&format!("{a}:{b}")) {
                    users.push(format!("in use as swap ({dev})"));
                }
            }
        }
        users.sort();
        users.dedup();
        if !users.is_empty() {
            bail!(Diagnostic::new(
                Kind::Device,
                format!("the device is in use: {}; nothing was written", users.join(", "))
            )
            .at(self.path.display())
            .hint("unmount it (and stop whatever holds it) first, and make sure it is the disk you mean to overwrite"));
        }
        Ok(())
    }
}

/// What was written and read back.
#[derive(Debug, Clone)]
pub struct Flashed {
    pub bytes: u64,
    pub sha256: String,
}

/// Checks that `image` fits and `target` is free, then writes, syncs and
/// reads back. `confirm` sees the target's description and says whether
/// to go on.
pub fn flash(
    image: &Path,
    target: &Target,
    confirm: &mut dyn FnMut(&str) -> Result<bool>,
) -> Result<Flashed> {
    let mut src = File::open(image).with_context(|| format!("cannot open {}", image.display()))?;
    let meta = src.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        bail!(Diagnostic::new(
            Kind::Usage,
            "not an image file (a disk.img or seed.iso nodeimg wrote)"
        )
        .at(image.display())
        .hint("give the disk.img or seed.iso of a machine, e.g. out/staking/worker-1/disk.img"));
    }
    let len = meta.len();
    let dev_meta = fs::metadata(&target.path)?;
    if dev_meta.dev() == meta.dev() && dev_meta.ino() == meta.ino() {
        bail!(
            Diagnostic::new(Kind::Usage, "the image and the device are the same file")
                .at(target.path.display())
                .hint("name the disk to write the image onto")
        );
    }
    if len > target.size {
        bail!(Diagnostic::new(
            Kind::Device,
            format!(
                "{} ({}) does not fit on {} ({})",
                image.display(),
                human_size(len),
                target.path.display(),
                human_size(target.size)
            )
        )
        .at(target.path.display())
        .hint("use a larger disk, or build the image smaller (image.size)"));
    }
    target.check_not_in_use()?;
    let text = format!(
        "writing {} ({}) overwrites everything on\n{}",
        image.display(),
        human_size(len),
        target.describe()
    );
    if !confirm(&text)? {
        bail!(
            Diagnostic::new(Kind::Device, "not confirmed: nothing was written")
                .at(target.path.display())
                .hint("type yes when asked, or pass --yes once you are sure of the device")
        );
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if target.block.is_some() {
        // The kernel refuses an exclusive open of a disk that is mounted or
        // held, even if it became so after the checks above.
        options.custom_flags(libc::O_EXCL);
    }
    let mut dev = options.open(&target.path).with_context(|| {
        format!(
            "cannot open {} for writing (in use?)",
            target.path.display()
        )
    })?;
    let progress = progress_bar(Some(len), "writing");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dev.write_all(&buf[..n])
            .with_context(|| format!("writing {} failed at byte {done}", target.path.display()))?;
        hasher.update(&buf[..n]);
        done += n as u64;
        progress.set_position(done);
    }
    progress.finish_and_clear();
    if done != len {
        bail!(
            Diagnostic::new(Kind::Device, "the image changed while it was written")
                .at(image.display())
                .hint("let whatever writes the image finish (a running build?), then flash again")
        );
    }
    dev.sync_all()
        .with_context(|| format!("cannot sync {}", target.path.display()))?;
    let written = hex::encode(hasher.finalize());
    // Read back from the device, not from the page cache.
    // SAFETY: posix_fadvise on an open descriptor; advice only.
    unsafe { libc::posix_fadvise(dev.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    dev.seek(SeekFrom::Start(0))?;
    let progress = progress_bar(Some(len), "verifying");
    let mut check = Sha256::new();
    let mut left = len;
    while left > 0 {
        let want = (left as usize).min(CHUNK);
        dev.read_exact(&mut buf[..want])
            .with_context(|| format!("reading {} back failed", target.path.display()))?;
        check.update(&buf[..want]);
        left -= want as u64;
        progress.set_position(len - left);
    }
    progress.finish_and_clear();
    let read_back = hex::encode(check.finalize());
    if read_back != written {
        bail!(Diagnostic::new(
            Kind::Device,
            format!("verification failed: wrote sha256 {written}, read back {read_back}")
        )
        .at(target.path.display())
        .hint("the device may be failing; do not boot from it"));
    }
    if target.block.is_some() {
        // Let the kernel see the new partition table (best effort).
        const BLKRRPART: libc::c_ulong = 0x125f;
        // SAFETY: an ioctl without arguments on an open block device.
        unsafe { libc::ioctl(dev.as_raw_fd(), BLKRRPART as _) };
    }
    Ok(Flashed {
        bytes: len,
        sha256: written,
    })
}

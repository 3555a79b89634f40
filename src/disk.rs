//! Per-machine disk images: the base cloud image as a raw disk with the
//! machine's seed embedded as a partition of its own.
//!
//! Layout: cloud images end with their root partition, which growpart
//! grows into whatever follows it on first boot. A seed partition appended
//! after root would block that, so the seed partition goes where root
//! started and root moves up by the seed's size (its contents are copied
//! unchanged; partition numbers, GUIDs and file system UUIDs stay as they
//! are, so boot loaders and fstab still find it). Root stays the last
//! partition: it can grow to the end of any disk the image is written to.
//! cloud-init finds the seed by its ISO 9660 volume label `cidata`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::diag::{Diagnostic, Kind};
use anyhow::{bail, Context, Result};
use gptman::{GPTPartitionEntry, GPT};

pub const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// The partition name of the seed (the file system label is what
/// cloud-init reads; this one is for people reading `sgdisk -p`).
pub const SEED_PARTITION_NAME: &str = "cidata";
/// Room for the seed: at least this, whatever its size.
const MIN_SEED_BYTES: u64 = 4 * MIB;

/// GPT type GUIDs as written on disk (the first three fields little-endian).
fn guid_bytes(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const LINUX_ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";

/// A base image ready to copy from: raw, with its partition table read.
pub struct BaseImage {
    pub raw: PathBuf,
    gpt: GPT,
    root: u32,
    /// A raw conversion made for this build (removed with the build's
    /// scratch directory).
    pub converted: bool,
}

fn is_qcow2(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(f.read_exact(&mut magic).is_ok() && &magic == b"QFI\xfb")
}

/// Why a qcow2 image would make qemu-img read other files, if it would:
/// a backing file (header offset 8, a u64 that is not 0) or, in version 3,
/// an external data file (incompatible feature bit 2 at offset 72). Either
/// would copy a host file's bytes into every disk.img.
fn qcow2_external_reference(path: &Path) -> Result<Option<&'static str>> {
    let mut header = [0u8; 80];
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    f.read_exact(&mut header[..72])
        .with_context(|| format!("{}: a truncated qcow2 header", path.display()))?;
    let be64 =
        |h: &[u8; 80], at: usize| u64::from_be_bytes(h[at..at + 8].try_into().unwrap_or([0; 8]));
    let version = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if be64(&header, 8) != 0 {
        return Ok(Some("a backing file"));
    }
    if version >= 3 && f.read_exact(&mut header[72..80]).is_ok() && be64(&header, 72) & 0b100 != 0 {
        return Ok(Some("an external data file"));
    }
    Ok(None)
}

impl BaseImage {
    /// Opens `image` (raw or qcow2; qcow2 is converted to a sparse raw file
    /// in `scratch`) and finds its root partition.
    pub fn open(image: &Path, scratch: &Path) -> Result<BaseImage> {
        let (raw, converted) = if is_qcow2(image)? {
            if let Some(what) = qcow2_external_reference(image)? {
                bail!(Diagnostic::new(
                    Kind::Image,
                    format!("the qcow2 image refers to {what}, whose bytes qemu-img would copy into every disk image")
                )
                .at(image.display())
                .hint("use Ubuntu's cloud image as downloaded, or flatten it first (`qemu-img convert -O qcow2 IN OUT` on a machine you trust)"));
            }
            let raw = scratch.join("base.raw");
            let out = Command::new("qemu-img")
                .args(["convert", "-f", "qcow2", "-O", "raw"])
                .arg(image)
                .arg(&raw)
                .output()
                .map_err(|e| crate::diag::tool_missing("qemu-img", "qemu-utils", e))?;
            if !out.status.success() {
                bail!(
                    "{}: qemu-img could not convert it to raw: {}",
                    image.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            (raw, true)
        } else {
            (image.to_path_buf(), false)
        };
        let mut f = File::open(&raw).with_context(|| format!("cannot open {}", raw.display()))?;
        let gpt = GPT::read_from(&mut f, SECTOR).map_err(|e| {
            anyhow::Error::new(
                Diagnostic::new(Kind::Image, format!("no GUID partition table ({e})"))
                    .at(image.display())
                    .hint("nodeimg embeds seeds in GPT cloud images (Ubuntu 20.04 and later); other images need the seed ISO (seed.iso)"),
            )
        })?;
        let (root, entry) = gpt
            .iter()
            .filter(|(_, p)| p.is_used())
            .max_by_key(|(_, p)| p.ending_lba)
            .context("the base image's partition table is empty")?;
        let kinds = [guid_bytes(LINUX_FS), guid_bytes(LINUX_ROOT_X86_64)];
        if !kinds.contains(&entry.partition_type_guid) {
            bail!(Diagnostic::new(
                Kind::Image,
                format!("its last partition (number {root}) is not a Linux file system, so it is not a cloud image's root")
            )
            .at(image.display())
            .hint("use a cloud image whose root partition is last (Ubuntu's are)"));
        }
        Ok(BaseImage {
            raw,
            root,
            gpt,
            converted,
        })
    }

    /// The root partition's (first, last) sector.
    pub fn root_range(&self) -> (u64, u64) {
        let r = &self.gpt[self.root];
        (r.starting_lba, r.ending_lba)
    }

    /// Where the seed and the moved root go for a seed of `seed_len` bytes,
    /// and the smallest disk that holds them.
    pub fn layout(&self, seed_len: u64) -> Layout {
        let (start, end) = self.root_range();
        let seed_sectors = seed_len.max(MIN_SEED_BYTES).div_ceil(MIB) * MIB / SECTOR;
        let root_start = start + seed_sectors;
        let root_end = end + seed_sectors;
        // The backup GPT: its entry array and header after the last partition.
        let array = u64::from(self.gpt.header.number_of_partition_entries)
            * u64::from(self.gpt.header.size_of_partition_entry);
        let min_bytes = ((root_end + 1) * SECTOR + array + SECTOR).div_ceil(MIB) * MIB;
        Layout {
            seed_start: start,
            seed_sectors,
            root_start,
            root_end,
            min_bytes,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub seed_start: u64,
    pub seed_sectors: u64,
    pub root_start: u64,
    pub root_end: u64,
    /// The smallest image that holds everything.
    pub min_bytes: u64,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct DiskImage {
    pub size: u64,
    pub sha256: String,
    pub seed_partition: u32,
}

/// Copies `len` bytes at `from` in `src` to `to` in `dst`, leaving holes
/// where `src` has holes (the output stays sparse).
fn copy_sparse(src: &File, dst: &File, from: u64, to: u64, len: u64) -> Result<()> {
    let end = from + len;
    let mut pos = from;
    while pos < end {
        // SAFETY: lseek on an open descriptor; the result is checked.
        let data = unsafe { libc::lseek(src.as_raw_fd(), pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: only a hole remains
        }
        let data = data as u64;
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            end
        } else {
            (hole as u64).min(end)
        };
        let mut off_in = data as libc::loff_t;
        let mut off_out = (to + (data - from)) as libc::loff_t;
        let mut left = (hole - data) as usize;
        while left > 0 {
            // SAFETY: both descriptors are open; offsets are passed by pointer
            // and the files' own positions are not used.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    left,
                    0,
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error()).context("cannot copy the base image");
            }
            if n == 0 {
                bail!("the base image ended early");
            }
            left -= n as usize;
        }
        pos = hole;
    }
    Ok(())
}

/// A new, empty (sparse) file of `len` bytes, mode 0600: disk images hold
/// the machine's secrets.
fn create_private(path: &Path, len: u64) -> Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.set_len(len)?;
    Ok(f)
}

/// A partition GUID derived from the machine's name: the same machine gets
/// the same GUID in every build.
fn seed_partition_guid(machine: &str) -> [u8; 16] {
    let h = crate::io::hash::sha256_hex(format!("nodeimg seed partition {machine}").as_bytes());
    let mut b = guid_bytes(&h[..32]);
    b[7] = (b[7] & 0x0f) | 0x80; // version 8 (custom), in the on-disk order
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// Writes `out`: the base image with `seed_iso` in its own partition before
/// the (moved) root partition, `size` bytes long (default: the smallest
/// that fits). Mode 0600: the seed holds the machine's secrets.
pub fn write_disk_image(
    base: &BaseImage,
    seed_iso: &[u8],
    machine: &str,
    size: Option<u64>,
    out: &Path,
) -> Result<DiskImage> {
    let layout = base.layout(seed_iso.len() as u64);
    let size = match size {
        Some(s) if s < layout.min_bytes => {
            return Err(TooSmall {
                wanted: s,
                needed: layout.min_bytes,
            }
            .into())
        }
        Some(s) => s.div_ceil(SECTOR) * SECTOR,
        None => layout.min_bytes,
    };
    let src =
        File::open(&base.raw).with_context(|| format!("cannot open {}", base.raw.display()))?;
    let mut dst = create_private(out, size)?;
    let (root_start, root_end) = base.root_range();
    // Everything before root (MBR, GPT, boot and EFI partitions), then root.
    copy_sparse(&src, &dst, 0, 0, root_start * SECTOR)?;
    copy_sparse(
        &src,
        &dst,
        root_start * SECTOR,
        layout.root_start * SECTOR,
        (root_end - root_start + 1) * SECTOR,
    )?;
    dst.seek(SeekFrom::Start(layout.seed_start * SECTOR))?;
    dst.write_all(seed_iso)?;

    let mut gpt = base.gpt.clone();
    gpt.header
        .update_from(&mut dst, SECTOR)
        .map_err(|e| anyhow::anyhow!("cannot size the partition table: {e}"))?;
    gpt[base.root].starting_lba = layout.root_start;
    gpt[base.root].ending_lba = layout.root_end;
    let number = (1..=gpt.header.number_of_partition_entries)
        .find(|&i| gpt[i].is_unused())
        .context("the base image's partition table has no free entry for the seed")?;
    gpt[number] = GPTPartitionEntry {
        partition_type_guid: guid_bytes(LINUX_FS),
        unique_partition_guid: seed_partition_guid(machine),
        starting_lba: layout.seed_start,
        ending_lba: layout.seed_start + layout.seed_sectors - 1,
        attribute_bits: 0,
        partition_name: SEED_PARTITION_NAME.into(),
    };
    gpt.write_into(&mut dst)
        .map_err(|e| anyhow::anyhow!("cannot write the partition table: {e}"))?;
    // Keep the base's boot code and its boot flag; only the size changes.
    let mut mbr = [0u8; 512];
    let mut src_reader = &src;
    src_reader.seek(SeekFrom::Start(0))?;
    src_reader.read_exact(&mut mbr)?;
    if mbr[446] == 0x80 {
        GPT::write_bootable_protective_mbr_into(&mut dst, SECTOR)
    } else {
        GPT::write_protective_mbr_into(&mut dst, SECTOR)
    }
    .map_err(|e| anyhow::anyhow!("cannot write the protective MBR: {e}"))?;
    dst.sync_all()?;
    drop(dst);
    let sha256 = crate::io::hash::sha256_file(out)?;
    Ok(DiskImage {
        size,
        sha256,
        seed_partition: number,
    })
}

/// Copies a disk image (sparse) to a new private file, and replaces the
/// contents of its seed partition with `seed_iso`: the boot test boots a
/// built image with its probe added to the seed.
pub fn copy_with_seed(src: &Path, dst: &Path, seed_iso: &[u8]) -> Result<()> {
    let from = File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let len = from.metadata()?.len();
    let _ = std::fs::remove_file(dst);
    let mut to = create_private(dst, len)?;
    copy_sparse(&from, &to, 0, 0, len)?;
    let gpt = GPT::read_from(&mut to, SECTOR)
        .map_err(|e| anyhow::anyhow!("{}: no partition table ({e})", src.display()))?;
    let (_, part) = gpt
        .iter()
        .find(|(_, p)| p.is_used() && p.partition_name.as_str() == SEED_PARTITION_NAME)
        .with_context(|| {
            format!(
                "{}: no seed partition (was it built by nodeimg build --images?)",
                src.display()
            )
        })?;
    let room = (part.ending_lba - part.starting_lba + 1) * SECTOR;
    if seed_iso.len() as u64 > room {
        bail!(
            "the test seed ({} bytes) does not fit the seed partition of {} ({room} bytes)",
            seed_iso.len(),
            src.display()
        );
    }
    to.seek(SeekFrom::Start(part.starting_lba * SECTOR))?;
    to.write_all(seed_iso)?;
    to.write_all(&vec![0u8; (room - seed_iso.len() as u64) as usize])?;
    to.sync_all()?;
    Ok(())
}

/// `image.size` is smaller than the base image and the seed.
#[derive(Debug)]
pub struct TooSmall {
    pub wanted: u64,
    pub needed: u64,
}

impl std::fmt::Display for TooSmall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a disk of {} cannot hold the base image and the seed: it needs at least {}",
            human_size(self.wanted),
            human_size(self.needed)
        )
    }
}

impl std::error::Error for TooSmall {}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_stored_mixed_endian() {
        // The Linux file system type as sgdisk writes it on disk.
        assert_eq!(
            hex::encode(guid_bytes(LINUX_FS)),
            "af3dc60f838472478e793d69d8477de4"
        );
    }

    #[test]
    fn seed_partition_guids_are_stable_and_distinct() {
        assert_eq!(seed_partition_guid("nfs"), seed_partition_guid("nfs"));
        assert_ne!(seed_partition_guid("nfs"), seed_partition_guid("master"));
    }
}

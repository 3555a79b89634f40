//! Pack stage: the NoCloud seed ISO (ISO 9660 + Joliet + Rock Ridge, volume
//! id `cidata`), written in-process and reproducibly: the image carries a
//! fixed date, so the same seed gives the same bytes.

use anyhow::{Context, Result};
use hadris_fs::{Content, NoClock, Node, Permissions, SetAttr, Tree};
use hadris_iso::{IsoId, IsoOptions};

use crate::render::Seed;

/// The volume id cloud-init's NoCloud datasource looks for.
pub const VOLUME_ID: &str = "cidata";

/// The ISO image of one machine's seed.
pub fn seed_iso(seed: &Seed) -> Result<Vec<u8>> {
    seed_iso_with(seed, &[])
}

/// The seed's ISO with `extra` files beside the three seed files (the boot
/// test adds its probe as `vendor-data`).
pub fn seed_iso_with(seed: &Seed, extra: &[(&str, &str)]) -> Result<Vec<u8>> {
    let files: Vec<(&str, &[u8], u32)> = seed
        .files()
        .into_iter()
        .chain(extra.iter().copied())
        // user-data holds secrets: readable by root only once mounted.
        .map(|(name, text)| {
            let mode = if name == "user-data" { 0o600 } else { 0o644 };
            (name, text.as_bytes(), mode)
        })
        .collect();
    pack(&files)
}

/// An ISO 9660 volume `cidata` (Joliet, Rock Ridge, fixed dates) holding
/// `files` (name, content, mode) at its root.
pub fn pack(files: &[(&str, &[u8], u32)]) -> Result<Vec<u8>> {
    let mut tree = Tree::new();
    for &(name, bytes, mode) in files {
        let node = Node::file(Content::bytes(bytes.to_vec()))
            .with_attrs(SetAttr::new().with_permissions(Permissions::new(mode)));
        tree.insert(name, node)
            .with_context(|| format!("cannot add {name} to the seed image"))?;
    }
    let options = IsoOptions::default()
        .with_id(IsoId::Volume, VOLUME_ID)
        .with_id(
            IsoId::Application,
            concat!("NODEIMG ", env!("CARGO_PKG_VERSION")),
        )
        .with_joliet()
        .with_rock_ridge()
        .with_time(NoClock::TIME);
    // Written into a buffer each thread keeps: the image is built with its
    // run-out (three times a seed's size), and fresh memory of that size
    // costs a page fault per page, for every machine.
    thread_local! {
        static IMAGE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    IMAGE.with_borrow_mut(|image| {
        image.clear();
        hadris_iso::sync::write(&mut *image, &tree, &options)
            .context("cannot write the seed image")?;
        cut_run_out(image);
        Ok(image.clone())
    })
}

const BLOCK: usize = 2048;
/// The zero blocks hadris-iso ends every image with and counts in the
/// volume: `mkisofs -pad`'s 300 KiB, for CD drives whose read-ahead failed
/// near the end of a written disc. A seed is read from a QEMU CD-ROM, a USB
/// stick or a partition, whose size the kernel knows to the byte, and 300
/// KiB is three times its content (tests/seed_tools.rs reads the trimmed
/// image with blkid, isoinfo and xorriso; the boot tests boot it).
const RUN_OUT_BLOCKS: usize = 150;
/// Volume descriptors start at block 16 (ECMA-119 8.1).
const FIRST_DESCRIPTOR: usize = 16;

/// Cuts `image`'s run-out blocks and sets the volume size in its primary
/// and supplementary (Joliet) descriptors to match. An image that does
/// not end as expected (a zero run-out counted in every descriptor) is left
/// as it is.
fn cut_run_out(image: &mut Vec<u8>) {
    let blocks = image.len() / BLOCK;
    if !image.len().is_multiple_of(BLOCK) || blocks < FIRST_DESCRIPTOR + 2 + RUN_OUT_BLOCKS {
        return;
    }
    let kept = blocks - RUN_OUT_BLOCKS;
    // Compared a block at a time (memcmp): byte by byte, this check cost
    // more than packing the seed.
    if image[kept * BLOCK..]
        .chunks(BLOCK)
        .any(|block| block != [0u8; BLOCK])
    {
        return;
    }
    // The primary (1) and supplementary (2) descriptors, up to the set
    // terminator (255): each states the volume size at bytes 80-87, both-endian.
    let mut sizes = Vec::new();
    for block in FIRST_DESCRIPTOR..kept {
        let d = block * BLOCK;
        if &image[d + 1..d + 6] != b"CD001" {
            return;
        }
        match image[d] {
            255 => break,
            1 | 2 => sizes.push(d + 80),
            _ => {}
        }
    }
    let declared = |at: usize, image: &[u8]| {
        let le = u32::from_le_bytes(image[at..at + 4].try_into().unwrap_or_default());
        let be = u32::from_be_bytes(image[at + 4..at + 8].try_into().unwrap_or_default());
        (le == be).then_some(le as usize)
    };
    if sizes.is_empty() || sizes.iter().any(|&at| declared(at, image) != Some(blocks)) {
        return;
    }
    let kept32 = kept as u32;
    for at in sizes {
        image[at..at + 4].copy_from_slice(&kept32.to_le_bytes());
        image[at + 4..at + 8].copy_from_slice(&kept32.to_be_bytes());
    }
    image.truncate(kept * BLOCK);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_counted_zero_run_out_is_cut() {
        let cut = |mut image: Vec<u8>| {
            cut_run_out(&mut image);
            image
        };
        let image = pack(&[("a", b"x", 0o644)]).unwrap();
        // Trimmed once, the image ends in structures: nothing more to cut.
        assert_eq!(cut(image.clone()), image);
        // Zero blocks the descriptors do not count are not run-out.
        let mut longer = image.clone();
        longer.resize(image.len() + RUN_OUT_BLOCKS * BLOCK, 0);
        assert_eq!(cut(longer.clone()), longer);
        // Not an ISO image at all.
        let zeros = vec![0u8; (FIRST_DESCRIPTOR + 2 + RUN_OUT_BLOCKS) * BLOCK];
        assert_eq!(cut(zeros.clone()), zeros);
    }
}

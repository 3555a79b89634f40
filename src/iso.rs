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
    let mut tree = Tree::new();
    for (name, text) in seed.files().into_iter().chain(extra.iter().copied()) {
        // user-data holds secrets: readable by root only once mounted.
        let mode = if name == "user-data" { 0o600 } else { 0o644 };
        let node = Node::file(Content::bytes(text.as_bytes().to_vec()))
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
    let mut image: Vec<u8> = Vec::new();
    hadris_iso::sync::write(&mut image, &tree, &options).context("cannot write the seed image")?;
    Ok(image)
}

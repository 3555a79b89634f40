//! The legacy eth2xk8s chart, extracted from its GitHub archive.

use std::path::Path as FsPath;

use super::LEGACY_FOLDER;

/// Extracts the eth2xk8s chart (`prysm/helm` of the GitHub archive) into
/// `dest`. Refuses the whole archive if any entry is absolute, climbs with
/// `..`, or is a link: nothing outside `dest` is ever written.
pub fn extract_legacy_chart(zip_path: &FsPath, dest: &FsPath) -> anyhow::Result<usize> {
    use anyhow::{bail, Context};
    let file = std::fs::File::open(zip_path)
        .with_context(|| format!("cannot open {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", zip_path.display()))?;
    let mut written = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let raw = entry.name().unwrap_or_default().to_string();
        let unsafe_path = raw.starts_with('/')
            || raw.contains('\\')
            || raw.split('/').any(|c| c == "..")
            || entry.enclosed_name().is_none();
        if unsafe_path || entry.is_symlink() {
            bail!(
                "{}: entry {raw:?} would be written outside the chart folder; the archive is refused and nothing was extracted",
                zip_path.display()
            );
        }
        // GitHub archives hold one top folder, <repo>-<commit>/.
        let Some((_, inside)) = raw.split_once('/') else {
            continue;
        };
        let Some(rel) = inside.strip_prefix(&format!("{LEGACY_FOLDER}/")) else {
            continue;
        };
        if rel.is_empty() {
            continue;
        }
        let target = dest.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("cannot extract {raw}"))?;
        written += 1;
    }
    if !dest.join("Chart.yaml").is_file() {
        bail!(
            "{}: no {LEGACY_FOLDER}/Chart.yaml inside: not the eth2xk8s archive",
            zip_path.display()
        );
    }
    Ok(written)
}

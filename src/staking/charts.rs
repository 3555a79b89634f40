//! The charts' archives: fetched (or taken from `--charts`) and verified
//! against their pins, and the legacy eth2xk8s chart extracted from its
//! GitHub archive.

use std::path::{Path as FsPath, PathBuf};

use anyhow::{bail, Context, Result};

use super::{
    chart_archive, chart_url, legacy_url, migration_url, migrations_folder, LegacyChart,
    Migrations, StakingSpec, LEGACY_FOLDER,
};
use crate::diag::{Diagnostic, Kind};
use crate::fetch;

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
            bail!(Diagnostic::new(
                Kind::Download,
                format!("entry {raw:?} would be written outside the chart folder; the archive is refused and nothing was extracted")
            )
            .at(zip_path.display())
            .hint("the archive is not GitHub's archive of eth2xk8s: check staking.eth2xk8s's commit and sha256"));
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

/// Where a pinned archive comes from: `file` in `charts_dir` (a `file://`
/// URL) when given, else `url`.
fn archive_source(charts_dir: Option<&FsPath>, file: &str, url: String) -> Result<String> {
    let Some(dir) = charts_dir else {
        return Ok(url);
    };
    let path = dir.join(file);
    if !path.is_file() {
        bail!(Diagnostic::new(Kind::Usage, format!("no {file} there"))
            .at(format!("--charts {}", dir.display()))
            .hint(format!("put the archive ({url}) in that folder")));
    }
    Ok(format!("file://{}", path.canonicalize()?.display()))
}

/// The staking profile's chart archives, verified against their pins:
/// from `charts_dir` if given, else downloaded (or from the cache).
/// Returns (file name, path).
pub fn fetch_charts(
    s: &StakingSpec,
    charts_dir: Option<&FsPath>,
    fetch_opts: &fetch::FetchOptions,
) -> Result<Vec<(String, PathBuf)>> {
    let fetcher = fetch::Fetcher::new(fetch_opts.clone())?;
    let mut archives = Vec::new();
    for (chart, pin) in &s.charts {
        let file = chart_archive(chart, &pin.version);
        let url = archive_source(charts_dir, &file, chart_url(chart, &pin.version))?;
        let path = fetcher
            .fetch(&url, &pin.sha256, crate::io::input::MAX_CHART)
            .with_context(|| {
                format!(
                    "the {chart} chart {} (pinned in staking.charts or nodeimg's defaults)",
                    pin.version
                )
            })?;
        archives.push((file, path));
    }
    Ok(archives)
}

/// The eth2xk8s archive (verified): from `charts_dir` as
/// `eth2xk8s-<commit>.zip`, else downloaded from GitHub.
pub fn fetch_legacy_archive(
    legacy: &LegacyChart,
    charts_dir: Option<&FsPath>,
    fetch_opts: &fetch::FetchOptions,
) -> Result<PathBuf> {
    let fetcher = fetch::Fetcher::new(fetch_opts.clone())?;
    let url = archive_source(
        charts_dir,
        &format!("eth2xk8s-{}.zip", legacy.commit),
        legacy_url(&legacy.commit),
    )?;
    fetcher
        .fetch(&url, &legacy.sha256, crate::io::input::MAX_CHART)
        .context("the eth2xk8s archive (pinned in staking.eth2xk8s)")
}

/// Web3Signer's migration files (verified against their pins): from
/// `charts_dir` as `web3signer-migrations-<commit>/<file>`, else downloaded
/// at the pinned commit. Returns (file name, bytes) in the order they apply.
pub fn fetch_migrations(
    m: &Migrations,
    charts_dir: Option<&FsPath>,
    fetch_opts: &fetch::FetchOptions,
) -> Result<Vec<(String, Vec<u8>)>> {
    let fetcher = fetch::Fetcher::new(fetch_opts.clone())?;
    let folder = migrations_folder(&m.commit);
    m.files
        .iter()
        .map(|(file, sha256)| {
            let url = archive_source(
                charts_dir,
                &format!("{folder}/{file}"),
                migration_url(&m.commit, file),
            )?;
            let path = fetcher
                .fetch(&url, sha256, crate::io::input::MAX_CHECKSUM_LIST)
                .with_context(|| {
                    format!(
                        "Web3Signer's migration {file} at {} (pinned in staking.web3signer.migrations or nodeimg's defaults)",
                        m.commit
                    )
                })?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            Ok((file.clone(), bytes))
        })
        .collect()
}

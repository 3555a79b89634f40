//! The staking release: the `staking` section checked into a
//! [`StakingSpec`], the slashing-safety rules, the validator keystores, and
//! the Helm values, storage manifests and install commands generated from
//! it for the ethpandaops charts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path as FsPath;

use serde_json::{json, Value};

use crate::diag::Checker;
use crate::diag::{Diagnostic, Path};
use crate::firstboot::{KEYS_STAGING, RELEASE_DIR};
use crate::io::input::{read_regular, Confinement, PathProblem};
use crate::profile;

pub mod clients;

/// One epoch: 32 slots of 12 s.
pub const EPOCH_SECONDS: u64 = 384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Mainnet,
    Hoodi,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Hoodi => "hoodi",
        }
    }
    pub fn default_checkpoint_sync_url(self) -> &'static str {
        match self {
            Network::Mainnet => "https://mainnet-checkpoint-sync.attestant.io",
            Network::Hoodi => "https://checkpoint-sync.hoodi.ethpandaops.io",
        }
    }
}

/// Networks nobody can stake on any more, and why.
const DEAD_NETWORKS: &[(&str, &str)] = &[
    ("prater", "Prater (Goerli's beacon chain) is shut down"),
    ("goerli", "Goerli is shut down"),
    (
        "holesky",
        "Holesky was shut down after the Fusaka upgrade (2025)",
    ),
    (
        "sepolia",
        "Sepolia has a permissioned validator set: you cannot run your own validators there",
    ),
];

/// The ethpandaops chart repository and the chart versions nodeimg was
/// made with, with the sha256 of each .tgz (the `digest` of the
/// repository's index.yaml, 2026-07-08).
pub const CHART_REPOSITORY: &str = "https://ethpandaops.github.io/ethereum-helm-charts";
pub const DEFAULT_CHARTS: &[(&str, &str, &str)] = &[
    (
        "geth",
        "1.1.3",
        "76ef685c9dc55a19adbd8f19ca59cb68fae0296c51e2cbee3c699db9de776493",
    ),
    (
        "nethermind",
        "1.1.1",
        "b23f3d1216be07ce14547c1fd0958ab4150ac393649c1ec87e07bf02e2e031d6",
    ),
    (
        "besu",
        "1.1.3",
        "c95069750689bcb924e0e07d5a7a0f398ea013af68db0cac665eb336c0cb7222",
    ),
    (
        "reth",
        "0.1.8",
        "fe8987c072f05cc59531e82690b7417ba379be697f91441ce75872db90f55383",
    ),
    (
        "prysm",
        "1.2.3",
        "c9672166ad2f891c8f06a3ce3fd0668699f08a53aad1a4fb641a13ea49c5a870",
    ),
    (
        "lighthouse",
        "1.1.8",
        "bb8d4d3b2219ea0186f0797dd2d9d9014bdf3fa7404cf58d43e99fbf842e5f53",
    ),
    (
        "teku",
        "1.2.0",
        "e065e6bd3fe51be8bb6ed9b68e63cd43d8d336c2f2770665869a722040574c57",
    ),
    (
        "nimbus",
        "1.2.0",
        "55ebc42f477ea3fbac0bde135fd46fe6713c6036b4c61dcde0f4d45dd953cdac",
    ),
];

/// The slashing-safety checks a profile may waive, and the risk each one
/// takes.
pub const OVERRIDES: &[(&str, &str)] = &[
    (
        "same-key-in-two-groups",
        "two validator clients signing with one key is a slashable double vote",
    ),
    (
        "multiple-replicas",
        "several replicas of a validator sign with the same keys: slashable",
    ),
    (
        "short-start-delay",
        "a validator restarted elsewhere within an epoch can double-sign with the old one still running",
    ),
    (
        "no-doppelganger",
        "without doppelganger protection a second copy of your keys signs at once",
    ),
    (
        "unpinned-images",
        "a moving tag (latest, stable) upgrades the clients under you, untested, on mainnet",
    ),
];

/// The reference setup's chart: lumostone/eth2xk8s, its prysm/helm folder.
pub const LEGACY_COMMIT: &str = "6b7e9ef574d1215bc8b73c4eb89304073ca30df0";
/// The legacy chart's name (Chart.yaml) and version at that commit.
pub const LEGACY_CHART: &str = "eth2-prysm";
pub const LEGACY_VERSION: &str = "0.1.4";
/// The folder of the archive that holds the chart.
pub const LEGACY_FOLDER: &str = "prysm/helm";

pub fn legacy_url(commit: &str) -> String {
    format!("https://github.com/lumostone/eth2xk8s/archive/{commit}.zip")
}

/// Busybox for the start-delay init container, pinned.
pub const DELAY_IMAGE: &str = "busybox:1.36.1";

/// The profile's `staking` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StakingSpec {
    pub network: Network,
    pub namespace: String,
    pub execution: String,
    pub execution_image: String,
    pub consensus: String,
    pub consensus_image: String,
    pub validator_image: String,
    pub checkpoint_sync_url: String,
    pub fee_recipient: String,
    pub graffiti: String,
    pub mev_boost_url: Option<String>,
    /// The address the P2P ports are advertised at; `None`: each node's own.
    pub p2p_public_ip: Option<std::net::Ipv4Addr>,
    /// The machine the execution client and beacon node are pinned to.
    pub p2p_node: Option<String>,
    pub start_delay: u64,
    pub doppelganger: bool,
    pub groups: Vec<Group>,
    /// The pins of the charts in use.
    pub charts: BTreeMap<String, ChartPin>,
    pub overrides: BTreeSet<String>,
    /// Set when the consensus side uses the legacy eth2xk8s chart.
    pub legacy: Option<LegacyChart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyChart {
    pub commit: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    /// As written in the profile (relative to the profile's folder).
    pub keystores: String,
    pub password_file: String,
    pub replicas: u32,
}

impl Group {
    /// The NFS folder (and release) of this group.
    pub fn folder(&self) -> String {
        format!("validator-{}", self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartPin {
    pub version: String,
    pub sha256: String,
}

impl StakingSpec {
    /// The NFS folders the workloads need (one per workload).
    pub fn folders(&self) -> Vec<String> {
        let mut v = vec!["execution".to_string(), "beacon".to_string()];
        v.extend(self.groups.iter().map(Group::folder));
        v
    }
}

/// The tag an image reference pins, `None` for a digest (always pinned).
fn image_tag(image: &str) -> Option<&str> {
    if image.contains("@sha256:") {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    Some(last.split_once(':').map(|(_, t)| t).unwrap_or("latest"))
}

pub fn is_unpinned(image: &str) -> bool {
    matches!(
        image_tag(image),
        Some("latest" | "stable" | "edge" | "unstable" | "nightly" | "develop" | "main" | "master")
    )
}

/// The EIP-55 checksummed form of a 40-hex-digit address (without 0x).
pub fn eip55(hex40: &str) -> String {
    use sha3::{Digest, Keccak256};
    let lower = hex40.to_ascii_lowercase();
    let hash = Keccak256::digest(lower.as_bytes());
    lower
        .chars()
        .enumerate()
        .map(|(i, ch)| {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
            if ch.is_ascii_alphabetic() && nibble >= 8 {
                ch.to_ascii_uppercase()
            } else {
                ch
            }
        })
        .collect()
}

fn check_image(c: &mut Checker, path: Path, image: &Option<String>, what: &str) -> String {
    match image {
        Some(i) if !i.trim().is_empty() && !i.contains(char::is_whitespace) => i.clone(),
        Some(i) => {
            c.error(
                path,
                format!("{i:?} is not a container image"),
                "write repository:tag, e.g. ethereum/client-go:v1.16.7, or repository@sha256:...",
            );
            String::new()
        }
        None => {
            c.error(
                path,
                format!("the {what} image is not given"),
                "pin it: repository:tag (e.g. ethereum/client-go:v1.16.7) or repository@sha256:...; chart defaults are moving tags",
            );
            String::new()
        }
    }
}

/// Checks the `staking` section. `None` when it has errors.
pub(crate) fn check(c: &mut Checker, s: &profile::Staking) -> Option<StakingSpec> {
    let base = Path::root().key("staking");
    let before = c.error_count();
    let network = match s.network.as_deref() {
        Some("mainnet") => Some(Network::Mainnet),
        Some("hoodi") => Some(Network::Hoodi),
        Some(n) => {
            match DEAD_NETWORKS
                .iter()
                .find(|(d, _)| *d == n.to_ascii_lowercase())
            {
                Some((_, why)) => c.error(
                    base.key("network"),
                    format!("network {n:?} cannot be staked on: {why}"),
                    "use hoodi (the staking testnet) or mainnet",
                ),
                None => c.error(
                    base.key("network"),
                    format!("unknown network {n:?}"),
                    "use hoodi (the staking testnet) or mainnet",
                ),
            }
            None
        }
        None => {
            c.error(
                base.clone(),
                "the staking section has no `network`",
                "add `network: hoodi` (the staking testnet) or `network: mainnet`",
            );
            None
        }
    };
    if !crate::model::is_dns_label(&s.namespace) {
        c.error(
            base.key("namespace"),
            format!("{:?} is not a Kubernetes namespace name", s.namespace),
            "use lowercase letters, digits and hyphens, e.g. staking",
        );
    }
    let execution = s.execution.client.clone().unwrap_or_else(|| "geth".into());
    let execution_clients = clients::names(clients::Layer::Execution);
    if !execution_clients.contains(&execution.as_str()) {
        c.error(
            base.key("execution").key("client"),
            format!("unknown execution client {execution:?}"),
            format!("use one of {}", execution_clients.join(", ")),
        );
    }
    let consensus = s.consensus.client.clone().unwrap_or_else(|| "prysm".into());
    let consensus_clients = clients::names(clients::Layer::Consensus);
    if !consensus_clients.contains(&consensus.as_str()) {
        c.error(
            base.key("consensus").key("client"),
            format!("unknown consensus client {consensus:?}"),
            format!("use one of {}", consensus_clients.join(", ")),
        );
    }
    if consensus == "nimbus" && !s.validators.is_empty() {
        c.error(
            base.key("consensus").key("client"),
            "the ethpandaops nimbus chart runs a beacon node only, not a validator client",
            "use prysm, lighthouse or teku when the profile has validator groups",
        );
    }
    let execution_image = check_image(
        c,
        base.key("execution").key("image"),
        &s.execution.image,
        "execution client's",
    );
    let consensus_image = check_image(
        c,
        base.key("consensus").key("image"),
        &s.consensus.image,
        "consensus client's",
    );
    let validator_image = if consensus == "prysm" && !s.validators.is_empty() {
        check_image(
            c,
            base.key("consensus").key("validator_image"),
            &s.consensus.validator_image,
            "Prysm validator client's (gcr.io/prysmaticlabs/prysm/validator)",
        )
    } else {
        s.consensus
            .validator_image
            .clone()
            .unwrap_or_else(|| consensus_image.clone())
    };

    let mut overrides = BTreeSet::new();
    for (i, o) in s.overrides.iter().enumerate() {
        if OVERRIDES.iter().any(|(n, _)| n == o) {
            overrides.insert(o.clone());
        } else {
            let names: Vec<&str> = OVERRIDES.iter().map(|(n, _)| *n).collect();
            c.error(
                base.key("overrides").index(i),
                format!("unknown override {o:?}"),
                format!("overrides are: {}", names.join(", ")),
            );
        }
    }
    let waived = |name: &str| overrides.contains(name);
    let risk = |name: &str| {
        OVERRIDES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
            .unwrap_or_default()
    };

    for (key, image) in [
        (base.key("execution").key("image"), &execution_image),
        (base.key("consensus").key("image"), &consensus_image),
        (
            base.key("consensus").key("validator_image"),
            &validator_image,
        ),
    ] {
        if image.is_empty() || !is_unpinned(image) {
            continue;
        }
        match network {
            Some(Network::Mainnet) if !waived("unpinned-images") => c.error(
                key,
                format!("{image} is not pinned on mainnet: {}", risk("unpinned-images")),
                "pin a version tag or a digest, or accept the risk with `overrides: [unpinned-images]`",
            ),
            _ => c.warning(
                key,
                format!("{image} is not pinned"),
                "pin a version tag or a digest: a moving tag upgrades the client under you",
            ),
        }
    }

    let checkpoint_sync_url = match &s.checkpoint_sync_url {
        Some(u) if is_http_url(u) => u.clone(),
        Some(u) => {
            c.error(
                base.key("checkpoint_sync_url"),
                url_problem(u),
                "give the beacon API URL of a checkpoint sync provider, e.g. https://checkpoint-sync.hoodi.ethpandaops.io",
            );
            String::new()
        }
        None => network
            .map(|n| n.default_checkpoint_sync_url().to_string())
            .unwrap_or_default(),
    };

    let fee_recipient = match &s.fee_recipient {
        None => {
            c.error(
                base.clone(),
                "the staking section has no `fee_recipient`",
                "add `fee_recipient: \"0x...\"`, the address that receives your priority fees and MEV",
            );
            String::new()
        }
        Some(a) => {
            let hex = a.strip_prefix("0x").unwrap_or("");
            if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                c.error(
                    base.key("fee_recipient"),
                    format!("{a:?} is not an Ethereum address"),
                    "write 0x and 40 hex digits (quote it in YAML)",
                );
            } else if hex.bytes().all(|b| b == b'0') {
                c.error(
                    base.key("fee_recipient"),
                    "the fee recipient is the zero address: fees sent there are lost",
                    "use an address you control",
                );
            } else {
                let mixed = hex.bytes().any(|b| b.is_ascii_lowercase())
                    && hex.bytes().any(|b| b.is_ascii_uppercase());
                let checksummed = eip55(hex);
                if mixed && hex != checksummed {
                    c.error(
                        base.key("fee_recipient"),
                        format!("{a} fails its EIP-55 checksum: a mistyped character?"),
                        format!("check the address; its checksummed form would be 0x{checksummed}"),
                    );
                }
            }
            a.clone()
        }
    };
    if s.graffiti.len() > 32 {
        c.error(
            base.key("graffiti"),
            format!("the graffiti is {} bytes long", s.graffiti.len()),
            "keep it to 32 bytes",
        );
    }
    if s.graffiti.contains(|ch: char| ch.is_control()) {
        c.error(
            base.key("graffiti"),
            "the graffiti holds control characters",
            "use printable text",
        );
    }
    if s.graffiti.contains("{{") || s.graffiti.contains("}}") {
        // The charts pass extraArgs through Helm's `tpl`, which would run it.
        c.error(
            base.key("graffiti"),
            "the graffiti holds `{{` or `}}`, which the charts would evaluate as a Helm template",
            "use other brackets",
        );
    }
    let mev_boost_url = match (&s.mev_boost.enabled, &s.mev_boost.url) {
        (true, Some(u)) if is_http_url(u) => Some(u.clone()),
        (true, Some(u)) => {
            c.error(
                base.key("mev_boost").key("url"),
                url_problem(u),
                "give the mev-boost service's URL, e.g. http://mev-boost:18550",
            );
            None
        }
        (true, None) => {
            c.error(
                base.key("mev_boost"),
                "MEV-boost is enabled but `mev_boost.url` is not given",
                "add url: http://mev-boost:18550 (your mev-boost service), or set enabled: false",
            );
            None
        }
        (false, _) => None,
    };
    let p2p_public_ip = s.p2p.public_ip.as_deref().and_then(|text| {
        let at = base.key("p2p").key("public_ip");
        let hint = "give the IPv4 address peers on the internet dial (your router's public address), or leave it out to advertise each node's own";
        match text.parse::<std::net::Ipv4Addr>() {
            Err(_) => {
                c.error(at, format!("{text:?} is not an IPv4 address"), hint);
                None
            }
            Ok(ip) => {
                if let Some(range) = crate::model::unusable_range(ip) {
                    c.error(
                        at,
                        format!("{ip} is not an address peers can dial: it is in {range}"),
                        hint,
                    );
                    return None;
                }
                if crate::model::is_private_v4(ip) {
                    c.warning(
                        at,
                        format!("{ip} is a private address: peers on the internet cannot dial it"),
                        "give the router's public address, or leave public_ip out on a LAN-only setup",
                    );
                }
                Some(ip)
            }
        }
    });
    if p2p_public_ip.is_some() && s.p2p.node.is_none() {
        c.warning(
            base.key("p2p").key("public_ip"),
            "a router forwards a port to one machine, but without `p2p.node` the clients may run on any node",
            "add `node: <machine>` under p2p and forward the P2P ports (README, Peers) to that machine",
        );
    }
    if s.start_delay < EPOCH_SECONDS && !waived("short-start-delay") {
        c.error(
            base.key("start_delay"),
            format!(
                "a start delay of {} s is less than one epoch ({EPOCH_SECONDS} s): {}",
                s.start_delay,
                risk("short-start-delay")
            ),
            "use 768 (two epochs, the default), or accept the risk with `overrides: [short-start-delay]`",
        );
    } else if s.start_delay < 2 * EPOCH_SECONDS {
        c.warning(
            base.key("start_delay"),
            format!(
                "a start delay of {} s is less than two epochs",
                s.start_delay
            ),
            "768 s (two epochs) lets a stale validator's last attestations expire",
        );
    }
    if !s.doppelganger && !waived("no-doppelganger") {
        c.error(
            base.key("doppelganger"),
            format!(
                "doppelganger protection is off: {}",
                risk("no-doppelganger")
            ),
            "remove `doppelganger: false`, or accept the risk with `overrides: [no-doppelganger]`",
        );
    }

    let mut groups = Vec::new();
    let mut names = BTreeMap::new();
    for (i, g) in s.validators.iter().enumerate() {
        let p = base.key("validators").index(i);
        let name = g.name.clone().unwrap_or_default();
        if g.name.is_none() {
            c.error(
                p.clone(),
                "the validator group has no `name`",
                "add name: group-1",
            );
        } else if !crate::model::is_dns_label(&name) || name.len() > 40 {
            c.error(
                p.key("name"),
                format!("{name:?} is not a usable group name"),
                "use up to 40 lowercase letters, digits and hyphens",
            );
        } else if let Some(first) = names.insert(name.clone(), i) {
            c.error(
                p.key("name"),
                format!(
                    "validator group {name:?} is defined twice (also entry {})",
                    first + 1
                ),
                "give every group its own name",
            );
        }
        for (key, value) in [
            ("keystores", &g.keystores),
            ("password_file", &g.password_file),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                c.error(
                    p.clone(),
                    format!("the validator group has no `{key}`"),
                    "give keystores: (a folder of keystore-*.json) and password_file: (their password)",
                );
            }
        }
        if g.replicas != 1 && !waived("multiple-replicas") {
            c.error(
                p.key("replicas"),
                format!("{} replicas: {}", g.replicas, risk("multiple-replicas")),
                "remove replicas (one is the only safe number), or accept the risk with `overrides: [multiple-replicas]`",
            );
        }
        groups.push(Group {
            name,
            keystores: g.keystores.clone().unwrap_or_default(),
            password_file: g.password_file.clone().unwrap_or_default(),
            replicas: g.replicas,
        });
    }

    let mut charts = BTreeMap::new();
    for (name, pin) in &s.charts {
        let p = base.key("charts").key(name);
        if !DEFAULT_CHARTS.iter().any(|(n, _, _)| n == name) {
            let known: Vec<&str> = DEFAULT_CHARTS.iter().map(|(n, _, _)| *n).collect();
            c.error(
                p.clone(),
                format!("no chart {name:?} is used by nodeimg"),
                format!("chart pins are for: {}", known.join(", ")),
            );
            continue;
        }
        let sha = pin
            .sha256
            .as_deref()
            .and_then(crate::io::hash::parse_sha256);
        if sha.is_none() {
            c.error(
                if pin.sha256.is_some() {
                    p.key("sha256")
                } else {
                    p.clone()
                },
                format!("the {name} chart pin has no valid sha256"),
                "give the .tgz's sha256 (the `digest` in the chart repository's index.yaml)",
            );
        }
        let Some(version) = pin.version.clone().filter(|v| !v.is_empty()) else {
            c.error(
                p.clone(),
                format!("the {name} chart pin has no version"),
                "add version: 1.2.3",
            );
            continue;
        };
        charts.insert(
            name.clone(),
            ChartPin {
                version,
                sha256: sha.unwrap_or_default(),
            },
        );
    }
    for used in [execution.as_str(), consensus.as_str()] {
        if !charts.contains_key(used) {
            if let Some((n, v, h)) = DEFAULT_CHARTS.iter().find(|(n, _, _)| *n == used) {
                charts.insert(
                    n.to_string(),
                    ChartPin {
                        version: v.to_string(),
                        sha256: h.to_string(),
                    },
                );
            }
        }
    }
    charts.retain(|n, _| n == &execution || n == &consensus);

    let legacy = match s.chart_source.as_deref() {
        None | Some("ethpandaops") => None,
        Some("eth2xk8s") => {
            let p = base.key("chart_source");
            c.warning(
                p.clone(),
                "the eth2xk8s chart predates the Merge (Prysm's pre-merge flags, no JWT): it reproduces the tutorial's layout but cannot attest on hoodi or mainnet",
                "use the default ethpandaops charts to stake",
            );
            if consensus != "prysm" {
                c.error(
                    base.key("consensus").key("client"),
                    "the eth2xk8s chart runs Prysm only",
                    "use client: prysm with chart_source: eth2xk8s",
                );
            }
            if split_image(&consensus_image).1 != split_image(&validator_image).1 {
                c.error(
                    base.key("consensus").key("validator_image"),
                    "the eth2xk8s chart uses one version tag for the beacon node and the validator",
                    "give both images the same tag",
                );
            }
            let pin = s.eth2xk8s.clone().unwrap_or(profile::LegacyPin {
                commit: None,
                sha256: None,
            });
            let commit = pin.commit.unwrap_or_else(|| LEGACY_COMMIT.to_string());
            if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
                c.error(
                    base.key("eth2xk8s").key("commit"),
                    format!("{commit:?} is not a full git commit id"),
                    format!("pin the 40-hex-digit commit, e.g. {LEGACY_COMMIT}"),
                );
            }
            let sha = pin
                .sha256
                .as_deref()
                .and_then(crate::io::hash::parse_sha256);
            if sha.is_none() {
                c.error(
                    if pin.sha256.is_some() {
                        base.key("eth2xk8s").key("sha256")
                    } else {
                        p
                    },
                    "the eth2xk8s archive has no valid sha256 pin (`staking.eth2xk8s.sha256`)",
                    format!(
                        "download {} once, check it, and pin its sha256 (sha256sum prints it)",
                        legacy_url(&commit)
                    ),
                );
            }
            Some(LegacyChart {
                commit,
                sha256: sha.unwrap_or_default(),
            })
        }
        Some(other) => {
            c.error(
                base.key("chart_source"),
                format!("unknown chart source {other:?}"),
                "use ethpandaops (the default) or eth2xk8s (the reference's pre-merge chart)",
            );
            None
        }
    };
    if legacy.is_some() {
        // The consensus side comes from the archive, not a chart pin.
        charts.retain(|n, _| n == &execution);
    }

    if legacy.is_some() && (p2p_public_ip.is_some() || s.p2p.node.is_some()) {
        c.warning(
            base.key("p2p"),
            "the eth2xk8s chart takes no address to advertise and no node: `p2p` applies to the execution client only",
            "use the ethpandaops charts (leave chart_source out) to place and advertise the beacon node too",
        );
    }
    if c.error_count() > before {
        return None;
    }
    Some(StakingSpec {
        network: network?,
        namespace: s.namespace.clone(),
        execution,
        execution_image,
        consensus,
        consensus_image,
        validator_image,
        checkpoint_sync_url,
        fee_recipient,
        graffiti: s.graffiti.clone(),
        mev_boost_url,
        p2p_public_ip,
        p2p_node: s.p2p.node.clone(),
        start_delay: s.start_delay,
        doppelganger: s.doppelganger,
        groups,
        charts,
        overrides,
        legacy,
    })
}

/// One validator group's keys as read from disk.
#[derive(Debug, Clone)]
pub struct GroupKeys {
    pub group: String,
    /// (file name, content, pubkey)
    pub keystores: Vec<(String, Vec<u8>, String)>,
    pub password: Vec<u8>,
}

/// Reads every group's keystores and password (paths relative to
/// `base_dir`), and checks that no pubkey is in two groups. Problems come
/// back as diagnostics on the group's keys.
pub fn read_keys(
    spec: &StakingSpec,
    base_dir: &FsPath,
    allowed: &Confinement,
) -> (Vec<GroupKeys>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    const OUTSIDE_HINT: &str = "keep the validator keys beside the profile, or list their folder in `trusted_folders: [/path/to/folder]` to allow it explicitly";
    for (i, g) in spec.groups.iter().enumerate() {
        let p = Path::root().key("staking").key("validators").index(i);
        let mut keystores = Vec::new();
        let dir = allowed.resolve(base_dir, &g.keystores).and_then(|d| {
            std::fs::read_dir(&d)
                .map(|entries| (d.clone(), entries))
                .map_err(|e| PathProblem::Unreadable(format!("{}: {e}", d.display())))
        });
        match dir {
            Err(PathProblem::Outside(why)) => {
                diags.push(Diagnostic::error(p.key("keystores"), why, OUTSIDE_HINT))
            }
            Err(PathProblem::Unreadable(why)) => diags.push(Diagnostic::error(
                p.key("keystores"),
                format!("cannot read the keystore folder {why}"),
                "give a folder of EIP-2335 keystores (keystore-*.json), relative to the profile; the staking-deposit-cli writes them to validator_keys/",
            )),
            Ok((dir, entries)) => {
                let mut files: Vec<_> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|f| {
                        f.file_name().is_some_and(|n| {
                            let n = n.to_string_lossy();
                            n.starts_with("keystore") && n.ends_with(".json")
                        })
                    })
                    .collect();
                files.sort();
                let too_many = files.len() > crate::io::input::MAX_KEYSTORES;
                if too_many {
                    diags.push(Diagnostic::error(
                        p.key("keystores"),
                        format!(
                            "{} holds {} keystore files, more than the {} nodeimg reads for one group",
                            dir.display(),
                            files.len(),
                            crate::io::input::MAX_KEYSTORES
                        ),
                        "split the keys into several groups",
                    ));
                    files.clear();
                }
                if files.is_empty() && !too_many {
                    diags.push(Diagnostic::error(
                        p.key("keystores"),
                        format!("{} holds no keystore-*.json file", dir.display()),
                        "point it at the folder your deposit tool wrote the keystores to",
                    ));
                }
                for f in files {
                    let name = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    // A keystore may be a symlink: where it points must be allowed too.
                    let read = allowed.resolve(&dir, &name).and_then(|real| {
                        read_regular(&real, crate::io::input::MAX_KEYSTORE)
                            .map_err(PathProblem::Unreadable)
                    });
                    let bytes = match read {
                        Ok(b) => b,
                        Err(why) => {
                            let hint = match why {
                                PathProblem::Outside(_) => OUTSIDE_HINT,
                                PathProblem::Unreadable(_) => "use the keystore files your deposit tool wrote (regular files of a few KiB)",
                            };
                            diags.push(Diagnostic::error(p.key("keystores"), why.to_string(), hint));
                            continue;
                        }
                    };
                    let pubkey = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .filter(|v| v["version"] == 4 && v["crypto"].is_object())
                        .and_then(|v| v["pubkey"].as_str().map(|s| s.trim_start_matches("0x").to_ascii_lowercase()))
                        .filter(|k| k.len() == 96 && k.bytes().all(|b| b.is_ascii_hexdigit()));
                    let Some(pubkey) = pubkey else {
                        diags.push(Diagnostic::error(
                            p.key("keystores"),
                            format!("{} is not an EIP-2335 keystore (version 4, crypto, a 48-byte pubkey)", f.display()),
                            "use the keystore files your deposit tool wrote",
                        ));
                        continue;
                    };
                    if let Some(other) = seen.insert(pubkey.clone(), g.name.clone()) {
                        if !spec.overrides.contains("same-key-in-two-groups") {
                            diags.push(Diagnostic::error(
                                p.key("keystores"),
                                format!(
                                    "validator 0x{}... is in group {other:?} and in group {:?}: two validator clients signing with one key is a slashable double vote",
                                    &pubkey[..12],
                                    g.name
                                ),
                                "keep every key in exactly one group, or accept the risk with `overrides: [same-key-in-two-groups]`",
                            ));
                        }
                    }
                    keystores.push((name, bytes, pubkey));
                }
            }
        }
        let pw_path = base_dir.join(&g.password_file);
        let read = allowed
            .resolve(base_dir, &g.password_file)
            .and_then(|real| {
                read_regular(&real, crate::io::input::MAX_PASSWORD).map_err(PathProblem::Unreadable)
            });
        let password = match read {
            Ok(b) if !b.trim_ascii().is_empty() => {
                crate::redact::register(&[String::from_utf8_lossy(&b).into_owned()]);
                b
            }
            Ok(_) => {
                diags.push(Diagnostic::error(
                    p.key("password_file"),
                    format!("{} is empty", pw_path.display()),
                    "put the keystores' password in it",
                ));
                Vec::new()
            }
            Err(PathProblem::Outside(why)) => {
                diags.push(Diagnostic::error(p.key("password_file"), why, OUTSIDE_HINT));
                Vec::new()
            }
            Err(PathProblem::Unreadable(why)) => {
                diags.push(Diagnostic::error(
                    p.key("password_file"),
                    crate::io::input::about("the password file", &why),
                    "give the file holding the keystores' password (a regular file of at most 4 KiB), relative to the profile",
                ));
                Vec::new()
            }
        };
        out.push(GroupKeys {
            group: g.name.clone(),
            keystores,
            password,
        });
    }
    (out, diags)
}

/// One Helm release of the staking stack.
#[derive(Debug, Clone)]
pub struct Release {
    /// Release name: execution, beacon, validator-<group>.
    pub name: String,
    /// The chart's name in the repository (geth, prysm, ...).
    pub chart: String,
    pub pin: ChartPin,
    /// `values/<release>.yaml`, relative to the release directory.
    pub values_file: String,
    pub values: Value,
    /// Values that come from files beside the values (secrets that must not
    /// sit in a values file): (key, file), passed as `--set-file KEY=FILE`.
    pub set_files: Vec<(String, String)>,
    /// A chart in the release directory (`charts/<chart>`), not in the
    /// ethpandaops repository.
    pub local: bool,
}

/// The directory inside the data folder where a group's keys are placed.
pub const KEYSTORE_DIR: &str = "keystores";
pub const PASSWORD_FILE: &str = "password.txt";
/// The JWT secret file beside the release files (and its path on the master).
pub const JWT_FILE: &str = "jwt.hex";

fn pvc(folder: &str) -> String {
    format!("staking-{folder}")
}

/// Values every release shares: one pod, storage on its NFS claim, the
/// export's owner, no root chown (it fails under root_squash), no
/// PodDisruptionBudget (some charts still render policy/v1beta1).
fn common_values(spec: &crate::Spec, name: &str, folder: &str, image: &str) -> Value {
    let (repository, tag) = split_image(image);
    json!({
        "fullnameOverride": name,
        "replicas": 1,
        "image": {"repository": repository, "tag": tag},
        "persistence": {"enabled": true, "existingClaim": pvc(folder)},
        "securityContext": {
            "runAsUser": spec.nfs.uid,
            "runAsGroup": spec.nfs.gid,
            "fsGroup": spec.nfs.gid,
            "runAsNonRoot": true,
        },
        "initChownData": {"enabled": false},
        "podDisruptionBudget": {},
    })
}

/// The characters a URL may hold here: the charts paste URLs into a shell
/// command (`sh -ac`), so anything the shell or Kubernetes would interpret
/// (`&;$'"()<>|*! `, backquotes, spaces, `{{`) is refused rather than quoted.
const URL_CHARS: &str = "-._~:/?=%@+,[]";

/// The part after `http://` or `https://`, if `u` has one of them.
fn after_http_scheme(u: &str) -> Option<&str> {
    u.strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
}

fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || URL_CHARS.contains(c)
}

fn is_http_url(u: &str) -> bool {
    after_http_scheme(u).is_some_and(|rest| !rest.is_empty() && rest.chars().all(is_url_char))
}

fn url_problem(u: &str) -> String {
    match (after_http_scheme(u), u.chars().find(|c| !is_url_char(*c))) {
        (Some(_), Some(bad)) => format!(
            "the URL holds {bad:?}, which the charts' shell command would interpret (allowed: letters, digits and {URL_CHARS}; percent-encode the rest)"
        ),
        _ => format!("{u:?} is not an http(s) URL"),
    }
}

/// One `extraArgs` entry that reaches the client as exactly one argument
/// `FLAG=VALUE`, whatever VALUE holds: the ethpandaops charts paste
/// extraArgs unquoted into `sh -ac` (so it is single-quoted for sh), and
/// Kubernetes expands `$(VAR)` in a container's command first (so `$` is
/// written `$$`).
pub fn shell_arg(flag: &str, value: &str) -> String {
    crate::model::sh_quote(&format!("{flag}={value}")).replace('$', "$$")
}

/// The charts render `"{repository}:{tag}"`: split at the last `:`, so
/// that a digest reference (`repo@sha256:HEX`) comes out whole again.
fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

fn execution_args(client: &str, n: Network) -> Vec<String> {
    let mut a: Vec<String> = clients::client(client)
        .network_arg(n.as_str())
        .into_iter()
        .collect();
    if client == "reth" {
        // libmdbx refuses a database on NFS unless it is opened exclusively
        // (reth `--db.exclusive`: "makes it possible to open a database on
        // an NFS volume").
        a.push("--db.exclusive=true".into());
    }
    a
}

/// The values that let peers on the internet reach a client: a container
/// that holds the client's P2P ports as host ports of the node it runs on,
/// the address to advertise (the node's, from the downward API, or the
/// profile's public one), the client's own port flags, and the node it is
/// pinned to when the profile names one.
fn expose_p2p(values: &mut Value, client: &clients::Client, s: &StakingSpec) {
    let address = match s.p2p_public_ip {
        Some(ip) => ip.to_string(),
        None => {
            values["extraEnv"] = json!([{
                "name": "HOST_IP",
                "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}},
            }]);
            clients::HOST_IP.to_string()
        }
    };
    if let Some(args) = values["extraArgs"].as_array_mut() {
        args.push(json!(format!("{}{address}", client.advertise_flag)));
        args.extend(client.p2p_flags.iter().map(|f| json!(f)));
    }
    let ports: Vec<Value> = client
        .p2p
        .iter()
        .map(|p| {
            json!({
                "name": format!("host-{}-{}", p.port, p.proto.as_str()),
                "containerPort": p.port,
                "hostPort": p.port,
                "protocol": p.proto.as_str().to_uppercase(),
            })
        })
        .collect();
    values["extraContainers"] = json!([{
        "name": "p2p-host-ports",
        "image": clients::HOST_PORTS_IMAGE,
        "ports": ports,
        "resources": {"requests": {"cpu": "1m", "memory": "8Mi"}, "limits": {"memory": "16Mi"}},
    }]);
    if let Some(node) = &s.p2p_node {
        values["nodeSelector"] = json!({"kubernetes.io/hostname": node});
    }
}

/// The beacon node's HTTP API port in each chart.
fn beacon_http_port(client: &str) -> u16 {
    match client {
        "prysm" => 3500,
        "teku" => 5051,
        _ => 5052,
    }
}

fn beacon_args(s: &StakingSpec) -> Vec<String> {
    let engine = "http://execution:8551".to_string();
    let n = s.network.as_str();
    let mut a: Vec<String> = clients::client(&s.consensus)
        .network_arg(n)
        .into_iter()
        .collect();
    a.push(match s.consensus.as_str() {
        "prysm" | "lighthouse" => format!("--execution-endpoint={engine}"),
        "teku" => format!("--ee-endpoint={engine}"),
        _ => format!("--el={engine}"),
    });
    let fee = &s.fee_recipient;
    a.push(match s.consensus.as_str() {
        "teku" => format!("--validators-proposer-default-fee-recipient={fee}"),
        _ => format!("--suggested-fee-recipient={fee}"),
    });
    if s.consensus == "teku" && s.doppelganger {
        // Teku's validator asks the beacon node for liveness data.
        a.push("--beacon-liveness-tracking-enabled=true".into());
    }
    if let Some(url) = &s.mev_boost_url {
        match s.consensus.as_str() {
            "prysm" => a.push(format!("--http-mev-relay={url}")),
            "lighthouse" => a.push(format!("--builder={url}")),
            "teku" => a.push(format!("--builder-endpoint={url}")),
            _ => {
                a.push("--payload-builder=true".into());
                a.push(format!("--payload-builder-url={url}"));
            }
        }
    }
    a
}

/// The validator client's flags, and the init containers that prepare its
/// keys (after the start delay).
fn validator_args(s: &StakingSpec) -> Vec<String> {
    let n = s.network.as_str();
    let fee = &s.fee_recipient;
    let port = beacon_http_port(&s.consensus);
    let mut a: Vec<String> = clients::client(&s.consensus)
        .network_arg(n)
        .into_iter()
        .collect();
    a.extend(match s.consensus.as_str() {
        "prysm" => vec![
            "--beacon-rpc-provider=beacon:4000".into(),
            "--wallet-dir=/data/wallet".into(),
            format!("--wallet-password-file=/data/{PASSWORD_FILE}"),
            format!("--suggested-fee-recipient={fee}"),
        ],
        "lighthouse" => vec![
            format!("--beacon-nodes=http://beacon:{port}"),
            format!("--suggested-fee-recipient={fee}"),
        ],
        _ => vec![
            format!("--beacon-node-api-endpoint=http://beacon:{port}"),
            format!("--validator-keys=/data/{KEYSTORE_DIR}:/data/passwords"),
            format!("--validators-proposer-default-fee-recipient={fee}"),
            // Teku's keystore .lock files hold the PID; after a hard kill the
            // new container is PID 1 again and takes them as live ("already in
            // use"). One pod per group (OnDelete, start delay, doppelganger)
            // is the guard instead.
            "--validators-keystore-locking-enabled=false".into(),
        ],
    });
    // Where the chart's validator command has no data dir (lighthouse), the
    // client would read $HOME, not the keys and slashing database on /data.
    a.extend(
        clients::client(&s.consensus)
            .validator_data_dir_flag
            .map(str::to_string),
    );
    if !s.graffiti.is_empty() {
        a.push(match s.consensus.as_str() {
            "teku" => shell_arg("--validators-graffiti", &s.graffiti),
            _ => shell_arg("--graffiti", &s.graffiti),
        });
    }
    if s.doppelganger {
        a.push(match s.consensus.as_str() {
            "prysm" => "--enable-doppelganger".into(),
            "lighthouse" => "--enable-doppelganger-protection".into(),
            _ => "--doppelganger-detection-enabled=true".into(),
        });
    }
    if s.mev_boost_url.is_some() {
        a.push(match s.consensus.as_str() {
            "prysm" => "--enable-builder".into(),
            "lighthouse" => "--builder-proposals".into(),
            _ => "--validators-builder-registration-default-enabled=true".into(),
        });
    }
    a
}

fn validator_init_containers(spec: &crate::Spec, s: &StakingSpec) -> Value {
    let security =
        json!({"runAsUser": spec.nfs.uid, "runAsGroup": spec.nfs.gid, "runAsNonRoot": true});
    let mount = json!([{"name": "storage", "mountPath": "/data"}]);
    let mut v = vec![json!({
        "name": "start-delay",
        "image": DELAY_IMAGE,
        "command": ["sleep", s.start_delay.to_string()],
        "securityContext": security,
    })];
    let import = match s.consensus.as_str() {
        "prysm" => Some(json!([
            "/app/cmd/validator/validator",
            "accounts",
            "import",
            "--accept-terms-of-use",
            format!("--{}", s.network.as_str()),
            format!("--keys-dir=/data/{KEYSTORE_DIR}"),
            "--wallet-dir=/data/wallet",
            format!("--wallet-password-file=/data/{PASSWORD_FILE}"),
            format!("--account-password-file=/data/{PASSWORD_FILE}"),
        ])),
        "lighthouse" => Some(json!([
            "lighthouse",
            "account",
            "validator",
            "import",
            format!("--network={}", s.network.as_str()),
            "--datadir=/data",
            format!("--directory=/data/{KEYSTORE_DIR}"),
            format!("--password-file=/data/{PASSWORD_FILE}"),
            "--reuse-password",
        ])),
        // Teku reads the keystores in place (passwords/ beside them).
        _ => None,
    };
    if let Some(command) = import {
        v.push(json!({
            "name": "import-keys",
            "image": s.validator_image,
            "command": command,
            "securityContext": security,
            "volumeMounts": mount,
        }));
    }
    Value::Array(v)
}

/// Every release, in install order: execution, beacon, one validator per
/// group.
pub fn releases(spec: &crate::Spec, s: &StakingSpec) -> Vec<Release> {
    let pin = |chart: &str| {
        s.charts.get(chart).cloned().unwrap_or(ChartPin {
            version: String::new(),
            sha256: String::new(),
        })
    };
    let mut out = Vec::new();
    let mut exec = common_values(spec, "execution", "execution", &s.execution_image);
    exec["extraArgs"] = json!(execution_args(&s.execution, s.network));
    expose_p2p(&mut exec, clients::client(&s.execution), s);
    out.push(Release {
        name: "execution".into(),
        chart: s.execution.clone(),
        pin: pin(&s.execution),
        values_file: "values/execution.yaml".into(),
        values: exec,
        set_files: vec![("jwt".into(), JWT_FILE.into())],
        local: false,
    });
    if let Some(legacy) = &s.legacy {
        out.push(legacy_release(spec, s, legacy));
        return out;
    }
    let mut beacon = common_values(spec, "beacon", "beacon", &s.consensus_image);
    if s.consensus != "nimbus" {
        beacon["mode"] = json!("beacon");
    }
    beacon["extraArgs"] = json!(beacon_args(s));
    beacon["checkpointSync"] = json!({"enabled": true, "url": s.checkpoint_sync_url});
    if s.consensus == "nimbus" {
        beacon["checkpointSync"]["network"] = json!(s.network.as_str());
    }
    expose_p2p(&mut beacon, clients::client(&s.consensus), s);
    out.push(Release {
        name: "beacon".into(),
        chart: s.consensus.clone(),
        pin: pin(&s.consensus),
        values_file: "values/beacon.yaml".into(),
        values: beacon,
        set_files: vec![("jwt".into(), JWT_FILE.into())],
        local: false,
    });
    for g in &s.groups {
        let name = g.folder();
        let mut v = common_values(spec, &name, &name, &s.validator_image);
        v["mode"] = json!("validator");
        v["replicas"] = json!(g.replicas);
        // Never a rolling update: a new validator pod starts only after the
        // old one is deleted (and then waits out the start delay).
        v["updateStrategy"] = json!({"type": "OnDelete"});
        v["extraArgs"] = json!(validator_args(s));
        v["initContainers"] = validator_init_containers(spec, s);
        if s.consensus == "teku" {
            // The chart probes the REST API (5051), which teku's validator
            // client does not serve by default: probe its metrics instead, as
            // the chart's own validator CI values do.
            let probe = json!({"tcpSocket": null, "httpGet": {"path": "/metrics", "port": 8008}});
            v["livenessProbe"] = probe.clone();
            v["readinessProbe"] = probe;
        }
        out.push(Release {
            name: name.clone(),
            chart: s.consensus.clone(),
            pin: pin(&s.consensus),
            values_file: format!("values/{name}.yaml"),
            values: v,
            set_files: Vec::new(),
            local: false,
        });
    }
    out
}

/// The eth2xk8s chart's release: beacon node and validator clients in one,
/// on inline NFS volumes, each group's wallet password from a file.
fn legacy_release(spec: &crate::Spec, s: &StakingSpec, legacy: &LegacyChart) -> Release {
    let root = spec.nfs.export_root.trim_end_matches('/');
    let (beacon_image, tag) = split_image(&s.consensus_image);
    let (validator_image, _) = split_image(&s.validator_image);
    let mut clients = serde_json::Map::new();
    // The chart's own values.yaml defines an example client; helm merges
    // maps, so it would run too unless removed (null deletes a default).
    clients.insert("validatorClient1".into(), Value::Null);
    let mut set_files = Vec::new();
    for g in &s.groups {
        let folder = g.folder();
        clients.insert(
            g.name.clone(),
            json!({
                "name": folder,
                "dataDirPath": format!("{root}/{folder}"),
                "walletDirPath": format!("{root}/{folder}/wallet"),
                "walletPasswordSecretName": format!("wallet-password-{}", g.name),
                "graffiti": s.graffiti,
            }),
        );
        set_files.push((
            format!("validatorClients.{}.walletPassword", g.name),
            format!("passwords/{}.txt", g.name),
        ));
    }
    let values = json!({
        "namespace": s.namespace,
        // The chart passes --<testnet>; mainnet is no flag at all.
        "ethereumTestnet": if s.network == Network::Mainnet { "" } else { s.network.as_str() },
        "persistentVolumeType": "nfs",
        "nfs": {"serverIp": spec.nfs_server().ip.to_string()},
        "securityContext": {"runAsUser": spec.nfs.uid, "runAsGroup": spec.nfs.gid},
        "image": {"beaconImage": beacon_image, "validatorImage": validator_image, "versionTag": tag},
        "beacon": {
            "name": "beacon",
            "dataDirPath": format!("{root}/beacon"),
            "p2pTcpPort": clients::LEGACY_PRYSM_TCP,
            "p2pUdpPort": clients::LEGACY_PRYSM_UDP,
            "eth1Endpoints": ["http://execution:8545"],
            "genesisStateFile": "",
        },
        "validatorStartWaitTime": s.start_delay,
        "validatorClients": clients,
    });
    Release {
        name: "prysm".into(),
        chart: LEGACY_CHART.into(),
        pin: ChartPin {
            version: LEGACY_VERSION.into(),
            sha256: legacy.sha256.clone(),
        },
        values_file: "values/prysm.yaml".into(),
        values,
        set_files,
        local: true,
    }
}

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

/// Static NFS PersistentVolumes and their claims, one per workload folder,
/// bound to each other by name (no storage class, no provisioner).
pub fn storage_manifest(spec: &crate::Spec, s: &StakingSpec) -> String {
    let server = spec.nfs_server().ip.to_string();
    let mut docs = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": s.namespace},
    })];
    // The eth2xk8s chart mounts its NFS folders inline; only the execution
    // client needs a claim then.
    let folders = if s.legacy.is_some() {
        vec!["execution".to_string()]
    } else {
        s.folders()
    };
    for folder in folders {
        let name = pvc(&folder);
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": format!("{}-{name}", s.namespace)},
            "spec": {
                "capacity": {"storage": "1Ti"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "nfs": {"server": server, "path": format!("{}/{folder}", spec.nfs.export_root)},
                "claimRef": {"namespace": s.namespace, "name": name},
            },
        }));
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": s.namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": format!("{}-{name}", s.namespace),
                "resources": {"requests": {"storage": "1Ti"}},
            },
        }));
    }
    docs.iter()
        .map(|d| format!("---\n{}", to_yaml(d)))
        .collect()
}

/// YAML text of a JSON value (keys in order, deterministic).
pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_default()
}

/// The commands that install (or upgrade) the release: storage first,
/// then each release in order. `jwt.hex` beside it holds the JWT secret;
/// it reaches the charts as a file, never through a values file. With
/// `verified_archives` (the release directory holds `charts/<chart>-<version>.tgz`,
/// checked against the pins), helm installs those files; without them
/// (`--values-only`) it fetches from the ethpandaops repository, which it does
/// not check against the pins.
pub fn install_script(s: &StakingSpec, releases: &[Release], verified_archives: bool) -> String {
    let mut out = String::from(
        "#!/bin/sh\n# Generated by nodeimg: installs or upgrades the staking release.\n# Run from this directory with kubectl and helm pointed at the cluster.\nset -eu\ncd \"$(dirname \"$0\")\"\n",
    );
    if !verified_archives && releases.iter().any(|r| !r.local) {
        out.push_str(&format!(
            "helm repo add ethpandaops {CHART_REPOSITORY} --force-update >/dev/null\n"
        ));
    }
    out.push_str("kubectl apply -f storage.yaml\n");
    for r in releases {
        let chart = if r.local {
            format!("charts/{}", r.chart)
        } else if verified_archives {
            format!("charts/{}", chart_archive(&r.chart, &r.pin.version))
        } else {
            format!("ethpandaops/{}", r.chart)
        };
        let files: String = r
            .set_files
            .iter()
            .map(|(k, f)| format!(" --set-file {k}={f}"))
            .collect();
        out.push_str(&format!(
            "helm upgrade --install {} {chart} --version {} -n {} -f {}{files}\n",
            r.name, r.pin.version, s.namespace, r.values_file
        ));
    }
    out
}

/// The file name of a chart's archive, as the ethpandaops releases and
/// `helm package` name it.
pub fn chart_archive(chart: &str, version: &str) -> String {
    format!("{chart}-{version}.tgz")
}

/// `NAME CHART_FILE VALUES_FILE JWT(yes|no)`, one release a line, in
/// install order: what the master's release step runs.
pub fn releases_list(releases: &[Release]) -> String {
    releases
        .iter()
        .map(|r| {
            let jwt = if r.name == "execution" || r.name == "beacon" {
                "yes"
            } else {
                "no"
            };
            format!(
                "{} {} {} {jwt}\n",
                r.name,
                chart_archive(&r.chart, &r.pin.version),
                r.values_file
            )
        })
        .collect()
}

/// What the seeds carry for the staking release: on the NFS server each
/// group's keystores and password (nowhere else), on the master the chart
/// archives, values, storage manifest, release list and JWT secret.
/// `charts` may be empty (validate and show render without them).
pub fn payload(
    spec: &crate::Spec,
    s: &StakingSpec,
    keys: &[GroupKeys],
    charts: &[(String, Vec<u8>)],
    jwt: &str,
) -> crate::payload::Payload {
    use crate::payload::PayloadFile;
    let mut payload = crate::payload::Payload::default();
    let mut nfs = Vec::new();
    for g in keys {
        let dir = format!("{KEYS_STAGING}/{}", g.group);
        for (name, bytes, _) in &g.keystores {
            nfs.push(PayloadFile::new(
                format!("{dir}/{KEYSTORE_DIR}/{name}"),
                0o600,
                bytes,
                true,
            ));
        }
        nfs.push(PayloadFile::new(
            format!("{dir}/{PASSWORD_FILE}"),
            0o600,
            &g.password,
            false,
        ));
    }
    payload.files.insert(spec.nfs_server().name.clone(), nfs);
    if s.legacy.is_some() {
        // The eth2xk8s chart takes the wallet passwords as values, which
        // must not reach the master: it is installed by hand (install.sh).
        return payload;
    }
    let releases = releases(spec, s);
    let mut master = Vec::new();
    for (file, bytes) in charts {
        // Chart archives are compressed already.
        master.push(PayloadFile::new(
            format!("{RELEASE_DIR}/charts/{file}"),
            0o600,
            bytes,
            false,
        ));
    }
    for r in &releases {
        master.push(PayloadFile::new(
            format!("{RELEASE_DIR}/{}", r.values_file),
            0o600,
            to_yaml(&r.values).as_bytes(),
            true,
        ));
    }
    master.push(PayloadFile::new(
        format!("{RELEASE_DIR}/storage.yaml"),
        0o600,
        storage_manifest(spec, s).as_bytes(),
        true,
    ));
    master.push(PayloadFile::new(
        format!("{RELEASE_DIR}/releases.list"),
        0o600,
        releases_list(&releases).as_bytes(),
        true,
    ));
    master.push(PayloadFile::new(
        format!("{RELEASE_DIR}/{JWT_FILE}"),
        0o600,
        jwt.as_bytes(),
        false,
    ));
    payload.files.insert(spec.master().name.clone(), master);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_matches_the_eips_examples() {
        // From EIP-55's test vectors.
        for a in [
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "fB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "dbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "D1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(eip55(a), a);
        }
    }

    #[test]
    fn image_pins() {
        assert!(is_unpinned("ethereum/client-go"));
        assert!(is_unpinned("ethereum/client-go:latest"));
        assert!(is_unpinned(
            "gcr.io/prysmaticlabs/prysm/beacon-chain:stable"
        ));
        assert!(!is_unpinned("ethereum/client-go:v1.16.7"));
        assert!(!is_unpinned("registry:5000/geth@sha256:abcd"));
        assert_eq!(
            split_image("repo/x@sha256:abcd"),
            ("repo/x@sha256".to_string(), "abcd".to_string())
        );
        assert_eq!(
            split_image("registry:5000/geth:v1"),
            ("registry:5000/geth".to_string(), "v1".to_string())
        );
    }
}

//! The `staking` section checked into a [`StakingSpec`]: one function a
//! subsection, the slashing-safety rules and their waivers.

use std::collections::{BTreeMap, BTreeSet};

use super::values::split_image;
use super::{
    clients, legacy_url, ChartPin, Failover, Group, LegacyChart, Migrations, Network, Signer,
    StakingSpec, DEFAULT_CHARTS, EPOCH_SECONDS, LEGACY_COMMIT, WEB3SIGNER_CHART, WEB3SIGNER_COMMIT,
    WEB3SIGNER_IMAGE, WEB3SIGNER_MIGRATIONS,
};
use crate::diag::{Checker, Kind, Path};
use crate::profile;

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

fn check_image(c: &mut Checker, path: Path, image: &Option<String>, what: &str) -> String {
    match image {
        Some(i) if !i.trim().is_empty() && !i.contains(char::is_whitespace) => i.clone(),
        Some(i) => {
            c.error(
                Kind::Malformed,
                path,
                format!("{i:?} is not a container image"),
                "write repository:tag, e.g. ethereum/client-go:v1.16.7, or repository@sha256:...",
            );
            String::new()
        }
        None => {
            c.error(
                Kind::Missing,
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
    let at = Path::root().key("staking");
    let before = c.error_count();
    let network = network(c, &at, s.network.as_deref());
    if !crate::model::is_dns_label(&s.namespace) {
        c.error(
            Kind::Malformed,
            at.key("namespace"),
            format!("{:?} is not a Kubernetes namespace name", s.namespace),
            "use lowercase letters, digits and hyphens, e.g. staking",
        );
    }
    let (execution, consensus) = client_names(c, &at, s);
    let images = images(c, &at, s, &consensus);
    let waivers = Waivers::read(c, &at, &s.overrides);
    image_pins(
        c,
        network,
        &waivers,
        &[
            (at.key("execution").key("image"), &images.execution),
            (at.key("consensus").key("image"), &images.consensus),
            (
                at.key("consensus").key("validator_image"),
                &images.validator,
            ),
        ],
    );
    let checkpoint_sync_url = checkpoint_sync_url(c, &at, s.checkpoint_sync_url.as_ref(), network);
    let fee_recipient = fee_recipient(c, &at, s.fee_recipient.as_deref());
    graffiti(c, &at, &s.graffiti);
    let mev_boost_url = mev_boost_url(c, &at, &s.mev_boost);
    let p2p_public_ip = p2p_public_ip(c, &at, &s.p2p);
    signing_delays(c, &at, s, &waivers);
    let groups = groups(c, &at, &s.validators, &waivers);
    let legacy = legacy_chart(c, &at, s, &consensus, &images);
    let signer = signer(c, &at, s, legacy.is_some());
    let mut used = vec![execution.as_str(), consensus.as_str()];
    if let Some(Signer::Web3Signer { image, .. }) = &signer {
        used.push(WEB3SIGNER_CHART);
        let key = at.key("web3signer").key("image");
        image_pins(c, network, &waivers, &[(key, image)]);
    }
    let mut charts = chart_pins(c, &at, &s.charts, &used);
    let failover = failover(c, &at, s);
    if legacy.is_some() {
        // The consensus side comes from the archive, not a chart pin.
        charts.retain(|n, _| n == &execution);
        if p2p_public_ip.is_some() || s.p2p.node.is_some() {
            c.warning(
                Kind::Risky,
                at.key("p2p"),
                "the eth2xk8s chart takes no address to advertise and no node: `p2p` applies to the execution client only",
                "use the ethpandaops charts (leave chart_source out) to place and advertise the beacon node too",
            );
        }
    }
    if c.error_count() > before {
        return None;
    }
    Some(StakingSpec {
        network: network?,
        namespace: s.namespace.clone(),
        execution,
        execution_image: images.execution,
        consensus,
        consensus_image: images.consensus,
        validator_image: images.validator,
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
        overrides: waivers.0,
        legacy,
        signer: signer?,
        failover: failover?,
    })
}

/// `failover`: automatic only where a second signature is refused by the
/// signer's database; with the local signer a moved validator client could
/// sign beside its old self on a node that is cut off but still running.
fn failover(c: &mut Checker, at: &Path, s: &profile::Staking) -> Option<Failover> {
    // As written, so that a signer with errors of its own adds none here.
    let remote = s.signer.as_deref() == Some("web3signer");
    let p = at.key("failover");
    match s.failover.as_deref() {
        None if remote => Some(Failover::Automatic),
        None | Some("manual") => Some(Failover::Manual),
        Some("automatic") if remote => Some(Failover::Automatic),
        Some("automatic") => {
            c.error(
                Kind::Unsafe,
                p,
                "automatic failover with the local signer: a validator client moved off a node that is cut off but still running would sign beside its old self with the same keys and slashing database, a slashable double vote",
                "use `signer: web3signer` (its PostgreSQL refuses a second signature), or keep `failover: manual` and follow the runbook in the README (Redundancy)",
            );
            None
        }
        Some(other) => {
            c.error(
                Kind::Unknown,
                p,
                format!("no failover {other:?}"),
                "use automatic (with signer: web3signer) or manual",
            );
            None
        }
    }
}

/// `signer`: `local` (default) or `web3signer`, with the pins of
/// Web3Signer's database migrations.
fn signer(c: &mut Checker, at: &Path, s: &profile::Staking, legacy: bool) -> Option<Signer> {
    let p = at.key("signer");
    match s.signer.as_deref() {
        None | Some("local") => {
            if s.web3signer.is_some() {
                c.warning(
                    Kind::Risky,
                    at.key("web3signer"),
                    "`web3signer` settings with the local signer are not used",
                    "add `signer: web3signer`, or remove the web3signer section",
                );
            }
            Some(Signer::Local)
        }
        Some("web3signer") => {
            if legacy {
                c.error(
                    Kind::Conflict,
                    p.clone(),
                    "the eth2xk8s chart cannot sign through a remote signer",
                    "use the ethpandaops charts (leave chart_source out) with web3signer",
                );
            }
            let settings = s.web3signer.clone().unwrap_or_default();
            let image = match &settings.image {
                Some(_) => check_image(
                    c,
                    at.key("web3signer").key("image"),
                    &settings.image,
                    "Web3Signer's",
                ),
                None => WEB3SIGNER_IMAGE.to_string(),
            };
            signer_database(c, &at.key("web3signer").key("database"), &settings)?;
            let migrations = migrations(
                c,
                &at.key("web3signer").key("migrations"),
                settings.migrations.as_ref(),
            )?;
            Some(Signer::Web3Signer { migrations, image })
        }
        Some(other) => {
            c.error(
                Kind::Unknown,
                p,
                format!("no signer {other:?}"),
                "use local (each validator client signs) or web3signer",
            );
            None
        }
    }
}

/// `web3signer.database`: the NFS server's PostgreSQL. A database that
/// forgets (the chart's bundled one lives on one node's volume) or is not
/// PostgreSQL (the only one Web3Signer's slashing protection supports) is
/// refused: the database is what makes a moved validator client safe.
fn signer_database(c: &mut Checker, p: &Path, settings: &profile::Web3Signer) -> Option<()> {
    let refuse = |c: &mut Checker, kind: Kind, says: String| {
        c.error(
            kind,
            p.clone(),
            says,
            "leave `database` out (or write nfs-server): nodeimg sets up PostgreSQL on the NFS server, whose disk keeps the slashing history",
        );
        None
    };
    match settings.database.as_deref() {
        None | Some("nfs-server") => Some(()),
        Some("bundled") => refuse(
            c,
            Kind::Unsafe,
            "the web3signer chart's bundled PostgreSQL keeps the slashing history on one node's volume (lost with the node, when a moved signer would need it most), with the password `postgres` and migrations fetched from an unpinned branch at every start".into(),
        ),
        Some(url) if url.starts_with("jdbc:postgresql:") => refuse(
            c,
            Kind::Unsupported,
            format!("{url}: a PostgreSQL database elsewhere is not supported; nodeimg sets up and migrates the one on the NFS server"),
        ),
        Some(other) => refuse(
            c,
            Kind::Unsafe,
            format!("{other:?} is not PostgreSQL: Web3Signer's slashing protection keeps its history only in PostgreSQL"),
        ),
    }
}

/// The migrations' pins: the profile's (a commit and every file's sha256),
/// else nodeimg's. File names become paths on the NFS server and rows of
/// its database: `V<digits>__<letters, digits, _>.sql` only.
fn migrations(
    c: &mut Checker,
    at: &Path,
    pin: Option<&profile::MigrationsPin>,
) -> Option<Migrations> {
    let Some(pin) = pin else {
        return Some(Migrations {
            commit: WEB3SIGNER_COMMIT.into(),
            files: WEB3SIGNER_MIGRATIONS
                .iter()
                .map(|(f, h)| (f.to_string(), h.to_string()))
                .collect(),
        });
    };
    let before = c.error_count();
    let commit = pin.commit.clone().unwrap_or_default();
    match pin.commit.as_deref() {
        None => c.error(
            Kind::Missing,
            at.clone(),
            "the migrations pin has no commit",
            format!(
                "pin the 40-hex-digit commit of Consensys/web3signer, e.g. {WEB3SIGNER_COMMIT}"
            ),
        ),
        Some(_) if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) => c.error(
            Kind::Malformed,
            at.key("commit"),
            format!("{commit:?} is not a full git commit id of Consensys/web3signer"),
            format!("pin the 40-hex-digit commit, e.g. {WEB3SIGNER_COMMIT}"),
        ),
        Some(_) => {}
    }
    if pin.files.is_empty() {
        c.error(
            Kind::Missing,
            at.clone(),
            "the migrations pin lists no files",
            "list every file of the migrations folder with its sha256 under `files`",
        );
    }
    let mut files = Vec::new();
    let mut digits = None;
    for (name, sha) in &pin.files {
        let p = at.key("files").key(name);
        let number = migration_number(name);
        if let (Some(n), Some(first)) = (number, digits) {
            // First boot applies them in name order: it must be their order
            // by number, as zero-padding to one width makes it.
            if n.len() != first {
                c.error(
                    Kind::Malformed,
                    p.clone(),
                    format!("{name:?} is numbered with {} digits, the others with {first}: in name order, as first boot applies them, it would come out of turn", n.len()),
                    "pad every number to one width, as the migrations folder does (V00001__...)",
                );
                continue;
            }
        }
        digits = digits.or(number.map(str::len));
        if number.is_none() {
            c.error(
                Kind::Malformed,
                p.clone(),
                format!("{name:?} is not a Web3Signer migration file name"),
                "name the files as the migrations folder does, e.g. V00001__initial.sql",
            );
            continue;
        }
        let sha = sha256_pin(
            c,
            [p.clone(), p],
            Some(sha),
            format!("migration {name} has no valid sha256"),
            "give the file's sha256 (64 hex digits)".into(),
        );
        files.push((name.clone(), sha.unwrap_or_default()));
    }
    // BTreeMap order: name order, as first boot applies them.
    (c.error_count() == before).then(|| Migrations {
        commit: commit.to_ascii_lowercase(),
        files,
    })
}

/// The number of a migration file named `V<digits>__<letters, digits,
/// _>.sql`; None for any other name.
fn migration_number(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('V')?.strip_suffix(".sql")?;
    let (number, words) = rest.split_once("__")?;
    let named = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && !words.is_empty()
        && words
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    named.then_some(number)
}

const NETWORK_HINT: &str = "use hoodi (the staking testnet) or mainnet";

fn network(c: &mut Checker, at: &Path, network: Option<&str>) -> Option<Network> {
    match network {
        Some("mainnet") => Some(Network::Mainnet),
        Some("hoodi") => Some(Network::Hoodi),
        Some(n) => {
            let lower = n.to_ascii_lowercase();
            let (kind, problem) = match DEAD_NETWORKS.iter().find(|(d, _)| *d == lower) {
                Some((_, why)) => (
                    Kind::Unsupported,
                    format!("network {n:?} cannot be staked on: {why}"),
                ),
                None => (Kind::Unknown, format!("unknown network {n:?}")),
            };
            c.error(kind, at.key("network"), problem, NETWORK_HINT);
            None
        }
        None => {
            c.error(
                Kind::Missing,
                at.clone(),
                "the staking section has no `network`",
                "add `network: hoodi` (the staking testnet) or `network: mainnet`",
            );
            None
        }
    }
}

/// The execution and consensus clients' names (defaults geth and prysm).
fn client_names(c: &mut Checker, at: &Path, s: &profile::Staking) -> (String, String) {
    let execution = s.execution.client.clone().unwrap_or_else(|| "geth".into());
    let consensus = s.consensus.client.clone().unwrap_or_else(|| "prysm".into());
    for (layer, key, name) in [
        (clients::Layer::Execution, "execution", &execution),
        (clients::Layer::Consensus, "consensus", &consensus),
    ] {
        let known = clients::names(layer);
        if !known.contains(&name.as_str()) {
            c.error(
                Kind::Unknown,
                at.key(key).key("client"),
                format!("unknown {key} client {name:?}"),
                format!("use one of {}", known.join(", ")),
            );
        }
    }
    if consensus == "nimbus" && !s.validators.is_empty() {
        c.error(
            Kind::Unsupported,
            at.key("consensus").key("client"),
            "the ethpandaops nimbus chart runs a beacon node only, not a validator client",
            "use prysm, lighthouse or teku when the profile has validator groups",
        );
    }
    (execution, consensus)
}

/// The three container images; empty where one is missing or malformed
/// (already reported).
struct Images {
    execution: String,
    consensus: String,
    validator: String,
}

fn images(c: &mut Checker, at: &Path, s: &profile::Staking, consensus: &str) -> Images {
    let execution = check_image(
        c,
        at.key("execution").key("image"),
        &s.execution.image,
        "execution client's",
    );
    let consensus_image = check_image(
        c,
        at.key("consensus").key("image"),
        &s.consensus.image,
        "consensus client's",
    );
    // Prysm's validator client is an image of its own; the other charts
    // run the validator from the beacon node's image.
    let validator = if consensus == "prysm" && !s.validators.is_empty() {
        check_image(
            c,
            at.key("consensus").key("validator_image"),
            &s.consensus.validator_image,
            "Prysm validator client's (gcr.io/prysmaticlabs/prysm/validator)",
        )
    } else {
        s.consensus
            .validator_image
            .clone()
            .unwrap_or_else(|| consensus_image.clone())
    };
    Images {
        execution,
        consensus: consensus_image,
        validator,
    }
}

/// The slashing-safety checks the profile waives (`overrides`).
struct Waivers(BTreeSet<String>);

impl Waivers {
    fn read(c: &mut Checker, at: &Path, overrides: &[String]) -> Waivers {
        let mut waived = BTreeSet::new();
        for (i, o) in overrides.iter().enumerate() {
            if OVERRIDES.iter().any(|(n, _)| n == o) {
                waived.insert(o.clone());
            } else {
                let names: Vec<&str> = OVERRIDES.iter().map(|(n, _)| *n).collect();
                c.error(
                    Kind::Unknown,
                    at.key("overrides").index(i),
                    format!("unknown override {o:?}"),
                    format!("overrides are: {}", names.join(", ")),
                );
            }
        }
        Waivers(waived)
    }

    fn waived(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

/// The risk a waivable check guards against, as OVERRIDES words it.
fn risk(name: &str) -> &'static str {
    OVERRIDES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| *r)
        .unwrap_or_default()
}

/// A moving tag upgrades a client under the staker: refused on mainnet
/// (unless waived), a warning elsewhere.
fn image_pins(
    c: &mut Checker,
    network: Option<Network>,
    waivers: &Waivers,
    images: &[(Path, &String)],
) {
    for (key, image) in images {
        let key = key.clone();
        if image.is_empty() || !is_unpinned(image) {
            continue;
        }
        match network {
            Some(Network::Mainnet) if !waivers.waived("unpinned-images") => c.error(
                Kind::Unsafe,
                key,
                format!("{image} is not pinned on mainnet: {}", risk("unpinned-images")),
                "pin a version tag or a digest, or accept the risk with `overrides: [unpinned-images]`",
            ),
            _ => c.warning(
                Kind::Unpinned,
                key,
                format!("{image} is not pinned"),
                "pin a version tag or a digest: a moving tag upgrades the client under you",
            ),
        }
    }
}

fn checkpoint_sync_url(
    c: &mut Checker,
    at: &Path,
    url: Option<&String>,
    network: Option<Network>,
) -> String {
    match url {
        Some(u) if is_http_url(u) => u.clone(),
        Some(u) => {
            c.error(
                Kind::Malformed,
                at.key("checkpoint_sync_url"),
                url_problem(u),
                "give the beacon API URL of a checkpoint sync provider, e.g. https://checkpoint-sync.hoodi.ethpandaops.io",
            );
            String::new()
        }
        None => network
            .map(|n| n.default_checkpoint_sync_url().to_string())
            .unwrap_or_default(),
    }
}

/// An Ethereum address: 0x and 40 hex digits, not zero, and, when it is
/// mixed case, its EIP-55 checksum right.
fn fee_recipient(c: &mut Checker, at: &Path, address: Option<&str>) -> String {
    let Some(a) = address else {
        c.error(
            Kind::Missing,
            at.clone(),
            "the staking section has no `fee_recipient`",
            "add `fee_recipient: \"0x...\"`, the address that receives your priority fees and MEV",
        );
        return String::new();
    };
    let hex = a.strip_prefix("0x").unwrap_or("");
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        c.error(
            Kind::Malformed,
            at.key("fee_recipient"),
            format!("{a:?} is not an Ethereum address"),
            "write 0x and 40 hex digits (quote it in YAML)",
        );
    } else if hex.bytes().all(|b| b == b'0') {
        c.error(
            Kind::Reserved,
            at.key("fee_recipient"),
            "the fee recipient is the zero address: fees sent there are lost",
            "use an address you control",
        );
    } else {
        let mixed = hex.bytes().any(|b| b.is_ascii_lowercase())
            && hex.bytes().any(|b| b.is_ascii_uppercase());
        let checksummed = eip55(hex);
        if mixed && hex != checksummed {
            c.error(
                Kind::Malformed,
                at.key("fee_recipient"),
                format!("{a} fails its EIP-55 checksum: a mistyped character?"),
                format!("check the address; its checksummed form would be 0x{checksummed}"),
            );
        }
    }
    a.to_string()
}

fn graffiti(c: &mut Checker, at: &Path, graffiti: &str) {
    let at = at.key("graffiti");
    if graffiti.len() > 32 {
        c.error(
            Kind::OutOfRange,
            at.clone(),
            format!("the graffiti is {} bytes long", graffiti.len()),
            "keep it to 32 bytes",
        );
    }
    if graffiti.contains(|ch: char| ch.is_control()) {
        c.error(
            Kind::Malformed,
            at.clone(),
            "the graffiti holds control characters",
            "use printable text",
        );
    }
    if graffiti.contains("{{") || graffiti.contains("}}") {
        // The charts pass extraArgs through Helm's `tpl`, which would run it.
        c.error(
            Kind::Malformed,
            at,
            "the graffiti holds `{{` or `}}`, which the charts would evaluate as a Helm template",
            "use other brackets",
        );
    }
}

fn mev_boost_url(c: &mut Checker, at: &Path, mev: &profile::MevBoost) -> Option<String> {
    match (&mev.enabled, &mev.url) {
        (true, Some(u)) if is_http_url(u) => Some(u.clone()),
        (true, Some(u)) => {
            c.error(
                Kind::Malformed,
                at.key("mev_boost").key("url"),
                url_problem(u),
                "give the mev-boost service's URL, e.g. http://mev-boost:18550",
            );
            None
        }
        (true, None) => {
            c.error(
                Kind::Missing,
                at.key("mev_boost"),
                "MEV-boost is enabled but `mev_boost.url` is not given",
                "add url: http://mev-boost:18550 (your mev-boost service), or set enabled: false",
            );
            None
        }
        (false, _) => None,
    }
}

/// The address peers dial: a public IPv4 address, with the machine a
/// router forwards to.
fn p2p_public_ip(c: &mut Checker, at: &Path, p2p: &profile::P2p) -> Option<std::net::Ipv4Addr> {
    let text = p2p.public_ip.as_deref()?;
    let at = at.key("p2p").key("public_ip");
    let hint = "give the IPv4 address peers on the internet dial (your router's public address), or leave it out to advertise each node's own";
    let Ok(ip) = text.parse::<std::net::Ipv4Addr>() else {
        c.error(
            Kind::Malformed,
            at,
            format!("{text:?} is not an IPv4 address"),
            hint,
        );
        return None;
    };
    if let Some(range) = crate::model::unusable_range(ip) {
        c.error(
            Kind::Reserved,
            at,
            format!("{ip} is not an address peers can dial: it is in {range}"),
            hint,
        );
        return None;
    }
    if crate::model::is_private_v4(ip) {
        c.warning(
            Kind::Risky,
            at.clone(),
            format!("{ip} is a private address: peers on the internet cannot dial it"),
            "give the router's public address, or leave public_ip out on a LAN-only setup",
        );
    }
    if p2p.node.is_none() {
        c.warning(
            Kind::Risky,
            at,
            "a router forwards a port to one machine, but without `p2p.node` the clients may run on any node",
            "add `node: <machine>` under p2p and forward the P2P ports (README, Peers) to that machine",
        );
    }
    Some(ip)
}

/// What keeps a restarted or moved validator from signing twice: the
/// start delay (at least an epoch) and doppelganger protection.
fn signing_delays(c: &mut Checker, at: &Path, s: &profile::Staking, waivers: &Waivers) {
    if s.start_delay < EPOCH_SECONDS && !waivers.waived("short-start-delay") {
        c.error(
            Kind::Unsafe,
            at.key("start_delay"),
            format!(
                "a start delay of {} s is less than one epoch ({EPOCH_SECONDS} s): {}",
                s.start_delay,
                risk("short-start-delay")
            ),
            "use 768 (two epochs, the default), or accept the risk with `overrides: [short-start-delay]`",
        );
    } else if s.start_delay < 2 * EPOCH_SECONDS {
        c.warning(
            Kind::Risky,
            at.key("start_delay"),
            format!(
                "a start delay of {} s is less than two epochs",
                s.start_delay
            ),
            "768 s (two epochs) lets a stale validator's last attestations expire",
        );
    }
    if !s.doppelganger && !waivers.waived("no-doppelganger") {
        c.error(
            Kind::Unsafe,
            at.key("doppelganger"),
            format!(
                "doppelganger protection is off: {}",
                risk("no-doppelganger")
            ),
            "remove `doppelganger: false`, or accept the risk with `overrides: [no-doppelganger]`",
        );
    }
}

/// The validator groups: named uniquely, with keys and a password, one
/// replica each (unless waived).
fn groups(
    c: &mut Checker,
    at: &Path,
    validators: &[profile::ValidatorGroup],
    waivers: &Waivers,
) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut names = BTreeMap::new();
    for (i, g) in validators.iter().enumerate() {
        let p = at.key("validators").index(i);
        let name = g.name.clone().unwrap_or_default();
        if g.name.is_none() {
            c.error(
                Kind::Missing,
                p.clone(),
                "the validator group has no `name`",
                "add name: group-1",
            );
        } else if !crate::model::is_dns_label(&name) || name.len() > 40 {
            c.error(
                Kind::Malformed,
                p.key("name"),
                format!("{name:?} is not a usable group name"),
                "use up to 40 lowercase letters, digits and hyphens",
            );
        } else if let Some(first) = names.insert(name.clone(), i) {
            c.error(
                Kind::Duplicate,
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
                    Kind::Missing,
                    p.clone(),
                    format!("the validator group has no `{key}`"),
                    "give keystores: (a folder of keystore-*.json) and password_file: (their password)",
                );
            }
        }
        if g.replicas != 1 && !waivers.waived("multiple-replicas") {
            c.error(
                Kind::Unsafe,
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
    groups
}

/// The pins of the two charts in use: the profile's, else nodeimg's own.
fn chart_pins(
    c: &mut Checker,
    at: &Path,
    pins: &BTreeMap<String, profile::ChartPin>,
    used: &[&str],
) -> BTreeMap<String, ChartPin> {
    let mut charts = BTreeMap::new();
    for (name, pin) in pins {
        let p = at.key("charts").key(name);
        if !DEFAULT_CHARTS.iter().any(|(n, _, _)| n == name) {
            let known: Vec<&str> = DEFAULT_CHARTS.iter().map(|(n, _, _)| *n).collect();
            c.error(
                Kind::Unknown,
                p.clone(),
                format!("no chart {name:?} is used by nodeimg"),
                format!("chart pins are for: {}", known.join(", ")),
            );
            continue;
        }
        let sha = sha256_pin(
            c,
            [p.key("sha256"), p.clone()],
            pin.sha256.as_deref(),
            format!("the {name} chart pin has no valid sha256"),
            "give the .tgz's sha256 (the `digest` in the chart repository's index.yaml)".into(),
        );
        let Some(version) = pin.version.clone().filter(|v| !v.is_empty()) else {
            c.error(
                Kind::Missing,
                p.clone(),
                format!("the {name} chart pin has no version"),
                "add version: 1.2.3",
            );
            continue;
        };
        // The version names the archive's file and is pasted into
        // install.sh: a chart version's own characters only.
        let version_chars = |ch: char| ch.is_ascii_alphanumeric() || ".+-_".contains(ch);
        if !version.chars().all(version_chars) || version.starts_with(['.', '-']) {
            c.error(
                Kind::Malformed,
                p.key("version"),
                format!("{version:?} is not a chart version"),
                "write the version as the chart repository's index.yaml lists it, e.g. 1.2.3",
            );
            continue;
        }
        charts.insert(
            name.clone(),
            ChartPin {
                version,
                sha256: sha.unwrap_or_default(),
            },
        );
    }
    for &used in used {
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
    charts.retain(|n, _| used.contains(&n.as_str()));
    charts
}

/// A pin's sha256 (64 hex digits, lowercased); an error at
/// `[if malformed, if missing]` otherwise.
fn sha256_pin(
    c: &mut Checker,
    [malformed_at, missing_at]: [Path; 2],
    sha256: Option<&str>,
    problem: String,
    hint: String,
) -> Option<String> {
    let parsed = sha256.and_then(crate::io::hash::parse_sha256);
    if parsed.is_none() {
        let (place, kind) = if sha256.is_some() {
            (malformed_at, Kind::Malformed)
        } else {
            (missing_at, Kind::Missing)
        };
        c.error(kind, place, problem, hint);
    }
    parsed
}

/// `chart_source`: the ethpandaops charts (default) or the reference's
/// eth2xk8s chart, Prysm only, from a pinned archive.
fn legacy_chart(
    c: &mut Checker,
    at: &Path,
    s: &profile::Staking,
    consensus: &str,
    images: &Images,
) -> Option<LegacyChart> {
    match s.chart_source.as_deref() {
        None | Some("ethpandaops") => None,
        Some("eth2xk8s") => {
            let p = at.key("chart_source");
            c.warning(
                Kind::Risky,
                p.clone(),
                "the eth2xk8s chart predates the Merge (Prysm's pre-merge flags, no JWT): it reproduces the tutorial's layout but cannot attest on hoodi or mainnet",
                "use the default ethpandaops charts to stake",
            );
            if consensus != "prysm" {
                c.error(
                    Kind::Conflict,
                    at.key("consensus").key("client"),
                    "the eth2xk8s chart runs Prysm only",
                    "use client: prysm with chart_source: eth2xk8s",
                );
            }
            if split_image(&images.consensus).1 != split_image(&images.validator).1 {
                c.error(
                    Kind::Conflict,
                    at.key("consensus").key("validator_image"),
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
                    Kind::Malformed,
                    at.key("eth2xk8s").key("commit"),
                    format!("{commit:?} is not a full git commit id"),
                    format!("pin the 40-hex-digit commit, e.g. {LEGACY_COMMIT}"),
                );
            }
            // Missing, the error is on chart_source (what asked for the archive).
            let sha = sha256_pin(
                c,
                [at.key("eth2xk8s").key("sha256"), p],
                pin.sha256.as_deref(),
                "the eth2xk8s archive has no valid sha256 pin (`staking.eth2xk8s.sha256`)".into(),
                format!(
                    "download {} once, check it, and pin its sha256 (sha256sum prints it)",
                    legacy_url(&commit)
                ),
            );
            Some(LegacyChart {
                commit,
                sha256: sha.unwrap_or_default(),
            })
        }
        Some(other) => {
            c.error(
                Kind::Unknown,
                at.key("chart_source"),
                format!("unknown chart source {other:?}"),
                "use ethpandaops (the default) or eth2xk8s (the reference's pre-merge chart)",
            );
            None
        }
    }
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

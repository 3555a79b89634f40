//! The cluster profile as written by the user (load stage).
//!
//! Values that need parsing (addresses, CIDRs, roles) are kept as text here
//! and checked in `validate`, so that every mistake is reported with its
//! position instead of the first one stopping the read.

// Serialize: the README reference test walks a loaded profile's keys and defaults.
use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Kind, Path, Report};
use crate::yaml::{self, Node};

pub const DEFAULT_MICROK8S_CHANNEL: &str = "1.34/stable";
/// chrony's own polling (64 s to 17 min), which public pools ask for; the
/// reference setup's `minpoll 1 maxpoll 2` is for pools of one's own.
pub const DEFAULT_CHRONY_POOL_OPTIONS: &str = "iburst maxsources 3";
/// The reference setup's pool options (polls every 2-4 s).
pub const REFERENCE_CHRONY_POOL_OPTIONS: &str = "iburst minpoll 1 maxpoll 2 maxsources 3";

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Profile {
    pub version: Option<u32>,
    pub cluster: Option<Cluster>,
    pub network: Option<Network>,
    #[serde(default)]
    pub machines: Vec<Machine>,
    pub ssh: Option<Ssh>,
    #[serde(default)]
    pub time: Time,
    #[serde(default)]
    pub apt: Apt,
    #[serde(default)]
    pub nfs: Nfs,
    #[serde(default)]
    pub microk8s: Microk8s,
    #[serde(default)]
    pub firewall: Firewall,
    /// Folders outside the profile's own that its paths (validator keys,
    /// passwords) may name; by default they must stay in the profile's folder.
    #[serde(default)]
    pub trusted_folders: Vec<String>,
    /// The Ubuntu release the machines run (20.04, 22.04, 24.04 or their
    /// code names) [default: `image.release`, else 20.04 as in the reference].
    pub ubuntu: Option<String>,
    /// The base image for `build --images`.
    pub image: Option<Image>,
    /// The staking release the master installs.
    pub staking: Option<Staking>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Cluster {
    pub name: Option<String>,
    /// DNS domain for the machines' FQDNs in /etc/hosts (`nfs.<domain>`).
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Network {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub dns: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Machine {
    pub name: Option<String>,
    pub role: Option<String>,
    pub ip: Option<String>,
    /// Match the NIC by MAC address (and name it `interface`, default lan0).
    pub mac: Option<String>,
    /// The NIC's name (e.g. enp1s0); without `mac` the NIC is matched by it.
    pub interface: Option<String>,
    /// This machine's Ubuntu release, where it differs from `ubuntu`.
    pub ubuntu: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Ssh {
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    #[serde(default = "default_ssh_user")]
    pub user: String,
    #[serde(default)]
    pub authorized_keys: Vec<String>,
}

fn default_ssh_port() -> u16 {
    22
}
fn default_ssh_user() -> String {
    "staker".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Time {
    pub timezone: String,
    pub ntp_pools: Vec<String>,
    pub chrony: Chrony,
}

impl Default for Time {
    fn default() -> Self {
        Time {
            timezone: "Etc/UTC".into(),
            ntp_pools: vec!["ntp.ubuntu.com".into(), "pool.ntp.org".into()],
            chrony: Chrony::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Chrony {
    /// Appended to every `pool` line.
    pub pool_options: String,
    /// `maxupdateskew` in ppm.
    pub maxupdateskew: f64,
    /// `makestep THRESHOLD LIMIT`: step the clock when off by more than
    /// THRESHOLD seconds, in the first LIMIT updates (-1: always).
    pub makestep_threshold: f64,
    pub makestep_limit: i32,
}

impl Default for Chrony {
    fn default() -> Self {
        Chrony {
            pool_options: DEFAULT_CHRONY_POOL_OPTIONS.into(),
            maxupdateskew: 5.0,
            makestep_threshold: 0.1,
            makestep_limit: -1,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Apt {
    /// `apt-get update` on first boot.
    pub update: bool,
    /// `apt-get dist-upgrade` and `autoremove` on first boot.
    pub upgrade: bool,
}

impl Default for Apt {
    fn default() -> Self {
        Apt {
            update: true,
            upgrade: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Nfs {
    /// The exported directory on the NFS server.
    pub export_root: String,
    /// Owner of the data folders: the workloads' runAsUser / runAsGroup.
    pub uid: u32,
    pub gid: u32,
    /// Data folders created under export_root, owned by uid:gid.
    pub folders: Vec<String>,
    /// Export options; the export is limited to the cluster subnet.
    pub export_options: String,
}

impl Default for Nfs {
    fn default() -> Self {
        Nfs {
            export_root: "/data".into(),
            uid: 1001,
            gid: 2000,
            folders: vec!["execution".into(), "beacon".into(), "validator".into()],
            export_options: "rw,sync,no_subtree_check".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Microk8s {
    pub channel: String,
    /// Addons the master enables (dns is always enabled).
    pub addons: Vec<String>,
    /// `snap refresh --hold microk8s` so the cluster is not upgraded under a
    /// running validator.
    pub hold_refresh: bool,
}

impl Default for Microk8s {
    fn default() -> Self {
        Microk8s {
            channel: DEFAULT_MICROK8S_CHANNEL.into(),
            addons: vec!["dns".into()],
            hold_refresh: true,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Firewall {
    pub extra_rules: Vec<FirewallRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FirewallRule {
    pub port: Option<u16>,
    #[serde(default = "default_proto")]
    pub proto: String,
    /// `any` or a CIDR / address.
    #[serde(default = "default_from")]
    pub from: String,
    /// Roles the rule applies to (default: all machines).
    #[serde(default)]
    pub roles: Vec<String>,
}

fn default_proto() -> String {
    "tcp".into()
}
fn default_from() -> String {
    "any".into()
}

/// `image`: the base disk image the per-machine images are made from.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Image {
    /// An Ubuntu release (20.04, 22.04, 24.04 or focal, jammy, noble):
    /// its cloud image URL and SHA256SUMS are the defaults.
    pub release: Option<String>,
    pub url: Option<String>,
    /// The image's sha256 (pins it).
    pub sha256: Option<String>,
    /// Or the URL of a SHA256SUMS list that names the image's file.
    pub sha256sums: Option<String>,
    /// Size of each machine's disk image, e.g. `20G` [default: the base
    /// image plus the seed].
    pub size: Option<String>,
}

/// `staking`: the Ethereum clients, their charts and the validator keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Staking {
    /// mainnet or hoodi.
    pub network: Option<String>,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub execution: ClientChoice,
    #[serde(default)]
    pub consensus: ConsensusChoice,
    /// Default: the network's well-known endpoint.
    pub checkpoint_sync_url: Option<String>,
    /// Required: the 0x address that receives priority fees and MEV.
    pub fee_recipient: Option<String>,
    #[serde(default)]
    pub graffiti: String,
    #[serde(default)]
    pub mev_boost: MevBoost,
    /// How peers on the internet reach the execution client and the beacon
    /// node.
    #[serde(default)]
    pub p2p: P2p,
    /// Seconds a validator waits before it starts (default 2 epochs).
    #[serde(default = "default_start_delay")]
    pub start_delay: u64,
    #[serde(default = "default_true")]
    pub doppelganger: bool,
    #[serde(default)]
    pub validators: Vec<ValidatorGroup>,
    /// Chart pins by chart name (geth, prysm, ...): version and sha256.
    #[serde(default)]
    pub charts: std::collections::BTreeMap<String, ChartPin>,
    /// `ethpandaops` (default) or `eth2xk8s`: the reference setup's
    /// pre-merge Prysm chart for the consensus side.
    pub chart_source: Option<String>,
    /// The eth2xk8s GitHub archive: commit and the zip's sha256.
    pub eth2xk8s: Option<LegacyPin>,
    /// Slashing-safety checks the user chose to waive, by name.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// Who signs: `local` (default: each validator client with its own keys
    /// and slashing database) or `web3signer` (a remote signer whose
    /// slashing protection is PostgreSQL on the NFS server).
    pub signer: Option<String>,
    /// The remote signer's settings (with `signer: web3signer`).
    pub web3signer: Option<Web3Signer>,
    /// What happens to the signing pods of a node that stops answering:
    /// `automatic` (moved; the remote signer's default) or `manual` (they
    /// wait for a human; the only choice with the local signer).
    pub failover: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Web3Signer {
    /// Web3Signer's PostgreSQL migrations: the commit of Consensys/web3signer
    /// and each file's sha256 (default: nodeimg's pins).
    pub migrations: Option<MigrationsPin>,
    /// Web3Signer's container image (default: nodeimg's pin).
    pub image: Option<String>,
    /// Where its slashing-protection database is: `nfs-server` (default:
    /// PostgreSQL set up on the NFS server by its seed).
    pub database: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MigrationsPin {
    pub commit: Option<String>,
    /// File name (V00001__initial.sql, ...) to its sha256.
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "staking".into()
}
fn default_start_delay() -> u64 {
    768
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ClientChoice {
    pub client: Option<String>,
    /// Container image, `repository:tag` or `repository@sha256:...`.
    pub image: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ConsensusChoice {
    pub client: Option<String>,
    pub image: Option<String>,
    /// The validator client's image where it differs (Prysm).
    pub validator_image: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct P2p {
    /// The address peers dial, e.g. the public IPv4 of a NAT router that
    /// forwards the P2P ports [default: the address of the node each client
    /// runs on].
    pub public_ip: Option<String>,
    /// The one machine the execution client and the beacon node run on
    /// (the target of a router's port forwarding) [default: any node].
    pub node: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MevBoost {
    #[serde(default)]
    pub enabled: bool,
    /// The mev-boost service the beacon node asks for blocks.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ValidatorGroup {
    pub name: Option<String>,
    /// A folder of EIP-2335 keystores (keystore-*.json), relative to the profile.
    pub keystores: Option<String>,
    /// The file holding the keystores' password, relative to the profile.
    pub password_file: Option<String>,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
}

fn default_replicas() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LegacyPin {
    pub commit: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChartPin {
    pub version: Option<String>,
    pub sha256: Option<String>,
}

/// A loaded profile: the typed value and the tree it came from (for
/// positions).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub profile: Profile,
    pub tree: Node,
}

/// Reads a profile's text. On any problem the report holds every finding.
pub fn load(file: &str, text: &str) -> Result<Loaded, Report> {
    let tree = yaml::parse(text).map_err(|d| Report::positioned(file, vec![d]))?;
    let (profile, diags) = yaml::from_node::<Profile>(&tree);
    match profile {
        Some(profile) if diags.is_empty() => Ok(Loaded { profile, tree }),
        _ => {
            let mut diags = diags;
            if diags.is_empty() {
                diags.push(Diagnostic::error(
                    Kind::Malformed,
                    Path::root(),
                    "the profile could not be read",
                    "check its structure against profiles/tutorial.yaml",
                ));
            }
            Err(Report::new(file, Some(tree), diags))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<(u32, u32, String, String)> {
        let report = load("p.yaml", text).expect_err("the profile is refused");
        report
            .diagnostics
            .iter()
            .map(|d| {
                let pos = match &d.location {
                    crate::diag::Location::Pos(p) => (p.line, p.col),
                    other => panic!("no position: {other:?}"),
                };
                (pos.0, pos.1, d.message.clone(), d.hint.clone())
            })
            .collect()
    }

    #[test]
    fn every_shipped_profile_loads() {
        for text in [
            include_str!("../profiles/tutorial.yaml"),
            include_str!("../profiles/homelab.yaml"),
            include_str!("../profiles/hoodi.yaml"),
        ] {
            load("p.yaml", text).unwrap_or_else(|r| panic!("{r}"));
        }
    }

    /// Sections left out take the documented defaults (the README's
    /// reference test checks the table against these).
    #[test]
    fn left_out_sections_take_their_defaults() {
        let p = load("p.yaml", "version: 1\n").unwrap().profile;
        assert_eq!(p.time.timezone, "Etc/UTC");
        assert_eq!(p.nfs.export_root, "/data");
        assert_eq!((p.nfs.uid, p.nfs.gid), (1001, 2000));
        assert_eq!(p.microk8s.channel, DEFAULT_MICROK8S_CHANNEL);
        assert!(p.apt.update && p.apt.upgrade && p.microk8s.hold_refresh);
        let ssh = load("p.yaml", "ssh: {authorized_keys: []}\n")
            .unwrap()
            .profile
            .ssh
            .unwrap();
        assert_eq!((ssh.port, ssh.user.as_str()), (22, "staker"));
    }

    /// Every mistake is reported at once, at its line and column: an unknown
    /// key with the nearest known one, a wrong type.
    #[test]
    fn mistakes_are_all_reported_where_they_are() {
        let found = errors("version: 1\nnetwrk: {}\nssh:\n  port: many\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (2, 1), "{found:?}");
        assert!(found[0].2.contains("netwrk"), "{found:?}");
        assert!(found[0].3.contains("network"), "{found:?}");
        assert_eq!((found[1].0, found[1].1), (4, 9), "{found:?}");
    }

    /// YAML 1.1 reads `no`, `n`, `off` as booleans: a machine named so is
    /// refused with the hint to quote it, not renamed `false`.
    #[test]
    fn a_name_yaml_reads_as_a_boolean_gets_the_quoting_hint() {
        let found = errors("machines:\n  - {name: no, role: nfs}\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("must be a string"), "{found:?}");
        assert!(found[0].3.contains("quotes"), "{found:?}");
    }
}

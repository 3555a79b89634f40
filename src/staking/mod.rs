//! The staking release: the `staking` section checked into a
//! [`StakingSpec`] (checks), the pinned charts and images (pins), the
//! validator keystores (keys), the Helm values (values), the legacy chart's
//! archive (charts) and what the seeds and `nodeimg release` carry (payload).

use std::collections::{BTreeMap, BTreeSet};

mod charts;
mod checks;
pub mod clients;
mod keys;
mod payload;
mod pins;
mod values;

pub use charts::{extract_legacy_chart, fetch_charts, fetch_legacy_archive, fetch_migrations};
pub(crate) use checks::check;
pub use checks::{eip55, is_unpinned, OVERRIDES};
pub use keys::{read_keys, GroupKeys};
pub use payload::{
    backup_script, install_script, payload, releases_list, signer_secret_manifest, storage_manifest,
};
pub use pins::*;
pub use values::{releases, shell_arg, to_yaml, Release, KEYSTORE_DIR, PASSWORD_FILE};

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
    /// Who signs: the validator clients themselves, or a remote signer.
    pub signer: Signer,
    pub failover: Failover,
}

/// What happens to the signing pods (validator clients, the remote signer)
/// of a node that stops answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// They stay bound to it until a human acts (the local signer: a second
    /// client with the same keys could double-sign).
    Manual,
    /// Evicted after [`FAILOVER_SECONDS`] and started on a healthy node
    /// (the remote signer's database refuses any second signature).
    Automatic,
}

/// How long a signing pod tolerates its node being unreachable (or not
/// ready) before Kubernetes evicts it, and how long the node must have been
/// unreachable before a master completes that eviction.
pub const FAILOVER_SECONDS: u64 = 30;
/// How often the masters look for such pods (nodeimg-failover.timer).
pub const FAILOVER_EVERY_SECONDS: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// Each validator client with its own keys and slashing database.
    Local,
    /// Web3Signer, whose slashing protection is PostgreSQL on the NFS
    /// server, migrated with these files, run from `image`.
    Web3Signer {
        migrations: Migrations,
        image: String,
    },
}

impl Signer {
    /// The signer's database, when there is one.
    pub fn database(&self) -> Option<&Migrations> {
        match self {
            Signer::Local => None,
            Signer::Web3Signer { migrations, .. } => Some(migrations),
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Signer::Web3Signer { .. })
    }
}

/// Web3Signer's PostgreSQL migrations, pinned: a commit and each file's
/// sha256, in the order they apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrations {
    pub commit: String,
    pub files: Vec<(String, String)>,
}

/// The signer's database on the NFS server: its name, its role, and where
/// the seed puts the migrations (applied in file-name order).
pub const SIGNER_DB_NAME: &str = "web3signer";
pub const SIGNER_DB_USER: &str = "web3signer";
pub const SIGNER_DB_PORT: u16 = 5432;
pub const SIGNER_DB_MIGRATIONS: &str = "/var/lib/nodeimg/signer-db/migrations";
/// The JDBC URL of the signer's database, as Web3Signer takes it.
pub fn signer_db_url(spec: &crate::Spec) -> String {
    format!(
        "jdbc:postgresql://{}:{SIGNER_DB_PORT}/{SIGNER_DB_NAME}",
        spec.nfs_server().ip
    )
}

/// The Kubernetes Secret (and its key) that gives Web3Signer the
/// database password; its manifest is a 0600 file of the release.
pub const SIGNER_DB_SECRET: &str = "web3signer-db";
pub const SIGNER_DB_SECRET_KEY: &str = "password";
/// Web3Signer's release and Service name, and its HTTP port (the chart's
/// `httpPort`, Web3Signer's default).
pub const SIGNER_SERVICE: &str = "web3signer";
pub const SIGNER_HTTP_PORT: u16 = 9000;
/// The NFS folder holding the keystores Web3Signer loads (`keystores/`,
/// with `passwords/<keystore>.txt`), mounted at /data.
pub const SIGNER_FOLDER: &str = "web3signer";

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
    /// The URL validator clients sign through (the signer's Service).
    pub fn signer_url(&self) -> Option<String> {
        self.signer
            .is_remote()
            .then(|| format!("http://{SIGNER_SERVICE}:{SIGNER_HTTP_PORT}"))
    }

    /// The releases that sign: the remote signer and the validator clients.
    pub fn signing_releases(&self) -> Vec<String> {
        let signer = self.signer.is_remote().then(|| SIGNER_SERVICE.to_string());
        signer
            .into_iter()
            .chain(self.groups.iter().map(Group::folder))
            .collect()
    }

    /// The NFS folders the workloads need (one per workload).
    pub fn folders(&self) -> Vec<String> {
        let mut v = vec!["execution".to_string(), "beacon".to_string()];
        if self.signer.is_remote() {
            v.push(SIGNER_FOLDER.to_string());
        }
        v.extend(self.groups.iter().map(Group::folder));
        v
    }
}

//! What nodeimg relies on in each client it supports, in one table: the
//! network flag, the JWT file, the ports its peers reach it on and the
//! flags that make those the ports it listens on and advertises. Each entry
//! names where its facts were read (the ethpandaops chart at nodeimg's
//! pinned version, the client's source); docs/research/clients.md has the
//! line-by-line notes. The values builder reads its flags from here, and
//! `tests/release.rs` checks the rendered charts against the clients'
//! own defaults.

use crate::model::Proto;

/// Which side of the node a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Execution,
    Consensus,
}

/// A port the client's peers reach it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct P2pPort {
    pub port: u16,
    pub proto: Proto,
    /// What the client uses it for, for the firewall rule's comment.
    pub what: &'static str,
}

const fn tcp(port: u16, what: &'static str) -> P2pPort {
    P2pPort {
        port,
        proto: Proto::Tcp,
        what,
    }
}

const fn udp(port: u16, what: &'static str) -> P2pPort {
    P2pPort {
        port,
        proto: Proto::Udp,
        what,
    }
}

#[derive(Debug)]
pub struct Client {
    pub name: &'static str,
    pub layer: Layer,
    /// The flag that selects the network (`{network}` replaced); `None`
    /// where the chart passes it itself.
    pub network_flag: Option<&'static str>,
    /// The file the chart's command reads the Engine API secret from; the
    /// chart mounts the JWT Secret there.
    pub jwt_path: &'static str,
    /// The ports the client listens on for peers with nodeimg's flags: the
    /// host ports nodeimg exposes and the firewall opens, nothing else.
    pub p2p: &'static [P2pPort],
    /// The flag that advertises the address peers should dial; the address
    /// is appended. It replaces the chart's (which advertises the pod's
    /// address, unreachable from outside the cluster).
    pub advertise_flag: &'static str,
    /// Flags nodeimg adds so that the client listens on exactly `p2p`.
    pub p2p_flags: &'static [&'static str],
    /// The validator client's data-dir flag nodeimg adds where the chart's
    /// command gives none (the keys the import wrote and the slashing
    /// database must be read from the group's volume, mounted at /data).
    pub validator_data_dir_flag: Option<&'static str>,
    /// The validator's slashing-protection database, relative to its data
    /// dir (so on the group's volume); `None`: no validator client.
    pub slashing_db: Option<&'static str>,
    /// Where the facts come from.
    pub sources: &'static str,
}

impl Client {
    pub fn network_arg(&self, network: &str) -> Option<String> {
        self.network_flag.map(|f| f.replace("{network}", network))
    }
}

/// Every ethpandaops chart mounts the JWT Secret at, and points its
/// client's JWT flag to, this file (its `jwt.hex` under the data dir).
const CHART_JWT_PATH: &str = "/data/jwt.hex";

/// The execution clients' devp2p port: TCP for RLPx, UDP for discovery.
const DEVP2P: &[P2pPort] = &[tcp(30303, "devp2p"), udp(30303, "discovery")];
/// Teku's and Nimbus's libp2p port (TCP) and discv5 (UDP, the same port).
const LIBP2P_9000: &[P2pPort] = &[tcp(9000, "libp2p"), udp(9000, "discv5")];

pub const CLIENTS: &[Client] = &[
    Client {
        name: "geth",
        layer: Layer::Execution,
        network_flag: Some("--{network}"),
        jwt_path: CHART_JWT_PATH,
        p2p: DEVP2P,
        advertise_flag: "--nat=extip:",
        p2p_flags: &[],
        validator_data_dir_flag: None,
        slashing_db: None,
        sources: "ethpandaops geth-1.1.3 values.yaml:107-120 (--nat, --port guarded), 218 \
                  (p2pPort 30303); geth cmd/utils/flags.go (discovery follows --port unless \
                  --discovery.port)",
    },
    Client {
        name: "nethermind",
        layer: Layer::Execution,
        network_flag: Some("--config={network}"),
        jwt_path: CHART_JWT_PATH,
        p2p: DEVP2P,
        advertise_flag: "--Network.ExternalIp=",
        p2p_flags: &[],
        validator_data_dir_flag: None,
        slashing_db: None,
        sources: "ethpandaops nethermind-1.1.1 values.yaml:83-101 (ExternalIp, P2PPort, \
                  DiscoveryPort guarded), 195 (p2pPort 30303); Nethermind NetworkConfig \
                  (P2PPort, DiscoveryPort = 30303)",
    },
    Client {
        name: "besu",
        layer: Layer::Execution,
        network_flag: Some("--network={network}"),
        jwt_path: CHART_JWT_PATH,
        p2p: DEVP2P,
        advertise_flag: "--p2p-host=",
        p2p_flags: &[],
        validator_data_dir_flag: None,
        slashing_db: None,
        sources: "ethpandaops besu-1.1.3 values.yaml:80-94 (--nat-method=NONE, --p2p-host and \
                  --p2p-port guarded), 191 (p2pPort 30303); Besu EnodeURLImpl \
                  DEFAULT_LISTENING_PORT (TCP and UDP)",
    },
    Client {
        name: "reth",
        layer: Layer::Execution,
        network_flag: Some("--chain={network}"),
        jwt_path: CHART_JWT_PATH,
        p2p: DEVP2P,
        advertise_flag: "--nat=extip:",
        p2p_flags: &[],
        validator_data_dir_flag: None,
        slashing_db: None,
        sources: "ethpandaops reth-0.1.8 values.yaml:110-122 (--nat, --port guarded; no \
                  --discovery.port), 231 (p2pPort 30303); reth DiscoveryArgs (discv4 port \
                  30303, discv5 off unless --enable-discv5-discovery)",
    },
    Client {
        name: "prysm",
        layer: Layer::Consensus,
        network_flag: Some("--{network}"),
        jwt_path: CHART_JWT_PATH,
        // The chart gives TCP and UDP one port (13000), where QUIC, Prysm's
        // default transport, also binds: discv5 goes back to Prysm's own
        // default, 12000 (prysm#14939: the two "cannot be the same port").
        p2p: &[
            tcp(13000, "libp2p"),
            udp(12000, "discv5"),
            udp(13000, "QUIC"),
        ],
        advertise_flag: "--p2p-host-ip=",
        p2p_flags: &["--p2p-udp-port=12000"],
        validator_data_dir_flag: None,
        slashing_db: Some("validator.db"),
        sources: "ethpandaops prysm-1.2.3 values.yaml:121-139 (--p2p-host-ip, \
                  --p2p-tcp-port, --p2p-udp-port guarded, both = p2pPort), 259 (p2pPort \
                  13000); prysm cmd/flags.go:114-131 (p2p-udp-port 12000, p2p-quic-port \
                  13000, p2p-tcp-port 13000); OffchainLabs/prysm#14939; the chart's validator command passes --datadir=/data \
                  (values.yaml:164-178), where validator.db lives",
    },
    Client {
        name: "lighthouse",
        layer: Layer::Consensus,
        network_flag: Some("--network={network}"),
        jwt_path: CHART_JWT_PATH,
        p2p: &[tcp(9000, "libp2p"), udp(9000, "discv5"), udp(9001, "QUIC")],
        advertise_flag: "--enr-address=",
        // The chart turns ENR auto-update off, so the ENR carries only the
        // ports it is told: QUIC (port + 1) too.
        p2p_flags: &["--enr-quic-port=9001"],
        validator_data_dir_flag: Some("--datadir=/data"),
        slashing_db: Some("validators/slashing_protection.sqlite"),
        sources: "ethpandaops lighthouse-1.1.8 values.yaml:106-134 (--disable-enr-auto-update; \
                  --enr-address, --enr-tcp-port, --enr-udp-port guarded; --port and \
                  --discovery-port unguarded), 283 (p2pPort 9000); lighthouse \
                  beacon_node/src/cli.rs (--quic-port defaults to --port + 1, --enr-quic-port); the \
                  chart's validator command (values.yaml:157-168) has no --datadir, so the \
                  client would read $HOME/.lighthouse (validator_client/src/config.rs:146-178); \
                  the import writes <datadir>/validators (account_manager validator/mod.rs:55-57, \
                  slashing_protection.sqlite: import.rs:106)",
    },
    Client {
        name: "teku",
        layer: Layer::Consensus,
        network_flag: Some("--network={network}"),
        jwt_path: CHART_JWT_PATH,
        p2p: LIBP2P_9000,
        advertise_flag: "--p2p-advertised-ip=",
        p2p_flags: &[],
        validator_data_dir_flag: None,
        slashing_db: Some("validator/slashprotection"),
        sources: "ethpandaops teku-1.2.0 values.yaml:111-129 (--p2p-port unguarded, \
                  --p2p-advertised-ip and -port guarded), 235 (p2pPort 9000); teku \
                  P2POptions.java:68-87 (--p2p-udp-port defaults to --p2p-port); validator \
                  --data-path=/data (values.yaml:157-170), validator/slashprotection below it",
    },
    Client {
        name: "nimbus",
        layer: Layer::Consensus,
        // The chart passes --network from checkpointSync.network.
        network_flag: None,
        jwt_path: CHART_JWT_PATH,
        p2p: LIBP2P_9000,
        advertise_flag: "--nat=extip:",
        p2p_flags: &[],
        validator_data_dir_flag: None,
        slashing_db: None,
        sources: "ethpandaops nimbus-1.2.0 values.yaml:108-141 (--enr-auto-update=false; --nat, \
                  --udp-port, --tcp-port guarded; --network from checkpointSync), 223 (p2pPort \
                  9000); nimbus conf.nim:298-308 (tcp/udp port 9000)",
    },
];

/// The reference setup's eth2xk8s Prysm chart: its beacon Deployment
/// declares the two ports as host ports itself (beacon-deployment.yaml:
/// 30-46 at the pinned commit), from nodeimg's `p2pTcpPort`/`p2pUdpPort`.
/// It offers no way to advertise another address or expose QUIC.
pub const LEGACY_PRYSM_P2P: &[P2pPort] = &[
    tcp(LEGACY_PRYSM_TCP, "libp2p"),
    udp(LEGACY_PRYSM_UDP, "discv5"),
];
pub const LEGACY_PRYSM_TCP: u16 = 13000;
pub const LEGACY_PRYSM_UDP: u16 = 12000;

/// The supported clients of one layer, in the table's order.
pub fn names(layer: Layer) -> Vec<&'static str> {
    CLIENTS
        .iter()
        .filter(|c| c.layer == layer)
        .map(|c| c.name)
        .collect()
}

/// The entry of a supported client (names are checked when the profile is
/// read, so an unknown one is a bug).
pub fn client(name: &str) -> &'static Client {
    CLIENTS
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the clients table"))
}

/// Kubernetes' `$(HOST_IP)`: the address of the node the pod runs on
/// (the downward API's `status.hostIP`), expanded by the kubelet in the
/// container's command before the chart's shell runs it.
pub const HOST_IP: &str = "$(HOST_IP)";

/// The do-nothing container that holds the host ports: the CNI's portmap
/// plugin (in MicroK8s's Calico configuration) forwards them to the pod,
/// whose containers share one network namespace, so the client receives
/// them. A pinned, tiny image; Kubernetes' own pause container.
pub const HOST_PORTS_IMAGE: &str = "registry.k8s.io/pause:3.10";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_ports_are_unique() {
        for c in CLIENTS {
            let mut seen = std::collections::BTreeSet::new();
            for p in c.p2p {
                assert!(
                    seen.insert((p.port, p.proto.as_str())),
                    "{}: {p:?} twice",
                    c.name
                );
            }
        }
    }
}

//! The Helm releases of the staking stack and their values for the
//! ethpandaops charts (and the legacy eth2xk8s chart).

use serde_json::{json, Value};

use crate::firstboot::{RELEASE_JWT, RELEASE_JWT_KEY as JWT_KEY, RELEASE_VALUES};

use super::{
    clients, ChartPin, Failover, GroupKeys, LegacyChart, Network, Signer, StakingSpec, DELAY_IMAGE,
    FAILOVER_SECONDS, LEGACY_CHART, LEGACY_VERSION, SIGNER_DB_SECRET, SIGNER_DB_SECRET_KEY,
    SIGNER_DB_USER, SIGNER_FOLDER, SIGNER_HTTP_PORT, SIGNER_SERVICE, WEB3SIGNER_CHART,
};

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
/// The folder beside it of per-keystore password files, `<keystore>.txt`,
/// as Teku and Web3Signer pair them.
pub const PASSWORDS_DIR: &str = "passwords";
pub const PASSWORD_FILE: &str = "password.txt";

pub(super) fn pvc(folder: &str) -> String {
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
pub(super) fn split_image(image: &str) -> (String, String) {
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

/// Prysm's and Teku's flags (the same names in both) for signing through
/// the remote signer at `url`, for `pubkeys` only.
fn external_signer_flags(url: &str, pubkeys: &[String]) -> Vec<String> {
    vec![
        format!("--validators-external-signer-url={url}"),
        format!(
            "--validators-external-signer-public-keys={}",
            pubkeys.join(",")
        ),
    ]
}

/// The validator client's flags, and the init containers that prepare its
/// keys (after the start delay). `pubkeys`: the group's keys (0x-hex), which
/// a client signing through the remote signer asks it to sign for.
fn validator_args(s: &StakingSpec, pubkeys: &[String]) -> Vec<String> {
    let n = s.network.as_str();
    let fee = &s.fee_recipient;
    let port = beacon_http_port(&s.consensus);
    let mut a: Vec<String> = clients::client(&s.consensus)
        .network_arg(n)
        .into_iter()
        .collect();
    a.extend(match (s.consensus.as_str(), s.signer_url()) {
        ("prysm", None) => vec![
            "--beacon-rpc-provider=beacon:4000".into(),
            "--wallet-dir=/data/wallet".into(),
            format!("--wallet-password-file=/data/{PASSWORD_FILE}"),
            format!("--suggested-fee-recipient={fee}"),
        ],
        // No wallet: every signature is asked of the remote signer, for
        // the group's keys only.
        ("prysm", Some(url)) => [
            vec!["--beacon-rpc-provider=beacon:4000".into()],
            external_signer_flags(&url, pubkeys),
            vec![format!("--suggested-fee-recipient={fee}")],
        ]
        .concat(),
        ("lighthouse", signer) => {
            let mut v = vec![
                format!("--beacon-nodes=http://beacon:{port}"),
                format!("--suggested-fee-recipient={fee}"),
            ];
            if signer.is_some() {
                // The keys are the definitions file's web3signer entries
                // (init container); the local slashing database is made on
                // first start (Web3Signer's PostgreSQL is the one that
                // refuses a second signature).
                v.push("--disable-auto-discover".into());
                v.push("--init-slashing-protection".into());
            }
            v
        }
        (_, None) => vec![
            format!("--beacon-node-api-endpoint=http://beacon:{port}"),
            format!("--validator-keys=/data/{KEYSTORE_DIR}:/data/{PASSWORDS_DIR}"),
            format!("--validators-proposer-default-fee-recipient={fee}"),
            // Teku's keystore .lock files hold the PID; after a hard kill the
            // new container is PID 1 again and takes them as live ("already in
            // use"). One pod per group (OnDelete, start delay, doppelganger)
            // is the guard instead.
            "--validators-keystore-locking-enabled=false".into(),
        ],
        (_, Some(url)) => [
            vec![format!("--beacon-node-api-endpoint=http://beacon:{port}")],
            external_signer_flags(&url, pubkeys),
            vec![format!("--validators-proposer-default-fee-recipient={fee}")],
        ]
        .concat(),
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

fn validator_init_containers(spec: &crate::Spec, s: &StakingSpec, pubkeys: &[String]) -> Value {
    let security =
        json!({"runAsUser": spec.nfs.uid, "runAsGroup": spec.nfs.gid, "runAsNonRoot": true});
    let mount = json!([{"name": "storage", "mountPath": "/data"}]);
    let mut v = vec![json!({
        "name": "start-delay",
        "image": DELAY_IMAGE,
        "command": ["sleep", s.start_delay.to_string()],
        "securityContext": security,
    })];
    if let Some(url) = s.signer_url() {
        // Prysm and Teku take the keys as flags; Lighthouse only from its
        // definitions file, rewritten at every start from nodeimg's list.
        if s.consensus == "lighthouse" {
            v.push(json!({
                "name": "signer-keys",
                "image": DELAY_IMAGE,
                "command": ["sh", "-c", format!(
                    "mkdir -p {dir} && printf '%s\\n' \"$VALIDATOR_DEFINITIONS\" > {dir}/{LIGHTHOUSE_DEFINITIONS}",
                    dir = LIGHTHOUSE_VALIDATORS_DIR
                )],
                "env": [{"name": "VALIDATOR_DEFINITIONS", "value": lighthouse_definitions(&url, pubkeys)}],
                "securityContext": security,
                "volumeMounts": mount,
            }));
        }
        return Value::Array(v);
    }
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

/// Where Lighthouse's validator client (`--datadir=/data`) reads its
/// validator definitions.
pub const LIGHTHOUSE_VALIDATORS_DIR: &str = "/data/validators";
pub const LIGHTHOUSE_DEFINITIONS: &str = "validator_definitions.yml";

/// Lighthouse's validator definitions for keys held by a remote signer.
fn lighthouse_definitions(url: &str, pubkeys: &[String]) -> String {
    let defs: Vec<Value> = pubkeys
        .iter()
        .map(|k| {
            json!({
                "enabled": true,
                "voting_public_key": k,
                "type": "web3signer",
                "url": url,
            })
        })
        .collect();
    to_yaml(&Value::Array(defs))
}

/// A chart's pin (checked profiles pin every chart they use; empty
/// otherwise).
fn pin_of(s: &StakingSpec, chart: &str) -> ChartPin {
    s.charts.get(chart).cloned().unwrap_or(ChartPin {
        version: String::new(),
        sha256: String::new(),
    })
}

/// With automatic failover, a signing pod leaves a node that is unreachable
/// (or not ready) after [`FAILOVER_SECONDS`] instead of Kubernetes' 300.
fn failover_tolerations(s: &StakingSpec) -> Option<Value> {
    (s.failover == Failover::Automatic).then(|| {
        let toleration = |key: &str| {
            json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": FAILOVER_SECONDS,
            })
        };
        json!([
            toleration("node.kubernetes.io/unreachable"),
            toleration("node.kubernetes.io/not-ready"),
        ])
    })
}

/// The Web3Signer release: the pinned image, the NFS folder of every
/// group's keystores, slashing protection on the NFS server's PostgreSQL
/// with the password from a Secret (never in the ConfigMap), the chart's
/// bundled database off. Two replicas on two nodes where there are two:
/// the database serialises their signatures, so either may answer.
fn signer_release(spec: &crate::Spec, s: &StakingSpec, image: &str) -> Release {
    let mut v = common_values(spec, SIGNER_SERVICE, SIGNER_FOLDER, image);
    let nodes = spec
        .machines
        .iter()
        .filter(|m| m.role.is_kubernetes())
        .count();
    v["replicas"] = json!(nodes.min(2));
    // Parallel: a replica stuck on a dead node does not hold back the other.
    v["podManagementPolicy"] = json!("Parallel");
    v["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {
                "app.kubernetes.io/name": WEB3SIGNER_CHART,
                "app.kubernetes.io/instance": SIGNER_SERVICE,
            }},
        },
    }]}});
    v["slashingprotectiondb"] = json!({"enabled": false});
    // Top-level options only (the chart passes this file before `eth2`);
    // key-store-path holds no .yaml key files, only the keystores.
    v["config"] = json!(format!(
        "data-path: \"/data\"\nhttp-listen-port: {SIGNER_HTTP_PORT}\nhttp-listen-host: 0.0.0.0\nhttp-host-allowlist: \"*\"\nkey-store-path: \"/data/{KEYSTORE_DIR}\"\n"
    ));
    v["httpPort"] = json!(SIGNER_HTTP_PORT);
    v["extraArgs"] = json!([
        format!("--network={}", s.network.as_str()),
        "--slashing-protection-enabled=true",
        format!(
            "--slashing-protection-db-url={}",
            super::signer_db_url(spec)
        ),
        format!("--slashing-protection-db-username={SIGNER_DB_USER}"),
        format!("--keystores-path=/data/{KEYSTORE_DIR}"),
        format!("--keystores-passwords-path=/data/{PASSWORDS_DIR}"),
    ]);
    if let Some(t) = failover_tolerations(s) {
        v["tolerations"] = t;
    }
    // Web3Signer reads each option from WEB3SIGNER_<SUBCOMMAND>_<OPTION>
    // too; this one comes from the Secret.
    v["extraEnv"] = json!([{
        "name": "WEB3SIGNER_ETH2_SLASHING_PROTECTION_DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": SIGNER_DB_SECRET, "key": SIGNER_DB_SECRET_KEY}},
    }]);
    Release {
        name: SIGNER_SERVICE.into(),
        chart: WEB3SIGNER_CHART.into(),
        pin: pin_of(s, WEB3SIGNER_CHART),
        values_file: format!("{RELEASE_VALUES}/{SIGNER_SERVICE}.yaml"),
        values: v,
        set_files: Vec::new(),
        local: false,
    }
}

/// Every release, in install order: execution, beacon, the remote signer
/// (if any), one validator per group. `keys`: each group's keys, which
/// validator clients signing remotely name.
pub fn releases(spec: &crate::Spec, s: &StakingSpec, keys: &[GroupKeys]) -> Vec<Release> {
    let pin = |chart: &str| pin_of(s, chart);
    let mut out = Vec::new();
    let mut exec = common_values(spec, "execution", "execution", &s.execution_image);
    exec["extraArgs"] = json!(execution_args(&s.execution, s.network));
    expose_p2p(&mut exec, clients::client(&s.execution), s);
    out.push(Release {
        name: "execution".into(),
        chart: s.execution.clone(),
        pin: pin(&s.execution),
        values_file: format!("{RELEASE_VALUES}/execution.yaml"),
        values: exec,
        set_files: vec![(JWT_KEY.into(), RELEASE_JWT.into())],
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
        values_file: format!("{RELEASE_VALUES}/beacon.yaml"),
        values: beacon,
        set_files: vec![(JWT_KEY.into(), RELEASE_JWT.into())],
        local: false,
    });
    if let Signer::Web3Signer { image, .. } = &s.signer {
        out.push(signer_release(spec, s, image));
    }
    for g in &s.groups {
        let pubkeys: Vec<String> = keys
            .iter()
            .filter(|k| k.group == g.name)
            .flat_map(|k| k.keystores.iter().map(|(_, _, p)| format!("0x{p}")))
            .collect();
        let name = g.folder();
        let mut v = common_values(spec, &name, &name, &s.validator_image);
        v["mode"] = json!("validator");
        v["replicas"] = json!(g.replicas);
        // Never a rolling update: a new validator pod starts only after the
        // old one is deleted (and then waits out the start delay).
        v["updateStrategy"] = json!({"type": "OnDelete"});
        v["extraArgs"] = json!(validator_args(s, &pubkeys));
        if let Some(t) = failover_tolerations(s) {
            v["tolerations"] = t;
        }
        v["initContainers"] = validator_init_containers(spec, s, &pubkeys);
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
            values_file: format!("{RELEASE_VALUES}/{name}.yaml"),
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
        values_file: format!("{RELEASE_VALUES}/prysm.yaml"),
        values,
        set_files,
        local: true,
    }
}

/// YAML text of a JSON value (keys in order, deterministic).
pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_default()
}

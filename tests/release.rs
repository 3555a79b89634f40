//! `nodeimg release`: the staking release's values for every client pair,
//! rendered by a real helm through stand-in charts that take the real
//! charts' value keys and refuse any other (tests/charts/ethclient).

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::*;

const EXECUTION: [(&str, &str); 4] = [
    ("geth", "ethereum/client-go:v1.16.7"),
    ("nethermind", "nethermind/nethermind:1.35.2"),
    ("besu", "hyperledger/besu:25.11.0"),
    ("reth", "ghcr.io/paradigmxyz/reth:v1.9.3"),
];
const CONSENSUS: [(&str, &str, &str); 3] = [
    (
        "prysm",
        "gcr.io/prysmaticlabs/prysm/beacon-chain:v7.0.0",
        "gcr.io/prysmaticlabs/prysm/validator:v7.0.0",
    ),
    (
        "lighthouse",
        "sigp/lighthouse:v8.0.1",
        "sigp/lighthouse:v8.0.1",
    ),
    ("teku", "consensys/teku:25.11.1", "consensys/teku:25.11.1"),
];

/// profiles/hoodi.yaml with other clients.
fn hoodi_with(exec: (&str, &str), cons: (&str, &str, &str)) -> String {
    shipped_profile("hoodi.yaml")
        .replace("client: geth", &format!("client: {}", exec.0))
        .replace("\"ethereum/client-go:v1.16.7\"", &format!("\"{}\"", exec.1))
        .replace("client: prysm", &format!("client: {}", cons.0))
        .replace(
            "\"gcr.io/prysmaticlabs/prysm/beacon-chain:v7.0.0\"",
            &format!("\"{}\"", cons.1),
        )
        .replace(
            "\"gcr.io/prysmaticlabs/prysm/validator:v7.0.0\"",
            &format!("\"{}\"", cons.2),
        )
}

fn release_values_only(s: &Scratch) -> Run {
    let r = s.run(&["release", "profile.yaml", "--values-only", "-o", "rel"]);
    assert!(r.ok(), "{}", r.stderr());
    r
}

fn jwt_of(s: &Scratch) -> String {
    let text = fs::read_to_string(s.secrets()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("jwt_secret:"))
        .expect("jwt_secret");
    line.split('"').nth(1).unwrap().to_string()
}

/// `helm lint` and `helm template` of one install.sh line; the rendered
/// documents.
fn render(s: &Scratch, line: &str) -> Vec<serde_json::Value> {
    // helm upgrade --install RELEASE ethpandaops/CHART --version V -n NS -f FILE [--set-file jwt=F]
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&w[..3], ["helm", "upgrade", "--install"], "{line}");
    assert_eq!((w[5], w[7], w[9]), ("--version", "-n", "-f"), "{line}");
    let (release, chart_ref, ns, file) = (w[3], w[4], w[8], w[10]);
    let name = chart_ref
        .strip_prefix("ethpandaops/")
        .expect("an ethpandaops chart");
    let dir = chart(s, name);
    let rel = s.path("rel");
    let mut extra: Vec<&str> = w[11..].to_vec();
    if !extra.is_empty() {
        assert_eq!(extra[0], "--set-file", "{line}");
        assert_eq!(extra[1], "jwt=jwt.hex", "{line}");
        extra = vec!["--set-file", "jwt=jwt.hex"];
    }
    // helm in the release directory, as install.sh runs it; must succeed.
    let run_helm = |args: &[&str]| helm_ok(&rel, &[args, &extra[..]].concat());
    let dir = dir.to_str().unwrap();
    run_helm(&["lint", dir, "-f", file]);
    let out = run_helm(&["template", release, dir, "-n", ns, "-f", file]);
    serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("rendered YAML")
}

/// The claim a pod's `storage` volume mounts.
fn storage_claim(pod: &serde_json::Value) -> serde_json::Value {
    pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "storage")
        .unwrap()["persistentVolumeClaim"]["claimName"]
        .clone()
}

fn kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {docs:?}"))
}

/// The client's arguments as its container starts it (see client_argv).
fn args(sts: &serde_json::Value) -> Vec<String> {
    client_argv(sts)
}

fn b64(text: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = text.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One keystore in the folder the hoodi profile names, so that it builds.
fn with_keys(s: &Scratch) {
    write_keys(
        &s.path("validator_keys"),
        1,
        1,
        &s.path("validator_keys/password.txt"),
    );
}

/// Builds the scratch's profile into `out` offline: the charts of
/// `clients` packaged from the stand-in, pinned in the profile in place of
/// its `charts` block, and given with `--charts`.
fn build_offline(s: &Scratch, clients: &[&str]) {
    let mirror = s.path("chart-mirror");
    let mut pins = String::from("  charts:\n");
    for name in clients {
        let (_, version, _) = nodeimg::staking::DEFAULT_CHARTS
            .iter()
            .find(|c| c.0 == *name)
            .unwrap();
        let sha = package_chart(s, name, version, &mirror);
        pins.push_str(&format!(
            "    {name}: {{version: {version}, sha256: {sha}}}\n"
        ));
    }
    let text = fs::read_to_string(s.profile()).unwrap();
    let start = text.find("  charts:\n").expect("a charts block");
    let rest = &text[start + "  charts:\n".len()..];
    let end = rest
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| l.len() + 1)
        .sum::<usize>();
    let text = format!("{}{pins}{}", &text[..start], &rest[end..]);
    fs::write(s.profile(), text).unwrap();
    let r = run_with_charts(s, "build", "out");
    assert!(r.ok(), "{}", r.stderr());
}

/// A port and its protocol (`tcp`/`udp`).
type Port = (u16, String);

/// The ports a client listens on for peers, read from the arguments it
/// receives with each client's own defaults where a flag is absent (from
/// the clients' sources: geth cmd/utils/flags.go, Nethermind NetworkConfig,
/// Besu EnodeURLImpl, reth DiscoveryArgs, prysm cmd/flags.go, lighthouse
/// beacon_node/src/cli.rs, teku P2POptions.java, nimbus conf.nim).
fn listening(client: &str, a: &[String]) -> BTreeSet<Port> {
    let val = |flag: &str| {
        let prefix = format!("{flag}=");
        a.iter()
            .find_map(|x| x.strip_prefix(&prefix))
            .map(|v| v.parse::<u16>().unwrap_or_else(|_| panic!("{flag}={v}")))
    };
    let (tcp, udp): (Vec<u16>, Vec<u16>) = match client {
        "geth" => {
            let p = val("--port").unwrap_or(30303);
            (vec![p], vec![val("--discovery.port").unwrap_or(p)])
        }
        "nethermind" => (
            vec![val("--Network.P2PPort").unwrap_or(30303)],
            vec![val("--Network.DiscoveryPort").unwrap_or(30303)],
        ),
        "besu" => {
            let p = val("--p2p-port").unwrap_or(30303);
            (vec![p], vec![p])
        }
        "reth" => (
            vec![val("--port").unwrap_or(30303)],
            vec![val("--discovery.port").unwrap_or(30303)],
        ),
        "prysm" => (
            vec![val("--p2p-tcp-port").unwrap_or(13000)],
            vec![
                val("--p2p-udp-port").unwrap_or(12000),
                val("--p2p-quic-port").unwrap_or(13000),
            ],
        ),
        "lighthouse" => {
            let p = val("--port").unwrap_or(9000);
            let mut udp = vec![val("--discovery-port").unwrap_or(p)];
            if !a.iter().any(|x| x == "--disable-quic") {
                udp.push(val("--quic-port").unwrap_or(p + 1));
            }
            (vec![p], udp)
        }
        "teku" => {
            let p = val("--p2p-port").unwrap_or(9000);
            (vec![p], vec![val("--p2p-udp-port").unwrap_or(p)])
        }
        "nimbus" => (
            vec![val("--tcp-port").unwrap_or(9000)],
            vec![val("--udp-port").unwrap_or(9000)],
        ),
        other => panic!("no listening facts for {other}"),
    };
    let mut out: BTreeSet<Port> = tcp.into_iter().map(|p| (p, "tcp".into())).collect();
    let before = out.len();
    out.extend(udp.iter().map(|&p| (p, "udp".to_string())));
    assert_eq!(
        out.len(),
        before + udp.len(),
        "{client}: two UDP services on one port: {a:?}"
    );
    out
}

/// The flag each client advertises its address with (same sources).
fn advertise_flag(client: &str) -> &'static str {
    match client {
        "geth" | "reth" | "nimbus" => "--nat=extip:",
        "nethermind" => "--Network.ExternalIp=",
        "besu" => "--p2p-host=",
        "prysm" => "--p2p-host-ip=",
        "lighthouse" => "--enr-address=",
        "teku" => "--p2p-advertised-ip=",
        other => panic!("no advertise flag for {other}"),
    }
}

/// What a release's pod offers peers, checked against what its client
/// really does: the host ports are exactly the ports the client listens
/// on, each flag is given once (clap clients refuse a repeated one), and
/// the address advertised is the node's. Returns the ports.
fn check_p2p(client: &str, pod: &serde_json::Value, a: &[String]) -> BTreeSet<Port> {
    let mut flags = BTreeSet::new();
    for x in a.iter().filter(|x| x.starts_with("--")) {
        let flag = x.split('=').next().unwrap();
        assert!(flags.insert(flag), "{client}: {flag} given twice: {a:?}");
    }
    let listens = listening(client, a);
    let mut held = BTreeSet::new();
    for c in pod["containers"].as_array().unwrap() {
        for p in c["ports"].as_array().into_iter().flatten() {
            if let Some(host) = p["hostPort"].as_u64() {
                assert_eq!(p["containerPort"].as_u64(), Some(host), "{client}: {p}");
                let proto = p["protocol"].as_str().unwrap().to_lowercase();
                assert!(held.insert((host as u16, proto)), "{client}: {p} twice");
            }
        }
    }
    assert_eq!(
        held, listens,
        "{client}: host ports vs the ports it listens on: {a:?}"
    );
    let flag = advertise_flag(client);
    let advertised: Vec<&str> = a.iter().filter_map(|x| x.strip_prefix(flag)).collect();
    assert_eq!(
        advertised,
        [NODE_IP],
        "{client} advertises {advertised:?}: {a:?}"
    );
    if client == "lighthouse" {
        // ENR auto-update is off: the ENR carries exactly the ports given.
        for (flag, port) in [
            ("--enr-tcp-port=", 9000),
            ("--enr-udp-port=", 9000),
            ("--enr-quic-port=", 9001),
        ] {
            let given: Vec<&str> = a.iter().filter_map(|x| x.strip_prefix(flag)).collect();
            assert_eq!(given, [port.to_string()], "{flag}: {a:?}");
        }
    }
    listens
}

fn check_pair(exec: (&str, &str), cons: (&str, &str, &str)) -> String {
    let s = Scratch::with_profile(&hoodi_with(exec, cons));
    release_values_only(&s);
    let jwt = jwt_of(&s);
    assert_eq!(fs::read_to_string(s.path("rel/jwt.hex")).unwrap(), jwt);
    assert_eq!(mode(&s.path("rel/jwt.hex")), 0o600);
    let script = fs::read_to_string(s.path("rel/install.sh")).unwrap();
    let lines: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("helm upgrade"))
        .collect();
    assert_eq!(lines.len(), 3, "{script}");
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(names, ["execution", "beacon", "validator-group-1"]);
    let mut snapshot = String::new();
    let mut jwt_secrets = Vec::new();
    let mut public = BTreeSet::new();
    for line in &lines {
        let docs = render(&s, line);
        let release = line.split_whitespace().nth(3).unwrap();
        let file = line.split_whitespace().nth(10).unwrap();
        let values = fs::read_to_string(s.path("rel").join(file)).unwrap();
        assert!(
            !values.contains(&jwt),
            "the JWT is never in a values file: {file}"
        );
        snapshot.push_str(&format!("# {file}\n{values}"));
        let sts = kind(&docs, "StatefulSet");
        let pod = &sts["spec"]["template"]["spec"];
        assert_eq!(sts["spec"]["replicas"], 1, "{release}");
        assert_eq!(pod["securityContext"]["runAsUser"], 1001);
        assert_eq!(pod["securityContext"]["runAsGroup"], 2000);
        let claim = storage_claim(pod);
        assert_eq!(claim, format!("staking-{release}"));
        let inits: Vec<String> = pod["initContainers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !inits.contains(&"init-chown-data".to_string()),
            "root chown fails under root_squash"
        );
        let a = args(sts);
        let has = |flag: &str| a.iter().any(|x| x == flag);
        // Contract facts (each from the client's source, see README
        // "What each supported client needs"): the network flag once; the
        // JWT the client reads is the file the Secret mounts.
        let networks = a.iter().filter(|x| x.starts_with("--network=")).count();
        assert!(
            networks <= 1,
            "{release}: --network {networks} times: {a:?}"
        );
        let container = &pod["containers"][0];
        if !release.starts_with("validator") {
            let jwt_arg = a
                .iter()
                .find(|x| x.contains("jwt") && x.contains("=/"))
                .unwrap_or_else(|| panic!("{release}: no JWT flag in {a:?}"));
            let mount = container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == "jwt")
                .unwrap()["mountPath"]
                .clone();
            assert_eq!(jwt_arg.split_once('=').unwrap().1, mount, "{release}");
            // The clients table states the same file.
            let client = if release == "execution" {
                exec.0
            } else {
                cons.0
            };
            assert_eq!(mount, nodeimg::staking::clients::client(client).jwt_path);
        }
        match release {
            "execution" => {
                public.extend(check_p2p(exec.0, pod, &a));
                jwt_secrets.push(kind(&docs, "Secret")["data"]["jwt.hex"].clone());
                let net = match exec.0 {
                    "geth" => "--hoodi",
                    "nethermind" => "--config=hoodi",
                    "besu" => "--network=hoodi",
                    _ => "--chain=hoodi",
                };
                assert!(has(net), "{a:?}");
                if exec.0 == "reth" {
                    // libmdbx refuses NFS unless the database is exclusive.
                    assert!(has("--db.exclusive=true"), "{a:?}");
                }
            }
            "beacon" => {
                public.extend(check_p2p(cons.0, pod, &a));
                jwt_secrets.push(kind(&docs, "Secret")["data"]["jwt.hex"].clone());
                assert!(
                    has("--checkpoint-sync-url=https://checkpoint-sync.hoodi.ethpandaops.io"),
                    "{a:?}"
                );
                assert!(
                    has(if cons.0 == "prysm" {
                        "--hoodi"
                    } else {
                        "--network=hoodi"
                    }),
                    "{a:?}"
                );
                let fee = if cons.0 == "teku" {
                    "--validators-proposer-default-fee-recipient=0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
                } else {
                    "--suggested-fee-recipient=0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
                };
                assert!(has(fee), "{a:?}");
                let engine = a.iter().any(|x| x.ends_with("=http://execution:8551"));
                assert!(engine, "{a:?}");
            }
            _ => {
                assert_eq!(
                    sts["spec"]["updateStrategy"]["type"], "OnDelete",
                    "never a rolling update"
                );
                // The local signer: a validator stays with its node until a
                // human acts (Kubernetes' own 300 s tolerations, then
                // Terminating until the node answers).
                assert!(
                    pod["tolerations"].as_array().is_none_or(|a| a.is_empty()),
                    "{}",
                    pod["tolerations"]
                );
                assert_eq!(inits[0], "start-delay");
                assert_eq!(
                    pod["initContainers"][0]["command"],
                    serde_json::json!(["sleep", "768"])
                );
                let doppelganger = match cons.0 {
                    "prysm" => "--enable-doppelganger",
                    "lighthouse" => "--enable-doppelganger-protection",
                    _ => "--doppelganger-detection-enabled=true",
                };
                assert!(has(doppelganger), "{a:?}");
                // The slashing-protection database lives in the data dir:
                // it must be the persistent volume's mount.
                let storage = container["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == "storage")
                    .unwrap()["mountPath"]
                    .clone();
                let data_dir = if cons.0 == "teku" {
                    "--data-path="
                } else {
                    "--datadir="
                };
                let dirs: Vec<&str> = a.iter().filter_map(|x| x.strip_prefix(data_dir)).collect();
                let db = nodeimg::staking::clients::client(cons.0).slashing_db;
                assert!(
                    db.is_some_and(|d| !d.starts_with('/') && !d.contains("..")),
                    "{db:?}"
                );
                assert_eq!(dirs, [storage.as_str().unwrap()], "{release}: {a:?}");
                match cons.0 {
                    "lighthouse" => {
                        // The validator reads the folder the import wrote.
                        let import = pod["initContainers"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|c| c["name"] == "import-keys")
                            .expect("an import container")
                            .to_string();
                        assert!(import.contains("--datadir=/data"), "{import}");
                        assert!(has("--datadir=/data"), "{a:?}");
                    }
                    "teku" => {
                        assert!(has("--validators-keystore-locking-enabled=false"), "{a:?}");
                        for probe in ["livenessProbe", "readinessProbe"] {
                            assert_eq!(container[probe]["httpGet"]["port"], 8008, "{probe}");
                            assert!(container[probe]["tcpSocket"].is_null(), "{probe}");
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // Every Kubernetes node opens exactly the clients' P2P ports to anyone
    // (the pods may run on any of them), the NFS server none.
    with_keys(&s);
    build_offline(&s, &[exec.0, cons.0]);
    for m in ["master", "worker-1"] {
        assert_eq!(opened_to_anyone(&s, "out", m), public, "{m}");
    }
    assert_eq!(opened_to_anyone(&s, "out", "nfs"), BTreeSet::new());
    // Execution and beacon share the one JWT from the secrets file.
    assert_eq!(jwt_secrets.len(), 2);
    assert_eq!(jwt_secrets[0], jwt_secrets[1]);
    assert_eq!(jwt_secrets[0], b64(&jwt));
    snapshot.push_str("# install.sh\n");
    snapshot.push_str(&script);
    snapshot
}

#[test]
fn every_client_pair_renders_with_one_jwt_nfs_claims_and_safe_validators() {
    for exec in EXECUTION {
        for cons in CONSENSUS {
            let snapshot = check_pair(exec, cons);
            insta::assert_snapshot!(format!("values-{}-{}", exec.0, cons.0), snapshot);
        }
    }
}

#[test]
fn storage_is_static_nfs_volumes_on_the_servers_folders() {
    let s = Scratch::with_profile(&shipped_profile("hoodi.yaml"));
    release_values_only(&s);
    let text = fs::read_to_string(s.path("rel/storage.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let pvs: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["kind"] == "PersistentVolume")
        .collect();
    let paths: Vec<&str> = pvs
        .iter()
        .map(|p| p["spec"]["nfs"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/data/execution", "/data/beacon", "/data/validator-group-1"]
    );
    for pv in &pvs {
        assert_eq!(pv["spec"]["nfs"]["server"], "172.20.10.10");
        assert_eq!(pv["spec"]["storageClassName"], "");
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    }
    let claims: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "PersistentVolumeClaim")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        claims,
        [
            "staking-execution",
            "staking-beacon",
            "staking-validator-group-1"
        ]
    );
    insta::assert_snapshot!("storage-hoodi", text);
}

#[test]
fn the_jwt_secret_is_made_once_and_kept() {
    let s = Scratch::with_profile(&shipped_profile("hoodi.yaml"));
    release_values_only(&s);
    let first = jwt_of(&s);
    assert_eq!(first.len(), 64);
    release_values_only(&s);
    assert_eq!(jwt_of(&s), first);
    // A secrets file from before the staking section gains a JWT, keeping the rest.
    let t = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    t.build("out");
    let token = secrets_token(&t.secrets());
    fs::write(t.profile(), shipped_profile("hoodi.yaml")).unwrap();
    let r = t.run(&["release", "profile.yaml", "--values-only", "-o", "rel"]);
    assert!(r.ok(), "{}", r.stderr());
    assert!(r.stderr().contains("added a JWT secret"), "{}", r.stderr());
    assert_eq!(secrets_token(&t.secrets()), token);
    assert_eq!(jwt_of(&t).len(), 64);
}

#[test]
fn charts_from_a_local_folder_are_verified_and_copied() {
    let s = Scratch::with_profile("");
    let profile = with_stand_in_charts(&s, &shipped_profile("hoodi.yaml"));
    let prysm = nodeimg::io::hash::sha256_file(&s.path("chart-mirror/prysm-1.2.3.tgz")).unwrap();
    fs::write(s.profile(), &profile).unwrap();
    let r = run_with_charts(&s, "release", "rel");
    assert!(r.ok(), "{}", r.stderr());
    for f in ["geth-1.1.3.tgz", "prysm-1.2.3.tgz"] {
        assert_eq!(
            fs::read(s.path(&format!("rel/charts/{f}"))).unwrap(),
            fs::read(s.path(&format!("chart-mirror/{f}"))).unwrap()
        );
    }
    // install.sh installs exactly those verified archives, not whatever the
    // repository serves: every helm line works as written, offline.
    let script = fs::read_to_string(s.path("rel/install.sh")).unwrap();
    assert!(!script.contains("ethpandaops/"), "{script}");
    assert!(!script.contains("helm repo add"), "{script}");
    let lines: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("helm upgrade --install "))
        .collect();
    assert_eq!(lines.len(), 3, "{script}");
    for line in lines {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert!(
            ["charts/geth-1.1.3.tgz", "charts/prysm-1.2.3.tgz"].contains(&w[4]),
            "{line}"
        );
        // `helm template` takes the same arguments as `helm upgrade --install`.
        helm_ok(&s.path("rel"), &[&["template"], &w[3..]].concat());
    }
    // A chart that is not the pinned one is refused, and nothing is written.
    let other = profile.replace(&prysm, &"f".repeat(64));
    fs::write(s.profile(), other).unwrap();
    let r = run_with_charts(&s, "release", "rel2");
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains(&format!("expected {}", "f".repeat(64))),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains(&format!("got {prysm}")),
        "{}",
        r.stderr()
    );
    assert!(!s.path("rel2").exists());
}

#[test]
fn a_release_needs_a_staking_section() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let r = s.run(&["release", "profile.yaml", "--values-only", "-o", "rel"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("no `staking` section"),
        "{}",
        r.stderr()
    );
}

/// The ethpandaops charts paste extraArgs into `sh -ac`: a graffiti with
/// spaces, quotes, `$` and a command substitution must reach the validator
/// as exactly one argument, and run nothing.
#[test]
fn a_hostile_graffiti_reaches_the_validator_as_exactly_one_argument() {
    let graffiti = r#"a b'c"$(id)$HOME;`x` $(POD_IP)"#;
    for cons in CONSENSUS {
        let text = hoodi_with(EXECUTION[0], cons).replace(
            "graffiti: \"nodeimg\"",
            &format!("graffiti: '{}'", graffiti.replace('\'', "''")),
        );
        let s = Scratch::with_profile(&text);
        release_values_only(&s);
        let script = fs::read_to_string(s.path("rel/install.sh")).unwrap();
        let line = script
            .lines()
            .find(|l| l.starts_with("helm upgrade --install validator-"))
            .unwrap();
        let docs = render(&s, line);
        let a = args(kind(&docs, "StatefulSet"));
        let flag = if cons.0 == "teku" {
            "--validators-graffiti"
        } else {
            "--graffiti"
        };
        assert!(
            a.contains(&format!("{flag}={graffiti}")),
            "{}: {a:?}",
            cons.0
        );
    }
}

/// The StatefulSet that install.sh's line for `release` renders.
fn release_statefulset(s: &Scratch, script: &str, release: &str) -> serde_json::Value {
    let line = script
        .lines()
        .find(|l| l.starts_with(&format!("helm upgrade --install {release} ")))
        .unwrap_or_else(|| panic!("no {release} in {script}"));
    kind(&render(s, line), "StatefulSet").clone()
}

/// Nimbus runs as a beacon node only (no validator client in nodeimg):
/// its P2P ports are exposed and opened like the others'.
#[test]
fn a_nimbus_beacon_node_is_reachable_where_it_listens() {
    let text = hoodi_with(
        EXECUTION[0],
        ("nimbus", "statusim/nimbus-eth2:multiarch-v25.11.0", ""),
    );
    let start = text.find("  validators:\n").unwrap();
    let end = text.find("  # The ethpandaops charts").unwrap();
    let text =
        format!("{}{}", &text[..start], &text[end..]).replace("    validator_image: \"\"\n", "");
    let s = Scratch::with_profile(&text);
    release_values_only(&s);
    let script = fs::read_to_string(s.path("rel/install.sh")).unwrap();
    let mut public = BTreeSet::new();
    for (release, client) in [("execution", EXECUTION[0].0), ("beacon", "nimbus")] {
        let sts = &release_statefulset(&s, &script, release);
        public.extend(check_p2p(
            client,
            &sts["spec"]["template"]["spec"],
            &args(sts),
        ));
    }
    build_offline(&s, &[EXECUTION[0].0, "nimbus"]);
    assert_eq!(opened_to_anyone(&s, "out", "worker-1"), public);
}

/// Behind a NAT router: the clients advertise the router's public address
/// and run on the one machine the router forwards the ports to, which
/// alone opens them.
#[test]
fn p2p_behind_a_router_advertises_its_address_from_the_pinned_node() {
    let text = shipped_profile("hoodi.yaml").replace(
        "  graffiti: \"nodeimg\"",
        "  graffiti: \"nodeimg\"\n  p2p:\n    public_ip: 203.0.113.5\n    node: worker-1",
    );
    let s = Scratch::with_profile(&text);
    let r = release_values_only(&s);
    assert!(!r.stderr().contains("warning"), "{}", r.stderr());
    let script = fs::read_to_string(s.path("rel/install.sh")).unwrap();
    let mut public = BTreeSet::new();
    for (release, flag) in [("execution", "--nat=extip:"), ("beacon", "--p2p-host-ip=")] {
        let sts = &release_statefulset(&s, &script, release);
        let pod = &sts["spec"]["template"]["spec"];
        assert_eq!(pod["nodeSelector"]["kubernetes.io/hostname"], "worker-1");
        let a = args(sts);
        let advertised: Vec<&str> = a.iter().filter_map(|x| x.strip_prefix(flag)).collect();
        assert_eq!(advertised, ["203.0.113.5"], "{release}: {a:?}");
        public.extend(
            pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| {
                    Some((
                        p["hostPort"].as_u64()? as u16,
                        p["protocol"].as_str()?.to_lowercase(),
                    ))
                }),
        );
    }
    assert_eq!(public.len(), 5, "{public:?}");
    with_keys(&s);
    build_offline(&s, &["geth", "prysm"]);
    assert_eq!(opened_to_anyone(&s, "out", "worker-1"), public);
    assert_eq!(opened_to_anyone(&s, "out", "master"), BTreeSet::new());

    // A private address is legal (a LAN-only setup) but warned about.
    let s = Scratch::with_profile(&text.replace("203.0.113.5", "192.168.1.20"));
    let r = release_values_only(&s);
    assert!(
        r.stderr()
            .contains("192.168.1.20 is a private address: peers on the internet cannot dial it"),
        "{}",
        r.stderr()
    );
}

/// Automatic failover: the pod leaves a node that is unreachable or not
/// ready after nodeimg's failover time, not Kubernetes' default 300 s.
fn assert_moves_on(pod: &serde_json::Value) {
    let mut keys: Vec<&str> = Vec::new();
    for t in pod["tolerations"].as_array().expect("tolerations") {
        assert_eq!(t["effect"], "NoExecute", "{t}");
        assert_eq!(t["operator"], "Exists", "{t}");
        assert_eq!(
            t["tolerationSeconds"],
            nodeimg::staking::FAILOVER_SECONDS,
            "{t}"
        );
        keys.push(t["key"].as_str().unwrap());
    }
    assert_eq!(
        keys,
        [
            "node.kubernetes.io/unreachable",
            "node.kubernetes.io/not-ready"
        ]
    );
}

/// The secrets file's value of `key`.
fn secret_of(s: &Scratch, key: &str) -> String {
    let text = fs::read_to_string(s.secrets()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("{key} in the secrets file"))
        .trim_matches('"')
        .to_string()
}

/// With `signer: web3signer`, for each consensus client: Web3Signer is a
/// release of its own (the pinned image, the bundled database off, slashing
/// protection on the NFS server's PostgreSQL with the role's password from
/// the Secret nodeimg writes, never in the ConfigMap or a values file, its
/// config holding only options Web3Signer knows, the keystores read from
/// the folder the NFS server places them in); each validator client holds no
/// keys and signs through the signer's Service for its group's keys only,
/// with the flags its client reads (Prysm and Teku flags, Lighthouse's
/// definitions file written where its data dir puts it).
#[test]
fn the_remote_signer_holds_the_keys_and_the_validators_sign_through_it() {
    for cons in CONSENSUS {
        let s = Scratch::with_profile(&with_remote_signer(&hoodi_with(EXECUTION[0], cons)));
        with_keys(&s);
        release_values_only(&s);
        let password = secret_of(&s, "signer_db_password");
        let keystore_password = fs::read_to_string(s.path("validator_keys/password.txt")).unwrap();
        let pubkeys: Vec<String> = fs::read_dir(s.path("validator_keys"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let v: serde_json::Value =
                    serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap();
                format!("0x{}", v["pubkey"].as_str().unwrap())
            })
            .collect();
        assert_eq!(pubkeys.len(), 1);
        let script = fs::read_to_string(s.path("rel/install.sh")).unwrap();
        let lines: Vec<&str> = script
            .lines()
            .filter(|l| l.starts_with("helm upgrade"))
            .collect();
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l.split_whitespace().nth(3).unwrap())
            .collect();
        assert_eq!(
            names,
            ["execution", "beacon", "web3signer", "validator-group-1"]
        );
        // The Secret is applied before any release that reads it.
        let secret_at = script
            .find("kubectl apply -f signer-db-secret.yaml\n")
            .expect("the Secret applied");
        assert!(secret_at < script.find("helm upgrade").unwrap(), "{script}");
        assert_eq!(mode(&s.path("rel/signer-db-secret.yaml")), 0o600);
        let secret: serde_json::Value = serde_saphyr::from_str(
            &fs::read_to_string(s.path("rel/signer-db-secret.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(secret["kind"], "Secret");
        assert_eq!(secret["metadata"]["namespace"], "staking");
        for f in fs::read_dir(s.path("rel/values")).unwrap() {
            let text = fs::read_to_string(f.unwrap().path()).unwrap();
            assert!(!text.contains(&password), "a password in a values file");
            assert!(
                !text.contains(keystore_password.trim()),
                "a password in a values file"
            );
        }
        // Web3Signer.
        let line = lines[2];
        let docs = render(&s, line);
        let rendered = serde_json::to_string(&docs).unwrap();
        assert!(!rendered.contains(&password), "the password rendered");
        assert!(
            !rendered.contains("slashingprotectiondb"),
            "the bundled database rendered"
        );
        assert!(!rendered.contains("emptyDir"), "{rendered}");
        assert!(!rendered.contains("postgres\""), "{rendered}");
        let sts = kind(&docs, "StatefulSet");
        let pod = &sts["spec"]["template"]["spec"];
        for c in pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["initContainers"].as_array().into_iter().flatten())
        {
            let image = c["image"].as_str().unwrap();
            assert!(!nodeimg::staking::is_unpinned(image), "{image}");
        }
        assert_eq!(
            pod["containers"][0]["image"],
            nodeimg::staking::WEB3SIGNER_IMAGE
        );
        assert_moves_on(pod);
        // Two replicas, kept apart, neither waiting for the other.
        assert_eq!(sts["spec"]["replicas"], 2);
        assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
        let term = &pod["affinity"]["podAntiAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
        assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(
            term["labelSelector"]["matchLabels"],
            sts["spec"]["template"]["metadata"]["labels"]
        );
        let claim = storage_claim(pod);
        assert_eq!(claim, "staking-web3signer");
        let storage: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&fs::read_to_string(s.path("rel/storage.yaml")).unwrap())
                .unwrap();
        let pvc = storage
            .iter()
            .find(|d| d["kind"] == "PersistentVolumeClaim" && d["metadata"]["name"] == claim)
            .expect("the claim in storage.yaml");
        assert_eq!(
            pvc["spec"]["accessModes"],
            serde_json::json!(["ReadWriteMany"])
        );
        let pv = storage
            .iter()
            .find(|d| d["metadata"]["name"] == pvc["spec"]["volumeName"])
            .unwrap();
        assert_eq!(pv["spec"]["nfs"]["path"], "/data/web3signer");
        // The config file: options Web3Signer knows at the top level (it
        // refuses unknown ones), no password, no database.
        let container = &pod["containers"][0];
        let config: serde_json::Value = serde_saphyr::from_str(
            kind(&docs, "ConfigMap")["data"]["config.yaml"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let keys: BTreeSet<&str> = config
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let known = [
            "data-path",
            "http-listen-port",
            "http-listen-host",
            "http-host-allowlist",
            "key-store-path",
        ];
        assert!(keys.iter().all(|k| known.contains(k)), "{keys:?}");
        assert_eq!(config["http-listen-port"], 9000);
        let a = args(sts);
        let config_mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "config")
            .unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            a[..3],
            [
                "web3signer".to_string(),
                format!("--config-file={config_mount}"),
                "eth2".into()
            ]
        );
        for want in [
            "--network=hoodi",
            "--slashing-protection-enabled=true",
            "--slashing-protection-db-url=jdbc:postgresql://172.20.10.10:5432/web3signer",
            "--slashing-protection-db-username=web3signer",
            "--keystores-path=/data/keystores",
            "--keystores-passwords-path=/data/passwords",
        ] {
            assert_eq!(a.iter().filter(|x| *x == want).count(), 1, "{want}: {a:?}");
        }
        assert!(!a.iter().any(|x| x.contains("password=")), "{a:?}");
        let env = &container["env"][0];
        assert_eq!(
            env["name"],
            "WEB3SIGNER_ETH2_SLASHING_PROTECTION_DB_PASSWORD"
        );
        let from = &env["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], secret["metadata"]["name"]);
        let key = from["key"].as_str().unwrap();
        assert_eq!(secret["stringData"][key], password.as_str());
        let service = kind(&docs, "Service");
        let port = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "http")
            .unwrap()["port"]
            .clone();
        let url = format!(
            "http://{}:{port}",
            service["metadata"]["name"].as_str().unwrap()
        );
        // The validator client: no keys, the signer's URL, the group's keys.
        let docs = render(&s, lines[3]);
        let sts = kind(&docs, "StatefulSet");
        let pod = &sts["spec"]["template"]["spec"];
        assert_moves_on(pod);
        let a = args(sts);
        let has = |x: &str| a.iter().any(|y| y == x);
        let inits: Vec<&serde_json::Value> =
            pod["initContainers"].as_array().unwrap().iter().collect();
        assert!(
            inits.iter().all(|c| c["name"] != "import-keys"),
            "{inits:?}"
        );
        assert!(
            !a.iter()
                .any(|x| x.contains("wallet") || x.contains("--validator-keys")),
            "{a:?}"
        );
        match cons.0 {
            "lighthouse" => {
                assert!(
                    has("--datadir=/data") && has("--init-slashing-protection"),
                    "{a:?}"
                );
                assert!(has("--disable-auto-discover"), "{a:?}");
                // Lighthouse reads <datadir>/validators/validator_definitions.yml:
                // run the init container's command with the real sh, /data
                // standing in at a folder of its own.
                let init = inits.iter().find(|c| c["name"] == "signer-keys").unwrap();
                let cmd: Vec<&str> = init["command"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect();
                assert_eq!(cmd[..2], ["sh", "-c"]);
                let data = s.path("lighthouse-data");
                fs::create_dir_all(&data).unwrap();
                let line = cmd[2].replace("/data", data.to_str().unwrap());
                let env_value = init["env"][0]["value"].as_str().unwrap();
                let out = std::process::Command::new("sh")
                    .args(["-c", &line])
                    .env(init["env"][0]["name"].as_str().unwrap(), env_value)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                let defs: serde_json::Value = serde_saphyr::from_str(
                    &fs::read_to_string(data.join("validators/validator_definitions.yml")).unwrap(),
                )
                .unwrap();
                let want: Vec<serde_json::Value> = pubkeys
                    .iter()
                    .map(|k| {
                        serde_json::json!({"enabled": true, "voting_public_key": k, "type": "web3signer", "url": url})
                    })
                    .collect();
                assert_eq!(defs, serde_json::Value::Array(want));
            }
            _ => {
                assert!(
                    has(&format!("--validators-external-signer-url={url}")),
                    "{a:?}"
                );
                assert!(
                    has(&format!(
                        "--validators-external-signer-public-keys={}",
                        pubkeys.join(",")
                    )),
                    "{a:?}"
                );
            }
        }
    }
}

/// With the remote signer `release` writes backup.sh (0755), without it
/// none. Run by the real `sh` with a stand-in `nodeimg` that records what it
/// would run over `nodeimg ssh` and answers with stand-in bytes: the NFS
/// server dumps the signer's database with pg_dump, the master has
/// Web3Signer export the interchange file from the same database URL its
/// release uses; each answer lands in its own file. The remote commands are
/// parsed by the real `sh`, as the machine's shell would.
#[test]
fn the_backup_script_dumps_the_database_and_exports_the_history() {
    let local = Scratch::with_profile(&shipped_profile("hoodi.yaml"));
    release_values_only(&local);
    assert!(!local.path("rel/backup.sh").exists());
    let s = Scratch::with_profile(&with_remote_signer(&shipped_profile("hoodi.yaml")));
    with_keys(&s);
    release_values_only(&s);
    let script = s.path("rel/backup.sh");
    assert_eq!(mode(&script), 0o755);
    let bin = s.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = s.path("ssh.log");
    // nodeimg ssh PROFILE MACHINE -- COMMAND...: ssh joins COMMAND with spaces.
    write_executable(
        &bin.join("nodeimg"),
        &format!(
            "#!/bin/sh\n[ \"$1\" = ssh ] || exit 2\n[ \"$4\" = -- ] || exit 2\nmachine=$3\nshift 4\nprintf '%s\\n' \"$machine $*\" >> '{}'\nprintf 'answer of %s' \"$machine\"\n",
            log.display()
        ),
    );
    let out = std::process::Command::new("sh")
        .arg(&script)
        .args(["profile.yaml", "backups"])
        .env("NODEIMG", bin.join("nodeimg"))
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<(String, String)> = fs::read_dir(s.path("backups"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].0.starts_with("interchange-") && files[0].0.ends_with(".json"));
    assert_eq!(files[0].1, "answer of master");
    assert!(files[1].0.starts_with("web3signer-") && files[1].0.ends_with(".dump"));
    assert_eq!(files[1].1, "answer of nfs");
    let ran = fs::read_to_string(&log).unwrap();
    let ran: Vec<(&str, &str)> = ran.lines().map(|l| l.split_once(' ').unwrap()).collect();
    // The remote shell's words.
    let words = |command: &str| -> Vec<String> {
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("set -- {command}; printf '%s\\0' \"$@\"")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(ran[0].0, "nfs");
    assert_eq!(
        words(ran[0].1),
        [
            "sudo",
            "-u",
            "postgres",
            "pg_dump",
            "--format=custom",
            "web3signer"
        ]
    );
    assert_eq!(ran[1].0, "master");
    let w = words(ran[1].1);
    assert_eq!(
        w[..10],
        [
            "sudo",
            "microk8s",
            "kubectl",
            "-n",
            "staking",
            "exec",
            "sts/web3signer",
            "--",
            "sh",
            "-c"
        ]
    );
    assert_eq!(w.len(), 11, "{w:?}");
    // The export reads the database Web3Signer's release signs with.
    let values = fs::read_to_string(s.path("rel/values/web3signer.yaml")).unwrap();
    let url = values
        .lines()
        .find_map(|l| l.trim().strip_prefix("- --slashing-protection-db-url="))
        .expect("the release's database URL");
    assert!(
        w[10].starts_with(&format!(
            "/opt/web3signer/bin/web3signer eth2 --slashing-protection-db-url={url} --slashing-protection-db-username=web3signer export --to=/tmp/interchange.json"
        )),
        "{}",
        w[10]
    );
}

//! Resolve stage: a checked spec plus the secrets become one template
//! context per machine, with every derived value (join URL, firewall rules,
//! packages) computed here once.

use anyhow::Result;
use serde::Serialize;
use serde_json::{json, Value};

use crate::payload::PayloadFile;
use crate::secrets::Secrets;
use crate::staking::clients;
use crate::validate::{
    role_ports, Checksum, ImageSource, ImageSpec, MachineSpec, PortRule, Role, Source, Spec,
};

/// The name nodeimg gives the NIC when it matches it by MAC.
pub const DEFAULT_NIC_NAME: &str = "lan0";

/// One ufw allow rule: several ports of one protocol from one source
/// (ufw takes up to 15 ports in a rule; one rule per group keeps the number
/// of slow `ufw` calls on first boot small).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UfwRule {
    /// Comma-separated, e.g. `16443,10250`.
    pub ports: String,
    pub proto: &'static str,
    /// `any` or a network in CIDR form.
    pub from: String,
    pub comment: String,
}

/// The ufw rules of a role, after the SSH rule: the role's ports grouped
/// by protocol and source, in first-seen order, then the profile's extra
/// rules one by one.
pub fn ufw_rules(spec: &Spec, m: &MachineSpec) -> Vec<UfwRule> {
    let role = m.role;
    // The other masters' addresses, for ports spoken between masters only.
    let other_masters: Vec<String> = spec
        .by_role(Role::Master)
        .filter(|x| x.name != m.name)
        .map(|x| x.ip.to_string())
        .collect();
    let sources = |from: &Source| match from {
        Source::Any => vec!["any".to_string()],
        Source::Cluster => vec![spec.subnet.to_string()],
        Source::Masters => other_masters.clone(),
        Source::Net(n) => vec![n.clone()],
    };
    let mut groups: Vec<(&'static str, String, Vec<PortRule>)> = Vec::new();
    let rules = role_ports(role)
        .into_iter()
        .chain(p2p_ports(spec, m))
        .chain(signer_db_ports(spec, m));
    for (r, from) in rules.flat_map(|r| sources(&r.from).into_iter().map(move |f| (r.clone(), f))) {
        let key = (r.proto.as_str(), from);
        match groups
            .iter_mut()
            .find(|(p, f, rules)| (*p, f.clone()) == key && rules.len() < 15)
        {
            Some(g) => g.2.push(r),
            None => groups.push((key.0, key.1, vec![r])),
        }
    }
    let mut out: Vec<UfwRule> = groups
        .into_iter()
        .map(|(proto, from, mut rules)| {
            // ufw lists the ports of a rule in ascending order.
            rules.sort_by_key(|r| r.port);
            let ports: Vec<String> = rules.iter().map(|r| r.port.to_string()).collect();
            let whys: Vec<&str> = rules.iter().map(|r| r.why.as_str()).collect();
            UfwRule {
                ports: ports.join(","),
                proto,
                from,
                comment: whys.join(", "),
            }
        })
        .collect();
    for extra in &spec.extra_rules {
        if extra.roles.is_empty() || extra.roles.contains(&role) {
            for from in sources(&extra.rule.from) {
                out.push(UfwRule {
                    ports: extra.rule.port.to_string(),
                    proto: extra.rule.proto.as_str(),
                    from,
                    comment: extra.rule.why.clone(),
                });
            }
        }
    }
    out
}

/// The signer's database on the machine that holds it (else null): its
/// name, role, password and where the migrations are.
fn signer_db_context(spec: &Spec, secrets: &Secrets, m: &MachineSpec) -> Result<Value> {
    if !holds_signer_db(spec, m) {
        return Ok(Value::Null);
    }
    use crate::staking::{SIGNER_DB_MIGRATIONS, SIGNER_DB_NAME, SIGNER_DB_PORT, SIGNER_DB_USER};
    Ok(json!({
        "name": SIGNER_DB_NAME,
        "user": SIGNER_DB_USER,
        "port": SIGNER_DB_PORT,
        "password": secrets.signer_db_password()?,
        "migrations": SIGNER_DB_MIGRATIONS,
    }))
}

/// PostgreSQL on the machine that holds the signer's database, for the
/// cluster subnet only (Web3Signer runs on any node).
fn signer_db_ports(spec: &Spec, m: &MachineSpec) -> Vec<PortRule> {
    if !holds_signer_db(spec, m) {
        return Vec::new();
    }
    vec![PortRule {
        port: crate::staking::SIGNER_DB_PORT,
        proto: crate::validate::Proto::Tcp,
        from: Source::Cluster,
        // ufw refuses a comment holding a single quote.
        why: "PostgreSQL for Web3Signer".into(),
    }]
}

/// The staking clients' P2P ports a Kubernetes machine opens to anyone:
/// those of the clients that may run on it (every node, or the profile's
/// `p2p.node`), exactly the host ports their pods hold.
fn p2p_ports(spec: &Spec, m: &MachineSpec) -> Vec<PortRule> {
    let Some(s) = spec.staking.as_ref().filter(|_| m.role.is_kubernetes()) else {
        return Vec::new();
    };
    let here = s.p2p_node.as_ref().is_none_or(|node| node == &m.name);
    let mut sides: Vec<(&str, &[clients::P2pPort])> = Vec::new();
    if here {
        sides.push((&s.execution, clients::client(&s.execution).p2p));
    }
    if s.legacy.is_some() {
        // The eth2xk8s chart cannot be pinned to a node.
        sides.push((&s.consensus, clients::LEGACY_PRYSM_P2P));
    } else if here {
        sides.push((&s.consensus, clients::client(&s.consensus).p2p));
    }
    sides
        .into_iter()
        .flat_map(|(name, ports)| {
            ports.iter().map(move |p| PortRule {
                port: p.port,
                proto: p.proto,
                from: Source::Any,
                why: format!("{name} {}", p.what),
            })
        })
        .collect()
}

/// The NIC's name in network-config: the profile's interface, else
/// `lan0` (with a MAC, nodeimg renames the NIC to it).
pub fn nic_name(m: &MachineSpec) -> String {
    m.interface
        .clone()
        .unwrap_or_else(|| DEFAULT_NIC_NAME.into())
}

/// Debian/Ubuntu packages a machine's first boot needs: its role's, and on
/// the NFS server the remote signer's database.
pub fn packages(spec: &Spec, m: &MachineSpec) -> Vec<&'static str> {
    let mut p = vec!["chrony", "ufw", "openssh-server"];
    match m.role {
        Role::Nfs => p.push("nfs-kernel-server"),
        Role::Master | Role::Worker => p.extend(["nfs-common", "snapd"]),
    }
    if holds_signer_db(spec, m) {
        p.push("postgresql");
    }
    p
}

/// Whether `m` holds the remote signer's database: the NFS server, where
/// the cluster's state is, when the profile signs through Web3Signer.
pub fn holds_signer_db(spec: &Spec, m: &MachineSpec) -> bool {
    m.role == Role::Nfs && spec.signer_db().is_some()
}

fn fqdn(spec: &Spec, name: &str) -> Value {
    match &spec.domain {
        Some(d) => json!(format!("{name}.{d}")),
        None => Value::Null,
    }
}

/// The profile's addons, plus helm3 where the master installs the staking
/// release with it.
fn addons(spec: &Spec) -> Vec<String> {
    let mut a = spec.microk8s.addons.clone();
    if spec.staking.is_some() && !a.iter().any(|x| x == "helm3") {
        a.push("helm3".into());
    }
    a
}

fn machine_summary(spec: &Spec, m: &MachineSpec) -> Value {
    json!({
        "name": m.name,
        "role": m.role,
        "ip": m.ip.to_string(),
        "fqdn": fqdn(spec, &m.name),
    })
}

/// The template context every machine shares: the cluster, its machines,
/// and every setting that is the same on all of them.
pub fn cluster_context(spec: &Spec, secrets: &Secrets) -> Result<Value> {
    let master = spec.master();
    let nfs_server = spec.nfs_server();
    let token = &secrets.microk8s_join_token;
    let export_root = spec.nfs.export_root.trim_end_matches('/');
    Ok(json!({
        "nodeimg": { "version": env!("CARGO_PKG_VERSION") },
        "status_file": crate::firstboot::STATUS_FILE,
        "firstboot": crate::firstboot::context(),
        "failover_every": crate::staking::FAILOVER_EVERY_SECONDS,
        "cluster": { "name": spec.cluster_name, "domain": spec.domain },
        "network": {
            "subnet": spec.subnet.to_string(),
            "prefix": spec.subnet.prefix_len(),
            "gateway": spec.gateway.to_string(),
            "dns": spec.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        },
        "machines": spec.machines.iter().map(|x| machine_summary(spec, x)).collect::<Vec<_>>(),
        "master": machine_summary(spec, master),
        "nfs_server": machine_summary(spec, nfs_server),
        "ssh": ssh_settings(spec),
        "time": {
            "timezone": spec.time.timezone,
            "ntp_pools": spec.time.ntp_pools,
            "chrony": {
                "pool_options": spec.time.chrony.pool_options,
                "maxupdateskew": spec.time.chrony.maxupdateskew,
                "makestep_threshold": spec.time.chrony.makestep_threshold,
                "makestep_limit": spec.time.chrony.makestep_limit,
            },
        },
        "apt": { "update": spec.apt.update, "upgrade": spec.apt.upgrade },
        "nfs": {
            "server_ip": nfs_server.ip.to_string(),
            "export_root": export_root,
            "uid": spec.nfs.uid,
            "gid": spec.nfs.gid,
            "folders": spec.nfs.folders,
            "export_options": spec.nfs.export_options,
        },
        "microk8s": {
            "channel": spec.microk8s.channel,
            "addons": addons(spec),
            "hold_refresh": spec.microk8s.hold_refresh,
            "token": token,
            // The host must be an IP literal: a name is "Invalid master IP".
            "join_url": format!("{}:25000/{}", master.ip, token),
        },
        "staking": spec.staking.as_ref().map(|s| json!({
            "namespace": s.namespace,
            "consensus": s.consensus,
            "groups": s.groups.iter().map(|g| g.name.clone()).collect::<Vec<_>>(),
            "legacy": s.legacy.is_some(),
            // Where the NFS server puts the keystores when Web3Signer holds them.
            "signer_folder": s.signer.is_remote().then_some(crate::staking::SIGNER_FOLDER),
            // The releases whose pods the masters move off a dead node.
            "failover": (s.failover == crate::staking::Failover::Automatic).then(|| json!({
                "after": crate::staking::FAILOVER_SECONDS,
                "releases": s.signing_releases(),
            })),
        })),
    }))
}

/// `ssh` in the template context: the settings every machine shares.
fn ssh_settings(spec: &Spec) -> Value {
    json!({
        "port": spec.ssh.port,
        "user": spec.ssh.user,
        "authorized_keys": spec.ssh.authorized_keys,
    })
}

/// What is one machine's own in the template context: the machine, its host
/// key, its firewall rules and packages, and its payload. It is laid over [`cluster_context`].
pub fn machine_context(
    spec: &Spec,
    secrets: &Secrets,
    m: &MachineSpec,
    payload: &[PayloadFile],
) -> Result<Value> {
    let host = secrets.machine(&m.name)?;
    // The machine's `ssh` replaces the cluster's whole: the settings again,
    // with its host key.
    let mut ssh = ssh_settings(spec);
    ssh["host_key"] = json!({
        "private": host.ssh_host_ed25519_key,
        "public": host.public_key()?,
    });
    Ok(json!({
        "machine": {
            "name": m.name,
            "role": m.role,
            "ip": m.ip.to_string(),
            "fqdn": fqdn(spec, &m.name),
            "mac": m.mac,
            "interface": m.interface,
            "nic_name": nic_name(m),
            "ubuntu": m.ubuntu,
            "kubelet_on_cgroup_v1": m.kubelet_on_cgroup_v1(&spec.microk8s.channel),
            "joins_control_plane": spec.joins_control_plane(m),
        },
        "hosts": spec.hosts_of(m).map(|x| machine_summary(spec, x)).collect::<Vec<_>>(),
        "ssh": ssh,
        "firewall": { "rules": ufw_rules(spec, m) },
        "packages": packages(spec, m),
        "signer_db": signer_db_context(spec, secrets, m)?,
        "payload": payload,
    }))
}

/// Where the base image is and how it is checked: an Ubuntu release's
/// cloud image (amd64) and its SHA256SUMS, or the profile's URL.
pub fn image_location(image: &ImageSpec) -> (String, Checksum) {
    match &image.source {
        ImageSource::Ubuntu { version, sha256 } => {
            let dir = format!("https://cloud-images.ubuntu.com/releases/{version}/release");
            let name = format!("ubuntu-{version}-server-cloudimg-amd64.img");
            let checksum = match sha256 {
                Some(h) => Checksum::Sha256(h.clone()),
                None => Checksum::Sums {
                    url: format!("{dir}/SHA256SUMS"),
                    name: name.clone(),
                },
            };
            (format!("{dir}/{name}"), checksum)
        }
        ImageSource::Url { url, checksum } => (url.clone(), checksum.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::ImageSpec;

    use crate::checked_spec as spec;

    /// ufw takes at most 15 ports in one rule ("ERROR: Too many ports
    /// specified"): every role port is in exactly one rule of its protocol
    /// and source, at most 15 a rule, ascending, and the profile's extra
    /// rules come after, on the roles they name.
    #[test]
    fn every_port_is_in_one_ufw_rule_of_at_most_fifteen() {
        let mut text = include_str!("../profiles/hoodi.yaml").to_string();
        // Enough extra ports on workers to need several rules of one kind.
        let extra: String = (30000..30020)
            .map(|p| format!("    - {{port: {p}, proto: udp, from: cluster, roles: [worker]}}\n"))
            .collect();
        assert!(!text.contains("\nfirewall:"));
        text.push_str(&format!("firewall:\n  extra_rules:\n{extra}"));
        let spec = spec(&text);
        for m in &spec.machines {
            let rules = ufw_rules(&spec, m);
            let masters = spec
                .by_role(Role::Master)
                .filter(|x| x.name != m.name)
                .count();
            let role_rules: usize = role_ports(m.role)
                .iter()
                .map(|r| {
                    if r.from == Source::Masters {
                        masters
                    } else {
                        1
                    }
                })
                .sum::<usize>()
                + p2p_ports(&spec, m).len()
                + signer_db_ports(&spec, m).len();
            let mut seen = Vec::new();
            let mut extras = 0;
            for r in &rules {
                let ports: Vec<u16> = r.ports.split(',').map(|p| p.parse().unwrap()).collect();
                assert!(ports.len() <= 15, "{}: {}", m.name, r.ports);
                assert!(ports.windows(2).all(|w| w[0] < w[1]), "{}", r.ports);
                if ports.iter().all(|p| (30000..30020).contains(p)) {
                    extras += 1;
                    assert_eq!(ports.len(), 1, "extra rules are one port each");
                } else {
                    assert_eq!(extras, 0, "{}: a role rule after an extra one", m.name);
                    seen.extend(ports.iter().map(|p| (*p, r.proto)));
                }
            }
            assert_eq!(seen.len(), role_rules, "{}: {rules:?}", m.name);
            let wanted = if m.role == Role::Worker { 20 } else { 0 };
            assert_eq!(extras, wanted, "{}", m.name);
        }
    }

    /// ufw refuses a rule whose comment holds a single quote ("Comment may
    /// not contain \"'\"", its parser.py): the first boot's firewall step
    /// would fail. No rule of any shipped profile, nor of the remote signer.
    #[test]
    fn no_ufw_comment_holds_a_single_quote() {
        let remote = include_str!("../profiles/hoodi.yaml").replace(
            "  doppelganger: true\n",
            "  doppelganger: true\n  signer: web3signer\n",
        );
        for text in [
            include_str!("../profiles/tutorial.yaml"),
            include_str!("../profiles/homelab.yaml"),
            include_str!("../profiles/ha.yaml"),
            &remote,
        ] {
            let spec = spec(text);
            for m in &spec.machines {
                for r in ufw_rules(&spec, m) {
                    assert!(!r.comment.contains('\''), "{}: {}", m.name, r.comment);
                }
            }
        }
    }

    /// dqlite is spoken between masters only: each master opens it to the
    /// other masters by address (none with a single master), no worker
    /// opens it; the workers' cluster agents answer the masters only.
    #[test]
    fn dqlite_is_open_between_the_masters_only() {
        let rules_of = |spec: &Spec, name: &str| -> Vec<(String, String)> {
            ufw_rules(spec, spec.machine(name).unwrap())
                .into_iter()
                .filter(|r| r.ports.split(',').any(|p| p == "19001" || p == "25000"))
                .map(|r| (r.ports, r.from))
                .collect()
        };
        let ha = spec(include_str!("../profiles/ha.yaml"));
        let subnet = "172.20.0.0/20".to_string();
        let from = |ip: &str, port: &str| (port.to_string(), ip.to_string());
        assert_eq!(
            rules_of(&ha, "master-1"),
            [
                (rules_of(&ha, "master-1")[0].0.clone(), subnet.clone()),
                from("172.20.10.13", "19001"),
                from("172.20.10.14", "19001"),
            ]
        );
        assert!(rules_of(&ha, "master-1")[0].0.ends_with(",25000"));
        assert_eq!(
            rules_of(&ha, "master-3")[1..],
            [from("172.20.10.11", "19001"), from("172.20.10.13", "19001")]
        );
        let masters = ["172.20.10.11", "172.20.10.13", "172.20.10.14"];
        let worker: Vec<(String, String)> = masters.iter().map(|ip| from(ip, "25000")).collect();
        assert_eq!(rules_of(&ha, "worker-2"), worker);
        let one = spec(include_str!("../profiles/tutorial.yaml"));
        let master = rules_of(&one, "master");
        assert_eq!(master.len(), 1, "{master:?}");
        assert_eq!(master[0].1, subnet);
        assert_eq!(rules_of(&one, "worker-1"), [from("172.20.10.11", "25000")]);
    }

    /// The P2P ports are open only where the clients may run: on
    /// `p2p.node` alone when the profile pins them.
    #[test]
    fn p2p_ports_open_on_the_pinned_node_only() {
        let text = include_str!("../profiles/hoodi.yaml").replace(
            "  graffiti: \"nodeimg\"",
            "  graffiti: \"nodeimg\"\n  p2p: {node: worker-1}",
        );
        let spec = spec(&text);
        for m in &spec.machines {
            let p2p = p2p_ports(&spec, m);
            assert_eq!(!p2p.is_empty(), m.name == "worker-1", "{}: {p2p:?}", m.name);
        }
    }

    /// Ubuntu publishes its cloud images and their SHA256SUMS at these
    /// addresses (https://cloud-images.ubuntu.com/releases/22.04/release/).
    #[test]
    fn an_ubuntu_release_is_found_where_ubuntu_publishes_it() {
        let image = |sha256: Option<&str>| ImageSpec {
            source: ImageSource::Ubuntu {
                version: "22.04",
                sha256: sha256.map(str::to_string),
            },
            size: None,
        };
        let (url, checksum) = image_location(&image(None));
        let dir = "https://cloud-images.ubuntu.com/releases/22.04/release";
        assert_eq!(url, format!("{dir}/ubuntu-22.04-server-cloudimg-amd64.img"));
        assert_eq!(
            checksum,
            Checksum::Sums {
                url: format!("{dir}/SHA256SUMS"),
                name: "ubuntu-22.04-server-cloudimg-amd64.img".into()
            }
        );
        let pinned = "ab".repeat(32);
        assert_eq!(
            image_location(&image(Some(&pinned))).1,
            Checksum::Sha256(pinned)
        );
    }

    #[test]
    fn the_master_gets_helm3_when_the_profile_stakes() {
        let staking = spec(include_str!("../profiles/hoodi.yaml"));
        assert!(addons(&staking).contains(&"helm3".to_string()));
        let plain = spec(include_str!("../profiles/tutorial.yaml"));
        assert!(!addons(&plain).contains(&"helm3".to_string()));
    }
}

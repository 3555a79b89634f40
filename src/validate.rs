//! Semantic checks (validate stage): from a loaded [`Profile`] to a typed,
//! checked [`Spec`], or every reason why not. Each rule lives here once.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::diag::{Checker, Diagnostic, Kind, Path};
use crate::model::{is_dns_label, is_private_v4, unusable_range};
pub use crate::model::{Proto, Role};
use crate::profile::{self, Profile};

/// Who may reach a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Only the cluster subnet.
    Cluster,
    /// Only the other masters, each by its address (one rule a master; none
    /// with a single master).
    Masters,
    Any,
    Net(String),
}

/// A port a role opens in ufw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortRule {
    pub port: u16,
    pub proto: Proto,
    pub from: Source,
    pub why: String,
}

fn rule(port: u16, proto: Proto, from: Source, why: &str) -> PortRule {
    PortRule {
        port,
        proto,
        from,
        why: why.into(),
    }
}

/// The ports each role needs (the reference setup's list, plus Calico's
/// VXLAN port, without which pods on different nodes cannot talk); the
/// staking clients' P2P ports come on top (`resolve::ufw_rules`).
pub fn role_ports(role: Role) -> Vec<PortRule> {
    use Proto::*;
    match role {
        Role::Nfs => vec![rule(2049, Tcp, Source::Cluster, "NFSv4")],
        Role::Master | Role::Worker => vec![
            rule(16443, Tcp, Source::Cluster, "Kubernetes API server"),
            rule(10250, Tcp, Source::Cluster, "kubelet"),
            rule(10255, Tcp, Source::Cluster, "kubelet read-only"),
            rule(12379, Tcp, Source::Cluster, "etcd"),
            rule(10257, Tcp, Source::Cluster, "kube-controller-manager"),
            rule(10259, Tcp, Source::Cluster, "kube-scheduler"),
            rule(4789, Udp, Source::Cluster, "Calico VXLAN"),
        ]
        .into_iter()
        .chain(match role {
            // Every machine joins through a master's cluster agent; the
            // masters' agents call the workers' (addons, restarts).
            // dqlite, the control plane's database, runs on masters only
            // and is spoken between them.
            Role::Master => vec![
                rule(25000, Tcp, Source::Cluster, "MicroK8s cluster-agent (join)"),
                rule(19001, Tcp, Source::Masters, "dqlite"),
            ],
            _ => vec![rule(25000, Tcp, Source::Masters, "MicroK8s cluster-agent")],
        })
        .collect(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineSpec {
    pub name: String,
    pub role: Role,
    pub ip: Ipv4Addr,
    pub mac: Option<String>,
    pub interface: Option<String>,
    /// The Ubuntu release it runs, as a version ("20.04").
    pub ubuntu: &'static str,
}

impl MachineSpec {
    /// Whether its kubelet must be told to run on cgroup v1: Ubuntu 20.04
    /// boots the legacy hierarchy, and from Kubernetes 1.35 the kubelet
    /// refuses it by default (KEP-5573, `failCgroupV1`).
    pub fn kubelet_on_cgroup_v1(&self, channel: &str) -> bool {
        self.role.is_kubernetes()
            && self.ubuntu == UBUNTU_CGROUP_V1
            && match channel_minor(channel) {
                Ok(Some(minor)) => minor >= FAIL_CGROUP_V1_FROM,
                Ok(None) => true,
                Err(_) => false,
            }
    }
}

/// The one supported release that boots with cgroup v1 (hybrid); Ubuntu
/// switched to the unified hierarchy in 21.10.
pub const UBUNTU_CGROUP_V1: &str = "20.04";
/// The first Kubernetes minor whose kubelet refuses cgroup v1 by default.
pub const FAIL_CGROUP_V1_FROM: u32 = 35;
/// The newest Kubernetes minor known to start on cgroup v1 with
/// `--fail-cgroupv1=false` (v1 support is to be removed after it).
pub const CGROUP_V1_LAST_KNOWN: u32 = 36;
/// The release a machine runs when the profile names none: the reference's.
pub const DEFAULT_UBUNTU: &str = "20.04";

#[derive(Debug, Clone, Serialize)]
pub struct ExtraRule {
    pub rule: PortRule,
    /// Empty: every role.
    pub roles: Vec<Role>,
}

/// A checked profile: every value parsed and consistent.
#[derive(Debug, Clone)]
pub struct Spec {
    pub cluster_name: String,
    pub domain: Option<String>,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub machines: Vec<MachineSpec>,
    pub ssh: profile::Ssh,
    pub time: profile::Time,
    pub apt: profile::Apt,
    pub nfs: profile::Nfs,
    pub microk8s: profile::Microk8s,
    pub extra_rules: Vec<ExtraRule>,
    pub image: Option<ImageSpec>,
    pub staking: Option<crate::staking::StakingSpec>,
    /// Folders outside the profile's that its paths may name.
    pub trusted_folders: Vec<String>,
}

/// The checked `image` section: which image, not yet where it is (see
/// [`crate::resolve::image_location`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub source: ImageSource,
    /// Bytes; `None`: as small as the base image and the seed allow.
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Ubuntu's cloud image of a release (a version of [`UBUNTU_RELEASES`]),
    /// checked against the release's SHA256SUMS unless pinned.
    Ubuntu {
        version: &'static str,
        sha256: Option<String>,
    },
    /// Any image at a URL, with its checksum.
    Url { url: String, checksum: Checksum },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Sha256(String),
    /// A SHA256SUMS list at `url` with an entry for `name`.
    Sums {
        url: String,
        name: String,
    },
}

/// Ubuntu releases with default cloud images: (version, codename).
pub const UBUNTU_RELEASES: &[(&str, &str)] =
    &[("20.04", "focal"), ("22.04", "jammy"), ("24.04", "noble")];

/// `20G`, `512M`, `1T`, `20GiB` (powers of 1024, as qemu-img) or bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift).filter(|&b| b > 0)
}

impl Spec {
    pub fn machine(&self, name: &str) -> Option<&MachineSpec> {
        self.machines.iter().find(|m| m.name == name)
    }
    pub fn by_role(&self, role: Role) -> impl Iterator<Item = &MachineSpec> {
        self.machines.iter().filter(move |m| m.role == role)
    }
    /// The first master: it holds the persistent join token and the
    /// addons, installs the staking release, and every other machine joins
    /// it (further masters as control-plane nodes).
    pub fn master(&self) -> &MachineSpec {
        // A Spec is only built with at least one master and exactly one nfs.
        self.by_role(Role::Master)
            .next()
            .expect("validated: a master")
    }
    /// Whether `m` is the first master (see [`Spec::master`]).
    pub fn is_first_master(&self, m: &MachineSpec) -> bool {
        m.role == Role::Master && m.name == self.master().name
    }
    /// The remote signer's database migrations, when the profile signs
    /// through Web3Signer.
    pub fn signer_db(&self) -> Option<&crate::staking::Migrations> {
        self.staking.as_ref()?.signer.database()
    }
    /// What decides `m`'s first-boot steps.
    pub fn duty(&self, m: &MachineSpec) -> crate::firstboot::Duty {
        crate::firstboot::Duty {
            role: m.role,
            first_master: self.is_first_master(m),
        }
    }
    /// A master that joins the first one's control plane.
    pub fn joins_control_plane(&self, m: &MachineSpec) -> bool {
        m.role == Role::Master && !self.is_first_master(m)
    }
    pub fn nfs_server(&self) -> &MachineSpec {
        self.by_role(Role::Nfs).next().expect("validated: one nfs")
    }
    /// The machines `m`'s /etc/hosts lists, in profile order. A master lists
    /// every machine: its API server reaches a joining node by name (MicroK8s
    /// 1.27). Any other machine lists itself, the masters and the NFS server,
    /// the only machines it talks to, so that each seed stays the same size
    /// however many workers the cluster has (and adding a worker changes the
    /// masters' seeds, not every seed).
    pub fn hosts_of<'a>(&'a self, m: &'a MachineSpec) -> impl Iterator<Item = &'a MachineSpec> {
        self.machines
            .iter()
            .filter(move |x| m.role == Role::Master || x.role != Role::Worker || x.name == m.name)
    }
}

/// Checks a profile. Returns the spec when there is no error, and every
/// finding (errors and warnings) in any case.
pub fn validate(p: &Profile) -> (Option<Spec>, Vec<Diagnostic>) {
    let mut c = Checker::default();
    check_version(&mut c, p.version);
    let cluster_name = check_cluster_name(&mut c, p.cluster.as_ref());
    let domain = p.cluster.as_ref().and_then(|cl| cl.domain.clone());
    if let Some(d) = &domain {
        check_domain(&mut c, d, &p.machines);
    }
    let (subnet, gateway, dns) = check_network(&mut c, p);
    let ubuntu = check_ubuntu(&mut c, p);
    let machines = check_machines(&mut c, p, subnet, gateway, ubuntu);
    let ssh = check_ssh(&mut c, p);
    check_time(&mut c, &p.time);
    check_nfs(&mut c, &p.nfs);
    check_microk8s(&mut c, &p.microk8s);
    check_release_and_channel(&mut c, p, &machines);
    let extra_rules = check_firewall(&mut c, &p.firewall);
    let image = p.image.as_ref().and_then(|i| check_image(&mut c, i));
    let staking = p
        .staking
        .as_ref()
        .and_then(|s| crate::staking::check(&mut c, s));
    if let Some(node) = staking.as_ref().and_then(|s| s.p2p_node.as_ref()) {
        check_p2p_node(&mut c, node, &machines);
    }
    let mut nfs = p.nfs.clone();
    if let Some(s) = &staking {
        // The workloads' folders are exported whether listed or not.
        for f in s.folders() {
            if !nfs.folders.contains(&f) {
                nfs.folders.push(f);
            }
        }
    }

    let has_errors = c.diags.iter().any(Diagnostic::is_error);
    let spec = match (has_errors, subnet, gateway, ssh) {
        (false, Some(subnet), Some(gateway), Some(ssh)) => Some(Spec {
            cluster_name,
            domain,
            subnet,
            gateway,
            dns,
            machines,
            ssh,
            time: p.time.clone(),
            apt: p.apt.clone(),
            nfs,
            microk8s: normalized_microk8s(&p.microk8s),
            extra_rules,
            image,
            staking,
            trusted_folders: p.trusted_folders.clone(),
        }),
        _ => None,
    };
    (spec, c.diags)
}

fn check_version(c: &mut Checker, version: Option<u32>) {
    match version {
        Some(1) => {}
        Some(v) => c.error(
            Kind::Unsupported,
            Path::root().key("version"),
            format!("profile version {v} is not supported by this nodeimg"),
            "write `version: 1`",
        ),
        None => c.error(
            Kind::Missing,
            Path::root(),
            "the profile has no `version`",
            "add `version: 1` as the first line",
        ),
    }
}

/// The cluster's name (it names the output directory): an RFC 1123 label.
fn check_cluster_name(c: &mut Checker, cluster: Option<&profile::Cluster>) -> String {
    let Some(name) = cluster.and_then(|cl| cl.name.as_ref()) else {
        c.error(
            Kind::Missing,
            if cluster.is_some() {
                Path::root().key("cluster")
            } else {
                Path::root()
            },
            "the profile has no `cluster.name`",
            "add `cluster:` with `name: staking` (it names the output directory)",
        );
        return String::new();
    };
    if !is_dns_label(name) {
        c.error(
            Kind::Malformed,
            Path::parse("cluster.name"),
            format!("cluster name {name:?} is not a valid name"),
            "use 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen",
        );
    }
    name.clone()
}

/// A DNS name short enough for every machine's full name.
fn check_domain(c: &mut Checker, domain: &str, machines: &[profile::Machine]) {
    let at = Path::parse("cluster.domain");
    if !domain.split('.').all(is_dns_label) {
        c.error(
            Kind::Malformed,
            at,
            format!("domain {domain:?} is not a valid DNS name"),
            "use labels of lowercase letters, digits and hyphens separated by dots, e.g. `lan`",
        );
        return;
    }
    let longest = machines
        .iter()
        .filter_map(|m| m.name.as_deref())
        .max_by_key(|n| n.len());
    if let Some(name) = longest.filter(|n| n.len() + 1 + domain.len() > 253) {
        c.error(
            Kind::OutOfRange,
            at,
            format!(
                "{name}.{domain} would be {} characters: a DNS name has at most 253",
                name.len() + 1 + domain.len()
            ),
            "use a shorter domain",
        );
    }
}

/// The machine the P2P clients are pinned to runs Kubernetes.
fn check_p2p_node(c: &mut Checker, node: &str, machines: &[MachineSpec]) {
    if machines
        .iter()
        .any(|m| m.name == node && m.role.is_kubernetes())
    {
        return;
    }
    let nodes: Vec<&str> = machines
        .iter()
        .filter(|m| m.role.is_kubernetes())
        .map(|m| m.name.as_str())
        .collect();
    c.error(
        Kind::Unknown,
        Path::root().key("staking").key("p2p").key("node"),
        format!("{node:?} is not a Kubernetes machine of the profile"),
        format!("name the master or a worker: {}", nodes.join(", ")),
    );
}

fn check_network(
    c: &mut Checker,
    p: &Profile,
) -> (Option<Ipv4Net>, Option<Ipv4Addr>, Vec<Ipv4Addr>) {
    let Some(net) = &p.network else {
        c.error(
            Kind::Missing,
            Path::root(),
            "the profile has no `network` section",
            "add `network:` with `subnet`, `gateway` and `dns`",
        );
        return (None, None, Vec::new());
    };
    let subnet = check_subnet(c, net.subnet.as_deref());
    let gateway = check_gateway(c, net.gateway.as_deref(), subnet);
    let dns = check_dns(c, net.dns.as_deref(), gateway);
    (subnet, gateway, dns)
}

/// The cluster subnet: a network address in CIDR form, a LAN (the NFS
/// export and the cluster ports are opened to it), room for a cluster.
fn check_subnet(c: &mut Checker, subnet: Option<&str>) -> Option<Ipv4Net> {
    let Some(s) = subnet else {
        c.error(
            Kind::Missing,
            Path::parse("network"),
            "`network.subnet` is missing",
            "add the cluster subnet in CIDR form, e.g. `subnet: 172.20.0.0/20`",
        );
        return None;
    };
    let at = Path::parse("network.subnet");
    let Ok(n) = Ipv4Net::from_str(s) else {
        c.error(
            Kind::Malformed,
            at,
            format!("{s:?} is not an IPv4 subnet in CIDR form"),
            "write it as ADDRESS/PREFIX, e.g. 172.20.0.0/20",
        );
        return None;
    };
    if n.addr() != n.network() {
        c.error(
            Kind::Malformed,
            at,
            format!("subnet {s} has host bits set"),
            format!("write the network address: did you mean {}?", n.trunc()),
        );
        return None;
    }
    if let Some((kind, why)) = unusable_subnet(n) {
        c.error(
            kind,
            at,
            format!("subnet {s} {why}"),
            "give the machines' own LAN, e.g. 192.168.1.0/24 or 172.20.0.0/20: the NFS export and the cluster ports are opened to this subnet",
        );
        return None;
    }
    if n.prefix_len() > 30 {
        c.error(
            Kind::OutOfRange,
            at,
            format!("subnet {s} is too small for a cluster"),
            "use a prefix of /30 or shorter (e.g. /24)",
        );
        return None;
    }
    if !is_private_v4(n.network()) {
        c.warning(
            Kind::Risky,
            at,
            format!("subnet {s} is not a private range: the NFS export and the cluster ports are opened to all of it"),
            "a LAN is usually 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16; keep this only if these public addresses are yours",
        );
    }
    Some(n)
}

fn check_gateway(
    c: &mut Checker,
    gateway: Option<&str>,
    subnet: Option<Ipv4Net>,
) -> Option<Ipv4Addr> {
    let Some(g) = gateway else {
        c.error(
            Kind::Missing,
            Path::parse("network"),
            "`network.gateway` is missing",
            "add the router's address, e.g. `gateway: 172.20.0.1`",
        );
        return None;
    };
    let at = Path::parse("network.gateway");
    let Some(ip) = parse_ipv4(g) else {
        c.error(
            Kind::Malformed,
            at,
            format!("{g:?} is not an IPv4 address"),
            "write four numbers from 0 to 255 separated by dots, e.g. 172.20.0.1",
        );
        return None;
    };
    if let Some(subnet) = subnet {
        if let Err((kind, why)) = host_in_subnet(ip, subnet) {
            c.error(
                kind,
                at,
                format!("gateway {ip} {why}"),
                format!(
                    "use an address between {} and {}",
                    first_host(subnet),
                    last_host(subnet)
                ),
            );
        }
    }
    Some(ip)
}

/// The resolvers: the profile's list, else the gateway.
fn check_dns(c: &mut Checker, dns: Option<&[String]>, gateway: Option<Ipv4Addr>) -> Vec<Ipv4Addr> {
    let at = Path::parse("network.dns");
    let Some(list) = dns else {
        return gateway.into_iter().collect();
    };
    if list.is_empty() {
        c.error(
            Kind::Missing,
            at,
            "`network.dns` is empty",
            "list at least one DNS server, e.g. `dns: [8.8.8.8, 8.8.4.4]`, or remove the key to use the gateway",
        );
        return Vec::new();
    }
    let mut servers = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match parse_ipv4(s) {
            Some(ip) if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() => c.error(
                Kind::Reserved,
                at.index(i),
                format!("DNS server {ip} is not a server the machines can ask"),
                "give the address of a resolver on the network (your router, e.g. the gateway) or a public one such as 9.9.9.9; 127.x would point at the machine itself, where no resolver listens on first boot",
            ),
            Some(ip) => servers.push(ip),
            None => c.error(
                Kind::Malformed,
                at.index(i),
                format!("DNS server {s:?} is not an IPv4 address"),
                "write an address such as 8.8.8.8",
            ),
        }
    }
    servers
}

/// A release as the profile writes it (version or code name) -> its version.
fn ubuntu_version(c: &mut Checker, at: Path, release: &str) -> Option<&'static str> {
    let found = UBUNTU_RELEASES
        .iter()
        .find(|(v, name)| *v == release || *name == release);
    if found.is_none() {
        c.error(
            Kind::Unknown,
            at,
            format!("{release:?} is not an Ubuntu release nodeimg supports"),
            "write 20.04, 22.04 or 24.04 (quoted, e.g. \"22.04\"), or focal, jammy or noble",
        );
    }
    found.map(|(v, _)| *v)
}

/// The release the machines run unless they say otherwise: `ubuntu`, else
/// `image.release`, else the reference's 20.04.
fn check_ubuntu(c: &mut Checker, p: &Profile) -> &'static str {
    let from_image = p.image.as_ref().and_then(|i| i.release.as_deref());
    let image = from_image.and_then(|r| {
        UBUNTU_RELEASES
            .iter()
            .find(|(v, name)| *v == r || *name == r)
            .map(|(v, _)| *v)
    });
    match &p.ubuntu {
        Some(r) => {
            let v = ubuntu_version(c, Path::root().key("ubuntu"), r);
            if let (Some(v), Some(i)) = (v, image) {
                if v != i {
                    c.error(
                        Kind::Conflict,
                        Path::root().key("ubuntu"),
                        format!("`ubuntu` is {v} but `image.release` is {i}"),
                        "the disk images are made from image.release: give both the same release, or drop `ubuntu`",
                    );
                }
            }
            v.unwrap_or(DEFAULT_UBUNTU)
        }
        None => image.unwrap_or(DEFAULT_UBUNTU),
    }
}

/// MicroK8s channels a machine's release cannot run: on 20.04 (cgroup v1)
/// only up to the last Kubernetes known to start there.
fn check_release_and_channel(c: &mut Checker, p: &Profile, machines: &[MachineSpec]) {
    let channel = &p.microk8s.channel;
    let on_v1: Vec<&MachineSpec> = machines
        .iter()
        .filter(|m| m.role.is_kubernetes() && m.ubuntu == UBUNTU_CGROUP_V1)
        .collect();
    let Some(first) = on_v1.first() else { return };
    // Blame the machine's own `ubuntu` where it has one, else the cluster's.
    let at = p
        .machines
        .iter()
        .position(|x| x.name.as_deref() == Some(&first.name) && x.ubuntu.is_some())
        .map(|i| Path::root().key("machines").index(i).key("ubuntu"))
        .unwrap_or_else(|| Path::root().key("microk8s").key("channel"));
    let names: Vec<&str> = on_v1.iter().map(|m| m.name.as_str()).collect();
    match channel_minor(channel) {
        Ok(Some(minor)) if minor > CGROUP_V1_LAST_KNOWN => c.error(
            Kind::Unsupported,
            at,
            format!(
                "MicroK8s {channel} on Ubuntu 20.04 ({}): Kubernetes 1.{minor} is not known to run on 20.04's cgroup v1",
                names.join(", ")
            ),
            format!(
                "run those machines on 22.04 or 24.04 (`ubuntu: \"22.04\"`), or use a channel up to 1.{CGROUP_V1_LAST_KNOWN}"
            ),
        ),
        Ok(None) => c.warning(
            Kind::Risky,
            at,
            format!(
                "{channel} on Ubuntu 20.04 ({}): a future Kubernetes may drop cgroup v1, which 20.04 boots with",
                names.join(", ")
            ),
            format!("pin a track up to 1.{CGROUP_V1_LAST_KNOWN}, or run 22.04 or 24.04"),
        ),
        _ => {}
    }
}

fn check_machines(
    c: &mut Checker,
    p: &Profile,
    subnet: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
    ubuntu: &'static str,
) -> Vec<MachineSpec> {
    let list = Path::root().key("machines");
    if p.machines.is_empty() {
        c.error(
            Kind::Missing,
            Path::root(),
            "the profile has no machines",
            "add `machines:` with one nfs, one master and at least one worker",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut seen = Seen::default();
    for (i, m) in p.machines.iter().enumerate() {
        let at = list.index(i);
        let name = machine_name(c, &at, i, m.name.as_deref(), &mut seen);
        let role = machine_role(c, &at, i, m.role.as_deref(), &mut seen);
        let ip = machine_ip(c, &at, i, m.ip.as_deref(), subnet, gateway, &mut seen);
        let mac = m
            .mac
            .as_deref()
            .and_then(|text| machine_mac(c, &at, i, text, &mut seen));
        if let Some(iface) = &m.interface {
            if !is_interface_name(iface) {
                c.error(
                    Kind::Malformed,
                    at.key("interface"),
                    format!("{iface:?} is not a network interface name"),
                    "use 1 to 15 letters, digits, `-`, `_` or `.` (not lo, all, default, . or ..), e.g. enp1s0",
                );
            }
        }
        let machine_ubuntu = match &m.ubuntu {
            Some(r) => ubuntu_version(c, at.key("ubuntu"), r),
            None => Some(ubuntu),
        };
        if let (Some(name), Some(role), Some(ip), Some(ubuntu)) = (name, role, ip, machine_ubuntu) {
            out.push(MachineSpec {
                name,
                role,
                ip,
                mac,
                interface: m.interface.clone(),
                ubuntu,
            });
        }
    }
    check_roles(c, &list, &seen.roles);
    out
}

/// What the machines checked so far use, by the index of the first that
/// used it: names, addresses and MACs must be unique; roles are counted.
#[derive(Default)]
struct Seen {
    names: HashMap<String, usize>,
    ips: HashMap<Ipv4Addr, usize>,
    macs: HashMap<String, usize>,
    roles: BTreeMap<Role, Vec<usize>>,
}

/// A hostname (RFC 1123 label), not localhost, not used twice.
fn machine_name(
    c: &mut Checker,
    at: &Path,
    i: usize,
    name: Option<&str>,
    seen: &mut Seen,
) -> Option<String> {
    let Some(n) = name else {
        c.error(
            Kind::Missing,
            at.clone(),
            format!("machine {} has no `name`", i + 1),
            "add `name:` with its hostname",
        );
        return None;
    };
    if n == "localhost" {
        c.error(
            Kind::Reserved,
            at.key("name"),
            "machine name \"localhost\" is the name every machine has for itself",
            "give the machine a name of its own, e.g. worker-1",
        );
        return None;
    }
    if !is_dns_label(n) {
        c.error(
            Kind::Malformed,
            at.key("name"),
            format!("machine name {n:?} is not a valid hostname"),
            "use 1 to 63 lowercase letters, digits and hyphens (RFC 1123), not starting or ending with a hyphen",
        );
        return None;
    }
    if let Some(first) = seen.names.insert(n.to_string(), i) {
        c.error(
            Kind::Duplicate,
            at.key("name"),
            format!(
                "machine name {n:?} is used twice (also machine {})",
                first + 1
            ),
            "give every machine its own hostname",
        );
    }
    Some(n.to_string())
}

fn machine_role(
    c: &mut Checker,
    at: &Path,
    i: usize,
    role: Option<&str>,
    seen: &mut Seen,
) -> Option<Role> {
    let Some(r) = role else {
        c.error(
            Kind::Missing,
            at.clone(),
            format!("machine {} has no `role`", i + 1),
            "add `role:` nfs, master or worker",
        );
        return None;
    };
    let Some(role) = Role::parse(r) else {
        c.error(
            Kind::Unknown,
            at.key("role"),
            format!("unknown role {r:?}"),
            "use one of: nfs, master, worker",
        );
        return None;
    };
    seen.roles.entry(role).or_default().push(i);
    Some(role)
}

/// A static IPv4 address: a host of the subnet, not the gateway, not used
/// twice.
fn machine_ip(
    c: &mut Checker,
    at: &Path,
    i: usize,
    ip: Option<&str>,
    subnet: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
    seen: &mut Seen,
) -> Option<Ipv4Addr> {
    let Some(text) = ip else {
        c.error(
            Kind::Missing,
            at.clone(),
            format!("machine {} has no `ip`", i + 1),
            "add `ip:` with its static address in the subnet",
        );
        return None;
    };
    let Some(ip) = parse_ipv4(text) else {
        c.error(
            Kind::Malformed,
            at.key("ip"),
            format!("{text:?} is not an IPv4 address"),
            "write four numbers from 0 to 255 separated by dots, e.g. 172.20.10.10",
        );
        return None;
    };
    if let Some(subnet) = subnet {
        if let Err((kind, why)) = host_in_subnet(ip, subnet) {
            c.error(
                kind,
                at.key("ip"),
                format!("address {ip} {why}"),
                format!(
                    "use an address between {} and {}",
                    first_host(subnet),
                    last_host(subnet)
                ),
            );
        }
    }
    if Some(ip) == gateway {
        c.error(
            Kind::Reserved,
            at.key("ip"),
            format!("address {ip} is the gateway's"),
            "give the machine an address of its own",
        );
    }
    if let Some(first) = seen.ips.insert(ip, i) {
        c.error(
            Kind::Duplicate,
            at.key("ip"),
            format!("address {ip} is used twice (also machine {})", first + 1),
            "give every machine its own address",
        );
    }
    Some(ip)
}

/// A NIC's own unicast MAC address (normalized), not used twice.
fn machine_mac(
    c: &mut Checker,
    at: &Path,
    i: usize,
    text: &str,
    seen: &mut Seen,
) -> Option<String> {
    let Some(mac) = normalize_mac(text) else {
        c.error(
            Kind::Malformed,
            at.key("mac"),
            format!("{text:?} is not a MAC address"),
            "write six two-digit hex numbers separated by colons, e.g. 52:54:00:14:0a:0a",
        );
        return None;
    };
    if let Some(problem) = mac_problem(&mac) {
        c.error(
            Kind::Reserved,
            at.key("mac"),
            format!("{mac} {problem}"),
            "copy the NIC's own address from the machine's label or `ip link` (link/ether)",
        );
        return None;
    }
    if let Some(first) = seen.macs.insert(mac.clone(), i) {
        c.error(
            Kind::Duplicate,
            at.key("mac"),
            format!(
                "MAC address {mac} is used twice (also machine {})",
                first + 1
            ),
            "every NIC has its own MAC address: copy it from the machine's label or `ip link`",
        );
    }
    Some(mac)
}

/// How many masters a cluster may have: one, or a highly available control
/// plane of three or five (dqlite keeps a majority of its voters).
pub const MASTER_COUNTS: [usize; 3] = [1, 3, 5];

/// Why `n` masters (not one of [`MASTER_COUNTS`]) are refused.
fn masters_problem(n: usize) -> String {
    if n.is_multiple_of(2) {
        format!(
            "{n} masters: a control plane needs a majority of its masters up, so {n} \
             tolerate no more failures than {} (and a split in halves stops it)",
            n - 1
        )
    } else {
        format!(
            "{n} masters: MicroK8s's dqlite keeps three voters and the others stand by, \
             so more than five add nothing"
        )
    }
}

/// Exactly one NFS server; one master, or three or five for a highly
/// available control plane; at least one worker.
fn check_roles(c: &mut Checker, list: &Path, roles: &BTreeMap<Role, Vec<usize>>) {
    for role in [Role::Nfs, Role::Master] {
        if roles.get(&role).is_none_or(Vec::is_empty) {
            c.error(
                Kind::Missing,
                list.clone(),
                format!("the cluster has no {} machine", role.as_str()),
                format!(
                    "give {} machine `role: {}`",
                    if role == Role::Nfs {
                        "exactly one"
                    } else {
                        "one (or three or five)"
                    },
                    role.as_str()
                ),
            );
        }
    }
    if let Some([first, rest @ ..]) = roles.get(&Role::Nfs).map(Vec::as_slice) {
        for i in rest {
            c.error(
                Kind::Duplicate,
                list.index(*i).key("role"),
                format!("a second nfs machine (the first is machine {})", first + 1),
                "a cluster has exactly one nfs machine: make this one a worker",
            );
        }
    }
    let masters = roles.get(&Role::Master).map_or(&[][..], Vec::as_slice);
    if let Some(&last) = masters.last() {
        if !MASTER_COUNTS.contains(&masters.len()) {
            c.error(
                Kind::OutOfRange,
                list.index(last).key("role"),
                masters_problem(masters.len()),
                "give the cluster 1, 3 or 5 masters: make this one a worker, or add masters",
            );
        }
    }
    if roles.get(&Role::Worker).is_none_or(Vec::is_empty) {
        c.error(
            Kind::Missing,
            list.clone(),
            "the cluster has no worker machine",
            "add at least one machine with `role: worker`: the staking workloads run on workers",
        );
    }
}

fn check_ssh(c: &mut Checker, p: &Profile) -> Option<profile::Ssh> {
    let Some(ssh) = &p.ssh else {
        c.error(
            Kind::Missing,
            Path::root(),
            "the profile has no `ssh` section, so nobody could log in",
            "add `ssh:` with `authorized_keys: [\"ssh-ed25519 AAAA... you@laptop\"]` (password logins are never enabled)",
        );
        return None;
    };
    let base = Path::root().key("ssh");
    if ssh.port == 0 {
        c.error(
            Kind::OutOfRange,
            base.key("port"),
            "SSH port 0 is not a port",
            "use a port from 1 to 65535",
        );
    }
    let mut taken: Vec<(u16, Role, String)> = Vec::new();
    for role in Role::ALL {
        for r in role_ports(role) {
            if r.proto == Proto::Tcp {
                taken.push((r.port, role, r.why));
            }
        }
    }
    if let Some((_, role, why)) = taken.iter().find(|(port, _, _)| *port == ssh.port) {
        c.error(
            Kind::Conflict,
            base.key("port"),
            format!(
                "SSH port {} collides with the {} role's port for {why}",
                ssh.port,
                role.as_str()
            ),
            "choose another SSH port, e.g. 2222",
        );
    } else if ssh.port == 22 {
        c.warning(
            Kind::Risky,
            base.key("port"),
            "sshd listens on the default port 22",
            "the reference setup recommends moving SSH off port 22 (e.g. `port: 2222`) to cut down on scans",
        );
    }
    if !is_unix_user(&ssh.user) || ssh.user == "root" {
        c.error(
            if ssh.user == "root" {
                Kind::Reserved
            } else {
                Kind::Malformed
            },
            base.key("user"),
            format!("{:?} is not a usable login name", ssh.user),
            "use a lowercase name of letters, digits, `-` and `_` (not root), e.g. staker",
        );
    } else if SYSTEM_USERS.contains(&ssh.user.as_str()) || ssh.user.starts_with("systemd-") {
        c.error(
            Kind::Reserved,
            base.key("user"),
            format!("{:?} is a system account of Ubuntu's cloud image", ssh.user),
            "use a login name of your own, e.g. staker: cloud-init would give the system account a shell, your keys and sudo",
        );
    }
    if ssh.authorized_keys.is_empty() {
        c.error(
            Kind::Missing,
            base.key("authorized_keys"),
            "no SSH key in `ssh.authorized_keys`: password logins are never enabled, so nobody could log in",
            "add your public key, e.g. `authorized_keys: [\"ssh-ed25519 AAAA... you@laptop\"]` (from ~/.ssh/id_ed25519.pub)",
        );
    }
    for (i, key) in ssh.authorized_keys.iter().enumerate() {
        if let Err(why) = check_public_key(key) {
            c.error(
                Kind::Malformed,
                base.key("authorized_keys").index(i),
                format!("not an SSH public key: {why}"),
                "paste one line of a .pub file: TYPE BASE64 [COMMENT], e.g. the content of ~/.ssh/id_ed25519.pub",
            );
        }
    }
    Some(ssh.clone())
}

fn check_time(c: &mut Checker, t: &profile::Time) {
    let base = Path::root().key("time");
    if chrono_tz::Tz::from_str(&t.timezone).is_err() {
        let nearest = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name())
            .max_by(|a, b| {
                strsim::jaro_winkler(&t.timezone, a)
                    .total_cmp(&strsim::jaro_winkler(&t.timezone, b))
            })
            .unwrap_or("Etc/UTC");
        c.error(
            Kind::Unknown,
            base.key("timezone"),
            format!("{:?} is not an IANA time zone", t.timezone),
            format!("did you mean {nearest:?}? (names look like America/Los_Angeles or Etc/UTC)"),
        );
    }
    if t.ntp_pools.is_empty() {
        c.error(
            Kind::Missing,
            base.key("ntp_pools"),
            "`time.ntp_pools` is empty",
            "list at least one NTP pool, e.g. [ntp.ubuntu.com]",
        );
    }
    for (i, pool) in t.ntp_pools.iter().enumerate() {
        if parse_ipv4(pool).is_none() && !is_dns_name(pool) {
            c.error(
                Kind::Malformed,
                base.key("ntp_pools").index(i),
                format!("{pool:?} is not a host name"),
                "write a host name such as time.google.com",
            );
        }
    }
    let chrony = base.key("chrony");
    match chrony_pool_options(&t.chrony.pool_options) {
        Err(why) => c.error(
            Kind::Malformed,
            chrony.key("pool_options"),
            format!(
                "chrony cannot read the pool options {:?}: {why}",
                t.chrony.pool_options
            ),
            format!(
                "options are words from chrony's `pool` directive, some with a number, e.g. {:?}",
                profile::DEFAULT_CHRONY_POOL_OPTIONS
            ),
        ),
        Ok(minpoll) if minpoll < PUBLIC_POOL_MINPOLL => {
            let public: Vec<&str> = t
                .ntp_pools
                .iter()
                .filter(|p| is_public_time_source(p))
                .map(String::as_str)
                .collect();
            if !public.is_empty() {
                c.warning(
                    Kind::Risky,
                    chrony.key("pool_options"),
                    format!(
                        "polling every {} s asks more of the public pools ({}) than their usage rules allow, and invites rate limiting",
                        poll_seconds(minpoll),
                        public.join(", ")
                    ),
                    format!(
                        "keep {:?} for time servers of your own; for public pools use e.g. {:?}",
                        t.chrony.pool_options,
                        profile::DEFAULT_CHRONY_POOL_OPTIONS
                    ),
                );
            }
        }
        Ok(_) => {}
    }
    if !t.chrony.maxupdateskew.is_finite() || t.chrony.maxupdateskew <= 0.0 {
        c.error(
            Kind::OutOfRange,
            chrony.key("maxupdateskew"),
            "maxupdateskew must be above 0",
            "the reference value is 5.0 (ppm)",
        );
    }
    if !t.chrony.makestep_threshold.is_finite() || t.chrony.makestep_threshold <= 0.0 {
        c.error(
            Kind::OutOfRange,
            chrony.key("makestep_threshold"),
            "makestep_threshold must be above 0",
            "the reference value is 0.1 (seconds)",
        );
    }
    if t.chrony.makestep_limit == 0 || t.chrony.makestep_limit < -1 {
        c.error(
            Kind::OutOfRange,
            chrony.key("makestep_limit"),
            "makestep_limit must be -1 (always) or a positive number of updates",
            "the reference value is -1",
        );
    }
}

/// The shortest poll public NTP pools accept: chrony's default minpoll, 2^6 s.
const PUBLIC_POOL_MINPOLL: i32 = 6;

fn poll_seconds(poll: i32) -> String {
    if poll >= 0 {
        (1u64 << poll.min(40)).to_string()
    } else {
        format!("1/{}", 1u64 << (-poll).min(40))
    }
}

/// Reads chrony `pool` options as chrony 3.5 (Ubuntu 20.04) and later do;
/// the effective minpoll (chrony's default 6 unless given).
pub fn chrony_pool_options(options: &str) -> Result<i32, String> {
    // Options without a value, and options with an integer or decimal value.
    const FLAGS: &[&str] = &[
        "iburst",
        "burst",
        "prefer",
        "noselect",
        "trust",
        "require",
        "xleave",
        "offline",
        "auto_offline",
    ];
    const INTEGER: &[&str] = &[
        "minpoll",
        "maxpoll",
        "maxsources",
        "polltarget",
        "presend",
        "minstratum",
        "port",
        "key",
        "version",
        "minsamples",
        "maxsamples",
    ];
    const DECIMAL: &[&str] = &[
        "maxdelay",
        "maxdelayratio",
        "maxdelaydevratio",
        "mindelay",
        "asymmetry",
        "offset",
    ];
    let (mut minpoll, mut maxpoll) = (6, 10);
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        if FLAGS.contains(&word) {
            continue;
        }
        let integer = INTEGER.contains(&word);
        if !integer && !DECIMAL.contains(&word) {
            return Err(format!(
                "`{word}` is not an option of chrony's pool directive"
            ));
        }
        let value = words
            .next()
            .ok_or_else(|| format!("`{word}` needs a number after it"))?;
        if integer {
            let n: i32 = value
                .parse()
                .map_err(|_| format!("`{word} {value}`: {value} is not a whole number"))?;
            let range = match word {
                "minpoll" | "maxpoll" => -6..=24,
                "maxsources" => 1..=16,
                "version" => 1..=4,
                "port" => 0..=65535,
                "key" => 1..=i32::MAX,
                _ => 0..=i32::MAX,
            };
            if !range.contains(&n) {
                return Err(format!(
                    "`{word} {n}` is outside {}..{}",
                    range.start(),
                    range.end()
                ));
            }
            match word {
                "minpoll" => minpoll = n,
                "maxpoll" => maxpoll = n,
                _ => {}
            }
        } else if !value.parse::<f64>().is_ok_and(f64::is_finite) {
            return Err(format!("`{word} {value}`: {value} is not a number"));
        }
    }
    if maxpoll < minpoll {
        return Err(format!("maxpoll {maxpoll} is below minpoll {minpoll}"));
    }
    Ok(minpoll)
}

/// A time source anyone on the internet may use: not an address or name of
/// a private network.
fn is_public_time_source(source: &str) -> bool {
    match parse_ipv4(source) {
        Some(ip) => !(ip.is_private() || ip.is_loopback() || ip.is_link_local()),
        None => {
            let name = source.trim_end_matches('.').to_ascii_lowercase();
            name.contains('.')
                && ![".lan", ".local", ".home.arpa", ".internal", ".localdomain"]
                    .iter()
                    .any(|s| name.ends_with(s))
        }
    }
}

/// Folders of the system itself: exporting one (or anything in the virtual
/// and boot ones) would hand the cluster the server's own files.
const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/lib/nodeimg",
    "/var/lib/snapd",
    "/mnt",
];
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/snap",
    "/sys",
    "/tmp",
    "/usr",
    "/var/lib/nodeimg",
    "/var/lib/snapd",
    "/var/log",
];

/// Why an export root is unusable, if it is.
fn export_root_problem(root: &str) -> Option<(Kind, String)> {
    let trimmed = root.trim_end_matches('/');
    if !root.starts_with('/') || !is_safe_path(root) || trimmed.is_empty() {
        return Some((Kind::Malformed, "is not a usable export directory".into()));
    }
    if trimmed.split('/').any(|part| part == "." || part == "..") {
        return Some((
            Kind::Malformed,
            "holds `.` or `..`: write the folder itself".into(),
        ));
    }
    if SYSTEM_DIRS.contains(&trimmed) {
        return Some((Kind::Reserved, "is a folder of the system itself".into()));
    }
    SYSTEM_TREES
        .iter()
        .find(|t| trimmed.starts_with(&format!("{t}/")))
        .map(|t| {
            (
                Kind::Reserved,
                format!("is inside {t}, which belongs to the system"),
            )
        })
}

fn check_nfs(c: &mut Checker, n: &profile::Nfs) {
    let base = Path::root().key("nfs");
    if let Some((kind, why)) = export_root_problem(&n.export_root) {
        c.error(
            kind,
            base.key("export_root"),
            format!("{:?} {why}", n.export_root),
            "use a folder of its own for the staking data: an absolute path of letters, digits, `/`, `-`, `_` and `.`, e.g. /data or /srv/staking",
        );
    }
    if n.folders.is_empty() {
        c.error(
            Kind::Missing,
            base.key("folders"),
            "`nfs.folders` is empty",
            "list the data folders, e.g. [execution, beacon, validator]",
        );
    }
    let mut seen = HashMap::new();
    for (i, f) in n.folders.iter().enumerate() {
        if f.starts_with('/') || !is_safe_path(f) || f.split('/').any(|s| s.is_empty() || s == "..")
        {
            c.error(
                Kind::Malformed,
                base.key("folders").index(i),
                format!("{f:?} is not a folder name under the export"),
                "use a relative path of letters, digits, `-`, `_` and `.`, e.g. beacon",
            );
        } else if let Some(first) = seen.insert(f.as_str(), i) {
            c.error(
                Kind::Duplicate,
                base.key("folders").index(i),
                format!("folder {f:?} is listed twice (also entry {})", first + 1),
                "list every folder once",
            );
        }
    }
    for (key, id) in [("uid", n.uid), ("gid", n.gid)] {
        if id >= 1 << 31 {
            c.error(
                Kind::OutOfRange,
                base.key(key),
                format!("{key} {id} is above 2147483647"),
                "Kubernetes' runAsUser/runAsGroup and many tools take ids below 2^31: use e.g. 1001:2000 as the reference chart",
            );
        } else if id == 65534 {
            c.error(
                Kind::Reserved,
                base.key(key),
                format!("{key} 65534 is nobody/nogroup, the id NFS maps squashed users to"),
                "use an id of the workloads' own, e.g. 1001:2000 as the reference chart",
            );
        }
    }
    if n.uid == 0 || n.gid == 0 {
        c.warning(
            Kind::Risky,
            base.clone(),
            "the data folders are owned by root",
            "the workloads run as an unprivileged uid:gid (1001:2000 in the reference chart); root-owned NFS data fails under root_squash",
        );
    }
    if !n
        .export_options
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ",_=:".contains(ch))
    {
        c.error(
            Kind::Malformed,
            base.key("export_options"),
            format!("{:?} is not a list of export options", n.export_options),
            "write comma-separated options, e.g. rw,sync,no_subtree_check",
        );
    }
    if n.export_options.split(',').any(|o| o == "no_root_squash") {
        c.warning(
            Kind::Risky,
            base.key("export_options"),
            "no_root_squash lets root on any cluster machine own the staking data",
            "drop no_root_squash: the folders are owned by the workload uid:gid",
        );
    }
}

fn check_image(c: &mut Checker, i: &profile::Image) -> Option<ImageSpec> {
    let at = Path::root().key("image");
    let before = c.diags.len();
    let size = i.size.as_ref().and_then(|s| {
        let size = parse_size(s);
        if size.is_none() {
            c.error(
                Kind::Malformed,
                at.key("size"),
                format!("{s:?} is not a disk size"),
                "write a number with a unit, e.g. 20G (GiB) or 512M (MiB)",
            );
        }
        size
    });
    let sha256 = i.sha256.as_ref().and_then(|h| {
        let parsed = crate::io::hash::parse_sha256(h);
        if parsed.is_none() {
            c.error(
                Kind::Malformed,
                at.key("sha256"),
                format!("{h:?} is not a sha256"),
                "write the 64 hex digits of the image's sha256 (sha256sum prints them)",
            );
        }
        parsed
    });
    check_image_urls(c, &at, i);
    let source = image_source(c, &at, i, sha256)?;
    (c.diags.len() == before).then_some(ImageSpec { source, size })
}

/// `url` and `sha256sums`: full http(s):// or file:// URLs, and not both
/// a pinned sha256 and a list.
fn check_image_urls(c: &mut Checker, at: &Path, i: &profile::Image) {
    let valid_url = |u: &str| {
        ["https://", "http://", "file://"]
            .iter()
            .any(|p| u.starts_with(p) && u.len() > p.len() && !u.contains(char::is_whitespace))
    };
    for (key, value) in [("url", &i.url), ("sha256sums", &i.sha256sums)] {
        if let Some(u) = value {
            // A password in the URL is a secret like the others: never shown.
            if let Some(password) = url_password(u) {
                crate::redact::register(&[password]);
            }
            if !valid_url(u) {
                c.error(
                    Kind::Malformed,
                    at.key(key),
                    format!("{u:?} is not an http(s):// or file:// URL"),
                    "write the full URL, e.g. https://cloud-images.ubuntu.com/releases/22.04/release/ubuntu-22.04-server-cloudimg-amd64.img",
                );
            }
        }
    }
    if i.sha256.is_some() && i.sha256sums.is_some() {
        c.error(
            Kind::Conflict,
            at.key("sha256sums"),
            "both `image.sha256` and `image.sha256sums` are given",
            "keep one: sha256 pins the image, sha256sums takes the hash from the list",
        );
    }
}

/// Which image: an Ubuntu release's, or one at a URL with a checksum.
fn image_source(
    c: &mut Checker,
    at: &Path,
    i: &profile::Image,
    sha256: Option<String>,
) -> Option<ImageSource> {
    match (&i.release, &i.url) {
        (Some(r), Some(_)) => {
            c.error(
                Kind::Conflict,
                at.key("url"),
                format!("both `image.release` ({r}) and `image.url` are given"),
                "keep one: release picks Ubuntu's cloud image, url names any other",
            );
            None
        }
        (Some(r), None) => {
            let Some((version, _)) = UBUNTU_RELEASES.iter().find(|(v, n)| v == r || n == r) else {
                let known: Vec<String> = UBUNTU_RELEASES
                    .iter()
                    .map(|(v, n)| format!("{v} ({n})"))
                    .collect();
                c.error(
                    Kind::Unsupported,
                    at.key("release"),
                    format!("no default image for release {r:?}"),
                    format!(
                        "use one of {}, or give image.url and image.sha256",
                        known.join(", ")
                    ),
                );
                return None;
            };
            if i.sha256sums.is_some() {
                c.error(
                    Kind::Conflict,
                    at.key("sha256sums"),
                    "`image.sha256sums` with `image.release`: the release has its own list",
                    "remove image.sha256sums (or give image.url instead of image.release)",
                );
            }
            Some(ImageSource::Ubuntu { version, sha256 })
        }
        (None, Some(url)) => {
            let name = url.rsplit('/').next().unwrap_or_default().to_string();
            let checksum = match (sha256, &i.sha256sums) {
                (Some(h), _) => Checksum::Sha256(h),
                (None, Some(sums)) => Checksum::Sums {
                    url: sums.clone(),
                    name,
                },
                (None, None) => {
                    c.error(
                        Kind::Unpinned,
                        at.key("url"),
                        "the image has no checksum",
                        "add image.sha256 (its 64 hex digits) or image.sha256sums (the URL of a SHA256SUMS list naming the file): nothing unverified is used",
                    );
                    return None;
                }
            };
            Some(ImageSource::Url {
                url: url.clone(),
                checksum,
            })
        }
        (None, None) => {
            c.error(
                Kind::Missing,
                at.clone(),
                "the image section names no image",
                "add `release: \"22.04\"` (Ubuntu's cloud image) or `url:` with `sha256:`",
            );
            None
        }
    }
}

/// Splits a MicroK8s channel into (minor version, risk); `None` for latest.
pub fn channel_minor(channel: &str) -> Result<Option<u32>, String> {
    let (track, risk) = channel
        .split_once('/')
        .ok_or_else(|| "it has no risk level".to_string())?;
    if !matches!(risk, "stable" | "candidate" | "beta" | "edge") {
        return Err(format!("{risk:?} is not a risk level"));
    }
    if track == "latest" {
        return Ok(None);
    }
    let track = track.strip_suffix("-strict").unwrap_or(track);
    let track = track.strip_suffix("-eksd").unwrap_or(track);
    let (major, minor) = track
        .split_once('.')
        .ok_or_else(|| format!("{track:?} is not a version track"))?;
    match (major.parse::<u32>(), minor.parse::<u32>()) {
        (Ok(1), Ok(minor)) => Ok(Some(minor)),
        _ => Err(format!("{track:?} is not a version track")),
    }
}

fn check_microk8s(c: &mut Checker, m: &profile::Microk8s) {
    let base = Path::root().key("microk8s");
    match channel_minor(&m.channel) {
        Err(why) => c.error(
            Kind::Malformed,
            base.key("channel"),
            format!("{:?} is not a MicroK8s channel: {why}", m.channel),
            format!(
                "write TRACK/RISK, e.g. {:?}",
                profile::DEFAULT_MICROK8S_CHANNEL
            ),
        ),
        Ok(Some(minor)) if minor < 27 => c.error(
            Kind::Unsupported,
            base.key("channel"),
            format!(
                "MicroK8s {} is too old: the auto-join launch configuration needs 1.27 or newer",
                m.channel
            ),
            format!(
                "use {:?} or another channel from 1.27 on",
                profile::DEFAULT_MICROK8S_CHANNEL
            ),
        ),
        Ok(Some(_)) => {}
        Ok(None) => c.warning(
            Kind::Unpinned,
            base.key("channel"),
            format!("{} follows whatever MicroK8s is newest", m.channel),
            format!(
                "pin a version track such as {:?} so reprovisioned machines match",
                profile::DEFAULT_MICROK8S_CHANNEL
            ),
        ),
    }
    for (i, a) in m.addons.iter().enumerate() {
        let ok = !a.is_empty()
            && a.split('/').count() <= 2
            && a.split('/').all(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            });
        if !ok {
            c.error(
                Kind::Malformed,
                base.key("addons").index(i),
                format!("{a:?} is not a MicroK8s addon name"),
                "write the addon's name as `microk8s enable` takes it, e.g. dns or community/argocd",
            );
        }
    }
}

/// dns always comes first: the launch configuration replaces the bundled
/// default, which is what enables it otherwise.
fn normalized_microk8s(m: &profile::Microk8s) -> profile::Microk8s {
    let mut addons = vec!["dns".to_string()];
    for a in &m.addons {
        if !addons.contains(a) {
            addons.push(a.clone());
        }
    }
    profile::Microk8s {
        addons,
        ..m.clone()
    }
}

fn check_firewall(c: &mut Checker, f: &profile::Firewall) -> Vec<ExtraRule> {
    let base = Path::parse("firewall.extra_rules");
    let mut out = Vec::new();
    for (i, r) in f.extra_rules.iter().enumerate() {
        let here = base.index(i);
        let port = match r.port {
            None | Some(0) => {
                c.error(
                    if r.port.is_none() {
                        Kind::Missing
                    } else {
                        Kind::OutOfRange
                    },
                    here.clone(),
                    "a firewall rule needs a `port` from 1 to 65535",
                    "add e.g. `port: 8080`",
                );
                None
            }
            Some(p) => Some(p),
        };
        let proto = match r.proto.as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            other => {
                c.error(
                    Kind::Unknown,
                    here.key("proto"),
                    format!("unknown protocol {other:?}"),
                    "use tcp or udp",
                );
                None
            }
        };
        let from = match r.from.as_str() {
            "any" => Some(Source::Any),
            "cluster" => Some(Source::Cluster),
            s if Ipv4Net::from_str(s).is_ok() || parse_ipv4(s).is_some() => {
                Some(Source::Net(s.to_string()))
            }
            s => {
                c.error(
                    Kind::Malformed,
                    here.key("from"),
                    format!("{s:?} is not `any`, `cluster`, an address or a CIDR"),
                    "e.g. `from: any` or `from: 192.168.1.0/24`",
                );
                None
            }
        };
        let mut roles = Vec::new();
        for (j, name) in r.roles.iter().enumerate() {
            match Role::parse(name) {
                Some(role) => roles.push(role),
                None => c.error(
                    Kind::Unknown,
                    here.key("roles").index(j),
                    format!("unknown role {name:?}"),
                    "use nfs, master or worker",
                ),
            }
        }
        if let (Some(port), Some(proto), Some(from)) = (port, proto, from) {
            out.push(ExtraRule {
                rule: PortRule {
                    port,
                    proto,
                    from,
                    why: "extra rule from the profile".into(),
                },
                roles,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Small parsers and predicates.

/// Strict dotted-quad IPv4 (std also rejects leading zeros).
pub fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    Ipv4Addr::from_str(s).ok()
}

fn host_in_subnet(ip: Ipv4Addr, net: Ipv4Net) -> Result<(), (Kind, String)> {
    if !net.contains(&ip) {
        Err((Kind::OutOfRange, format!("is outside the subnet {net}")))
    } else if ip == net.network() {
        Err((Kind::Reserved, format!("is the network address of {net}")))
    } else if ip == net.broadcast() {
        Err((Kind::Reserved, format!("is the broadcast address of {net}")))
    } else {
        Ok(())
    }
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}
fn last_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.broadcast()) - 1)
}

/// An RFC 1123 host name label, lowercase.
/// The password of a `scheme://user:password@host/...` URL.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_string())
}

/// Why a subnet cannot be a cluster's LAN, if it cannot.
fn unusable_subnet(n: Ipv4Net) -> Option<(Kind, String)> {
    if n.prefix_len() < 8 {
        return Some((Kind::OutOfRange, "spans more than a /8: the NFS export and the cluster ports would be open to a large part of the internet".into()));
    }
    unusable_range(n.network()).map(|range| (Kind::Reserved, format!("is {range}")))
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        })
}

/// A name Linux takes for a NIC (dev_valid_name) that is not the loopback
/// device or one of the names /proc/sys/net gives a meaning (`all`, `default`).
fn is_interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        && !matches!(s, "." | ".." | "lo" | "all" | "default")
}

fn is_unix_user(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(ch) if ch.is_ascii_lowercase() || ch == '_')
        && s.len() <= 32
        && chars.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-')
}

fn is_safe_path(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "/-_.".contains(ch))
        && !s.contains("//")
}

/// Why a MAC cannot be a NIC's own address, if it cannot.
fn mac_problem(mac: &str) -> Option<&'static str> {
    let first = u8::from_str_radix(&mac[..2], 16).unwrap_or(0);
    if mac == "ff:ff:ff:ff:ff:ff" {
        Some("is the broadcast address, no NIC's own")
    } else if mac == "00:00:00:00:00:00" {
        Some("is all zeros, no NIC's own")
    } else if first & 1 == 1 {
        Some("is a multicast address (the first byte is odd), no NIC's own")
    } else {
        None
    }
}

/// `aa:bb:cc:dd:ee:ff`, lowercased; `-` separators accepted.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|ch| ch.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

/// Accounts an Ubuntu cloud image (or its packages nodeimg installs) has.
const SYSTEM_USERS: &[&str] = &[
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "messagebus",
    "syslog",
    "_apt",
    "tss",
    "uuidd",
    "tcpdump",
    "sshd",
    "pollinate",
    "landscape",
    "fwupd-refresh",
    "usbmux",
    "lxd",
    "dnsmasq",
    "_chrony",
    "statd",
    "_rpc",
    "polkitd",
    "snapd-range-524288-root",
    "snap_daemon",
    "microk8s",
];

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An OpenSSH public key line as sshd reads it: a known type, and a key
/// blob that decodes whole as that type (ssh-key, the parser of the RustCrypto
/// SSH stack: a truncated blob, a mixed-up type or bytes after the key are
/// refused, as OpenSSH refuses them).
fn check_public_key(line: &str) -> Result<(), String> {
    if line.contains(['\n', '\r']) {
        return Err("it spans several lines".into());
    }
    let mut parts = line.split_whitespace();
    let kind = parts.next().ok_or("it is empty")?;
    if !KEY_TYPES.contains(&kind) {
        if kind.starts_with("-----BEGIN") {
            return Err("this is a private key: never put it in a profile".into());
        }
        return Err(format!("unknown key type {kind:?}"));
    }
    let blob = parts.next().ok_or("the base64 part is missing")?;
    let key = ssh_key::PublicKey::from_openssh(&format!("{kind} {blob}"))
        .map_err(|e| format!("its base64 part is not a whole {kind} key ({e}): damaged, truncated, or two keys run together?"))?;
    if key.algorithm().as_str() != kind {
        return Err("the base64 part does not match its key type (mixed up?)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_parsing() {
        assert_eq!(channel_minor("1.34/stable"), Ok(Some(34)));
        assert_eq!(channel_minor("1.28-strict/candidate"), Ok(Some(28)));
        assert_eq!(channel_minor("latest/edge"), Ok(None));
        assert!(channel_minor("1.34").is_err());
        assert!(channel_minor("1.x/stable").is_err());
        assert!(channel_minor("2.1/stable").is_err());
        assert!(channel_minor("1.30/nightly").is_err());
    }

    #[test]
    fn mac_normalization() {
        assert_eq!(
            normalize_mac("52-54-00-AB-0a-0A").as_deref(),
            Some("52:54:00:ab:0a:0a")
        );
        assert_eq!(normalize_mac("52:54:00:ab:0a"), None);
        assert_eq!(normalize_mac("52:54:00:ab:0a:zz"), None);
    }

    #[test]
    fn public_key_checks() {
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX you@laptop";
        assert_eq!(check_public_key(good), Ok(()));
        assert!(check_public_key(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX"
        )
        .is_err());
        assert!(check_public_key("ssh-ed25519 !!!").is_err());
        assert!(check_public_key("ssh-dss AAAA").is_err());
        assert!(check_public_key("-----BEGIN OPENSSH PRIVATE KEY-----")
            .unwrap_err()
            .contains("private"));
    }

    #[test]
    fn labels() {
        assert!(is_dns_label("worker-1"));
        assert!(!is_dns_label("Worker"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a_b"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}

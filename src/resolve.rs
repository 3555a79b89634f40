//! Resolve stage: a checked spec plus the secrets become one template
//! context per machine, with every derived value (join URL, firewall rules,
//! packages) computed here once.

use anyhow::Result;
use serde::Serialize;
use serde_json::{json, Value};

use crate::secrets::Secrets;
use crate::validate::{role_ports, MachineSpec, PortRule, Role, Source, Spec};

/// Where each machine reports the state of its first-boot steps.
pub const STATUS_FILE: &str = "/var/lib/nodeimg/status";

/// The name nodeimg gives the NIC when it matches it by MAC.
pub const DEFAULT_NIC_NAME: &str = "lan0";

#[derive(Serialize)]
struct Rule {
    port: u16,
    proto: &'static str,
    from: String,
    why: String,
}

fn firewall_rules(spec: &Spec, role: Role) -> Vec<Rule> {
    let mut rules: Vec<PortRule> = role_ports(role);
    for extra in &spec.extra_rules {
        if extra.roles.is_empty() || extra.roles.contains(&role) {
            rules.push(extra.rule.clone());
        }
    }
    rules
        .into_iter()
        .map(|r| Rule {
            port: r.port,
            proto: match r.proto {
                crate::validate::Proto::Tcp => "tcp",
                crate::validate::Proto::Udp => "udp",
            },
            from: match r.from {
                Source::Any => "any".into(),
                Source::Cluster => spec.subnet.to_string(),
                Source::Net(n) => n,
            },
            why: r.why,
        })
        .collect()
}

/// Debian/Ubuntu packages a role's first boot needs.
pub fn role_packages(role: Role) -> Vec<&'static str> {
    let mut p = vec!["chrony", "ufw", "openssh-server"];
    match role {
        Role::Nfs => p.push("nfs-kernel-server"),
        Role::Master | Role::Worker => p.extend(["nfs-common", "snapd"]),
    }
    p
}

fn fqdn(spec: &Spec, name: &str) -> Value {
    match &spec.domain {
        Some(d) => json!(format!("{name}.{d}")),
        None => Value::Null,
    }
}

fn machine_summary(spec: &Spec, m: &MachineSpec) -> Value {
    json!({
        "name": m.name,
        "role": m.role,
        "ip": m.ip.to_string(),
        "fqdn": fqdn(spec, &m.name),
    })
}

/// The template context of one machine.
pub fn context(spec: &Spec, secrets: &Secrets, m: &MachineSpec) -> Result<Value> {
    let host = secrets.machine(&m.name)?;
    let master = spec.master();
    let nfs_server = spec.nfs_server();
    let token = &secrets.microk8s_join_token;
    let nic_name = match (&m.mac, &m.interface) {
        (Some(_), iface) => iface.clone().unwrap_or_else(|| DEFAULT_NIC_NAME.into()),
        (None, Some(iface)) => iface.clone(),
        (None, None) => DEFAULT_NIC_NAME.into(),
    };
    let export_root = spec.nfs.export_root.trim_end_matches('/');
    Ok(json!({
        "nodeimg": { "version": env!("CARGO_PKG_VERSION") },
        "status_file": STATUS_FILE,
        "cluster": { "name": spec.cluster_name, "domain": spec.domain },
        "network": {
            "subnet": spec.subnet.to_string(),
            "prefix": spec.subnet.prefix_len(),
            "gateway": spec.gateway.to_string(),
            "dns": spec.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        },
        "machine": {
            "name": m.name,
            "role": m.role,
            "ip": m.ip.to_string(),
            "fqdn": fqdn(spec, &m.name),
            "mac": m.mac,
            "interface": m.interface,
            "nic_name": nic_name,
        },
        "machines": spec.machines.iter().map(|x| machine_summary(spec, x)).collect::<Vec<_>>(),
        "master": machine_summary(spec, master),
        "nfs_server": machine_summary(spec, nfs_server),
        "ssh": {
            "port": spec.ssh.port,
            "user": spec.ssh.user,
            "authorized_keys": spec.ssh.authorized_keys,
            "host_key": {
                "private": host.ssh_host_ed25519_key,
                "public": host.public_key()?,
            },
        },
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
            "addons": spec.microk8s.addons,
            "hold_refresh": spec.microk8s.hold_refresh,
            "token": token,
            // The host must be an IP literal: a name is "Invalid master IP".
            "join_url": format!("{}:25000/{}", master.ip, token),
        },
        "firewall": { "rules": firewall_rules(spec, m.role) },
        "packages": role_packages(m.role),
    }))
}

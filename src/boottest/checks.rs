//! The checks: each compares what the probe reported with the profile, the
//! secrets and the rendered seed, one function a check.

use std::collections::BTreeMap;

use serde::Serialize;

use super::facts::Facts;
use super::probe::ssh_target;
use crate::firstboot::{self, state};
use crate::render::Seed;
use crate::resolve;
use crate::secrets::Secrets;
use crate::validate::{MachineSpec, Role, Spec};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Ok(String),
    Failed(String),
    NotApplicable,
    NotCheckableOffline(String),
}

impl Outcome {
    pub fn passed(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }
    pub(super) fn short(&self) -> &str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Failed(_) => "FAILED",
            Outcome::NotApplicable => "-",
            Outcome::NotCheckableOffline(_) => "offline",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineResult {
    pub name: String,
    pub role: Role,
    pub checks: BTreeMap<String, Outcome>,
}

impl MachineResult {
    pub fn passed(&self) -> bool {
        self.checks.values().all(Outcome::passed)
    }
}

fn sha256(s: &str) -> String {
    crate::io::hash::sha256_hex(s.as_bytes())
}

/// path -> sha256 of what each write_files entry of a seed writes (an
/// entry cloud-init could not decode hashes as its text).
pub(super) fn written_files(seed: &Seed) -> BTreeMap<String, String> {
    seed.write_files()
        .into_iter()
        .map(|f| {
            let hash = match f.bytes() {
                Some(bytes) => crate::io::hash::sha256_hex(&bytes),
                None => sha256(&f.content),
            };
            (f.path, hash)
        })
        .collect()
}

fn file_check(facts: &Facts, expected: &BTreeMap<String, String>, path: &str) -> Outcome {
    let Some(want) = expected.get(path) else {
        return Outcome::Failed(format!("{path} is not in the seed"));
    };
    let got = facts
        .all("file")
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{path} ")).map(str::to_string));
    match got {
        Some(h) if &h == want => Outcome::Ok(format!("{path} as rendered")),
        Some(h) if h.is_empty() => Outcome::Failed(format!("{path} is missing")),
        Some(_) => Outcome::Failed(format!("{path} differs from the rendered file")),
        None => Outcome::Failed(format!("the probe did not report {path}")),
    }
}

/// The rules `ufw status verbose` must show (IPv4 lines), as (to, from).
fn expected_ufw(spec: &Spec, m: &MachineSpec) -> Vec<(String, String)> {
    let mut rules = vec![(format!("{}/tcp", spec.ssh.port), "Anywhere".to_string())];
    for r in resolve::ufw_rules(spec, m) {
        let from = if r.from == "any" {
            "Anywhere".to_string()
        } else {
            r.from
        };
        rules.push((format!("{}/{}", r.ports, r.proto), from));
    }
    if m.role.is_kubernetes() {
        for iface in firstboot::CALICO_INTERFACES {
            rules.push((format!("Anywhere on {iface}"), "Anywhere".into()));
            rules.push(("Anywhere".into(), format!("Anywhere on {iface} (out)")));
        }
    }
    rules.sort();
    rules
}

/// Parses the rule lines of `ufw status verbose` (IPv4 only) into (to, from).
fn parse_ufw(lines: &[String]) -> (bool, Vec<(String, String)>) {
    let active = lines.iter().any(|l| l.trim() == "Status: active");
    let mut rules = Vec::new();
    for l in lines {
        let l = l.split(" # ").next().unwrap_or(l).trim_end();
        if l.contains("(v6)") {
            continue;
        }
        for (action, dir_out) in [("ALLOW IN", false), ("ALLOW OUT", true)] {
            if let Some(i) = l.find(action) {
                let to = l[..i].trim().to_string();
                let from = l[i + action.len()..].trim().to_string();
                if dir_out {
                    // "Anywhere  ALLOW OUT  Anywhere on cali+" is an outgoing rule.
                    rules.push((to, format!("{from} (out)")));
                } else {
                    rules.push((to, from));
                }
            }
        }
    }
    rules.sort();
    (active, rules)
}

/// Every check with the same outcome: a machine that could not be checked.
pub(super) fn every_check(outcome: Outcome) -> BTreeMap<String, Outcome> {
    checks().map(|c| (c.to_string(), outcome.clone())).collect()
}

/// Which boot of a machine a report is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// cloud-init configures the machine from its seed.
    First,
    /// After a shutdown (`--reboot`): the machine must come back as it was
    /// configured, with cloud-init off.
    Later,
}

/// What every check reads: the profile, the machine, its seed and what its
/// probe reported on which boot.
struct Seen<'a> {
    spec: &'a Spec,
    secrets: &'a Secrets,
    seed: &'a Seed,
    m: &'a MachineSpec,
    facts: &'a Facts,
    boot: Boot,
    /// path -> sha256 of the files the seed writes.
    files: BTreeMap<String, String>,
    /// step -> (state, message) from the status file.
    status: BTreeMap<String, (String, String)>,
    /// Appended to "not reported" when the report was cut short.
    incomplete: &'static str,
}

impl<'a> Seen<'a> {
    fn new(
        spec: &'a Spec,
        secrets: &'a Secrets,
        seed: &'a Seed,
        m: &'a MachineSpec,
        facts: &'a Facts,
        boot: Boot,
    ) -> Seen<'a> {
        let status = facts
            .all("status")
            .iter()
            .filter_map(|l| firstboot::StatusLine::parse(l))
            .map(|l| (l.step, (l.state, l.message.unwrap_or_else(|| "-".into()))))
            .collect();
        Seen {
            spec,
            secrets,
            seed,
            m,
            facts,
            boot,
            files: written_files(seed),
            status,
            incomplete: if facts.complete {
                ""
            } else {
                " (the report was cut short)"
            },
        }
    }
}

type Check = fn(&Seen) -> Outcome;

/// Every check, in the order of the report's columns.
const TABLE: &[(&str, Check)] = &[
    ("cloud-init", cloud_init_check),
    ("hostname", hostname_check),
    ("network", network_check),
    ("peers", peers_check),
    ("chrony", chrony_check),
    ("sshd", sshd_check),
    ("ssh-peer", ssh_peer_check),
    ("ufw", ufw_check),
    ("nfs-export", nfs_export_check),
    ("validator-keys", validator_keys_check),
    ("nfs-client", nfs_client_check),
    ("release-nfs", release_nfs_check),
    ("signer-db", signer_db_check),
    ("failover", failover_check),
    ("microk8s-config", microk8s_config_check),
    ("online-steps", online_steps_check),
    ("seed-copies", seed_copies_check),
    ("microk8s-ready", microk8s_ready_check),
];

/// The names of the checks, in the report's order.
pub fn checks() -> impl Iterator<Item = &'static str> {
    TABLE
        .iter()
        .map(|(name, _)| *name)
        .chain(super::daytwo::CHECKS.iter().copied())
}

/// Evaluates every check of one machine from its probe facts.
pub fn evaluate(
    spec: &Spec,
    secrets: &Secrets,
    seed: &Seed,
    m: &MachineSpec,
    facts: &Facts,
    boot: Boot,
) -> MachineResult {
    if !facts.began {
        return MachineResult {
            name: m.name.clone(),
            role: m.role,
            checks: every_check(Outcome::Failed(
                "the machine never reported (see its serial log)".into(),
            )),
        };
    }
    let seen = Seen::new(spec, secrets, seed, m, facts, boot);
    MachineResult {
        name: m.name.clone(),
        role: m.role,
        // Day two is checked later, over SSH, when there is a login key.
        checks: TABLE
            .iter()
            .map(|(name, check)| (name.to_string(), check(&seen)))
            .chain(
                super::daytwo::CHECKS
                    .iter()
                    .map(|name| (name.to_string(), Outcome::NotApplicable)),
            )
            .collect(),
    }
}

/// Done without errors on the first boot; off on later ones (forget-seed).
fn cloud_init_check(s: &Seen) -> Outcome {
    let facts = s.facts;
    if s.boot == Boot::Later {
        return match (
            facts.one("boot").unwrap_or(""),
            facts.one("cloud-init-again"),
        ) {
            ("later", Some("ran=no disabled=yes")) => {
                Outcome::Ok("off since the first boot; did not run again".into())
            }
            ("later", Some(said)) => Outcome::Failed(format!(
                "cloud-init must stay off after the first boot (step forget-seed): {said}"
            )),
            ("later", None) => Outcome::Failed(format!("not reported{}", s.incomplete)),
            _ => Outcome::Failed(
                "the machine booted as a new one: its first boot's state is gone".into(),
            ),
        };
    }
    let result = facts.one("result").unwrap_or("").replace(' ', "");
    if result.contains("\"errors\":[]") {
        Outcome::Ok("finished, no errors".into())
    } else if result.is_empty() {
        Outcome::Failed(format!("no /run/cloud-init/result.json{}", s.incomplete))
    } else {
        Outcome::Failed(format!(
            "cloud-init reported errors: {}",
            facts.one("result").unwrap_or("")
        ))
    }
}

/// The hostname is the machine's name and /etc/hosts lists the machines
/// it talks to ([`crate::validate::Spec::hosts_of`]).
fn hostname_check(s: &Seen) -> Outcome {
    let hosts: Vec<Vec<&str>> = s
        .facts
        .all("hosts")
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let missing: Vec<&str> = s
        .spec
        .hosts_of(s.m)
        .filter(|x| {
            let ip = x.ip.to_string();
            !hosts
                .iter()
                .any(|h| h.first() == Some(&ip.as_str()) && h.contains(&x.name.as_str()))
        })
        .map(|x| x.name.as_str())
        .collect();
    match s.facts.one("hostname") {
        Some(h) if h != s.m.name => Outcome::Failed(format!("hostname is {h:?}")),
        None => Outcome::Failed(format!("not reported{}", s.incomplete)),
        _ if !missing.is_empty() => {
            Outcome::Failed(format!("/etc/hosts lacks {}", missing.join(", ")))
        }
        _ => Outcome::Ok(format!("{} and its peers in /etc/hosts", s.m.name)),
    }
}

/// The static address on the right NIC (by MAC and name when the profile
/// gives a MAC).
fn network_check(s: &Seen) -> Outcome {
    let m = s.m;
    let want = format!("{}/{}", m.ip, s.spec.subnet.prefix_len());
    let addr_line = s
        .facts
        .all("addr")
        .iter()
        .find(|l| l.split_whitespace().any(|t| t == want));
    let nic = addr_line
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    match addr_line {
        None => Outcome::Failed(format!("no interface has {want}")),
        Some(_) => match &m.mac {
            Some(mac) => {
                let ctx_name = resolve::nic_name(m);
                let link_ok = s.facts.all("link").iter().any(|l| {
                    l.contains(&format!(" {nic}:")) && l.contains(&format!("link/ether {mac}"))
                });
                if !link_ok {
                    Outcome::Failed(format!("{want} is on {nic}, which does not have MAC {mac}"))
                } else if nic != ctx_name {
                    Outcome::Failed(format!(
                        "{want} is on {nic}, expected the NIC to be named {ctx_name}"
                    ))
                } else {
                    Outcome::Ok(format!("{want} on {nic} ({mac})"))
                }
            }
            None => Outcome::Ok(format!("{want} on {nic}")),
        },
    }
}

/// The machine reaches every machine its /etc/hosts lists, by name.
fn peers_check(s: &Seen) -> Outcome {
    let peers: Vec<&String> = s.facts.all("peer").iter().collect();
    let failed: Vec<String> = peers
        .iter()
        .filter(|p| !p.ends_with(" ok"))
        .map(|p| p.split(' ').next().unwrap_or("").to_string())
        .collect();
    let others = s.spec.hosts_of(s.m).count() - 1;
    if !failed.is_empty() {
        Outcome::Failed(format!("cannot reach {}", failed.join(", ")))
    } else if peers.len() < others {
        Outcome::Failed(format!(
            "only {} of {others} peers reported{}",
            peers.len(),
            s.incomplete
        ))
    } else {
        Outcome::Ok(format!("reaches all {others} by name"))
    }
}

fn chrony_check(s: &Seen) -> Outcome {
    file_check(s.facts, &s.files, "/etc/chrony/chrony.conf")
}

/// sshd listens on ssh.port only and offers the host key of the secrets file.
fn sshd_check(s: &Seen) -> Outcome {
    let port = s.spec.ssh.port;
    let listens_on = |port: u16| {
        s.facts.all("listen").iter().any(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|local| local.ends_with(&format!(":{port}")))
        })
    };
    let want_key = s
        .secrets
        .machine(&s.m.name)
        .and_then(|k| k.public_key())
        .map(|k| k.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let offered = s.facts.all("hostkey").iter().any(|l| {
        !l.starts_with('#')
            && l.split_whitespace()
                .skip(1)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                == want_key
    });
    match (listens_on(port), offered) {
        (false, _) => Outcome::Failed(format!("nothing listens on port {port}")),
        _ if port != 22 && listens_on(22) => Outcome::Failed(format!(
            "something still listens on port 22 (ssh.port is {port})"
        )),
        (true, false) => {
            Outcome::Failed("sshd does not offer the host key from the secrets file".into())
        }
        (true, true) => Outcome::Ok(format!("port {port}, host key from the secrets file")),
    }
}

/// ufw is active with exactly the role's rules.
fn ufw_check(s: &Seen) -> Outcome {
    let (active, rules) = parse_ufw(s.facts.all("ufw"));
    let want_rules = expected_ufw(s.spec, s.m);
    if !active {
        Outcome::Failed("ufw is not active".into())
    } else if rules != want_rules {
        let missing: Vec<String> = want_rules
            .iter()
            .filter(|r| !rules.contains(r))
            .map(|(t, f)| format!("{t} from {f}"))
            .collect();
        let extra: Vec<String> = rules
            .iter()
            .filter(|r| !want_rules.contains(r))
            .map(|(t, f)| format!("{t} from {f}"))
            .collect();
        Outcome::Failed(format!(
            "missing [{}], unexpected [{}]",
            missing.join("; "),
            extra.join("; ")
        ))
    } else {
        // How the firewall step applied them (its status message).
        let how = s.status.get("firewall").map_or("-", |(_, message)| message);
        Outcome::Ok(format!(
            "active, {} rules as the role needs; firewall step: {how}",
            rules.len()
        ))
    }
}

/// (nfs) The export root to the subnet only, the data folders owned by uid:gid.
fn nfs_export_check(s: &Seen) -> Outcome {
    let (spec, facts) = (s.spec, s.facts);
    if s.m.role != Role::Nfs {
        return Outcome::NotApplicable;
    }
    let export_root = spec.nfs.export_root.trim_end_matches('/').to_string();
    let text = facts.all("exports").join(" ");
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let clients: Vec<&str> = tokens.iter().filter(|t| t.contains('(')).copied().collect();
    let subnet = spec.subnet.to_string();
    let owners: Vec<&String> = facts.all("owner").iter().collect();
    let want_owner = format!("{}:{}", spec.nfs.uid, spec.nfs.gid);
    let bad_owner: Vec<&String> = owners
        .iter()
        .copied()
        .filter(|o| !o.ends_with(&format!(" {want_owner}")))
        .collect();
    if !tokens.contains(&export_root.as_str()) {
        Outcome::Failed(format!("{export_root} is not exported"))
    } else if clients.is_empty() || !clients.iter().all(|c| c.starts_with(&format!("{subnet}("))) {
        Outcome::Failed(format!(
            "exported to {} (expected {subnet} only)",
            clients.join(", ")
        ))
    } else if owners.len() != spec.nfs.folders.len() || !bad_owner.is_empty() {
        Outcome::Failed(format!(
            "data folders not owned by {want_owner}: {owners:?}"
        ))
    } else {
        Outcome::Ok(format!(
            "{export_root} to {subnet} only, folders owned by {want_owner}"
        ))
    }
}

/// (worker) mounts the export and writes as uid:gid; (master) reads every
/// worker's file.
fn nfs_client_check(s: &Seen) -> Outcome {
    let (spec, facts) = (s.spec, s.facts);
    let want_owner = format!("{}:{}", spec.nfs.uid, spec.nfs.gid);
    match s.m.role {
        Role::Nfs => Outcome::NotApplicable,
        _ if facts.one("nfs-mount") != Some("ok") => {
            Outcome::Failed(format!("cannot mount the NFS export{}", s.incomplete))
        }
        Role::Worker => match facts.one("nfs-write") {
            Some(l) if l == format!("ok {want_owner}") => {
                Outcome::Ok(format!("mounted, wrote a file as {want_owner}"))
            }
            Some(l) => Outcome::Failed(format!("write as {want_owner}: {l}")),
            None => Outcome::Failed(format!("no write reported{}", s.incomplete)),
        },
        Role::Master => {
            let seen = facts.all("nfs-see");
            let workers = spec.by_role(Role::Worker).count();
            let bad: Vec<&String> = seen
                .iter()
                .filter(|l| !l.ends_with(&format!(" ok {want_owner}")))
                .collect();
            if seen.len() < workers || !bad.is_empty() {
                Outcome::Failed(format!("does not see every worker's file: {seen:?}"))
            } else {
                Outcome::Ok(format!("sees the files the {workers} worker(s) wrote"))
            }
        }
    }
}

/// (master) The release step's own wait for the NFS export succeeds.
fn release_nfs_check(s: &Seen) -> Outcome {
    match (s.m.role, s.facts.one("release-nfs")) {
        (Role::Master, Some(l)) if l.starts_with("ok ") => Outcome::Ok(l[3..].to_string()),
        (Role::Master, Some(l)) => Outcome::Failed(format!(
            "`nodeimg-setup check-nfs`, the release step's wait, says: {}",
            l.trim_start_matches("fail").trim()
        )),
        (Role::Master, None) => Outcome::Failed(format!("not reported{}", s.incomplete)),
        _ => Outcome::NotApplicable,
    }
}

/// The tables Web3Signer reads and writes its slashing protection in.
const SIGNER_TABLES: &[&str] = &[
    "database_version",
    "signed_attestations",
    "signed_blocks",
    "validators",
];

/// (nfs, first master; with the remote signer) The NFS server's signer-db
/// step done; from the first master, through the server's firewall, a login
/// with the secrets file's password into Web3Signer's tables at the version
/// it expects, in a database its role owns, and a wrong password refused.
fn signer_db_check(s: &Seen) -> Outcome {
    use crate::staking::{SIGNER_DB_USER, WEB3SIGNER_DB_VERSION};
    if s.spec.signer_db().is_none() {
        return Outcome::NotApplicable;
    }
    if s.m.role == Role::Nfs {
        return match s.status.get("signer-db") {
            Some((st, msg)) if st == state::DONE => Outcome::Ok(msg.clone()),
            Some((st, msg)) => Outcome::Failed(format!("signer-db {st}: {msg}")),
            None => Outcome::Failed(format!("signer-db not reported{}", s.incomplete)),
        };
    }
    if !s.spec.is_first_master(s.m) {
        return Outcome::NotApplicable;
    }
    let fact = |k: &str| s.facts.one(k).unwrap_or("").trim().to_string();
    let (login, tables, owner, wrong) = (
        fact("signer-db-login"),
        fact("signer-db-tables"),
        fact("signer-db-owner"),
        fact("signer-db-wrong"),
    );
    let tables: Vec<&str> = tables.split(',').collect();
    let missing: Vec<&&str> = SIGNER_TABLES
        .iter()
        .filter(|t| !tables.contains(t))
        .collect();
    if login != format!("version|{WEB3SIGNER_DB_VERSION}") {
        Outcome::Failed(format!(
            "login with the password: {login:?} (want database_version {WEB3SIGNER_DB_VERSION}){}",
            s.incomplete
        ))
    } else if !missing.is_empty() {
        Outcome::Failed(format!("tables {missing:?} missing from {tables:?}"))
    } else if owner != SIGNER_DB_USER {
        Outcome::Failed(format!(
            "the database is owned by {owner:?}, not {SIGNER_DB_USER}"
        ))
    } else if !wrong.contains("password authentication failed") {
        Outcome::Failed(format!("a wrong password was not refused: {wrong:?}"))
    } else {
        Outcome::Ok(format!(
            "logged in from here with the password: database_version {WEB3SIGNER_DB_VERSION}, {} tables, owned by {owner}; a wrong password refused",
            tables.len()
        ))
    }
}

fn microk8s_config_check(s: &Seen) -> Outcome {
    if s.m.role.is_kubernetes() {
        file_check(s.facts, &s.files, "/etc/microk8s.yaml")
    } else {
        Outcome::NotApplicable
    }
}

/// The local steps done, nothing failed, and the internet-bound steps done
/// or retrying with the online service active; on a master that joins the
/// first one's control plane, no release step at all: one master installs
/// the release (a second helm run would race it).
fn online_steps_check(s: &Seen) -> Outcome {
    let outcome = online_steps_outcome(s);
    if !s.spec.joins_control_plane(s.m) {
        return outcome;
    }
    match (outcome, s.status.get("release")) {
        (Outcome::Ok(said), None) => Outcome::Ok(format!(
            "{said}; no release step (installed by {})",
            s.spec.master().name
        )),
        (Outcome::Ok(_), Some((st, msg))) => Outcome::Failed(format!(
            "a release step ({st}: {msg}) on a joining master: only {} installs it",
            s.spec.master().name
        )),
        (failed, _) => failed,
    }
}

fn online_steps_outcome(s: &Seen) -> Outcome {
    let status = &s.status;
    let local = firstboot::local(s.spec.duty(s.m));
    let online = online_steps_of(s.spec, s.m);
    let service = s.facts.one("online-service").unwrap_or("");
    if status.is_empty() {
        Outcome::Failed(format!(
            "no {} on the machine{}",
            firstboot::STATUS_FILE,
            s.incomplete
        ))
    } else if let Some(bad) = local
        .iter()
        // The failover step skips itself by design (the failover check).
        .filter(|st| **st != "failover")
        .find(|st| status.get(**st).map(|x| x.0.as_str()) != Some(state::DONE))
    {
        Outcome::Failed(format!("local step {bad} is {:?}", status.get(*bad)))
    } else if let Some((st, (state, msg))) = status.iter().find(|(_, (st, _))| st == state::FAILED)
    {
        Outcome::Failed(format!("{st} {state}: {msg}"))
    } else if online.iter().all(|st| {
        status
            .get(*st)
            .is_some_and(|x| firstboot::SETTLED.contains(&x.0.as_str()))
    }) {
        Outcome::Ok("done online".into())
    } else if service != "active" {
        Outcome::Failed(format!(
            "steps are pending but nodeimg-online.service is {service:?}"
        ))
    } else {
        let retrying: Vec<String> = online
            .iter()
            .filter_map(|st| {
                status
                    .get(*st)
                    .filter(|(st, _)| st == state::RETRYING || st == state::RUNNING)
                    .map(|(state, msg)| format!("{st} {state}: {msg}"))
            })
            .collect();
        if retrying.is_empty() {
            Outcome::Failed("steps pending, none attempted yet".into())
        } else {
            Outcome::Ok(format!("retrying offline ({})", retrying.join("; ")))
        }
    }
}

/// (masters) With automatic failover the failover step started
/// nodeimg-failover.timer, which is active; with manual failover the step
/// skipped itself and there is no timer.
fn failover_check(s: &Seen) -> Outcome {
    if s.m.role != Role::Master {
        return Outcome::NotApplicable;
    }
    let automatic = s
        .spec
        .staking
        .as_ref()
        .is_some_and(|st| st.failover == crate::staking::Failover::Automatic);
    let timer = s.facts.one("failover-timer").unwrap_or("unreported");
    match s.status.get("failover") {
        Some((st, msg)) if automatic && st == state::DONE && timer == "active" => {
            Outcome::Ok(format!("{msg}; nodeimg-failover.timer active"))
        }
        Some((st, msg)) if !automatic && st == state::SKIPPED && timer != "active" => {
            Outcome::Ok(msg.clone())
        }
        Some((st, msg)) => Outcome::Failed(format!(
            "failover {st} ({msg}), nodeimg-failover.timer {timer:?}, expected {}",
            if automatic { "automatic" } else { "manual" }
        )),
        None => Outcome::Failed(format!("failover not reported{}", s.incomplete)),
    }
}

/// (master, worker) microk8s-launch done; offline it cannot be.
fn microk8s_ready_check(s: &Seen) -> Outcome {
    if !s.m.role.is_kubernetes() {
        return Outcome::NotApplicable;
    }
    match s.status.get("microk8s-launch") {
        Some((st, msg)) if st == state::DONE => Outcome::Ok(msg.clone()),
        _ => Outcome::NotCheckableOffline("needs the snap store".into()),
    }
}

/// After first boot: `forget-seed` done, no string of a secret the seed
/// carried left in cloud-init's folders, the logs or the seed partition, and
/// a seed partition (disk images) wiped.
fn seed_copies_check(s: &Seen) -> Outcome {
    let facts = s.facts;
    match s.status.get("forget-seed") {
        Some((st, _)) if st == state::DONE => {}
        Some((state, msg)) => return Outcome::Failed(format!("forget-seed {state}: {msg}")),
        None => return Outcome::Failed("forget-seed not reported".into()),
    }
    match facts.one("seed-copies") {
        Some("none") => {}
        Some(copies) => {
            // Several secrets are often found in one file: name each file once.
            let files: std::collections::BTreeSet<&str> = copies.split_whitespace().collect();
            let files: Vec<&str> = files.into_iter().collect();
            return Outcome::Failed(format!(
                "secrets of the seed are still in {}",
                files.join(" ")
            ));
        }
        None => return Outcome::Failed("not reported".into()),
    }
    match facts.one("seed-partition") {
        Some("wiped") => {
            Outcome::Ok("no copy of the seed's secrets left; the seed partition wiped".into())
        }
        Some(other) => Outcome::Failed(format!("the seed partition is {other}")),
        None => Outcome::Ok(
            "no copy of the seed's secrets left in cloud-init's folders or the logs (the seed medium is removable)"
                .into(),
        ),
    }
}

/// The next machine's sshd as seen from `m` (probe facts `ssh-login`,
/// `ssh-22`): reached on ssh.port through its firewall with the pinned host
/// key, logged in with the login key if one was given, and closed on 22.
fn ssh_peer_check(s: &Seen) -> Outcome {
    let (spec, m, facts) = (s.spec, s.m, s.facts);
    let Some(target) = ssh_target(spec, m) else {
        return Outcome::NotApplicable;
    };
    let port = spec.ssh.port;
    let to = format!("{}:{port}", target.name);
    let login = facts.one("ssh-login").unwrap_or("");
    let mut words = login.splitn(3, ' ');
    let (_, verdict, said) = (
        words.next(),
        words.next().unwrap_or(""),
        words.next().unwrap_or(""),
    );
    let closed_22 = port == 22 || facts.one("ssh-22").is_some_and(|l| l.ends_with(" closed"));
    match verdict {
        _ if !closed_22 => Outcome::Failed(format!(
            "{}:22 accepts connections though ssh.port is {port}",
            target.name
        )),
        "ok" if said.trim() == spec.ssh.user => Outcome::Ok(format!(
            "logged in to {to} as {}, host key pinned{}",
            spec.ssh.user,
            if port == 22 { "" } else { ", 22 closed" }
        )),
        "denied-without-key" => Outcome::Ok(format!(
            "reached sshd on {to}, host key pinned, keys only{} (no --login-key: no login tried)",
            if port == 22 { "" } else { ", 22 closed" }
        )),
        "" => Outcome::Failed("not reported".into()),
        _ => Outcome::Failed(format!("ssh {}@{to}: {}", spec.ssh.user, said.trim())),
    }
}

/// Where the seed's keys are until first boot moves them.
const KEYS_STAGING: &str = firstboot::KEYS_STAGING;

/// A staking profile's keys: on the NFS server every keystore and password
/// the seed carried, in the group's folder, owned by uid:gid, mode 0600,
/// and the staging copy gone; on the other machines no keys at all.
fn validator_keys_check(s: &Seen) -> Outcome {
    let (spec, seed, m, facts) = (s.spec, s.seed, s.m, s.facts);
    let has_groups = spec.staking.as_ref().is_some_and(|s| !s.groups.is_empty());
    if !has_groups {
        return Outcome::NotApplicable;
    }
    let staging = facts.one("key-staging").unwrap_or("unreported");
    if staging != "absent" {
        return Outcome::Failed(format!("{KEYS_STAGING} holds {staging:?}"));
    }
    if m.role != Role::Nfs {
        return Outcome::Ok("no keys on this machine".into());
    }
    // (folder, file) where each file the seed carried must be:
    // .../validator-keys/<group>/<file> goes to validator-<group>/<file>,
    // or with a remote signer to its folder (see place_validator_keys).
    let signer_folder = spec
        .staking
        .as_ref()
        .filter(|s| s.signer.is_remote())
        .map(|_| crate::staking::SIGNER_FOLDER);
    let carried: Vec<(String, String)> = written_files(seed)
        .into_keys()
        .filter_map(|p| {
            let rest = p.strip_prefix(&format!("{KEYS_STAGING}/"))?;
            rest.split_once('/')
                .map(|(g, f)| (g.to_string(), f.to_string()))
        })
        .flat_map(|(group, file)| match signer_folder {
            None => vec![(format!("validator-{group}"), file)],
            Some(folder) => match file.strip_prefix("keystores/") {
                Some(k) => {
                    let stem = k.strip_suffix(".json").unwrap_or(k);
                    vec![
                        (folder.to_string(), format!("keystores/{group}.{k}")),
                        (folder.to_string(), format!("passwords/{group}.{stem}.txt")),
                    ]
                }
                None => Vec::new(),
            },
        })
        .collect();
    let want = format!("{}:{} 600", spec.nfs.uid, spec.nfs.gid);
    let placed: BTreeMap<(String, String), String> = facts
        .all("key")
        .iter()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            Some((
                (w.next()?.to_string(), w.next()?.to_string()),
                w.next()?.to_string(),
            ))
        })
        .collect();
    if signer_folder.is_some() {
        // Validator clients that sign remotely hold no keys at all.
        if let Some(((folder, file), _)) = placed
            .iter()
            .find(|((f, _), _)| f.starts_with("validator-"))
        {
            return Outcome::Failed(format!(
                "{folder}/{file} holds a key, but the remote signer holds them"
            ));
        }
    }
    for (folder, file) in &carried {
        match placed.get(&(folder.clone(), file.clone())) {
            None => return Outcome::Failed(format!("{folder}/{file} is missing")),
            Some(owner) if *owner != want => {
                return Outcome::Failed(format!("{folder}/{file} is {owner}, expected {want}"))
            }
            Some(_) => {}
        }
    }
    Outcome::Ok(format!("{} file(s) in place, {want}", carried.len()))
}

/// The internet-bound steps a machine runs (nodeimg-setup's online steps,
/// less the local ones it retries); the release only where a staking
/// release is installed.
pub fn online_steps_of(spec: &Spec, m: &MachineSpec) -> Vec<&'static str> {
    let duty = spec.duty(m);
    let local = firstboot::local(duty);
    let installs_release = spec.staking.as_ref().is_some_and(|s| s.legacy.is_none());
    let signer_db = crate::resolve::holds_signer_db(spec, m);
    firstboot::online(duty)
        .into_iter()
        .filter(|step| !local.contains(step))
        .filter(|step| *step != "release" || installs_release)
        .filter(|step| *step != "signer-db" || signer_db)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ufw_status_lines_parse() {
        let lines: Vec<String> = [
            "Status: active",
            "To                         Action      From",
            "--                         ------      ----",
            "22/tcp                     ALLOW IN    Anywhere                   # ssh",
            "2049/tcp                   ALLOW IN    172.20.0.0/20              # NFSv4",
            "Anywhere on vxlan.calico   ALLOW IN    Anywhere",
            "Anywhere                   ALLOW OUT   Anywhere on cali+",
            "22/tcp (v6)                ALLOW IN    Anywhere (v6)              # ssh",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (active, rules) = parse_ufw(&lines);
        assert!(active);
        assert_eq!(
            rules,
            vec![
                ("2049/tcp".to_string(), "172.20.0.0/20".to_string()),
                ("22/tcp".to_string(), "Anywhere".to_string()),
                (
                    "Anywhere".to_string(),
                    "Anywhere on cali+ (out)".to_string()
                ),
                (
                    "Anywhere on vxlan.calico".to_string(),
                    "Anywhere".to_string()
                ),
            ]
        );
    }
}

#[cfg(test)]
mod evaluate_tests {
    use super::*;

    #[test]
    fn validator_keys_must_be_placed_privately_on_the_nfs_server_only() {
        let v =
            crate::load_profile_str("h.yaml", include_str!("../../profiles/hoodi.yaml")).unwrap();
        let spec = v.spec;
        let s = spec.staking.clone().unwrap();
        let keys = vec![crate::staking::GroupKeys {
            group: "group-1".into(),
            keystores: vec![("keystore-a.json".into(), b"{}".to_vec(), "ab".repeat(48))],
            password: b"pw".to_vec(),
        }];
        let secrets = Secrets::generate(&spec).unwrap();
        let payload = crate::staking::payload(
            &spec,
            &s,
            &keys,
            &[],
            &[],
            secrets.jwt_secret.as_deref().unwrap(),
            None,
        );
        let engine = crate::render::Engine::new(None).unwrap();
        let seeds: BTreeMap<String, Seed> =
            crate::render_seeds(&spec, &secrets, &engine, &[], &payload)
                .unwrap()
                .into_iter()
                .collect();
        let nfs = spec.machine("nfs").unwrap();
        let check = |facts: &str| {
            let serial: String = facts.lines().map(|l| format!("@@P@@ {l}\n")).collect();
            let facts = Facts::parse(&serial);
            validator_keys_check(&Seen::new(
                &spec,
                &secrets,
                &seeds["nfs"],
                nfs,
                &facts,
                Boot::First,
            ))
        };
        let good = "key validator-group-1 keystores/keystore-a.json 1001:2000 600\n\
                    key validator-group-1 password.txt 1001:2000 600\nkey-staging absent";
        assert!(matches!(check(good), Outcome::Ok(_)), "{:?}", check(good));
        let readable = good.replace("password.txt 1001:2000 600", "password.txt 1001:2000 644");
        assert!(
            matches!(check(&readable), Outcome::Failed(d) if d.contains("password.txt is 1001:2000 644"))
        );
        let missing = good.replace(
            "key validator-group-1 keystores/keystore-a.json 1001:2000 600\n",
            "",
        );
        assert!(
            matches!(check(&missing), Outcome::Failed(d) if d.contains("keystore-a.json is missing"))
        );
        let staged = good.replace(
            "key-staging absent",
            "key-staging /var/lib/nodeimg/validator-keys/group-1",
        );
        assert!(matches!(check(&staged), Outcome::Failed(_)));
        // The master must hold no staging copy either; the tutorial has no keys.
        let master = spec.machine("master").unwrap();
        let none = Facts::parse("@@P@@ key-staging absent\n");
        assert!(matches!(
            validator_keys_check(&Seen::new(
                &spec,
                &secrets,
                &seeds["master"],
                master,
                &none,
                Boot::First
            )),
            Outcome::Ok(_)
        ));
        let w = world();
        let t_nfs = w.spec.machine("nfs").unwrap();
        assert!(matches!(
            validator_keys_check(&Seen::new(
                &w.spec,
                &w.secrets,
                &w.seeds["nfs"],
                t_nfs,
                &none,
                Boot::First
            )),
            Outcome::NotApplicable
        ));
    }

    #[test]
    fn the_staking_master_also_waits_for_its_release() {
        let tutorial = crate::load_profile_str("t.yaml", PROFILE).unwrap().spec;
        let hoodi = crate::load_profile_str("h.yaml", include_str!("../../profiles/hoodi.yaml"))
            .unwrap()
            .spec;
        let steps = |spec: &Spec, name: &str| online_steps_of(spec, spec.machine(name).unwrap());
        assert!(!steps(&tutorial, "master").contains(&"release"));
        assert!(steps(&hoodi, "master").contains(&"release"));
        assert!(!steps(&hoodi, "worker-1").contains(&"release"));
        assert_eq!(
            steps(&hoodi, "nfs"),
            ["forget-seed", "apt-update", "apt-upgrade", "packages"]
        );
    }

    const PROFILE: &str = include_str!("../../profiles/tutorial.yaml");

    struct World {
        spec: Spec,
        secrets: Secrets,
        seeds: BTreeMap<String, Seed>,
    }

    fn world() -> World {
        world_of(PROFILE)
    }

    fn world_of(profile: &str) -> World {
        let v = crate::load_profile_str("tutorial.yaml", profile).unwrap();
        let secrets = Secrets::generate(&v.spec).unwrap();
        let engine = crate::render::Engine::new(None).unwrap();
        let seeds = crate::render_seeds(&v.spec, &secrets, &engine, &[], &Default::default())
            .unwrap()
            .into_iter()
            .collect();
        World {
            spec: v.spec,
            secrets,
            seeds,
        }
    }

    /// What a healthy worker-1 reports.
    fn healthy_worker(w: &World) -> String {
        let seed = &w.seeds["worker-1"];
        let key = w.secrets.machine("worker-1").unwrap().public_key().unwrap();
        let key = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let mut lines = vec![
            "begin worker-1 uptime=100".to_string(),
            "result {\"v1\": {\"errors\": []}}".into(),
            "hostname worker-1".into(),
            "hosts 172.20.10.10 nfs".into(),
            "hosts 172.20.10.11 master".into(),
            "hosts 172.20.10.12 worker-1".into(),
            "addr 2: enp0s3    inet 172.20.10.12/20 brd 172.20.15.255 scope global enp0s3".into(),
            "link 2: enp0s3: <UP> mtu 1500\\    link/ether 52:54:00:14:0a:0c brd ff:ff:ff:ff:ff:ff".into(),
            "ufw Status: active".into(),
            "ufw 22/tcp                     ALLOW IN    Anywhere                   # ssh".into(),
            "ufw 10250,10255,10257,10259,12379,16443/tcp ALLOW IN    172.20.0.0/20 # k8s".into(),
            "ufw 25000/tcp                  ALLOW IN    172.20.10.11               # MicroK8s cluster-agent".into(),
            "ufw 4789/udp                   ALLOW IN    172.20.0.0/20".into(),
            "ufw 12000/udp                  ALLOW IN    Anywhere".into(),
            "ufw 13000/tcp                  ALLOW IN    Anywhere".into(),
            "ufw Anywhere on vxlan.calico   ALLOW IN    Anywhere".into(),
            "ufw Anywhere on cali+          ALLOW IN    Anywhere".into(),
            "ufw Anywhere                   ALLOW OUT   Anywhere on vxlan.calico".into(),
            "ufw Anywhere                   ALLOW OUT   Anywhere on cali+".into(),
            "listen LISTEN 0 128 0.0.0.0:22 0.0.0.0:*".into(),
            format!("hostkey 127.0.0.1 {key}"),
            "peer nfs ok".into(),
            "peer master ok".into(),
            "ssh-login 172.20.10.10 denied-without-key staker@172.20.10.10: Permission denied (publickey).".into(),
            "nfs-mount ok".into(),
            "nfs-write ok 1001:2000".into(),
            "status ssh done 1 1 listening".into(),
            "status forget-seed done 1 1 cloud-init's copies of the seed removed".into(),
            "seed-copies none".into(),
            "status apt-update retrying 1 1 no package index reachable (offline?)".into(),
            "status firewall done 1 1 active".into(),
            "status chrony done 1 1 pools".into(),
            "status microk8s pending 0 0 -".into(),
            "online-service active".into(),
        ];
        for (path, hash) in written_files(seed) {
            lines.push(format!("file {path} {hash}"));
        }
        lines.push("end worker-1".into());
        lines.iter().map(|l| format!("@@P@@ {l}\n")).collect()
    }

    fn eval(w: &World, serial: &str) -> MachineResult {
        eval_boot(w, serial, Boot::First)
    }

    /// worker-1's checks on what its probe printed on that boot.
    fn eval_boot(w: &World, serial: &str, boot: Boot) -> MachineResult {
        let m = w.spec.machine("worker-1").unwrap();
        evaluate(
            &w.spec,
            &w.secrets,
            &w.seeds["worker-1"],
            m,
            &Facts::parse(serial),
            boot,
        )
    }

    #[test]
    fn a_healthy_report_passes_every_check() {
        let w = world();
        let r = eval(&w, &healthy_worker(&w));
        assert!(r.passed(), "{:#?}", r.checks);
        assert_eq!(
            r.checks["microk8s-ready"],
            Outcome::NotCheckableOffline("needs the snap store".into())
        );
        assert!(
            matches!(&r.checks["online-steps"], Outcome::Ok(d) if d.starts_with("retrying offline"))
        );
    }

    #[test]
    fn on_another_ssh_port_nothing_may_answer_on_22() {
        let w = world_of(&PROFILE.replace("  port: 22\n", "  port: 2222\n"));
        let ok = healthy_worker(&w).replace("0.0.0.0:22 ", "0.0.0.0:2222 ").replace(
            "@@P@@ ssh-login 172.20.10.10 denied-without-key staker@172.20.10.10: Permission denied (publickey).\n",
            "@@P@@ ssh-login 172.20.10.10 ok staker\n@@P@@ ssh-22 172.20.10.10 closed\n",
        );
        let r = eval(&w, &ok);
        assert!(matches!(&r.checks["sshd"], Outcome::Ok(d) if d.starts_with("port 2222")));
        assert!(
            matches!(&r.checks["ssh-peer"], Outcome::Ok(d) if d == "logged in to nfs:2222 as staker, host key pinned, 22 closed"),
            "{:?}",
            r.checks["ssh-peer"]
        );
        let stray = ok.replace(
            "@@P@@ listen LISTEN 0 128 0.0.0.0:2222 0.0.0.0:*\n",
            "@@P@@ listen LISTEN 0 128 0.0.0.0:2222 0.0.0.0:*\n@@P@@ listen LISTEN 0 128 [::]:22 [::]:*\n",
        );
        assert!(failed(&w, &stray, "sshd").contains("still listens on port 22"));
        let open = ok.replace("ssh-22 172.20.10.10 closed", "ssh-22 172.20.10.10 open");
        assert!(failed(&w, &open, "ssh-peer").contains("nfs:22 accepts connections"));
        let other_user = ok.replace(
            "ssh-login 172.20.10.10 ok staker",
            "ssh-login 172.20.10.10 ok root",
        );
        assert!(failed(&w, &other_user, "ssh-peer").contains("root"));
    }

    fn failed(w: &World, serial: &str, check: &str) -> String {
        match &eval(w, serial).checks[check] {
            Outcome::Failed(why) => why.clone(),
            other => panic!("{check} should fail, got {other:?}"),
        }
    }

    /// A later boot: the same machine with cloud-init off passes; cloud-init
    /// running again, left on, or a machine that forgot its first boot fails.
    #[test]
    fn a_later_boot_must_come_back_with_cloud_init_off() {
        let w = world();
        let later = |serial: &str| eval_boot(&w, serial, Boot::Later);
        let first = healthy_worker(&w).replace(
            "@@P@@ result {\"v1\": {\"errors\": []}}\n",
            "@@P@@ boot first\n@@P@@ result\n",
        );
        let came_back = healthy_worker(&w).replace(
            "@@P@@ result {\"v1\": {\"errors\": []}}\n",
            "@@P@@ boot later\n@@P@@ result\n@@P@@ cloud-init-again ran=no disabled=yes\n",
        );
        assert_ne!(came_back, healthy_worker(&w));
        let r = later(&came_back);
        assert!(r.passed(), "{:?}", r.checks);
        assert_eq!(
            r.checks["cloud-init"],
            Outcome::Ok("off since the first boot; did not run again".into())
        );
        for (fault, why) in [
            ("ran=yes disabled=yes", "must stay off after the first boot"),
            ("ran=no disabled=no", "must stay off after the first boot"),
        ] {
            let r = later(&came_back.replace("ran=no disabled=yes", fault));
            assert!(
                matches!(&r.checks["cloud-init"], Outcome::Failed(d) if d.contains(why) && d.contains(fault)),
                "{fault}: {:?}",
                r.checks["cloud-init"]
            );
        }
        let r = later(&first);
        assert!(
            matches!(&r.checks["cloud-init"], Outcome::Failed(d) if d.contains("booted as a new one")),
            "{:?}",
            r.checks["cloud-init"]
        );
        // The other checks hold on a later boot as on the first.
        let r = later(&came_back.replace("hostname worker-1\n", "hostname localhost\n"));
        assert!(!r.checks["hostname"].passed());
    }

    #[test]
    fn each_check_catches_its_fault() {
        let w = world();
        let ok = healthy_worker(&w);
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "\"errors\": []",
                "\"errors\": [\"runcmd\"]",
                "cloud-init",
                "reported errors",
            ),
            (
                "hostname worker-1\n",
                "hostname localhost\n",
                "hostname",
                "\"localhost\"",
            ),
            (
                "@@P@@ hosts 172.20.10.10 nfs\n",
                "",
                "hostname",
                "lacks nfs",
            ),
            (
                "172.20.10.12/20",
                "172.20.10.99/20",
                "network",
                "no interface has 172.20.10.12/20",
            ),
            (
                "peer master ok",
                "peer master fail",
                "peers",
                "cannot reach master",
            ),
            (
                "0.0.0.0:22 ",
                "0.0.0.0:2222 ",
                "sshd",
                "nothing listens on port 22",
            ),
            (
                "hostkey 127.0.0.1 ssh-ed25519 AAAA",
                "hostkey 127.0.0.1 ssh-ed25519 BBBB",
                "sshd",
                "host key",
            ),
            (
                "denied-without-key staker@172.20.10.10: Permission denied (publickey).",
                "fail ssh: connect to host 172.20.10.10 port 22: Connection timed out",
                "ssh-peer",
                "Connection timed out",
            ),
            (
                "ufw Status: active",
                "ufw Status: inactive",
                "ufw",
                "not active",
            ),
            (
                "@@P@@ ufw 4789/udp                   ALLOW IN    172.20.0.0/20\n",
                "",
                "ufw",
                "missing [4789/udp",
            ),
            (
                "ufw 12000/udp                  ALLOW IN    Anywhere",
                "ufw 12000/udp ALLOW IN Anywhere\n@@P@@ ufw 8080/tcp ALLOW IN Anywhere",
                "ufw",
                "unexpected [8080/tcp",
            ),
            (
                "nfs-write ok 1001:2000",
                "nfs-write fail",
                "nfs-client",
                "write as 1001:2000",
            ),
            (
                "nfs-mount ok",
                "nfs-mount fail",
                "nfs-client",
                "cannot mount",
            ),
            (
                "status chrony done",
                "status chrony failed",
                "online-steps",
                "local step chrony",
            ),
            (
                "seed-copies none",
                "seed-copies /var/lib/cloud/instances/iid-x/obj.pkl ",
                "seed-copies",
                "still in /var/lib/cloud/instances/iid-x/obj.pkl",
            ),
            (
                "status forget-seed done",
                "status forget-seed retrying",
                "seed-copies",
                "forget-seed retrying",
            ),
            (
                "online-service active",
                "online-service failed",
                "online-steps",
                "nodeimg-online.service",
            ),
        ];
        for (from, to, check, why) in cases {
            assert!(
                ok.contains(from),
                "case {check}: {from:?} not in the healthy report"
            );
            let got = failed(&w, &ok.replacen(from, to, 1), check);
            assert!(got.contains(why), "{check}: {got:?} lacks {why:?}");
        }
        // A file that differs from the rendered one.
        let conf = written_files(&w.seeds["worker-1"])["/etc/chrony/chrony.conf"].clone();
        assert!(failed(&w, &ok.replace(&conf, "0000"), "chrony").contains("differs"));
        let launch = written_files(&w.seeds["worker-1"])["/etc/microk8s.yaml"].clone();
        assert!(failed(&w, &ok.replace(&launch, "0000"), "microk8s-config").contains("differs"));
    }

    #[test]
    fn a_silent_machine_fails_every_check() {
        let w = world();
        let r = eval(&w, "[  1.0] kernel only\n");
        assert!(checks().all(|c| matches!(r.checks[c], Outcome::Failed(_))));
    }
}

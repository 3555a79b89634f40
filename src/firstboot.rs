//! What a machine does on first boot, as both sides must know it: the seed's
//! shell (`nodeimg-setup`, rendered from `cloudinit/files/nodeimg-setup.sh`,
//! which reads these through the template context `firstboot`) and the Rust
//! side (the staking payload's paths, boot-test's expectations). Defined
//! here once, so that a new step or path is one change.

use serde_json::{json, Value};

use crate::model::Role;

/// Where each machine reports the state of its first-boot steps, one
/// [`StatusLine`] a step.
pub const STATUS_FILE: &str = "/var/lib/nodeimg/status";

/// Where the NFS server's seed puts the validator keys until the step
/// nfs-exports moves them into their folders.
pub const KEYS_STAGING: &str = "/var/lib/nodeimg/validator-keys";

/// Where the master's seed puts the staking release (charts, values).
pub const RELEASE_DIR: &str = "/var/lib/nodeimg/release";

/// The release directory's layout, the same on the master (in
/// [`RELEASE_DIR`], installed by the `release` step) and in the folder of
/// `nodeimg release` (installed by its install.sh): the storage manifest,
/// the chart archives, the values, the JWT secret and the release list.
pub const RELEASE_STORAGE: &str = "storage.yaml";
pub const RELEASE_CHARTS: &str = "charts";
pub const RELEASE_VALUES: &str = "values";
pub const RELEASE_JWT: &str = "jwt.hex";
pub const RELEASE_LIST: &str = "releases.list";
/// The Secret manifest with the remote signer's database password (0600),
/// applied before the releases when the profile signs remotely.
pub const RELEASE_SIGNER_SECRET: &str = "signer-db-secret.yaml";
/// The values key the charts take the JWT file as (`--set-file KEY=FILE`).
pub const RELEASE_JWT_KEY: &str = "jwt";
/// The legacy eth2xk8s chart's wallet passwords (`nodeimg release` only;
/// the chart takes them as files).
pub const RELEASE_PASSWORDS: &str = "passwords";

/// A step's state: the status file's second word, as the seed's
/// `run_step` records it and the boot test reads it.
pub mod state {
    /// Not attempted yet.
    pub const PENDING: &str = "pending";
    /// An attempt is under way.
    pub const RUNNING: &str = "running";
    pub const DONE: &str = "done";
    /// Not needed on this machine or profile (the message says why).
    pub const SKIPPED: &str = "skipped";
    /// Waiting for another step or machine; tried again.
    pub const WAITING: &str = "waiting";
    /// A step without the network failed: cloud-init reports it.
    pub const FAILED: &str = "failed";
    /// An online step failed and is tried again.
    pub const RETRYING: &str = "retrying";
}

/// The states after which a step is not run again.
pub const SETTLED: &[&str] = &[state::DONE, state::SKIPPED];

/// The longest message a status line keeps, in bytes (the script cuts it
/// there with `cut -c`, which counts bytes, and makes it one line).
pub const STATUS_MESSAGE_MAX: usize = 200;

/// The message of a status line that has none.
const NO_MESSAGE: &str = "-";

/// One line of [`STATUS_FILE`], as the seed's `record`/`write_status`
/// write it: `STEP STATE ATTEMPTS UNIX-TIME MESSAGE`, the message last (it
/// may hold spaces; `-` when there is none). Read by the boot test (and by
/// anyone reading a machine's status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub step: String,
    /// One of [`state`]'s words.
    pub state: String,
    pub attempts: u32,
    /// When the state was recorded (seconds since 1970; 0: never).
    pub time: u64,
    pub message: Option<String>,
}

impl StatusLine {
    /// A line of the status file; `None` without a step and a state. A
    /// line damaged after them (a console that mixed in other output) keeps
    /// what it has: 0 for an unreadable number, no message.
    pub fn parse(line: &str) -> Option<StatusLine> {
        let mut words = line.splitn(5, ' ');
        let step = words.next().filter(|w| !w.is_empty())?.to_string();
        let state = words.next().filter(|w| !w.is_empty())?.to_string();
        let attempts = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let time = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let message = match words.next() {
            None | Some("") | Some(NO_MESSAGE) => None,
            Some(m) => Some(m.to_string()),
        };
        Some(StatusLine {
            step,
            state,
            attempts,
            time,
            message,
        })
    }
}

/// The interfaces Calico routes pod traffic through between nodes: the
/// `ufw` step allows traffic in and out on them on every Kubernetes
/// machine (as the MicroK8s docs ask under ufw), and the boot test expects
/// those rules.
pub const CALICO_INTERFACES: &[&str] = &["vxlan.calico", "cali+"];

/// What decides a machine's steps: its role, and for a master whether it
/// is the first (the one that installs the release; the others join it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duty {
    pub role: Role,
    pub first_master: bool,
}

/// A role alone: a master is taken as the first (every cluster has one).
impl From<Role> for Duty {
    fn from(role: Role) -> Duty {
        Duty {
            role,
            first_master: role == Role::Master,
        }
    }
}

/// Which machines run a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    Everywhere,
    NfsServer,
    /// The MicroK8s machines: masters and workers.
    Kubernetes,
    /// The first master alone.
    FirstMaster,
    /// Every master.
    Masters,
}

impl Runs {
    pub fn on(self, duty: Duty) -> bool {
        match self {
            Runs::Everywhere => true,
            Runs::NfsServer => duty.role == Role::Nfs,
            Runs::Kubernetes => duty.role.is_kubernetes(),
            Runs::FirstMaster => duty.first_master,
            Runs::Masters => duty.role == Role::Master,
        }
    }

    /// The key of the template context's step lists.
    fn key(self) -> &'static str {
        match self {
            Runs::Everywhere => "everywhere",
            Runs::NfsServer => "nfs",
            Runs::Kubernetes => "kubernetes",
            Runs::FirstMaster => "first_master",
            Runs::Masters => "masters",
        }
    }
}

/// One first-boot step: `step_<name>` in nodeimg-setup.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub name: &'static str,
    /// Run by `nodeimg-setup local` (cloud-init's runcmd, no network).
    pub local: bool,
    /// Run (or retried, when also local) by `nodeimg-setup online`, the
    /// service that waits for the internet.
    pub online: bool,
    pub runs: Runs,
}

const fn step(name: &'static str, local: bool, online: bool, runs: Runs) -> Step {
    Step {
        name,
        local,
        online,
        runs,
    }
}

/// Every step, in the order a machine runs and reports them.
pub const STEPS: &[Step] = &[
    step("ssh", true, false, Runs::Everywhere),
    step("forget-seed", false, true, Runs::Everywhere),
    step("apt-update", false, true, Runs::Everywhere),
    step("apt-upgrade", false, true, Runs::Everywhere),
    step("packages", false, true, Runs::Everywhere),
    // Local first with what the image has; online again once the packages
    // are in (ufw, chrony may be missing from a minimal image).
    step("firewall", true, true, Runs::Everywhere),
    step("chrony", true, true, Runs::Everywhere),
    step("nfs-exports", true, true, Runs::NfsServer),
    // The remote signer's PostgreSQL; it skips itself with the local signer.
    step("signer-db", false, true, Runs::NfsServer),
    step("microk8s", false, true, Runs::Kubernetes),
    step("microk8s-launch", false, true, Runs::Kubernetes),
    // One master installs the release (a second helm run would race it);
    // the step skips itself without a staking release.
    step("release", false, true, Runs::FirstMaster),
    // Every master watches for signing pods stuck on a dead node (with
    // automatic failover; it skips itself otherwise).
    step("failover", true, false, Runs::Masters),
];

fn names(duty: impl Into<Duty>, keep: impl Fn(&Step) -> bool) -> Vec<&'static str> {
    let duty = duty.into();
    STEPS
        .iter()
        .filter(|s| s.runs.on(duty) && keep(s))
        .map(|s| s.name)
        .collect()
}

/// The steps `nodeimg-setup local` runs on a machine (its [`Duty`], or a
/// role).
pub fn local(duty: impl Into<Duty>) -> Vec<&'static str> {
    names(duty, |s| s.local)
}

/// The steps `nodeimg-setup online` runs (or retries) on a machine.
pub fn online(duty: impl Into<Duty>) -> Vec<&'static str> {
    names(duty, |s| s.online)
}

/// Every step of a machine, as its status file lists them.
pub fn all(duty: impl Into<Duty>) -> Vec<&'static str> {
    names(duty, |_| true)
}

/// The template context `firstboot`: the paths, and the step lists by
/// which machines run them (`steps.<runs>.{local,online,all}`), as the
/// script composes them for its role.
pub fn context() -> Value {
    let lists = |runs: Runs| {
        let of = |keep: fn(&Step) -> bool| -> Vec<&str> {
            STEPS
                .iter()
                .filter(|s| s.runs == runs && keep(s))
                .map(|s| s.name)
                .collect()
        };
        json!({
            "local": of(|s| s.local),
            "online": of(|s| s.online),
            "all": of(|_| true),
        })
    };
    let steps: serde_json::Map<String, Value> = [
        Runs::Everywhere,
        Runs::NfsServer,
        Runs::Kubernetes,
        Runs::FirstMaster,
        Runs::Masters,
    ]
    .into_iter()
    .map(|runs| (runs.key().to_string(), lists(runs)))
    .collect();
    json!({
        "status_file": STATUS_FILE,
        "keys_staging": KEYS_STAGING,
        "release_dir": RELEASE_DIR,
        "release": {
            "storage": RELEASE_STORAGE,
            "signer_secret": RELEASE_SIGNER_SECRET,
            "charts": RELEASE_CHARTS,
            "jwt": RELEASE_JWT,
            "jwt_key": RELEASE_JWT_KEY,
            "list": RELEASE_LIST,
        },
        "steps": steps,
        "states": {
            "pending": state::PENDING,
            "running": state::RUNNING,
            "done": state::DONE,
            "skipped": state::SKIPPED,
            "waiting": state::WAITING,
            "failed": state::FAILED,
            "retrying": state::RETRYING,
        },
        "settled": SETTLED,
        "status_message_max": STATUS_MESSAGE_MAX,
        "no_message": NO_MESSAGE,
        "calico_interfaces": CALICO_INTERFACES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script pastes the names unquoted into shell words and function
    /// names (`step_<name>`, `-` as `_`).
    #[test]
    fn step_names_are_plain_shell_words() {
        for s in STEPS {
            assert!(
                !s.name.is_empty()
                    && s.name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                s.name
            );
            assert!(s.local || s.online, "{} never runs", s.name);
        }
    }

    /// A status line reads back as the script writes it: the message is
    /// the rest of the line, spaces and all; `-` is no message; without a
    /// step and a state it is no status line.
    #[test]
    fn status_lines_parse_as_the_script_writes_them() {
        assert_eq!(
            StatusLine::parse(
                "apt-update retrying 3 1764780000 no package index reachable (offline?)"
            ),
            Some(StatusLine {
                step: "apt-update".into(),
                state: state::RETRYING.into(),
                attempts: 3,
                time: 1764780000,
                message: Some("no package index reachable (offline?)".into()),
            })
        );
        let pending = StatusLine::parse("release pending 0 0 -").unwrap();
        assert_eq!((pending.attempts, pending.message), (0, None));
        for bad in ["", "ssh", " done 1 1 -"] {
            assert_eq!(StatusLine::parse(bad), None, "{bad:?}");
        }
        let damaged = StatusLine::parse("ssh done x").unwrap();
        assert_eq!(
            (
                damaged.state.as_str(),
                damaged.attempts,
                damaged.time,
                damaged.message
            ),
            (state::DONE, 0, 0, None)
        );
    }

    #[test]
    fn every_role_has_its_steps() {
        assert_eq!(
            local(Role::Nfs),
            ["ssh", "firewall", "chrony", "nfs-exports"]
        );
        assert_eq!(local(Role::Worker), ["ssh", "firewall", "chrony"]);
        assert_eq!(
            online(Role::Master),
            [
                "forget-seed",
                "apt-update",
                "apt-upgrade",
                "packages",
                "firewall",
                "chrony",
                "microk8s",
                "microk8s-launch",
                "release"
            ]
        );
        assert!(!all(Role::Worker).contains(&"release"));
        let joining = Duty {
            role: Role::Master,
            first_master: false,
        };
        assert!(!all(joining).contains(&"release"));
        assert!(all(joining).contains(&"microk8s-launch"));
        assert!(!all(Role::Nfs).contains(&"microk8s"));
    }
}

//! The probe: what boot-test adds to each machine's test seed (as
//! vendor-data) to see inside it, and the settings it gets.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::diag::{Diagnostic, Kind};
use anyhow::{bail, Context, Result};
use serde_json::json;

use super::checks::written_files;
use crate::render::Seed;
use crate::secrets::Secrets;
use crate::validate::{MachineSpec, Role, Spec};

pub const PROBE: &str = include_str!("../../qemu/probe.sh");

/// The vendor-data that installs the probe (a template).
const VENDOR_DATA: &str = include_str!("../../qemu/probe-vendor-data.sh");

/// How long the probe waits for the first attempt of the internet-bound steps.
const ONLINE_WAIT_SECS: u32 = 240;

/// The machine's seed ISO with the probe added as vendor-data.
pub(super) fn test_seed(
    spec: &Spec,
    m: &MachineSpec,
    seed: &Seed,
    probe: &ProbeSettings,
) -> Result<Vec<u8>> {
    crate::iso::seed_iso_with(
        seed,
        &[("vendor-data", &probe_vendor_data(spec, m, seed, probe)?)],
    )
}

/// What the probes need beyond the profile: every machine's public host key
/// (to pin it when one logs in to the next) and the optional login key.
#[derive(Debug, Clone, Default)]
pub struct ProbeSettings {
    pub host_keys: BTreeMap<String, String>,
    /// A throwaway private key (OpenSSH format) authorized in the profile.
    pub login_key: Option<String>,
    /// Per machine: strings of the secrets its seed carried (a line of the
    /// host key, the join token, the JWT, the signer database's password),
    /// to look for after first boot.
    pub secret_markers: BTreeMap<String, Vec<String>>,
    /// The signer database's password, for the first master's probe to log
    /// in to it on the NFS server as Web3Signer will.
    pub signer_db_password: Option<String>,
    /// Also report where the first boot's time went (cloud-init's module
    /// times), for scripts/bench-boot.
    pub timings: bool,
}

impl ProbeSettings {
    pub fn new(spec: &Spec, secrets: &Secrets, login_key: Option<String>) -> ProbeSettings {
        let host_keys = spec
            .machines
            .iter()
            .filter_map(|m| {
                let key = secrets.machine(&m.name).ok()?.public_key().ok()?;
                Some((
                    m.name.clone(),
                    key.split_whitespace().take(2).collect::<Vec<_>>().join(" "),
                ))
            })
            .collect();
        let secret_markers = spec
            .machines
            .iter()
            .map(|m| {
                let mut markers = Vec::new();
                if let Ok(host) = secrets.machine(&m.name) {
                    // The base64 line that holds the private scalar: the
                    // lines before it are a header every ed25519 key shares
                    // (the probe's own login key too) and the public key.
                    markers.extend(host.ssh_host_ed25519_key.lines().nth(4).map(str::to_string));
                }
                if m.role.is_kubernetes() {
                    markers.push(secrets.microk8s_join_token.clone());
                }
                if m.role == Role::Master {
                    markers.extend(secrets.jwt_secret.clone());
                }
                if crate::resolve::holds_signer_db(spec, m) {
                    markers.extend(secrets.signer_db_password.clone());
                }
                (m.name.clone(), markers)
            })
            .collect();
        ProbeSettings {
            host_keys,
            login_key,
            signer_db_password: secrets.signer_db_password.clone(),
            secret_markers,
            timings: false,
        }
    }
}

/// `marker` as the probe receives it: letters rotated by 13, digits by 5
/// (its own inverse; the probe undoes it with `tr`), so the vendor-data that
/// carries the probe holds no copy of a secret it looks for.
fn rotate(marker: &str) -> String {
    marker
        .chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a') + 13) % 26 + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A') + 13) % 26 + b'A') as char,
            '0'..='9' => (((c as u8 - b'0') + 5) % 10 + b'0') as char,
            other => other,
        })
        .collect()
}

/// Reads `--login-key`: an unencrypted OpenSSH private key whose public half
/// is one of `ssh.authorized_keys` (else no probe could log in with it).
pub fn read_login_key(path: &Path, spec: &Spec) -> Result<String> {
    const MAX: u64 = 64 * 1024;
    let shown = path.display();
    let unreadable = |e: std::io::Error| -> anyhow::Error {
        Diagnostic::new(Kind::Usage, format!("cannot read it: {e}"))
            .at(format!("--login-key {shown}"))
            .hint("give the path of a throwaway private key (ssh-keygen -t ed25519 -N '' -f KEY)")
            .into()
    };
    let meta = fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() || meta.len() > MAX {
        bail!(Diagnostic::new(
            Kind::Usage,
            "not a private key file (a regular file of at most 64 KiB)"
        )
        .at(format!("--login-key {shown}"))
        .hint("make a throwaway one with ssh-keygen -t ed25519 -N '' -f KEY"));
    }
    let text = fs::read_to_string(path).map_err(unreadable)?;
    let key = ssh_key::PrivateKey::from_openssh(&text).map_err(|_| {
        anyhow::Error::new(
            Diagnostic::new(Kind::Usage, "not an OpenSSH private key")
                .at(format!("--login-key {shown}"))
                .hint("make a throwaway one with ssh-keygen -t ed25519 -N '' -f KEY"),
        )
    })?;
    if key.is_encrypted() {
        bail!(Diagnostic::new(
            Kind::Usage,
            "the key has a passphrase; the probe cannot use it"
        )
        .at(format!("--login-key {shown}"))
        .hint("a throwaway key without one: ssh-keygen -t ed25519 -N '' -f KEY"));
    }
    let public = key
        .public_key()
        .to_openssh()
        .context("--login-key: cannot encode its public key")?;
    let authorized = spec.ssh.authorized_keys.iter().any(|k| {
        k.split_whitespace()
            .take(2)
            .eq(public.split_whitespace().take(2))
    });
    if !authorized {
        bail!(Diagnostic::new(
            Kind::Usage,
            "its public key is not in the profile's ssh.authorized_keys"
        )
        .at(format!("--login-key {shown}"))
        .hint(format!(
            "add the content of {shown}.pub there (a throwaway key: it is copied into the test machines)"
        )));
    }
    Ok(text)
}

/// The machine whose sshd `m`'s probe tries: the next one in the profile, so
/// every machine is tried once, from another machine, through its firewall.
pub fn ssh_target<'a>(spec: &'a Spec, m: &MachineSpec) -> Option<&'a MachineSpec> {
    let at = spec.machines.iter().position(|x| x.name == m.name)?;
    let next = &spec.machines[(at + 1) % spec.machines.len()];
    (next.name != m.name).then_some(next)
}

/// The first master's probe logs in to the signer's database on the NFS
/// server, over the cluster network and through the server's firewall, as
/// Web3Signer will: its address, port, database, role, (rotated, like the
/// markers) password and the version the migrations end at. The NFS
/// server's probe waits for its signer-db step. None with the local signer.
fn signer_db_env(
    spec: &Spec,
    m: &MachineSpec,
    probe: &ProbeSettings,
) -> Vec<(&'static str, String)> {
    let nfs = spec.nfs_server();
    if crate::resolve::holds_signer_db(spec, m) {
        return vec![("PROBE_AWAIT", "signer-db".into())];
    }
    let (true, true, Some(password)) = (
        spec.is_first_master(m),
        crate::resolve::holds_signer_db(spec, nfs),
        probe.signer_db_password.as_deref(),
    ) else {
        return Vec::new();
    };
    use crate::staking::{SIGNER_DB_NAME, SIGNER_DB_PORT, SIGNER_DB_USER};
    vec![
        ("PROBE_SIGNER_DB_HOST", nfs.ip.to_string()),
        ("PROBE_SIGNER_DB_PORT", SIGNER_DB_PORT.to_string()),
        ("PROBE_SIGNER_DB_NAME", SIGNER_DB_NAME.to_string()),
        ("PROBE_SIGNER_DB_USER", SIGNER_DB_USER.to_string()),
        ("PROBE_SIGNER_DB_PASSWORD", rotate(password)),
        (
            "PROBE_SIGNER_DB_VERSION",
            crate::staking::WEB3SIGNER_DB_VERSION.to_string(),
        ),
    ]
}

/// The vendor-data that installs and starts the probe on a test machine.
pub fn probe_vendor_data(
    spec: &Spec,
    m: &MachineSpec,
    seed: &Seed,
    probe: &ProbeSettings,
) -> Result<String> {
    // The machines its /etc/hosts lists, by name (a worker's: the masters
    // and the NFS server).
    let peers: Vec<&str> = spec
        .hosts_of(m)
        .filter(|x| x.name != m.name)
        .map(|x| x.name.as_str())
        .collect();
    let workers: Vec<&str> = spec
        .by_role(Role::Worker)
        .map(|x| x.name.as_str())
        .collect();
    let target = ssh_target(spec, m);
    // The payload (validator keys, the release) by the start of its encoded
    // content, as every copy of the user-data holds it.
    let markers: Vec<String> = probe
        .secret_markers
        .get(&m.name)
        .into_iter()
        .flatten()
        .cloned()
        .chain(
            seed.write_files()
                .into_iter()
                .filter(|f| f.path.starts_with("/var/lib/nodeimg/"))
                .map(|f| f.content.chars().take(48).collect()),
        )
        .filter(|m: &String| m.len() >= 16)
        .map(|m| rotate(&m))
        .collect();
    // The staking payload is checked on its own (and mostly moved or large).
    let files: Vec<String> = written_files(seed)
        .into_keys()
        .filter(|p| !p.starts_with("/var/lib/nodeimg/"))
        .collect();
    let env = [
        ("PROBE_HOST", m.name.clone()),
        ("PROBE_ROLE", m.role.as_str().to_string()),
        ("PROBE_PEERS", peers.join(" ")),
        ("PROBE_WORKERS", workers.join(" ")),
        ("PROBE_NFS_IP", spec.nfs_server().ip.to_string()),
        (
            "PROBE_EXPORT_ROOT",
            spec.nfs.export_root.trim_end_matches('/').to_string(),
        ),
        ("PROBE_FOLDERS", spec.nfs.folders.join(" ")),
        (
            "PROBE_FOLDER",
            spec.nfs.folders.first().cloned().unwrap_or_default(),
        ),
        ("PROBE_UID", spec.nfs.uid.to_string()),
        ("PROBE_GID", spec.nfs.gid.to_string()),
        ("PROBE_SSH_PORT", spec.ssh.port.to_string()),
        ("PROBE_SSH_USER", spec.ssh.user.clone()),
        (
            "PROBE_SSH_TARGET",
            target.map(|t| t.ip.to_string()).unwrap_or_default(),
        ),
        (
            "PROBE_SSH_TARGET_KEY",
            target
                .and_then(|t| probe.host_keys.get(&t.name))
                .cloned()
                .unwrap_or_default(),
        ),
        ("PROBE_FILES", files.join(" ")),
        ("PROBE_ONLINE_WAIT", ONLINE_WAIT_SECS.to_string()),
        ("PROBE_MARKERS", markers.join(" ")),
        ("PROBE_TIMINGS", u8::from(probe.timings).to_string()),
    ]
    .into_iter()
    .chain(signer_db_env(spec, m, probe))
    .collect::<Vec<_>>()
    .iter()
    .map(|(name, value)| json!({ "name": name, "value": value }))
    .collect::<Vec<_>>();
    let ctx = json!({
        "login_key": probe.login_key.as_deref().map(str::trim_end),
        "env": env,
        "probe": PROBE,
    });
    crate::render::render_own_sh("qemu/probe-vendor-data.sh", VENDOR_DATA, &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_pings_the_machines_its_hosts_file_lists() {
        let text = include_str!("../../profiles/tutorial.yaml").replace(
            "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n",
            "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n  - {name: worker-2, role: worker, ip: 172.20.10.13}\n",
        );
        let spec = crate::checked_spec(&text);
        let secrets = crate::secrets::Secrets::generate(&spec).unwrap();
        let engine = crate::render::Engine::new(None).unwrap();
        let seeds =
            crate::render_seeds(&spec, &secrets, &engine, &[], &Default::default()).unwrap();
        let peers_of = |name: &str| {
            let m = spec.machine(name).unwrap();
            let seed = &seeds.iter().find(|(n, _)| n == name).unwrap().1;
            let vendor = probe_vendor_data(&spec, m, seed, &ProbeSettings::default()).unwrap();
            let line = vendor
                .lines()
                .find(|l| l.starts_with("PROBE_PEERS="))
                .unwrap()
                .to_string();
            line
        };
        assert_eq!(peers_of("worker-1"), "PROBE_PEERS='nfs master'");
        assert_eq!(peers_of("master"), "PROBE_PEERS='nfs worker-1 worker-2'");
    }

    #[test]
    fn a_host_key_marker_is_private_to_that_key() {
        // A marker found in another key (the probe's login key) or in the
        // public key would report a leak that is none.
        let v =
            crate::load_profile_str("h.yaml", include_str!("../../profiles/hoodi.yaml")).unwrap();
        let spec = v.spec;
        let secrets = Secrets::generate(&spec).unwrap();
        let other = Secrets::generate(&spec).unwrap();
        let probe = ProbeSettings::new(&spec, &secrets, None);
        for m in &spec.machines {
            let own = secrets.machine(&m.name).unwrap();
            let marker = &probe.secret_markers[&m.name][0];
            assert!(own.ssh_host_ed25519_key.contains(marker.as_str()));
            assert!(marker.len() >= 40, "{marker}");
            for key in other.machines.values() {
                assert!(!key.ssh_host_ed25519_key.contains(marker.as_str()));
            }
            assert!(!own.public_key().unwrap().contains(marker.as_str()));
        }
    }
}

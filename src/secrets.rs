//! The secrets file: the MicroK8s join token and each machine's SSH host
//! key. Created once (mode 0600), reused after, extended when a machine is
//! added, never rotated by nodeimg. Its values never appear in messages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::diag::{Diagnostic, Kind};
use crate::validate::Spec;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    pub version: u32,
    pub microk8s_join_token: String,
    /// The Engine API secret shared by the execution client and the beacon
    /// node (32 bytes, hex); made when the profile has a staking section.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// The remote signer's PostgreSQL password (24 bytes, hex); made when
    /// the profile's signer is web3signer.
    #[serde(default)]
    pub signer_db_password: Option<String>,
    #[serde(default)]
    pub machines: BTreeMap<String, MachineSecrets>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSecrets {
    /// OpenSSH private key text.
    pub ssh_host_ed25519_key: String,
    /// The public half, once derived (a scalar multiplication per machine:
    /// reading the file derives it to check the key, rendering needs it).
    #[serde(skip)]
    public: std::sync::OnceLock<String>,
}

impl PartialEq for MachineSecrets {
    fn eq(&self, other: &Self) -> bool {
        self.ssh_host_ed25519_key == other.ssh_host_ed25519_key
    }
}
impl Eq for MachineSecrets {}

impl MachineSecrets {
    fn new(ssh_host_ed25519_key: String) -> MachineSecrets {
        MachineSecrets {
            ssh_host_ed25519_key,
            public: std::sync::OnceLock::new(),
        }
    }

    /// The public half, as an authorized_keys / known_hosts line.
    pub fn public_key(&self) -> Result<String> {
        if let Some(public) = self.public.get() {
            return Ok(public.clone());
        }
        let key = PrivateKey::from_openssh(&self.ssh_host_ed25519_key)
            .context("a host key in the secrets file is damaged")?;
        self.remember(&key)
    }

    fn remember(&self, key: &PrivateKey) -> Result<String> {
        let public = key
            .public_key()
            .to_openssh()
            .context("could not encode a host public key")?;
        Ok(self.public.get_or_init(|| public).clone())
    }
}

/// What `load_or_generate` added, for a one-line notice.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub created: bool,
    pub new_machines: Vec<String>,
    pub new_jwt: bool,
    pub new_signer_db_password: bool,
}

impl Changes {
    /// Whether the secrets file must be (re)written.
    pub fn any(&self) -> bool {
        self.created || !self.new_machines.is_empty() || self.new_jwt || self.new_signer_db_password
    }
}

/// The default secrets path: `<profile dir>/<profile stem>.secrets.yaml`.
pub fn default_path(profile: &Path) -> PathBuf {
    let stem = profile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".into());
    profile.with_file_name(format!("{stem}.secrets.yaml"))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

pub(crate) fn new_host_key(machine: &str) -> Result<MachineSecrets> {
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .context("could not generate an SSH host key")?;
    key.set_comment(format!("root@{machine}"));
    let text = key
        .to_openssh(LineEnding::LF)
        .context("could not encode an SSH host key")?;
    let machine = MachineSecrets::new(text.to_string());
    machine.remember(&key)?;
    Ok(machine)
}

impl Secrets {
    /// Fresh secrets for every machine of `spec` (CSPRNG).
    pub fn generate(spec: &Spec) -> Result<Secrets> {
        let mut s = Secrets {
            version: 1,
            // `microk8s add-node` makes 32 lowercase hex characters too.
            microk8s_join_token: random_hex(16),
            jwt_secret: None,
            signer_db_password: None,
            machines: BTreeMap::new(),
        };
        s.add_missing(spec)?;
        s.add_jwt(spec);
        s.add_signer_db_password(spec);
        Ok(s)
    }

    /// Adds host keys for machines that have none; returns their names.
    pub fn add_missing(&mut self, spec: &Spec) -> Result<Vec<String>> {
        let mut added = Vec::new();
        for m in &spec.machines {
            if !self.machines.contains_key(&m.name) {
                self.machines.insert(m.name.clone(), new_host_key(&m.name)?);
                added.push(m.name.clone());
            }
        }
        Ok(added)
    }

    /// Makes the JWT secret if the profile stakes and there is none yet;
    /// returns whether it did.
    pub fn add_jwt(&mut self, spec: &Spec) -> bool {
        if spec.staking.is_some() && self.jwt_secret.is_none() {
            self.jwt_secret = Some(random_hex(32));
            return true;
        }
        false
    }

    /// Makes the signer database's password if the profile's signer has a
    /// database and there is none yet; returns whether it did.
    pub fn add_signer_db_password(&mut self, spec: &Spec) -> bool {
        let wants = spec.signer_db().is_some();
        if wants && self.signer_db_password.is_none() {
            self.signer_db_password = Some(random_hex(24));
            return true;
        }
        false
    }

    /// The signer database's password (made with the remote signer).
    pub fn signer_db_password(&self) -> Result<&str> {
        self.signer_db_password
            .as_deref()
            .context("internal: a remote signer's secrets have no database password")
    }

    /// The JWT secret (a staking profile's secrets always have one).
    pub fn jwt(&self) -> Result<&str> {
        self.jwt_secret
            .as_deref()
            .context("internal: a staking profile's secrets have no JWT secret")
    }

    pub fn machine(&self, name: &str) -> Result<&MachineSecrets> {
        self.machines
            .get(name)
            .with_context(|| format!("the secrets file has no host key for machine {name}"))
    }

    /// Every secret value, for masking output.
    pub fn values(&self) -> Vec<String> {
        let mut v = vec![self.microk8s_join_token.clone()];
        v.extend(self.jwt_secret.clone());
        v.extend(self.signer_db_password.clone());
        v.extend(
            self.machines
                .values()
                .map(|m| m.ssh_host_ed25519_key.clone()),
        );
        v
    }

    /// Reads and checks a secrets file, with the host keys of the machines
    /// in `only` (empty: every machine; a build of a few machines decodes only
    /// theirs). Messages name the file and line but never quote its content.
    pub fn read(path: &Path, only: &[String]) -> Result<Secrets> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secrets file {}", path.display()))?;
        let options = serde_saphyr::options! { with_snippet: false };
        let s: Secrets = match serde_saphyr::from_str_with_options(&text, options) {
            Ok(s) => s,
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                bail!(Diagnostic::new(Kind::Secrets, "the secrets file is damaged (it is not in the form nodeimg writes)")
                    .at(format!("{}{at}", path.display()))
                    .hint("restore it from your backup; deleting it makes new secrets, and machines built with the old ones will not join or will show new host keys"));
            }
        };
        if s.version != 1 {
            bail!(Diagnostic::new(
                Kind::Secrets,
                format!(
                    "secrets file version {} is not supported by this nodeimg",
                    s.version
                )
            )
            .at(path.display())
            .hint("use the nodeimg that wrote it, or restore a version 1 file from your backup"));
        }
        let token_ok = s.microk8s_join_token.len() >= 32
            && s.microk8s_join_token
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
        if !token_ok {
            bail!(Diagnostic::new(
                Kind::Secrets,
                "microk8s_join_token must be at least 32 lowercase letters and digits"
            )
            .at(path.display())
            .hint("restore the file from your backup"));
        }
        // Hex of the length nodeimg makes (the password is pasted into SQL).
        for (key, value, bytes) in [
            ("jwt_secret", &s.jwt_secret, 32),
            ("signer_db_password", &s.signer_db_password, 24),
        ] {
            let Some(v) = value else { continue };
            if v.len() != 2 * bytes || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(Diagnostic::new(
                    Kind::Secrets,
                    format!("{key} must be {} hex digits ({bytes} bytes)", 2 * bytes)
                )
                .at(path.display())
                .hint("restore the file from your backup"));
            }
        }
        // Decoding checks each key's public half: on every core.
        let machines: Vec<_> = s
            .machines
            .iter()
            .filter(|(name, _)| only.is_empty() || only.contains(name))
            .collect();
        let usable = crate::io::on_every_core(&machines, |(_, m)| {
            matches!(PrivateKey::from_openssh(&m.ssh_host_ed25519_key),
                Ok(k) if k.algorithm() == Algorithm::Ed25519 && !k.is_encrypted()
                    && m.remember(&k).is_ok())
        });
        for ((name, _), usable) in machines.iter().zip(usable) {
            match usable {
                true => {}
                false => bail!(Diagnostic::new(Kind::Secrets, format!("the SSH host key of machine {name} is not an unencrypted ed25519 private key"))
                    .at(path.display())
                    .hint("restore the file from your backup, or delete that machine's entry to give it a new host key")),
            }
        }
        Ok(s)
    }

    /// The file text. Stable: the same secrets give the same bytes.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        out.push_str("# nodeimg secrets. Keep this file private (mode 0600) and backed up:\n");
        out.push_str(
            "# a machine rebuilt with it keeps its SSH host key and rejoins the cluster.\n",
        );
        let _ = writeln!(out, "version: {}", self.version);
        let _ = writeln!(out, "microk8s_join_token: \"{}\"", self.microk8s_join_token);
        if let Some(jwt) = &self.jwt_secret {
            let _ = writeln!(out, "jwt_secret: \"{jwt}\"");
        }
        if let Some(pw) = &self.signer_db_password {
            let _ = writeln!(out, "signer_db_password: \"{pw}\"");
        }
        out.push_str("machines:\n");
        for (name, m) in &self.machines {
            let _ = writeln!(out, "  {name}:");
            out.push_str("    ssh_host_ed25519_key: |\n");
            for line in m.ssh_host_ed25519_key.lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
        out
    }

    /// Writes the file with mode 0600, atomically; `path` is the file
    /// itself (see [`resolve_path`]), so a link to it stays a link.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write::write_private_atomic_as(
            path,
            self.to_yaml().as_bytes(),
            crate::output::SECRETS_TMP_PREFIX,
        )
        .with_context(|| format!("cannot write the secrets file {}", path.display()))
    }
}

/// The file behind `path`: a symbolic link is followed (nodeimg reads and
/// writes its target); a link to nothing is an error, not new secrets.
pub fn resolve_path(path: &Path) -> Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(|_| {
            let target = std::fs::read_link(path).unwrap_or_default();
            anyhow::Error::new(
                Diagnostic::new(
                    Kind::Secrets,
                    format!(
                        "the secrets file is a symbolic link to {}, which does not exist",
                        target.display()
                    ),
                )
                .at(path.display())
                .hint("fix the link (is the drive with your secrets mounted?); nodeimg makes new secrets only where there is no file and no link"),
            )
        }),
        _ => Ok(path.to_path_buf()),
    }
}

/// Refuses a secrets file that others could read or that is not the
/// user's: its keys would already be exposed, or not be the user's to use.
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the secrets file {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            Diagnostic::new(Kind::Secrets, "the secrets file is not a regular file")
                .at(path.display())
                .hint("point --secrets at the file nodeimg wrote")
        );
    }
    let me = crate::io::euid();
    if meta.uid() != me {
        bail!(Diagnostic::new(Kind::Secrets, format!("the secrets file belongs to uid {}, not to you (uid {me}), so someone else controls the cluster's keys", meta.uid()))
            .at(path.display())
            .hint(format!("if it is yours, `chown {me} {}`; else restore your own copy", path.display())));
    }
    if meta.mode() & 0o077 != 0 {
        bail!(Diagnostic::new(
            Kind::Secrets,
            format!(
                "the secrets file can be read by other users (mode {:04o})",
                meta.mode() & 0o7777
            )
        )
        .at(path.display())
        .hint(format!(
            "`chmod 600 {}`, and treat the join token and host keys as exposed if others had access",
            path.display()
        )));
    }
    Ok(())
}

/// Removes temporary secrets files that a killed run left in the secrets
/// file's folder. Call only while holding that folder's lock, when no other
/// nodeimg can be writing there.
pub fn sweep_stale_temporaries(path: &Path) {
    let Ok(entries) = std::fs::read_dir(crate::io::write::parent_of(path)) else {
        return;
    };
    for e in entries.flatten() {
        let regular = std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_file());
        if regular
            && e.file_name()
                .to_string_lossy()
                .starts_with(crate::output::SECRETS_TMP_PREFIX)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Reads the secrets file machines were built with, making nothing: for the
/// commands that talk to built machines and must know their keys.
pub fn load_existing(path: &Path) -> Result<Secrets> {
    let path = &resolve_path(path)?;
    if !path.exists() {
        bail!(Diagnostic::new(Kind::Secrets, "there is no secrets file here")
            .at(path.display())
            .hint("give the secrets file the machines were built with (--secrets): it holds their host keys, which nodeimg pins"));
    }
    check_private(path)?;
    let secrets = Secrets::read(path, &[])?;
    crate::redact::register(&secrets.values());
    Ok(secrets)
}

/// Loads the secrets file, or makes new secrets if there is none, and adds
/// host keys for machines that have none; checks the host keys of the
/// machines in `only` (empty: every machine). Writes nothing: the caller
/// saves the result (see [`Changes`]) once the build has succeeded.
pub fn load_or_generate(path: &Path, spec: &Spec, only: &[String]) -> Result<(Secrets, Changes)> {
    let mut changes = Changes::default();
    let path = &resolve_path(path)?;
    let secrets = if path.exists() {
        check_private(path)?;
        let mut s = Secrets::read(path, only)?;
        changes.new_machines = s.add_missing(spec)?;
        changes.new_jwt = s.add_jwt(spec);
        changes.new_signer_db_password = s.add_signer_db_password(spec);
        s
    } else {
        changes.created = true;
        Secrets::generate(spec)?
    };
    crate::redact::register(&secrets.values());
    Ok((secrets, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::checked_spec as spec;

    fn tutorial() -> Spec {
        spec(include_str!("../profiles/tutorial.yaml"))
    }

    #[test]
    fn generated_secrets_have_the_forms_their_readers_demand_and_are_random() {
        let spec = tutorial();
        let a = Secrets::generate(&spec).unwrap();
        let b = Secrets::generate(&spec).unwrap();
        // microk8s join tokens: 32 lowercase hex characters, as add-node makes.
        assert_eq!(a.microk8s_join_token.len(), 32);
        assert!(a
            .microk8s_join_token
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a.microk8s_join_token, b.microk8s_join_token);
        // No staking section: no JWT.
        assert_eq!(a.jwt_secret, None);
        let names: Vec<&String> = a.machines.keys().collect();
        let wanted: Vec<&String> = spec.machines.iter().map(|m| &m.name).collect();
        assert_eq!(names.len(), wanted.len());
        let mut keys = std::collections::BTreeSet::new();
        for (name, m) in &a.machines {
            let key = PrivateKey::from_openssh(&m.ssh_host_ed25519_key).unwrap();
            assert_eq!(key.algorithm(), Algorithm::Ed25519);
            assert!(!key.is_encrypted());
            assert_eq!(key.comment(), format!("root@{name}"));
            assert!(
                keys.insert(m.ssh_host_ed25519_key.clone()),
                "{name}: key repeated"
            );
            assert_ne!(m, &b.machines[name]);
        }
    }

    #[test]
    fn a_staking_profile_gets_a_32_byte_jwt_once() {
        let spec = spec(include_str!("../profiles/hoodi.yaml"));
        let mut s = Secrets::generate(&spec).unwrap();
        let jwt = s.jwt().unwrap().to_string();
        assert_eq!(jwt.len(), 64);
        assert!(jwt.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!s.add_jwt(&spec), "a second JWT replaced the first");
        assert_eq!(s.jwt().unwrap(), jwt);
    }

    #[test]
    fn the_remote_signer_gets_a_database_password_once() {
        let local = spec(include_str!("../profiles/hoodi.yaml"));
        assert_eq!(Secrets::generate(&local).unwrap().signer_db_password, None);
        let remote = spec(&include_str!("../profiles/hoodi.yaml").replace(
            "  doppelganger: true\n",
            "  doppelganger: true\n  signer: web3signer\n",
        ));
        let mut s = Secrets::generate(&local).unwrap();
        assert!(
            s.add_signer_db_password(&remote),
            "added when the signer changes"
        );
        let pw = s.signer_db_password().unwrap().to_string();
        assert_eq!(pw.len(), 48);
        assert!(pw.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(
            !s.add_signer_db_password(&remote),
            "a second one replaced the first"
        );
        assert!(s.values().contains(&pw), "masked in output");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.secrets.yaml");
        s.write(&path).unwrap();
        assert_eq!(
            Secrets::read(&path, &[]).unwrap().signer_db_password,
            Some(pw)
        );
        std::fs::write(
            &path,
            s.to_yaml()
                .replace("signer_db_password: \"", "signer_db_password: \"zz"),
        )
        .unwrap();
        let err = format!("{:#}", Secrets::read(&path, &[]).unwrap_err());
        assert!(
            err.contains("signer_db_password must be 48 hex digits"),
            "{err}"
        );
    }

    #[test]
    fn the_file_reads_back_as_written_and_writes_the_same_bytes() {
        let s = Secrets::generate(&tutorial()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.secrets.yaml");
        s.write(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = Secrets::read(&path, &[]).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.to_yaml(), std::fs::read_to_string(&path).unwrap());
    }

    #[test]
    fn a_new_machine_gets_a_key_and_the_others_keep_theirs() {
        let spec = tutorial();
        let mut s = Secrets::generate(&spec).unwrap();
        let before = s.clone();
        let removed = s.machines.pop_last().unwrap().0;
        let added = s.add_missing(&spec).unwrap();
        assert_eq!(added, std::slice::from_ref(&removed));
        for (name, m) in &before.machines {
            if *name != removed {
                assert_eq!(&s.machines[name], m, "{name} got a new key");
            }
        }
        assert_ne!(s.machines[&removed], before.machines[&removed]);
        assert_eq!(s.add_missing(&spec).unwrap(), Vec::<String>::new());
    }

    /// A damaged file is refused with its path and line, and no message
    /// quotes what the file holds.
    #[test]
    fn damaged_files_are_refused_without_quoting_them() {
        let good = Secrets::generate(&tutorial()).unwrap().to_yaml();
        let token = good
            .lines()
            .find_map(|l| l.strip_prefix("microk8s_join_token: "))
            .unwrap()
            .trim_matches('"')
            .to_string();
        let key_line = good
            .lines()
            .find(|l| l.starts_with("      ") && !l.contains("OPENSSH"))
            .unwrap()
            .trim()
            .to_string();
        let cases = [
            (
                good.replace("version: 1", "version: 2"),
                "version 2 is not supported",
            ),
            (good.replace(&token, &token[..20]), "at least 32 lowercase"),
            (
                good.replace("machines:", "jwt_secret: \"abc\"\nmachines:"),
                "jwt_secret must be 64 hex digits",
            ),
            (
                good.replace(&key_line, "AAAA"),
                "is not an unencrypted ed25519",
            ),
            (
                good.replace("version: 1", &format!("version: 1\nextra: {token}")),
                "damaged",
            ),
            (format!("{good}\n  : : [{key_line}"), "damaged"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.secrets.yaml");
        for (text, expected) in cases {
            std::fs::write(&path, &text).unwrap();
            let message = format!("{:#}", Secrets::read(&path, &[]).unwrap_err());
            assert!(message.contains(expected), "{expected}: {message}");
            assert!(
                message.starts_with(&path.display().to_string()),
                "{message}"
            );
            assert!(!message.contains(&token[..16]), "{message}");
            assert!(!message.contains(&key_line[..16]), "{message}");
        }
    }

    /// A build of some machines decodes only their host keys: a damaged key
    /// of another machine stops the builds that use it, not this one.
    #[test]
    fn only_the_selected_machines_keys_are_decoded() {
        let mut s = Secrets::generate(&tutorial()).unwrap();
        s.machines.insert(
            "master".into(),
            MachineSecrets::new(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
            ),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.secrets.yaml");
        s.write(&path).unwrap();
        let worker = Secrets::read(&path, &["worker-1".into()]).unwrap();
        assert_eq!(worker.machines, s.machines);
        assert!(worker.machine("worker-1").unwrap().public_key().is_ok());
        for only in [vec![], vec!["master".to_string()]] {
            let message = format!("{:#}", Secrets::read(&path, &only).unwrap_err());
            assert!(
                message.contains("machine master is not an unencrypted ed25519"),
                "{message}"
            );
        }
    }

    #[test]
    fn the_default_path_is_beside_the_profile() {
        assert_eq!(
            default_path(Path::new("/x/y/cluster.yaml")),
            Path::new("/x/y/cluster.secrets.yaml")
        );
    }
}

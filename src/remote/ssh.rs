//! The system's OpenSSH client, told to trust exactly the host key nodeimg
//! made for each machine: a pinned known_hosts in a private folder, strict
//! checking, and the machine's name as the key's alias, so that an
//! `--address` override (a jump host's forward, a test's port) is checked
//! against the same key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::diag::{Diagnostic, Kind};
use crate::io::process::{run_with_deadline, Finished};
use crate::secrets::Secrets;
use crate::validate::Spec;

/// The largest output kept from one remote command (a status report is a
/// few KiB; a machine that floods is cut, not believed).
pub const MAX_OUTPUT: usize = 4 << 20;

/// The pinned known_hosts: one line a machine, `NAME ssh-ed25519 KEY`, in
/// a folder only the user can read, removed when this is dropped.
pub struct Pinned {
    dir: tempfile::TempDir,
}

impl Pinned {
    /// The host keys of `machines` from the secrets file.
    pub fn new(secrets: &Secrets, machines: &[&str]) -> Result<Pinned> {
        let mut lines = String::new();
        for name in machines {
            let m = secrets.machine(name).map_err(|_| {
                Diagnostic::new(
                    Kind::Secrets,
                    format!("the secrets file has no host key for machine {name}"),
                )
                .hint("nodeimg knows a machine's host key only if it built the machine's seed with this secrets file: give that file with --secrets")
            })?;
            let key = m.public_key()?;
            let key: Vec<&str> = key.split_whitespace().take(2).collect();
            lines.push_str(&format!("{name} {}\n", key.join(" ")));
        }
        // tempfile makes the folder 0700; the file is made 0600 before a
        // key is written to it.
        let dir = tempfile::Builder::new()
            .prefix("nodeimg-known-hosts-")
            .tempdir()
            .context("cannot make a private folder for the pinned host keys")?;
        let file = dir.path().join("known_hosts");
        // ssh splits UserKnownHostsFile on blanks and expands `%` and `~`.
        let shown = file.to_string_lossy();
        if shown.contains(|c: char| c.is_whitespace() || matches!(c, '%' | '~' | '"' | '\\')) {
            return Err(Diagnostic::new(
                Kind::Usage,
                "the temporary folder's path has a blank, `%`, `~`, `\"` or `\\`, which ssh would read as several files or expand",
            )
            .at(dir.path().display())
            .hint("set TMPDIR to a folder with a plain path, e.g. TMPDIR=/tmp")
            .into());
        }
        crate::io::interrupt::remove_on_interrupt(dir.path().to_path_buf());
        crate::io::write::write_private_atomic(&file, lines.as_bytes())
            .context("cannot write the pinned host keys")?;
        Ok(Pinned { dir })
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // TempDir removes the folder itself.
        crate::io::interrupt::forget(self.dir.path());
    }
}

/// Where one machine is reached: its profile address and ssh.port, or an
/// `--address` override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub machine: String,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the connection went, when it did not run the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The machine presented another host key than nodeimg made for it.
    HostKeyMismatch,
    /// No answer (refused, no route, timed out): off, or not there.
    Unreachable(String),
    /// Reached sshd, which took none of the user's keys.
    NotAuthorized(String),
    /// Anything else ssh said.
    Ssh(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Refused::HostKeyMismatch => f.write_str("host key mismatch"),
            Refused::Unreachable(why) => write!(f, "unreachable: {why}"),
            Refused::NotAuthorized(why) => write!(f, "login refused: {why}"),
            Refused::Ssh(why) => write!(f, "ssh failed: {why}"),
        }
    }
}

/// How nodeimg logs in: the profile's user, an optional identity file, and
/// how long a machine may take.
pub struct Client<'a> {
    pub pinned: &'a Pinned,
    pub user: &'a str,
    pub identity: Option<&'a Path>,
    /// For the TCP connection and the SSH handshake.
    pub connect_timeout: Duration,
    /// A command ssh runs under (its program and arguments), e.g. the boot
    /// test's `nsenter` into the namespace on the lab's switch; empty: none.
    pub wrapper: &'a [String],
}

impl Client<'_> {
    /// `ssh` with the pinning options, for `target`, up to the destination;
    /// the caller adds the remote command (after the destination).
    /// `batch`: never ask on the terminal (status, diff).
    pub fn command(&self, target: &Target, batch: bool) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg("ssh");
                cmd
            }
            None => Command::new("ssh"),
        };
        let known = self.pinned.known_hosts();
        let opt = |cmd: &mut Command, o: String| {
            cmd.arg("-o").arg(o);
        };
        // Options given here come before any from ~/.ssh/config, and for
        // ssh the first value of an option wins: every way ssh has to
        // accept a host key is set here, so a config cannot add one.
        // (IgnoreUnknown first: clients before 8.5 lack KnownHostsCommand.)
        opt(&mut cmd, "IgnoreUnknown=KnownHostsCommand".into());
        opt(&mut cmd, format!("UserKnownHostsFile={}", known.display()));
        opt(&mut cmd, "GlobalKnownHostsFile=/dev/null".into());
        opt(&mut cmd, "KnownHostsCommand=none".into());
        opt(&mut cmd, "StrictHostKeyChecking=yes".into());
        opt(&mut cmd, "VerifyHostKeyDNS=no".into());
        opt(&mut cmd, format!("HostKeyAlias={}", target.machine));
        opt(&mut cmd, "HostKeyAlgorithms=ssh-ed25519".into());
        opt(&mut cmd, "CheckHostIP=no".into());
        opt(&mut cmd, "UpdateHostKeys=no".into());
        // A shared connection would skip the key check of this one.
        opt(&mut cmd, "ControlMaster=no".into());
        opt(&mut cmd, "ControlPath=none".into());
        opt(
            &mut cmd,
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
        );
        // A machine that dies mid-session is noticed within ~15 s.
        opt(&mut cmd, "ServerAliveInterval=5".into());
        opt(&mut cmd, "ServerAliveCountMax=3".into());
        if batch {
            opt(&mut cmd, "BatchMode=yes".into());
            opt(&mut cmd, "LogLevel=ERROR".into());
            // The script's output as it is: no terminal (which would echo
            // and add CRs), no command or forwards from a config.
            cmd.arg("-T");
            opt(&mut cmd, "RemoteCommand=none".into());
            opt(&mut cmd, "ClearAllForwardings=yes".into());
        }
        if let Some(identity) = self.identity {
            cmd.arg("-i").arg(identity);
            opt(&mut cmd, "IdentitiesOnly=yes".into());
        }
        cmd.arg("-p").arg(target.port.to_string());
        cmd.arg("-l").arg(self.user);
        // The destination was checked (no leading `-`); `--` keeps it so.
        cmd.arg("--").arg(&target.host);
        cmd
    }

    /// Runs `script` on `target` in `sh -s`, with at most `limit` for all.
    /// A session that began but did not end in time comes back with what
    /// it printed and no status.
    pub fn run_script(
        &self,
        target: &Target,
        script: &str,
        limit: Duration,
    ) -> Result<Result<Finished, Refused>> {
        let mut cmd = self.command(target, true);
        cmd.args(["sh", "-s"]);
        let done = run_with_deadline(&mut cmd, script.as_bytes(), limit, MAX_OUTPUT)
            .map_err(|e| crate::diag::tool_missing("ssh", "openssh-client", e))?;
        Ok(match done.status {
            None if done.stdout.is_empty() => Err(Refused::Unreachable(format!(
                "no answer within {} s",
                limit.as_secs()
            ))),
            Some(status) if status.code() == Some(255) => {
                Err(refusal(&String::from_utf8_lossy(&done.stderr)))
            }
            _ => Ok(done),
        })
    }
}

/// The most of ssh's last words a refusal quotes.
pub(crate) const SAID_MAX: usize = 300;

/// What ssh's complaint (exit status 255) means.
pub fn refusal(stderr: &str) -> Refused {
    let said = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
        .collect::<Vec<_>>();
    // ssh's own words, but they may quote the server: no control characters.
    let last = super::printable(said.last().copied().unwrap_or("no message"), SAID_MAX);
    let has = |s: &str| stderr.contains(s);
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || has("Host key verification failed")
        || has("No ED25519 host key is known")
        || has("no matching host key type found")
    {
        Refused::HostKeyMismatch
    } else if has("Permission denied") || has("Too many authentication failures") {
        Refused::NotAuthorized(last)
    } else if has("Connection refused")
        || has("Connection timed out")
        || has("No route to host")
        || has("Network is unreachable")
        || has("Could not resolve hostname")
        || has("Operation timed out")
    {
        Refused::Unreachable(last)
    } else {
        Refused::Ssh(last)
    }
}

/// The machines' targets: each at its profile address and ssh.port, unless
/// `addresses` (`NAME=HOST[:PORT]`) says otherwise.
pub fn targets(spec: &Spec, names: &[&str], addresses: &[String]) -> Result<Vec<Target>> {
    let mut overrides = std::collections::BTreeMap::new();
    for arg in addresses {
        let (name, host, port) = parse_address(spec, arg)?;
        overrides.insert(name, (host, port));
    }
    Ok(names
        .iter()
        .filter_map(|name| spec.machine(name))
        .map(|m| {
            let (host, port) = match overrides.get(m.name.as_str()) {
                Some((host, port)) => (host.clone(), port.unwrap_or(spec.ssh.port)),
                None => (m.ip.to_string(), spec.ssh.port),
            };
            Target {
                machine: m.name.clone(),
                host,
                port,
            }
        })
        .collect())
}

fn address_error(arg: &str, message: impl Into<String>) -> anyhow::Error {
    Diagnostic::new(Kind::Usage, message)
        .at(format!("--address {:?}", crate::diag::shorten(arg)))
        .hint("write NAME=HOST or NAME=HOST:PORT, e.g. worker-1=127.0.0.1:2222 ([ADDRESS]:PORT for IPv6)")
        .into()
}

/// `NAME=HOST[:PORT]`: a machine of the profile, a host ssh can dial.
fn parse_address(spec: &Spec, arg: &str) -> Result<(String, String, Option<u16>)> {
    let Some((name, rest)) = arg.split_once('=') else {
        return Err(address_error(
            arg,
            "no `=` between the machine and its address",
        ));
    };
    if spec.machine(name).is_none() {
        let known: Vec<&str> = spec.machines.iter().map(|m| m.name.as_str()).collect();
        return Err(
            Diagnostic::new(Kind::Usage, "the profile has no machine of that name")
                .at(format!("--address {:?}", crate::diag::shorten(arg)))
                .hint(format!("machines: {}", known.join(", ")))
                .into(),
        );
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(address_error(
                arg,
                "an IPv6 address without its closing `]`",
            ));
        };
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(address_error(arg, "text after the `]`")),
        }
    } else if rest.matches(':').count() > 1 {
        return Err(address_error(
            arg,
            "an IPv6 address needs brackets: [ADDRESS] or [ADDRESS]:PORT",
        ));
    } else {
        match rest.rsplit_once(':') {
            Some((host, p)) => (host, Some(p)),
            None => (rest, None),
        }
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if host.is_empty() || host.starts_with('-') || !host.chars().all(plain) {
        return Err(address_error(
            arg,
            "the host is not an address or a host name",
        ));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(address_error(
                    arg,
                    format!("{p:?} is not a port from 1 to 65535"),
                ))
            }
        },
    };
    Ok((name.to_string(), host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_complaints_are_told_apart() {
        let changed = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@\nHost key verification failed.\n";
        assert_eq!(refusal(changed), Refused::HostKeyMismatch);
        assert_eq!(
            refusal("ssh: connect to host 10.0.0.9 port 22: Connection refused\n"),
            Refused::Unreachable(
                "ssh: connect to host 10.0.0.9 port 22: Connection refused".into()
            )
        );
        assert!(matches!(
            refusal("staker@10.0.0.9: Permission denied (publickey).\n"),
            Refused::NotAuthorized(_)
        ));
        assert!(matches!(
            refusal("kex_exchange_identification: bad\n"),
            Refused::Ssh(_)
        ));
        // OpenSSH 9.2's own words.
        assert_eq!(
            refusal("No ED25519 host key is known for worker-1 and you have requested strict checking.\nHost key verification failed.\n"),
            Refused::HostKeyMismatch
        );
        assert!(matches!(
            refusal("Connection timed out during banner exchange\nConnection to 10.0.0.9 port 22 timed out\n"),
            Refused::Unreachable(_)
        ));
        assert!(matches!(
            refusal("Received disconnect from 10.0.0.9 port 22:2: Too many authentication failures\nDisconnected from 10.0.0.9 port 22\n"),
            Refused::NotAuthorized(_)
        ));
        assert!(matches!(
            refusal("Connection closed by 10.0.0.9 port 22\n"),
            Refused::Ssh(_)
        ));
    }

    #[test]
    fn addresses_name_a_machine_and_a_host_ssh_can_dial() {
        let spec = crate::checked_spec(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/profiles/tutorial.yaml"
            ))
            .unwrap(),
        );
        let names: Vec<&str> = spec.machines.iter().map(|m| m.name.as_str()).collect();
        let t = targets(
            &spec,
            &names,
            &["worker-1=127.0.0.1:2201".into(), "master=[::1]".into()],
        )
        .unwrap();
        let worker = t.iter().find(|t| t.machine == "worker-1").unwrap();
        assert_eq!((worker.host.as_str(), worker.port), ("127.0.0.1", 2201));
        let master = t.iter().find(|t| t.machine == "master").unwrap();
        assert_eq!((master.host.as_str(), master.port), ("::1", spec.ssh.port));
        assert_eq!(master.to_string(), format!("[::1]:{}", spec.ssh.port));
        let nfs = t.iter().find(|t| t.machine == "nfs").unwrap();
        assert_eq!(nfs.host, spec.machine("nfs").unwrap().ip.to_string());
        for bad in [
            "worker-1",
            "worker-9=127.0.0.1",
            "worker-1=-oProxyCommand=sh",
            "worker-1=host name",
            "worker-1=127.0.0.1:0",
            "worker-1=127.0.0.1:99999",
            "worker-1=[::1",
            "worker-1=::1",
            "worker-1=",
        ] {
            let e = targets(&spec, &names, &[bad.into()]).expect_err(bad);
            let d = crate::diag::diagnostic_of(&e).expect(bad);
            assert_eq!(d.kind, Kind::Usage, "{bad}: {d}");
        }
    }
}

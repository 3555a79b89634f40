//! A place on the lab's switch for the day-two tools: a network namespace
//! of its own with one tap on the switch and an unused address of the
//! cluster's subnet, and no route anywhere else. The namespace lives as
//! long as the plug that holds it (`unshare --net vde_plug2tap`), which
//! dies with boot-test, so nothing is left behind even after a kill. A user
//! namespace of its own (the user as its root) lets boot-test do this
//! without being root, as it boots the machines without being root.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::lab::die_with_parent;
use crate::validate::Spec;

/// The tap's name inside the namespace.
const TAP: &str = "nodeimg0";

pub struct Window {
    plug: Child,
}

/// The highest address of the subnet that no machine, gateway or resolver
/// has: where the day-two tools sit on the cluster's network.
pub fn unused_address(spec: &Spec) -> Option<Ipv4Addr> {
    let taken = |a: &Ipv4Addr| {
        *a == spec.gateway || spec.dns.contains(a) || spec.machines.iter().any(|m| m.ip == *a)
    };
    let hosts: Vec<Ipv4Addr> = spec.subnet.hosts().collect();
    hosts.into_iter().rev().find(|a| !taken(a))
}

impl Window {
    /// Plugs a new namespace into the switch at `switch`; its plug's output
    /// goes to `log`.
    pub fn open(switch: &Path, spec: &Spec, log: &Path) -> Result<Window> {
        let address =
            unused_address(spec).context("the subnet has no free address for the day-two tools")?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--user",
            "--map-root-user",
            "--net",
            "--",
            "vde_plug2tap",
            "-s",
        ])
        .arg(switch)
        .arg(TAP)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
        die_with_parent(&mut cmd);
        let plug = cmd
            .spawn()
            .map_err(|e| crate::diag::tool_missing("unshare", "util-linux", e))?;
        let mut window = Window { plug };
        window.await_tap(log)?;
        let prefix = spec.subnet.prefix_len();
        window.ip(&["addr", "add", &format!("{address}/{prefix}"), "dev", TAP])?;
        window.ip(&["link", "set", TAP, "up"])?;
        // Only the subnet's own route: nothing here can reach past the lab.
        let routes = window.ip(&["-4", "route", "show"])?;
        if routes
            .lines()
            .any(|l| !l.starts_with(&spec.subnet.to_string()))
        {
            bail!("the day-two namespace has a route out of the subnet: {routes}");
        }
        Ok(window)
    }

    fn namespace(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.plug.id()))
    }

    /// The command that runs a program in the namespace (before it).
    pub fn wrapper(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "--preserve-credentials".into(),
            format!("--user={}", self.namespace("user").display()),
            format!("--net={}", self.namespace("net").display()),
            "--".into(),
        ]
    }

    /// `ip ARGS` in the namespace; its output.
    fn ip(&self, args: &[&str]) -> Result<String> {
        let wrapper = self.wrapper();
        let out = Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .arg("ip")
            .args(args)
            .output()
            .map_err(|e| crate::diag::tool_missing("nsenter", "util-linux", e))?;
        if !out.status.success() {
            bail!(
                "ip {} in the day-two namespace failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Until the plug runs in its own namespace and its tap is there.
    fn await_tap(&mut self, log: &Path) -> Result<()> {
        let ours = std::fs::read_link("/proc/self/ns/net").context("cannot read our namespace")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Until unshare(2) has run, the plug is still in ours.
            let apart = std::fs::read_link(self.namespace("net")).is_ok_and(|ns| ns != ours);
            if apart && self.ip(&["link", "show", TAP]).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.plug.try_wait() {
                bail!(
                    "vde_plug2tap ended ({status}) before its tap was up: {}",
                    std::fs::read_to_string(log).unwrap_or_default().trim()
                );
            }
            if Instant::now() > deadline {
                bail!("vde_plug2tap made no tap on the lab's switch within 10 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        let _ = self.plug.kill();
        let _ = self.plug.wait();
    }
}

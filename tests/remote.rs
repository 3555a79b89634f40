//! Day two against real sshds: each stands in for one machine of the
//! tutorial cluster on loopback, with the host key nodeimg made for it, its
//! hostname and status file. `nodeimg status` and `nodeimg ssh` run the
//! system's OpenSSH client against them, pinned to the secrets file.
//!
//! Root only (namespaces, sshd): run with `--include-ignored`, as
//! scripts/test does.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::sshd::{free_port, Machine, Sshd};
use common::*;
use nodeimg::firstboot;
use nodeimg::validate::Role;

/// The stand-in for the MicroK8s snap's command: `kubectl get nodes
/// --no-headers` prints kubectl's columns (NAME STATUS ROLES AGE VERSION)
/// from a file the test writes; `helm3 status` is not needed here (the
/// tutorial profile has no release).
const MICROK8S: &str = "#!/bin/sh\n\
case \"$1 $2 $3\" in\n\
  'kubectl get nodes') cat /var/lib/stand-in/nodes ;;\n\
  *) echo \"stand-in microk8s: $*: not modelled\" >&2; exit 1 ;;\n\
esac\n";

const ROLES: &[(&str, Role)] = &[
    ("nfs", Role::Nfs),
    ("master", Role::Master),
    ("worker-1", Role::Worker),
];

/// A status file of `role` with every step done, but for `except`.
fn status_file(role: Role, except: &[(&str, &str, &str)]) -> String {
    firstboot::all(role)
        .iter()
        .map(|step| match except.iter().find(|(s, _, _)| s == step) {
            Some((_, state, message)) => format!("{step} {state} 3 1764780000 {message}\n"),
            None => format!("{step} {} 1 1764780000 -\n", firstboot::state::DONE),
        })
        .collect()
}

const RESULT_OK: &str = "{\n \"v1\": {\n  \"datasource\": \"DataSourceNoCloud [seed=/dev/sr0][dsmode=net]\",\n  \"errors\": []\n }\n}\n";
const NODES_READY: &str =
    "master     Ready    <none>   3d    v1.32.9\nworker-1   Ready    <none>   3d    v1.32.9\n";

struct Cluster {
    s: Scratch,
    login_key: PathBuf,
    machines: Vec<(String, Sshd)>,
}

fn host_key(s: &Scratch, machine: &str) -> String {
    nodeimg::secrets::Secrets::read(&s.secrets())
        .unwrap()
        .machine(machine)
        .unwrap()
        .ssh_host_ed25519_key
        .clone()
}

fn keygen(path: &Path) {
    let out = tool(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            path.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
}

/// The tutorial cluster built (so its secrets file exists) and each
/// machine standing in on loopback; `worker` says what worker-1 is like.
fn cluster(worker_status: &str, worker_key: Option<&str>) -> Cluster {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    assert!(s.build("out").ok());
    let login_key = s.path("login");
    keygen(&login_key);
    let public = fs::read_to_string(s.path("login.pub")).unwrap();
    let mut machines = Vec::new();
    for (name, role) in ROLES {
        let key = match (*name, worker_key) {
            ("worker-1", Some(other)) => other.to_string(),
            _ => host_key(&s, name),
        };
        let status = if *name == "worker-1" {
            worker_status.to_string()
        } else {
            status_file(*role, &[])
        };
        let mut var_lib = vec![
            ("nodeimg/status", status.as_str()),
            ("cloud/data/result.json", RESULT_OK),
            ("cloud/data/instance-id", "iid-test\n"),
        ];
        let mut local_bin = Vec::new();
        if *role == Role::Master {
            var_lib.push(("stand-in/nodes", NODES_READY));
            local_bin.push(("microk8s", MICROK8S));
        }
        let sshd = Sshd::start(&Machine {
            hostname: name,
            user: "staker",
            host_key: &key,
            authorized_key: &public,
            var_lib: &var_lib,
            local_bin: &local_bin,
        });
        machines.push((name.to_string(), sshd));
    }
    Cluster {
        s,
        login_key,
        machines,
    }
}

impl Cluster {
    fn addresses(&self) -> Vec<String> {
        self.machines
            .iter()
            .flat_map(|(name, sshd)| ["--address".to_string(), sshd.address(name)])
            .collect()
    }

    /// nodeimg with `args`, with a TMPDIR of its own (to see what it
    /// leaves there) and no ssh-agent.
    fn run(&self, args: &[String]) -> (Output, Vec<String>) {
        let tmp = self.s.path("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .args(args)
            .current_dir(self.s.path(""))
            .env("TMPDIR", &tmp)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap();
        let left: Vec<String> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        (out, left)
    }

    /// `nodeimg ssh` to `machine`, running `command` there.
    fn ssh(&self, machine: &str, command: &str) -> (Output, Vec<String>) {
        let mut args: Vec<String> = vec![
            "ssh".into(),
            "profile.yaml".into(),
            machine.into(),
            "--identity".into(),
            self.login_key.display().to_string(),
        ];
        args.extend(self.addresses());
        args.extend(["--".into(), command.into()]);
        self.run(&args)
    }

    fn status(&self, extra: &[&str]) -> (Output, serde_json::Value) {
        let mut args: Vec<String> = ["status", "profile.yaml", "--json", "--identity"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.login_key.display().to_string());
        args.extend(self.addresses());
        args.extend(extra.iter().map(|s| s.to_string()));
        let (out, left) = self.run(&args);
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        self.assert_no_secret(&out);
        (out, json)
    }

    /// No value of the secrets file in anything nodeimg printed.
    fn assert_no_secret(&self, out: &Output) {
        let secrets = nodeimg::secrets::Secrets::read(&self.s.secrets()).unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for v in secrets.values() {
            for line in v
                .lines()
                .filter(|l| l.len() > 20 && !l.starts_with("-----"))
            {
                assert!(!text.contains(line), "a secret was printed:\n{text}");
            }
        }
    }
}

fn machine<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["machine"] == name)
        .unwrap_or_else(|| panic!("{name} not in {json}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn status_reports_every_machine_through_its_pinned_host_key() {
    let c = cluster(&status_file(Role::Worker, &[]), None);
    let (out, json) = c.status(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["version"], 1);
    assert_eq!(json["healthy"], true, "{json:#}");
    for (name, role) in ROLES {
        let m = machine(&json, name);
        assert_eq!(m["host_key"], "pinned", "{m:#}");
        assert_eq!(m["hostname"], *name);
        assert_eq!(m["cloud_init"]["state"], "done");
        assert_eq!(
            m["steps"].as_array().unwrap().len(),
            firstboot::all(*role).len()
        );
        assert_eq!(m["problems"], serde_json::json!([]));
    }
    let nodes = machine(&json, "master")["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n["ready"] == true));
    assert!(
        stderr(&out).contains("3 of 3 machines healthy"),
        "{}",
        stderr(&out)
    );

    // --machine asks only those named.
    let (out, json) = c.status(&["--machine", "worker-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["machines"].as_array().unwrap().len(), 1);
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_machine_with_another_host_key_is_refused_by_name() {
    let s = Scratch::with_profile("");
    keygen(&s.path("other"));
    let other = fs::read_to_string(s.path("other")).unwrap();
    let c = cluster(&status_file(Role::Worker, &[]), Some(&other));
    let (out, json) = c.status(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let w = machine(&json, "worker-1");
    assert_eq!(w["host_key"], "mismatch", "{w:#}");
    assert_eq!(w["healthy"], false);
    assert!(w["hostname"].is_null(), "nothing it says is read: {w:#}");
    assert!(
        w["error"]
            .as_str()
            .unwrap()
            .contains("host key does not match the one nodeimg made for worker-1"),
        "{w:#}"
    );
    assert_eq!(machine(&json, "nfs")["healthy"], true);
    assert!(stderr(&out).contains("2 of 3 machines healthy; not: worker-1"));

    // nodeimg ssh refuses it too, before any command runs there.
    let (out, _) = c.ssh("worker-1", "touch /var/lib/ran");
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(stderr(&out).contains("worker-1"), "{}", stderr(&out));
    let worker = &c.machines[2].1;
    assert!(!worker.dir().join("var-lib/ran").exists());
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn an_unreachable_machine_is_named_within_the_timeout() {
    let c = cluster(&status_file(Role::Worker, &[]), None);
    // Nothing listens: refused at once.
    let closed = format!("worker-1=127.0.0.1:{}", free_port());
    let (out, json) = c.status(&["--address", &closed]);
    assert_eq!(out.status.code(), Some(1));
    let w = machine(&json, "worker-1");
    assert_eq!(
        (w["reachable"].as_bool(), w["host_key"].as_str()),
        (Some(false), Some("unknown"))
    );
    assert!(
        w["error"]
            .as_str()
            .unwrap()
            .starts_with("unreachable at 127.0.0.1:"),
        "{w:#}"
    );

    // A machine that takes the connection and never speaks (hung, or a
    // firewall that swallows): unreachable once the timeout is up.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = format!("worker-1=127.0.0.1:{}", silent.local_addr().unwrap().port());
    let started = Instant::now();
    let (out, json) = c.status(&["--address", &at, "--timeout", "3"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let w = machine(&json, "worker-1");
    assert_eq!(w["reachable"], false, "{w:#}");
    assert!(stderr(&out).contains("not: worker-1"), "{}", stderr(&out));
    assert_eq!(machine(&json, "master")["healthy"], true);
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_step_that_is_not_done_is_reported_with_its_message() {
    let waiting = status_file(
        Role::Worker,
        &[(
            "microk8s-launch",
            firstboot::state::RETRYING,
            "the master's API server does not answer yet",
        )],
    );
    let c = cluster(&waiting, None);
    let (out, json) = c.status(&[]);
    assert_eq!(out.status.code(), Some(1));
    let w = machine(&json, "worker-1");
    assert_eq!(
        w["problems"],
        serde_json::json!([
            "step microk8s-launch is retrying: the master's API server does not answer yet"
        ])
    );
    let step = w["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "microk8s-launch")
        .unwrap();
    assert_eq!(
        (step["attempts"].as_u64(), step["time"].as_u64()),
        (Some(3), Some(1764780000))
    );
    assert!(stderr(&out).contains("  worker-1: step microk8s-launch is retrying"));
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn ssh_runs_a_command_with_the_pinned_key_and_passes_its_status_on() {
    let c = cluster(&status_file(Role::Worker, &[]), None);
    let (out, left) = c.ssh("worker-1", "hostname; exit 7");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "worker-1\n");
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn day_two_refuses_what_it_cannot_trust_before_connecting() {
    let c = cluster(&status_file(Role::Worker, &[]), None);
    // No secrets file: no host keys to pin, and none is made.
    fs::rename(c.s.secrets(), c.s.path("elsewhere.yaml")).unwrap();
    let mut args = vec!["status".to_string(), "profile.yaml".into()];
    args.extend(c.addresses());
    let (out, _) = c.run(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("there is no secrets file here"),
        "{}",
        stderr(&out)
    );
    assert!(!c.s.secrets().exists());
    fs::rename(c.s.path("elsewhere.yaml"), c.s.secrets()).unwrap();
    for (args, says) in [
        (
            vec!["--address", "worker-1=-oProxyCommand=touch /tmp/x"],
            "--address",
        ),
        (
            vec!["--address", "worker-9=127.0.0.1"],
            "the profile has no machine of that name",
        ),
        (
            vec!["--machine", "worker-9"],
            "--machine \"worker-9\": error:",
        ),
        (
            vec!["--identity", "no-such-key"],
            "--identity no-such-key: error:",
        ),
    ] {
        // The cluster's own addresses first, so that nothing could dial the
        // profile's (they are not this test's).
        let mut all = vec!["status".to_string(), "profile.yaml".into()];
        all.extend(c.addresses());
        all.extend(args.iter().map(|a| a.to_string()));
        let (out, _) = c.run(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

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
    nodeimg::secrets::Secrets::read(&s.secrets(), &[])
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
        // What its seed wrote, and the seed's instance-id, as cloud-init
        // leaves them.
        let seed = nodeimg::read_seed(&s.path(&format!("out/{name}"))).unwrap();
        let files: Vec<(String, Vec<u8>)> = nodeimg::remote::diff::seed_files(&seed)
            .into_iter()
            .map(|f| (f.path, f.bytes))
            .collect();
        let instance_id = format!("{}\n", nodeimg::remote::diff::instance_id(&seed).unwrap());
        let mut var_lib = vec![
            ("nodeimg/status", status.as_str()),
            ("cloud/data/result.json", RESULT_OK),
            ("cloud/data/instance-id", instance_id.as_str()),
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
            files: &files,
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
        self.run_with_home(None, args)
    }

    /// The same, with `home` (a folder with .ssh/config) as root's home in
    /// a mount namespace of its own: ssh reads the config of the user's
    /// home from the password database, not $HOME.
    fn run_with_home(&self, home: Option<&Path>, args: &[String]) -> (Output, Vec<String>) {
        let tmp = self.s.path("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let mut cmd = match home {
            None => Command::new(env!("CARGO_BIN_EXE_nodeimg")),
            Some(home) => {
                let mut cmd = Command::new("unshare");
                cmd.args([
                    "--mount",
                    "sh",
                    "-c",
                    "mount --bind \"$0\" /root && exec \"$@\"",
                ])
                .arg(home)
                .arg(env!("CARGO_BIN_EXE_nodeimg"));
                cmd
            }
        };
        let out = cmd
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

    /// `nodeimg diff` of the cluster, with `extra` arguments.
    fn diff(&self, extra: &[&str]) -> Output {
        let mut args: Vec<String> = ["diff", "profile.yaml", "--identity"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.login_key.display().to_string());
        args.extend(self.addresses());
        args.extend(extra.iter().map(|s| s.to_string()));
        let (out, left) = self.run(&args);
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
        self.assert_no_secret(&out);
        out
    }

    fn status(&self, extra: &[&str]) -> (Output, serde_json::Value) {
        self.status_with_home(None, extra)
    }

    fn status_with_home(&self, home: Option<&Path>, extra: &[&str]) -> (Output, serde_json::Value) {
        let mut args: Vec<String> = ["status", "profile.yaml", "--json", "--identity"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.login_key.display().to_string());
        args.extend(self.addresses());
        args.extend(extra.iter().map(|s| s.to_string()));
        let (out, left) = self.run_with_home(home, &args);
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
        let secrets = nodeimg::secrets::Secrets::read(&self.s.secrets(), &[]).unwrap();
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

    // diff compares nothing with it.
    let out = c.diff(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(
            "worker-1: not compared: host key does not match the one nodeimg made for worker-1"
        ),
        "{}",
        stdout(&out)
    );

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

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn diff_finds_each_machine_in_sync_with_its_seed() {
    let c = cluster(&status_file(Role::Worker, &[]), None);
    let out = c.diff(&[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for (name, _) in ROLES {
        assert!(
            stdout(&out).contains(&format!("{name}: in sync (")),
            "{}",
            stdout(&out)
        );
    }
}

/// A file changed on a machine (over nodeimg ssh) shows up with its diff,
/// a private one by hash only; the machine is named as drifted.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn diff_shows_a_file_changed_on_a_machine() {
    let c = cluster(&status_file(Role::Worker, &[]), None);
    let (out, _) = c.ssh(
        "worker-1",
        "echo '# edited by hand' >> /etc/chrony/chrony.conf && echo 'EXTRA=1' >> /etc/nodeimg/setup.env",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.diff(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("--- /etc/chrony/chrony.conf (on the machine)\n+++ /etc/chrony/chrony.conf (from the profile)\n"),
        "{text}"
    );
    assert!(text.contains("\n-# edited by hand\n"), "{text}");
    assert!(
        text.contains("worker-1: /etc/nodeimg/setup.env differs (it holds secrets or is private: compared by sha256 only)"),
        "{text}"
    );
    assert!(
        !text.contains("EXTRA=1"),
        "a private file was shown:\n{text}"
    );
    assert!(text.contains("worker-1: drifted: 2 of "), "{text}");
    assert!(text.contains("master: in sync"), "{text}");
    assert!(
        stderr(&out).contains("not in sync: worker-1"),
        "{}",
        stderr(&out)
    );

    // --machine compares only that one.
    let out = c.diff(&["--machine", "master"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(!stdout(&out).contains("worker-1"), "{}", stdout(&out));
}

/// After the profile changed, a machine built from the old seed is told
/// apart from one that drifted: its instance-id is not the new seed's.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn diff_tells_a_changed_profile_from_drift() {
    let c = cluster(&status_file(Role::Worker, &[]), None);
    let text = fs::read_to_string(c.s.profile()).unwrap();
    let changed = text.replace("dns: [8.8.8.8, 8.8.4.4]", "dns: [9.9.9.9]");
    assert_ne!(changed, text);
    fs::write(c.s.profile(), changed).unwrap();
    let out = c.diff(&["--machine", "worker-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out)
            .contains("worker-1: seed changed since it was built: it booted from instance-id "),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("--only worker-1"), "{}", stdout(&out));
}

/// A ~/.ssh/config that tries every way to loosen the pin (no strict
/// checking, its own known hosts, a KnownHostsCommand that vouches for the
/// wrong key, DNS, a shared connection, a forced terminal and command) does
/// not: the wrong key is still refused by name, the others still answer.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_hostile_ssh_config_cannot_loosen_the_pin() {
    let s = Scratch::with_profile("");
    keygen(&s.path("other"));
    let other = fs::read_to_string(s.path("other")).unwrap();
    let other_pub = fs::read_to_string(s.path("other.pub")).unwrap();
    let c = cluster(&status_file(Role::Worker, &[]), Some(&other));
    let home = c.s.path("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    let vouch = home.join("vouch");
    fs::write(&vouch, format!("worker-1 {other_pub}")).unwrap();
    fs::write(
        home.join(".ssh/config"),
            "Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  GlobalKnownHostsFile /dev/null\n  KnownHostsCommand /bin/cat /root/vouch\n  VerifyHostKeyDNS yes\n  ControlMaster auto\n  ControlPath /root/cm-%C\n  ControlPersist 60\n  RequestTTY force\n  RemoteCommand echo hijacked\n  UpdateHostKeys yes\n",
    )
    .unwrap();
    let (out, json) = c.status_with_home(Some(&home), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        machine(&json, "worker-1")["host_key"],
        "mismatch",
        "{json:#}"
    );
    for name in ["nfs", "master"] {
        let m = machine(&json, name);
        assert_eq!(m["healthy"], true, "{m:#}");
        assert_eq!(m["hostname"], name, "{m:#}");
    }
    assert!(
        fs::read_dir(&home).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("cm-")),
        "a shared connection was made"
    );
}

/// The master's releases as helm reports them: deployed, another state,
/// or unknown to helm; each not deployed is a problem.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn the_masters_releases_are_judged_by_helms_status() {
    let text = shipped_profile("hoodi.yaml");
    let s = Scratch::with_profile(&text);
    let spec = nodeimg::load_profile(&s.profile()).unwrap().spec;
    nodeimg::secrets::Secrets::generate(&spec)
        .unwrap()
        .write(&s.secrets())
        .unwrap();
    let (namespace, releases) = nodeimg::remote::status::expected_releases(&spec).unwrap();
    assert!(releases.len() >= 3, "{releases:?}");
    // helm's status text (NAME, LAST DEPLOYED, NAMESPACE, STATUS, REVISION,
    // then the chart's notes); "Error: release: not found" when there is none.
    let microk8s = format!(
        "#!/bin/sh\n\
         case \"$1 $2 $3\" in\n\
           'kubectl get nodes') cat /var/lib/stand-in/nodes ;;\n\
           'helm3 status '*)\n\
             f=/var/lib/stand-in/release-$3\n\
             [ \"$4 $5\" = '-n {namespace}' ] || {{ echo \"Error: wrong namespace $4 $5\" >&2; exit 1; }}\n\
             [ -f \"$f\" ] || {{ echo 'Error: release: not found' >&2; exit 1; }}\n\
             printf 'NAME: %s\\nLAST DEPLOYED: Thu Dec  3 16:00:00 2026\\nNAMESPACE: %s\\nSTATUS: %s\\nREVISION: 2\\nNOTES:\\nSTATUS: of the chart, not helm\\n' \"$3\" \"$5\" \"$(cat \"$f\")\" ;;\n\
           *) exit 1 ;;\n\
         esac\n"
    );
    let master = spec.machine("master").unwrap();
    let status = status_file(master.role, &[]);
    let nodes: String = spec
        .machines
        .iter()
        .filter(|m| m.role.is_kubernetes())
        .map(|m| format!("{}   Ready    <none>   1d   v1.32.9\n", m.name))
        .collect();
    let deployed = format!("release-{}", releases[0]);
    let failed = format!("release-{}", releases[1]);
    let var_lib = vec![
        ("nodeimg/status", status.as_str()),
        ("cloud/data/result.json", RESULT_OK),
        ("cloud/data/instance-id", "iid-x\n"),
        ("stand-in/nodes", nodes.as_str()),
    ];
    let stand_in = |name: &str, state: &str| (format!("stand-in/{name}"), state.to_string());
    let (d, f) = (stand_in(&deployed, "deployed"), stand_in(&failed, "failed"));
    let mut var_lib = var_lib;
    var_lib.push((d.0.as_str(), d.1.as_str()));
    var_lib.push((f.0.as_str(), f.1.as_str()));
    keygen(&s.path("login"));
    let sshd = Sshd::start(&Machine {
        hostname: "master",
        user: &spec.ssh.user,
        host_key: &nodeimg::secrets::Secrets::read(&s.secrets(), &[])
            .unwrap()
            .machine("master")
            .unwrap()
            .ssh_host_ed25519_key
            .clone(),
        authorized_key: &fs::read_to_string(s.path("login.pub")).unwrap(),
        var_lib: &var_lib,
        local_bin: &[("microk8s", microk8s.as_str())],
        files: &[],
    });
    let out = Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args([
            "status",
            "profile.yaml",
            "--json",
            "--machine",
            "master",
            "--identity",
        ])
        .arg(s.path("login"))
        .arg("--address")
        .arg(sshd.address("master"))
        .current_dir(s.path(""))
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = machine(&json, "master");
    let got: Vec<(String, String)> = m["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = vec![
        (releases[0].clone(), "deployed".to_string()),
        (releases[1].clone(), "failed".to_string()),
    ];
    want.extend(
        releases[2..]
            .iter()
            .map(|r| (r.clone(), "missing".to_string())),
    );
    assert_eq!(got, want, "{m:#}");
    let problems = m["problems"].to_string();
    assert!(
        problems.contains(&format!("release {} is failed", releases[1])),
        "{problems}"
    );
    assert!(
        problems.contains(&format!("release {} is missing", releases[2])),
        "{problems}"
    );
    assert!(
        !problems.contains(&format!("release {} is", releases[0])),
        "{problems}"
    );
}

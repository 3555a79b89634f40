//! Boot tests: the seeds in real QEMU machines booted from the CI guest
//! (qemu/build-guest), on a private switch. They take minutes, so plain
//! `cargo test` skips them; `scripts/test` builds the guest, sets
//! NODEIMG_GUEST_IMAGE and runs them.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::*;

fn guest_image() -> PathBuf {
    let p = std::env::var_os("NODEIMG_GUEST_IMAGE")
        .map(PathBuf::from)
        .expect("NODEIMG_GUEST_IMAGE must name the CI guest image (scripts/test builds it with qemu/build-guest)");
    assert!(p.is_file(), "{} does not exist", p.display());
    p
}

/// Processes a boot test leaves behind: QEMUs started from `marker` (the
/// scratch directory is in their command line) and any boot-test switch or
/// plug on one (the boot tests run one at a time).
fn leftovers(marker: &str) -> Vec<String> {
    let out = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            (l.contains("qemu-system") && l.contains(marker))
                || ((l.contains("vde_switch") || l.contains("vde_plug2tap"))
                    && l.contains("nodeimg-vde-"))
        })
        .map(str::to_owned)
        .collect()
}

/// `nodeimg boot-test profile.yaml --image GUEST -o out ARGS...`, to run in `s`.
fn boot_test_command(s: &Scratch, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodeimg"));
    cmd.args(["boot-test", "profile.yaml", "--image"])
        .arg(guest_image())
        .args(["-o", "out"])
        .args(args)
        .current_dir(s.dir.path());
    cmd
}

fn boot_test(s: &Scratch, args: &[&str]) -> Run {
    Run(boot_test_command(s, args).output().expect("run nodeimg"))
}

#[test]
#[ignore = "boots 3 VMs: run by scripts/test with NODEIMG_GUEST_IMAGE"]
fn a_timed_out_boot_test_fails_and_leaves_nothing_running() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let r = boot_test(&s, &["--timeout", "15", "--keep"]);
    assert_eq!(r.code(), Some(1), "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("boot-test FAILED (timed out)"),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("never reported"), "{}", r.stdout());
    // Kept test seeds and overlays hold the machines' secrets.
    for f in ["nfs.test-seed.iso", "nfs.qcow2", "worker-1.test-seed.iso"] {
        assert_eq!(mode(&s.path("out.boot-test").join(f)), 0o600, "{f}");
    }
    let marker = s.dir.path().to_string_lossy().into_owned();
    assert!(
        leftovers(&marker).is_empty(),
        "left behind: {:?}",
        leftovers(&marker)
    );
}

/// The staking profile with a highly available control plane and the
/// remote signer (three masters): every master booted with its launch
/// configuration and its firewall (dqlite open to the other masters only,
/// checked with the real ufw) and runs the failover timer, and only the first
/// master may install the release: the others have no such step. The NFS
/// server set up PostgreSQL (Debian's, standing in for Ubuntu's) with the
/// stand-in migrations, and the first master logged in to it through the
/// server's firewall with the secrets file's password, found Web3Signer's
/// tables at the version it demands, and was refused with a wrong password.
/// The `keys` keystores, each with its password, are in the signer's folder
/// only.
fn assert_three_masters_and_the_remote_signer(
    machines: &[serde_json::Value],
    table: &str,
    keys: usize,
) {
    let by_name = |n: &str| {
        machines
            .iter()
            .find(|m| m["name"] == n)
            .unwrap_or_else(|| panic!("no {n}: {table}"))
    };
    for name in ["master", "master-2", "master-3"] {
        let m = by_name(name);
        assert_eq!(
            m["checks"]["microk8s-config"]["status"], "ok",
            "{name}: {table}"
        );
        assert_eq!(m["checks"]["ufw"]["status"], "ok", "{name}: {table}");
        // Every master watches for signing pods on a dead node.
        let failover = m["checks"]["failover"]["detail"].as_str().unwrap_or("");
        assert!(
            failover.ends_with("nodeimg-failover.timer active"),
            "{name}: {failover}"
        );
    }
    // The keys are the remote signer's: in its folder, named for Web3Signer.
    let keys_placed = by_name("nfs")["checks"]["validator-keys"]["detail"]
        .as_str()
        .unwrap_or("");
    assert!(
        keys_placed.starts_with(&format!("{} file(s) in place", 2 * keys)),
        "{keys_placed}"
    );
    for (name, says) in [
        (
            "nfs",
            "for 172.20.0.0/20: web3signer at database_version 12, 12 migrations",
        ),
        (
            "master",
            "logged in from here with the password: database_version 12",
        ),
    ] {
        let m = by_name(name);
        let db = m["checks"]["signer-db"]["detail"].as_str().unwrap_or("");
        assert_eq!(m["checks"]["signer-db"]["status"], "ok", "{table}");
        assert!(db.contains(says), "{name}: {db}");
    }
    for name in ["master-2", "master-3"] {
        let steps = by_name(name)["checks"]["online-steps"]["detail"]
            .as_str()
            .unwrap_or("");
        assert!(
            steps.ends_with("; no release step (installed by master)"),
            "{name}: {steps}"
        );
    }
}

/// The last lines of every serial log of a run, for a failure message.
fn log_tails(dir: &std::path::Path) -> String {
    let mut out = String::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.to_string_lossy().ends_with(".serial.log") {
                let text = String::from_utf8_lossy(&fs::read(&p).unwrap_or_default()).into_owned();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!("\n===== {} (last 40 lines)\n", p.display()));
                for l in tail.iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// The JSON report (stdout) and the table (stderr) of a boot test that
/// must have passed; a failure shows the table and the serial logs.
fn passed_report(s: &Scratch, r: &Run) -> (serde_json::Value, String) {
    let logs = s.path("out.boot-test");
    let table = r.stderr();
    let report: serde_json::Value = serde_json::from_str(&r.stdout())
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{table}\n{}", log_tails(&logs)));
    assert!(r.ok(), "boot-test failed:\n{table}\n{}", log_tails(&logs));
    (report, table)
}

fn names_of(machines: &[serde_json::Value]) -> Vec<&str> {
    machines
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect()
}

/// Every machine of a JSON report is in the table and passed every check
/// (or the check does not apply / cannot be made offline).
fn assert_every_check_passes(machines: &[serde_json::Value], table: &str) {
    for m in machines {
        let name = m["name"].as_str().unwrap();
        assert!(
            table.lines().any(|l| l.starts_with(name)),
            "{name} missing from the table:\n{table}"
        );
        for check in nodeimg::boottest::checks() {
            let status = m["checks"][check]["status"].as_str().unwrap_or("missing");
            assert!(
                ["ok", "not_applicable", "not_checkable_offline"].contains(&status),
                "{name} {check}: {status}: {}\n{table}",
                m["checks"][check]["detail"]
            );
        }
        // The CI guest's ufw is Ubuntu 24.04's: the rules go in through one
        // Python process there, not the slow fallback of one call per rule.
        let ufw = m["checks"]["ufw"]["detail"].as_str().unwrap_or("");
        assert!(ufw.ends_with("(one batch)"), "{name}: {ufw}");
    }
}

#[test]
#[ignore = "boots 3 VMs for minutes: run by scripts/test with NODEIMG_GUEST_IMAGE"]
fn the_tutorial_cluster_boots_passes_every_check_and_a_worker_comes_back() {
    // On another SSH port, with a throwaway key the probes log in with: the
    // owner reaches every machine on 2222 only (the guest's sshd is
    // socket-activated, as on Ubuntu 24.04).
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("login");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "boot-test", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(made.success());
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    let profile = shipped_profile("tutorial.yaml")
        .replace("  port: 22\n", "  port: 2222\n")
        .replace(
            "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX you@laptop\"",
            &format!("{:?}", public.trim()),
        );
    assert!(profile.contains("port: 2222") && profile.contains("boot-test"));
    let s = Scratch::with_profile(&profile);
    let key_arg = key.to_string_lossy().into_owned();
    let r = boot_test(
        &s,
        &[
            "--reprovision",
            "worker-1",
            "--login-key",
            &key_arg,
            "--json",
        ],
    );
    let (report, table) = passed_report(&s, &r);
    // The table and the JSON say the same.
    let machines = report["machines"].as_array().unwrap();
    let names = names_of(machines);
    assert_eq!(
        names,
        ["nfs", "master", "worker-1", "worker-1 (reprovisioned)"]
    );
    assert_every_check_passes(machines, &table);
    for m in machines {
        let sshd = m["checks"]["sshd"]["detail"].as_str().unwrap_or("");
        assert!(sshd.starts_with("port 2222,"), "{}: {sshd}", m["name"]);
        let peer = m["checks"]["ssh-peer"]["detail"].as_str().unwrap_or("");
        assert!(
            peer.starts_with("logged in to ")
                && peer.contains(":2222 as staker")
                && peer.ends_with(", 22 closed"),
            "{}: {peer}",
            m["name"]
        );
    }
    // The master waits for the NFS export as the release step does, through
    // the NFS server's real firewall.
    let master = &machines[1];
    let nfs = master["checks"]["release-nfs"]["detail"]
        .as_str()
        .unwrap_or("");
    assert!(nfs.contains("answers"), "{nfs}");
    // Day two, from the test's own namespace on the switch: status reaches
    // every machine with the pinned key and agrees with the probe, diff finds
    // each in sync and a file changed over ssh with its diff, another host key
    // is refused by name; the dead worker was named unreachable in time and
    // came back with the identity it had.
    for m in &machines[..3] {
        let name = m["name"].as_str().unwrap();
        let detail = |c: &str| m["checks"][c]["detail"].as_str().unwrap_or("").to_string();
        let status = detail("status");
        assert!(
            status.starts_with("status: reached at ")
                && status.contains(":2222, host key pinned, cloud-init done,"),
            "{name}: {status}"
        );
        let diff = detail("diff");
        assert!(
            diff.starts_with("diff: in sync (")
                && diff.contains(
                    "changed over ssh: drifted, with its unified diff; put back: in sync"
                ),
            "{name}: {diff}"
        );
        let pin = detail("pin");
        assert!(
            pin.contains("refused (host key does not match the one nodeimg made for ")
                && pin.contains(&format!("for {name}:")),
            "{name}: {pin}"
        );
    }
    let back = &machines[3];
    let status = back["checks"]["status"]["detail"].as_str().unwrap_or("");
    assert!(
        status.starts_with("while off: unreachable in ")
            && status.contains("naming it: worker-1: unreachable at ")
            && status.contains("; back: status: reached at "),
        "{status}"
    );
    let diff = back["checks"]["diff"]["detail"].as_str().unwrap_or("");
    assert!(diff.starts_with("diff: in sync ("), "{diff}");
    // Offline, the internet-bound steps retry: they neither hang nor fail cloud-init.
    for m in machines {
        let detail = m["checks"]["online-steps"]["detail"].as_str().unwrap_or("");
        assert!(
            detail.starts_with("retrying offline"),
            "{}: {detail}",
            m["name"]
        );
    }
    assert!(table.contains("boot-test PASSED"), "{table}");
    let marker = s.dir.path().to_string_lossy().into_owned();
    assert!(
        leftovers(&marker).is_empty(),
        "left behind: {:?}",
        leftovers(&marker)
    );
    assert!(
        !s.path("out.boot-test/worker-1.qcow2").exists(),
        "overlays are removed without --keep"
    );
}

/// Serves the CI guest as a qcow2 (the way Ubuntu ships its cloud images) on
/// loopback, and returns the profile's `image` section naming it.
fn serve_guest_as_qcow2(s: &Scratch, server: &common::http::Server) -> String {
    let qcow = s.path("guest.qcow2");
    let out = tool(
        "qemu-img",
        &[
            "convert",
            "-O",
            "qcow2",
            guest_image().to_str().unwrap(),
            qcow.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sha = nodeimg::io::hash::sha256_file(&qcow).unwrap();
    let url = server.add_file("/guest.qcow2", &qcow);
    format!("image:\n  url: {url}\n  sha256: {sha}\n")
}

/// One boot of the staking profile with three masters and the remote
/// signer (5 VMs) proves four things: flashable disk images (`--images`),
/// downloaded once from a URL, boot and configure their machines; a seed
/// broken on purpose fails the run naming the machine and the check; the NFS
/// server, booted again from its disk, comes back as it was; and the highly
/// available control plane and the remote signer's database come up as
/// [`assert_three_masters_and_the_remote_signer`] says.
#[test]
#[ignore = "boots 5 VMs for minutes: run by scripts/test with NODEIMG_GUEST_IMAGE"]
fn disk_images_boot_and_a_broken_seed_fails_naming_the_machine_and_the_check() {
    let keys = 2;
    let profile = with_remote_signer(&with_three_masters(&shipped_profile("hoodi.yaml")));
    let s = staking_scratch(&profile, 5, keys);
    let server = common::http::Server::start(Default::default());
    let profile = fs::read_to_string(s.profile()).unwrap() + &serve_guest_as_qcow2(&s, &server);
    fs::write(s.profile(), profile).unwrap();
    // A template override that breaks worker-1's first boot on purpose.
    let builtin = nodeimg::render::TEMPLATES
        .iter()
        .find(|(n, _)| *n == "user-data.yaml")
        .unwrap()
        .1;
    let broken = builtin.replace(
        "  - [/usr/local/sbin/nodeimg-setup, local]",
        "  - [/usr/local/sbin/nodeimg-setup, local]\n{%- if machine.name == \"worker-1\" %}\n  - [sh, -c, \"exit 1\"]\n{%- endif %}",
    );
    assert_ne!(broken, builtin);
    fs::create_dir_all(s.path("tpl")).unwrap();
    fs::write(s.path("tpl/user-data.yaml"), broken).unwrap();
    let r = Run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["boot-test", "profile.yaml", "--images", "--cache", "cache"])
        .args(["--templates", "tpl", "--charts", "chart-mirror"])
        .args(["-o", "out", "--json", "--reboot", "nfs"])
        .current_dir(s.dir.path())
        .output()
        .expect("run nodeimg"));
    let logs = s.path("out.boot-test");
    let table = r.stderr();
    assert_eq!(r.code(), Some(1), "{table}\n{}", log_tails(&logs));
    assert!(table.contains("worker-1 cloud-init: FAILED"), "{table}");
    assert!(table.contains("boot-test FAILED"), "{table}");
    for line in table.lines().filter(|l| l.contains(": FAILED")) {
        assert!(
            line.starts_with("worker-1 "),
            "only worker-1 is broken: {line}"
        );
    }
    let report: serde_json::Value = serde_json::from_str(&r.stdout())
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{table}"));
    let machines = report["machines"].as_array().unwrap();
    let (broken, sound): (Vec<_>, Vec<_>) = machines
        .iter()
        .cloned()
        .partition(|m| m["name"] == "worker-1");
    // The machines booted from their images pass every check, and the NFS
    // server placed the validator keys. Shut down and booted again, with its
    // seed partition wiped and cloud-init off, the NFS server comes back as
    // it was: same address, host key, firewall, exports and keys, and still
    // no copy of a secret outside the validator folders.
    let names: Vec<&str> = sound.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["nfs", "master", "master-2", "master-3", "nfs (rebooted)"],
        "{table}"
    );
    assert_every_check_passes(&sound, &table);
    assert_three_masters_and_the_remote_signer(&sound, &table, keys);
    for nfs in &sound[..] {
        if nfs["role"] == "nfs" {
            assert_eq!(nfs["checks"]["validator-keys"]["status"], "ok", "{table}");
            assert_eq!(nfs["checks"]["seed-copies"]["status"], "ok", "{table}");
        }
    }
    assert_eq!(
        sound[4]["checks"]["cloud-init"]["detail"], "off since the first boot; did not run again",
        "{table}"
    );
    assert!(
        logs.join("nfs.before-reboot.serial.log").is_file(),
        "the first boot's log is kept"
    );
    // The broken machine fails the one check its seed breaks, no other.
    let failed: Vec<&str> = nodeimg::boottest::checks()
        .filter(|c| broken[0]["checks"][*c]["status"] == "failed")
        .collect();
    assert_eq!(failed, ["cloud-init"], "{table}");
    for m in ["nfs", "master", "master-2", "master-3", "worker-1"] {
        assert!(s.path(&format!("out/{m}/disk.img")).is_file(), "{m}");
        assert!(
            !logs.join(format!("{m}.disk.img")).exists(),
            "test copies are removed"
        );
    }
    assert_eq!(
        server.requests().len(),
        1,
        "the base image is downloaded once"
    );
    let marker = s.dir.path().to_string_lossy().into_owned();
    assert!(
        leftovers(&marker).is_empty(),
        "left behind: {:?}",
        leftovers(&marker)
    );
}

#[test]
#[ignore = "boots 3 VMs: run by scripts/test with NODEIMG_GUEST_IMAGE"]
fn ctrl_c_stops_the_boot_test_and_leaves_nothing_running() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let child = boot_test_command(&s, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let marker = s.dir.path().to_string_lossy().into_owned();
    // Wait until the machines are up, then interrupt as a terminal would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while leftovers(&marker)
        .iter()
        .filter(|l| l.contains("qemu-system"))
        .count()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the machines never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("boot-test FAILED (interrupted)"),
        "{stdout}"
    );
    assert!(
        leftovers(&marker).is_empty(),
        "left behind: {:?}",
        leftovers(&marker)
    );
}

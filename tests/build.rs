//! `nodeimg build`: what a user gets on disk, and the promises around it
//! (determinism, secrets, --only, atomic output).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;

const MACHINES: [&str; 3] = ["nfs", "master", "worker-1"];
const FILES: [&str; 4] = ["user-data", "meta-data", "network-config", "seed.iso"];

#[test]
fn build_writes_every_machine_seed_and_checksums() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let r = s.build("out");
    assert!(r.stdout().contains("built 3 seed(s)"), "{}", r.stdout());
    let sums = fs::read_to_string(s.path("out/SHA256SUMS")).unwrap();
    for m in MACHINES {
        for f in FILES {
            let p = s.path(&format!("out/{m}/{f}"));
            let bytes = fs::read(&p).unwrap_or_else(|_| panic!("{m}/{f} missing"));
            let line = format!("{}  {m}/{f}", nodeimg::io::hash::sha256_hex(&bytes));
            assert!(sums.lines().any(|l| l == line), "SHA256SUMS lacks {line}");
        }
    }
    assert_eq!(sums.lines().count(), 12, "{sums}");
}

#[test]
fn default_output_directory_is_out_slash_cluster_name() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let r = s.run(&["build", "profile.yaml"]);
    assert!(r.ok(), "{}", r.stderr());
    assert!(s.path("out/staking/master/seed.iso").is_file());
}

#[test]
fn files_holding_secrets_are_private() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    assert_eq!(mode(&s.secrets()), 0o600);
    for m in MACHINES {
        assert_eq!(
            mode(&s.path(&format!("out/{m}/user-data"))),
            0o600,
            "{m}/user-data"
        );
        assert_eq!(
            mode(&s.path(&format!("out/{m}/seed.iso"))),
            0o600,
            "{m}/seed.iso"
        );
    }
}

#[test]
fn two_builds_are_byte_identical() {
    let s = Scratch::with_profile(&shipped_profile("homelab.yaml"));
    s.build("a");
    s.build("b");
    let a = s
        .listing()
        .into_iter()
        .filter(|p| p.starts_with("a/"))
        .collect::<Vec<_>>();
    assert!(a.len() > 20, "{a:?}");
    for rel in a {
        let pa = s.path(&rel);
        if pa.is_file() {
            let pb = s.path(&format!("b/{}", &rel[2..]));
            assert_eq!(
                fs::read(&pa).unwrap(),
                fs::read(&pb).unwrap(),
                "{rel} differs between builds"
            );
        }
    }
}

#[test]
fn join_token_reaches_master_and_workers_but_never_the_terminal() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let build = s.build("out");
    let token = secrets_token(&s.secrets());
    assert_eq!(token.len(), 32);
    assert!(token
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let master = fs::read_to_string(s.path("out/master/user-data")).unwrap();
    let worker = fs::read_to_string(s.path("out/worker-1/user-data")).unwrap();
    let nfs = fs::read_to_string(s.path("out/nfs/user-data")).unwrap();
    assert!(master.contains(&format!("persistentClusterToken: \"{token}\"")));
    assert!(worker.contains(&format!("url: \"172.20.10.11:25000/{token}\"")));
    assert!(
        !nfs.contains(&token),
        "the NFS server does not need the join token"
    );

    let mut outputs = vec![build];
    outputs.push(s.run(&["validate", "profile.yaml"]));
    outputs.push(s.run(&["show", "profile.yaml", "master"]));
    outputs.push(s.run(&["show", "profile.yaml", "worker-1", "user-data"]));
    outputs.push(s.run(&["build", "profile.yaml", "-o", "out", "--only", "worker-1"]));
    outputs.push(s.run(&["build", "profile.yaml", "--only", "nope"]));
    for r in &outputs {
        assert!(
            !r.stdout().contains(&token) && !r.stderr().contains(&token),
            "token leaked:\n{}{}",
            r.stdout(),
            r.stderr()
        );
    }
}

#[test]
fn show_masks_secrets_unless_revealed() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    let masked = s.run(&["show", "profile.yaml", "master"]);
    assert!(masked.ok(), "{}", masked.stderr());
    assert!(masked.stdout().contains(nodeimg::MASK));
    assert!(!masked
        .stdout()
        .contains("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"));
    let revealed = s.run(&["show", "profile.yaml", "master", "--reveal"]);
    assert_eq!(
        revealed.stdout(),
        fs::read_to_string(s.path("out/master/user-data")).unwrap()
    );
    let nc = s.run(&["show", "profile.yaml", "master", "network-config"]);
    assert_eq!(
        nc.stdout(),
        fs::read_to_string(s.path("out/master/network-config")).unwrap()
    );
}

#[test]
fn validate_and_show_write_nothing() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let before = s.listing();
    let v = s.run(&["validate", "profile.yaml"]);
    assert!(v.ok(), "{}", v.stderr());
    assert!(s.run(&["show", "profile.yaml", "nfs"]).ok());
    assert_eq!(s.listing(), before);
    let reveal = s.run(&["show", "profile.yaml", "nfs", "--reveal"]);
    assert_eq!(reveal.code(), Some(1));
    assert!(
        reveal.stderr().contains("no secrets file yet"),
        "{}",
        reveal.stderr()
    );
    assert_eq!(s.listing(), before);
}

#[test]
fn only_rebuilds_one_machine_with_the_same_identity() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    let worker_iso = fs::read(s.path("out/worker-1/seed.iso")).unwrap();
    let sums_before = fs::read_to_string(s.path("out/SHA256SUMS")).unwrap();
    // The other machines' files must be left alone: mark one.
    let master_ud = s.path("out/master/user-data");
    let touched = fs::metadata(&master_ud).unwrap().modified().unwrap();
    fs::remove_dir_all(s.path("out/worker-1")).unwrap();

    let r = s.run(&["build", "profile.yaml", "-o", "out", "--only", "worker-1"]);
    assert!(r.ok(), "{}", r.stderr());
    assert!(r.stdout().contains("built 1 seed(s)"), "{}", r.stdout());
    assert_eq!(
        fs::read(s.path("out/worker-1/seed.iso")).unwrap(),
        worker_iso,
        "same secrets, same seed"
    );
    assert_eq!(
        fs::metadata(&master_ud).unwrap().modified().unwrap(),
        touched
    );
    assert_eq!(
        fs::read_to_string(s.path("out/SHA256SUMS")).unwrap(),
        sums_before
    );
    // The other machines' sums are the ones recorded before (a partial build
    // reads only what it wrote), so a file changed in place since shows up.
    fs::write(&master_ud, b"changed in place").unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "out", "--only", "worker-1"]);
    assert!(r.ok(), "{}", r.stderr());
    let (ok, text) = sha256sum_check(&s.path("out"));
    assert!(!ok && text.contains("master/user-data: FAILED"), "{text}");
    assert_eq!(text.matches("FAILED").count(), 1, "{text}");
}

#[test]
fn only_puts_a_new_machine_in_place_and_records_it() {
    let text = shipped_profile("tutorial.yaml");
    let s = Scratch::with_profile(&text);
    s.build("out");
    let nfs_iso = fs::metadata(s.path("out/nfs/seed.iso")).unwrap();
    let grown = text.replace(
        "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n",
        "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n  - {name: worker-2, role: worker, ip: 172.20.10.13}\n",
    );
    fs::write(s.profile(), grown).unwrap();
    let r = s.run(&[
        "build",
        "profile.yaml",
        "-o",
        "out",
        "--only",
        "worker-2",
        "--only",
        "master",
    ]);
    assert!(r.ok(), "{}", r.stderr());
    // The rebuilt machines' folders were swapped in; the others are the
    // same files as before (not copied, not linked anew).
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(s.path("out/nfs/seed.iso")).unwrap().ino(),
        nfs_iso.ino()
    );
    assert!(fs::read_to_string(s.path("out/master/user-data"))
        .unwrap()
        .contains("172.20.10.13 worker-2"));
    let (ok, sums) = sha256sum_check(&s.path("out"));
    assert!(ok, "{sums}");
    let listed = fs::read_to_string(s.path("out/SHA256SUMS")).unwrap();
    assert_eq!(listed.lines().count(), 4 * 4, "{listed}");
    // The manifest records the new folder: the next build may replace the
    // output (it holds nothing nodeimg did not write), and no staging is left.
    let manifest = fs::read_to_string(s.path("out/.nodeimg-manifest")).unwrap();
    assert!(
        manifest.contains("worker-2/seed.iso\n") && manifest.contains("nfs/seed.iso\n"),
        "{manifest}"
    );
    let r = s.build("out");
    assert!(r.ok(), "{}", r.stderr());
    assert!(staging_dirs(&s).is_empty(), "{:?}", staging_dirs(&s));
}

#[test]
fn only_with_an_unknown_machine_names_the_choices() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let r = s.run(&["build", "profile.yaml", "--only", "worker-9"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("worker-9") && r.stderr().contains("nfs, master, worker-1"),
        "{}",
        r.stderr()
    );
    assert!(!s.secrets().exists());
}

#[test]
fn adding_a_machine_keeps_existing_secrets() {
    let text = shipped_profile("tutorial.yaml");
    let s = Scratch::with_profile(&text);
    s.build("out");
    let before = fs::read_to_string(s.secrets()).unwrap();
    let worker_before = fs::read(s.path("out/worker-1/user-data")).unwrap();
    let grown = text.replace(
        "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n",
        "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n  - {name: worker-2, role: worker, ip: 172.20.10.13}\n",
    );
    assert_ne!(grown, text);
    fs::write(s.profile(), grown).unwrap();
    let r = s.build("out");
    assert!(
        r.stderr()
            .contains("added a new SSH host key for machine worker-2"),
        "{}",
        r.stderr()
    );
    let after = fs::read_to_string(s.secrets()).unwrap();
    // Everything that was there is still there, unchanged.
    assert!(after.starts_with(&before[..before.find("machines:").unwrap()]));
    for block in before.split("  worker-1:").skip(1) {
        assert!(after.contains(block.trim_end()), "worker-1's key changed");
    }
    assert!(after.contains("  worker-2:"));
    // A worker's /etc/hosts lists the masters, the NFS server and itself:
    // worker-1's seed stays byte for byte the same; the master's lists
    // worker-2 now.
    let worker_after = fs::read(s.path("out/worker-1/user-data")).unwrap();
    assert_eq!(worker_before, worker_after);
    let master = fs::read_to_string(s.path("out/master/user-data")).unwrap();
    assert!(master.contains("172.20.10.13 worker-2"), "{master}");
    let worker_2 = fs::read_to_string(s.path("out/worker-2/user-data")).unwrap();
    assert!(!worker_2.contains("worker-1"), "{worker_2}");
    for peer in [
        "172.20.10.10 nfs",
        "172.20.10.11 master",
        "172.20.10.13 worker-2",
    ] {
        assert!(worker_2.contains(peer), "{peer}: {worker_2}");
    }
    assert!(s.path("out/worker-2/seed.iso").is_file());
}

#[test]
fn a_damaged_secrets_file_is_refused_and_kept() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    fs::write(
        s.secrets(),
        "version: 1\nmicrok8s_join_token: [not, a, token]\n",
    )
    .unwrap();
    fs::set_permissions(s.secrets(), fs::Permissions::from_mode(0o600)).unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "out"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("profile.secrets.yaml:2:"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("damaged"), "{}", r.stderr());
    assert!(
        !r.stderr().contains("not, a, token"),
        "the content is never quoted"
    );
    assert_eq!(
        fs::read_to_string(s.secrets()).unwrap(),
        "version: 1\nmicrok8s_join_token: [not, a, token]\n"
    );
    assert!(!s.path("out").exists());
}

#[test]
fn a_directory_nodeimg_did_not_write_is_never_replaced() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    fs::create_dir(s.path("mine")).unwrap();
    fs::write(s.path("mine/notes.txt"), "keep me").unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "mine"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr()
            .contains("holds files nodeimg did not write (notes.txt)"),
        "{}",
        r.stderr()
    );
    assert_eq!(
        fs::read_to_string(s.path("mine/notes.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn a_rebuild_replaces_the_previous_output_whole() {
    let text = shipped_profile("tutorial.yaml");
    let s = Scratch::with_profile(&text);
    s.build("out");
    // Renaming a machine must not leave the old machine's seed behind.
    fs::write(s.profile(), text.replace("worker-1", "worker-a")).unwrap();
    s.build("out");
    assert!(!s.path("out/worker-1").exists());
    assert!(s.path("out/worker-a/seed.iso").is_file());
    let leftovers: Vec<String> = s
        .listing()
        .into_iter()
        .filter(|p| p.contains(".nodeimg-staging-") || p.contains(".nodeimg-secrets-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_template_error_names_the_template_file_and_line() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    fs::create_dir_all(s.path("tpl/files")).unwrap();
    fs::write(
        s.path("tpl/files/hosts"),
        "# ok\n{{ machines | nosuchfilter }}\n",
    )
    .unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "out", "--templates", "tpl"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("tpl/files/hosts") && r.stderr().contains(":2:"),
        "{}",
        r.stderr()
    );
    assert!(
        !s.path("out").exists() && !s.secrets().exists(),
        "nothing is written on a template error"
    );
}

#[test]
fn a_template_override_is_checked_like_the_builtin_ones() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    fs::create_dir_all(s.path("tpl")).unwrap();
    let builtin = nodeimg::render::TEMPLATES
        .iter()
        .find(|(n, _)| *n == "user-data.yaml")
        .unwrap()
        .1;
    fs::write(
        s.path("tpl/user-data.yaml"),
        builtin.replace("runcmd:", "run_cmd:"),
    )
    .unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "out", "--templates", "tpl"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("nfs/user-data:") && r.stderr().contains("`run_cmd`"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("did you mean `runcmd`"),
        "{}",
        r.stderr()
    );
}

#[test]
fn values_with_yaml_specials_survive_rendering() {
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX me: \"laptop\" # 'x' {y}";
    let text = shipped_profile("tutorial.yaml").replace(
        "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX you@laptop\"",
        &serde_json::to_string(key).unwrap(),
    );
    let s = Scratch::with_profile(&text);
    s.build("out");
    let ud = fs::read_to_string(s.path("out/nfs/user-data")).unwrap();
    let tree = nodeimg::yaml::parse(&ud).unwrap();
    let keys = tree
        .get(&nodeimg::diag::Path::parse(
            "users[0].ssh_authorized_keys[0]",
        ))
        .unwrap();
    assert_eq!(keys.kind, nodeimg::yaml::Kind::Str(key.to_string()));
}

#[test]
fn a_200_worker_cluster_builds() {
    let worker_1 = "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n";
    let mut workers = worker_1.to_string();
    for i in 2..=200 {
        workers.push_str(&format!(
            "  - {{name: worker-{i}, role: worker, ip: 172.20.11.{i}}}\n"
        ));
    }
    let text = shipped_profile("tutorial.yaml").replace(worker_1, &workers);
    let s = Scratch::with_profile(&text);
    let r = s.build("out");
    assert!(r.stdout().contains("built 202 seed(s)"), "{}", r.stdout());
    assert!(s.path("out/worker-200/seed.iso").is_file());
    let sums = fs::read_to_string(s.path("out/SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 202 * 4);
}

/// `nodeimg COMMAND --help` explains every argument and option: the help is
/// the reference a user reads first.
#[test]
fn every_argument_of_every_command_has_help_text() {
    let s = Scratch::with_profile("");
    for command in ["build", "release", "flash", "validate", "boot-test", "show"] {
        let r = s.run(&[command, "--help"]);
        assert!(r.ok(), "{command} --help: {}", r.stderr());
        let help = r.stdout();
        let mut entries = 0;
        for line in help.lines() {
            let t = line.trim_start();
            // Argument and option lines: `  <NAME>  text`, `  -o, --out <OUT>  text`.
            if !(line.starts_with("  ")
                && (t.starts_with('<') || t.starts_with('[') || t.starts_with('-')))
            {
                continue;
            }
            entries += 1;
            let text = t
                .split_once("  ")
                .map(|(_, rest)| rest.trim())
                .unwrap_or("");
            assert!(!text.is_empty(), "{command}: no help for `{t}`:\n{help}");
        }
        assert!(entries >= 2, "{command}: no arguments found in:\n{help}");
    }
}

/// Ubuntu 20.04 boots cgroup v1, which the kubelet refuses by default from
/// Kubernetes 1.35: its Kubernetes machines' launch configuration allows it,
/// and no other machine's does.
#[test]
fn the_kubelet_runs_on_ubuntu_20_04_from_kubernetes_1_35() {
    let launch = |channel: &str, ubuntu: &str, machine: &str| {
        let text = shipped_profile("tutorial.yaml").replace(
            "time:\n",
            &format!("microk8s:\n  channel: {channel}\n{ubuntu}time:\n"),
        );
        let s = Scratch::with_profile(&text);
        let r = s.build("out");
        assert!(r.ok(), "{}", r.stderr());
        seed_file(
            &s.path(&format!("out/{machine}/user-data")),
            "/etc/microk8s.yaml",
        )
    };
    let flag = "  --fail-cgroupv1: \"false\"\n";
    for machine in ["master", "worker-1"] {
        assert!(launch("1.35/stable", "", machine).contains(flag));
        assert!(launch("1.36/stable", "ubuntu: focal\n", machine).contains(flag));
        assert!(!launch("1.34/stable", "", machine).contains(flag));
        assert!(!launch("1.36/stable", "ubuntu: \"22.04\"\n", machine).contains(flag));
    }
    // A worker on 24.04 in a 20.04 cluster.
    let text = shipped_profile("tutorial.yaml")
        .replace("time:\n", "microk8s:\n  channel: 1.35/stable\ntime:\n")
        .replace("ip: 172.20.10.12}", "ip: 172.20.10.12, ubuntu: noble}");
    let s = Scratch::with_profile(&text);
    assert!(s.build("out").ok());
    assert!(seed_file(&s.path("out/master/user-data"), "microk8s.yaml").contains(flag));
    assert!(!seed_file(&s.path("out/worker-1/user-data"), "microk8s.yaml").contains(flag));
}

/// A highly available control plane: the first master holds the token and
/// the addons, the others join its control plane with no token of their own
/// (canonical/microk8s-cluster-agent#76) and not as workers, the workers
/// join the first master.
#[test]
fn the_masters_of_a_highly_available_cluster_join_the_first() {
    let s = Scratch::with_profile(&shipped_profile("ha.yaml"));
    s.build("out");
    let token = secrets_token(&s.secrets());
    let launch = |name: &str| -> serde_json::Value {
        let seed = nodeimg::render::Seed {
            user_data: fs::read_to_string(s.path(&format!("out/{name}/user-data"))).unwrap(),
            meta_data: String::new(),
            network_config: String::new(),
        };
        let file = seed
            .write_files()
            .into_iter()
            .find(|f| f.path == "/etc/microk8s.yaml")
            .unwrap_or_else(|| panic!("{name} has no launch configuration"));
        let text = String::from_utf8(file.bytes().unwrap()).unwrap();
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"))
    };
    let first = launch("master-1");
    assert_eq!(first["persistentClusterToken"], token.as_str());
    assert!(first.get("join").is_none());
    assert!(first["addons"].as_array().is_some_and(|a| !a.is_empty()));
    let join_url = format!("172.20.10.11:25000/{token}");
    for name in ["master-2", "master-3"] {
        let l = launch(name);
        assert_eq!(l["join"]["url"], join_url.as_str(), "{name}");
        assert!(
            l["join"].get("worker").is_none(),
            "{name} joins as a worker"
        );
        assert!(l.get("persistentClusterToken").is_none(), "{name}: {l}");
        assert!(l.get("addons").is_none(), "{name}: {l}");
    }
    for name in ["worker-1", "worker-2"] {
        let l = launch(name);
        assert_eq!(l["join"]["url"], join_url.as_str(), "{name}");
        assert_eq!(l["join"]["worker"], true, "{name}");
    }
}

//! The seeds as the real tools see them: blkid and isoinfo read the ISO,
//! Debian's cloud-init validates every user-data against its schema, and
//! shellcheck reads the first-boot script. These tools are installed by
//! .ci/install-test-deps; a missing tool fails the test.

mod common;

use std::fs;

use common::*;

#[test]
fn seed_iso_is_a_cidata_volume_holding_the_loose_files() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    for m in ["nfs", "master", "worker-1"] {
        let iso = s.path(&format!("out/{m}/seed.iso"));
        let iso = iso.to_str().unwrap();
        let blkid = tool("blkid", &["-o", "export", iso]);
        let info = String::from_utf8_lossy(&blkid.stdout);
        assert!(info.lines().any(|l| l == "LABEL=cidata"), "{m}: {info}");
        assert!(info.lines().any(|l| l == "TYPE=iso9660"), "{m}: {info}");

        let listing = tool("isoinfo", &["-R", "-f", "-i", iso]);
        let mut names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["/meta-data", "/network-config", "/user-data"],
            "{m}"
        );
        let joliet = tool("isoinfo", &["-J", "-f", "-i", iso]);
        assert_eq!(
            String::from_utf8_lossy(&joliet.stdout).lines().count(),
            3,
            "{m}: Joliet tree"
        );

        for f in ["user-data", "meta-data", "network-config"] {
            let inside = tool("isoinfo", &["-R", "-i", iso, "-x", &format!("/{f}")]);
            let loose = fs::read(s.path(&format!("out/{m}/{f}"))).unwrap();
            assert_eq!(
                inside.stdout, loose,
                "{m}/{f}: ISO content differs from the loose file"
            );
        }

        let xorriso = tool("xorriso", &["-indev", iso, "-pvd_info"]);
        let text = String::from_utf8_lossy(&xorriso.stdout).to_string()
            + &String::from_utf8_lossy(&xorriso.stderr);
        assert!(text.contains("Volume Id    : cidata"), "{m}: {text}");
        assert_volume_is_the_whole_image(iso);
    }
}

/// The volume size every reader is told (isoinfo -d; xorriso's primary
/// and Joliet descriptors) is the image's size: no run-out blocks after the
/// last structure, none missing.
fn assert_volume_is_the_whole_image(iso: &str) {
    let len = fs::metadata(iso).unwrap().len();
    let info = tool("isoinfo", &["-d", "-i", iso]);
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    let blocks: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Volume size is: "))
        .unwrap_or_else(|| panic!("{iso}: {info}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(blocks * 2048, len, "{iso}: {info}");
    let image = fs::read(iso).unwrap();
    assert!(
        image[image.len() - 2048..].iter().any(|&b| b != 0),
        "{iso} ends with an empty block"
    );
}

/// Files whose content ends in zero blocks come back whole from the
/// trimmed image (the run-out is cut, never data), through isoinfo's Rock
/// Ridge and Joliet trees, and the kernel-facing volume size is the image's.
#[test]
fn a_seed_image_keeps_every_byte_and_loses_only_its_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut zeros = vec![0u8; 700 * 1024];
    zeros[0] = b'x';
    let text = b"#cloud-config\n".to_vec();
    let image =
        nodeimg::iso::pack(&[("user-data", &text, 0o600), ("zeros", &zeros, 0o644)]).unwrap();
    let iso = dir.path().join("seed.iso");
    fs::write(&iso, &image).unwrap();
    let iso = iso.to_str().unwrap();
    assert_volume_is_the_whole_image(iso);
    for tree in ["-R", "-J"] {
        for (name, want) in [("user-data", &text), ("zeros", &zeros)] {
            let out = tool("isoinfo", &[tree, "-i", iso, "-x", &format!("/{name}")]);
            assert_eq!(&out.stdout, want, "{tree} {name}");
        }
    }
    // The content (one block of text, 350 of zeros) plus what ISO 9660 and
    // its two extensions need: well under the 300 KiB run-out alone.
    assert!(image.len() < (1 + 350 + 60) * 2048, "{} bytes", image.len());
}

/// A shipped profile, built in a scratch directory.
fn built_shipped(profile: &std::path::Path) -> Scratch {
    let text = fs::read_to_string(profile).unwrap();
    if text.contains("staking:") {
        // A staking profile reads its (user-made) keystores and its
        // charts (stand-ins here: the real ones cannot be downloaded).
        let s = staking_scratch(&text, 1, 1);
        let r = run_with_charts(&s, "build", "out");
        assert!(r.ok(), "{}", r.stderr());
        s
    } else {
        let s = Scratch::with_profile(&text);
        s.build("out");
        s
    }
}

#[test]
fn cloud_init_schema_accepts_every_user_data_of_every_shipped_profile() {
    let profiles = shipped_profiles();
    assert!(profiles.len() >= 2, "{profiles:?}");
    for profile in profiles {
        let s = built_shipped(&profile);
        let mut checked = 0;
        for entry in fs::read_dir(s.path("out")).unwrap() {
            let dir = entry.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            assert_valid_cloud_config(&dir.join("user-data"), &profile.display().to_string());
            checked += 1;
        }
        assert!(checked >= 3, "{}", profile.display());
    }
}

#[test]
fn the_first_boot_script_passes_shellcheck() {
    let s = Scratch::with_profile(&shipped_profile("homelab.yaml"));
    s.build("out");
    for m in ["nas", "cp", "node-a"] {
        let ud = fs::read_to_string(s.path(&format!("out/{m}/user-data"))).unwrap();
        let tree = nodeimg::yaml::parse(&ud).unwrap();
        let files = tree
            .get(&nodeimg::diag::Path::parse("write_files"))
            .unwrap();
        let nodeimg::yaml::Kind::Seq(items) = &files.kind else {
            panic!("write_files is a list")
        };
        for (name, content) in items.iter().filter_map(|item| {
            let get = |k: &str| match &item.get(&nodeimg::diag::Path::parse(k))?.kind {
                nodeimg::yaml::Kind::Str(s) => Some(s.clone()),
                _ => None,
            };
            let path = get("path")?;
            (path.ends_with("nodeimg-setup") || path.ends_with("setup.env"))
                .then(|| (path, get("content").unwrap()))
        }) {
            let file = s.path(&format!("{m}-{}", name.rsplit('/').next().unwrap()));
            assert_shellcheck_passes(&file, &content);
        }
    }
}

/// Every chrony.conf a shipped profile gives, read by the real chronyd.
#[test]
fn chronyd_reads_every_chrony_conf() {
    for profile in shipped_profiles() {
        let s = built_shipped(&profile);
        for m in fs::read_dir(s.path("out")).unwrap() {
            let ud = m.unwrap().path().join("user-data");
            if !ud.is_file() {
                continue;
            }
            let conf = s.path("chrony.conf");
            fs::write(&conf, seed_file(&ud, "/etc/chrony/chrony.conf")).unwrap();
            if let Err(why) = chronyd_parses(&conf) {
                panic!("{}: {}: {why}", profile.display(), ud.display());
            }
        }
    }
}

/// `time.chrony.pool_options`: what validate accepts, chronyd reads, and
/// what chronyd cannot read, validate refuses (validate also refuses values
/// chronyd would clamp, such as maxsources 17, and chrony 4 words that
/// Ubuntu 20.04's chrony 3.5 lacks).
#[test]
fn validate_and_chronyd_agree_on_pool_options() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("chrony.conf");
    let samples = [
        "iburst maxsources 3",
        "iburst minpoll 1 maxpoll 2 maxsources 3",
        "",
        "burst iburst prefer",
        "minpoll 6 maxpoll 10 polltarget 8 presend 9",
        "maxdelay 0.5 maxdelayratio 3 offset -0.25 minstratum 2",
        "iburst minpoll",
        "iburst minpol 1",
        "minpoll 1.5",
        "minpoll 0x3",
        "maxdelay abc",
        "key 0",
        "iburst; makestep 1 3",
        "iburst\nserver evil.example",
        "maxsources 17",
        "nts",
    ];
    for options in samples {
        let nodeimg = nodeimg::validate::chrony_pool_options(options);
        fs::write(&conf, format!("pool pool.example {options}\n")).unwrap();
        let chrony = chronyd_parses(&conf);
        if nodeimg.is_ok() {
            assert!(
                chrony.is_ok(),
                "{options:?}: nodeimg accepts, chronyd says {chrony:?}"
            );
        }
        if chrony.is_err() {
            assert!(
                nodeimg.is_err(),
                "{options:?}: chronyd refuses it, nodeimg accepts"
            );
        }
    }
}

/// `ssh.authorized_keys`: nodeimg accepts exactly the lines OpenSSH's own
/// parser (`ssh-keygen -l`) accepts, for every key type and the usual ways a
/// pasted key breaks. A key sshd refuses would lock the owner out.
#[test]
fn validate_and_ssh_keygen_agree_on_public_keys() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for kind in ["ed25519", "rsa", "ecdsa"] {
        let key = dir.path().join(format!("id_{kind}"));
        let made = tool(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                kind,
                "-N",
                "",
                "-C",
                "test",
                "-f",
                key.to_str().unwrap(),
            ],
        );
        assert!(made.status.success());
        let public = fs::read_to_string(key.with_extension("pub")).unwrap();
        let mut parts = public.split_whitespace();
        let (alg, blob) = (parts.next().unwrap(), parts.next().unwrap());
        let raw = b64.decode(blob).unwrap();
        let mut junk = raw.clone();
        junk.extend_from_slice(b"\0\0\0\x04junk");
        lines.push((format!("{alg} {blob} test"), true));
        lines.push((format!("{alg} {}", b64.encode(&junk)), false));
        lines.push((
            format!("{alg} {}", b64.encode(&raw[..raw.len() - 7])),
            false,
        ));
        lines.push((format!("{alg} {blob}{blob}"), false));
        let other = if alg == "ssh-rsa" {
            "ssh-ed25519"
        } else {
            "ssh-rsa"
        };
        lines.push((format!("{other} {blob}"), false));
    }
    let profile = shipped_profile("tutorial.yaml");
    let placeholder =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX you@laptop";
    assert!(profile.contains(placeholder));
    for (line, usable) in lines {
        let file = dir.path().join("key.pub");
        fs::write(&file, format!("{line}\n")).unwrap();
        let openssh = tool("ssh-keygen", &["-l", "-f", file.to_str().unwrap()])
            .status
            .success();
        assert_eq!(openssh, usable, "ssh-keygen on {line:?}");
        let s = Scratch::with_profile(&profile.replace(placeholder, &line));
        let r = s.run(&["validate", "profile.yaml"]);
        assert_eq!(
            r.ok(),
            openssh,
            "{line:?}: nodeimg and OpenSSH disagree:\n{}",
            r.stderr()
        );
    }
}

/// A machine's nodeimg-setup from its built seed (`out/MACHINE`), cut at
/// its entry points: (the definitions, reading the machine's own setup.env
/// written beside the scratch's profile; the entry points).
fn script_definitions(s: &Scratch, machine: &str) -> (String, String) {
    let ud = s.path(&format!("out/{machine}/user-data"));
    let script = seed_file(&ud, "/usr/local/sbin/nodeimg-setup");
    let env = s.path(&format!("{machine}-setup.env"));
    fs::write(&env, seed_file(&ud, "/etc/nodeimg/setup.env")).unwrap();
    let (definitions, entry_points) = script
        .split_once("\n# ---- entry points")
        .expect("nodeimg-setup has its entry points");
    let definitions = definitions.replacen(
        ". /etc/nodeimg/setup.env",
        &format!(". '{}'", env.display()),
        1,
    );
    assert!(!definitions.contains(". /etc/nodeimg/setup.env"));
    (definitions, entry_points.to_string())
}

/// The step lists nodeimg-setup composes for its machine, read by the real
/// `sh` from each machine's own seed (the script's definitions up to its
/// entry points, with the machine's setup.env), are nodeimg's lists: the
/// ones the boot test expects in the status file. Three masters: only the
/// first has the release step.
#[test]
fn the_first_boot_script_runs_the_steps_nodeimg_defines() {
    let text = with_three_masters(&shipped_profile("hoodi.yaml"));
    let s = staking_scratch(&text, 5, 2);
    let r = run_with_charts(&s, "build", "out");
    assert!(r.ok(), "{}", r.stderr());
    let v = nodeimg::load_profile_str("p.yaml", &text).unwrap();
    for m in &v.spec.machines {
        let (definitions, _) = script_definitions(&s, &m.name);
        let file = s.path(&format!("{}-steps.sh", m.name));
        fs::write(
            &file,
            definitions
                + "\nprintf '%s\\n' \"$LOCAL_STEPS\" \"$ONLINE_STEPS\" \"$ALL_STEPS\" \"$KEYS_STAGING\" \"$RELEASE_DIR\" \"$STATUS_FILE\"\n",
        )
        .unwrap();
        let out = tool("sh", &[file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let said: Vec<&str> = said.lines().collect();
        use nodeimg::firstboot;
        let duty = v.spec.duty(m);
        assert_eq!(
            firstboot::all(duty).contains(&"release"),
            m.name == "master",
            "{}",
            m.name
        );
        assert_eq!(
            said,
            [
                firstboot::local(duty).join(" ").as_str(),
                &firstboot::online(duty).join(" "),
                &firstboot::all(duty).join(" "),
                firstboot::KEYS_STAGING,
                firstboot::RELEASE_DIR,
                firstboot::STATUS_FILE,
            ],
            "{}",
            m.name
        );
    }
}

/// `text`, written to `file`, passes shellcheck as a POSIX sh script.
fn assert_shellcheck_passes(file: &std::path::Path, text: &str) {
    fs::write(file, text).unwrap();
    let out = tool("shellcheck", &["-s", "sh", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The probe's vendor-data, as boot-test renders it (with and without a
/// login key), passes shellcheck.
#[test]
fn the_probe_vendor_data_passes_shellcheck() {
    let v = nodeimg::load_profile_str("p.yaml", &shipped_profile("tutorial.yaml")).unwrap();
    let secrets = nodeimg::secrets::Secrets::generate(&v.spec).unwrap();
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    let seed = nodeimg::read_seed(&s.path("out/worker-1")).unwrap();
    let m = v.spec.machine("worker-1").unwrap();
    for login_key in [
        None,
        Some(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn'x\n-----END OPENSSH PRIVATE KEY-----\n"
                .to_string(),
        ),
    ] {
        let probe = nodeimg::boottest::ProbeSettings::new(&v.spec, &secrets, login_key.clone());
        let text = nodeimg::boottest::probe_vendor_data(&v.spec, m, &seed, &probe).unwrap();
        assert_eq!(
            text.contains("> /usr/local/lib/nodeimg-probe/login-key"),
            login_key.is_some(),
            "{text}"
        );
        assert_shellcheck_passes(&s.path("vendor-data"), &text);
    }
}

/// `nodeimg release`'s install.sh, from its template, passes shellcheck
/// with verified archives and fetching from the repository (--values-only).
#[test]
fn the_release_install_script_passes_shellcheck() {
    let dir = tempfile::tempdir().unwrap();
    for profile in [
        shipped_profile("hoodi.yaml"),
        with_remote_signer(&shipped_profile("hoodi.yaml")),
    ] {
        let v = nodeimg::load_profile_str("p.yaml", &profile).unwrap();
        let s = v.spec.staking.clone().unwrap();
        let releases = nodeimg::staking::releases(&v.spec, &s, &[]);
        for verified_archives in [true, false] {
            let text = nodeimg::staking::install_script(&s, &releases, verified_archives).unwrap();
            assert_eq!(
                text.contains("helm repo add ethpandaops"),
                !verified_archives,
                "{text}"
            );
            // The signer's Secret before the releases that read it.
            assert_eq!(
                text.contains("kubectl apply -f signer-db-secret.yaml\nhelm upgrade"),
                s.signer.is_remote(),
                "{text}"
            );
            assert_shellcheck_passes(&dir.path().join("install.sh"), &text);
        }
        if s.signer.is_remote() {
            let text = nodeimg::staking::backup_script(&v.spec, &s).unwrap();
            assert_shellcheck_passes(&dir.path().join("backup.sh"), &text);
        }
    }
}

/// The states nodeimg-setup records, run by the real `sh` (its `run_step`
/// on steps that succeed, skip, wait and fail, and a step never run), are
/// the words nodeimg defines and the boot test reads; `is_settled` holds
/// exactly for nodeimg's settled states.
#[test]
fn the_first_boot_script_records_the_states_nodeimg_defines() {
    use nodeimg::firstboot::{state, StatusLine, SETTLED};
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    let (definitions, entry_points) = script_definitions(&s, "worker-1");
    // The entry points set the failure state: a local step fails, an
    // online one is retried.
    for (branch, word) in [("  local)", state::FAILED), ("  online)", state::RETRYING)] {
        let body = entry_points.split(branch).nth(1).unwrap();
        let set = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("FAIL_STATE="));
        assert_eq!(set, Some(word), "{branch}");
    }
    let work = s.path("state");
    fs::create_dir(&work).unwrap();
    let test = format!(
        "{definitions}
STATE_DIR='{w}/steps'; LOG_DIR='{w}/logs'; STATUS_FILE='{w}/status'
mkdir -p \"$STATE_DIR\" \"$LOG_DIR\"
FAIL_STATE={failed}
ALL_STEPS='t-ok t-skip t-wait t-fail t-never'
step_t_ok() {{ return 0; }}
step_t_skip() {{ say 'not here'; return 3; }}
step_t_wait() {{ say 'after t-ok'; return 2; }}
step_t_fail() {{ say \"$(printf 'broken\\there %0250d' 0)\"; return 1; }}
for s in t-ok t-skip t-wait t-fail; do run_step \"$s\"; done
for s in $ALL_STEPS; do
  if is_settled \"$s\"; then echo \"settled $s\"; fi
done
",
        w = work.display(),
        failed = state::FAILED,
    );
    let file = s.path("states.sh");
    fs::write(&file, test).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = now();
    let out = tool("sh", &[file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = now();
    // Each line in the form nodeimg reads (firstboot::StatusLine).
    let status = fs::read_to_string(work.join("status")).unwrap();
    let lines: Vec<StatusLine> = status
        .lines()
        .map(|l| StatusLine::parse(l).unwrap_or_else(|| panic!("not a status line: {l:?}")))
        .collect();
    let states: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.step.as_str(), l.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("t-ok", state::DONE),
            ("t-skip", state::SKIPPED),
            ("t-wait", state::WAITING),
            ("t-fail", state::FAILED),
            ("t-never", state::PENDING),
        ],
        "{status}"
    );
    // A message is one line (the tab a space), cut at the limit nodeimg
    // defines.
    let broken: String = format!("broken here {}", "0".repeat(250))
        .chars()
        .take(nodeimg::firstboot::STATUS_MESSAGE_MAX)
        .collect();
    let said: Vec<Option<&str>> = lines.iter().map(|l| l.message.as_deref()).collect();
    assert_eq!(
        said,
        [
            None,
            Some("not here"),
            Some("after t-ok"),
            Some(broken.as_str()),
            None
        ],
        "{status}"
    );
    for l in &lines[..4] {
        assert_eq!(l.attempts, 1, "{status}");
        assert!(
            (before..=after).contains(&l.time),
            "{before}..{after}: {status}"
        );
    }
    assert_eq!((lines[4].attempts, lines[4].time), (0, 0), "{status}");
    let settled: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("settled ").map(str::to_string))
        .collect();
    let expected: Vec<String> = states
        .iter()
        .filter(|(_, st)| SETTLED.contains(st))
        .map(|(step, _)| step.to_string())
        .collect();
    assert_eq!(settled, expected, "{status}");
}

/// The script `nodeimg status` runs on each machine, rendered for every
/// role of a staking profile (the master's asks for each release), passes
/// shellcheck, and names each of the profile's releases once.
#[test]
fn the_status_script_passes_shellcheck_for_every_role() {
    let v = nodeimg::load_profile_str("p.yaml", &shipped_profile("hoodi.yaml")).unwrap();
    let (_, releases) = nodeimg::remote::status::expected_releases(&v.spec).unwrap();
    assert!(!releases.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for m in &v.spec.machines {
        let text = nodeimg::remote::status::script(&v.spec, m).unwrap();
        assert_shellcheck_passes(&dir.path().join(format!("{}.sh", m.name)), &text);
        for r in &releases {
            let asked = text.matches(&format!("release_state '{r}'\n")).count()
                + text.matches(&format!("release_state {r}\n")).count();
            let want = usize::from(m.role == nodeimg::validate::Role::Master);
            assert_eq!(asked, want, "{}: {r}\n{text}", m.name);
        }
    }
}

/// The script `nodeimg diff` runs on each machine (hashes and contents of
/// the seed's files, at paths that need quoting too) and the boot test's
/// change-and-restore script pass shellcheck.
#[test]
fn the_diff_and_change_scripts_pass_shellcheck() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [(0, "/etc/hosts"), (1, "/etc/it's here/a b.conf")];
    let diff = nodeimg::remote::diff::script(&paths, &paths[1..]).unwrap();
    assert!(
        diff.contains("hash_of '1' '/etc/it'\\''s here/a b.conf'\n"),
        "{diff}"
    );
    assert_shellcheck_passes(&dir.path().join("files.sh"), &diff);
    for change in [true, false] {
        let text = nodeimg::boottest::change_script("/etc/chrony/chrony.conf", change).unwrap();
        assert_shellcheck_passes(&dir.path().join(format!("change-{change}.sh")), &text);
    }
}

/// The hoodi profile (with the remote signer if `remote`) and `keys`
/// keystores from `seed`, built into `out`.
fn hoodi_built(remote: bool, seed: u8, keys: usize) -> Scratch {
    let text = shipped_profile("hoodi.yaml");
    let text = if remote {
        with_remote_signer(&text)
    } else {
        text
    };
    let s = staking_scratch(&text, seed, keys);
    let r = run_with_charts(&s, "build", "out");
    assert!(r.ok(), "{}", r.stderr());
    s
}

/// The NFS server's `place_validator_keys`, run by the real `sh` on the
/// files its seed carries: with the local signer each group's keystores and
/// password go to its validator folder; with Web3Signer every keystore goes
/// to the signer's folder (the one its release's claim mounts) as
/// GROUP.NAME.json with passwords/GROUP.NAME.txt holding the group's
/// password, as Web3Signer pairs them (the keystore's name, .txt), and the
/// validators' folders get no key. The staging copy is gone either way.
#[test]
fn the_nfs_server_places_the_keys_where_their_signer_reads_them() {
    for remote in [false, true] {
        let s = hoodi_built(remote, 9, 2);
        let (definitions, _) = script_definitions(&s, "nfs");
        // The seed's staging files, under a root of the test's own.
        let root = s.path("root");
        let staging = format!("{}/", nodeimg::firstboot::KEYS_STAGING);
        for (path, _, bytes) in seed_files(&s.path("out/nfs/user-data")) {
            if path.starts_with(&staging) {
                let to = root.join(path.trim_start_matches('/'));
                fs::create_dir_all(to.parent().unwrap()).unwrap();
                fs::write(to, bytes).unwrap();
            }
        }
        let export = s.path("export");
        fs::create_dir_all(&export).unwrap();
        let file = s.path("place.sh");
        let me = nodeimg_uid();
        fs::write(
            &file,
            format!(
                "{definitions}\nKEYS_STAGING='{}{}'\nNFS_EXPORT_ROOT='{}'\nNFS_UID={me}\nNFS_GID={me}\nplace_validator_keys\n",
                root.display(),
                nodeimg::firstboot::KEYS_STAGING,
                export.display()
            ),
        )
        .unwrap();
        let out = tool("sh", &[file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !root.join(staging.trim_start_matches('/')).exists(),
            "staging left"
        );
        let password = fs::read(s.path("validator_keys/password.txt")).unwrap();
        let mut keystores: Vec<String> = fs::read_dir(s.path("validator_keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        keystores.sort();
        let listing = |dir: &std::path::Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(dir)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let group = export.join("validator-group-1");
        if remote {
            // The folder the Web3Signer release's claim mounts.
            let v = nodeimg::load_profile_str("p.yaml", &fs::read_to_string(s.profile()).unwrap())
                .unwrap();
            let storage =
                nodeimg::staking::storage_manifest(&v.spec, v.spec.staking.as_ref().unwrap());
            assert!(storage.contains("path: /data/web3signer\n"), "{storage}");
            let signer = export.join("web3signer");
            let placed = listing(&signer.join("keystores"));
            let want: Vec<String> = keystores.iter().map(|k| format!("group-1.{k}")).collect();
            assert_eq!(placed, want);
            for k in &placed {
                let stem = k.strip_suffix(".json").unwrap();
                let txt = signer.join("passwords").join(format!("{stem}.txt"));
                assert_eq!(fs::read(&txt).unwrap(), password, "{}", txt.display());
                assert_eq!(mode(&txt), 0o600);
                assert_eq!(mode(&signer.join("keystores").join(k)), 0o600);
            }
            assert_eq!(listing(&signer.join("passwords")).len(), placed.len());
            assert!(listing(&group).is_empty(), "{:?}", listing(&group));
        } else {
            assert_eq!(listing(&group.join("keystores")), keystores);
            assert_eq!(fs::read(group.join("password.txt")).unwrap(), password);
            assert!(!export.join("web3signer").exists());
        }
    }
}

fn nodeimg_uid() -> String {
    String::from_utf8(tool("id", &["-u"]).stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// An RFC 3339 UTC time `ago` seconds before now, as the API writes it.
fn rfc3339_ago(ago: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = tool(
        "date",
        &[
            "-u",
            "-d",
            &format!("@{}", now - ago),
            "+%Y-%m-%dT%H:%M:%SZ",
        ],
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A pod as the API returns it: on `node`, of `release`, evicted or not.
fn pod(name: &str, namespace: &str, node: &str, release: &str, evicted: bool) -> serde_json::Value {
    let mut meta = serde_json::json!({
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/instance": release},
    });
    if evicted {
        meta["deletionTimestamp"] = serde_json::json!(rfc3339_ago(20));
    }
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"nodeName": node, "containers": []}})
}

fn node(name: &str, ready: &str, since: u64) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
    "status": {"conditions": [
        {"type": "MemoryPressure", "status": "False", "lastTransitionTime": rfc3339_ago(9000)},
        {"type": "Ready", "status": ready, "lastTransitionTime": rfc3339_ago(since)},
    ]}})
}

/// A master's `nodeimg-setup failover`, run by the real `sh` with the real
/// kubectl (as `microk8s kubectl`) against a stand-in API server on
/// loopback: with the remote signer it force-deletes exactly the signing
/// pods (Web3Signer, the validator clients) that Kubernetes already evicted
/// from a node without heartbeat for the failover time, and nothing else: no
/// beacon node, no pod still bound to a live node, to a node that only just
/// went silent, or to a node whose kubelet still reports (NotReady), no pod
/// of another namespace. With the local signer it touches nothing.
#[test]
fn a_master_moves_only_the_evicted_signing_pods_of_a_dead_node() {
    let after = nodeimg::staking::FAILOVER_SECONDS;
    for remote in [true, false] {
        let s = hoodi_built(remote, 11, 1);
        let fixture = serde_json::json!({
            "nodes": [
                node("master", "True", 9000),
                node("worker-1", "Unknown", after + 60),
                node("worker-2", "Unknown", 5),
                node("worker-3", "False", after + 60),
            ],
            "pods": [
                pod("validator-group-1-0", "staking", "worker-1", "validator-group-1", true),
                pod("web3signer-1", "staking", "worker-1", "web3signer", true),
                pod("beacon-0", "staking", "worker-1", "beacon", true),
                pod("web3signer-0", "staking", "worker-2", "web3signer", true),
                pod("validator-group-9-0", "staking", "worker-1", "validator-group-9", false),
                pod("validator-group-1-0", "other", "worker-1", "validator-group-1", true),
                pod("validator-group-8-0", "staking", "worker-3", "validator-group-1", true),
                pod("web3signer-2", "staking", "master", "web3signer", true),
            ],
        });
        let fixture_file = s.path("api.json");
        fs::write(&fixture_file, fixture.to_string()).unwrap();
        let deletions = s.path("deletions.log");
        let port_file = s.path("port");
        let mut server = std::process::Command::new("python3")
            .arg(repo().join("tests/kube/fake-apiserver.py"))
            .args([&fixture_file, &deletions, &port_file])
            .spawn()
            .expect("python3");
        let mut waited = 0;
        while !port_file.exists() && waited < 100 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            waited += 1;
        }
        let port = fs::read_to_string(&port_file).expect("the API server's port");
        let kubeconfig = s.path("kubeconfig");
        fs::write(
            &kubeconfig,
            format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"),
        )
        .unwrap();
        // `microk8s kubectl ARGS` is the real kubectl.
        let bin = s.path("bin");
        fs::create_dir_all(&bin).unwrap();
        write_executable(
            &bin.join("microk8s"),
            &format!(
                "#!/bin/sh\n[ \"$1\" = kubectl ] || exit 2\nshift\nexec '{}' \"$@\"\n",
                kubectl().display()
            ),
        );
        let (definitions, _) = script_definitions(&s, "master");
        let file = s.path("failover.sh");
        fs::write(&file, format!("{definitions}\nfailover\n")).unwrap();
        let out = std::process::Command::new("sh")
            .arg(&file)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        server.kill().ok();
        server.wait().ok();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deleted: Vec<serde_json::Value> = fs::read_to_string(&deletions)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let names: Vec<(&str, &str)> = deleted
            .iter()
            .map(|d| (d["namespace"].as_str().unwrap(), d["pod"].as_str().unwrap()))
            .collect();
        if remote {
            assert_eq!(
                names,
                [
                    ("staking", "validator-group-1-0"),
                    ("staking", "web3signer-1")
                ],
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            for d in &deleted {
                assert_eq!(d["options"]["gracePeriodSeconds"], 0, "{d}");
            }
        } else {
            assert!(names.is_empty(), "{names:?}");
        }
    }
}

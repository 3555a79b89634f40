//! What nodeimg must never do, whatever the user (or an attacker) hands
//! it: delete or replace files it did not write, lose or fork the secrets,
//! leave staging directories behind, or print a secret.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// `r` failed (exit 1) saying `needle`.
fn refused(r: &Run, needle: &str) {
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    assert!(r.stderr().contains(needle), "{}", r.stderr());
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A staker's folder: the profile, its secrets, the validator keys and
/// Ubuntu's SHA256SUMS, downloaded beside them.
fn stakers_folder() -> Scratch {
    let s = staking_scratch(&shipped_profile("hoodi.yaml"), 3, 1);
    let r = run_with_charts(&s, "build", "out");
    assert!(r.ok(), "{}", r.stderr());
    fs::write(
        s.path("SHA256SUMS"),
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef *noble-server-cloudimg-amd64.img\n",
    )
    .unwrap();
    s
}

fn snapshot(s: &Scratch) -> Vec<(String, Vec<u8>)> {
    s.listing()
        .into_iter()
        .filter(|p| !p.starts_with("out"))
        .map(|p| {
            let bytes = fs::read(s.path(&p)).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

#[test]
fn an_output_folder_holding_the_users_files_is_never_replaced() {
    let s = stakers_folder();
    let before = snapshot(&s);
    for args in [
        vec!["build", "profile.yaml", "-o", "."],
        vec!["build", "profile.yaml", "-o", "validator_keys"],
        vec!["release", "profile.yaml", "--values-only", "-o", "."],
    ] {
        let r = s.run(&args);
        assert_eq!(r.code(), Some(1), "{args:?}: {}", r.stderr());
        assert!(
            r.stderr().contains("would hold the"),
            "{args:?}: {}",
            r.stderr()
        );
        assert!(r.stderr().contains("hint:"), "{}", r.stderr());
        assert_eq!(snapshot(&s), before, "{args:?} changed the folder");
    }
    // A folder with a SHA256SUMS of someone else's is not nodeimg's.
    fs::create_dir(s.path("downloads")).unwrap();
    fs::copy(s.path("SHA256SUMS"), s.path("downloads/SHA256SUMS")).unwrap();
    fs::write(s.path("downloads/noble-server-cloudimg-amd64.img"), "image").unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "downloads"]);
    refused(&r, "holds files nodeimg did not write");
    assert_eq!(
        fs::read(s.path("downloads/noble-server-cloudimg-amd64.img")).unwrap(),
        b"image"
    );
    // A file the user put into a build output is kept too.
    fs::write(s.path("out/notes.txt"), "mine").unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "out"]);
    assert_eq!(r.code(), Some(1));
    assert!(r.stderr().contains("(notes.txt)"), "{}", r.stderr());
    assert_eq!(fs::read_to_string(s.path("out/notes.txt")).unwrap(), "mine");
}

/// `--only` replaces the manifest, SHA256SUMS and the rebuilt machines'
/// folders: a user's file in one of those stops it, a user's file in another
/// machine's folder stays where it is, untouched and never claimed; a full
/// build refuses the folder again.
#[test]
fn only_looks_into_the_folders_it_replaces_and_keeps_the_others_files() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    fs::write(s.path("out/master/notes.txt"), "mine").unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "out", "--only", "worker-1"]);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(
        fs::read_to_string(s.path("out/master/notes.txt")).unwrap(),
        "mine"
    );
    let manifest = fs::read_to_string(s.path("out/.nodeimg-manifest")).unwrap();
    assert!(!manifest.contains("notes.txt"), "{manifest}");
    let sums = fs::read_to_string(s.path("out/SHA256SUMS")).unwrap();
    assert!(!sums.contains("notes.txt"), "{sums}");
    let r = s.run(&["build", "profile.yaml", "-o", "out", "--only", "master"]);
    refused(&r, "(master/notes.txt)");
    let r = s.run(&["build", "profile.yaml", "-o", "out"]);
    refused(&r, "(master/notes.txt)");
    assert_eq!(
        fs::read_to_string(s.path("out/master/notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_secrets_file_inside_the_output_is_refused() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let build = || {
        s.run(&[
            "build",
            "profile.yaml",
            "-o",
            "out",
            "--secrets",
            "out/s.yaml",
        ])
    };
    refused(&build(), "would hold the secrets file out/s.yaml");
    // Once it exists it is never deleted by a build either.
    fs::create_dir(s.path("out")).unwrap();
    fs::write(s.path("out/s.yaml"), "x").unwrap();
    refused(&build(), "would hold the secrets file out/s.yaml");
    assert_eq!(fs::read_to_string(s.path("out/s.yaml")).unwrap(), "x");
}

#[test]
fn a_symlinked_output_is_followed_and_stays_a_link() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    fs::create_dir(s.path("real")).unwrap();
    symlink("real", s.path("link")).unwrap();
    s.build("link");
    s.build("link");
    let meta = fs::symlink_metadata(s.path("link")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert!(s.path("real/master/seed.iso").is_file());
    let sums = sha256sum_check(&s.path("real"));
    assert!(sums.0, "{}", sums.1);
    symlink("missing", s.path("dangling")).unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "dangling"]);
    refused(&r, "which does not exist");
}

#[test]
fn a_mount_point_as_output_gets_a_clear_message() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    fs::create_dir(s.path("mnt")).unwrap();
    let mnt = s.path("mnt");
    let m = tool("mount", &["-t", "tmpfs", "tmpfs", mnt.to_str().unwrap()]);
    assert!(m.status.success());
    let r = s.run(&["build", "profile.yaml", "-o", "mnt"]);
    let _ = tool("umount", &[mnt.to_str().unwrap()]);
    refused(&r, "is a mount point");
    assert!(r.stderr().contains("-o mnt/staking"), "{}", r.stderr());
}

/// Workers in the kill and interrupt tests: the 2000 of the safety issue.
const BIG: usize = 2000;

fn big_profile(workers: usize) -> String {
    let worker_1 = "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n";
    let mut text = worker_1.to_string();
    for i in 2..=workers {
        text.push_str(&format!(
            "  - {{name: worker-{i}, role: worker, ip: 172.20.{}.{}}}\n",
            1 + i / 250,
            i % 250 + 1
        ));
    }
    shipped_profile("tutorial.yaml").replace(worker_1, &text)
}

fn start_build(s: &Scratch) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["build", "profile.yaml", "-o", "out"])
        .current_dir(s.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_killed_build_keeps_the_previous_output_and_the_next_run_cleans_up() {
    let s = Scratch::with_profile(&big_profile(BIG));
    let started = std::time::Instant::now();
    s.build("out");
    let whole = started.elapsed();
    let mut killed_while_staging = 0;
    // Kill -9 at spread-out moments of the next builds (load, render and
    // pack, write, swap), as fractions of a whole build on this machine,
    // and once as soon as the build stages (so that one kill surely lands
    // there, however fast this machine is today): the old output must
    // verify every time.
    for percent in [Some(3u32), Some(35), None, Some(85)] {
        fs::write(
            s.profile(),
            big_profile(BIG).replace("worker-7,", "worker-x,"),
        )
        .unwrap();
        let mut child = start_build(&s);
        let delay = match percent {
            Some(percent) => {
                let delay = whole * percent / 100;
                std::thread::sleep(delay);
                delay
            }
            None => {
                let t = std::time::Instant::now();
                while staging_dirs(&s).is_empty() && t.elapsed() < whole * 2 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                t.elapsed()
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        killed_while_staging += usize::from(!staging_dirs(&s).is_empty());
        let (ok, text) = sha256sum_check(&s.path("out"));
        assert!(ok, "after a kill at {percent:?}% ({delay:?}): {text}");
        fs::write(s.profile(), big_profile(BIG)).unwrap();
    }
    assert!(killed_while_staging > 0, "no kill landed while staging");
    let r = s.run(&["validate", "profile.yaml"]);
    assert!(r.ok());
    s.build("out");
    assert_eq!(staging_dirs(&s), Vec::<String>::new());
    let (ok, text) = sha256sum_check(&s.path("out"));
    assert!(ok, "{text}");
}

#[test]
fn ctrl_c_during_a_build_removes_its_staging_directory() {
    let s = Scratch::with_profile(&big_profile(BIG));
    s.build("out");
    let before = fs::read(s.path("out/SHA256SUMS")).unwrap();
    fs::write(
        s.profile(),
        big_profile(BIG).replace("worker-7,", "worker-x,"),
    )
    .unwrap();
    let mut caught = 0;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut child = start_build(&s);
        // Wait until it stages, then interrupt.
        let t = std::time::Instant::now();
        while staging_dirs(&s).is_empty() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        if status.code() == Some(128 + sig) {
            caught += 1;
            assert_eq!(fs::read(s.path("out/SHA256SUMS")).unwrap(), before);
        }
        assert_eq!(staging_dirs(&s), Vec::<String>::new(), "signal {sig}");
        let (ok, text) = sha256sum_check(&s.path("out"));
        assert!(ok, "{text}");
    }
    assert!(caught > 0, "no signal arrived while the build staged");
}

#[test]
fn two_first_builds_at_once_share_one_secrets_file() {
    for round in 0..4 {
        let s = Scratch::with_profile(&big_profile(50));
        let run = |out: &str| {
            Command::new(env!("CARGO_BIN_EXE_nodeimg"))
                .args(["build", "profile.yaml", "-o", out])
                .current_dir(s.dir.path())
                .output()
                .unwrap()
        };
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| run("a"));
            let b = scope.spawn(|| run("b"));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(a.status.success() && b.status.success(), "round {round}");
        let created = [&a, &b]
            .iter()
            .filter(|o| String::from_utf8_lossy(&o.stderr).contains("created the secrets file"))
            .count();
        assert_eq!(
            created, 1,
            "round {round}: exactly one run creates the secrets"
        );
        let token = secrets_token(&s.secrets());
        for out in ["a", "b"] {
            let launch = seed_file(&s.path(out).join("master/user-data"), "microk8s.yaml");
            assert!(
                launch.contains(&token),
                "round {round}: {out} has another token"
            );
        }
    }
}

#[test]
fn a_secrets_file_others_can_read_or_do_not_own_is_refused() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    for mode in [0o644, 0o640, 0o604] {
        fs::set_permissions(s.secrets(), fs::Permissions::from_mode(mode)).unwrap();
        for cmd in ["build", "validate"] {
            let r =
                s.run(&[cmd, "profile.yaml", "-o", "out"][..if cmd == "build" { 4 } else { 2 }]);
            assert_eq!(r.code(), Some(1), "{cmd} with mode {mode:o}");
            assert!(
                r.stderr().contains("can be read by other users")
                    && r.stderr().contains("chmod 600 profile.secrets.yaml"),
                "{}",
                r.stderr()
            );
        }
    }
    fs::set_permissions(s.secrets(), fs::Permissions::from_mode(0o600)).unwrap();
    if is_root() {
        let out = tool("chown", &["65534", s.secrets().to_str().unwrap()]);
        assert!(out.status.success());
        let r = s.run(&["build", "profile.yaml", "-o", "out"]);
        refused(&r, "belongs to uid 65534");
    }
}

#[test]
fn a_symlinked_secrets_file_is_written_through_and_a_dangling_one_refused() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    fs::create_dir(s.path("vault")).unwrap();
    s.run(&[
        "build",
        "profile.yaml",
        "-o",
        "out",
        "--secrets",
        "vault/s.yaml",
    ]);
    let token = secrets_token(&s.path("vault/s.yaml"));
    symlink("vault/s.yaml", s.secrets()).unwrap();
    // Adding a machine extends the file behind the link.
    let text = shipped_profile("tutorial.yaml").replace(
        "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n",
        "  - {name: worker-1, role: worker, ip: 172.20.10.12}\n  - {name: worker-2, role: worker, ip: 172.20.10.13}\n",
    );
    fs::write(s.profile(), text).unwrap();
    let r = s.build("out");
    assert!(r.stderr().contains("worker-2"), "{}", r.stderr());
    assert!(fs::symlink_metadata(s.secrets())
        .unwrap()
        .file_type()
        .is_symlink());
    let behind = fs::read_to_string(s.path("vault/s.yaml")).unwrap();
    assert!(behind.contains("worker-2:"));
    assert_eq!(secrets_token(&s.path("vault/s.yaml")), token);
    // The drive with the secrets is not mounted: no new secrets.
    fs::rename(s.path("vault"), s.path("elsewhere")).unwrap();
    let r = s.run(&["build", "profile.yaml", "-o", "out"]);
    refused(&r, "which does not exist");
    assert!(!s.path("vault").exists());
}

/// Every secret of a secrets file, as the tests grep for them: the token,
/// the JWT and each line of each private key.
pub fn every_secret(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    let mut v = vec![secrets_token(path)];
    for line in text.lines() {
        let line = line.trim();
        if let Some(jwt) = line.strip_prefix("jwt_secret: ") {
            v.push(jwt.trim_matches('"').to_string());
        } else if line.len() >= 16 && !line.contains(':') && !line.starts_with("-----") {
            v.push(line.to_string());
        }
    }
    v
}

#[test]
fn hostile_templates_never_print_a_secret() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    let secrets = every_secret(&s.secrets());
    assert!(secrets.len() > 4);
    let builtin = |name: &str| {
        nodeimg::render::TEMPLATES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
    };
    let hostile = [
        // The checker quotes an unknown key.
        (
            "user-data.yaml",
            builtin("user-data.yaml").replace("runcmd:", "k{{ microk8s.token }}: 1\nruncmd:"),
        ),
        // tera quotes the value a filter refuses.
        (
            "user-data.yaml",
            builtin("user-data.yaml").replace("runcmd:", "x: {{ microk8s.token | int }}\nruncmd:"),
        ),
        (
            "user-data.yaml",
            builtin("user-data.yaml")
                .replace("runcmd:", "x: {{ ssh.host_key.private | int }}\nruncmd:"),
        ),
        // The YAML parser quotes the line it fails on.
        (
            "user-data.yaml",
            builtin("user-data.yaml").replace("runcmd:", "x: [{{ microk8s.token }}\nruncmd:"),
        ),
        (
            "user-data.yaml",
            builtin("user-data.yaml").replace("runcmd:", "{{ ssh.host_key.private }}: [\nruncmd:"),
        ),
    ];
    for (i, (name, text)) in hostile.iter().enumerate() {
        let dir = format!("tpl{i}");
        fs::create_dir(s.path(&dir)).unwrap();
        fs::write(s.path(&dir).join(name), text).unwrap();
        for cmd in ["build", "validate", "show"] {
            let args: Vec<&str> = match cmd {
                "build" => vec!["build", "profile.yaml", "-o", "out2", "--templates", &dir],
                "validate" => vec!["validate", "profile.yaml", "--templates", &dir],
                _ => vec!["show", "profile.yaml", "master", "--templates", &dir],
            };
            let r = s.run(&args);
            assert_eq!(r.code(), Some(1), "template {i} with {cmd}: {}", r.stderr());
            let all = r.stderr() + &r.stdout();
            for secret in &secrets {
                assert!(
                    !all.contains(secret.as_str()),
                    "template {i} with {cmd} printed a secret:\n{all}"
                );
            }
        }
    }
}

/// A staking profile whose first group's password_file is `password`.
fn with_password_file(password: &str) -> Scratch {
    let text = shipped_profile("hoodi.yaml").replace(
        "password_file: validator_keys/password.txt",
        &format!("password_file: {password}"),
    );
    staking_scratch(&text, 3, 1)
}

/// `validate` of `s` is refused at the password_file line with `needle`,
/// within seconds (nothing hangs, nothing is read whole), writing nothing.
fn password_file_refused(s: &Scratch, needle: &str) {
    let started = std::time::Instant::now();
    let r = run_with_charts(s, "build", "out");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let text = fs::read_to_string(s.profile()).unwrap();
    let (line, col) = position_of(&text, "password_file:", 0);
    let at = format!(
        "profile.yaml:{line}:{}: error: ",
        col + "password_file: ".len()
    );
    assert!(
        r.stderr()
            .lines()
            .any(|l| l.starts_with(&at) && l.contains(needle)),
        "expected {at}...{needle} in:\n{}",
        r.stderr()
    );
    assert!(!s.path("out").exists(), "something was written");
}

/// Paths in the profile stay in its folder: no host file reaches a seed.
#[test]
fn profile_paths_may_not_leave_the_profile_folder() {
    let s = with_password_file("/etc/shadow");
    password_file_refused(&s, "/etc/shadow is outside the profile's folder");
    // A sibling of the profile's folder, named relatively.
    let outside = tempfile::NamedTempFile::new().unwrap();
    fs::write(outside.path(), "pw").unwrap();
    let name = outside.path().file_name().unwrap().to_string_lossy();
    let s = with_password_file(&format!("../{name}"));
    assert_eq!(s.dir.path().parent(), outside.path().parent());
    password_file_refused(&s, "is outside the profile's folder");
    // Through a symlink inside the folder, too.
    let s = with_password_file("validator_keys/zero");
    symlink("/dev/zero", s.path("validator_keys/zero")).unwrap();
    password_file_refused(&s, "(really /dev/zero) is outside the profile's folder");
}

/// Only regular files of a bounded size: a FIFO would hang, a huge file
/// would be read whole into memory.
#[test]
fn fifos_devices_and_huge_files_are_refused_without_reading_them() {
    let s = with_password_file("validator_keys/fifo");
    let c = std::ffi::CString::new(s.path("validator_keys/fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    password_file_refused(&s, "is a FIFO (named pipe), not a regular file");
    let s = with_password_file("validator_keys/huge.txt");
    let huge = fs::File::create(s.path("validator_keys/huge.txt")).unwrap();
    huge.set_len(1 << 30).unwrap(); // sparse: 1 GiB that takes no disk
    password_file_refused(
        &s,
        "is 1073741824 bytes, more than the 4 KiB nodeimg reads for it",
    );
    let s = with_password_file("validator_keys");
    password_file_refused(&s, "is a folder, not a regular file");
}

/// Keys kept elsewhere are allowed once the profile says so.
#[test]
fn trusted_folders_allow_keys_outside_the_profile_folder() {
    let keys = tempfile::tempdir().unwrap();
    write_keys(keys.path(), 4, 2, &keys.path().join("pw.txt"));
    let text = shipped_profile("hoodi.yaml")
        .replace(
            "keystores: validator_keys",
            &format!("keystores: {}", keys.path().display()),
        )
        .replace(
            "password_file: validator_keys/password.txt",
            &format!("password_file: {}/pw.txt", keys.path().display()),
        );
    let s = staking_scratch(&text, 3, 1);
    let r = run_with_charts(&s, "build", "out");
    assert!(!r.ok());
    assert!(r.stderr().contains("trusted_folders"), "{}", r.stderr());
    let trusted = format!("trusted_folders: [{}]\n{text}", keys.path().display());
    fs::write(s.profile(), with_stand_in_charts(&s, &trusted)).unwrap();
    let r = run_with_charts(&s, "build", "out");
    assert!(r.ok(), "{}", r.stderr());
}

/// A disk that fills up mid-build: the error names the path it could not
/// write, and nothing half-written is left.
#[test]
fn a_full_disk_names_the_path_and_leaves_nothing() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let s = Scratch::with_profile(&big_profile(40));
    fs::create_dir(s.path("small")).unwrap();
    let mnt = s.path("small");
    let m = tool(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=256k",
            "tmpfs",
            mnt.to_str().unwrap(),
        ],
    );
    assert!(m.status.success());
    let r = s.run(&["build", "profile.yaml", "-o", "small/out"]);
    let left: Vec<String> = fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let _ = tool("umount", &[mnt.to_str().unwrap()]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    let err = r.stderr();
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("small/"), "the error names no path: {err}");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_rebuild_links_only_what_is_unchanged_and_still_ours() {
    use std::os::unix::fs::MetadataExt;
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    s.build("out");
    let inode = |rel: &str| fs::symlink_metadata(s.path(rel)).unwrap().ino();
    let before: Vec<u64> = ["out/nfs/seed.iso", "out/master/user-data"]
        .iter()
        .map(|r| inode(r))
        .collect();
    let right = |rel: &str| fs::read(s.path(rel)).unwrap();
    let (iso, meta, network, user_data) = (
        right("out/worker-1/seed.iso"),
        right("out/worker-1/meta-data"),
        right("out/worker-1/network-config"),
        right("out/worker-1/user-data"),
    );
    // Changed in place (same size), made wider, replaced by a link to a
    // file with the right bytes, and changed under another name that is
    // hard-linked to it.
    let mut bent = iso.clone();
    bent[40000] ^= 1;
    fs::write(s.path("out/worker-1/seed.iso"), &bent).unwrap();
    fs::set_permissions(
        s.path("out/worker-1/user-data"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    fs::write(s.path("elsewhere"), &meta).unwrap();
    fs::remove_file(s.path("out/worker-1/meta-data")).unwrap();
    symlink(s.path("elsewhere"), s.path("out/worker-1/meta-data")).unwrap();
    fs::hard_link(s.path("out/worker-1/network-config"), s.path("twin")).unwrap();
    let r = s.build("out");
    assert!(r.ok(), "{}", r.stderr());

    // What did not change is the same file (linked, not written again).
    assert_eq!(inode("out/nfs/seed.iso"), before[0]);
    assert_eq!(inode("out/master/user-data"), before[1]);
    // What was bent is written again, right, with its mode, never a link.
    assert!(
        right("out/worker-1/seed.iso") == iso,
        "seed.iso kept its bent byte"
    );
    assert!(right("out/worker-1/user-data") == user_data);
    assert_eq!(mode(&s.path("out/worker-1/user-data")), 0o600);
    let meta_now = fs::symlink_metadata(s.path("out/worker-1/meta-data")).unwrap();
    assert!(meta_now.file_type().is_file());
    assert!(right("out/worker-1/meta-data") == meta);
    // A file shared with another name is linked too; nothing is ever
    // written into a linked file, so the other name keeps what it holds.
    fs::write(s.path("twin"), b"the user's own bytes").unwrap();
    assert_eq!(
        right("out/worker-1/network-config"),
        b"the user's own bytes"
    );
    let r = s.build("out");
    assert!(r.ok(), "{}", r.stderr());
    assert!(right("out/worker-1/network-config") == network);
    assert_eq!(fs::read(s.path("twin")).unwrap(), b"the user's own bytes");
    let (ok, text) = sha256sum_check(&s.path("out"));
    assert!(ok, "{text}");
}

//! `nodeimg build --images`: flashable disk images from a base image
//! downloaded from a server on loopback.

mod common;

use std::fs;
use std::path::Path;

use common::http::{Behaviour, Server};
use common::*;

const MACHINES: [&str; 3] = ["nfs", "master", "worker-1"];

/// The tutorial profile with an `image` section pointing at `server`,
/// which serves a qcow2 conversion of a small cloud-like image and its
/// SHA256SUMS. Returns the scratch and the base's root (start, bytes).
fn setup(server: &Server, extra: &str) -> (Scratch, u64, Vec<u8>) {
    let s = Scratch::with_profile("");
    let (raw, root_start, root) = small_cloud_image(s.dir.path());
    let qcow = s.path("base.qcow2");
    let (raw_arg, qcow_arg) = (raw.to_str().unwrap(), qcow.to_str().unwrap());
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", raw_arg, qcow_arg]);
    let bytes = fs::read(&qcow).unwrap();
    let sums = format!("{}  base.qcow2\n", nodeimg::io::hash::sha256_hex(&bytes));
    let url = server.add("/images/base.qcow2", bytes);
    let sums_url = server.add("/images/SHA256SUMS", sums.into_bytes());
    let profile = format!(
        "{}image:\n  url: {url}\n  sha256sums: {sums_url}\n{extra}",
        shipped_profile("tutorial.yaml")
    );
    fs::write(s.profile(), profile).unwrap();
    (s, root_start, root)
}

/// Runs qemu-img, which must succeed.
fn qemu_img(args: &[&str]) {
    let out = tool("qemu-img", args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build_images(s: &Scratch, out: &str, more: &[&str]) -> Run {
    let mut args = vec![
        "build",
        "profile.yaml",
        "-o",
        out,
        "--images",
        "--cache",
        "cache",
    ];
    args.extend_from_slice(more);
    s.run(&args)
}

fn seed_partition(image: &Path) -> (u64, u64) {
    let parts = partitions(image);
    let p = parts
        .iter()
        .find(|p| p.3 == "cidata")
        .unwrap_or_else(|| panic!("no cidata partition: {parts:?}"));
    (p.1, p.2)
}

#[test]
fn images_from_a_loopback_url_are_valid_disks_with_the_seed_before_root() {
    let server = Server::start(Behaviour::default());
    let (s, root_start, root) = setup(&server, "");
    let r = build_images(&s, "out", &[]);
    assert!(r.ok(), "{}", r.stderr());
    assert!(
        r.stdout().contains("built 3 seed(s) and disk image(s)"),
        "{}",
        r.stdout()
    );
    let sums = fs::read_to_string(s.path("out/SHA256SUMS")).unwrap();
    for m in MACHINES {
        let img = s.path(&format!("out/{m}/disk.img"));
        assert_eq!(mode(&img), 0o600, "{m}: the image holds the seed's secrets");
        let verify = tool("sgdisk", &["-v", img.to_str().unwrap()]);
        assert!(
            String::from_utf8_lossy(&verify.stdout).contains("No problems found"),
            "{m}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
        // ESP unchanged as partition 1, the seed where root began, root
        // moved up and still the last partition.
        let parts = partitions(&img);
        let (seed_first, seed_last) = seed_partition(&img);
        assert_eq!(seed_first * 512, root_start, "{parts:?}");
        let rootp = parts.iter().find(|p| p.3 == "rootfs").unwrap();
        assert_eq!(rootp.0, 2, "root keeps its number: {parts:?}");
        assert_eq!(rootp.1, seed_last + 1, "{parts:?}");
        assert!(
            parts.iter().all(|p| p.2 <= rootp.2),
            "root is last: {parts:?}"
        );
        assert_eq!(parts.iter().find(|p| p.3 == "ESP").unwrap().0, 1);
        // Root's bytes arrived unchanged at the new place.
        assert!(
            read_at(&img, rootp.1 * 512, root.len()) == root,
            "{m}: root content moved wrongly"
        );
        // The seed partition holds this machine's seed.iso, which blkid
        // sees as the NoCloud volume.
        let iso = fs::read(s.path(&format!("out/{m}/seed.iso"))).unwrap();
        assert!(read_at(&img, seed_first * 512, iso.len()) == iso, "{m}");
        let probe = tool(
            "blkid",
            &[
                "-p",
                "-O",
                &(seed_first * 512).to_string(),
                img.to_str().unwrap(),
            ],
        );
        let probe = String::from_utf8_lossy(&probe.stdout).into_owned();
        assert!(
            probe.contains("LABEL=\"cidata\"") && probe.contains("TYPE=\"iso9660\""),
            "{probe}"
        );
        // The checksum beside the image, and in SHA256SUMS.
        let hash = nodeimg::io::hash::sha256_file(&img).unwrap();
        assert_eq!(
            fs::read_to_string(s.path(&format!("out/{m}/disk.img.sha256"))).unwrap(),
            format!("{hash}  disk.img\n")
        );
        assert!(sums.contains(&format!("{hash}  {m}/disk.img\n")), "{sums}");
    }
    // The image stays sparse: far less is allocated than its size.
    let meta = fs::metadata(s.path("out/master/disk.img")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < meta.len() / 4,
        "{} of {}",
        meta.blocks() * 512,
        meta.len()
    );
    // Downloaded once: the list, then the image.
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.0).collect();
    assert_eq!(paths, ["/images/SHA256SUMS", "/images/base.qcow2"]);
}

#[test]
fn the_root_partition_grows_into_a_larger_disk() {
    let server = Server::start(Behaviour::default());
    let (s, _, root) = setup(&server, "");
    assert!(build_images(&s, "out", &["--only", "worker-1"]).ok());
    let img = s.path("grown.img");
    fs::copy(s.path("out/worker-1/disk.img"), &img).unwrap();
    let before = partitions(&img);
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    let new_len = f.metadata().unwrap().len() + (10 << 30);
    f.set_len(new_len).unwrap();
    drop(f);
    let out = tool("growpart", &[img.to_str().unwrap(), "2"]);
    assert!(
        out.status.success(),
        "growpart: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = partitions(&img);
    let rootp = after.iter().find(|p| p.3 == "rootfs").unwrap();
    // Root now ends just before the backup partition table at the end.
    assert!(rootp.2 * 512 > new_len - (1 << 20), "{after:?}");
    assert_eq!(seed_partition(&img), {
        let p = before.iter().find(|p| p.3 == "cidata").unwrap();
        (p.1, p.2)
    });
    assert!(read_at(&img, rootp.1 * 512, root.len()) == root);
}

#[test]
fn images_are_reproducible_and_the_cache_serves_offline() {
    let server = Server::start(Behaviour::default());
    let (s, _, _) = setup(&server, "");
    assert!(build_images(&s, "a", &[]).ok());
    let r = build_images(&s, "b", &["--offline"]);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(
        fs::read_to_string(s.path("a/SHA256SUMS")).unwrap(),
        fs::read_to_string(s.path("b/SHA256SUMS")).unwrap()
    );
    assert_eq!(
        server.requests().len(),
        2,
        "offline asks the server nothing"
    );
}

#[test]
fn only_rebuilds_one_machines_image_and_keeps_the_others() {
    let server = Server::start(Behaviour::default());
    let (s, _, _) = setup(&server, "");
    assert!(build_images(&s, "out", &[]).ok());
    let nfs_before = fs::metadata(s.path("out/nfs/disk.img"))
        .unwrap()
        .modified()
        .unwrap();
    let sums_before = fs::read_to_string(s.path("out/SHA256SUMS")).unwrap();
    fs::remove_file(s.path("out/worker-1/disk.img")).unwrap();
    let r = build_images(&s, "out", &["--only", "worker-1"]);
    assert!(r.ok(), "{}", r.stderr());
    assert!(s.path("out/worker-1/disk.img").is_file());
    assert_eq!(
        fs::metadata(s.path("out/nfs/disk.img"))
            .unwrap()
            .modified()
            .unwrap(),
        nfs_before
    );
    assert_eq!(
        fs::read_to_string(s.path("out/SHA256SUMS")).unwrap(),
        sums_before
    );
}

#[test]
fn a_corrupted_base_image_is_refused_and_nothing_is_cached_or_written() {
    let server = Server::start(Behaviour::default());
    let (s, _, _) = setup(&server, "");
    // The server now sends other bytes than its SHA256SUMS names.
    let mut bytes = fs::read(s.path("base.qcow2")).unwrap();
    let good = nodeimg::io::hash::sha256_hex(&bytes);
    bytes[70_000] ^= 0xff;
    let bad = nodeimg::io::hash::sha256_hex(&bytes);
    server.add("/images/base.qcow2", bytes);
    let r = build_images(&s, "out", &[]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains(&format!("expected {good}")),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains(&format!("got {bad}")), "{}", r.stderr());
    assert!(!s.path("out").exists());
    let cached: Vec<_> = ["cache/sha256", "cache/partial"]
        .iter()
        .flat_map(|d| fs::read_dir(s.path(d)).into_iter().flatten().flatten())
        .collect();
    assert!(cached.is_empty(), "{cached:?}");
}

#[test]
fn an_image_size_too_small_is_an_error_at_its_line() {
    let server = Server::start(Behaviour::default());
    let (s, _, _) = setup(&server, "  size: 32M\n");
    let r = build_images(&s, "out", &[]);
    assert_eq!(r.code(), Some(1));
    let text = fs::read_to_string(s.profile()).unwrap();
    let line = text.lines().position(|l| l == "  size: 32M").unwrap() + 1;
    assert!(
        r.stderr().contains(&format!("profile.yaml:{line}:9: error: a disk of 32.0 MiB cannot hold the base image and the seed")),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr()
            .contains("hint: raise image.size to at least 68M"),
        "{}",
        r.stderr()
    );
    assert!(!s.path("out").exists());
}

#[test]
fn images_without_an_image_section_say_what_to_add() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let r = s.run(&["build", "profile.yaml", "--images"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("--images needs a base image"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("release: \"22.04\""), "{}", r.stderr());
}

#[test]
fn a_larger_image_size_gives_a_larger_disk() {
    let server = Server::start(Behaviour::default());
    let (s, _, _) = setup(&server, "  size: 1G\n");
    assert!(build_images(&s, "out", &[]).ok());
    assert_eq!(
        fs::metadata(s.path("out/nfs/disk.img")).unwrap().len(),
        1 << 30
    );
    let verify = tool(
        "sgdisk",
        &["-v", s.path("out/nfs/disk.img").to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&verify.stdout).contains("No problems found"));
}

/// A qcow2 that refers to another file (a backing file, here a host file
/// standing in for /etc/shadow) would copy that file's bytes into every
/// disk image: refused before converting, whichever way the image comes.
#[test]
fn a_qcow2_with_a_backing_file_is_refused() {
    let server = Server::start(Behaviour::default());
    let (s, _, _) = setup(&server, "");
    let (raw, _, _) = small_cloud_image(s.dir.path());
    let host_file = s.path("host-secret.raw");
    fs::rename(&raw, &host_file).unwrap();
    let overlay = s.path("overlay.qcow2");
    let out = tool(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            host_file.to_str().unwrap(),
            overlay.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = build_images(&s, "out", &["--base-image", "overlay.qcow2"]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    assert!(
        r.stderr().contains("refers to a backing file"),
        "{}",
        r.stderr()
    );
    assert!(!s.path("out").exists());
}

/// The safety issue's promise for `build --images` too: kill -9 at any
/// moment (conversion, seed partition, hashing, swap) leaves the previous
/// output verifying, and the next run leaves no staging directory.
#[test]
fn a_killed_image_build_keeps_the_previous_output_and_the_next_run_cleans_up() {
    let server = Server::start(Behaviour::default());
    let (s, _, _) = setup(&server, "");
    assert!(build_images(&s, "out", &[]).ok());
    // Timed once the base is cached, as every later run finds it.
    let started = std::time::Instant::now();
    assert!(build_images(&s, "out", &[]).ok());
    let whole = started.elapsed();
    let profile = fs::read_to_string(s.profile()).unwrap();
    let changed = profile.replace("name: worker-1,", "name: worker-x,");
    assert_ne!(changed, profile);
    let mut killed_while_staging = 0;
    for percent in [5u32, 20, 40, 60, 80, 95] {
        fs::write(s.profile(), &changed).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .args(["build", "profile.yaml", "-o", "out", "--images"])
            .args(["--cache", "cache"])
            .current_dir(s.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole * percent / 100);
        let _ = child.kill();
        let _ = child.wait();
        killed_while_staging += usize::from(!staging_dirs(&s).is_empty());
        let (ok, text) = sha256sum_check(&s.path("out"));
        assert!(ok, "after a kill at {percent}%: {text}");
        assert!(
            s.path("out/worker-1/disk.img").is_file() || s.path("out/worker-x/disk.img").is_file()
        );
        fs::write(s.profile(), &profile).unwrap();
    }
    assert!(killed_while_staging > 0, "no kill landed while staging");
    let r = build_images(&s, "out", &[]);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(staging_dirs(&s), Vec::<String>::new());
    let (ok, text) = sha256sum_check(&s.path("out"));
    assert!(ok, "{text}");
    assert!(s.path("out/worker-1/disk.img").is_file());
}

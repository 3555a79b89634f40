//! `nodeimg flash IMAGE DEVICE`: onto regular files standing in for
//! disks, and (as root) onto loop devices, mounted and not.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A 3 MiB image with recognisable content.
fn image(s: &Scratch) -> (PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..3 << 20).map(|i: usize| (i % 253) as u8).collect();
    let p = s.path("disk.img");
    fs::write(&p, &bytes).unwrap();
    (p, bytes)
}

fn disk_file(s: &Scratch, name: &str, len: u64, fill: u8) -> PathBuf {
    let p = s.path(name);
    fs::write(&p, vec![fill; len as usize]).unwrap();
    p
}

#[test]
fn flash_writes_verifies_and_keeps_the_rest_of_the_disk() {
    let s = Scratch::with_profile("");
    let (_, bytes) = image(&s);
    let disk = disk_file(&s, "disk", 8 << 20, 0xAA);
    let r = s.run(&["flash", "disk.img", "disk", "--yes"]);
    assert!(r.ok(), "{}", r.stderr());
    let sha = nodeimg::io::hash::sha256_hex(&bytes);
    assert!(
        r.stdout()
            .contains(&format!("read them back: sha256 {sha} verified")),
        "{}",
        r.stdout()
    );
    // What it said it would overwrite.
    assert!(
        r.stderr().contains("8.0 MiB (8388608 bytes), regular file"),
        "{}",
        r.stderr()
    );
    let written = fs::read(&disk).unwrap();
    assert!(written[..bytes.len()] == bytes[..]);
    assert!(written[bytes.len()..].iter().all(|&b| b == 0xAA));
}

#[test]
fn flash_without_yes_and_no_terminal_writes_nothing() {
    let s = Scratch::with_profile("");
    image(&s);
    let disk = disk_file(&s, "disk", 8 << 20, 0xAA);
    let r = s.run(&["flash", "disk.img", "disk"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("stdin is not a terminal"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("--yes"), "{}", r.stderr());
    assert!(fs::read(&disk).unwrap().iter().all(|&b| b == 0xAA));
}

#[test]
fn flash_refuses_a_disk_too_small_or_the_image_itself() {
    let s = Scratch::with_profile("");
    image(&s);
    let small = disk_file(&s, "small", 1 << 20, 0xAA);
    let r = s.run(&["flash", "disk.img", "small", "--yes"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("does not fit on small"),
        "{}",
        r.stderr()
    );
    assert!(fs::read(&small).unwrap().iter().all(|&b| b == 0xAA));
    let r = s.run(&["flash", "disk.img", "disk.img", "--yes"]);
    assert_eq!(r.code(), Some(1));
    assert!(r.stderr().contains("the same file"), "{}", r.stderr());
    let r = s.run(&["flash", "disk.img", "nowhere", "--yes"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr()
            .contains("nowhere: error: no such device or file"),
        "{}",
        r.stderr()
    );
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loop device over a fresh file; detached (and unmounted) on drop.
struct Loop {
    dev: String,
    mount: Option<PathBuf>,
}

impl Loop {
    fn new(file: &Path) -> Loop {
        Loop {
            dev: sh(&format!("losetup --find --show {}", file.display())),
            mount: None,
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(m) = &self.mount {
            let _ = Command::new("umount").arg(m).status();
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
#[ignore = "needs root and loop devices: run by scripts/test"]
fn flash_refuses_a_mounted_device_and_the_file_behind_it() {
    let s = Scratch::with_profile("");
    image(&s);
    let backing = disk_file(&s, "backing", 16 << 20, 0);
    sh(&format!("mkfs.ext4 -q {}", backing.display()));
    let mut lo = Loop::new(&backing);
    let mnt = s.path("mnt");
    fs::create_dir(&mnt).unwrap();
    sh(&format!("mount {} {}", lo.dev, mnt.display()));
    lo.mount = Some(mnt.clone());
    let before = fs::read(&backing).unwrap();
    let r = s.run(&["flash", "disk.img", &lo.dev, "--yes"]);
    assert_eq!(r.code(), Some(1), "{}", r.stdout());
    assert!(
        r.stderr().contains(&format!(
            "{}: error: the device is in use: mounted on {}",
            lo.dev,
            mnt.display()
        )),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("nothing was written"), "{}", r.stderr());
    // The file behind the loop device is refused as well.
    let r = s.run(&["flash", "disk.img", "backing", "--yes"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("backs the loop device"),
        "{}",
        r.stderr()
    );
    assert!(fs::read(&backing).unwrap() == before, "nothing was written");
}

#[test]
#[ignore = "needs root and loop devices: run by scripts/test"]
fn flash_onto_a_free_loop_device_verifies_what_it_wrote() {
    let s = Scratch::with_profile("");
    let (_, bytes) = image(&s);
    let backing = disk_file(&s, "backing", 16 << 20, 0x55);
    let lo = Loop::new(&backing);
    let r = s.run(&["flash", "disk.img", &lo.dev, "--yes"]);
    assert!(r.ok(), "{}", r.stderr());
    assert!(r.stdout().contains("verified"), "{}", r.stdout());
    assert!(r.stderr().contains("16.0 MiB"), "{}", r.stderr());
    drop(lo);
    assert!(fs::read(&backing).unwrap()[..bytes.len()] == bytes[..]);
}

#[test]
#[ignore = "needs root and loop devices: run by scripts/test"]
fn flash_refuses_a_partition() {
    let s = Scratch::with_profile("");
    image(&s);
    let backing = disk_file(&s, "backing", 16 << 20, 0);
    sh(&format!(
        "sgdisk -n 1:1MiB:+4MiB {} >/dev/null",
        backing.display()
    ));
    let lo = Loop::new(&backing);
    sh(&format!("partx -a {} || true", lo.dev));
    let part = format!("{}p1", lo.dev);
    assert!(Path::new(&part).exists(), "{part} did not appear");
    let r = s.run(&["flash", "disk.img", &part, "--yes"]);
    assert_eq!(r.code(), Some(1));
    assert!(r.stderr().contains("is a partition"), "{}", r.stderr());
}

//! Golden builds: the shipped profiles, built with a fixed secrets file (a
//! test fixture, not anyone's secrets), give exactly the files recorded in
//! tests/golden/ (their SHA256SUMS). The record was made by the build of
//! nodeimg before a refactoring; a change of the outputs that is meant
//! (a new seed file, a fixed template) updates it: run
//! `NODEIMG_BLESS=1 cargo test --test golden` and review the diff.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;

fn golden_dir() -> std::path::PathBuf {
    repo().join("tests/golden")
}

/// Builds `s` (its profile.yaml) with the fixture secrets of `name` and
/// compares SHA256SUMS with the record, less the lines `skip` selects.
fn assert_golden(s: &Scratch, name: &str, extra: &[&str], skip: impl Fn(&str) -> bool) {
    let bless = std::env::var_os("NODEIMG_BLESS").is_some();
    let fixture = golden_dir().join(format!("{name}.fake-secrets-fixture.yaml"));
    let secrets = s.path("fixed.secrets.yaml");
    if fixture.exists() {
        fs::copy(&fixture, &secrets).unwrap();
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
    } else {
        assert!(bless, "no {}: run with NODEIMG_BLESS=1", fixture.display());
    }
    let mut args = vec![
        "build",
        "profile.yaml",
        "-o",
        "out",
        "--secrets",
        "fixed.secrets.yaml",
    ];
    args.extend_from_slice(extra);
    let r = s.run(&args);
    assert!(r.ok(), "{}", r.stderr());
    let sums = fs::read_to_string(s.path("out/SHA256SUMS")).unwrap();
    let kept = |text: &str| -> String {
        text.lines()
            .filter(|l| !skip(l))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let record = golden_dir().join(format!("{name}.SHA256SUMS"));
    if bless {
        fs::create_dir_all(golden_dir()).unwrap();
        fs::write(&record, kept(&sums)).unwrap();
        if !fixture.exists() {
            fs::copy(&secrets, &fixture).unwrap();
        }
        return;
    }
    let want = fs::read_to_string(&record).unwrap();
    assert_eq!(
        kept(&sums),
        want,
        "{name}: the build's outputs differ from tests/golden/{name}.SHA256SUMS"
    );
}

#[test]
fn the_tutorial_profile_builds_the_recorded_files() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    assert_golden(&s, "tutorial", &[], |_| false);
}

#[test]
fn the_homelab_profile_builds_the_recorded_files() {
    let s = Scratch::with_profile(&shipped_profile("homelab.yaml"));
    assert_golden(&s, "homelab", &[], |_| false);
}

#[test]
fn the_ha_profile_builds_the_recorded_files() {
    let s = Scratch::with_profile(&shipped_profile("ha.yaml"));
    assert_golden(&s, "ha", &[], |_| false);
}

/// The staking profile with fake keys (made from a fixed seed). The master's
/// seed carries the stand-in chart archives, which `helm package` stamps
/// with the time (and its instance-id follows its content): it is compared
/// by the release snapshots instead.
#[test]
fn the_staking_profile_builds_the_recorded_files() {
    let s = staking_scratch(&shipped_profile("hoodi.yaml"), 5, 2);
    assert_golden(
        &s,
        "hoodi",
        &["--charts", "chart-mirror", "--cache", "cache"],
        |line| line.contains("  master/"),
    );
}

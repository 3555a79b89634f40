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
    }
}

#[test]
fn cloud_init_schema_accepts_every_user_data_of_every_shipped_profile() {
    let profiles = shipped_profiles();
    assert!(profiles.len() >= 2, "{profiles:?}");
    for profile in profiles {
        let text = fs::read_to_string(&profile).unwrap();
        let s = if text.contains("staking:") {
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
        };
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
            fs::write(&file, content).unwrap();
            let out = tool("shellcheck", &["-s", "sh", file.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{m}:{name}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

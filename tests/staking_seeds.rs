//! What the seeds of a staking profile carry: the validator keys on the
//! NFS server only (mode 0600, placed by first boot), the release (charts,
//! values, JWT) on the master, and nothing of either on the workers.

mod common;

use std::fs;

use common::*;

/// The hoodi profile with stand-in charts and two keystores, built.
fn built() -> Scratch {
    let s = staking_scratch(&shipped_profile("hoodi.yaml"), 7, 2);
    let r = run_with_charts(&s, "build", "out");
    assert!(r.ok(), "{}", r.stderr());
    s
}

fn written(s: &Scratch, machine: &str) -> Vec<(String, String, Vec<u8>)> {
    seed_files(&s.path(&format!("out/{machine}/user-data")))
}

#[test]
fn keystores_and_password_go_to_the_nfs_server_only_and_privately() {
    let s = built();
    let keys_dir = s.path("validator_keys");
    let password = fs::read(keys_dir.join("password.txt")).unwrap();
    let nfs = written(&s, "nfs");
    let mut placed = 0;
    for e in fs::read_dir(&keys_dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let want = format!("/var/lib/nodeimg/validator-keys/group-1/keystores/{name}");
        let entry = nfs
            .iter()
            .find(|f| f.0 == want)
            .unwrap_or_else(|| panic!("{want} not in the NFS seed"));
        assert_eq!(entry.1, "0600");
        assert_eq!(entry.2, fs::read(e.path()).unwrap());
        placed += 1;
    }
    assert_eq!(placed, 2);
    let pw = nfs
        .iter()
        .find(|f| f.0 == "/var/lib/nodeimg/validator-keys/group-1/password.txt")
        .expect("password in the NFS seed");
    assert_eq!((pw.1.as_str(), &pw.2), ("0600", &password));
    // No other machine's seed holds a keystore or the password, in any form.
    let keystore = fs::read_to_string(keys_dir.join("keystore-m_12381_3600_0_0_0-7.json")).unwrap();
    for m in ["master", "worker-1"] {
        for (path, _, bytes) in written(&s, m) {
            assert!(!path.contains("validator-keys"), "{m}: {path}");
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("correct horse battery staple"),
                "{m}: {path} holds the password"
            );
            assert!(!text.contains(&keystore), "{m}: {path} holds a keystore");
        }
    }
    // The seed files holding them are private.
    assert_eq!(mode(&s.path("out/nfs/user-data")), 0o600);
    assert_eq!(mode(&s.path("out/nfs/seed.iso")), 0o600);
}

#[test]
fn the_master_carries_the_charts_values_and_jwt_and_the_workers_nothing() {
    let s = built();
    let master = written(&s, "master");
    let get = |path: &str| {
        master
            .iter()
            .find(|f| f.0 == path)
            .unwrap_or_else(|| panic!("{path} not in the master's seed"))
            .clone()
    };
    for chart in ["geth-1.1.3.tgz", "prysm-1.2.3.tgz"] {
        let f = get(&format!("/var/lib/nodeimg/release/charts/{chart}"));
        assert_eq!(
            f.2,
            fs::read(s.path(&format!("chart-mirror/{chart}"))).unwrap()
        );
    }
    // The same values `nodeimg release` writes.
    let r = s.run(&["release", "profile.yaml", "--values-only", "-o", "rel"]);
    assert!(r.ok(), "{}", r.stderr());
    for v in ["execution", "beacon", "validator-group-1"] {
        let f = get(&format!("/var/lib/nodeimg/release/values/{v}.yaml"));
        assert_eq!(
            f.2,
            fs::read(s.path(&format!("rel/values/{v}.yaml"))).unwrap(),
            "{v}"
        );
    }
    assert_eq!(
        get("/var/lib/nodeimg/release/storage.yaml").2,
        fs::read(s.path("rel/storage.yaml")).unwrap()
    );
    let jwt = get("/var/lib/nodeimg/release/jwt.hex");
    assert_eq!(jwt.1, "0600");
    assert_eq!(jwt.2, fs::read(s.path("rel/jwt.hex")).unwrap());
    let list = String::from_utf8(get("/var/lib/nodeimg/release/releases.list").2).unwrap();
    assert_eq!(
        list,
        "execution geth-1.1.3.tgz values/execution.yaml yes\n\
         beacon prysm-1.2.3.tgz values/beacon.yaml yes\n\
         validator-group-1 prysm-1.2.3.tgz values/validator-group-1.yaml no\n"
    );
    // helm3 is enabled on the master for the release step.
    let launch = String::from_utf8(get("/etc/microk8s.yaml").2).unwrap();
    assert!(launch.contains("name: \"helm3\""), "{launch}");
    let worker = written(&s, "worker-1");
    assert!(
        worker.iter().all(|f| !f.0.starts_with("/var/lib/nodeimg/")),
        "{:?}",
        worker.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    // The release step runs on the master only.
    let env = String::from_utf8(get("/etc/nodeimg/setup.env").2).unwrap();
    assert!(
        env.contains("STAKING=true") && env.contains("STAKING_NAMESPACE='staking'"),
        "{env}"
    );
}

#[test]
fn show_masks_the_keys_and_the_release_payload() {
    let s = built();
    let r = s.run(&["show", "profile.yaml", "nfs"]);
    assert!(r.ok(), "{}", r.stderr());
    let shown = r.stdout();
    assert!(shown.contains("/var/lib/nodeimg/validator-keys/group-1/password.txt"));
    let ud = fs::read_to_string(s.path("out/nfs/user-data")).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&ud).unwrap();
    for f in doc["write_files"].as_array().unwrap() {
        if f["path"].as_str().unwrap().contains("validator-keys") {
            assert!(
                !shown.contains(f["content"].as_str().unwrap()),
                "{}",
                f["path"]
            );
        }
    }
    assert!(shown.contains(nodeimg::MASK));
}

#[test]
fn building_needs_the_keystores_but_release_values_only_does_not() {
    let s = Scratch::with_profile("");
    let text = with_stand_in_charts(&s, &shipped_profile("hoodi.yaml"));
    fs::write(s.profile(), &text).unwrap();
    let r = s.run(&["release", "profile.yaml", "--values-only", "-o", "rel"]);
    assert!(r.ok(), "{}", r.stderr());
    let r = s.run(&[
        "build",
        "profile.yaml",
        "-o",
        "out",
        "--charts",
        "chart-mirror",
    ]);
    let (line, col) = position_of(&text, "validator_keys\n", 0);
    assert_refused_at(
        &r,
        "build without keystores",
        (line, col),
        "cannot read the keystore folder",
        "staking-deposit-cli",
    );
    assert_kind_at(
        &s.profile(),
        "build without keystores",
        nodeimg::diag::Kind::Keystore,
        (line, col),
    );
    assert!(!s.path("out").exists());
}

#[test]
fn the_staking_seeds_pass_the_cloud_init_schema() {
    let s = built();
    for m in ["nfs", "master", "worker-1"] {
        assert_valid_cloud_config(&s.path(&format!("out/{m}/user-data")), m);
    }
}

/// With `signer: web3signer` the NFS server's seed carries the signer's
/// database: PostgreSQL among its packages, 5432 open to the subnet only,
/// the password in its private setup.env (and no other seed), the pinned
/// migrations, verified, at their path. The password is made once, kept in
/// the secrets file and never printed; a migration whose bytes are not the
/// pinned ones stops the build, naming it.
#[test]
fn the_remote_signer_database_goes_to_the_nfs_server_only() {
    let text = with_remote_signer(&shipped_profile("hoodi.yaml"));
    let s = staking_scratch(&text, 7, 1);
    let r = run_with_charts(&s, "build", "out");
    assert!(r.ok(), "{}", r.stderr());
    let secrets = fs::read_to_string(s.secrets()).unwrap();
    let password = secrets
        .lines()
        .find_map(|l| l.strip_prefix("signer_db_password: "))
        .expect("a password in the secrets file")
        .trim_matches('"')
        .to_string();
    assert_eq!(password.len(), 48);
    assert!(!r.stdout().contains(&password) && !r.stderr().contains(&password));
    let nfs = written(&s, "nfs");
    let setup_env = nfs
        .iter()
        .find(|f| f.0 == "/etc/nodeimg/setup.env")
        .unwrap();
    assert_eq!(setup_env.1, "0600");
    let env = String::from_utf8_lossy(&setup_env.2);
    assert!(
        env.contains(&format!("SIGNER_DB_PASSWORD='{password}'\n")),
        "{env}"
    );
    assert!(
        env.contains("SIGNER_DB=true\n") && env.contains("postgresql"),
        "{env}"
    );
    let rules = env.split("FIREWALL_RULES=").nth(1).unwrap();
    let db_rules: Vec<&str> = rules.lines().filter(|l| l.contains("5432")).collect();
    assert_eq!(db_rules.len(), 1, "{rules}");
    assert!(
        db_rules[0].contains(" tcp 172.20.0.0/20 ")
            && db_rules[0].contains("PostgreSQL for Web3Signer"),
        "5432 from the subnet only: {rules}"
    );
    let migrations = repo().join("tests/signer-db");
    let mut carried = 0;
    for f in &nfs {
        if let Some(name) =
            f.0.strip_prefix(&format!("{}/", nodeimg::staking::SIGNER_DB_MIGRATIONS))
        {
            assert_eq!(f.2, fs::read(migrations.join(name)).unwrap(), "{name}");
            assert_eq!(f.1, "0644");
            carried += 1;
        }
    }
    assert_eq!(carried, 12);
    // The master that installs the release carries it once more, as the
    // Secret Web3Signer reads (0600); no other machine does.
    for m in ["master", "worker-1"] {
        let text = fs::read_to_string(s.path(&format!("out/{m}/user-data"))).unwrap();
        assert!(!text.contains(&password), "{m} carries the password");
        let holding: Vec<(String, String)> = written(&s, m)
            .into_iter()
            .filter(|f| String::from_utf8_lossy(&f.2).contains(&password))
            .map(|f| (f.0, f.1))
            .collect();
        let want: &[(&str, &str)] = if m == "master" {
            &[("/var/lib/nodeimg/release/signer-db-secret.yaml", "0600")]
        } else {
            &[]
        };
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(holding, want, "{m}");
        let env = written(&s, m)
            .into_iter()
            .find(|f| f.0 == "/etc/nodeimg/setup.env")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&env.2).contains("SIGNER_DB=false"),
            "{m}"
        );
    }
    // Built again: the same password, byte-identical seeds.
    let again = run_with_charts(&s, "build", "out2");
    assert!(again.ok(), "{}", again.stderr());
    assert_eq!(
        fs::read(s.path("out/nfs/seed.iso")).unwrap(),
        fs::read(s.path("out2/nfs/seed.iso")).unwrap()
    );
    // A migration that is not the pinned one.
    let folder = s.path(&format!(
        "chart-mirror/{}",
        nodeimg::staking::migrations_folder(nodeimg::staking::WEB3SIGNER_COMMIT)
    ));
    fs::write(
        folder.join("V00007__add_db_version.sql"),
        "DROP TABLE validators",
    )
    .unwrap();
    // (A cache of its own: the verified copies in `cache` would be used.)
    let tampered = s.run(&[
        "build",
        "profile.yaml",
        "-o",
        "out3",
        "--charts",
        "chart-mirror",
        "--cache",
        "fresh-cache",
    ]);
    assert_eq!(tampered.code(), Some(1));
    assert!(
        tampered.stderr().contains("V00007__add_db_version.sql"),
        "{}",
        tampered.stderr()
    );
    assert!(!s.path("out3").exists(), "nothing written");
}

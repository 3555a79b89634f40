//! The reference setup's chart (eth2xk8s, prysm/helm) stays selectable:
//! fetched as a GitHub zip archive at a pinned commit, sha256-verified, its
//! chart folder extracted safely, rendered with the profile's values.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::*;

const COMMIT: &str = "6b7e9ef574d1215bc8b73c4eb89304073ca30df0";

/// A zip shaped like GitHub's archive of eth2xk8s: one top folder, the
/// stand-in chart in prysm/helm, other files beside it, and `extra` entries.
fn archive(path: &Path, extra: &[(&str, &str)]) -> String {
    let top = format!("eth2xk8s-{COMMIT}");
    let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    let src = repo().join("tests/charts/eth2xk8s-prysm");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (format!("{top}/README.md"), b"eth2xk8s".to_vec()),
        (
            format!("{top}/lighthouse/helm/Chart.yaml"),
            b"name: other".to_vec(),
        ),
    ];
    for rel in [
        "Chart.yaml",
        "values.yaml",
        "values.schema.json",
        "templates/beacon.yaml",
        "templates/validators.yaml",
    ] {
        files.push((
            format!("{top}/prysm/helm/{rel}"),
            fs::read(src.join(rel)).unwrap(),
        ));
    }
    for (name, text) in extra {
        files.push((name.replace("TOP", &top), text.as_bytes().to_vec()));
    }
    for (name, bytes) in files {
        zip.start_file(name, opts).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap();
    nodeimg::io::hash::sha256_file(path).unwrap()
}

/// The hoodi profile on the legacy chart, its archive and the stand-in
/// geth chart in `chart-mirror/`, keys in validator_keys/.
fn legacy_scratch(extra: &[(&str, &str)]) -> Scratch {
    let s = Scratch::with_profile("");
    let text = with_stand_in_charts(&s, &shipped_profile("hoodi.yaml"));
    let sha = archive(
        &s.path(&format!("chart-mirror/eth2xk8s-{COMMIT}.zip")),
        extra,
    );
    let text = text
        .replace("v7.0.0", "v2.0.6")
        .replace("  charts:\n", &format!("  chart_source: eth2xk8s\n  eth2xk8s: {{commit: {COMMIT}, sha256: {sha}}}\n  charts:\n"));
    fs::write(s.profile(), text).unwrap();
    write_keys(
        &s.path("validator_keys"),
        3,
        1,
        &s.path("validator_keys/password.txt"),
    );
    s
}

#[test]
fn the_legacy_chart_renders_with_nfs_volumes_one_recreated_validator_and_the_delay() {
    let s = legacy_scratch(&[]);
    let r = run_with_charts(&s, "release", "rel");
    assert!(r.ok(), "{}", r.stderr());
    assert!(r.stderr().contains("predates the Merge"), "{}", r.stderr());
    // Only prysm/helm is extracted, as charts/<its chart name>.
    assert!(s.path("rel/charts/eth2-prysm/Chart.yaml").is_file());
    assert!(!s.path("rel/charts/eth2-prysm/README.md").exists());
    assert!(!s.path("rel/lighthouse").exists());
    assert_eq!(mode(&s.path("rel/passwords/group-1.txt")), 0o600);
    let script = fs::read_to_string(s.path("rel/install.sh")).unwrap();
    let line = script
        .lines()
        .find(|l| l.contains(" prysm "))
        .expect("the prysm release");
    assert_eq!(
        line,
        "helm upgrade --install prysm charts/eth2-prysm --version 0.1.4 -n staking -f values/prysm.yaml --set-file validatorClients.group-1.walletPassword=passwords/group-1.txt"
    );
    let args: Vec<&str> = line.split_whitespace().skip(3).collect();
    let out = helm_ok(&s.path("rel"), &[&["template"], &args[..]].concat());
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let deployments: Vec<&serde_json::Value> =
        docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    let names: Vec<&str> = deployments
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    // The chart's example client is gone: the beacon node and our group only.
    assert_eq!(names, ["beacon", "validator-group-1"]);
    for d in &deployments {
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
        let pod = &d["spec"]["template"]["spec"];
        for v in pod["volumes"].as_array().unwrap() {
            assert_eq!(v["nfs"]["server"], "172.20.10.10");
            assert!(v["nfs"]["path"].as_str().unwrap().starts_with("/data/"));
        }
        assert_eq!(pod["securityContext"]["runAsUser"], 1001);
        assert_eq!(pod["containers"][0]["args"][0], "--hoodi");
    }
    let validator = &deployments[1]["spec"]["template"]["spec"];
    assert_eq!(
        validator["volumes"][0]["nfs"]["path"],
        "/data/validator-group-1"
    );
    assert!(validator["initContainers"][0]["command"][2]
        .as_str()
        .unwrap()
        .contains("sleep 768"));
    let secret = docs.iter().find(|d| d["kind"] == "Secret").unwrap();
    assert_eq!(
        secret["stringData"]["password"],
        "correct horse battery staple"
    );
    // The wallet password is never in a values file, and the master's seed
    // carries no release (it would need the password).
    let values = fs::read_to_string(s.path("rel/values/prysm.yaml")).unwrap();
    assert!(!values.contains("correct horse"));
    let r = s.run(&[
        "build",
        "profile.yaml",
        "--charts",
        "chart-mirror",
        "-o",
        "out",
    ]);
    assert!(r.ok(), "{}", r.stderr());
    let master = fs::read_to_string(s.path("out/master/user-data")).unwrap();
    assert!(!master.contains("/var/lib/nodeimg/release/"));
    // The chart's beacon node holds its P2P ports as host ports on any
    // node: every Kubernetes node opens them (with the execution client's).
    let beacon = &deployments[0]["spec"]["template"]["spec"]["containers"][0];
    let mut held: std::collections::BTreeSet<(u16, String)> = beacon["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["hostPort"], p["containerPort"]);
            let port = p["hostPort"].as_u64().unwrap() as u16;
            (port, p["protocol"].as_str().unwrap().to_lowercase())
        })
        .collect();
    let a: Vec<&str> = beacon["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        a.contains(&"--p2p-tcp-port=13000") && a.contains(&"--p2p-udp-port=12000"),
        "{a:?}"
    );
    held.insert((30303, "tcp".into()));
    held.insert((30303, "udp".into()));
    for m in ["master", "worker-1"] {
        assert_eq!(opened_to_anyone(&s, "out", m), held, "{m}");
    }
}

#[test]
fn an_archive_entry_that_climbs_out_of_the_chart_folder_is_refused() {
    for evil in [
        "TOP/prysm/helm/../../../escaped.txt",
        "/tmp/nodeimg-escaped.txt",
        "TOP/prysm/helm/templates/../../../../escaped.txt",
    ] {
        let s = legacy_scratch(&[(evil, "pwned")]);
        let r = run_with_charts(&s, "release", "rel");
        assert_eq!(r.code(), Some(1), "{evil}");
        assert!(
            r.stderr()
                .contains("would be written outside the chart folder"),
            "{evil}: {}",
            r.stderr()
        );
        assert!(!s.path("rel").exists(), "{evil}: something was written");
        assert!(!s.path("escaped.txt").exists());
        assert!(!Path::new("/tmp/nodeimg-escaped.txt").exists());
    }
}

#[test]
fn the_legacy_archive_must_be_pinned_and_runs_prysm_only() {
    let s = legacy_scratch(&[]);
    let text = fs::read_to_string(s.profile()).unwrap();
    let unpinned = text.replace(
        &format!("eth2xk8s: {{commit: {COMMIT}, sha256: "),
        "eth2xk8s: {commit: X, sha: ",
    );
    let unpinned = unpinned
        .lines()
        .map(|l| {
            if l.contains("eth2xk8s: {commit: X") {
                "  eth2xk8s: {}"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(s.profile(), &unpinned).unwrap();
    let r = s.run(&["release", "profile.yaml", "--values-only", "-o", "rel"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr()
            .contains("the eth2xk8s archive has no valid sha256 pin"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("https://github.com/lumostone/eth2xk8s/archive/6b7e9ef574d1215bc8b73c4eb89304073ca30df0.zip"), "{}", r.stderr());
    fs::write(s.profile(), text.replace("client: prysm", "client: teku")).unwrap();
    let r = s.run(&["release", "profile.yaml", "--values-only", "-o", "rel"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("the eth2xk8s chart runs Prysm only"),
        "{}",
        r.stderr()
    );
}

#[test]
fn a_corrupted_legacy_archive_is_refused() {
    let s = legacy_scratch(&[]);
    let zip = s.path(&format!("chart-mirror/eth2xk8s-{COMMIT}.zip"));
    let mut bytes = fs::read(&zip).unwrap();
    bytes[10] ^= 1;
    fs::write(&zip, bytes).unwrap();
    let r = run_with_charts(&s, "release", "rel");
    assert_eq!(r.code(), Some(1));
    assert!(r.stderr().contains("sha256 mismatch"), "{}", r.stderr());
    assert!(!s.path("rel").exists());
}

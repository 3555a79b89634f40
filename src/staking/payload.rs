//! What the seeds and `nodeimg release` carry: the storage manifest, the
//! install script, the release list and the files each machine gets.

use serde_json::json;

use super::values::pvc;
use super::{
    chart_archive, releases, to_yaml, GroupKeys, Release, StakingSpec, CHART_REPOSITORY,
    KEYSTORE_DIR, PASSWORD_FILE, SIGNER_DB_SECRET, SIGNER_DB_SECRET_KEY, SIGNER_FOLDER,
};
use crate::firstboot::{
    KEYS_STAGING, RELEASE_CHARTS, RELEASE_DIR, RELEASE_JWT, RELEASE_JWT_KEY as JWT_KEY,
    RELEASE_LIST, RELEASE_SIGNER_SECRET, RELEASE_STORAGE,
};

/// Static NFS PersistentVolumes and their claims, one per workload folder,
/// bound to each other by name (no storage class, no provisioner).
pub fn storage_manifest(spec: &crate::Spec, s: &StakingSpec) -> String {
    let server = spec.nfs_server().ip.to_string();
    let mut docs = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": s.namespace},
    })];
    // The eth2xk8s chart mounts its NFS folders inline; only the execution
    // client needs a claim then.
    let folders = if s.legacy.is_some() {
        vec!["execution".to_string()]
    } else {
        s.folders()
    };
    for folder in folders {
        let name = pvc(&folder);
        // Web3Signer's replicas, on two nodes, share its folder (NFS serves
        // both); every other workload is one pod.
        let access = if folder == SIGNER_FOLDER {
            "ReadWriteMany"
        } else {
            "ReadWriteOnce"
        };
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": format!("{}-{name}", s.namespace)},
            "spec": {
                "capacity": {"storage": "1Ti"},
                "accessModes": [access],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "nfs": {"server": server, "path": format!("{}/{folder}", spec.nfs.export_root)},
                "claimRef": {"namespace": s.namespace, "name": name},
            },
        }));
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": s.namespace},
            "spec": {
                "accessModes": [access],
                "storageClassName": "",
                "volumeName": format!("{}-{name}", s.namespace),
                "resources": {"requests": {"storage": "1Ti"}},
            },
        }));
    }
    docs.iter()
        .map(|d| format!("---\n{}", to_yaml(d)))
        .collect()
}

/// The Secret that gives Web3Signer its database password (applied before
/// the releases; a 0600 file, like the JWT).
pub fn signer_secret_manifest(s: &StakingSpec, password: &str) -> String {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SIGNER_DB_SECRET, "namespace": s.namespace},
        "type": "Opaque",
        "stringData": {SIGNER_DB_SECRET_KEY: password},
    });
    format!("---\n{}", to_yaml(&doc))
}

/// The template of `nodeimg release`'s backup.sh (with the remote signer).
const BACKUP_TEMPLATE: &str = include_str!("../../release/backup.sh");

/// The commands that back up the remote signer's database over `nodeimg
/// ssh`: the whole database from the NFS server (pg_dump), and the slashing
/// history as an EIP-3076 interchange file from Web3Signer itself.
pub fn backup_script(spec: &crate::Spec, s: &StakingSpec) -> anyhow::Result<String> {
    let context = json!({
        "nfs": spec.nfs_server().name,
        "master": spec.master().name,
        "namespace": s.namespace,
        "signer": super::SIGNER_SERVICE,
        "db": super::SIGNER_DB_NAME,
        "user": super::SIGNER_DB_USER,
        "url": super::signer_db_url(spec),
    });
    crate::render::render_own_sh("release/backup.sh", BACKUP_TEMPLATE, &context)
}

/// The template of `nodeimg release`'s install.sh.
const INSTALL_TEMPLATE: &str = include_str!("../../release/install.sh");

/// The commands that install (or upgrade) the release: storage first,
/// then each release in order. `jwt.hex` beside it holds the JWT secret;
/// it reaches the charts as a file, never through a values file. With
/// `verified_archives` (the release directory holds `charts/<chart>-<version>.tgz`,
/// checked against the pins), helm installs those files; without them
/// (`--values-only`) it fetches from the ethpandaops repository, which it does
/// not check against the pins.
pub fn install_script(
    s: &StakingSpec,
    releases: &[Release],
    verified_archives: bool,
) -> anyhow::Result<String> {
    let from_repository = !verified_archives && releases.iter().any(|r| !r.local);
    let releases: Vec<_> = releases
        .iter()
        .map(|r| {
            let chart = if r.local {
                format!("{RELEASE_CHARTS}/{}", r.chart)
            } else if verified_archives {
                format!(
                    "{RELEASE_CHARTS}/{}",
                    chart_archive(&r.chart, &r.pin.version)
                )
            } else {
                format!("ethpandaops/{}", r.chart)
            };
            let set_files: Vec<_> = r
                .set_files
                .iter()
                .map(|(k, f)| format!("{k}={f}"))
                .collect();
            json!({
                "name": r.name,
                "chart": chart,
                "version": r.pin.version,
                "values": r.values_file,
                "set_files": set_files,
            })
        })
        .collect();
    let context = json!({
        "repository": if from_repository { CHART_REPOSITORY } else { "" },
        "storage": RELEASE_STORAGE,
        "signer_secret": if s.signer.is_remote() { RELEASE_SIGNER_SECRET } else { "" },
        "namespace": s.namespace,
        "releases": releases,
    });
    crate::render::render_own_sh("release/install.sh", INSTALL_TEMPLATE, &context)
}

/// `NAME CHART_FILE VALUES_FILE JWT(yes|no)`, one release a line, in
/// install order: what the master's release step runs.
pub fn releases_list(releases: &[Release]) -> String {
    releases
        .iter()
        .map(|r| {
            // The seed's release step passes the JWT with the charts' key.
            let jwt = if r
                .set_files
                .iter()
                .any(|(k, f)| k == JWT_KEY && f == RELEASE_JWT)
            {
                "yes"
            } else {
                "no"
            };
            format!(
                "{} {} {} {jwt}\n",
                r.name,
                chart_archive(&r.chart, &r.pin.version),
                r.values_file
            )
        })
        .collect()
}

/// What the seeds carry for the staking release: on the NFS server each
/// group's keystores and password (nowhere else), on the master the chart
/// archives, values, storage manifest, release list and JWT secret.
/// `charts` may be empty (validate and show render without them).
pub fn payload(
    spec: &crate::Spec,
    s: &StakingSpec,
    keys: &[GroupKeys],
    charts: &[(String, Vec<u8>)],
    migrations: &[(String, Vec<u8>)],
    jwt: &str,
    signer_db_password: Option<&str>,
) -> crate::payload::Payload {
    use crate::payload::PayloadFile;
    let mut payload = crate::payload::Payload::default();
    let mut nfs = Vec::new();
    for g in keys {
        let dir = format!("{KEYS_STAGING}/{}", g.group);
        for (name, bytes, _) in &g.keystores {
            nfs.push(PayloadFile::new(
                format!("{dir}/{KEYSTORE_DIR}/{name}"),
                0o600,
                bytes,
                true,
            ));
        }
        nfs.push(PayloadFile::new(
            format!("{dir}/{PASSWORD_FILE}"),
            0o600,
            &g.password,
            false,
        ));
    }
    // The signer database's migrations: public SQL, applied on first boot.
    for (file, bytes) in migrations {
        nfs.push(PayloadFile::new(
            format!("{}/{file}", super::SIGNER_DB_MIGRATIONS),
            0o644,
            bytes,
            true,
        ));
    }
    payload.files.insert(spec.nfs_server().name.clone(), nfs);
    if s.legacy.is_some() {
        // The eth2xk8s chart takes the wallet passwords as values, which
        // must not reach the master: it is installed by hand (install.sh).
        return payload;
    }
    let releases = releases(spec, s, keys);
    let mut master = Vec::new();
    for (file, bytes) in charts {
        // Chart archives are compressed already.
        master.push(PayloadFile::new(
            format!("{RELEASE_DIR}/{RELEASE_CHARTS}/{file}"),
            0o600,
            bytes,
            false,
        ));
    }
    for r in &releases {
        master.push(PayloadFile::new(
            format!("{RELEASE_DIR}/{}", r.values_file),
            0o600,
            to_yaml(&r.values).as_bytes(),
            true,
        ));
    }
    master.push(PayloadFile::new(
        format!("{RELEASE_DIR}/{RELEASE_STORAGE}"),
        0o600,
        storage_manifest(spec, s).as_bytes(),
        true,
    ));
    master.push(PayloadFile::new(
        format!("{RELEASE_DIR}/{RELEASE_LIST}"),
        0o600,
        releases_list(&releases).as_bytes(),
        true,
    ));
    master.push(PayloadFile::new(
        format!("{RELEASE_DIR}/{RELEASE_JWT}"),
        0o600,
        jwt.as_bytes(),
        false,
    ));
    if let Some(password) = signer_db_password {
        master.push(PayloadFile::new(
            format!("{RELEASE_DIR}/{RELEASE_SIGNER_SECRET}"),
            0o600,
            signer_secret_manifest(s, password).as_bytes(),
            false,
        ));
    }
    payload.files.insert(spec.master().name.clone(), master);
    payload
}

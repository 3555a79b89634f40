//! The staking section's checks, slashing safety first: each unsafe
//! profile is refused at the culprit's line and column with the override
//! that would waive it named, and is accepted once that override is set.

mod common;

use common::*;
use nodeimg::diag::Kind;

struct Case {
    name: &'static str,
    edits: &'static [(&'static str, &'static str)],
    culprit: &'static str,
    /// What the error at the culprit is.
    kind: Kind,
    /// The fact its message must state (the rest may be reworded).
    says: &'static str,
    hint: &'static str,
    /// The override that waives it (none: it cannot be waived).
    waiver: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "P2P pinned to the NFS server",
        edits: &[(
            "  graffiti: \"nodeimg\"",
            "  graffiti: \"nodeimg\"\n  p2p: {node: nfs}",
        )],
        culprit: "nfs}",
        kind: Kind::Unknown,
        says: "\"nfs\" is not a Kubernetes machine of the profile",
        hint: "name the master or a worker: master, worker-1",
        waiver: None,
    },
    Case {
        name: "a P2P address that is no address",
        edits: &[(
            "  graffiti: \"nodeimg\"",
            "  graffiti: \"nodeimg\"\n  p2p: {public_ip: 203.0.113, node: worker-1}",
        )],
        culprit: "203.0.113,",
        kind: Kind::Malformed,
        says: "\"203.0.113\" is not an IPv4 address",
        hint: "your router's public address",
        waiver: None,
    },
    Case {
        name: "a P2P address peers cannot dial",
        edits: &[(
            "  graffiti: \"nodeimg\"",
            "  graffiti: \"nodeimg\"\n  p2p: {public_ip: 127.0.0.1, node: worker-1}",
        )],
        culprit: "127.0.0.1,",
        kind: Kind::Reserved,
        says: "127.0.0.1 is not an address peers can dial",
        hint: "your router's public address",
        waiver: None,
    },
    // Values the charts paste into a shell command: refused, not quoted.
    Case {
        name: "a checkpoint URL with shell characters",
        edits: &[(
            "  graffiti: \"nodeimg\"",
            "  graffiti: \"nodeimg\"\n  checkpoint_sync_url: \"https://cp.example/x;reboot\"",
        )],
        culprit: "\"https://cp.example/x;reboot\"",
        kind: Kind::Malformed,
        says: "the URL holds ';', which the charts' shell command would interpret",
        hint: "checkpoint sync provider",
        waiver: None,
    },
    Case {
        name: "a graffiti with a Helm template",
        edits: &[(
            "  graffiti: \"nodeimg\"",
            "  graffiti: \"{{ .Values.jwt }}\"",
        )],
        culprit: "\"{{ .Values.jwt }}\"",
        kind: Kind::Malformed,
        says: "which the charts would evaluate as a Helm template",
        hint: "use other brackets",
        waiver: None,
    },
    Case {
        name: "doppelganger off",
        edits: &[("doppelganger: true", "doppelganger: false")],
        culprit: "false",
        kind: Kind::Unsafe,
        says: "doppelganger protection is off: without doppelganger protection a second copy of your keys signs at once",
        hint: "`overrides: [no-doppelganger]`",
        waiver: Some("no-doppelganger"),
    },
    Case {
        name: "start delay below an epoch",
        edits: &[("start_delay: 768", "start_delay: 300")],
        culprit: "300",
        kind: Kind::Unsafe,
        says: "a start delay of 300 s is less than one epoch (384 s)",
        hint: "`overrides: [short-start-delay]`",
        waiver: Some("short-start-delay"),
    },
    Case {
        name: "two replicas",
        edits: &[(
            "password_file: validator_keys/password.txt",
            "password_file: validator_keys/password.txt\n      replicas: 2",
        )],
        culprit: "2\n  # The ethpandaops",
        kind: Kind::Unsafe,
        says: "2 replicas: several replicas of a validator sign with the same keys: slashable",
        hint: "`overrides: [multiple-replicas]`",
        waiver: Some("multiple-replicas"),
    },
    Case {
        name: "mainnet with a moving tag",
        edits: &[
            ("  network: hoodi", "  network: mainnet"),
            ("ethereum/client-go:v1.16.7", "ethereum/client-go:stable"),
        ],
        culprit: "\"ethereum/client-go:stable\"",
        kind: Kind::Unsafe,
        says: "ethereum/client-go:stable is not pinned on mainnet",
        hint: "`overrides: [unpinned-images]`",
        waiver: Some("unpinned-images"),
    },
    Case {
        name: "a dead network",
        edits: &[("  network: hoodi", "  network: prater")],
        culprit: "prater",
        kind: Kind::Unsupported,
        says: "network \"prater\" cannot be staked on: Prater (Goerli's beacon chain) is shut down",
        hint: "use hoodi",
        waiver: None,
    },
    Case {
        name: "holesky",
        edits: &[("  network: hoodi", "  network: holesky")],
        culprit: "holesky",
        kind: Kind::Unsupported,
        says: "Holesky was shut down",
        hint: "use hoodi",
        waiver: None,
    },
    Case {
        name: "a mistyped fee recipient",
        edits: &[(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",
        )],
        culprit: "\"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD\"",
        kind: Kind::Malformed,
        says: "fails its EIP-55 checksum",
        hint: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        waiver: None,
    },
    Case {
        name: "no fee recipient",
        edits: &[(
            "  fee_recipient: \"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"\n",
            "",
        )],
        culprit: "network: hoodi",
        kind: Kind::Missing,
        says: "the staking section has no `fee_recipient`",
        hint: "fee_recipient: \"0x...\"",
        waiver: None,
    },
    Case {
        name: "nimbus with validators",
        edits: &[("client: prysm", "client: nimbus")],
        culprit: "nimbus",
        kind: Kind::Unsupported,
        says: "the ethpandaops nimbus chart runs a beacon node only",
        hint: "use prysm, lighthouse or teku",
        waiver: None,
    },
    // A chart version names the archive's file and is pasted into
    // install.sh: one that climbs out of charts/ or holds a command is refused.
    Case {
        name: "a chart version that is a path",
        edits: &[("geth: {version: 1.1.3,", "geth: {version: \"../../../x\",")],
        culprit: "\"../../../x\"",
        kind: Kind::Malformed,
        says: "\"../../../x\" is not a chart version",
        hint: "e.g. 1.2.3",
        waiver: None,
    },
    Case {
        name: "a chart version that holds a command",
        edits: &[("geth: {version: 1.1.3,", "geth: {version: \"1.0;reboot\",")],
        culprit: "\"1.0;reboot\"",
        kind: Kind::Malformed,
        says: "\"1.0;reboot\" is not a chart version",
        hint: "e.g. 1.2.3",
        waiver: None,
    },
    Case {
        name: "an unknown signer",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  signer: vouch",
        )],
        culprit: "vouch",
        kind: Kind::Unknown,
        says: "no signer \"vouch\"",
        hint: "local (each validator client signs) or web3signer",
        waiver: None,
    },
    Case {
        name: "the remote signer with the eth2xk8s chart",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  chart_source: eth2xk8s\n  signer: web3signer",
        )],
        culprit: "web3signer",
        kind: Kind::Conflict,
        says: "the eth2xk8s chart cannot sign through a remote signer",
        hint: "use the ethpandaops charts",
        waiver: None,
    },
    Case {
        name: "migrations pinned to no commit",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  signer: web3signer\n  web3signer:\n    migrations:\n      commit: main\n      files: {V00001__initial.sql: d8856cd663c1282c1f3cd30df6647ece027c07db26ac71ea165d9756b50956f9}",
        )],
        culprit: "main",
        kind: Kind::Malformed,
        says: "\"main\" is not a full git commit id of Consensys/web3signer",
        hint: "pin the 40-hex-digit commit",
        waiver: None,
    },
    Case {
        name: "a migration file name that climbs out",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  signer: web3signer\n  web3signer:\n    migrations:\n      commit: 221996a5ddf6ab7648a8102ee029d9723762c116\n      files: {\"../V1__x.sql\": d8856cd663c1282c1f3cd30df6647ece027c07db26ac71ea165d9756b50956f9}",
        )],
        culprit: "d8856cd663c1282c1f3cd30df6647ece027c07db26ac71ea165d9756b50956f9}",
        kind: Kind::Malformed,
        says: "\"../V1__x.sql\" is not a Web3Signer migration file name",
        hint: "e.g. V00001__initial.sql",
        waiver: None,
    },
    Case {
        name: "migrations numbered out of turn",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  signer: web3signer\n  web3signer:\n    migrations:\n      commit: 221996a5ddf6ab7648a8102ee029d9723762c116\n      files:\n        V00009__a.sql: d8856cd663c1282c1f3cd30df6647ece027c07db26ac71ea165d9756b50956f9\n        V10__b.sql: 7d84a09715c2561da024d7586f68bfb11796f9008e0606c9c8d24be3cdd31884",
        )],
        culprit: "7d84a09715c2561da024d7586f68bfb11796f9008e0606c9c8d24be3cdd31884",
        kind: Kind::Malformed,
        says: "\"V10__b.sql\" is numbered with 2 digits, the others with 5",
        hint: "pad every number to one width",
        waiver: None,
    },
    Case {
        name: "a migration without its sha256",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  signer: web3signer\n  web3signer:\n    migrations:\n      commit: 221996a5ddf6ab7648a8102ee029d9723762c116\n      files: {V00001__initial.sql: latest}",
        )],
        culprit: "latest}",
        kind: Kind::Malformed,
        says: "migration V00001__initial.sql has no valid sha256",
        hint: "64 hex digits",
        waiver: None,
    },
    // The checks that change with the signer.
    Case {
        name: "automatic failover with the local signer",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  failover: automatic",
        )],
        culprit: "automatic",
        kind: Kind::Unsafe,
        says: "automatic failover with the local signer",
        hint: "use `signer: web3signer`",
        waiver: None,
    },
    Case {
        name: "an unknown failover",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  signer: web3signer\n  failover: eventually",
        )],
        culprit: "eventually",
        kind: Kind::Unknown,
        says: "no failover \"eventually\"",
        hint: "automatic (with signer: web3signer) or manual",
        waiver: None,
    },
    Case {
        name: "the remote signer on the chart's bundled database",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  signer: web3signer\n  web3signer: {database: bundled}",
        )],
        culprit: "bundled}",
        kind: Kind::Unsafe,
        says: "keeps the slashing history on one node's volume",
        hint: "nodeimg sets up PostgreSQL on the NFS server",
        waiver: None,
    },
    Case {
        name: "the remote signer on a database that is not PostgreSQL",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  signer: web3signer\n  web3signer: {database: \"jdbc:h2:mem:web3signer\"}",
        )],
        culprit: "\"jdbc:h2",
        kind: Kind::Unsafe,
        says: "\"jdbc:h2:mem:web3signer\" is not PostgreSQL",
        hint: "nodeimg sets up PostgreSQL on the NFS server",
        waiver: None,
    },
    Case {
        name: "the remote signer on a PostgreSQL elsewhere",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  signer: web3signer\n  web3signer: {database: \"jdbc:postgresql://10.0.0.5/w3s\"}",
        )],
        culprit: "\"jdbc:postgresql",
        kind: Kind::Unsupported,
        says: "a PostgreSQL database elsewhere is not supported",
        hint: "nodeimg sets up PostgreSQL on the NFS server",
        waiver: None,
    },
    Case {
        name: "an unknown override",
        edits: &[(
            "  doppelganger: true",
            "  doppelganger: true\n  overrides: [yolo]",
        )],
        culprit: "yolo",
        kind: Kind::Unknown,
        says: "unknown override \"yolo\"",
        hint: "no-doppelganger",
        waiver: None,
    },
];

fn apply(case: &Case) -> String {
    let mut text = shipped_profile("hoodi.yaml");
    for (from, to) in case.edits {
        assert!(text.contains(from), "{}: edit does not apply", case.name);
        text = text.replacen(from, to, 1);
    }
    text
}

#[test]
fn every_unsafe_profile_is_refused_at_the_culprit_with_its_override_named() {
    for case in CASES {
        let text = apply(case);
        let (line, col) = position_of(&text, case.culprit, 0);
        let s = Scratch::with_profile(&text);
        write_keys(
            &s.path("validator_keys"),
            1,
            1,
            &s.path("validator_keys/password.txt"),
        );
        assert_kind_at(&s.profile(), case.name, case.kind, (line, col));
        for args in [
            &["validate", "profile.yaml"][..],
            &["release", "profile.yaml", "--values-only", "-o", "rel"][..],
        ] {
            let r = s.run(args);
            assert_refused_at(
                &r,
                &format!("{}: {args:?}", case.name),
                (line, col),
                case.says,
                case.hint,
            );
            assert!(!s.path("rel").exists());
        }
        if let Some(waiver) = case.waiver {
            let waived = text.replace(
                "  doppelganger:",
                &format!("  overrides: [{waiver}]\n  doppelganger:"),
            );
            let t = Scratch::with_profile(&waived);
            write_keys(
                &t.path("validator_keys"),
                1,
                1,
                &t.path("validator_keys/password.txt"),
            );
            let r = t.run(&["validate", "profile.yaml"]);
            assert!(
                r.ok(),
                "{}: waived by {waiver} but still refused:\n{}",
                case.name,
                r.stderr()
            );
        }
    }
}

#[test]
fn a_key_in_two_groups_is_refused_unless_waived() {
    let two_groups = shipped_profile("hoodi.yaml").replace(
        "      password_file: validator_keys/password.txt\n",
        "      password_file: validator_keys/password.txt\n    - name: group-2\n      keystores: more_keys\n      password_file: more_keys/password.txt\n",
    );
    let s = Scratch::with_profile(&two_groups);
    write_keys(
        &s.path("validator_keys"),
        1,
        3,
        &s.path("validator_keys/password.txt"),
    );
    // group-2 holds keys 0..2 of another set plus a copy of group-1's key 1.
    write_keys(
        &s.path("more_keys"),
        2,
        2,
        &s.path("more_keys/password.txt"),
    );
    std::fs::copy(
        s.path("validator_keys/keystore-m_12381_3600_1_0_0-1.json"),
        s.path("more_keys/keystore-m_12381_3600_9_0_0-9.json"),
    )
    .unwrap();
    let (line, col) = position_of(&two_groups, "more_keys\n", 0);
    assert_kind_at(
        &s.profile(),
        "one key in two groups",
        Kind::Unsafe,
        (line, col),
    );
    let r = s.run(&["validate", "profile.yaml"]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    let prefix = format!("profile.yaml:{line}:{col}: error: validator 0x010101010101... is in group \"group-1\" and in group \"group-2\"");
    assert!(r.stderr().contains(&prefix), "{}", r.stderr());
    assert!(
        r.stderr().contains("`overrides: [same-key-in-two-groups]`"),
        "{}",
        r.stderr()
    );
    let waived = two_groups.replace(
        "  doppelganger:",
        "  overrides: [same-key-in-two-groups]\n  doppelganger:",
    );
    std::fs::write(s.profile(), waived).unwrap();
    let r = s.run(&["validate", "profile.yaml"]);
    assert!(r.ok(), "{}", r.stderr());
}

#[test]
fn a_file_that_is_not_a_keystore_is_refused() {
    let s = Scratch::with_profile(&shipped_profile("hoodi.yaml"));
    write_keys(
        &s.path("validator_keys"),
        1,
        1,
        &s.path("validator_keys/password.txt"),
    );
    std::fs::write(
        s.path("validator_keys/keystore-bad.json"),
        "{\"pubkey\": \"abc\"}",
    )
    .unwrap();
    let at = position_of(&shipped_profile("hoodi.yaml"), "validator_keys\n", 0);
    assert_kind_at(&s.profile(), "not a keystore", Kind::Keystore, at);
    let r = s.run(&["validate", "profile.yaml"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr()
            .contains("keystore-bad.json is not an EIP-2335 keystore"),
        "{}",
        r.stderr()
    );
}

/// Rescheduling changes with the signer: the automatic failover refused
/// with the local signer above is what the remote signer gets by default,
/// and may be written out; `manual` is accepted with either.
#[test]
fn automatic_failover_is_allowed_with_the_remote_signer_only() {
    for (edit, ok) in [
        ("  doppelganger: true\n  signer: web3signer", true),
        (
            "  doppelganger: true\n  signer: web3signer\n  failover: automatic",
            true,
        ),
        (
            "  doppelganger: true\n  signer: web3signer\n  failover: manual",
            true,
        ),
        ("  doppelganger: true\n  failover: manual", true),
        ("  doppelganger: true\n  failover: automatic", false),
    ] {
        let text = shipped_profile("hoodi.yaml").replacen("  doppelganger: true", edit, 1);
        let s = Scratch::with_profile(&text);
        write_keys(
            &s.path("validator_keys"),
            1,
            1,
            &s.path("validator_keys/password.txt"),
        );
        let r = s.run(&["validate", "profile.yaml"]);
        assert_eq!(r.ok(), ok, "{edit}: {}", r.stderr());
    }
}

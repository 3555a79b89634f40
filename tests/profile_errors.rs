//! Broken profiles: each exits 1, names the file, line and column of the
//! culprit with a hint, and writes nothing.

mod common;

use common::*;
use nodeimg::diag::Kind;

struct Case {
    name: &'static str,
    /// (from, to) replacements applied to profiles/tutorial.yaml.
    edits: &'static [(&'static str, &'static str)],
    /// The culprit: its first occurrence in the edited text is where the
    /// error must point (line and column of its first character).
    culprit: &'static str,
    /// What the error at the culprit is.
    kind: Kind,
    /// The fact its message must state (the rest may be reworded).
    says: &'static str,
    hint: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "a subnet of the whole internet",
        edits: &[("subnet: 172.20.0.0/20", "subnet: 0.0.0.0/0")],
        culprit: "0.0.0.0/0",
        kind: Kind::OutOfRange,
        says: "subnet 0.0.0.0/0 spans more than a /8",
        hint: "machines' own LAN",
    },
    Case {
        name: "the loopback subnet",
        edits: &[("subnet: 172.20.0.0/20", "subnet: 127.0.0.0/8")],
        culprit: "127.0.0.0/8",
        kind: Kind::Reserved,
        says: "subnet 127.0.0.0/8 is the loopback range",
        hint: "machines' own LAN",
    },
    Case {
        name: "a multicast subnet",
        edits: &[("subnet: 172.20.0.0/20", "subnet: 239.1.0.0/16")],
        culprit: "239.1.0.0/16",
        kind: Kind::Reserved,
        says: "subnet 239.1.0.0/16 is a multicast range",
        hint: "machines' own LAN",
    },
    Case {
        name: "an export root with ..",
        edits: &[("export_root: /data", "export_root: /data/..")],
        culprit: "/data/..",
        kind: Kind::Malformed,
        says: "\"/data/..\" holds `.` or `..`",
        hint: "a folder of its own",
    },
    Case {
        name: "/etc as export root",
        edits: &[("export_root: /data", "export_root: /etc")],
        culprit: "/etc",
        kind: Kind::Reserved,
        says: "\"/etc\" is a folder of the system itself",
        hint: "a folder of its own",
    },
    Case {
        name: "an export root in /proc",
        edits: &[("export_root: /data", "export_root: /proc/data")],
        culprit: "/proc/data",
        kind: Kind::Reserved,
        says: "\"/proc/data\" is inside /proc",
        hint: "a folder of its own",
    },
    Case {
        name: "a public key with bytes after it",
        edits: &[("AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX", "AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVXAAAABGp1bms=")],
        culprit: "\"ssh-ed25519",
        kind: Kind::Malformed,
        says: "not an SSH public key: its base64 part is not a whole ssh-ed25519 key",
        hint: "one line of a .pub file",
    },
    Case {
        name: "a truncated public key",
        edits: &[("AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX you@laptop", "AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mQ== you@laptop")],
        culprit: "\"ssh-ed25519",
        kind: Kind::Malformed,
        says: "not an SSH public key: its base64 part is not a whole ssh-ed25519 key",
        hint: "one line of a .pub file",
    },
    Case {
        name: "the broadcast MAC",
        edits: &[("ip: 172.20.10.12}", "ip: 172.20.10.12, mac: \"ff:ff:ff:ff:ff:ff\"}")],
        culprit: "\"ff:ff",
        kind: Kind::Reserved,
        says: "ff:ff:ff:ff:ff:ff is the broadcast address",
        hint: "NIC's own address",
    },
    Case {
        name: "a multicast MAC",
        edits: &[("ip: 172.20.10.12}", "ip: 172.20.10.12, mac: \"01:00:5e:00:00:01\"}")],
        culprit: "\"01:00",
        kind: Kind::Reserved,
        says: "01:00:5e:00:00:01 is a multicast address",
        hint: "NIC's own address",
    },
    Case {
        name: "an all-zero MAC",
        edits: &[("ip: 172.20.10.12}", "ip: 172.20.10.12, mac: \"00:00:00:00:00:00\"}")],
        culprit: "\"00:00",
        kind: Kind::Reserved,
        says: "00:00:00:00:00:00 is all zeros",
        hint: "NIC's own address",
    },
    Case {
        name: "the loopback interface",
        edits: &[("ip: 172.20.10.12}", "ip: 172.20.10.12, interface: lo}")],
        culprit: "lo}",
        kind: Kind::Malformed,
        says: "\"lo\" is not a network interface name",
        hint: "not lo",
    },
    Case {
        name: "interface ..",
        edits: &[("ip: 172.20.10.12}", "ip: 172.20.10.12, interface: \"..\"}")],
        culprit: "\"..\"}",
        kind: Kind::Malformed,
        says: "\"..\" is not a network interface name",
        hint: "not lo",
    },
    Case {
        name: "a machine named localhost",
        edits: &[("{name: worker-1,", "{name: localhost,")],
        culprit: "localhost",
        kind: Kind::Reserved,
        says: "machine name \"localhost\" is the name every machine has for itself",
        hint: "a name of its own",
    },
    Case {
        name: "DNS 0.0.0.0",
        edits: &[("dns: [8.8.8.8, 8.8.4.4]", "dns: [0.0.0.0]")],
        culprit: "0.0.0.0]",
        kind: Kind::Reserved,
        says: "DNS server 0.0.0.0 is not a server the machines can ask",
        hint: "resolver on the network",
    },
    Case {
        name: "DNS on loopback",
        edits: &[("dns: [8.8.8.8, 8.8.4.4]", "dns: [8.8.8.8, 127.0.0.1]")],
        culprit: "127.0.0.1",
        kind: Kind::Reserved,
        says: "DNS server 127.0.0.1 is not a server the machines can ask",
        hint: "resolver on the network",
    },
    Case {
        name: "pool options chrony cannot read",
        edits: &[("pool_options: iburst minpoll 1 maxpoll 2", "pool_options: iburst minpol 1 maxpoll 2")],
        culprit: "iburst minpol",
        kind: Kind::Malformed,
        says: "chrony cannot read the pool options \"iburst minpol 1 maxpoll 2 maxsources 3\": `minpol` is not an option of chrony's pool directive",
        hint: "chrony's `pool` directive",
    },
    Case {
        name: "a uid above 2^31",
        edits: &[("uid: 1001", "uid: 4294967295")],
        culprit: "4294967295",
        kind: Kind::OutOfRange,
        says: "uid 4294967295 is above 2147483647",
        hint: "below 2^31",
    },
    Case {
        name: "gid nogroup",
        edits: &[("gid: 2000", "gid: 65534")],
        culprit: "65534",
        kind: Kind::Reserved,
        says: "gid 65534 is nobody/nogroup",
        hint: "workloads' own",
    },
    Case {
        name: "an FQDN over 253 characters",
        edits: &[("  name: staking
", "  name: staking\n  domain: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n")],
        culprit: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        kind: Kind::OutOfRange,
        says: "would be 261 characters: a DNS name has at most 253",
        hint: "shorter domain",
    },
    Case {
        name: "nobody as the login user",
        edits: &[("user: staker", "user: nobody")],
        culprit: "nobody",
        kind: Kind::Reserved,
        says: "\"nobody\" is a system account of Ubuntu's cloud image",
        hint: "a login name of your own",
    },
    Case {
        name: "daemon as the login user",
        edits: &[("user: staker", "user: daemon")],
        culprit: "daemon",
        kind: Kind::Reserved,
        says: "\"daemon\" is a system account",
        hint: "a login name of your own",
    },
    Case {
        name: "a MicroK8s channel Ubuntu 20.04 cannot run",
        edits: &[("time:\n", "microk8s:\n  channel: 1.37/stable\ntime:\n")],
        culprit: "1.37/stable",
        kind: Kind::Unsupported,
        says: "MicroK8s 1.37/stable on Ubuntu 20.04 (master, worker-1): Kubernetes 1.37 is not known to run on 20.04's cgroup v1",
        hint: "`ubuntu: \"22.04\"`",
    },
    Case {
        name: "an unsupported Ubuntu release",
        edits: &[(
            "{name: worker-1, role: worker, ip: 172.20.10.12}",
            "{name: worker-1, role: worker, ip: 172.20.10.12, ubuntu: \"18.04\"}",
        )],
        culprit: "\"18.04\"",
        kind: Kind::Unknown,
        says: "\"18.04\" is not an Ubuntu release nodeimg supports",
        hint: "20.04, 22.04 or 24.04",
    },
    Case {
        name: "unknown key",
        edits: &[("  gateway: 172.20.0.1", "  gatway: 172.20.0.1")],
        culprit: "gatway",
        kind: Kind::UnknownKey,
        says: "unknown key `gatway` in `network`",
        hint: "did you mean `gateway`?",
    },
    Case {
        name: "duplicate IP",
        edits: &[("ip: 172.20.10.12}", "ip: 172.20.10.11}")],
        culprit: "172.20.10.11}",
        kind: Kind::Duplicate,
        says: "address 172.20.10.11 is used twice (also machine 2)",
        hint: "own address",
    },
    Case {
        name: "IP outside the subnet",
        edits: &[("ip: 172.20.10.12}", "ip: 172.21.0.12}")],
        culprit: "172.21.0.12",
        kind: Kind::OutOfRange,
        says: "address 172.21.0.12 is outside the subnet 172.20.0.0/20",
        hint: "between 172.20.0.1 and 172.20.15.254",
    },
    Case {
        name: "two masters",
        edits: &[(
            "  - {name: worker-1,",
            "  - {name: master-2, role: master, ip: 172.20.10.13}\n  - {name: worker-1,",
        )],
        culprit: "master, ip: 172.20.10.13",
        kind: Kind::OutOfRange,
        says: "2 masters: a control plane needs a majority of its masters up, so 2 tolerate no more failures than 1",
        hint: "give the cluster 1, 3 or 5 masters",
    },
    Case {
        name: "four masters",
        edits: &[(
            "  - {name: worker-1,",
            "  - {name: m2, role: master, ip: 172.20.10.13}\n  - {name: m3, role: master, ip: 172.20.10.14}\n  - {name: m4, role: master, ip: 172.20.10.15}\n  - {name: worker-1,",
        )],
        culprit: "master, ip: 172.20.10.15",
        kind: Kind::OutOfRange,
        says: "4 masters: a control plane needs a majority of its masters up, so 4 tolerate no more failures than 3",
        hint: "make this one a worker, or add masters",
    },
    Case {
        name: "seven masters",
        edits: &[(
            "  - {name: worker-1,",
            "  - {name: m2, role: master, ip: 172.20.10.13}\n  - {name: m3, role: master, ip: 172.20.10.14}\n  - {name: m4, role: master, ip: 172.20.10.15}\n  - {name: m5, role: master, ip: 172.20.10.16}\n  - {name: m6, role: master, ip: 172.20.10.17}\n  - {name: m7, role: master, ip: 172.20.10.18}\n  - {name: worker-1,",
        )],
        culprit: "master, ip: 172.20.10.18",
        kind: Kind::OutOfRange,
        says: "7 masters: MicroK8s's dqlite keeps three voters and the others stand by",
        hint: "1, 3 or 5 masters",
    },
    Case {
        name: "two NFS servers",
        edits: &[("{name: worker-1, role: worker,", "{name: worker-1, role: nfs,")],
        culprit: "nfs, ip: 172.20.10.12",
        kind: Kind::Duplicate,
        says: "a second nfs machine (the first is machine 1)",
        hint: "exactly one nfs machine",
    },
    Case {
        name: "no master",
        edits: &[("{name: master, role: master,", "{name: master, role: worker,")],
        culprit: "- {name: nfs",
        kind: Kind::Missing,
        says: "the cluster has no master machine",
        hint: "one (or three or five)",
    },
    Case {
        name: "no worker",
        edits: &[("  - {name: worker-1, role: worker, ip: 172.20.10.12}\n", "")],
        culprit: "- {name: nfs",
        kind: Kind::Missing,
        says: "the cluster has no worker machine",
        hint: "role: worker",
    },
    Case {
        name: "bad CIDR",
        edits: &[("subnet: 172.20.0.0/20", "subnet: 172.20.0.0/40")],
        culprit: "172.20.0.0/40",
        kind: Kind::Malformed,
        says: "\"172.20.0.0/40\" is not an IPv4 subnet in CIDR form",
        hint: "ADDRESS/PREFIX",
    },
    Case {
        name: "CIDR with host bits",
        edits: &[("subnet: 172.20.0.0/20", "subnet: 172.20.10.0/20")],
        culprit: "172.20.10.0/20",
        kind: Kind::Malformed,
        says: "has host bits set",
        hint: "did you mean 172.20.0.0/20?",
    },
    Case {
        name: "mis-indented key",
        edits: &[("  gateway: 172.20.0.1", "    gateway: 172.20.0.1")],
        culprit: "gateway",
        kind: Kind::Syntax,
        says: "invalid YAML",
        hint: "indented differently",
    },
    Case {
        name: "bad hostname",
        edits: &[("{name: worker-1,", "{name: Worker_1,")],
        culprit: "Worker_1",
        kind: Kind::Malformed,
        says: "machine name \"Worker_1\" is not a valid hostname",
        hint: "RFC 1123",
    },
    Case {
        name: "no SSH key",
        edits: &[(
            "  authorized_keys:\n    - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX you@laptop\"",
            "  authorized_keys: []",
        )],
        culprit: "[]",
        kind: Kind::Missing,
        says: "no SSH key",
        hint: "add your public key",
    },
    Case {
        name: "no ssh section at all",
        edits: &[(
            "ssh:\n  port: 22\n  user: staker\n  # A placeholder key: replace it with yours (the content of ~/.ssh/id_ed25519.pub).\n  authorized_keys:\n    - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRsYFHDGBBPqqnaTXdq8W3PUxI3mXq1XELHc7Gz3wVX you@laptop\"\n",
            "",
        )],
        culprit: "version",
        kind: Kind::Missing,
        says: "no `ssh` section",
        hint: "authorized_keys",
    },
    Case {
        name: "private key pasted as a public key",
        edits: &[("\"ssh-ed25519 AAAAC3Nza", "\"-----BEGIN OPENSSH PRIVATE KEY----- AAAAC3Nza")],
        culprit: "\"-----BEGIN",
        kind: Kind::Malformed,
        says: "private key",
        hint: ".pub",
    },
    Case {
        name: "unknown time zone",
        edits: &[("America/Los_Angeles", "America/Los_Angles")],
        culprit: "America/Los_Angles",
        kind: Kind::Unknown,
        says: "not an IANA time zone",
        hint: "America/Los_Angeles",
    },
    Case {
        name: "MicroK8s channel too old",
        edits: &[("nfs:\n", "microk8s:\n  channel: 1.20/stable\nnfs:\n")],
        culprit: "1.20/stable",
        kind: Kind::Unsupported,
        says: "too old",
        hint: "1.27",
    },
    Case {
        name: "malformed MicroK8s channel",
        edits: &[("nfs:\n", "microk8s:\n  channel: \"1.30\"\nnfs:\n")],
        culprit: "\"1.30\"",
        kind: Kind::Malformed,
        says: "not a MicroK8s channel",
        hint: "TRACK/RISK",
    },
    Case {
        name: "a number where text belongs",
        edits: &[("nfs:\n", "microk8s:\n  channel: 1.30\nnfs:\n")],
        culprit: "1.30",
        kind: Kind::WrongType,
        says: "`microk8s.channel` must be a string, found the number 1.3",
        hint: "put it in quotes",
    },
    Case {
        name: "SSH port colliding with a role port",
        edits: &[("port: 22", "port: 16443")],
        culprit: "16443",
        kind: Kind::Conflict,
        says: "collides with the master role's port for Kubernetes API server",
        hint: "another SSH port",
    },
    Case {
        name: "port out of range",
        edits: &[("port: 22", "port: 70000")],
        culprit: "70000",
        kind: Kind::OutOfRange,
        says: "out of range",
        hint: "65535",
    },
    Case {
        name: "wrong type",
        edits: &[("uid: 1001", "uid: root")],
        culprit: "root\n",
        kind: Kind::WrongType,
        says: "`nfs.uid` must be a whole number, found the string \"root\"",
        hint: "whole number",
    },
    Case {
        name: "gateway is a machine's address",
        edits: &[("ip: 172.20.10.12}", "ip: 172.20.0.1}")],
        culprit: "172.20.0.1}",
        kind: Kind::Reserved,
        says: "is the gateway's",
        hint: "address of its own",
    },
    Case {
        name: "broadcast address",
        edits: &[("ip: 172.20.10.12}", "ip: 172.20.15.255}")],
        culprit: "172.20.15.255",
        kind: Kind::Reserved,
        says: "broadcast address",
        hint: "between",
    },
    Case {
        name: "image without a checksum",
        edits: &[("  gid: 2000", "  gid: 2000\nimage:\n  url: https://example.com/x.img")],
        culprit: "https://example.com/x.img",
        kind: Kind::Unpinned,
        says: "the image has no checksum",
        hint: "add image.sha256",
    },
    Case {
        name: "image of an unknown release",
        edits: &[("  gid: 2000", "  gid: 2000\nimage:\n  release: \"18.04\"")],
        culprit: "\"18.04\"",
        kind: Kind::Unsupported,
        says: "no default image for release \"18.04\"",
        hint: "22.04 (jammy)",
    },
    Case {
        name: "image size without a unit",
        edits: &[("  gid: 2000", "  gid: 2000\nimage:\n  release: jammy\n  size: 20 gigs")],
        culprit: "20 gigs",
        kind: Kind::Malformed,
        says: "\"20 gigs\" is not a disk size",
        hint: "20G",
    },
    Case {
        name: "image sha256 too short",
        edits: &[("  gid: 2000", "  gid: 2000\nimage:\n  url: https://example.com/x.img\n  sha256: abc123")],
        culprit: "abc123",
        kind: Kind::Malformed,
        says: "\"abc123\" is not a sha256",
        hint: "64 hex digits",
    },
];

#[test]
fn every_broken_profile_is_refused_at_the_culprit_and_nothing_is_written() {
    let base = shipped_profile("tutorial.yaml");
    for case in CASES {
        let mut text = base.clone();
        for (from, to) in case.edits {
            assert!(text.contains(from), "{}: edit does not apply", case.name);
            text = text.replacen(from, to, 1);
        }
        // A duplicate is reported at its second use.
        let nth = if case.name == "duplicate IP" { 1 } else { 0 };
        let (line, col) = position_of(&text, case.culprit, nth);
        let s = Scratch::with_profile(&text);
        assert_kind_at(&s.profile(), case.name, case.kind, (line, col));
        for args in [
            &["build", "profile.yaml", "-o", "out"][..],
            &["validate", "profile.yaml"][..],
        ] {
            let r = s.run(args);
            assert_refused_at(
                &r,
                &format!("{}: {args:?}", case.name),
                (line, col),
                case.says,
                case.hint,
            );
            assert_eq!(
                s.listing(),
                vec!["profile.yaml".to_string()],
                "{}: something was written",
                case.name
            );
        }
    }
}

fn error_lines(r: &Run) -> usize {
    r.stderr()
        .lines()
        .filter(|l| l.contains(": error: "))
        .count()
}

#[test]
fn all_errors_are_reported_in_one_run() {
    let text = shipped_profile("tutorial.yaml")
        .replace("  gateway: 172.20.0.1", "  gatway: 172.20.0.1")
        .replace("uid: 1001", "uid: root")
        .replace("  name: staking", "  name: staking\n  nmae: typo");
    let s = Scratch::with_profile(&text);
    let r = s.run(&["validate", "profile.yaml"]);
    assert_eq!(r.code(), Some(1));
    assert_eq!(error_lines(&r), 3, "{}", r.stderr());
    assert!(r
        .stderr()
        .contains("3 errors in profile.yaml: nothing was written"));

    let semantic = shipped_profile("tutorial.yaml")
        .replace("ip: 172.20.10.12}", "ip: 172.21.0.12}")
        .replace("{name: master,", "{name: Master,")
        .replace("America/Los_Angeles", "Mars/Olympus");
    let s = Scratch::with_profile(&semantic);
    let r = s.run(&["validate", "profile.yaml"]);
    assert_eq!(error_lines(&r), 3, "{}", r.stderr());
}

#[test]
fn usage_errors_exit_2() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    assert_eq!(s.run(&["build"]).code(), Some(2));
    assert_eq!(s.run(&["frobnicate"]).code(), Some(2));
}

#[test]
fn a_missing_profile_file_is_a_clear_error() {
    let s = Scratch::with_profile("");
    let r = s.run(&["build", "nope.yaml"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains("cannot read the profile nope.yaml"),
        "{}",
        r.stderr()
    );
    let r = s.run(&["validate", "profile.yaml"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr()
            .contains("profile.yaml:1:1: error: the file is empty"),
        "{}",
        r.stderr()
    );
}

#[test]
fn warnings_do_not_fail_the_build() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let r = s.run(&["validate", "profile.yaml"]);
    assert!(r.ok(), "{}", r.stderr());
    assert!(
        r.stderr()
            .contains("profile.yaml:17:9: warning: sshd listens on the default port 22"),
        "{}",
        r.stderr()
    );
}

/// Sub-minute polling is the reference's choice, kept explicit in the
/// tutorial profile with a warning; without it a profile polls as public
/// pools ask and hears nothing.
#[test]
fn fast_polling_of_public_pools_is_warned_about_and_not_the_default() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let r = s.run(&["validate", "profile.yaml"]);
    let (line, col) = position_of(&shipped_profile("tutorial.yaml"), "iburst minpoll 1", 0);
    assert!(
        r.stderr().contains(&format!(
            "profile.yaml:{line}:{col}: warning: polling every 2 s asks more of the public pools (time.google.com, us.pool.ntp.org, ntp.ubuntu.com)"
        )),
        "{}",
        r.stderr()
    );
    let own_pools = shipped_profile("tutorial.yaml").replace(
        "ntp_pools: [time.google.com, us.pool.ntp.org, ntp.ubuntu.com]",
        "ntp_pools: [192.168.1.5, ntp.lan]",
    );
    let s = Scratch::with_profile(&own_pools);
    assert!(!s
        .run(&["validate", "profile.yaml"])
        .stderr()
        .contains("polling every"));
    let default = shipped_profile("homelab.yaml");
    assert!(!default.contains("pool_options"));
    let s = Scratch::with_profile(&default);
    let r = s.build("out");
    assert!(
        r.ok() && !r.stderr().contains("polling every"),
        "{}",
        r.stderr()
    );
    let conf = seed_file(&s.path("out/nas/user-data"), "/etc/chrony/chrony.conf");
    assert!(
        conf.contains("pool ntp.ubuntu.com iburst maxsources 3\n"),
        "{conf}"
    );
}

/// Broken bytes, hostile sizes and stray arguments get messages a user can
/// act on: where, what, how to fix; never parser internals or a whole value.
#[test]
fn unreadable_profiles_get_clear_messages() {
    // Invalid UTF-8: the line and column of the first bad byte.
    let s = Scratch::with_profile("");
    let mut bytes = shipped_profile("tutorial.yaml").into_bytes();
    let at = position_of(&shipped_profile("tutorial.yaml"), "staking", 0);
    let offset = shipped_profile("tutorial.yaml").find("staking").unwrap();
    bytes[offset] = 0xff;
    std::fs::write(s.profile(), &bytes).unwrap();
    let r = s.run(&["validate", "profile.yaml"]);
    assert!(
        r.stderr().starts_with(&format!(
            "profile.yaml:{}:{}: error: the file is not UTF-8 text: byte 0xff",
            at.0, at.1
        )),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("hint: save the profile as UTF-8"));

    // Past the parser's limits: said in words, no Rust debug text.
    let many = format!("version: 1\nx: [{}]\n", "1,".repeat(300_000));
    let s = Scratch::with_profile(&many);
    let r = s.run(&["validate", "profile.yaml"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr()
            .contains("error: the profile is too large to read: the file holds more than"),
        "{}",
        r.stderr()
    );
    assert!(
        !r.stderr().contains("Nodes {") && !r.stderr().contains("fix the YAML syntax"),
        "{}",
        r.stderr()
    );

    // A huge value is not echoed whole.
    let big = "a".repeat(5 << 20);
    let s = Scratch::with_profile(
        &shipped_profile("tutorial.yaml").replace("name: staking", &format!("name: {big}")),
    );
    let r = s.run(&["validate", "profile.yaml"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().len() < 4000,
        "{} bytes of messages",
        r.stderr().len()
    );
    assert!(
        r.stderr().contains("characters in all)"),
        "{}",
        &r.stderr()[..r.stderr().len().min(2000)]
    );

    // show with a machine that is not one names the argument, not --only.
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));
    let r = s.run(&["show", "profile.yaml", "../../etc", "user-data"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr().contains(
            "show: machine \"../../etc\": error: the profile has no machine of that name"
        ),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("--only"), "{}", r.stderr());
}

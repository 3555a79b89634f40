//! Check stage: every rendered file is parsed back before anything is
//! written. cloud-init's own schema check ignores unknown top-level keys,
//! so a typo there would be silently skipped on the machine: refuse it here.

use crate::diag::Pos;
use crate::render::Seed;
use crate::yaml::{self, Kind, Node};

/// Top-level keys of cloud-config understood by cloud-init's modules
/// (cloud-init 20.x to 25.x).
pub const CLOUD_CONFIG_KEYS: &[&str] = &[
    "allow_public_ssh_keys",
    "ansible",
    "apk_repos",
    "apt",
    "apt_pipelining",
    "apt_reboot_if_required",
    "apt_update",
    "apt_upgrade",
    "autoinstall",
    "bootcmd",
    "byobu_by_default",
    "ca-certs",
    "ca_certs",
    "chef",
    "chpasswd",
    "cloud_config_modules",
    "cloud_final_modules",
    "cloud_init_modules",
    "create_hostname_file",
    "device_aliases",
    "disable_ec2_metadata",
    "disable_root",
    "disable_root_opts",
    "disk_setup",
    "drivers",
    "fan",
    "final_message",
    "fqdn",
    "fs_setup",
    "groups",
    "growpart",
    "grub-dpkg",
    "grub_dpkg",
    "hostname",
    "keyboard",
    "keys_to_console",
    "landscape",
    "launch-index",
    "locale",
    "locale_configfile",
    "lxd",
    "manage_etc_hosts",
    "manage_resolv_conf",
    "mcollective",
    "merge_how",
    "merge_type",
    "mount_default_fields",
    "mounts",
    "no_ssh_fingerprints",
    "ntp",
    "output",
    "package_reboot_if_required",
    "package_update",
    "package_upgrade",
    "packages",
    "password",
    "phone_home",
    "power_state",
    "prefer_fqdn_over_hostname",
    "preserve_hostname",
    "puppet",
    "random_seed",
    "reporting",
    "resize_rootfs",
    "resolv_conf",
    "rh_subscription",
    "rsyslog",
    "runcmd",
    "salt_minion",
    "snap",
    "spacewalk",
    "ssh",
    "ssh_authorized_keys",
    "ssh_deletekeys",
    "ssh_fp_console_blacklist",
    "ssh_genkeytypes",
    "ssh_import_id",
    "ssh_key_console_blacklist",
    "ssh_keys",
    "ssh_publish_hostkeys",
    "ssh_pwauth",
    "ssh_quiet_keygen",
    "swap",
    "system_info",
    "timezone",
    "ubuntu_advantage",
    "ubuntu_pro",
    "updates",
    "user",
    "users",
    "vendor_data",
    "version",
    "wireguard",
    "write_files",
    "yum_repo_dir",
    "yum_repos",
    "zypper",
];

/// A problem in a rendered file: `file` is `<machine>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl Problem {
    /// The user-facing error: at the rendered file's line and column.
    pub fn diagnostic(&self) -> crate::diag::Diagnostic {
        crate::diag::Diagnostic::new(crate::diag::Kind::Seed, self.message.clone())
            .at(format!("{}:{}:{}", self.file, self.line, self.col))
            .hint("the templates produced this; check a --templates override, or report a bug")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.diagnostic().fmt(f)
    }
}

fn parse(machine: &str, name: &str, text: &str, out: &mut Vec<Problem>) -> Option<Node> {
    match yaml::parse(text) {
        Ok(n) => Some(n),
        Err(d) => {
            let pos = d.pos(None);
            out.push(Problem {
                file: format!("{machine}/{name}"),
                line: pos.line,
                col: pos.col,
                message: format!("rendered file is not valid YAML: {}", d.message),
            });
            None
        }
    }
}

/// A YAML document's top level: its keys and their positions, or the
/// position of a root that is not a mapping.
#[derive(Debug, PartialEq, Eq)]
enum TopLevel {
    Map(Vec<(String, Pos)>),
    Other(Pos),
}

impl TopLevel {
    fn of(node: &Node) -> TopLevel {
        match &node.kind {
            Kind::Map(e) => TopLevel::Map(e.iter().map(|(k, _)| (k.name.clone(), k.pos)).collect()),
            _ => TopLevel::Other(node.pos),
        }
    }

    /// The top level read from the parser's events alone, or None for
    /// anything but one well-formed document with plain keys (then the
    /// caller parses the whole tree, for its verdict and message). A
    /// user-data is mostly block scalars (scripts), and building its whole
    /// tree to look at the top cost more than rendering it.
    fn scan(text: &str) -> Option<TopLevel> {
        use granit_parser::{Event, Parser};
        let pos = |m: &granit_parser::Marker| Pos {
            line: u32::try_from(m.line()).unwrap_or(u32::MAX),
            col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
        };
        let mut parser = Parser::new_from_str(text);
        let (mut depth, mut documents, mut at_key) = (0usize, 0, true);
        let mut root = None;
        let mut keys = Vec::new();
        while let Some(event) = parser.next_event() {
            let (event, span) = event.ok()?;
            // Whether this event completes a node directly under the root.
            let complete = match event {
                Event::DocumentStart(..) => {
                    documents += 1;
                    if documents > 1 {
                        return None;
                    }
                    false
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    if depth == 0 {
                        root = Some(match event {
                            Event::MappingStart(..) => TopLevel::Map(Vec::new()),
                            _ => TopLevel::Other(pos(&span.start)),
                        });
                    } else if depth == 1 && at_key {
                        return None; // a complex key
                    }
                    depth += 1;
                    false
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    depth = depth.checked_sub(1)?;
                    depth == 1
                }
                Event::Scalar(ref value, ..) => {
                    if depth == 0 {
                        root = Some(TopLevel::Other(pos(&span.start)));
                    } else if depth == 1 && at_key {
                        keys.push((value.to_string(), pos(&span.start)));
                    }
                    depth == 1
                }
                Event::Alias(..) if depth == 1 && at_key => return None,
                Event::Alias(..) => depth == 1,
                _ => false,
            };
            if complete && matches!(root, Some(TopLevel::Map(_))) {
                at_key = !at_key;
            }
        }
        match root? {
            TopLevel::Map(_) => Some(TopLevel::Map(keys)),
            other => Some(other),
        }
    }
}

fn entries(node: &Node) -> &[(yaml::Key, Node)] {
    match &node.kind {
        Kind::Map(e) => e,
        _ => &[],
    }
}

/// Checks one machine's seed; returns every problem found.
pub fn check_seed(machine: &str, seed: &Seed) -> Vec<Problem> {
    let mut out = Vec::new();
    let problem = |name: &str, pos: Pos, message: String| Problem {
        file: format!("{machine}/{name}"),
        line: pos.line,
        col: pos.col,
        message,
    };

    if !seed.user_data.starts_with("#cloud-config\n") {
        out.push(problem(
            "user-data",
            Pos { line: 1, col: 1 },
            "user-data does not start with `#cloud-config`, so cloud-init would not read it as cloud-config".into(),
        ));
    }
    let user_data = TopLevel::scan(&seed.user_data).or_else(|| {
        parse(machine, "user-data", &seed.user_data, &mut out).map(|ud| TopLevel::of(&ud))
    });
    match user_data {
        Some(TopLevel::Other(pos)) => out.push(problem(
            "user-data",
            pos,
            "user-data is not a mapping".into(),
        )),
        Some(TopLevel::Map(keys)) => {
            for (key, pos) in keys {
                if !CLOUD_CONFIG_KEYS.contains(&key.as_str()) {
                    let (message, hint) = yaml::unknown_key_message(
                        &crate::diag::Path::root(),
                        &key,
                        CLOUD_CONFIG_KEYS,
                    );
                    out.push(problem(
                        "user-data",
                        pos,
                        format!("{message} (cloud-init would ignore it): {hint}"),
                    ));
                }
            }
        }
        None => {}
    }
    if let Some(md) = parse(machine, "meta-data", &seed.meta_data, &mut out) {
        for required in ["instance-id", "local-hostname"] {
            if !entries(&md).iter().any(|(k, _)| k.name == required) {
                out.push(problem(
                    "meta-data",
                    md.pos,
                    format!("meta-data has no `{required}`"),
                ));
            }
        }
    }
    if let Some(nc) = parse(machine, "network-config", &seed.network_config, &mut out) {
        let version = entries(&nc).iter().find(|(k, _)| k.name == "version");
        if !matches!(
            version,
            Some((
                _,
                Node {
                    kind: Kind::Int(2),
                    ..
                }
            ))
        ) {
            out.push(problem(
                "network-config",
                nc.pos,
                "network-config is not `version: 2`".into(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(user_data: &str) -> Seed {
        Seed {
            user_data: user_data.into(),
            meta_data: "instance-id: i\nlocal-hostname: h\n".into(),
            network_config: "version: 2\nethernets: {}\n".into(),
        }
    }

    #[test]
    fn unknown_top_level_key_is_refused_with_position() {
        let p = check_seed("m", &seed("#cloud-config\nhostname: x\nrun_cmd: []\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].line, p[0].col), (3, 1));
        assert!(
            p[0].message.contains("`run_cmd`") && p[0].message.contains("runcmd"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn header_and_syntax_are_checked() {
        let p = check_seed("m", &seed("hostname: x\n"));
        assert!(p[0].message.contains("#cloud-config"));
        let p = check_seed("m", &seed("#cloud-config\nhostname: [\n"));
        assert!(p[0].message.contains("not valid YAML"), "{p:?}");
    }

    #[test]
    fn the_event_scan_reads_the_top_level_as_the_whole_parse_does() {
        // The real user-data of every shipped profile's machines, and odd shapes.
        let mut texts: Vec<String> = Vec::new();
        for profile in [
            include_str!("../profiles/tutorial.yaml"),
            include_str!("../profiles/ha.yaml"),
            include_str!("../profiles/hoodi.yaml"),
        ] {
            let spec = crate::checked_spec(profile);
            let secrets = crate::secrets::Secrets::generate(&spec).unwrap();
            let engine = crate::render::Engine::new(None).unwrap();
            let seeds =
                crate::render_seeds(&spec, &secrets, &engine, &[], &Default::default()).unwrap();
            texts.extend(seeds.into_iter().map(|(_, s)| s.user_data));
        }
        for text in texts.iter().map(String::as_str).chain([
            "#cloud-config\nhostname: x\nruncmd: [[true]]\nwrite_files:\n  - path: /a\n    content: |\n      a: b\nusers: [a]\n",
            "#cloud-config\na: {b: [c, {d: e}]}\n'f g': |\n  h: i\n\"j\": [[k]]\nl: &m n\no: *m\n",
            "#cloud-config\n- a\n- b\n",
            "#cloud-config\nplain\n",
            "#cloud-config\n{a: 1, b: {c: 2}}\n",
        ]) {
            let whole = TopLevel::of(&yaml::parse(text).unwrap());
            assert_eq!(TopLevel::scan(text), Some(whole), "{text}");
        }
        // Left to the whole parse: syntax errors, several documents, a
        // complex key, an empty document.
        for text in [
            "#cloud-config\na: [\n",
            "a: 1\n---\nb: 2\n",
            "? [a]\n: b\n",
            "#cloud-config\n",
        ] {
            assert_eq!(TopLevel::scan(text), None, "{text}");
        }
    }

    #[test]
    fn good_seed_passes() {
        assert!(
            check_seed("m", &seed("#cloud-config\nhostname: x\nruncmd: [[true]]\n")).is_empty()
        );
    }
}

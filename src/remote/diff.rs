//! `nodeimg diff`: each file a machine's seed writes, as the current
//! profile renders it, against the file on the machine; and which seed the
//! machine booted from (its instance-id).

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::ssh::{Client, Refused, Target};
use crate::render::Seed;

/// The script each machine runs (a template; see remote/files.sh).
const SCRIPT: &str = include_str!("../../remote/files.sh");

/// The largest file shown as a diff; a larger one is compared by hash.
const MAX_SHOWN: usize = 256 * 1024;

/// A file the seed writes, as cloud-init writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFile {
    pub path: String,
    pub bytes: Vec<u8>,
    /// Compared by hash only, never shown: it holds a secret, or it is
    /// not readable by others (its mode says it is private).
    pub private: bool,
}

/// The files `seed` writes that stay where it put them: the validator keys'
/// staging folder is emptied by the first boot (step nfs-exports).
pub fn seed_files(seed: &Seed) -> Vec<SeedFile> {
    let staging = format!("{}/", crate::firstboot::KEYS_STAGING);
    seed.write_files()
        .into_iter()
        .filter(|f| !f.path.starts_with(&staging))
        .filter_map(|f| {
            let bytes = f.bytes()?;
            let others_read = f.mode().is_none_or(|mode| mode & 0o004 != 0);
            let private =
                !others_read || crate::redact::holds_secret(&String::from_utf8_lossy(&bytes));
            Some(SeedFile {
                path: f.path,
                bytes,
                private,
            })
        })
        .collect()
}

/// The instance-id in a seed's meta-data.
pub fn instance_id(seed: &Seed) -> Option<String> {
    seed.meta_data.lines().find_map(|l| {
        l.strip_prefix("instance-id:")
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// A file's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Same,
    Missing,
    /// Differs; the unified diff when it may be shown.
    Differs(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    pub path: String,
    pub private: bool,
    pub state: FileState,
}

/// A machine's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    InSync,
    /// Booted from this seed, and files changed since.
    Drifted,
    /// Booted from another seed than the profile renders now.
    SeedChanged {
        booted: String,
        rendered: String,
    },
    /// Nothing could be compared.
    Refused(Refused),
    /// The machine's answer stopped before its end.
    CutShort(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDiff {
    pub machine: String,
    pub address: String,
    pub verdict: Verdict,
    pub files: Vec<FileDiff>,
}

impl MachineDiff {
    pub fn in_sync(&self) -> bool {
        self.verdict == Verdict::InSync
    }
}

/// The script that hashes the files `hashes` (number, path) and shows the
/// files `contents`.
pub fn script(hashes: &[(usize, &str)], contents: &[(usize, &str)]) -> Result<String> {
    let list = |v: &[(usize, &str)]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|(n, p)| json!({"n": n.to_string(), "path": p}))
            .collect()
    };
    let ctx = json!({ "hashes": list(hashes), "contents": list(contents) });
    crate::render::render_own_sh("remote/files.sh", SCRIPT, &ctx)
}

/// What a machine said: its instance-id, file N's sha256 (None: missing),
/// file N's content; whether it reached the end.
#[derive(Default)]
struct Said {
    instance_id: Option<String>,
    hashes: std::collections::BTreeMap<usize, Option<String>>,
    contents: std::collections::BTreeMap<usize, Vec<u8>>,
    complete: bool,
}

fn read_said(out: &str) -> Said {
    use base64::Engine as _;
    let mut said = Said::default();
    for line in out.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("instance-id"), Some(id), None) if id != "-" => {
                said.instance_id = Some(id.to_string())
            }
            (Some("file"), Some(n), Some(h)) => {
                if let Ok(n) = n.parse() {
                    let h = (h != "missing").then(|| h.to_string());
                    said.hashes.insert(n, h);
                }
            }
            (Some("content"), Some(n), b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.unwrap_or("").trim())
                    .unwrap_or_default();
                if let Ok(n) = n.parse() {
                    said.contents.insert(n, bytes);
                }
            }
            (Some("end"), _, _) => said.complete = true,
            _ => {}
        }
    }
    said
}

fn run(
    client: &Client,
    t: &Target,
    script: &str,
    limit: Duration,
) -> Result<Result<Said, Verdict>> {
    Ok(match client.run_script(t, script, limit)? {
        Err(refused) => Err(Verdict::Refused(refused)),
        Ok(f) => {
            let said = read_said(&String::from_utf8_lossy(&f.stdout));
            if said.complete {
                Ok(said)
            } else {
                let err = String::from_utf8_lossy(&f.stderr);
                Err(Verdict::CutShort(super::printable(
                    err.lines().last().unwrap_or("").trim(),
                    super::ssh::SAID_MAX,
                )))
            }
        }
    })
}

/// A unified diff of the machine's file against the rendered one.
pub fn unified(path: &str, on_machine: &[u8], rendered: &[u8]) -> Option<String> {
    let (Ok(a), Ok(b)) = (
        std::str::from_utf8(on_machine),
        std::str::from_utf8(rendered),
    ) else {
        return None;
    };
    let printable = |s: &str| {
        s.chars()
            .all(|c| !super::acts_on_terminal(c) || c == '\n' || c == '\t')
    };
    if !printable(a) || !printable(b) || a.len() > MAX_SHOWN || b.len() > MAX_SHOWN {
        return None;
    }
    Some(
        similar::TextDiff::from_lines(a, b)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{path} (on the machine)"),
                &format!("{path} (from the profile)"),
            )
            .to_string(),
    )
}

/// Compares one machine: hashes first, then the content of each public
/// file that differs, over the same kind of connection.
pub fn compare(
    client: &Client,
    target: &Target,
    seed: &Seed,
    limit: Duration,
) -> Result<MachineDiff> {
    let files = seed_files(seed);
    let all: Vec<(usize, &str)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (i, f.path.as_str()))
        .collect();
    let mut result = MachineDiff {
        machine: target.machine.clone(),
        address: target.to_string(),
        verdict: Verdict::InSync,
        files: Vec::new(),
    };
    let said = match run(client, target, &script(&all, &[])?, limit)? {
        Ok(said) => said,
        Err(verdict) => {
            result.verdict = verdict;
            return Ok(result);
        }
    };
    let mut differing = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let want = crate::io::hash::sha256_hex(&f.bytes);
        let state = match said.hashes.get(&i) {
            Some(Some(h)) if *h == want => FileState::Same,
            Some(None) => FileState::Missing,
            _ => {
                if !f.private {
                    differing.push((i, f.path.as_str()));
                }
                FileState::Differs(None)
            }
        };
        result.files.push(FileDiff {
            path: f.path.clone(),
            private: f.private,
            state,
        });
    }
    if !differing.is_empty() {
        if let Ok(shown) = run(client, target, &script(&[], &differing)?, limit)? {
            for (i, _) in &differing {
                if let Some(on_machine) = shown.contents.get(i) {
                    let f = &files[*i];
                    // A secret that reached a public file is not shown either.
                    if !crate::redact::holds_secret(&String::from_utf8_lossy(on_machine)) {
                        result.files[*i].state =
                            FileState::Differs(unified(&f.path, on_machine, &f.bytes));
                    }
                }
            }
        }
    }
    let rendered = instance_id(seed).unwrap_or_default();
    let booted = said.instance_id.unwrap_or_default();
    result.verdict = if booted != rendered {
        Verdict::SeedChanged { booted, rendered }
    } else if result.files.iter().any(|f| f.state != FileState::Same) {
        Verdict::Drifted
    } else {
        Verdict::InSync
    };
    Ok(result)
}

/// Every machine at once.
pub fn compare_all(
    client: &Client,
    machines: &[(Target, Seed)],
    limit: Duration,
) -> Result<Vec<MachineDiff>> {
    std::thread::scope(|scope| {
        let running: Vec<_> = machines
            .iter()
            .map(|(t, seed)| scope.spawn(move || compare(client, t, seed, limit)))
            .collect();
        running
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("internal: a diff thread panicked")))
            })
            .collect()
    })
}

/// The report: each differing file's diff (or why none is shown), then a
/// line a machine.
pub fn render(diffs: &[MachineDiff]) -> String {
    let mut out = String::new();
    for d in diffs {
        for f in &d.files {
            match &f.state {
                FileState::Same => {}
                FileState::Missing => out.push_str(&format!(
                    "{}: {} is missing on the machine\n",
                    d.machine, f.path
                )),
                FileState::Differs(Some(diff)) => {
                    out.push_str(diff);
                    if !diff.ends_with('\n') {
                        out.push('\n');
                    }
                }
                FileState::Differs(None) if f.private => out.push_str(&format!(
                    "{}: {} differs (it holds secrets or is private: compared by sha256 only)\n",
                    d.machine, f.path
                )),
                FileState::Differs(None) => out.push_str(&format!(
                    "{}: {} differs (binary or large: compared by sha256 only)\n",
                    d.machine, f.path
                )),
            }
        }
    }
    for d in diffs {
        let changed = d
            .files
            .iter()
            .filter(|f| f.state != FileState::Same)
            .count();
        let line = match &d.verdict {
            Verdict::InSync => format!("in sync ({} files)", d.files.len()),
            Verdict::Drifted => format!(
                "drifted: {changed} of {} files differ from the profile's seed it booted from",
                d.files.len()
            ),
            Verdict::SeedChanged { booted, rendered } => format!(
                "seed changed since it was built: it booted from instance-id {}, the profile renders {}; {changed} of {} files differ (rebuild it with --only {} and reprovision to apply)",
                if booted.is_empty() { "(none)" } else { booted },
                rendered,
                d.files.len(),
                d.machine
            ),
            Verdict::Refused(Refused::HostKeyMismatch) => format!(
                "not compared: host key does not match the one nodeimg made for {}",
                d.machine
            ),
            Verdict::Refused(r) => format!("not compared: {r} ({})", d.address),
            Verdict::CutShort(why) => format!("not compared: its answer was cut short: {why}"),
        };
        out.push_str(&format!("{}: {line}\n", d.machine));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_files_are_what_cloud_init_writes() {
        use base64::Engine as _;
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"zipped\n").unwrap();
        let gz = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let plain_b64 = base64::engine::general_purpose::STANDARD.encode(b"raw");
        let user_data = format!(
            "#cloud-config\nwrite_files:\n  - path: /etc/a\n    permissions: \"0644\"\n    content: |\n      hello\n  - path: /etc/b\n    permissions: \"0600\"\n    content: x\n  - path: /var/c\n    encoding: gz+b64\n    permissions: \"0644\"\n    content: {gz}\n  - path: /var/d\n    encoding: b64\n    content: {plain_b64}\n  - path: {}/k.json\n    content: key\n",
            crate::firstboot::KEYS_STAGING
        );
        let seed = Seed {
            user_data,
            meta_data: "instance-id: iid-abc\nlocal-hostname: a\n".into(),
            network_config: String::new(),
        };
        let files = seed_files(&seed);
        let got: Vec<(&str, &[u8], bool)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.bytes.as_slice(), f.private))
            .collect();
        assert_eq!(
            got,
            [
                ("/etc/a", &b"hello\n"[..], false),
                ("/etc/b", &b"x"[..], true),
                ("/var/c", &b"zipped\n"[..], false),
                ("/var/d", &b"raw"[..], false),
            ]
        );
        assert_eq!(instance_id(&seed).as_deref(), Some("iid-abc"));
    }

    #[test]
    fn a_changed_line_shows_as_a_unified_diff_and_binary_does_not() {
        let d = unified("/etc/hosts", b"a\nb\nc\n", b"a\nB\nc\n").unwrap();
        assert!(
            d.starts_with("--- /etc/hosts (on the machine)\n+++ /etc/hosts (from the profile)\n"),
            "{d}"
        );
        assert!(d.contains("\n-b\n+B\n"), "{d}");
        assert_eq!(unified("/x", b"\x00\x01", b"a"), None);
        assert_eq!(unified("/x", b"\x1b[31mred", b"a"), None);
        // A right-to-left override would reorder what the terminal shows.
        assert_eq!(unified("/x", "pool \u{202e}gro.ptn".as_bytes(), b"a"), None);
    }

    #[test]
    fn the_machines_answer_is_read_line_by_line() {
        let said =
            read_said("instance-id iid-1\nfile 0 abc\nfile 1 missing\ncontent 2 aGk=\nend -\n");
        assert_eq!(said.instance_id.as_deref(), Some("iid-1"));
        assert_eq!(said.hashes.get(&0), Some(&Some("abc".to_string())));
        assert_eq!(said.hashes.get(&1), Some(&None));
        assert_eq!(said.contents.get(&2).map(Vec::as_slice), Some(&b"hi"[..]));
        assert!(said.complete);
        assert!(!read_said("instance-id iid-1\n").complete);
    }
}

//! The validator groups' keystores and passwords, read and checked.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use serde_json::Value;

use super::StakingSpec;
use crate::diag::{Diagnostic, Kind, Path};
use crate::io::input::{
    read_regular, Confinement, PathProblem, MAX_KEYSTORE, MAX_KEYSTORES, MAX_PASSWORD,
};

/// One validator group's keys as read from disk.
#[derive(Debug, Clone)]
pub struct GroupKeys {
    pub group: String,
    /// (file name, content, pubkey)
    pub keystores: Vec<(String, Vec<u8>, String)>,
    pub password: Vec<u8>,
}

/// Reads every group's keystores and password (paths relative to
/// `base_dir`), and checks that no pubkey is in two groups. Problems come
/// back as diagnostics on the group's keys.
pub fn read_keys(
    spec: &StakingSpec,
    base_dir: &FsPath,
    allowed: &Confinement,
) -> (Vec<GroupKeys>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut out = Vec::new();
    // pubkey -> the group it was first seen in
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (i, g) in spec.groups.iter().enumerate() {
        let at = Path::root().key("staking").key("validators").index(i);
        let mut keystores = Vec::new();
        let (dir, files) = keystore_files(&at, &g.keystores, base_dir, allowed, &mut diags);
        for file in files {
            let keystore = match read_keystore(&at, &dir, &file, allowed) {
                Ok(k) => k,
                Err(d) => {
                    diags.push(d);
                    continue;
                }
            };
            let pubkey = &keystore.2;
            if let Some(other) = seen.insert(pubkey.clone(), g.name.clone()) {
                if !spec.overrides.contains("same-key-in-two-groups") {
                    diags.push(Diagnostic::error(
                        Kind::Unsafe,
                        at.key("keystores"),
                        format!(
                            "validator 0x{}... is in group {other:?} and in group {:?}: two validator clients signing with one key is a slashable double vote",
                            &pubkey[..12],
                            g.name
                        ),
                        "keep every key in exactly one group, or accept the risk with `overrides: [same-key-in-two-groups]`",
                    ));
                }
            }
            keystores.push(keystore);
        }
        let password = match read_password(&at, &g.password_file, base_dir, allowed) {
            Ok(b) => b,
            Err(d) => {
                diags.push(d);
                Vec::new()
            }
        };
        out.push(GroupKeys {
            group: g.name.clone(),
            keystores,
            password,
        });
    }
    (out, diags)
}

const OUTSIDE_HINT: &str = "keep the validator keys beside the profile, or list their folder in `trusted_folders: [/path/to/folder]` to allow it explicitly";

/// The group's folder and its keystore-*.json files, sorted; no files when
/// the folder cannot be read, holds none or too many (reported).
fn keystore_files(
    at: &Path,
    folder: &str,
    base_dir: &FsPath,
    allowed: &Confinement,
    diags: &mut Vec<Diagnostic>,
) -> (PathBuf, Vec<PathBuf>) {
    let at = at.key("keystores");
    let listed = allowed.resolve(base_dir, folder).and_then(|d| {
        std::fs::read_dir(&d)
            .map(|entries| (d.clone(), entries))
            .map_err(|e| PathProblem::Unreadable(format!("{}: {e}", d.display())))
    });
    let (dir, entries) = match listed {
        Ok(found) => found,
        Err(PathProblem::Outside(why)) => {
            diags.push(Diagnostic::error(Kind::Keystore, at, why, OUTSIDE_HINT));
            return (PathBuf::new(), Vec::new());
        }
        Err(PathProblem::Unreadable(why)) => {
            diags.push(Diagnostic::error(
                Kind::Keystore,
                at,
                format!("cannot read the keystore folder {why}"),
                "give a folder of EIP-2335 keystores (keystore-*.json), relative to the profile; the staking-deposit-cli writes them to validator_keys/",
            ));
            return (PathBuf::new(), Vec::new());
        }
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|f| {
            f.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("keystore") && n.ends_with(".json")
            })
        })
        .collect();
    files.sort();
    if files.len() > MAX_KEYSTORES {
        diags.push(Diagnostic::error(
            Kind::Keystore,
            at,
            format!(
                "{} holds {} keystore files, more than the {MAX_KEYSTORES} nodeimg reads for one group",
                dir.display(),
                files.len(),
            ),
            "split the keys into several groups",
        ));
        files.clear();
    } else if files.is_empty() {
        diags.push(Diagnostic::error(
            Kind::Keystore,
            at,
            format!("{} holds no keystore-*.json file", dir.display()),
            "point it at the folder your deposit tool wrote the keystores to",
        ));
    }
    (dir, files)
}

/// One keystore file: (file name, content, lowercase hex pubkey), when it
/// is a regular file in an allowed place and an EIP-2335 keystore.
fn read_keystore(
    at: &Path,
    dir: &FsPath,
    file: &FsPath,
    allowed: &Confinement,
) -> Result<(String, Vec<u8>, String), Diagnostic> {
    let at = at.key("keystores");
    let name = file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    // A keystore may be a symlink: where it points must be allowed too.
    let read = allowed
        .resolve(dir, &name)
        .and_then(|real| read_regular(&real, MAX_KEYSTORE).map_err(PathProblem::Unreadable));
    let bytes = read.map_err(|why| {
        let hint = match why {
            PathProblem::Outside(_) => OUTSIDE_HINT,
            PathProblem::Unreadable(_) => {
                "use the keystore files your deposit tool wrote (regular files of a few KiB)"
            }
        };
        Diagnostic::error(Kind::Keystore, at.clone(), why.to_string(), hint)
    })?;
    let pubkey = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(|v| v["version"] == 4 && v["crypto"].is_object())
        .and_then(|v| {
            v["pubkey"]
                .as_str()
                .map(|s| s.trim_start_matches("0x").to_ascii_lowercase())
        })
        .filter(|k| k.len() == 96 && k.bytes().all(|b| b.is_ascii_hexdigit()));
    match pubkey {
        Some(pubkey) => Ok((name, bytes, pubkey)),
        None => Err(Diagnostic::error(
            Kind::Keystore,
            at,
            format!(
                "{} is not an EIP-2335 keystore (version 4, crypto, a 48-byte pubkey)",
                file.display()
            ),
            "use the keystore files your deposit tool wrote",
        )),
    }
}

/// The keystores' password: a small regular file, not empty. Registered
/// with the redactor so that it never reaches a log or an error.
fn read_password(
    at: &Path,
    file: &str,
    base_dir: &FsPath,
    allowed: &Confinement,
) -> Result<Vec<u8>, Diagnostic> {
    let at = at.key("password_file");
    let read = allowed
        .resolve(base_dir, file)
        .and_then(|real| read_regular(&real, MAX_PASSWORD).map_err(PathProblem::Unreadable));
    match read {
        Ok(b) if !b.trim_ascii().is_empty() => {
            crate::redact::register(&[String::from_utf8_lossy(&b).into_owned()]);
            Ok(b)
        }
        Ok(_) => Err(Diagnostic::error(
            Kind::Keystore,
            at,
            format!("{} is empty", base_dir.join(file).display()),
            "put the keystores' password in it",
        )),
        Err(PathProblem::Outside(why)) => Err(Diagnostic::error(Kind::Keystore, at, why, OUTSIDE_HINT)),
        Err(PathProblem::Unreadable(why)) => Err(Diagnostic::error(
            Kind::Keystore,
            at,
            crate::io::input::about("the password file", &why),
            "give the file holding the keystores' password (a regular file of at most 4 KiB), relative to the profile",
        )),
    }
}

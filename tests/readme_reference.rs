//! The README's profile reference cannot drift from the profile's types:
//! every key the types read (with its default) is in the reference tables,
//! and every key the tables name is one the types read.
//!
//! The keys and defaults come from a real load: a profile that sets only
//! what is required (one element in each list, one chart pin, the image and
//! legacy sections present) is read by nodeimg's own loader, and the loaded
//! profile is walked. A field added to the types shows up here untouched.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

const MINIMAL: &str = r#"
version: 1
cluster: {name: c}
network: {subnet: 10.0.0.0/24, gateway: 10.0.0.1}
machines:
  - {name: nfs, role: nfs, ip: 10.0.0.2}
ssh: {authorized_keys: [k]}
firewall:
  extra_rules: [{port: 1}]
image: {release: "22.04"}
staking:
  network: hoodi
  validators: [{name: g}]
  charts: {geth: {version: "1"}}
  eth2xk8s: {}
  web3signer: {migrations: {}}
"#;

/// Key paths (`a.b`, `list[].field`, `map.<chart>`) to their loaded values.
fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    out.insert(prefix.to_string(), v.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.ends_with(".charts") {
                    "<chart>".to_string()
                } else {
                    k.clone()
                };
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                walk(&path, child, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for item in items {
                walk(&format!("{prefix}[]"), item, out);
            }
        }
        _ => {}
    }
}

/// The reference tables' rows: (keys of the first column, default, meaning).
fn reference_rows() -> Vec<(Vec<String>, String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Profile reference\n")
        .nth(1)
        .expect("README has a Profile reference section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut rows = Vec::new();
    for line in section.lines() {
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        // Cells split at `|` not escaped as `\|`.
        let row = format!("`{row}").replace("\\|", "\u{0}");
        let cells: Vec<String> = row
            .split('|')
            .map(|c| c.replace('\u{0}', "|").trim().to_string())
            .collect();
        let keys = cells[0]
            .split(',')
            .map(|k| k.trim().trim_matches('`').to_string())
            .collect();
        rows.push((keys, cells[1].clone(), cells[2].clone()));
    }
    assert!(rows.len() > 40, "the reference tables were not found");
    rows
}

/// How the README writes a default: `22`, `staker`, `[a, b]`.
fn shown(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(format!(
            "[{}]",
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => None,
    }
}

#[test]
fn every_profile_key_and_default_is_in_the_readme_reference_and_back() {
    let loaded = nodeimg::profile::load("minimal.yaml", MINIMAL)
        .unwrap_or_else(|r| panic!("the minimal profile does not load: {r}"));
    let mut keys = BTreeMap::new();
    walk(
        "",
        &serde_json::to_value(&loaded.profile).unwrap(),
        &mut keys,
    );
    keys.remove("");
    let set_by_minimal: BTreeSet<&str> = [
        "version",
        "cluster.name",
        "network.subnet",
        "network.gateway",
        "machines[].name",
        "machines[].role",
        "machines[].ip",
        "ssh.authorized_keys",
        "firewall.extra_rules[].port",
        "image.release",
        "staking.network",
        "staking.validators[].name",
        "staking.charts.<chart>.version",
    ]
    .into();
    let rows = reference_rows();
    let documented: BTreeMap<&str, (&str, &str)> = rows
        .iter()
        .flat_map(|(ks, d, m)| {
            ks.iter()
                .map(move |k| (k.as_str(), (d.as_str(), m.as_str())))
        })
        .collect();
    let mut problems = Vec::new();
    for (key, value) in &keys {
        // A key is documented by its own row, or by the row of the section
        // or list it is in, which then names the field.
        let field = key.rsplit(['.', ']']).next().unwrap_or(key);
        let own = documented
            .get(key.as_str())
            .or_else(|| documented.get(format!("{key}[]").as_str()));
        let parent = (1..key.len()).rev().find_map(|i| {
            let head = &key[..i];
            (key[i..].starts_with('.') || key[i..].starts_with("[].") || key[i..].starts_with("[]"))
                .then(|| {
                    documented
                        .get(head)
                        .or_else(|| documented.get(format!("{head}[]").as_str()))
                })
                .flatten()
                .filter(|(d, m)| d.contains(field) || m.contains(field))
        });
        match (own, parent) {
            (Some((default, _)), _) => {
                if set_by_minimal.contains(key.as_str()) {
                    continue;
                }
                if let Some(expected) = shown(value) {
                    if !default.contains(&format!("`{expected}`")) {
                        problems.push(format!(
                            "{key}: the default is {expected} but the README says {default:?}"
                        ));
                    }
                }
            }
            (None, Some(_)) => {}
            (None, None) if value.is_object() || value.is_array() => {
                // A section or list: its fields are checked one by one.
            }
            (None, None) => problems.push(format!(
                "{key}: read by the profile types but not in the README's reference"
            )),
        }
    }
    for key in documented.keys() {
        let plain = key.trim_end_matches("[]");
        if !keys.contains_key(*key) && !keys.contains_key(plain) {
            problems.push(format!(
                "{key}: in the README's reference but not read by the profile types"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

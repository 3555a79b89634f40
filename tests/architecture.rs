//! The module structure the README's Design section describes: no module
//! imports one that (directly or through others) imports it back, so each
//! stage can be read and tested from the bottom up. A module is a file of
//! src/ or a folder (src/staking/, src/boottest/, src/io/); `lib.rs` and
//! `main.rs` sit on top and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// module -> the modules its source names as `crate::NAME` or `use crate::{..}`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for inner in fs::read_dir(&path).unwrap() {
                files.push(inner.unwrap().path());
            }
        } else {
            files.push(path);
        }
    }
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" || file.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        // Test modules may reach anywhere (they build a whole world).
        let text = text.split("#[cfg(test)]").next().unwrap();
        // Comments (doc links) name modules without using them.
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let after = &text[i + 7 + name.len()..];
            // `crate::NAME(...)` or `crate::NAME!` is a function or macro of lib.rs.
            if name.is_empty() || after.starts_with('(') || after.starts_with('!') {
                continue;
            }
            if name != module {
                deps.insert(name);
            }
        }
        for (i, _) in text.match_indices("use crate::{") {
            let list = &text[i + 12..text[i..].find('}').map_or(i + 12, |e| i + e)];
            for item in list.split(',') {
                let name = item.trim().split("::").next().unwrap_or("").to_string();
                if !name.is_empty() && name != module && !name.starts_with(char::is_uppercase) {
                    deps.insert(name);
                }
            }
        }
    }
    // Names of lib.rs itself (functions, types re-exported there) are not modules.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.len() >= 15, "modules found: {:?}", graph.keys());
    assert!(
        graph["boottest"].contains("render"),
        "{:?}",
        graph["boottest"]
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The shared primitives are below everything: they use no stage.
#[test]
fn the_primitives_use_no_stage() {
    let graph = imports();
    for low in ["io", "model", "redact", "payload"] {
        let deps = &graph[low];
        assert!(
            deps.iter().all(|d| d == "io" || d == "model"),
            "{low} uses {deps:?}"
        );
    }
}

//! What the probe printed on the serial console: `@@P@@ KEY VALUE` lines.

use std::collections::BTreeMap;

/// What the probe printed: `KEY -> values` in order.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub began: bool,
    pub complete: bool,
    pub facts: BTreeMap<String, Vec<String>>,
}

impl Facts {
    pub fn parse(serial: &str) -> Facts {
        let mut f = Facts::default();
        for line in serial.lines() {
            let Some(at) = line.find("@@P@@ ") else {
                continue;
            };
            let rest = line[at + 6..].trim_end_matches('\r');
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            match key {
                // A new report (a second boot) replaces the first.
                "begin" => {
                    f = Facts {
                        began: true,
                        ..Facts::default()
                    }
                }
                "end" => f.complete = true,
                _ => {}
            }
            f.facts
                .entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
        f
    }
    pub fn all(&self, key: &str) -> &[String] {
        self.facts.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn one(&self, key: &str) -> Option<&str> {
        self.all(key).first().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_keep_the_last_report() {
        let f = Facts::parse("junk\n@@P@@ begin a\n@@P@@ x 1\n[  3.1] kernel\n@@P@@ begin a\n@@P@@ x 2\n@@P@@ end a\n");
        assert!(f.complete);
        assert_eq!(f.all("x"), ["2"]);
    }
}

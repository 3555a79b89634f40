//! The outcome of a boot test: the machine x check table and the JSON.

use std::path::PathBuf;

use serde::Serialize;

use super::checks::{checks, MachineResult, Outcome};
use super::lab::Accel;

/// The outcome of a boot test.
#[derive(Debug, Clone, Serialize)]
pub struct BootReport {
    pub accel: Accel,
    pub accel_reason: String,
    pub seconds: f64,
    pub timed_out: bool,
    pub interrupted: bool,
    pub machines: Vec<MachineResult>,
    pub logs: PathBuf,
}

impl BootReport {
    pub fn passed(&self) -> bool {
        !self.timed_out && !self.interrupted && self.machines.iter().all(MachineResult::passed)
    }

    /// The machine x check table, then each failure's reason.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self
            .machines
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(7)
            .max(7);
        out.push_str(&format!("{:width$}", "machine"));
        for c in checks() {
            out.push_str(&format!("  {c:<w$}", w = c.len().max(7)));
        }
        out.push('\n');
        for m in &self.machines {
            out.push_str(&format!("{:width$}", m.name));
            for c in checks() {
                let s = m.checks.get(c).map(Outcome::short).unwrap_or("?");
                out.push_str(&format!("  {s:<w$}", w = c.len().max(7)));
            }
            out.push('\n');
        }
        for m in &self.machines {
            for c in checks() {
                match m.checks.get(c) {
                    Some(Outcome::Failed(why)) => {
                        out.push_str(&format!("{} {c}: FAILED: {why}\n", m.name))
                    }
                    Some(Outcome::NotCheckableOffline(why)) => {
                        out.push_str(&format!("{} {c}: not checkable offline: {why}\n", m.name))
                    }
                    _ => {}
                }
            }
        }
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        let why = if self.timed_out {
            " (timed out)"
        } else if self.interrupted {
            " (interrupted)"
        } else {
            ""
        };
        out.push_str(&format!(
            "boot-test {verdict}{why}: {} machine(s) in {:.0} s ({:?}: {}); serial logs in {}\n",
            self.machines.len(),
            self.seconds,
            self.accel,
            self.accel_reason,
            self.logs.display()
        ));
        out
    }
}

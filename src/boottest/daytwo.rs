//! Day two in the boot test: `nodeimg status` and `nodeimg diff`, the
//! library's own, run against the booted cluster from a namespace on the
//! lab's switch (see `window`), trusting only the host keys of the secrets
//! file and logging in with the test's login key; then their failure paths:
//! a file changed over `ssh` drifts, a wrong host key is refused by name,
//! a powered-off machine is unreachable within the timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::checks::{MachineResult, Outcome};
use super::facts::Facts;
use super::window::Window;
use crate::firstboot::{self, state, StatusLine};
use crate::remote::diff::{self, FileState, MachineDiff, Verdict};
use crate::remote::ssh::{self, Client, Pinned, Target};
use crate::remote::status::{self, CloudInit, MachineStatus, StatusReport};
use crate::render::Seed;
use crate::secrets::Secrets;
use crate::validate::Spec;

/// The day-two columns of the report, after the probe's.
pub const CHECKS: &[&str] = &["status", "diff", "pin"];

/// How long one machine may take to answer (the guests may run on TCG).
const TIMEOUT: Duration = Duration::from_secs(90);

/// How long `status` waits for the powered-off machine.
const OFF_TIMEOUT: Duration = Duration::from_secs(10);

/// The script that changes a seed's file on a machine and puts it back.
const CHANGE_SCRIPT: &str = include_str!("../../qemu/day-two-change.sh");

/// The line the drift test appends to a file.
const CHANGED_LINE: &str = "# changed by the boot test";

/// The day-two tools' place on the lab's switch and what they trust.
pub struct DayTwo<'a> {
    spec: &'a Spec,
    secrets: &'a Secrets,
    login_key: PathBuf,
    pinned: Pinned,
    wrapper: Vec<String>,
    /// Dropped last: the namespace goes when nothing uses it any more.
    _window: Window,
}

impl<'a> DayTwo<'a> {
    /// Plugs the day-two namespace into the switch at `switch` and pins
    /// every machine's host key from `secrets`.
    pub fn open(
        spec: &'a Spec,
        secrets: &'a Secrets,
        switch: &Path,
        log: &Path,
        login_key: &Path,
    ) -> Result<DayTwo<'a>> {
        let window = Window::open(switch, spec, log)?;
        let names: Vec<&str> = spec.machines.iter().map(|m| m.name.as_str()).collect();
        Ok(DayTwo {
            spec,
            secrets,
            login_key: login_key.to_path_buf(),
            pinned: Pinned::new(secrets, &names)?,
            wrapper: window.wrapper(),
            _window: window,
        })
    }

    fn client<'c>(&'c self, pinned: &'c Pinned, timeout: Duration) -> Client<'c> {
        Client {
            pinned,
            user: &self.spec.ssh.user,
            identity: Some(&self.login_key),
            connect_timeout: timeout,
            wrapper: &self.wrapper,
        }
    }

    /// Each machine at its profile address and ssh.port.
    fn targets(&self, names: &[&str]) -> Result<Vec<Target>> {
        ssh::targets(self.spec, names, &[])
    }

    /// `status`, `diff` with a file changed and put back, and a wrong pin,
    /// on every machine of the booted cluster; each machine's outcome goes
    /// to its row of `results`.
    pub fn check_cluster(
        &self,
        seeds: &[(String, Seed)],
        facts: &BTreeMap<String, Facts>,
        results: &mut [MachineResult],
    ) {
        let names: Vec<&str> = seeds.iter().map(|(n, _)| n.as_str()).collect();
        let mut outcomes: BTreeMap<&str, [Outcome; 3]> = BTreeMap::new();
        match self.check_all(seeds, facts) {
            Ok(each) => outcomes.extend(each),
            Err(e) => {
                let failed = Outcome::Failed(format!("{e:#}"));
                for name in &names {
                    outcomes.insert(name, [failed.clone(), failed.clone(), failed.clone()]);
                }
            }
        }
        for r in results.iter_mut() {
            if let Some(o) = outcomes.remove(r.name.as_str()) {
                for (check, outcome) in CHECKS.iter().zip(o) {
                    r.checks.insert(check.to_string(), outcome);
                }
            }
        }
    }

    fn check_all<'s>(
        &self,
        seeds: &'s [(String, Seed)],
        facts: &BTreeMap<String, Facts>,
    ) -> Result<BTreeMap<&'s str, [Outcome; 3]>> {
        let names: Vec<&str> = seeds.iter().map(|(n, _)| n.as_str()).collect();
        let targets = self.targets(&names)?;
        let client = self.client(&self.pinned, TIMEOUT);
        let report = status::ask_all(self.spec, &client, &targets, TIMEOUT)?;
        let machines: Vec<(Target, Seed)> = targets
            .iter()
            .cloned()
            .zip(seeds.iter().map(|(_, s)| s.clone()))
            .collect();
        let diffs = diff::compare_all(&client, &machines, TIMEOUT)?;
        let mut wrong = self.secrets.clone();
        for name in &names {
            wrong
                .machines
                .insert(name.to_string(), crate::secrets::new_host_key(name)?);
        }
        let wrong = Pinned::new(&wrong, &names)?;
        let refused = status::ask_all(self.spec, &self.client(&wrong, TIMEOUT), &targets, TIMEOUT)?;
        let mut out = BTreeMap::new();
        for (i, (name, seed)) in seeds.iter().enumerate() {
            let empty = Facts::default();
            let probed = facts.get(name).unwrap_or(&empty);
            let status = status_outcome(self.spec, seed, probed, &report.machines[i]);
            let diff = match in_sync(&diffs[i]) {
                Ok(said) => self.drift(&client, &machines[i], &said),
                Err(failed) => failed,
            };
            let pin = pin_outcome(&refused.machines[i]);
            out.insert(name.as_str(), [status, diff, pin]);
        }
        Ok(out)
    }

    /// Changes the first public file under /etc the seed wrote, over ssh,
    /// and expects `diff` to show it; puts it back and expects it in sync.
    fn drift(&self, client: &Client, (target, seed): &(Target, Seed), synced: &str) -> Outcome {
        let Some(file) = diff::seed_files(seed)
            .into_iter()
            .find(|f| !f.private && f.path.starts_with("/etc/"))
        else {
            return Outcome::Failed("the seed writes no public file under /etc".into());
        };
        let path = file.path.as_str();
        if let Err(e) = change(client, target, path, true) {
            return Outcome::Failed(format!("cannot change {path} over ssh: {e:#}"));
        }
        let changed = diff::compare(client, target, seed, TIMEOUT);
        let restored = change(client, target, path, false);
        let again = diff::compare(client, target, seed, TIMEOUT);
        let removed = format!("\n-{CHANGED_LINE}\n");
        let shown = match changed {
            Ok(d) if d.verdict == Verdict::Drifted => {
                let others_same = d
                    .files
                    .iter()
                    .all(|f| f.path == path || f.state == FileState::Same);
                match d.files.iter().find(|f| f.path == path).map(|f| &f.state) {
                    Some(FileState::Differs(Some(u))) if u.contains(&removed) && others_same => {
                        Ok(())
                    }
                    state => Err(format!(
                        "after {path} was changed over ssh, diff said {state:?} for it{}",
                        if others_same {
                            ""
                        } else {
                            " and other files differ"
                        }
                    )),
                }
            }
            Ok(d) => Err(format!(
                "after {path} was changed over ssh: {}",
                diff::render(&[d]).trim_end()
            )),
            Err(e) => Err(format!("diff after the change failed: {e:#}")),
        };
        if let Err(e) = restored {
            return Outcome::Failed(format!("cannot put {path} back over ssh: {e:#}"));
        }
        let back = again
            .map_err(|e| format!("{e:#}"))
            .and_then(|d| in_sync(&d).map_err(|o| format!("{o:?}")));
        match (shown, back) {
            (Ok(()), Ok(_)) => Outcome::Ok(format!(
                "{synced}; {path} changed over ssh: drifted, with its unified diff; put back: in sync"
            )),
            (Err(e), _) => Outcome::Failed(e),
            (Ok(()), Err(e)) => Outcome::Failed(format!("{path} put back, yet: {e}")),
        }
    }

    /// `status` while `name` is powered off: it must be named unreachable
    /// within the timeout, the cluster unhealthy, the others reached.
    pub fn check_off(&self, name: &str) -> Outcome {
        let names: Vec<&str> = self.spec.machines.iter().map(|m| m.name.as_str()).collect();
        let asked = Instant::now();
        let report = self.targets(&names).and_then(|targets| {
            status::ask_all(
                self.spec,
                &self.client(&self.pinned, OFF_TIMEOUT),
                &targets,
                OFF_TIMEOUT,
            )
        });
        let seconds = asked.elapsed().as_secs_f64();
        let report = match report {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("status failed: {e:#}")),
        };
        off_outcome(&report, name, seconds)
    }

    /// The reprovisioned machine, once it reported: reached with the host
    /// key it had before (the same identity), as the probe saw it, in sync.
    /// `off` is what `check_off` found while it was down.
    pub fn check_back(&self, name: &str, seed: &Seed, facts: &Facts, off: Outcome) -> [Outcome; 3] {
        let back = self.targets(&[name]).and_then(|targets| {
            let client = self.client(&self.pinned, TIMEOUT);
            let report = status::ask_all(self.spec, &client, &targets, TIMEOUT)?;
            let diffs = diff::compare_all(&client, &[(targets[0].clone(), seed.clone())], TIMEOUT)?;
            Ok((report, diffs))
        });
        let (report, diffs) = match back {
            Ok(b) => b,
            Err(e) => {
                let failed = Outcome::Failed(format!("{e:#}"));
                return [failed.clone(), failed.clone(), failed];
            }
        };
        let back = status_outcome(self.spec, seed, facts, &report.machines[0]);
        let status = match (off, back) {
            (Outcome::Ok(off), Outcome::Ok(back)) => {
                Outcome::Ok(format!("while off: {off}; back: {back}"))
            }
            (Outcome::Ok(_), failed) => failed,
            (failed, _) => failed,
        };
        let diff = in_sync(&diffs[0]).map(Outcome::Ok).unwrap_or_else(|e| e);
        let pin = match report.machines[0].host_key {
            "pinned" => Outcome::Ok("the host key it had before it died: the same identity".into()),
            other => Outcome::Failed(format!("host key {other}")),
        };
        [status, diff, pin]
    }
}

/// The script that changes `path` on a machine (`change`) or puts it back.
pub fn change_script(path: &str, change: bool) -> Result<String> {
    crate::render::render_own_sh(
        "qemu/day-two-change.sh",
        CHANGE_SCRIPT,
        &json!({ "path": path, "line": CHANGED_LINE, "change": change }),
    )
}

/// Runs the change script on `target`: `change` the file, or put it back.
fn change(client: &Client, target: &Target, path: &str, change: bool) -> Result<()> {
    let script = change_script(path, change)?;
    let done = client
        .run_script(target, &script, TIMEOUT)?
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    match done.status {
        Some(s) if s.success() => Ok(()),
        status => Err(anyhow::anyhow!(
            "{} ({})",
            String::from_utf8_lossy(&done.stderr).trim(),
            status.map_or("no end within the timeout".to_string(), |s| s.to_string())
        ))
        .context("the change script failed"),
    }
}

/// `diff`'s line for a machine in sync, or its failure.
fn in_sync(d: &MachineDiff) -> Result<String, Outcome> {
    if d.in_sync() {
        Ok(format!("diff: in sync ({} files)", d.files.len()))
    } else {
        Err(Outcome::Failed(
            diff::render(std::slice::from_ref(d)).trim_end().to_string(),
        ))
    }
}

/// A step the probe and `status` agree on: the same settled state, or both
/// still at work (an offline step moves between running and retrying).
fn same_state(probed: &str, asked: &str) -> bool {
    let at_work = |s: &str| !firstboot::SETTLED.contains(&s) && s != state::FAILED;
    // Status asks after the probe read: a step at work then may still be,
    // or may have settled since (the release step found nothing to install).
    probed == asked || (at_work(probed) && (at_work(asked) || firstboot::SETTLED.contains(&asked)))
}

/// What `status` said about a booted machine against what its probe read:
/// reached with the pinned key, its name, the seed it booted from,
/// cloud-init done, every step as the probe saw it; its only problems the
/// ones offline explains (internet-bound steps at work, and on the master
/// no Kubernetes while microk8s-launch is).
pub(super) fn status_outcome(
    spec: &Spec,
    seed: &Seed,
    probed: &Facts,
    st: &MachineStatus,
) -> Outcome {
    let Some(m) = spec.machine(&st.machine) else {
        return Outcome::Failed(format!("status named {:?}, no machine", st.machine));
    };
    if !st.reachable || st.host_key != "pinned" {
        return Outcome::Failed(format!(
            "status: host key {}, {}",
            st.host_key,
            st.problems.join("; ")
        ));
    }
    let mut wrong = Vec::new();
    if st.hostname.as_deref() != Some(m.name.as_str()) {
        wrong.push(format!("hostname {:?}", st.hostname));
    }
    let instance_id = diff::instance_id(seed);
    if st.instance_id != instance_id {
        wrong.push(format!(
            "instance-id {:?}, the seed's {instance_id:?}",
            st.instance_id
        ));
    }
    if st.cloud_init != Some(CloudInit::Done) {
        wrong.push(format!("cloud-init {:?}", st.cloud_init));
    }
    let probed_steps: BTreeMap<String, String> = probed
        .all("status")
        .iter()
        .filter_map(|l| StatusLine::parse(l))
        .map(|l| (l.step, l.state))
        .collect();
    let asked_steps: BTreeMap<&str, &str> = st
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.state.as_str()))
        .collect();
    if probed_steps.len() != asked_steps.len()
        || probed_steps.iter().any(|(step, probed)| {
            !asked_steps
                .get(step.as_str())
                .is_some_and(|asked| same_state(probed, asked))
        })
    {
        wrong.push(format!(
            "steps {asked_steps:?}, the probe read {probed_steps:?}"
        ));
    }
    // Every internet-bound step of the role, the release too where it has
    // nothing to install: offline, the loop may not have reached it yet.
    let online = firstboot::online(spec.duty(m));
    let at_work: Vec<&status::Step> = st
        .steps
        .iter()
        .filter(|s| online.contains(&s.step.as_str()))
        .filter(|s| !firstboot::SETTLED.contains(&s.state.as_str()) && s.state != state::FAILED)
        .collect();
    let kubernetes_offline =
        spec.is_first_master(m) && at_work.iter().any(|s| s.step == "microk8s-launch");
    let explained: Vec<String> = at_work.iter().map(|s| status::step_problem(s)).collect();
    let no_kubernetes = status::no_kubernetes_problem("");
    let unexplained: Vec<&String> = st
        .problems
        .iter()
        .filter(|p| !explained.contains(p))
        .filter(|p| !(kubernetes_offline && p.starts_with(&no_kubernetes)))
        .collect();
    if !unexplained.is_empty() {
        wrong.push(format!(
            "problems offline does not explain: {unexplained:?}"
        ));
    }
    if !wrong.is_empty() {
        return Outcome::Failed(format!("status: {}", wrong.join("; ")));
    }
    let offline = if at_work.is_empty() {
        String::new()
    } else {
        format!(
            "; offline: {} at work{}",
            at_work
                .iter()
                .map(|s| s.step.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if kubernetes_offline {
                ", Kubernetes not asked"
            } else {
                ""
            }
        )
    };
    Outcome::Ok(format!(
        "status: reached at {}, host key pinned, cloud-init done, {} steps as the probe read them{offline}",
        st.address,
        st.steps.len()
    ))
}

/// `status` with another host key in the secrets file: refused, by name.
fn pin_outcome(st: &MachineStatus) -> Outcome {
    let named = st.problems.iter().find(|p| {
        p.contains("host key does not match") && p.contains(&format!(" for {}:", st.machine))
    });
    match (st.host_key, named, st.healthy) {
        ("mismatch", Some(p), false) => Outcome::Ok(format!(
            "another host key in the secrets file: refused ({})",
            crate::diag::shorten(p)
        )),
        _ => Outcome::Failed(format!(
            "with another host key in the secrets file, status said host key {}, healthy {}: {}",
            st.host_key,
            st.healthy,
            st.problems.join("; ")
        )),
    }
}

/// `status` with `name` powered off, asked in `seconds`.
pub(super) fn off_outcome(report: &StatusReport, name: &str, seconds: f64) -> Outcome {
    let Some(off) = report.machines.iter().find(|m| m.machine == name) else {
        return Outcome::Failed(format!("status did not ask {name}"));
    };
    let limit = OFF_TIMEOUT.as_secs_f64() + 10.0;
    let table = report.table();
    let named = table
        .lines()
        .find(|l| l.starts_with(&format!("  {name}: unreachable at ")));
    let unreached: Vec<&str> = report
        .machines
        .iter()
        .filter(|m| m.machine != name && !m.reachable)
        .map(|m| m.machine.as_str())
        .collect();
    match named {
        _ if off.reachable || off.healthy || report.healthy => Outcome::Failed(format!(
            "powered off, status said reachable {}, healthy {}, the cluster healthy {}",
            off.reachable, off.healthy, report.healthy
        )),
        None => Outcome::Failed(format!(
            "status's table does not name it unreachable:\n{table}"
        )),
        Some(_) if seconds > limit => Outcome::Failed(format!(
            "status took {seconds:.0} s with a timeout of {} s",
            OFF_TIMEOUT.as_secs()
        )),
        Some(_) if !unreached.is_empty() => {
            Outcome::Failed(format!("the others unreachable too: {unreached:?}"))
        }
        Some(line) => Outcome::Ok(format!(
            "unreachable in {seconds:.0} s (timeout {} s), status unhealthy, naming it: {}",
            OFF_TIMEOUT.as_secs(),
            line.trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::ssh::Refused;
    use crate::validate::Role;

    fn spec() -> Spec {
        crate::checked_spec(include_str!("../../profiles/tutorial.yaml"))
    }

    fn seed() -> Seed {
        Seed {
            user_data: "#cloud-config\n".into(),
            meta_data: "instance-id: i-1\nlocal-hostname: x\n".into(),
            network_config: String::new(),
        }
    }

    /// The status file's lines: every step of `name`'s role done but
    /// `states` (step, state).
    fn status_lines(spec: &Spec, name: &str, states: &[(&str, &str)]) -> Vec<String> {
        let m = spec.machine(name).unwrap();
        firstboot::all(m.role)
            .into_iter()
            .map(|s| {
                let state = states
                    .iter()
                    .find(|(n, _)| *n == s)
                    .map_or(state::DONE, |(_, st)| st);
                format!("{s} {state} 2 1764780000 no route to the archive")
            })
            .collect()
    }

    fn probed(lines: &[String]) -> Facts {
        let mut serial = String::from("@@P@@ begin x\n");
        for l in lines {
            serial.push_str(&format!("@@P@@ status {l}\n"));
        }
        serial.push_str("@@P@@ end x\n");
        Facts::parse(&serial)
    }

    fn asked(spec: &Spec, name: &str, lines: &[String], extra: &str) -> MachineStatus {
        let mut out = format!(
            "hostname {name}\ninstance-id i-1\ncloud-init-result {{\"v1\": {{\"errors\": []}}}}\n"
        );
        for l in lines {
            out.push_str(&format!("step {l}\n"));
        }
        out.push_str(extra);
        out.push_str("end -\n");
        let m = spec.machine(name).unwrap();
        status::judge(
            spec,
            m,
            "172.20.0.2:2222",
            Ok((Some(Some(0)), out, String::new())),
        )
    }

    fn offline(spec: &Spec, name: &str) -> Vec<(&'static str, &'static str)> {
        super::super::checks::online_steps_of(spec, spec.machine(name).unwrap())
            .into_iter()
            .map(|s| (s, state::RETRYING))
            .collect()
    }

    #[test]
    fn an_offline_master_passes_with_what_offline_explains() {
        let spec = spec();
        let states = offline(&spec, "master");
        let lines = status_lines(&spec, "master", &states);
        let st = asked(
            &spec,
            "master",
            &lines,
            "no-kubernetes the microk8s command is not installed\n",
        );
        assert!(!st.healthy, "offline is not healthy");
        match status_outcome(&spec, &seed(), &probed(&lines), &st) {
            Outcome::Ok(d) => {
                assert!(
                    d.contains("microk8s-launch") && d.ends_with(", Kubernetes not asked"),
                    "{d}"
                )
            }
            other => panic!("{other:?}"),
        }
        // The master's status lines with its release step in `release`, and
        // what status says of them offline.
        let with_release = |release: &'static str| {
            let mut steps = states.clone();
            steps.push(("release", release));
            let lines = status_lines(&spec, "master", &steps);
            let no_kubernetes = "no-kubernetes the microk8s command is not installed\n";
            let st = asked(&spec, "master", &lines, no_kubernetes);
            (lines, st)
        };
        // A master with no release to install: the loop has not reached the
        // step yet while microk8s is at work (seen in the boot test).
        let (lines_unreached, st_unreached) = with_release(state::PENDING);
        assert!(matches!(
            status_outcome(&spec, &seed(), &probed(&lines_unreached), &st_unreached),
            Outcome::Ok(_)
        ));
        // The probe saw a step running that status finds retrying: still at work.
        let running: Vec<(&str, &str)> = states.iter().map(|(s, _)| (*s, state::RUNNING)).collect();
        let earlier = status_lines(&spec, "master", &running);
        assert!(matches!(
            status_outcome(&spec, &seed(), &probed(&earlier), &st),
            Outcome::Ok(_)
        ));
        // The probe saw the release pending; status, later, finds it
        // skipped (nothing to install): it settled since (seen in the boot test).
        let (lines_settled, st_settled) = with_release(state::SKIPPED);
        assert!(matches!(
            status_outcome(&spec, &seed(), &probed(&lines_unreached), &st_settled),
            Outcome::Ok(_)
        ));
        // Never backwards: settled when the probe looked, at work since.
        assert!(matches!(
            status_outcome(&spec, &seed(), &probed(&lines_settled), &st_unreached),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn what_offline_does_not_explain_fails() {
        let spec = spec();
        let states = offline(&spec, "worker-1");
        let lines = status_lines(&spec, "worker-1", &states);
        let probe = probed(&lines);
        let fails =
            |st: &MachineStatus, seed: &Seed, probe: &Facts, want: &str| match status_outcome(
                &spec, seed, probe, st,
            ) {
                Outcome::Failed(why) => assert!(why.contains(want), "{want:?} in {why}"),
                other => panic!("{want}: {other:?}"),
            };
        let st = asked(&spec, "worker-1", &lines, "");
        assert!(matches!(
            status_outcome(&spec, &seed(), &probe, &st),
            Outcome::Ok(_)
        ));
        // A local step at work is no offline matter.
        let local = firstboot::local(Role::Worker)[0];
        let stuck = status_lines(&spec, "worker-1", &[(local, state::RETRYING)]);
        fails(
            &asked(&spec, "worker-1", &stuck, ""),
            &seed(),
            &probed(&stuck),
            "problems offline does not explain",
        );
        // A step done when the probe looked and failed since.
        let failed: Vec<(&str, &str)> = states.iter().map(|(s, _)| (*s, state::FAILED)).collect();
        let later = status_lines(&spec, "worker-1", &failed);
        fails(
            &asked(&spec, "worker-1", &later, ""),
            &seed(),
            &probe,
            "the probe read",
        );
        // Another seed than the machine booted from.
        let other = Seed {
            meta_data: "instance-id: i-2\n".into(),
            ..seed()
        };
        fails(&st, &other, &probe, "instance-id");
        // Not reached, or another key.
        let refused = status::judge(
            &spec,
            spec.machine("worker-1").unwrap(),
            "a:1",
            Err(Refused::HostKeyMismatch),
        );
        fails(&refused, &seed(), &probe, "host key mismatch");
        assert!(matches!(pin_outcome(&refused), Outcome::Ok(_)));
        assert!(matches!(pin_outcome(&st), Outcome::Failed(_)));
    }

    #[test]
    fn a_powered_off_machine_must_be_named_unreachable_in_time() {
        let spec = spec();
        let reached: Vec<MachineStatus> = spec
            .machines
            .iter()
            .map(|m| {
                asked(
                    &spec,
                    &m.name,
                    &status_lines(&spec, &m.name, &offline(&spec, &m.name)),
                    "",
                )
            })
            .collect();
        let report = |machines: Vec<MachineStatus>| StatusReport {
            version: status::JSON_VERSION,
            cluster: spec.cluster_name.clone(),
            healthy: machines.iter().all(|m| m.healthy),
            machines,
        };
        let with_off = |why: Refused| {
            let mut machines = reached.clone();
            let w = spec.machine("worker-1").unwrap();
            machines[2] = status::judge(&spec, w, "172.20.0.4:2222", Err(why));
            report(machines)
        };
        let off = with_off(Refused::Unreachable("No route to host".into()));
        match off_outcome(&off, "worker-1", 4.0) {
            Outcome::Ok(d) => assert!(
                d.ends_with(
                    "naming it: worker-1: unreachable at 172.20.0.4:2222: No route to host"
                ),
                "{d}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            off_outcome(&off, "worker-1", 60.0),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            off_outcome(&off, "master", 4.0),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            off_outcome(&report(reached.clone()), "worker-1", 4.0),
            Outcome::Failed(_)
        ));
        let refused = with_off(Refused::NotAuthorized("Permission denied".into()));
        assert!(matches!(
            off_outcome(&refused, "worker-1", 4.0),
            Outcome::Failed(_)
        ));
    }
}

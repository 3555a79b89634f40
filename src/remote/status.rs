//! `nodeimg status`: what each machine says about itself over SSH (its
//! first-boot steps, cloud-init's result, on the master the nodes and the
//! releases), judged against the profile.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use super::ssh::{Client, Refused, Target};
use crate::firstboot::{self, StatusLine};
use crate::validate::{MachineSpec, Spec};

/// The script each machine runs (a template; see remote/status.sh).
const SCRIPT: &str = include_str!("../../remote/status.sh");

/// The version of `status --json`'s form; raised when a field changes
/// meaning or goes away (new fields may come without it).
pub const JSON_VERSION: u32 = 1;

/// cloud-init's first boot, as its result file tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "errors", rename_all = "kebab-case")]
pub enum CloudInit {
    Done,
    /// Finished, with these errors.
    Failed(Vec<String>),
    /// Started, not finished.
    Running,
    /// No trace of cloud-init having run.
    NotRun,
    /// Its result file could not be read as JSON.
    Unreadable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub step: String,
    pub state: String,
    pub attempts: u32,
    /// When the state was recorded (seconds since 1970; 0: never).
    pub time: u64,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    /// kubectl's STATUS column, e.g. `Ready` or `NotReady`.
    pub status: String,
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseState {
    pub name: String,
    /// helm's STATUS (`deployed`, `failed`, ...); `missing` when helm knows
    /// no such release.
    pub status: String,
}

/// One machine's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineStatus {
    pub machine: String,
    pub role: &'static str,
    /// Where it was asked (`HOST:PORT`).
    pub address: String,
    /// `pinned`: the machine proved it holds the key nodeimg made for it;
    /// `mismatch`: it presented another; `unknown`: no SSH handshake.
    pub host_key: &'static str,
    pub reachable: bool,
    /// Why nothing could be read (unreachable, mismatch, login refused).
    pub error: Option<String>,
    pub hostname: Option<String>,
    pub instance_id: Option<String>,
    pub cloud_init: Option<CloudInit>,
    pub steps: Vec<Step>,
    /// The master only: the nodes kubectl lists.
    pub nodes: Option<Vec<Node>>,
    /// The master only: the profile's releases and helm's word for each.
    pub releases: Option<Vec<ReleaseState>>,
    /// Everything that keeps it from being healthy; empty when healthy.
    pub problems: Vec<String>,
    pub healthy: bool,
}

impl MachineStatus {
    /// `m` at `address` before anything is known of it: not healthy.
    fn unasked(m: &MachineSpec, address: &str) -> MachineStatus {
        MachineStatus {
            machine: m.name.clone(),
            role: m.role.as_str(),
            address: address.to_string(),
            host_key: "unknown",
            reachable: false,
            error: None,
            hostname: None,
            instance_id: None,
            cloud_init: None,
            steps: Vec::new(),
            nodes: None,
            releases: None,
            problems: Vec::new(),
            healthy: false,
        }
    }
}

/// Every asked machine's answer, in the profile's order.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub version: u32,
    pub cluster: String,
    pub healthy: bool,
    pub machines: Vec<MachineStatus>,
}

/// The releases the master installs, for its script.
pub fn expected_releases(spec: &Spec) -> Option<(String, Vec<String>)> {
    let s = spec.staking.as_ref()?;
    if s.legacy.is_some() {
        // The eth2xk8s chart is installed by hand (nodeimg release).
        return None;
    }
    let names = crate::staking::releases(spec, s, &[])
        .into_iter()
        .map(|r| r.name)
        .collect();
    Some((s.namespace.clone(), names))
}

/// The status script for `m`.
pub fn script(spec: &Spec, m: &MachineSpec) -> Result<String> {
    let (namespace, releases) = expected_releases(spec).unwrap_or_default();
    let ctx = json!({
        "status_file": firstboot::STATUS_FILE,
        "role": m.role.as_str(),
        "asks_kubernetes": spec.is_first_master(m),
        "namespace": namespace,
        "releases": releases,
    });
    crate::render::render_own_sh("remote/status.sh", SCRIPT, &ctx)
}

/// Asks every target at once; each gets at most `limit`.
pub fn ask_all(
    spec: &Spec,
    client: &Client,
    targets: &[Target],
    limit: Duration,
) -> Result<StatusReport> {
    let scripts = targets
        .iter()
        .map(|t| {
            let m = spec.machine(&t.machine).expect("targets are machines");
            script(spec, m)
        })
        .collect::<Result<Vec<_>>>()?;
    let answers: Vec<Result<Result<crate::io::process::Finished, Refused>>> =
        std::thread::scope(|scope| {
            let running: Vec<_> = targets
                .iter()
                .zip(&scripts)
                .map(|(t, script)| scope.spawn(move || client.run_script(t, script, limit)))
                .collect();
            running
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(anyhow::anyhow!("internal: a status thread panicked"))
                    })
                })
                .collect()
        });
    let mut machines = Vec::with_capacity(targets.len());
    for (t, answer) in targets.iter().zip(answers) {
        let m = spec.machine(&t.machine).expect("targets are machines");
        let answer = answer?.map(|f| {
            (
                f.status.map(|s| s.code()),
                String::from_utf8_lossy(&f.stdout).into_owned(),
                String::from_utf8_lossy(&f.stderr).into_owned(),
            )
        });
        machines.push(judge(spec, m, &t.to_string(), answer));
    }
    Ok(StatusReport {
        version: JSON_VERSION,
        cluster: spec.cluster_name.clone(),
        healthy: machines.iter().all(|m| m.healthy),
        machines,
    })
}

/// What the status script printed, read line by line.
#[derive(Default)]
struct Answer {
    hostname: Option<String>,
    instance_id: Option<String>,
    cloud_init: Option<CloudInit>,
    steps: Vec<Step>,
    no_status_file: bool,
    nodes: Vec<Node>,
    releases: Vec<ReleaseState>,
    /// Why Kubernetes could not be asked (the master only).
    no_kubernetes: Option<String>,
    /// The script reached its last line.
    complete: bool,
}

fn read_answer(out: &str) -> Answer {
    let mut a = Answer::default();
    for line in out.lines() {
        // What a machine says reaches a terminal: no control characters
        // (escape sequences), and no line longer than a status line's.
        let line = printable(line);
        let (key, value) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match key {
            "hostname" => a.hostname = Some(value.to_string()),
            "instance-id" if value != "-" => a.instance_id = Some(value.to_string()),
            "cloud-init-result" => a.cloud_init = Some(cloud_init(value)),
            "step" => a.steps.extend(StatusLine::parse(value).map(|l| Step {
                step: l.step,
                state: l.state,
                attempts: l.attempts,
                time: l.time,
                message: l.message,
            })),
            "no-status-file" => a.no_status_file = true,
            "node" => {
                let mut words = value.split_whitespace();
                if let (Some(name), Some(status)) = (words.next(), words.next()) {
                    a.nodes.push(Node {
                        name: name.to_string(),
                        status: status.to_string(),
                        ready: status.split(',').next() == Some("Ready"),
                    });
                }
            }
            "release" => {
                let (name, status) = value.split_once(' ').unwrap_or((value, ""));
                let status = match status.trim() {
                    "" => "missing",
                    s => s,
                };
                a.releases.push(ReleaseState {
                    name: name.to_string(),
                    status: status.to_string(),
                });
            }
            "no-kubernetes" => a.no_kubernetes = Some(value.to_string()),
            "end" => a.complete = true,
            _ => {}
        }
    }
    a
}

/// The status of a machine nothing could be read from.
fn refused(spec: &Spec, m: &MachineSpec, address: &str, why: &Refused) -> MachineStatus {
    let (host_key, reachable, problem) = match why {
        Refused::HostKeyMismatch => (
            "mismatch",
            true,
            format!(
                "host key does not match the one nodeimg made for {}: reprovisioned by someone else, or a different machine at that address; nothing it says is trusted",
                m.name
            ),
        ),
        Refused::Unreachable(why) => ("unknown", false, format!("unreachable at {address}: {why}")),
        Refused::NotAuthorized(why) => (
            "pinned",
            true,
            format!(
                "sshd refused the login as {}: {why} (give --identity or add the key to your ssh-agent)",
                spec.ssh.user
            ),
        ),
        Refused::Ssh(why) => ("unknown", false, format!("ssh failed: {why}")),
    };
    MachineStatus {
        host_key,
        reachable,
        error: Some(problem.clone()),
        problems: vec![problem],
        ..MachineStatus::unasked(m, address)
    }
}

/// What a machine's answer (exit status, facts, complaints) means.
pub fn judge(
    spec: &Spec,
    m: &MachineSpec,
    address: &str,
    answer: Result<(Option<Option<i32>>, String, String), Refused>,
) -> MachineStatus {
    let (code, out, err) = match answer {
        Err(why) => return refused(spec, m, address, &why),
        Ok(answer) => answer,
    };
    let a = read_answer(&out);
    let mut problems = Vec::new();
    if !a.complete {
        let said = printable(err.lines().last().unwrap_or("").trim());
        let how = match code {
            None => "no whole answer within the timeout".to_string(),
            Some(Some(c)) => format!("exit status {c}"),
            Some(None) => "ended by a signal".to_string(),
        };
        problems.push(format!(
            "its report was cut short ({how}){}",
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ));
    }
    if let Some(h) = a.hostname.as_deref().filter(|h| *h != m.name) {
        problems.push(format!("it calls itself {h:?}, not {}", m.name));
    }
    problems.extend(cloud_init_problem(a.cloud_init.as_ref()));
    problems.extend(step_problems(spec, m, &a));
    // The first master answers for the cluster: its nodes and the releases
    // it installed.
    let kubernetes = spec.is_first_master(m) && a.complete;
    if kubernetes {
        problems.extend(kubernetes_problems(spec, &a));
    }
    let asked = kubernetes && a.no_kubernetes.is_none();
    MachineStatus {
        host_key: "pinned",
        reachable: true,
        hostname: a.hostname,
        instance_id: a.instance_id,
        cloud_init: a.cloud_init,
        steps: a.steps,
        nodes: asked.then_some(a.nodes),
        releases: asked.then_some(a.releases),
        healthy: problems.is_empty(),
        problems,
        ..MachineStatus::unasked(m, address)
    }
}

fn cloud_init_problem(c: Option<&CloudInit>) -> Option<String> {
    match c? {
        CloudInit::Done => None,
        CloudInit::Failed(errors) => Some(format!(
            "cloud-init finished with errors: {}",
            errors.join("; ")
        )),
        CloudInit::Running => Some("cloud-init has not finished".into()),
        CloudInit::NotRun => Some("cloud-init has not run from a seed".into()),
        CloudInit::Unreadable => Some("cloud-init's result cannot be read".into()),
    }
}

/// Every step of the machine must be settled (done or skipped).
fn step_problems(spec: &Spec, m: &MachineSpec, a: &Answer) -> Vec<String> {
    if a.no_status_file {
        return vec![format!(
            "it has no {}: not a machine nodeimg built, or its first boot has not begun",
            firstboot::STATUS_FILE
        )];
    }
    let mut problems = Vec::new();
    for want in firstboot::all(spec.duty(m)) {
        match a.steps.iter().find(|s| s.step == want) {
            Some(s) if firstboot::SETTLED.contains(&s.state.as_str()) => {}
            Some(s) => problems.push(step_problem(s)),
            None if a.complete => problems.push(format!("step {want} is not in its status file")),
            None => {}
        }
    }
    problems
}

/// The problem of a step that has not settled.
pub(crate) fn step_problem(s: &Step) -> String {
    format!(
        "step {} is {}{}",
        s.step,
        s.state,
        s.message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    )
}

/// The problem of a master whose Kubernetes could not be asked.
pub(crate) fn no_kubernetes_problem(why: &str) -> String {
    format!("Kubernetes cannot be asked: {why}")
}

/// The master's view: every Kubernetes machine a Ready node, no stranger,
/// every release deployed.
fn kubernetes_problems(spec: &Spec, a: &Answer) -> Vec<String> {
    if let Some(why) = &a.no_kubernetes {
        return vec![no_kubernetes_problem(why)];
    }
    let mut problems = Vec::new();
    for k in spec.machines.iter().filter(|k| k.role.is_kubernetes()) {
        match a.nodes.iter().find(|n| n.name == k.name) {
            Some(n) if n.ready => {}
            Some(n) => problems.push(format!("node {} is {}", n.name, n.status)),
            None => problems.push(format!("{} is not a node of the cluster", k.name)),
        }
    }
    for n in &a.nodes {
        if spec.machine(&n.name).is_none() {
            problems.push(format!("node {} is not a machine of the profile", n.name));
        }
    }
    for r in &a.releases {
        if r.status != "deployed" {
            problems.push(format!("release {} is {}", r.name, r.status));
        }
    }
    problems
}

/// The longest line of a machine's answer that is read whole (result.json
/// with its errors is the longest expected).
const MAX_LINE: usize = 16 * 1024;

/// `line` made safe to show, cut at [`MAX_LINE`].
fn printable(line: &str) -> String {
    super::printable(line, MAX_LINE)
}

/// cloud-init's result.json (`{"v1": {"errors": [...]}}`) or the script's
/// word for its absence.
fn cloud_init(value: &str) -> CloudInit {
    match value {
        "running" => return CloudInit::Running,
        "none" => return CloudInit::NotRun,
        _ => {}
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(value) else {
        return CloudInit::Unreadable;
    };
    match v["v1"]["errors"].as_array() {
        Some(errors) if errors.is_empty() => CloudInit::Done,
        Some(errors) => CloudInit::Failed(
            errors
                .iter()
                // Decoded JSON may hold escapes again (\u001b).
                .map(|e| printable(&e.as_str().map_or_else(|| e.to_string(), str::to_string)))
                .collect(),
        ),
        None => CloudInit::Unreadable,
    }
}

impl StatusReport {
    /// The table for a terminal: a line a machine, then each problem, then
    /// the summary.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "MACHINE".to_string(),
            "ADDRESS".into(),
            "HOST KEY".into(),
            "CLOUD-INIT".into(),
            "STEPS".into(),
            "KUBERNETES".into(),
        ]];
        for m in &self.machines {
            let cloud = match &m.cloud_init {
                None => "-".to_string(),
                Some(CloudInit::Done) => "done".into(),
                Some(CloudInit::Failed(_)) => "errors".into(),
                Some(CloudInit::Running) => "running".into(),
                Some(CloudInit::NotRun) => "not run".into(),
                Some(CloudInit::Unreadable) => "unreadable".into(),
            };
            let steps = if m.steps.is_empty() {
                "-".to_string()
            } else {
                let settled = m
                    .steps
                    .iter()
                    .filter(|s| firstboot::SETTLED.contains(&s.state.as_str()))
                    .count();
                format!("{settled}/{} done", m.steps.len())
            };
            let kubernetes = match (&m.nodes, &m.releases) {
                (Some(nodes), Some(releases)) => format!(
                    "{}/{} nodes Ready, {}/{} releases deployed",
                    nodes.iter().filter(|n| n.ready).count(),
                    nodes.len(),
                    releases.iter().filter(|r| r.status == "deployed").count(),
                    releases.len()
                ),
                _ => "-".into(),
            };
            rows.push([
                m.machine.clone(),
                m.address.clone(),
                m.host_key.to_string(),
                cloud,
                steps,
                kubernetes,
            ]);
        }
        let mut widths = [0usize; 6];
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        for m in &self.machines {
            for p in &m.problems {
                out.push_str(&format!("  {}: {p}\n", m.machine));
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// One line: how many machines are healthy, and which are not.
    pub fn summary(&self) -> String {
        let bad: Vec<&str> = self
            .machines
            .iter()
            .filter(|m| !m.healthy)
            .map(|m| m.machine.as_str())
            .collect();
        let n = self.machines.len();
        if bad.is_empty() {
            format!("{n} of {n} machines healthy")
        } else {
            format!(
                "{} of {n} machines healthy; not: {}",
                n - bad.len(),
                bad.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Role;

    fn spec() -> Spec {
        crate::checked_spec(include_str!("../../profiles/tutorial.yaml"))
    }

    fn report_of(role: Role, steps: &[(&str, &str)], extra: &str) -> String {
        let mut out = String::from(
            "hostname NAME\ninstance-id i-1\ncloud-init-result {\"v1\": {\"errors\": []}}\n",
        );
        for s in firstboot::all(role) {
            let state = steps
                .iter()
                .find(|(n, _)| *n == s)
                .map_or(firstboot::state::DONE, |(_, st)| st);
            out.push_str(&format!("step {s} {state} 1 1764780000 -\n"));
        }
        out.push_str(extra);
        out.push_str("end -\n");
        out
    }

    #[test]
    fn a_machine_with_every_step_done_is_healthy() {
        let spec = spec();
        let worker = spec.machine("worker-1").unwrap();
        let out = report_of(Role::Worker, &[], "").replace("NAME", "worker-1");
        let st = judge(
            &spec,
            worker,
            "a:1",
            Ok((Some(Some(0)), out, String::new())),
        );
        assert!(st.healthy, "{:?}", st.problems);
        assert_eq!(st.cloud_init, Some(CloudInit::Done));
        assert_eq!(st.steps.len(), firstboot::all(Role::Worker).len());
    }

    #[test]
    fn each_reason_to_worry_is_named() {
        let spec = spec();
        let master = spec.machine("master").unwrap();
        let nodes = "node master Ready <none> 5d v1.32.3\nnode worker-1 NotReady <none> 5d v1.32.3\nnode stranger Ready <none> 1d v1.32.3\n";
        let out = report_of(
            Role::Master,
            &[("apt-update", firstboot::state::RETRYING)],
            nodes,
        )
        .replace("NAME", "master")
        .replace(
            "\"errors\": []",
            "\"errors\": [\"('scripts_user', RuntimeError())\"]",
        )
        .replace(
            "step apt-update retrying 1 1764780000 -",
            "step apt-update retrying 4 1764780000 no package index reachable",
        );
        let st = judge(
            &spec,
            master,
            "a:1",
            Ok((Some(Some(0)), out, String::new())),
        );
        assert!(!st.healthy);
        let all = st.problems.join("\n");
        for want in [
            "cloud-init finished with errors: ('scripts_user', RuntimeError())",
            "step apt-update is retrying: no package index reachable",
            "node worker-1 is NotReady",
            "node stranger is not a machine of the profile",
        ] {
            assert!(all.contains(want), "{want:?} in\n{all}");
        }
        // A report that stops midway is not taken for a whole one.
        let cut = report_of(Role::Worker, &[], "").replace("end -\n", "");
        let st = judge(
            &spec,
            spec.machine("worker-1").unwrap(),
            "a:1",
            Ok((Some(Some(1)), cut, "sh: broken pipe\n".into())),
        );
        assert!(
            st.problems
                .iter()
                .any(|p| p.contains("cut short (exit status 1): sh: broken pipe")),
            "{:?}",
            st.problems
        );
    }

    #[test]
    fn a_refused_connection_is_named_and_trusts_nothing() {
        let spec = spec();
        let w = spec.machine("worker-1").unwrap();
        let st = judge(&spec, w, "10.0.0.9:22", Err(Refused::HostKeyMismatch));
        assert_eq!((st.host_key, st.healthy), ("mismatch", false));
        assert!(st.problems[0].contains("does not match the one nodeimg made for worker-1"));
        let st = judge(
            &spec,
            w,
            "10.0.0.9:22",
            Err(Refused::Unreachable("Connection refused".into())),
        );
        assert_eq!((st.reachable, st.host_key), (false, "unknown"));
        assert_eq!(
            st.problems,
            ["unreachable at 10.0.0.9:22: Connection refused"]
        );
    }
}

//! Boot benchmark (run by scripts/bench-boot): in one run, three bare
//! guests at once (empty seeds with static addresses) and the tutorial
//! cluster's three guests at once (its real seeds), so that both share the
//! cores alike and the ratio is the cost of nodeimg's first boot. Per
//! machine, the uptime at which cloud-init was done; and where the cluster's
//! extra time goes: cloud-init's module times (`cloud-init analyze blame`)
//! on the cluster's machines against the bare guests', and the parts of
//! `nodeimg-setup local` from its journal lines. Prints Markdown.
//!
//!   cargo run --release --example bench_boot -- GUEST_IMAGE [PROFILE]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nodeimg::boottest::{self, Facts, Lab};
use nodeimg::Seed;

/// Uptime (s) at which the probe began, i.e. cloud-init was done.
fn done_at(f: &Facts) -> Option<f64> {
    f.one("begin")?.split("uptime=").nth(1)?.parse().ok()
}

/// cloud-init's module times, from `cloud-init analyze blame` lines
/// (`     01.23400s (modules-final/config-scripts_user)`).
fn module_times(f: &Facts) -> BTreeMap<String, f64> {
    let mut times = BTreeMap::new();
    for line in f.all("ci-blame") {
        let line = line.trim();
        let Some((secs, module)) = line.split_once("s (") else {
            continue;
        };
        if let Ok(t) = secs.parse::<f64>() {
            *times
                .entry(module.trim_end_matches(')').to_string())
                .or_default() += t;
        }
    }
    times
}

/// The journal lines the probe reported (`[   51.234567] host
/// nodeimg-setup[812]: firewall: done`): time since boot, sender, message.
fn journal(f: &Facts) -> impl Iterator<Item = (f64, &str, &str)> {
    f.all("setup-log").iter().filter_map(|l| {
        let (time, rest) = l.trim_start().strip_prefix('[')?.split_once(']')?;
        let (sender, message) = rest.trim_start().split_once(' ')?.1.split_once(": ")?;
        let sender = sender.split('[').next()?;
        Some((time.trim().parse().ok()?, sender, message))
    })
}

/// The local run's parts from nodeimg-setup's journal lines
/// (`[   51.234567] host nodeimg-setup[812]: firewall: done`): each step from
/// the end of the one before (the first from the run's start line), and the
/// run's end (enabling and starting the online service) as `(run end)`.
fn step_times(f: &Facts) -> Vec<(String, f64)> {
    let lines: Vec<(f64, &str)> = journal(f)
        .filter(|(_, who, _)| *who == "nodeimg-setup")
        .map(|(at, _, message)| (at, message))
        .collect();
    let Some(start) = lines
        .iter()
        .position(|(_, m)| m.starts_with("local steps: "))
    else {
        return Vec::new();
    };
    let mut times = Vec::new();
    for pair in lines[start..].windows(2) {
        let ((before, _), (at, message)) = (pair[0], pair[1]);
        let finished = message.starts_with("local steps finished");
        let name = if finished {
            "(run end)"
        } else {
            message.split(':').next().unwrap_or(message)
        };
        times.push((name.to_string(), at - before));
        if finished {
            break;
        }
    }
    times
}

/// Vendor-data for a bare guest: when cloud-init is done, report the uptime
/// and cloud-init's module times, as the probe does on the cluster.
const MARK_DONE: &str = r#"#!/bin/sh
cat > /usr/local/sbin/bench-done <<'EOF'
#!/bin/sh
tty=/dev/ttyS0
echo "@@P@@ begin bare uptime=$(cut -d' ' -f1 /proc/uptime)" > $tty
cloud-init analyze blame 2>&1 | while IFS= read -r l; do echo "@@P@@ ci-blame $l"; done > $tty
echo "@@P@@ end bare" > $tty
EOF
chmod 755 /usr/local/sbin/bench-done
cat > /etc/systemd/system/bench-done.service <<'EOF'
[Unit]
After=cloud-final.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/bench-done
EOF
systemctl daemon-reload
systemctl start --no-block bench-done.service
"#;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let image = PathBuf::from(
        args.next()
            .context("usage: bench_boot GUEST_IMAGE [PROFILE]")?,
    );
    let profile = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "profiles/tutorial.yaml".into()),
    );
    let work = tempfile::tempdir()?;
    let stop = AtomicBool::new(false);
    let timeout = Duration::from_secs(1800);
    let (accel, why) = boottest::detect_accel();

    // Three bare guests at once: an empty cloud-config each, with a static
    // address (without one, the boot waits for DHCP).
    let mut lab = Lab::new(&work.path().join("bare"), accel, 768)?;
    let mut bare_names = Vec::new();
    let t0 = Instant::now();
    for i in 1..=3 {
        let name = format!("bare-{i}");
        let mac = format!("52:54:00:00:00:0{i}");
        let seed = Seed {
            user_data: "#cloud-config\n{}\n".into(),
            meta_data: format!("instance-id: bench-{name}\nlocal-hostname: {name}\n"),
            network_config: format!(
                "version: 2\nethernets:\n  lan0:\n    match: {{macaddress: \"{mac}\"}}\n    addresses: [172.20.10.{}/20]\n",
                90 + i
            ),
        };
        let iso = work.path().join(format!("{name}.iso"));
        std::fs::write(
            &iso,
            nodeimg::iso::seed_iso_with(&seed, &[("vendor-data", MARK_DONE)])?,
        )?;
        let disk = work.path().join(format!("{name}.qcow2"));
        boottest::create_overlay(&image, &disk)?;
        lab.start(&name, &disk, Some(&iso), &mac)?;
        bare_names.push(name);
    }
    let bare_facts = lab.wait_reports(&bare_names, t0 + timeout, &stop);
    let bare_wall = t0.elapsed().as_secs_f64();
    lab.shutdown();

    // The cluster: every machine boots its real seed (plus the probe, which
    // reports the same module times).
    let opts = nodeimg::BuildOptions {
        out_dir: Some(work.path().join("out")),
        secrets: Some(work.path().join("bench.secrets.yaml")),
        ..Default::default()
    };
    let summary = nodeimg::build(&profile, &opts)?;
    let mut lab = Lab::new(&work.path().join("cluster"), accel, 768)?;
    lab.probe = nodeimg::boottest::ProbeSettings::new(&summary.spec, &summary.secrets, None);
    lab.probe.timings = true;
    let t0 = Instant::now();
    for name in &summary.machines {
        let seed = nodeimg::read_seed(&summary.out_dir.join(name))?;
        let m = summary.spec.machine(name).context("machine")?;
        lab.boot_seed(&summary.spec, m, &seed, &image)?;
    }
    let cluster_facts = lab.wait_reports(&summary.machines, t0 + timeout, &stop);
    let cluster_wall = t0.elapsed().as_secs_f64();
    lab.shutdown();
    // A fast first boot counts only if it did its work: boot-test's checks
    // (the figures are printed either way; a failure ends the run in error).
    let mut failed = Vec::new();
    for (name, f) in &cluster_facts {
        let m = summary.spec.machine(name).context("machine")?;
        let seed = nodeimg::read_seed(&summary.out_dir.join(name))?;
        let result = boottest::evaluate(
            &summary.spec,
            &summary.secrets,
            &seed,
            m,
            f,
            boottest::Boot::First,
        );
        for (check, outcome) in &result.checks {
            if !outcome.passed() {
                failed.push(format!("{name} {check}: {outcome:?}"));
            }
        }
    }

    let done = |facts: &BTreeMap<String, Facts>| -> Result<Vec<(String, f64)>> {
        facts
            .iter()
            .map(|(n, f)| {
                Ok((
                    n.clone(),
                    done_at(f).with_context(|| format!("{n} never reported"))?,
                ))
            })
            .collect()
    };
    let (bare_done, cluster_done) = (done(&bare_facts)?, done(&cluster_facts)?);
    let slowest = |d: &[(String, f64)]| d.iter().map(|(_, t)| *t).fold(0.0, f64::max);
    let each = |d: &[(String, f64)]| {
        d.iter()
            .map(|(n, t)| format!("{n} {t:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (bare_max, cluster_max) = (slowest(&bare_done), slowest(&cluster_done));

    println!(
        "accel: {accel:?} ({why}); {} cores; guest uptime at cloud-init done, in seconds",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| boot (3 guests at once) | cloud-init done, each (s) | slowest (s) | ratio |");
    println!("|---|---|---:|---:|");
    println!(
        "| bare guests, empty seeds | {} | {bare_max:.0} | 1.0x |",
        each(&bare_done)
    );
    println!(
        "| tutorial cluster, nodeimg seeds | {} | {cluster_max:.0} | {:.1}x |",
        each(&cluster_done),
        cluster_max / bare_max
    );
    println!();
    println!(
        "Wall time until every guest reported: bare {bare_wall:.0} s, cluster {cluster_wall:.0} s."
    );

    // Where the difference goes: each module's mean time on the cluster's
    // machines minus its mean on the bare guests.
    let mean = |facts: &BTreeMap<String, Facts>| {
        let mut sum: BTreeMap<String, f64> = BTreeMap::new();
        for f in facts.values() {
            for (module, t) in module_times(f) {
                *sum.entry(module).or_default() += t;
            }
        }
        let n = facts.len().max(1) as f64;
        sum.into_iter()
            .map(|(m, t)| (m, t / n))
            .collect::<BTreeMap<_, _>>()
    };
    let (bare_mean, cluster_mean) = (mean(&bare_facts), mean(&cluster_facts));
    let mut extra: Vec<(String, f64, f64)> = cluster_mean
        .iter()
        .map(|(m, t)| (m.clone(), *t, bare_mean.get(m).copied().unwrap_or(0.0)))
        .collect();
    extra.sort_by(|a, b| (b.1 - b.2).total_cmp(&(a.1 - a.2)));
    println!();
    println!("| cloud-init module (mean per machine) | cluster (s) | bare (s) | extra (s) |");
    println!("|---|---:|---:|---:|");
    for (module, c, b) in extra.iter().take(5) {
        println!("| {module} | {c:.1} | {b:.1} | {:.1} |", c - b);
    }
    println!();
    println!("`nodeimg-setup local` (from its journal lines; each part from the end of the one before), longest first:");
    for (name, f) in &cluster_facts {
        let mut steps = step_times(f);
        steps.sort_by(|a, b| b.1.total_cmp(&a.1));
        let steps: Vec<String> = steps.iter().map(|(s, t)| format!("{s} {t:.1} s")).collect();
        println!("- {name}: {}", steps.join(", "));
    }
    // Every journal line from the local run's start, systemd's too, for a
    // closer look.
    if let Some(path) = std::env::var_os("BENCH_BOOT_JOURNAL") {
        let mut text = String::new();
        for (name, f) in &cluster_facts {
            let mut inside = false;
            for (at, sender, message) in journal(f) {
                inside |= sender == "nodeimg-setup" && message.starts_with("local steps: ");
                if inside {
                    text.push_str(&format!("{name} {at:9.3} {sender}: {message}\n"));
                }
            }
        }
        std::fs::write(&path, text).with_context(|| format!("writing {path:?}"))?;
    }
    anyhow::ensure!(
        failed.is_empty(),
        "the cluster booted but failed boot-test checks:\n{}",
        failed.join("\n")
    );
    Ok(())
}

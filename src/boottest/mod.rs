//! `nodeimg boot-test`: boot every machine of a profile in QEMU on a private
//! virtual network and check, from inside the guests, that each seed did
//! what it promises.
//!
//! Isolation: the machines share one `vde_switch` on a unix socket in a
//! private temporary directory. The switch has no uplink, QEMU gets no user
//! networking, so the guests reach nothing but each other.
//!
//! Facts are read from inside the guests by a probe that boot-test adds to
//! each machine's test seed as `vendor-data` (cloud-init runs it once and it
//! installs the probe as a service that reports on every boot); the
//! machine's user-data, meta-data and network-config are the built ones,
//! byte for byte. The probe prints `@@P@@ KEY VALUE` lines to the serial
//! console once cloud-init is done; the checks compare them with the
//! profile, the secrets and the rendered files.
//!
//! Layout: `lab` runs the machines (QEMU, the switch, overlays, the power
//! button), `probe` makes the test seed and the probe's settings, `facts`
//! parses what the probe printed, `checks` holds one function a check,
//! `report` the table, `window` and `daytwo` run nodeimg status and diff
//! against the booted machines from the switch; this file runs a boot test
//! end to end.

mod checks;
mod daytwo;
mod facts;
mod lab;
mod probe;
mod report;
mod window;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::render::Seed;
use crate::secrets::Secrets;
use crate::validate::Spec;

use checks::every_check;
pub use checks::{checks, evaluate, Boot, MachineResult, Outcome};
pub use daytwo::change_script;
use daytwo::DayTwo;
pub use facts::Facts;
pub use lab::{create_overlay, detect_accel, firmware, image_format, test_mac, Accel, Lab};
pub use probe::{probe_vendor_data, read_login_key, ssh_target, ProbeSettings, PROBE};
pub use report::BootReport;

/// Options of `nodeimg boot-test`.
#[derive(Debug, Clone)]
pub struct BootOptions {
    pub image: PathBuf,
    pub timeout: Duration,
    pub memory_mib: u32,
    pub accel: Option<Accel>,
    pub keep: bool,
    /// After the cluster is up, destroy this machine and bring it back
    /// from a rebuilt seed.
    pub reprovision: Option<String>,
    /// Then shut these machines down (power button) and boot them again from
    /// their disks: each must come back as configured, cloud-init off.
    pub reboot: Vec<String>,
    /// Boot the disk images of this build directory (`build --images`)
    /// instead of `image` with seed ISOs.
    pub images_from: Option<PathBuf>,
    /// A throwaway private key authorized in the profile: each probe logs in
    /// with it to the next machine (it is copied into the test machines).
    pub login_key: Option<PathBuf>,
}

/// Boots every machine of a built profile and checks it. `seeds` are the
/// rendered seeds (as `build` wrote them); `dir` receives the run's files.
/// With `opts.reprovision`, once the cluster has reported, that machine is
/// powered off, its disk destroyed, its seed rebuilt by `rebuild` and booted
/// on a fresh overlay while the others keep running; it is checked again.
pub fn run(
    spec: &Spec,
    secrets: &Secrets,
    seeds: &[(String, Seed)],
    dir: &Path,
    opts: &BootOptions,
    rebuild: &dyn Fn(&str) -> Result<Seed>,
) -> Result<BootReport> {
    let (accel, accel_reason) = match opts.accel {
        Some(a) => (a, "chosen with --accel".to_string()),
        None => detect_accel(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    // The build's own interrupt watcher leaves these signals to us.
    let _graceful = crate::io::interrupt::Graceful::enter();
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))
        .context("cannot handle Ctrl-C")?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .context("cannot handle SIGTERM")?;

    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let mut lab = Lab::new(dir, accel, opts.memory_mib)?;
    let login_key = match &opts.login_key {
        Some(path) => Some(read_login_key(path, spec)?),
        None => None,
    };
    lab.probe = ProbeSettings::new(spec, secrets, login_key);
    let mut names = Vec::new();
    for (name, seed) in seeds {
        let m = spec
            .machine(name)
            .context("internal: seed of an unknown machine")?;
        lab.boot(spec, m, seed, opts)?;
        names.push(name.clone());
    }
    let facts = lab.wait_reports(&names, deadline, &stop);
    let mut machines = Vec::new();
    for (name, seed) in seeds {
        let m = spec.machine(name).context("internal: unknown machine")?;
        machines.push(evaluate(spec, secrets, seed, m, &facts[name], Boot::First));
    }
    let mut all_reported = facts.values().all(|f| f.complete);
    // Day two needs a login: only with a login key, on a cluster that came up.
    let day_two = match &opts.login_key {
        Some(key) if all_reported && !stop.load(Ordering::SeqCst) => {
            let opened = DayTwo::open(
                spec,
                secrets,
                &lab.switch_socket(),
                &dir.join("day-two.plug.log"),
                key,
            );
            match opened {
                Ok(d) => {
                    d.check_cluster(seeds, &facts, &mut machines);
                    Some(d)
                }
                Err(e) => {
                    let failed = Outcome::Failed(format!("the day-two checks cannot run: {e:#}"));
                    for m in &mut machines {
                        for c in daytwo::CHECKS {
                            m.checks.insert(c.to_string(), failed.clone());
                        }
                    }
                    None
                }
            }
        }
        _ => None,
    };

    let mut reprovisioned: Option<(String, Seed)> = None;
    if let Some(name) = &opts.reprovision {
        if all_reported && !stop.load(Ordering::SeqCst) {
            let m = spec
                .machine(name)
                .context("--reprovision: no such machine")?;
            // The machine dies: power off and destroy its disk.
            lab.stop(name);
            let off = day_two.as_ref().map(|d| d.check_off(name));
            fs::remove_file(dir.join(format!("{name}.qcow2")))?;
            let _ = lab.keep_serial_log(name, "first-boot");
            let seed = rebuild(name)?;
            lab.boot(spec, m, &seed, opts)?;
            let facts = lab.wait_reports(std::slice::from_ref(name), deadline, &stop);
            all_reported &= facts[name].complete;
            let mut result = evaluate(spec, secrets, &seed, m, &facts[name], Boot::First);
            if let (Some(d), Some(off), true) = (&day_two, off, facts[name].complete) {
                let back = d.check_back(name, &seed, &facts[name], off);
                for (c, outcome) in daytwo::CHECKS.iter().zip(back) {
                    result.checks.insert(c.to_string(), outcome);
                }
            }
            let others_down: Vec<&String> = names
                .iter()
                .filter(|n| *n != name && !lab.running(n))
                .collect();
            if !others_down.is_empty() {
                result.checks.insert(
                    "peers".into(),
                    Outcome::Failed(format!("{others_down:?} stopped during the reprovisioning")),
                );
            }
            result.name = format!("{name} (reprovisioned)");
            machines.push(result);
            reprovisioned = Some((name.clone(), seed));
        }
    }
    if !opts.reboot.is_empty() && all_reported && !stop.load(Ordering::SeqCst) {
        let seeds: BTreeMap<&str, &Seed> = seeds
            .iter()
            .map(|(name, seed)| (name.as_str(), seed))
            .chain(
                reprovisioned
                    .iter()
                    .map(|(name, seed)| (name.as_str(), seed)),
            )
            .collect();
        machines.extend(reboot_and_check(
            &mut lab,
            spec,
            secrets,
            &seeds,
            &opts.reboot,
            deadline,
            &stop,
        )?);
    }
    // The day-two namespace's plug leaves the switch before the switch goes.
    drop(day_two);
    lab.shutdown();
    let interrupted = stop.load(Ordering::SeqCst);
    let timed_out = !interrupted && Instant::now() >= deadline;
    if !opts.keep {
        for name in &names {
            let _ = fs::remove_file(dir.join(format!("{name}.qcow2")));
            let _ = fs::remove_file(dir.join(format!("{name}.test-seed.iso")));
            let _ = fs::remove_file(dir.join(format!("{name}.disk.img")));
        }
    }
    Ok(BootReport {
        accel,
        accel_reason,
        seconds: started.elapsed().as_secs_f64(),
        timed_out,
        interrupted,
        machines,
        logs: dir.to_path_buf(),
    })
}

/// How long a machine may take to power off after its power button.
const POWER_OFF_PATIENCE: Duration = Duration::from_secs(180);

/// Shuts each of `names` down with its power button, boots it again from
/// its disk and checks it as a later boot (`NAME (rebooted)`).
fn reboot_and_check(
    lab: &mut Lab,
    spec: &Spec,
    secrets: &Secrets,
    seeds: &BTreeMap<&str, &Seed>,
    names: &[String],
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Vec<MachineResult>> {
    let mut results = Vec::new();
    let mut rebooted = Vec::new();
    for name in names {
        let m = spec.machine(name).context("--reboot: no such machine")?;
        match lab.reboot(name, POWER_OFF_PATIENCE) {
            Ok(()) => rebooted.push(m),
            Err(e) => results.push(MachineResult {
                name: format!("{name} (rebooted)"),
                role: m.role,
                checks: every_check(Outcome::Failed(format!("{e:#}"))),
            }),
        }
    }
    let names: Vec<String> = rebooted.iter().map(|m| m.name.clone()).collect();
    let facts = lab.wait_reports(&names, deadline, stop);
    for m in rebooted {
        let seed = seeds
            .get(m.name.as_str())
            .context("internal: rebooted a machine without a seed")?;
        let mut result = evaluate(spec, secrets, seed, m, &facts[&m.name], Boot::Later);
        result.name = format!("{} (rebooted)", m.name);
        results.push(result);
    }
    Ok(results)
}

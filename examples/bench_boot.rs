//! Boot benchmark (run by scripts/bench-boot): in one run, the time from
//! power-on to "cloud-init done" on every machine of the tutorial cluster
//! (its real seeds, 3 VMs at once), and on one bare guest with an empty
//! seed, so that the cost of nodeimg's first boot over a bare boot is a
//! ratio. Prints a Markdown table.
//!
//!   cargo run --release --example bench_boot -- GUEST_IMAGE [PROFILE]

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

/// Vendor-data that only reports when cloud-init is done.
const MARK_DONE: &str = "#!/bin/sh\n\
cat > /etc/systemd/system/bench-done.service <<'EOF'\n\
[Unit]\nAfter=cloud-final.service\n[Service]\nType=oneshot\n\
ExecStart=/bin/sh -c 'echo \"@@P@@ begin bare uptime=$(cut -d\" \" -f1 /proc/uptime)\" > /dev/ttyS0; echo \"@@P@@ end bare\" > /dev/ttyS0'\n\
EOF\n\
systemctl daemon-reload\nsystemctl start --no-block bench-done.service\n";

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

    // The cluster: every machine boots its real seed (plus the probe).
    let secrets = work.path().join("bench.secrets.yaml");
    let opts = nodeimg::BuildOptions {
        out_dir: Some(work.path().join("out")),
        secrets: Some(secrets.clone()),
        ..Default::default()
    };
    let summary = nodeimg::build(&profile, &opts)?;
    let (accel, why) = boottest::detect_accel();
    let mut lab = Lab::new(&work.path().join("cluster"), accel, 768)?;
    let t0 = Instant::now();
    for name in &summary.machines {
        let seed = nodeimg::read_seed(&summary.out_dir.join(name))?;
        let m = summary.spec.machine(name).context("machine")?;
        lab.boot_seed(&summary.spec, m, &seed, &image)?;
    }
    let facts = lab.wait_reports(&summary.machines, t0 + timeout, &stop);
    let cluster_wall = t0.elapsed().as_secs_f64();
    lab.shutdown();
    let mut cluster_done: Vec<(String, f64)> = Vec::new();
    for (name, f) in &facts {
        cluster_done.push((
            name.clone(),
            done_at(f).with_context(|| format!("{name} never reported"))?,
        ));
    }
    let cluster_max = cluster_done.iter().map(|(_, t)| *t).fold(0.0, f64::max);

    // One bare guest: an empty cloud-config. It gets a static address like
    // the cluster's machines: without one, the boot waits for DHCP.
    let bare = Seed {
        user_data: "#cloud-config\n{}\n".into(),
        meta_data: "instance-id: bench-bare\nlocal-hostname: bare\n".into(),
        network_config: "version: 2\nethernets:\n  lan0:\n    match: {macaddress: \"52:54:00:00:00:01\"}\n    addresses: [172.20.10.99/20]\n".into(),
    };
    let mut lab = Lab::new(&work.path().join("bare"), accel, 768)?;
    let iso = work.path().join("bare.iso");
    std::fs::write(
        &iso,
        nodeimg::iso::seed_iso_with(&bare, &[("vendor-data", MARK_DONE)])?,
    )?;
    let disk = work.path().join("bare.qcow2");
    boottest::create_overlay(&image, &disk)?;
    let t1 = Instant::now();
    lab.start("bare", &disk, Some(&iso), "52:54:00:00:00:01")?;
    let facts = lab.wait_reports(&["bare".to_string()], t1 + timeout, &stop);
    let bare_wall = t1.elapsed().as_secs_f64();
    lab.shutdown();
    let bare_done = done_at(&facts["bare"]).context("the bare guest never reported")?;

    println!(
        "accel: {accel:?} ({why}); {} cores; uptime at cloud-init done, in seconds",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| boot | machines | cloud-init done (s, slowest) | ratio to bare |");
    println!("|---|---:|---:|---:|");
    println!("| bare guest, empty seed | 1 | {bare_done:.0} | 1.0x |");
    println!(
        "| tutorial cluster, nodeimg seeds | {} | {cluster_max:.0} | {:.1}x |",
        cluster_done.len(),
        cluster_max / bare_done
    );
    println!();
    for (name, t) in &cluster_done {
        println!("- {name}: cloud-init done at {t:.0} s");
    }
    println!("- wall time until every probe reported: cluster {cluster_wall:.0} s, bare {bare_wall:.0} s");
    Ok(())
}

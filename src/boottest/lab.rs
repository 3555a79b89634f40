//! The machines of a boot test: QEMU guests on one private switch, their
//! disk overlays, and the power button.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::diag::{Diagnostic, Kind};
use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::facts::Facts;
use super::probe::{test_seed, ProbeSettings};
use super::BootOptions;
use crate::render::Seed;
use crate::validate::{MachineSpec, Spec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

/// KVM only where it can boot a stock guest kernel: /dev/kvm, a CPU with
/// VT-x or AMD-V, and not the nested PVM module (it runs only PVM-aware
/// kernels and makes stock ones hang).
pub fn detect_accel() -> (Accel, String) {
    if !Path::new("/dev/kvm").exists() {
        return (Accel::Tcg, "no /dev/kvm".into());
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return (
            Accel::Tcg,
            "/dev/kvm is nested PVM (kvm_pvm), which boots no stock kernel".into(),
        );
    }
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !hw {
        return (Accel::Tcg, "the CPU has no VT-x/AMD-V".into());
    }
    (Accel::Kvm, "/dev/kvm with hardware virtualization".into())
}

/// UEFI firmware for the guests (Debian package ovmf).
pub fn firmware() -> Result<PathBuf> {
    for p in ["/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!(Diagnostic::new(
        Kind::Tool,
        "no UEFI firmware for QEMU (/usr/share/ovmf/OVMF.fd)"
    )
    .hint("apt-get install ovmf"))
}

/// The format qemu-img sees in a disk image (raw, qcow2, ...).
pub fn image_format(image: &Path) -> Result<String> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(image)
        .output()
        .map_err(|e| crate::diag::tool_missing("qemu-img", "qemu-utils", e))?;
    if !out.status.success() {
        bail!(
            "{}: not a disk image qemu-img can read: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("qemu-img info gave no JSON")?;
    v["format"]
        .as_str()
        .map(str::to_string)
        .context("qemu-img info names no format")
}

/// A copy-on-write overlay of `base`: the base image is never written.
pub fn create_overlay(base: &Path, overlay: &Path) -> Result<()> {
    let base = base
        .canonicalize()
        .with_context(|| format!("{}: no such disk image", base.display()))?;
    let format = image_format(&base)?;
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", &format, "-b"])
        .arg(&base)
        .arg(overlay)
        .status()
        .context("cannot run qemu-img")?;
    if !status.success() {
        bail!("qemu-img could not create an overlay of {}", base.display());
    }
    Ok(())
}

/// A MAC for machines whose profile gives none: locally administered,
/// derived from the address so logs stay readable.
pub fn test_mac(m: &MachineSpec) -> String {
    if let Some(mac) = &m.mac {
        return mac.clone();
    }
    let o = m.ip.octets();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", o[1], o[2], o[3])
}

/// The switch's socket in the lab's private folder.
const SWITCH_SOCKET: &str = "switch";

/// A running set of test machines on one private switch. Dropping it stops
/// every QEMU and the switch.
pub struct Lab {
    pub dir: PathBuf,
    sock_dir: tempfile::TempDir,
    switch: Option<Child>,
    machines: BTreeMap<String, Running>,
    pub accel: Accel,
    pub memory_mib: u32,
    firmware: PathBuf,
    pub probe: ProbeSettings,
}

/// A started machine: its QEMU and what it was started with, so that it can
/// be started again from the same disk.
struct Running {
    qemu: Child,
    disk: PathBuf,
    seed: Option<PathBuf>,
    mac: String,
}

pub(super) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; the closure runs between fork and
    // exec and touches nothing else. A QEMU must not outlive boot-test, even
    // when boot-test is killed.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

impl Lab {
    /// Starts the switch. `dir` receives serial logs and overlays.
    pub fn new(dir: &Path, accel: Accel, memory_mib: u32) -> Result<Lab> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Absolute paths in the QEMU command lines: `ps` then tells whose
        // machines these are.
        let dir = &dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let firmware = firmware()?;
        // A short private path: unix socket paths are limited to 108 bytes.
        let sock_dir = tempfile::Builder::new()
            .prefix("nodeimg-vde-")
            .tempdir()
            .context("cannot create a directory for the switch")?;
        let sock = sock_dir.path().join(SWITCH_SOCKET);
        let mut cmd = Command::new("vde_switch");
        cmd.arg("-s").arg(&sock);
        // vde_switch exits when its stdin closes: it cannot outlive us.
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let switch = cmd
            .spawn()
            .map_err(|e| crate::diag::tool_missing("vde_switch", "vde2", e))?;
        let mut lab = Lab {
            dir: dir.to_path_buf(),
            sock_dir,
            switch: Some(switch),
            machines: BTreeMap::new(),
            accel,
            memory_mib,
            firmware,
            probe: ProbeSettings::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            if Instant::now() > deadline {
                lab.shutdown();
                bail!("vde_switch did not create its socket");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(lab)
    }

    /// The switch's socket, for anything else plugged into it.
    pub fn switch_socket(&self) -> PathBuf {
        self.sock_dir.path().join(SWITCH_SOCKET)
    }

    pub fn serial_log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.serial.log"))
    }

    /// QEMU's human monitor of machine `name`: how the power button is pressed.
    fn monitor_socket(&self, name: &str) -> PathBuf {
        self.sock_dir.path().join(format!("{name}.monitor"))
    }

    /// Boots one machine from `disk` (an overlay) with `seed` attached
    /// (`None`: the seed is on the disk).
    pub fn start(&mut self, name: &str, disk: &Path, seed: Option<&Path>, mac: &str) -> Result<()> {
        let log = self.serial_log(name);
        let _ = fs::remove_file(&log);
        let qemu_log = fs::File::create(self.dir.join(format!("{name}.qemu.log")))?;
        let mut cmd = Command::new("qemu-system-x86_64");
        // Under TCG, QEMU's baseline CPU: `-cpu max` booted the cluster 17%
        // slower here (README, Boot test).
        cmd.args(["-name", name, "-machine", "q35"])
            .args(match self.accel {
                Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
                Accel::Tcg => ["-accel", "tcg", "-cpu", "qemu64"],
            })
            .args(["-smp", "1", "-m", &self.memory_mib.to_string()])
            .args(["-nodefaults", "-nographic", "-no-reboot"])
            .arg("-monitor")
            .arg(format!(
                "unix:{},server=on,wait=off",
                self.monitor_socket(name).display()
            ))
            .arg("-bios")
            .arg(&self.firmware)
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            // Boot from the disk only: no network boot attempts (romfile=).
            .arg("-drive")
            .arg(format!(
                "file={},format=qcow2,if=none,id=disk0",
                disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]);
        if let Some(seed) = seed {
            cmd.arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=seed0,readonly=on",
                    seed.display()
                ))
                .args(["-device", "virtio-blk-pci,drive=seed0"]);
        }
        cmd.arg("-netdev")
            .arg(format!("vde,id=n0,sock={}", self.switch_socket().display()))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={mac},romfile="))
            .args(["-object", "rng-random,id=rng0,filename=/dev/urandom"])
            .args(["-device", "virtio-rng-pci,rng=rng0"])
            .stdin(Stdio::null())
            .stdout(qemu_log.try_clone()?)
            .stderr(qemu_log);
        die_with_parent(&mut cmd);
        let qemu = cmd
            .spawn()
            .map_err(|e| crate::diag::tool_missing("qemu-system-x86_64", "qemu-system-x86", e))?;
        let running = Running {
            qemu,
            disk: disk.to_path_buf(),
            seed: seed.map(Path::to_path_buf),
            mac: mac.to_string(),
        };
        self.machines.insert(name.to_string(), running);
        Ok(())
    }

    /// Shuts machine `name` down the way an owner would (the ACPI power
    /// button: systemd stops every service and syncs the disks) and boots it
    /// again from the same disk, with the same seed medium still attached.
    /// Its first boot's serial log is kept as `NAME.before-reboot.serial.log`.
    /// Errs if the machine does not power off within `patience`.
    pub fn reboot(&mut self, name: &str, patience: Duration) -> Result<()> {
        let Some(running) = self.machines.get(name) else {
            bail!("{name} is not running");
        };
        let (disk, seed, mac) = (
            running.disk.clone(),
            running.seed.clone(),
            running.mac.clone(),
        );
        press_power_button(&self.monitor_socket(name))
            .with_context(|| format!("cannot press {name}'s power button"))?;
        let deadline = Instant::now() + patience;
        while self.running(name) {
            if Instant::now() > deadline {
                self.stop(name);
                bail!(
                    "{name} did not power off within {} s of the power button",
                    patience.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.machines.remove(name);
        self.keep_serial_log(name, "before-reboot")?;
        self.start(name, &disk, seed.as_deref(), &mac)
    }

    /// Keeps machine `name`'s serial log as `NAME.WHEN.serial.log` before the
    /// machine boots again (each boot starts a new log).
    pub fn keep_serial_log(&self, name: &str, when: &str) -> Result<()> {
        let log = self.serial_log(name);
        let kept = self.dir.join(format!("{name}.{when}.serial.log"));
        fs::rename(&log, &kept)
            .with_context(|| format!("cannot keep {} as {}", log.display(), kept.display()))
    }

    /// Boots machine `m` from a fresh overlay of `image` with its seed plus
    /// the probe (as vendor-data) attached.
    pub fn boot_seed(
        &mut self,
        spec: &Spec,
        m: &MachineSpec,
        seed: &Seed,
        image: &Path,
    ) -> Result<()> {
        let name = &m.name;
        // The test seed and, once booted, the overlay hold the machine's
        // secrets: private, like the build's seed.iso.
        let iso_path = self.dir.join(format!("{name}.test-seed.iso"));
        crate::io::write::write_private_atomic(&iso_path, &test_seed(spec, m, seed, &self.probe)?)?;
        let disk = self.private_overlay(name, image)?;
        self.start(name, &disk, Some(&iso_path), &test_mac(m))
    }

    /// Boots machine `m` from a copy of its built disk image (`disk.img`,
    /// seed embedded) whose seed partition also holds the probe.
    pub fn boot_disk_image(
        &mut self,
        spec: &Spec,
        m: &MachineSpec,
        seed: &Seed,
        disk_image: &Path,
    ) -> Result<()> {
        let name = &m.name;
        let copy = self.dir.join(format!("{name}.disk.img"));
        crate::disk::copy_with_seed(disk_image, &copy, &test_seed(spec, m, seed, &self.probe)?)?;
        let disk = self.private_overlay(name, &copy)?;
        self.start(name, &disk, None, &test_mac(m))
    }

    /// A fresh copy-on-write overlay of `base` for machine `name`, mode 0600.
    fn private_overlay(&self, name: &str, base: &Path) -> Result<PathBuf> {
        let disk = self.dir.join(format!("{name}.qcow2"));
        let _ = fs::remove_file(&disk);
        create_overlay(base, &disk)?;
        fs::set_permissions(&disk, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok(disk)
    }

    /// Boots a machine the way the options say: from its disk image, or
    /// from the base image with its seed ISO.
    pub(super) fn boot(
        &mut self,
        spec: &Spec,
        m: &MachineSpec,
        seed: &Seed,
        opts: &BootOptions,
    ) -> Result<()> {
        match &opts.images_from {
            Some(dir) => {
                self.boot_disk_image(spec, m, seed, &dir.join(&m.name).join(crate::DISK_IMAGE))
            }
            None => self.boot_seed(spec, m, seed, &opts.image),
        }
    }

    /// Powers a machine off hard (its disks are overlays).
    pub fn stop(&mut self, name: &str) {
        if let Some(mut running) = self.machines.remove(name) {
            let _ = running.qemu.kill();
            let _ = running.qemu.wait();
        }
    }

    /// Whether the machine's QEMU is still running.
    pub fn running(&mut self, name: &str) -> bool {
        match self.machines.get_mut(name) {
            Some(running) => matches!(running.qemu.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn shutdown(&mut self) {
        let names: Vec<String> = self.machines.keys().cloned().collect();
        for n in names {
            self.stop(&n);
        }
        if let Some(mut switch) = self.switch.take() {
            drop(switch.stdin.take());
            let _ = switch.kill();
            let _ = switch.wait();
        }
    }

    /// Waits until every named machine's probe has reported (or its QEMU
    /// exited), the deadline passed, or `stop` was raised.
    pub fn wait_reports(
        &mut self,
        names: &[String],
        deadline: Instant,
        stop: &AtomicBool,
    ) -> BTreeMap<String, Facts> {
        let mut done: BTreeMap<String, Facts> = BTreeMap::new();
        loop {
            for n in names {
                if done.contains_key(n) {
                    continue;
                }
                let text = fs::read_to_string(self.serial_log(n)).unwrap_or_default();
                let facts = Facts::parse(&text);
                if facts.complete || !self.running(n) {
                    done.insert(n.clone(), facts);
                }
            }
            if done.len() == names.len() || Instant::now() > deadline || stop.load(Ordering::SeqCst)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for n in names {
            if !done.contains_key(n) {
                let text = fs::read_to_string(self.serial_log(n)).unwrap_or_default();
                done.insert(n.clone(), Facts::parse(&text));
            }
        }
        done
    }
}

/// Sends `system_powerdown` to a QEMU human monitor and waits for the prompt
/// that follows it (QEMU has then queued the ACPI power button event).
fn press_power_button(socket: &Path) -> Result<()> {
    use std::io::{Read, Write};
    let mut monitor = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    monitor.set_read_timeout(Some(Duration::from_secs(10)))?;
    monitor.write_all(b"system_powerdown\n")?;
    let mut said = Vec::new();
    let mut buf = [0u8; 512];
    // The banner's prompt, then the one after the command.
    while said.windows(7).filter(|w| w == b"(qemu) ").count() < 2 {
        let n = monitor
            .read(&mut buf)
            .context("the monitor did not answer")?;
        if n == 0 {
            bail!("the monitor closed before answering");
        }
        said.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shutdown();
    }
}

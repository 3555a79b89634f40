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

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::render::Seed;
use crate::resolve;
use crate::secrets::Secrets;
use crate::validate::{MachineSpec, Role, Spec};
use crate::yaml::{self, Kind};

pub const PROBE: &str = include_str!("../qemu/probe.sh");

/// How long the probe waits for the first attempt of the internet-bound steps.
const ONLINE_WAIT_SECS: u32 = 240;

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
    bail!("no UEFI firmware for QEMU (/usr/share/ovmf/OVMF.fd)\n  hint: apt-get install ovmf")
}

/// The format qemu-img sees in a disk image (raw, qcow2, ...).
pub fn image_format(image: &Path) -> Result<String> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(image)
        .output()
        .context("cannot run qemu-img (apt-get install qemu-utils)")?;
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

/// The machine's seed ISO with the probe added as vendor-data.
fn test_seed(spec: &Spec, m: &MachineSpec, seed: &Seed, probe: &ProbeSettings) -> Result<Vec<u8>> {
    crate::iso::seed_iso_with(
        seed,
        &[("vendor-data", &probe_vendor_data(spec, m, seed, probe))],
    )
}

/// What the probes need beyond the profile: every machine's public host key
/// (to pin it when one logs in to the next) and the optional login key.
#[derive(Debug, Clone, Default)]
pub struct ProbeSettings {
    pub host_keys: BTreeMap<String, String>,
    /// A throwaway private key (OpenSSH format) authorized in the profile.
    pub login_key: Option<String>,
    /// Per machine: strings of the secrets its seed carried (a line of the
    /// host key, the join token, the JWT), to look for after first boot.
    pub secret_markers: BTreeMap<String, Vec<String>>,
}

impl ProbeSettings {
    pub fn new(spec: &Spec, secrets: &Secrets, login_key: Option<String>) -> ProbeSettings {
        let host_keys = spec
            .machines
            .iter()
            .filter_map(|m| {
                let key = secrets.machine(&m.name).ok()?.public_key().ok()?;
                Some((
                    m.name.clone(),
                    key.split_whitespace().take(2).collect::<Vec<_>>().join(" "),
                ))
            })
            .collect();
        let secret_markers = spec
            .machines
            .iter()
            .map(|m| {
                let mut markers = Vec::new();
                if let Ok(host) = secrets.machine(&m.name) {
                    // The base64 line that holds the private scalar: the
                    // lines before it are a header every ed25519 key shares
                    // (the probe's own login key too) and the public key.
                    markers.extend(host.ssh_host_ed25519_key.lines().nth(4).map(str::to_string));
                }
                if m.role.is_kubernetes() {
                    markers.push(secrets.microk8s_join_token.clone());
                }
                if m.role == Role::Master {
                    markers.extend(secrets.jwt_secret.clone());
                }
                (m.name.clone(), markers)
            })
            .collect();
        ProbeSettings {
            host_keys,
            login_key,
            secret_markers,
        }
    }
}

/// `marker` as the probe receives it: letters rotated by 13, digits by 5
/// (its own inverse; the probe undoes it with `tr`), so the vendor-data that
/// carries the probe holds no copy of a secret it looks for.
fn rotate(marker: &str) -> String {
    marker
        .chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a') + 13) % 26 + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A') + 13) % 26 + b'A') as char,
            '0'..='9' => (((c as u8 - b'0') + 5) % 10 + b'0') as char,
            other => other,
        })
        .collect()
}

/// Reads `--login-key`: an unencrypted OpenSSH private key whose public half
/// is one of `ssh.authorized_keys` (else no probe could log in with it).
pub fn read_login_key(path: &Path, spec: &Spec) -> Result<String> {
    const MAX: u64 = 64 * 1024;
    let shown = path.display();
    let meta =
        fs::metadata(path).with_context(|| format!("--login-key {shown}: cannot read it"))?;
    if !meta.is_file() || meta.len() > MAX {
        bail!("--login-key {shown}: not a private key file (a regular file of at most 64 KiB)");
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("--login-key {shown}: cannot read it"))?;
    let key = ssh_key::PrivateKey::from_openssh(&text).map_err(|_| {
        anyhow::anyhow!(
            "--login-key {shown}: not an OpenSSH private key\n  hint: make a throwaway one with ssh-keygen -t ed25519 -N '' -f KEY"
        )
    })?;
    if key.is_encrypted() {
        bail!("--login-key {shown}: the key has a passphrase; the probe cannot use it\n  hint: a throwaway key without one: ssh-keygen -t ed25519 -N '' -f KEY");
    }
    let public = key
        .public_key()
        .to_openssh()
        .context("--login-key: cannot encode its public key")?;
    let authorized = spec.ssh.authorized_keys.iter().any(|k| {
        k.split_whitespace()
            .take(2)
            .eq(public.split_whitespace().take(2))
    });
    if !authorized {
        bail!("--login-key {shown}: its public key is not in the profile's ssh.authorized_keys\n  hint: add the content of {shown}.pub there (a throwaway key: it is copied into the test machines)");
    }
    Ok(text)
}

/// The machine whose sshd `m`'s probe tries: the next one in the profile, so
/// every machine is tried once, from another machine, through its firewall.
pub fn ssh_target<'a>(spec: &'a Spec, m: &MachineSpec) -> Option<&'a MachineSpec> {
    let at = spec.machines.iter().position(|x| x.name == m.name)?;
    let next = &spec.machines[(at + 1) % spec.machines.len()];
    (next.name != m.name).then_some(next)
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

fn die_with_parent(cmd: &mut Command) {
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
        let sock = sock_dir.path().join("switch");
        let mut cmd = Command::new("vde_switch");
        cmd.arg("-s").arg(&sock);
        // vde_switch exits when its stdin closes: it cannot outlive us.
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let switch = cmd
            .spawn()
            .context("cannot start vde_switch (apt-get install vde2)")?;
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
            .arg(format!(
                "vde,id=n0,sock={}",
                self.sock_dir.path().join("switch").display()
            ))
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
            .context("cannot start qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
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
        let log = self.serial_log(name);
        let kept = self.dir.join(format!("{name}.before-reboot.serial.log"));
        fs::rename(&log, &kept)
            .with_context(|| format!("cannot keep {} as {}", log.display(), kept.display()))?;
        self.start(name, &disk, seed.as_deref(), &mac)
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
        crate::output::write_private_atomic(&iso_path, &test_seed(spec, m, seed, &self.probe)?)?;
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
    fn boot(
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Ok(String),
    Failed(String),
    NotApplicable,
    NotCheckableOffline(String),
}

impl Outcome {
    pub fn passed(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }
    fn short(&self) -> &str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Failed(_) => "FAILED",
            Outcome::NotApplicable => "-",
            Outcome::NotCheckableOffline(_) => "offline",
        }
    }
}

pub const CHECKS: &[&str] = &[
    "cloud-init",
    "hostname",
    "network",
    "peers",
    "chrony",
    "sshd",
    "ssh-peer",
    "ufw",
    "nfs-export",
    "validator-keys",
    "nfs-client",
    "release-nfs",
    "microk8s-config",
    "online-steps",
    "seed-copies",
    "microk8s-ready",
];

#[derive(Debug, Clone, Serialize)]
pub struct MachineResult {
    pub name: String,
    pub role: Role,
    pub checks: BTreeMap<String, Outcome>,
}

impl MachineResult {
    pub fn passed(&self) -> bool {
        self.checks.values().all(Outcome::passed)
    }
}

fn sha256(s: &str) -> String {
    crate::output::sha256_hex(s.as_bytes())
}

/// path -> sha256 of every write_files entry of a user-data.
fn written_files(user_data: &str) -> BTreeMap<String, String> {
    write_files_entries(user_data)
        .into_iter()
        .map(|(path, content)| (path, sha256(&content)))
        .collect()
}

/// The (path, content) of every `write_files` entry of a user-data.
fn write_files_entries(user_data: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(tree) = yaml::parse(user_data) else {
        return out;
    };
    let Some(list) = tree.get(&crate::diag::Path::parse("write_files")) else {
        return out;
    };
    if let Kind::Seq(items) = &list.kind {
        for item in items {
            let get = |k: &str| match item.get(&crate::diag::Path::root().key(k)).map(|n| &n.kind) {
                Some(Kind::Str(s)) => Some(s.clone()),
                _ => None,
            };
            if let (Some(path), Some(content)) = (get("path"), get("content")) {
                out.push((path, content));
            }
        }
    }
    out
}

fn file_check(facts: &Facts, expected: &BTreeMap<String, String>, path: &str) -> Outcome {
    let Some(want) = expected.get(path) else {
        return Outcome::Failed(format!("{path} is not in the seed"));
    };
    let got = facts
        .all("file")
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{path} ")).map(str::to_string));
    match got {
        Some(h) if &h == want => Outcome::Ok(format!("{path} as rendered")),
        Some(h) if h.is_empty() => Outcome::Failed(format!("{path} is missing")),
        Some(_) => Outcome::Failed(format!("{path} differs from the rendered file")),
        None => Outcome::Failed(format!("the probe did not report {path}")),
    }
}

/// The rules `ufw status verbose` must show (IPv4 lines), as (to, from).
fn expected_ufw(spec: &Spec, m: &MachineSpec) -> Vec<(String, String)> {
    let mut rules = vec![(format!("{}/tcp", spec.ssh.port), "Anywhere".to_string())];
    for r in resolve::ufw_rules(spec, m) {
        let from = if r.from == "any" {
            "Anywhere".to_string()
        } else {
            r.from
        };
        rules.push((format!("{}/{}", r.ports, r.proto), from));
    }
    if m.role.is_kubernetes() {
        for iface in ["vxlan.calico", "cali+"] {
            rules.push((format!("Anywhere on {iface}"), "Anywhere".into()));
            rules.push(("Anywhere".into(), format!("Anywhere on {iface} (out)")));
        }
    }
    rules.sort();
    rules
}

/// Parses the rule lines of `ufw status verbose` (IPv4 only) into (to, from).
fn parse_ufw(lines: &[String]) -> (bool, Vec<(String, String)>) {
    let active = lines.iter().any(|l| l.trim() == "Status: active");
    let mut rules = Vec::new();
    for l in lines {
        let l = l.split(" # ").next().unwrap_or(l).trim_end();
        if l.contains("(v6)") {
            continue;
        }
        for (action, dir_out) in [("ALLOW IN", false), ("ALLOW OUT", true)] {
            if let Some(i) = l.find(action) {
                let to = l[..i].trim().to_string();
                let from = l[i + action.len()..].trim().to_string();
                if dir_out {
                    // "Anywhere  ALLOW OUT  Anywhere on cali+" is an outgoing rule.
                    rules.push((to, format!("{from} (out)")));
                } else {
                    rules.push((to, from));
                }
            }
        }
    }
    rules.sort();
    (active, rules)
}

/// Evaluates every check of one machine from its probe facts.
/// Every check with the same outcome: a machine that could not be checked.
fn every_check(outcome: Outcome) -> BTreeMap<String, Outcome> {
    CHECKS
        .iter()
        .map(|c| (c.to_string(), outcome.clone()))
        .collect()
}

/// Which boot of a machine a report is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// cloud-init configures the machine from its seed.
    First,
    /// After a shutdown (`--reboot`): the machine must come back as it was
    /// configured, with cloud-init off.
    Later,
}

pub fn evaluate(
    spec: &Spec,
    secrets: &Secrets,
    seed: &Seed,
    m: &MachineSpec,
    facts: &Facts,
    boot: Boot,
) -> MachineResult {
    let mut checks = BTreeMap::new();
    let mut put = |k: &str, o: Outcome| {
        checks.insert(k.to_string(), o);
    };
    if !facts.began {
        return MachineResult {
            name: m.name.clone(),
            role: m.role,
            checks: every_check(Outcome::Failed(
                "the machine never reported (see its serial log)".into(),
            )),
        };
    }
    let files = written_files(&seed.user_data);
    let incomplete = if facts.complete {
        ""
    } else {
        " (the report was cut short)"
    };

    // cloud-init: done without errors on the first boot; off on later ones.
    let result = facts.one("result").unwrap_or("").replace(' ', "");
    let reported_boot = facts.one("boot").unwrap_or("");
    put(
        "cloud-init",
        if boot == Boot::Later {
            match (reported_boot, facts.one("cloud-init-again")) {
                ("later", Some("ran=no disabled=yes")) => {
                    Outcome::Ok("off since the first boot; did not run again".into())
                }
                ("later", Some(said)) => Outcome::Failed(format!(
                    "cloud-init must stay off after the first boot (step forget-seed): {said}"
                )),
                ("later", None) => Outcome::Failed(format!("not reported{incomplete}")),
                _ => Outcome::Failed(
                    "the machine booted as a new one: its first boot's state is gone".into(),
                ),
            }
        } else if result.contains("\"errors\":[]") {
            Outcome::Ok("finished, no errors".into())
        } else if result.is_empty() {
            Outcome::Failed(format!("no /run/cloud-init/result.json{incomplete}"))
        } else {
            Outcome::Failed(format!(
                "cloud-init reported errors: {}",
                facts.one("result").unwrap_or("")
            ))
        },
    );

    // hostname and /etc/hosts
    let hosts: Vec<Vec<&str>> = facts
        .all("hosts")
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let missing: Vec<&str> = spec
        .machines
        .iter()
        .filter(|x| {
            let ip = x.ip.to_string();
            !hosts
                .iter()
                .any(|h| h.first() == Some(&ip.as_str()) && h.contains(&x.name.as_str()))
        })
        .map(|x| x.name.as_str())
        .collect();
    put(
        "hostname",
        match facts.one("hostname") {
            Some(h) if h != m.name => Outcome::Failed(format!("hostname is {h:?}")),
            None => Outcome::Failed(format!("not reported{incomplete}")),
            _ if !missing.is_empty() => {
                Outcome::Failed(format!("/etc/hosts lacks {}", missing.join(", ")))
            }
            _ => Outcome::Ok(format!("{} and every machine in /etc/hosts", m.name)),
        },
    );

    // static address on the right NIC
    let want = format!("{}/{}", m.ip, spec.subnet.prefix_len());
    let addr_line = facts
        .all("addr")
        .iter()
        .find(|l| l.split_whitespace().any(|t| t == want));
    let nic = addr_line
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    let network = match addr_line {
        None => Outcome::Failed(format!("no interface has {want}")),
        Some(_) => match &m.mac {
            Some(mac) => {
                let ctx_name = resolve::nic_name(m);
                let link_ok = facts.all("link").iter().any(|l| {
                    l.contains(&format!(" {nic}:")) && l.contains(&format!("link/ether {mac}"))
                });
                if !link_ok {
                    Outcome::Failed(format!("{want} is on {nic}, which does not have MAC {mac}"))
                } else if nic != ctx_name {
                    Outcome::Failed(format!(
                        "{want} is on {nic}, expected the NIC to be named {ctx_name}"
                    ))
                } else {
                    Outcome::Ok(format!("{want} on {nic} ({mac})"))
                }
            }
            None => Outcome::Ok(format!("{want} on {nic}")),
        },
    };
    put("network", network);

    // every machine reaches every other by name
    let peers: Vec<&String> = facts.all("peer").iter().collect();
    let failed: Vec<String> = peers
        .iter()
        .filter(|p| !p.ends_with(" ok"))
        .map(|p| p.split(' ').next().unwrap_or("").to_string())
        .collect();
    let others = spec.machines.len() - 1;
    put(
        "peers",
        if !failed.is_empty() {
            Outcome::Failed(format!("cannot reach {}", failed.join(", ")))
        } else if peers.len() < others {
            Outcome::Failed(format!(
                "only {} of {others} peers reported{incomplete}",
                peers.len()
            ))
        } else {
            Outcome::Ok(format!("reaches all {others} by name"))
        },
    );

    put(
        "chrony",
        file_check(facts, &files, "/etc/chrony/chrony.conf"),
    );

    // sshd: port and host key
    let listens_on = |port: u16| {
        facts.all("listen").iter().any(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|local| local.ends_with(&format!(":{port}")))
        })
    };
    let port_open = listens_on(spec.ssh.port);
    let stray_22 = spec.ssh.port != 22 && listens_on(22);
    let want_key = secrets
        .machine(&m.name)
        .and_then(|s| s.public_key())
        .map(|k| k.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let offered = facts.all("hostkey").iter().any(|l| {
        !l.starts_with('#')
            && l.split_whitespace()
                .skip(1)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                == want_key
    });
    put(
        "sshd",
        match (port_open, offered) {
            (false, _) => Outcome::Failed(format!("nothing listens on port {}", spec.ssh.port)),
            _ if stray_22 => Outcome::Failed(format!(
                "something still listens on port 22 (ssh.port is {})",
                spec.ssh.port
            )),
            (true, false) => {
                Outcome::Failed("sshd does not offer the host key from the secrets file".into())
            }
            (true, true) => Outcome::Ok(format!(
                "port {}, host key from the secrets file",
                spec.ssh.port
            )),
        },
    );

    put("ssh-peer", ssh_peer_check(spec, m, facts));

    // ufw: active, exactly the role's rules
    let (active, rules) = parse_ufw(facts.all("ufw"));
    let want_rules = expected_ufw(spec, m);
    let ufw = if !active {
        Outcome::Failed("ufw is not active".into())
    } else if rules != want_rules {
        let missing: Vec<String> = want_rules
            .iter()
            .filter(|r| !rules.contains(r))
            .map(|(t, f)| format!("{t} from {f}"))
            .collect();
        let extra: Vec<String> = rules
            .iter()
            .filter(|r| !want_rules.contains(r))
            .map(|(t, f)| format!("{t} from {f}"))
            .collect();
        Outcome::Failed(format!(
            "missing [{}], unexpected [{}]",
            missing.join("; "),
            extra.join("; ")
        ))
    } else {
        Outcome::Ok(format!("active, {} rules as the role needs", rules.len()))
    };
    put("ufw", ufw);

    // NFS server
    let export_root = spec.nfs.export_root.trim_end_matches('/').to_string();
    put(
        "nfs-export",
        if m.role != Role::Nfs {
            Outcome::NotApplicable
        } else {
            let text = facts.all("exports").join(" ");
            let tokens: Vec<&str> = text.split_whitespace().collect();
            let clients: Vec<&str> = tokens.iter().filter(|t| t.contains('(')).copied().collect();
            let subnet = spec.subnet.to_string();
            let owners: Vec<&String> = facts.all("owner").iter().collect();
            let want_owner = format!("{}:{}", spec.nfs.uid, spec.nfs.gid);
            let bad_owner: Vec<&String> = owners
                .iter()
                .copied()
                .filter(|o| !o.ends_with(&format!(" {want_owner}")))
                .collect();
            if !tokens.contains(&export_root.as_str()) {
                Outcome::Failed(format!("{export_root} is not exported"))
            } else if clients.is_empty()
                || !clients.iter().all(|c| c.starts_with(&format!("{subnet}(")))
            {
                Outcome::Failed(format!(
                    "exported to {} (expected {subnet} only)",
                    clients.join(", ")
                ))
            } else if owners.len() != spec.nfs.folders.len() || !bad_owner.is_empty() {
                Outcome::Failed(format!(
                    "data folders not owned by {want_owner}: {owners:?}"
                ))
            } else {
                Outcome::Ok(format!(
                    "{export_root} to {subnet} only, folders owned by {want_owner}"
                ))
            }
        },
    );

    put("validator-keys", validator_keys_check(spec, seed, m, facts));

    // NFS clients
    let want_owner = format!("{}:{}", spec.nfs.uid, spec.nfs.gid);
    put(
        "nfs-client",
        match m.role {
            Role::Nfs => Outcome::NotApplicable,
            _ if facts.one("nfs-mount") != Some("ok") => {
                Outcome::Failed(format!("cannot mount the NFS export{incomplete}"))
            }
            Role::Worker => match facts.one("nfs-write") {
                Some(l) if l == format!("ok {want_owner}") => {
                    Outcome::Ok(format!("mounted, wrote a file as {want_owner}"))
                }
                Some(l) => Outcome::Failed(format!("write as {want_owner}: {l}")),
                None => Outcome::Failed(format!("no write reported{incomplete}")),
            },
            Role::Master => {
                let seen = facts.all("nfs-see");
                let workers: Vec<&MachineSpec> = spec.by_role(Role::Worker).collect();
                let bad: Vec<&String> = seen
                    .iter()
                    .filter(|l| !l.ends_with(&format!(" ok {want_owner}")))
                    .collect();
                if seen.len() < workers.len() || !bad.is_empty() {
                    Outcome::Failed(format!("does not see every worker's file: {seen:?}"))
                } else {
                    Outcome::Ok(format!(
                        "sees the files the {} worker(s) wrote",
                        workers.len()
                    ))
                }
            }
        },
    );

    put(
        "release-nfs",
        match (m.role, facts.one("release-nfs")) {
            (Role::Master, Some(l)) if l.starts_with("ok ") => Outcome::Ok(l[3..].to_string()),
            (Role::Master, Some(l)) => Outcome::Failed(format!(
                "`nodeimg-setup check-nfs`, the release step's wait, says: {}",
                l.trim_start_matches("fail").trim()
            )),
            (Role::Master, None) => Outcome::Failed(format!("not reported{incomplete}")),
            _ => Outcome::NotApplicable,
        },
    );

    put(
        "microk8s-config",
        if m.role.is_kubernetes() {
            file_check(facts, &files, "/etc/microk8s.yaml")
        } else {
            Outcome::NotApplicable
        },
    );

    // internet-bound steps
    let status: BTreeMap<String, (String, String)> = facts
        .all("status")
        .iter()
        .filter_map(|l| {
            let mut p = l.splitn(5, ' ');
            let step = p.next()?.to_string();
            let state = p.next()?.to_string();
            let msg = p.nth(2).unwrap_or("").to_string();
            Some((step, (state, msg)))
        })
        .collect();
    let local: &[&str] = if m.role == Role::Nfs {
        &["ssh", "firewall", "chrony", "nfs-exports"]
    } else {
        &["ssh", "firewall", "chrony"]
    };
    let online = online_steps_of(spec, m);
    let service = facts.one("online-service").unwrap_or("");
    let online_steps = if status.is_empty() {
        Outcome::Failed(format!(
            "no {} on the machine{incomplete}",
            resolve::STATUS_FILE
        ))
    } else if let Some(bad) = local
        .iter()
        .find(|s| status.get(**s).map(|x| x.0.as_str()) != Some("done"))
    {
        Outcome::Failed(format!("local step {bad} is {:?}", status.get(*bad)))
    } else if let Some((s, (state, msg))) = status.iter().find(|(_, (st, _))| st == "failed") {
        Outcome::Failed(format!("{s} {state}: {msg}"))
    } else if online.iter().all(|s| {
        matches!(
            status.get(*s).map(|x| x.0.as_str()),
            Some("done" | "skipped")
        )
    }) {
        Outcome::Ok("done online".into())
    } else if service != "active" {
        Outcome::Failed(format!(
            "steps are pending but nodeimg-online.service is {service:?}"
        ))
    } else {
        let retrying: Vec<String> = online
            .iter()
            .filter_map(|s| {
                status
                    .get(*s)
                    .filter(|(st, _)| st == "retrying" || st == "running")
                    .map(|(st, msg)| format!("{s} {st}: {msg}"))
            })
            .collect();
        if retrying.is_empty() {
            Outcome::Failed("steps pending, none attempted yet".into())
        } else {
            Outcome::Ok(format!("retrying offline ({})", retrying.join("; ")))
        }
    };
    put("online-steps", online_steps);

    put("seed-copies", seed_copies_check(facts, &status));

    put(
        "microk8s-ready",
        if !m.role.is_kubernetes() {
            Outcome::NotApplicable
        } else {
            match status.get("microk8s-launch") {
                Some((st, msg)) if st == "done" => Outcome::Ok(msg.clone()),
                _ => Outcome::NotCheckableOffline("needs the snap store".into()),
            }
        },
    );

    MachineResult {
        name: m.name.clone(),
        role: m.role,
        checks,
    }
}

/// After first boot: `forget-seed` done, no string of a secret the seed
/// carried left in cloud-init's folders, the logs or the seed partition, and
/// a seed partition (disk images) wiped.
fn seed_copies_check(facts: &Facts, status: &BTreeMap<String, (String, String)>) -> Outcome {
    match status.get("forget-seed") {
        Some((state, _)) if state == "done" => {}
        Some((state, msg)) => return Outcome::Failed(format!("forget-seed {state}: {msg}")),
        None => return Outcome::Failed("forget-seed not reported".into()),
    }
    match facts.one("seed-copies") {
        Some("none") => {}
        Some(copies) => {
            // Several secrets are often found in one file: name each file once.
            let files: std::collections::BTreeSet<&str> = copies.split_whitespace().collect();
            let files: Vec<&str> = files.into_iter().collect();
            return Outcome::Failed(format!(
                "secrets of the seed are still in {}",
                files.join(" ")
            ));
        }
        None => return Outcome::Failed("not reported".into()),
    }
    match facts.one("seed-partition") {
        Some("wiped") => {
            Outcome::Ok("no copy of the seed's secrets left; the seed partition wiped".into())
        }
        Some(other) => Outcome::Failed(format!("the seed partition is {other}")),
        None => Outcome::Ok(
            "no copy of the seed's secrets left in cloud-init's folders or the logs (the seed medium is removable)"
                .into(),
        ),
    }
}

/// The next machine's sshd as seen from `m` (probe facts `ssh-login`,
/// `ssh-22`): reached on ssh.port through its firewall with the pinned host
/// key, logged in with the login key if one was given, and closed on 22.
fn ssh_peer_check(spec: &Spec, m: &MachineSpec, facts: &Facts) -> Outcome {
    let Some(target) = ssh_target(spec, m) else {
        return Outcome::NotApplicable;
    };
    let port = spec.ssh.port;
    let to = format!("{}:{port}", target.name);
    let login = facts.one("ssh-login").unwrap_or("");
    let mut words = login.splitn(3, ' ');
    let (_, verdict, said) = (
        words.next(),
        words.next().unwrap_or(""),
        words.next().unwrap_or(""),
    );
    let closed_22 = port == 22 || facts.one("ssh-22").is_some_and(|l| l.ends_with(" closed"));
    match verdict {
        _ if !closed_22 => Outcome::Failed(format!(
            "{}:22 accepts connections though ssh.port is {port}",
            target.name
        )),
        "ok" if said.trim() == spec.ssh.user => Outcome::Ok(format!(
            "logged in to {to} as {}, host key pinned{}",
            spec.ssh.user,
            if port == 22 { "" } else { ", 22 closed" }
        )),
        "denied-without-key" => Outcome::Ok(format!(
            "reached sshd on {to}, host key pinned, keys only{} (no --login-key: no login tried)",
            if port == 22 { "" } else { ", 22 closed" }
        )),
        "" => Outcome::Failed("not reported".into()),
        _ => Outcome::Failed(format!("ssh {}@{to}: {}", spec.ssh.user, said.trim())),
    }
}

/// The vendor-data that installs and starts the probe on a test machine.
pub fn probe_vendor_data(
    spec: &Spec,
    m: &MachineSpec,
    seed: &Seed,
    probe: &ProbeSettings,
) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let peers: Vec<&str> = spec
        .machines
        .iter()
        .filter(|x| x.name != m.name)
        .map(|x| x.name.as_str())
        .collect();
    let workers: Vec<&str> = spec
        .by_role(Role::Worker)
        .map(|x| x.name.as_str())
        .collect();
    let target = ssh_target(spec, m);
    // The payload (validator keys, the release) by the start of its encoded
    // content, as every copy of the user-data holds it.
    let markers: Vec<String> = probe
        .secret_markers
        .get(&m.name)
        .into_iter()
        .flatten()
        .cloned()
        .chain(
            write_files_entries(&seed.user_data)
                .into_iter()
                .filter(|(path, _)| path.starts_with("/var/lib/nodeimg/"))
                .map(|(_, content)| content.chars().take(48).collect()),
        )
        .filter(|m: &String| m.len() >= 16)
        .map(|m| rotate(&m))
        .collect();
    // Written before the probe runs; the probe only reads it.
    let login_key = match &probe.login_key {
        Some(key) => format!(
            "install -d -m 0700 /usr/local/lib/nodeimg-probe\n\
             (umask 077; cat > /usr/local/lib/nodeimg-probe/login-key <<'NODEIMG_PROBE_EOF'\n{}\nNODEIMG_PROBE_EOF\n)\n",
            key.trim_end()
        ),
        None => String::new(),
    };
    // The staking payload is checked on its own (and mostly moved or large).
    let files: Vec<String> = written_files(&seed.user_data)
        .into_keys()
        .filter(|p| !p.starts_with("/var/lib/nodeimg/"))
        .collect();
    let env = [
        ("PROBE_HOST", m.name.clone()),
        ("PROBE_ROLE", m.role.as_str().to_string()),
        ("PROBE_PEERS", peers.join(" ")),
        ("PROBE_WORKERS", workers.join(" ")),
        ("PROBE_NFS_IP", spec.nfs_server().ip.to_string()),
        (
            "PROBE_EXPORT_ROOT",
            spec.nfs.export_root.trim_end_matches('/').to_string(),
        ),
        ("PROBE_FOLDERS", spec.nfs.folders.join(" ")),
        (
            "PROBE_FOLDER",
            spec.nfs.folders.first().cloned().unwrap_or_default(),
        ),
        ("PROBE_UID", spec.nfs.uid.to_string()),
        ("PROBE_GID", spec.nfs.gid.to_string()),
        ("PROBE_SSH_PORT", spec.ssh.port.to_string()),
        ("PROBE_SSH_USER", spec.ssh.user.clone()),
        (
            "PROBE_SSH_TARGET",
            target.map(|t| t.ip.to_string()).unwrap_or_default(),
        ),
        (
            "PROBE_SSH_TARGET_KEY",
            target
                .and_then(|t| probe.host_keys.get(&t.name))
                .cloned()
                .unwrap_or_default(),
        ),
        ("PROBE_FILES", files.join(" ")),
        ("PROBE_ONLINE_WAIT", ONLINE_WAIT_SECS.to_string()),
        ("PROBE_MARKERS", markers.join(" ")),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}\n", q(v)))
    .collect::<String>();
    format!(
        "#!/bin/sh\n# nodeimg boot-test probe (vendor-data; added by boot-test, not part of the seed)\n\
         mkdir -p /usr/local/lib/nodeimg-probe\n{login_key}\
         cat > /usr/local/lib/nodeimg-probe/env <<'NODEIMG_PROBE_EOF'\n{env}NODEIMG_PROBE_EOF\n\
         cat > /usr/local/lib/nodeimg-probe/probe <<'NODEIMG_PROBE_EOF'\n{PROBE}NODEIMG_PROBE_EOF\n\
         chmod 0755 /usr/local/lib/nodeimg-probe/probe\n\
         cat > /etc/systemd/system/nodeimg-probe.service <<'NODEIMG_PROBE_EOF'\n\
         [Unit]\nDescription=nodeimg boot-test probe\nAfter=cloud-final.service multi-user.target\n\n\
         [Service]\nType=oneshot\nExecStart=/usr/local/lib/nodeimg-probe/probe\n\n\
         [Install]\nWantedBy=multi-user.target\n\
         NODEIMG_PROBE_EOF\n\
         systemctl daemon-reload\n\
         systemctl enable nodeimg-probe.service\n\
         systemctl start --no-block nodeimg-probe.service\n"
    )
}

/// Where the seed's keys are until first boot moves them.
const KEYS_STAGING: &str = crate::staking::KEYS_STAGING;

/// A staking profile's keys: on the NFS server every keystore and password
/// the seed carried, in the group's folder, owned by uid:gid, mode 0600,
/// and the staging copy gone; on the other machines no keys at all.
fn validator_keys_check(spec: &Spec, seed: &Seed, m: &MachineSpec, facts: &Facts) -> Outcome {
    let has_groups = spec.staking.as_ref().is_some_and(|s| !s.groups.is_empty());
    if !has_groups {
        return Outcome::NotApplicable;
    }
    let staging = facts.one("key-staging").unwrap_or("unreported");
    if staging != "absent" {
        return Outcome::Failed(format!("{KEYS_STAGING} holds {staging:?}"));
    }
    if m.role != Role::Nfs {
        return Outcome::Ok("no keys on this machine".into());
    }
    // (group, file) the seed carried: .../validator-keys/<group>/<file>.
    let carried: Vec<(String, String)> = written_files(&seed.user_data)
        .into_keys()
        .filter_map(|p| {
            let rest = p.strip_prefix(&format!("{KEYS_STAGING}/"))?;
            let (group, file) = rest.split_once('/')?;
            Some((format!("validator-{group}"), file.to_string()))
        })
        .collect();
    let want = format!("{}:{} 600", spec.nfs.uid, spec.nfs.gid);
    let placed: BTreeMap<(String, String), String> = facts
        .all("key")
        .iter()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            Some((
                (w.next()?.to_string(), w.next()?.to_string()),
                w.next()?.to_string(),
            ))
        })
        .collect();
    for (folder, file) in &carried {
        match placed.get(&(folder.clone(), file.clone())) {
            None => return Outcome::Failed(format!("{folder}/{file} is missing")),
            Some(owner) if *owner != want => {
                return Outcome::Failed(format!("{folder}/{file} is {owner}, expected {want}"))
            }
            Some(_) => {}
        }
    }
    Outcome::Ok(format!("{} file(s) in place, {want}", carried.len()))
}

/// The internet-bound steps a machine runs (nodeimg-setup's ONLINE_STEPS,
/// less the local ones it retries): the master of a staking profile also
/// installs the release.
pub fn online_steps_of(spec: &Spec, m: &MachineSpec) -> Vec<&'static str> {
    let mut steps = vec!["forget-seed", "apt-update", "apt-upgrade", "packages"];
    if m.role != Role::Nfs {
        steps.extend(["microk8s", "microk8s-launch"]);
    }
    let installs_release = spec.staking.as_ref().is_some_and(|s| s.legacy.is_none());
    if m.role == Role::Master && installs_release {
        steps.push("release");
    }
    steps
}

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
        for c in CHECKS {
            out.push_str(&format!("  {c:<w$}", w = c.len().max(7)));
        }
        out.push('\n');
        for m in &self.machines {
            out.push_str(&format!("{:width$}", m.name));
            for c in CHECKS {
                let s = m.checks.get(*c).map(Outcome::short).unwrap_or("?");
                out.push_str(&format!("  {s:<w$}", w = c.len().max(7)));
            }
            out.push('\n');
        }
        for m in &self.machines {
            for c in CHECKS {
                match m.checks.get(*c) {
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

    let mut reprovisioned: Option<(String, Seed)> = None;
    if let Some(name) = &opts.reprovision {
        if all_reported && !stop.load(Ordering::SeqCst) {
            let m = spec
                .machine(name)
                .context("--reprovision: no such machine")?;
            // The machine dies: power off and destroy its disk.
            lab.stop(name);
            fs::remove_file(dir.join(format!("{name}.qcow2")))?;
            let old_log = lab.serial_log(name);
            let _ = fs::rename(&old_log, dir.join(format!("{name}.first-boot.serial.log")));
            let seed = rebuild(name)?;
            lab.boot(spec, m, &seed, opts)?;
            let facts = lab.wait_reports(std::slice::from_ref(name), deadline, &stop);
            all_reported &= facts[name].complete;
            let mut result = evaluate(spec, secrets, &seed, m, &facts[name], Boot::First);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_keep_the_last_report() {
        let f = Facts::parse("junk\n@@P@@ begin a\n@@P@@ x 1\n[  3.1] kernel\n@@P@@ begin a\n@@P@@ x 2\n@@P@@ end a\n");
        assert!(f.complete);
        assert_eq!(f.all("x"), ["2"]);
    }

    #[test]
    fn ufw_status_lines_parse() {
        let lines: Vec<String> = [
            "Status: active",
            "To                         Action      From",
            "--                         ------      ----",
            "22/tcp                     ALLOW IN    Anywhere                   # ssh",
            "2049/tcp                   ALLOW IN    172.20.0.0/20              # NFSv4",
            "Anywhere on vxlan.calico   ALLOW IN    Anywhere",
            "Anywhere                   ALLOW OUT   Anywhere on cali+",
            "22/tcp (v6)                ALLOW IN    Anywhere (v6)              # ssh",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (active, rules) = parse_ufw(&lines);
        assert!(active);
        assert_eq!(
            rules,
            vec![
                ("2049/tcp".to_string(), "172.20.0.0/20".to_string()),
                ("22/tcp".to_string(), "Anywhere".to_string()),
                (
                    "Anywhere".to_string(),
                    "Anywhere on cali+ (out)".to_string()
                ),
                (
                    "Anywhere on vxlan.calico".to_string(),
                    "Anywhere".to_string()
                ),
            ]
        );
    }
}

#[cfg(test)]
mod evaluate_tests {
    use super::*;

    #[test]
    fn a_host_key_marker_is_private_to_that_key() {
        // A marker found in another key (the probe's login key) or in the
        // public key would report a leak that is none.
        let v = crate::load_profile_str("h.yaml", include_str!("../profiles/hoodi.yaml")).unwrap();
        let spec = v.spec;
        let secrets = Secrets::generate(&spec).unwrap();
        let other = Secrets::generate(&spec).unwrap();
        let probe = ProbeSettings::new(&spec, &secrets, None);
        for m in &spec.machines {
            let own = secrets.machine(&m.name).unwrap();
            let marker = &probe.secret_markers[&m.name][0];
            assert!(own.ssh_host_ed25519_key.contains(marker.as_str()));
            assert!(marker.len() >= 40, "{marker}");
            for key in other.machines.values() {
                assert!(!key.ssh_host_ed25519_key.contains(marker.as_str()));
            }
            assert!(!own.public_key().unwrap().contains(marker.as_str()));
        }
    }

    #[test]
    fn validator_keys_must_be_placed_privately_on_the_nfs_server_only() {
        let v = crate::load_profile_str("h.yaml", include_str!("../profiles/hoodi.yaml")).unwrap();
        let spec = v.spec;
        let s = spec.staking.clone().unwrap();
        let keys = vec![crate::staking::GroupKeys {
            group: "group-1".into(),
            keystores: vec![("keystore-a.json".into(), b"{}".to_vec(), "ab".repeat(48))],
            password: b"pw".to_vec(),
        }];
        let secrets = Secrets::generate(&spec).unwrap();
        let payload = crate::staking::payload(
            &spec,
            &s,
            &keys,
            &[],
            secrets.jwt_secret.as_deref().unwrap(),
        );
        let engine = crate::render::Engine::new(None).unwrap();
        let seeds: BTreeMap<String, Seed> =
            crate::render_seeds(&spec, &secrets, &engine, &[], &payload)
                .unwrap()
                .into_iter()
                .collect();
        let nfs = spec.machine("nfs").unwrap();
        let check = |facts: &str| {
            let serial: String = facts.lines().map(|l| format!("@@P@@ {l}\n")).collect();
            validator_keys_check(&spec, &seeds["nfs"], nfs, &Facts::parse(&serial))
        };
        let good = "key validator-group-1 keystores/keystore-a.json 1001:2000 600\n\
                    key validator-group-1 password.txt 1001:2000 600\nkey-staging absent";
        assert!(matches!(check(good), Outcome::Ok(_)), "{:?}", check(good));
        let readable = good.replace("password.txt 1001:2000 600", "password.txt 1001:2000 644");
        assert!(
            matches!(check(&readable), Outcome::Failed(d) if d.contains("password.txt is 1001:2000 644"))
        );
        let missing = good.replace(
            "key validator-group-1 keystores/keystore-a.json 1001:2000 600\n",
            "",
        );
        assert!(
            matches!(check(&missing), Outcome::Failed(d) if d.contains("keystore-a.json is missing"))
        );
        let staged = good.replace(
            "key-staging absent",
            "key-staging /var/lib/nodeimg/validator-keys/group-1",
        );
        assert!(matches!(check(&staged), Outcome::Failed(_)));
        // The master must hold no staging copy either; the tutorial has no keys.
        let master = spec.machine("master").unwrap();
        let none = Facts::parse("@@P@@ key-staging absent\n");
        assert!(matches!(
            validator_keys_check(&spec, &seeds["master"], master, &none),
            Outcome::Ok(_)
        ));
        let w = world();
        let t_nfs = w.spec.machine("nfs").unwrap();
        assert!(matches!(
            validator_keys_check(&w.spec, &w.seeds["nfs"], t_nfs, &none),
            Outcome::NotApplicable
        ));
    }

    #[test]
    fn the_staking_master_also_waits_for_its_release() {
        let tutorial = crate::load_profile_str("t.yaml", PROFILE).unwrap().spec;
        let hoodi = crate::load_profile_str("h.yaml", include_str!("../profiles/hoodi.yaml"))
            .unwrap()
            .spec;
        let steps = |spec: &Spec, name: &str| online_steps_of(spec, spec.machine(name).unwrap());
        assert!(!steps(&tutorial, "master").contains(&"release"));
        assert!(steps(&hoodi, "master").contains(&"release"));
        assert!(!steps(&hoodi, "worker-1").contains(&"release"));
        assert_eq!(
            steps(&hoodi, "nfs"),
            ["forget-seed", "apt-update", "apt-upgrade", "packages"]
        );
    }

    const PROFILE: &str = include_str!("../profiles/tutorial.yaml");

    struct World {
        spec: Spec,
        secrets: Secrets,
        seeds: BTreeMap<String, Seed>,
    }

    fn world() -> World {
        world_of(PROFILE)
    }

    fn world_of(profile: &str) -> World {
        let v = crate::load_profile_str("tutorial.yaml", profile).unwrap();
        let secrets = Secrets::generate(&v.spec).unwrap();
        let engine = crate::render::Engine::new(None).unwrap();
        let seeds = crate::render_seeds(&v.spec, &secrets, &engine, &[], &Default::default())
            .unwrap()
            .into_iter()
            .collect();
        World {
            spec: v.spec,
            secrets,
            seeds,
        }
    }

    /// What a healthy worker-1 reports.
    fn healthy_worker(w: &World) -> String {
        let seed = &w.seeds["worker-1"];
        let key = w.secrets.machine("worker-1").unwrap().public_key().unwrap();
        let key = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let mut lines = vec![
            "begin worker-1 uptime=100".to_string(),
            "result {\"v1\": {\"errors\": []}}".into(),
            "hostname worker-1".into(),
            "hosts 172.20.10.10 nfs".into(),
            "hosts 172.20.10.11 master".into(),
            "hosts 172.20.10.12 worker-1".into(),
            "addr 2: enp0s3    inet 172.20.10.12/20 brd 172.20.15.255 scope global enp0s3".into(),
            "link 2: enp0s3: <UP> mtu 1500\\    link/ether 52:54:00:14:0a:0c brd ff:ff:ff:ff:ff:ff".into(),
            "ufw Status: active".into(),
            "ufw 22/tcp                     ALLOW IN    Anywhere                   # ssh".into(),
            "ufw 10250,10255,10257,10259,12379,16443,19001,25000/tcp ALLOW IN    172.20.0.0/20 # k8s".into(),
            "ufw 4789/udp                   ALLOW IN    172.20.0.0/20".into(),
            "ufw 12000/udp                  ALLOW IN    Anywhere".into(),
            "ufw 13000/tcp                  ALLOW IN    Anywhere".into(),
            "ufw Anywhere on vxlan.calico   ALLOW IN    Anywhere".into(),
            "ufw Anywhere on cali+          ALLOW IN    Anywhere".into(),
            "ufw Anywhere                   ALLOW OUT   Anywhere on vxlan.calico".into(),
            "ufw Anywhere                   ALLOW OUT   Anywhere on cali+".into(),
            "listen LISTEN 0 128 0.0.0.0:22 0.0.0.0:*".into(),
            format!("hostkey 127.0.0.1 {key}"),
            "peer nfs ok".into(),
            "peer master ok".into(),
            "ssh-login 172.20.10.10 denied-without-key staker@172.20.10.10: Permission denied (publickey).".into(),
            "nfs-mount ok".into(),
            "nfs-write ok 1001:2000".into(),
            "status ssh done 1 1 listening".into(),
            "status forget-seed done 1 1 cloud-init's copies of the seed removed".into(),
            "seed-copies none".into(),
            "status apt-update retrying 1 1 no package index reachable (offline?)".into(),
            "status firewall done 1 1 active".into(),
            "status chrony done 1 1 pools".into(),
            "status microk8s pending 0 0 -".into(),
            "online-service active".into(),
        ];
        for (path, hash) in written_files(&seed.user_data) {
            lines.push(format!("file {path} {hash}"));
        }
        lines.push("end worker-1".into());
        lines.iter().map(|l| format!("@@P@@ {l}\n")).collect()
    }

    fn eval(w: &World, serial: &str) -> MachineResult {
        let m = w.spec.machine("worker-1").unwrap();
        evaluate(
            &w.spec,
            &w.secrets,
            &w.seeds["worker-1"],
            m,
            &Facts::parse(serial),
            Boot::First,
        )
    }

    #[test]
    fn a_healthy_report_passes_every_check() {
        let w = world();
        let r = eval(&w, &healthy_worker(&w));
        assert!(r.passed(), "{:#?}", r.checks);
        assert_eq!(
            r.checks["microk8s-ready"],
            Outcome::NotCheckableOffline("needs the snap store".into())
        );
        assert!(
            matches!(&r.checks["online-steps"], Outcome::Ok(d) if d.starts_with("retrying offline"))
        );
    }

    #[test]
    fn on_another_ssh_port_nothing_may_answer_on_22() {
        let w = world_of(&PROFILE.replace("  port: 22\n", "  port: 2222\n"));
        let ok = healthy_worker(&w).replace("0.0.0.0:22 ", "0.0.0.0:2222 ").replace(
            "@@P@@ ssh-login 172.20.10.10 denied-without-key staker@172.20.10.10: Permission denied (publickey).\n",
            "@@P@@ ssh-login 172.20.10.10 ok staker\n@@P@@ ssh-22 172.20.10.10 closed\n",
        );
        let r = eval(&w, &ok);
        assert!(matches!(&r.checks["sshd"], Outcome::Ok(d) if d.starts_with("port 2222")));
        assert!(
            matches!(&r.checks["ssh-peer"], Outcome::Ok(d) if d == "logged in to nfs:2222 as staker, host key pinned, 22 closed"),
            "{:?}",
            r.checks["ssh-peer"]
        );
        let stray = ok.replace(
            "@@P@@ listen LISTEN 0 128 0.0.0.0:2222 0.0.0.0:*\n",
            "@@P@@ listen LISTEN 0 128 0.0.0.0:2222 0.0.0.0:*\n@@P@@ listen LISTEN 0 128 [::]:22 [::]:*\n",
        );
        assert!(failed(&w, &stray, "sshd").contains("still listens on port 22"));
        let open = ok.replace("ssh-22 172.20.10.10 closed", "ssh-22 172.20.10.10 open");
        assert!(failed(&w, &open, "ssh-peer").contains("nfs:22 accepts connections"));
        let other_user = ok.replace(
            "ssh-login 172.20.10.10 ok staker",
            "ssh-login 172.20.10.10 ok root",
        );
        assert!(failed(&w, &other_user, "ssh-peer").contains("root"));
    }

    fn failed(w: &World, serial: &str, check: &str) -> String {
        match &eval(w, serial).checks[check] {
            Outcome::Failed(why) => why.clone(),
            other => panic!("{check} should fail, got {other:?}"),
        }
    }

    /// A later boot: the same machine with cloud-init off passes; cloud-init
    /// running again, left on, or a machine that forgot its first boot fails.
    #[test]
    fn a_later_boot_must_come_back_with_cloud_init_off() {
        let w = world();
        let m = w.spec.machine("worker-1").unwrap();
        let later = |serial: &str| {
            evaluate(
                &w.spec,
                &w.secrets,
                &w.seeds["worker-1"],
                m,
                &Facts::parse(serial),
                Boot::Later,
            )
        };
        let first = healthy_worker(&w).replace(
            "@@P@@ result {\"v1\": {\"errors\": []}}\n",
            "@@P@@ boot first\n@@P@@ result\n",
        );
        let came_back = healthy_worker(&w).replace(
            "@@P@@ result {\"v1\": {\"errors\": []}}\n",
            "@@P@@ boot later\n@@P@@ result\n@@P@@ cloud-init-again ran=no disabled=yes\n",
        );
        assert_ne!(came_back, healthy_worker(&w));
        let r = later(&came_back);
        assert!(r.passed(), "{:?}", r.checks);
        assert_eq!(
            r.checks["cloud-init"],
            Outcome::Ok("off since the first boot; did not run again".into())
        );
        for (fault, why) in [
            ("ran=yes disabled=yes", "must stay off after the first boot"),
            ("ran=no disabled=no", "must stay off after the first boot"),
        ] {
            let r = later(&came_back.replace("ran=no disabled=yes", fault));
            assert!(
                matches!(&r.checks["cloud-init"], Outcome::Failed(d) if d.contains(why) && d.contains(fault)),
                "{fault}: {:?}",
                r.checks["cloud-init"]
            );
        }
        let r = later(&first);
        assert!(
            matches!(&r.checks["cloud-init"], Outcome::Failed(d) if d.contains("booted as a new one")),
            "{:?}",
            r.checks["cloud-init"]
        );
        // The other checks hold on a later boot as on the first.
        let r = later(&came_back.replace("hostname worker-1\n", "hostname localhost\n"));
        assert!(!r.checks["hostname"].passed());
    }

    #[test]
    fn each_check_catches_its_fault() {
        let w = world();
        let ok = healthy_worker(&w);
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "\"errors\": []",
                "\"errors\": [\"runcmd\"]",
                "cloud-init",
                "reported errors",
            ),
            (
                "hostname worker-1\n",
                "hostname localhost\n",
                "hostname",
                "\"localhost\"",
            ),
            (
                "@@P@@ hosts 172.20.10.10 nfs\n",
                "",
                "hostname",
                "lacks nfs",
            ),
            (
                "172.20.10.12/20",
                "172.20.10.99/20",
                "network",
                "no interface has 172.20.10.12/20",
            ),
            (
                "peer master ok",
                "peer master fail",
                "peers",
                "cannot reach master",
            ),
            (
                "0.0.0.0:22 ",
                "0.0.0.0:2222 ",
                "sshd",
                "nothing listens on port 22",
            ),
            (
                "hostkey 127.0.0.1 ssh-ed25519 AAAA",
                "hostkey 127.0.0.1 ssh-ed25519 BBBB",
                "sshd",
                "host key",
            ),
            (
                "denied-without-key staker@172.20.10.10: Permission denied (publickey).",
                "fail ssh: connect to host 172.20.10.10 port 22: Connection timed out",
                "ssh-peer",
                "Connection timed out",
            ),
            (
                "ufw Status: active",
                "ufw Status: inactive",
                "ufw",
                "not active",
            ),
            (
                "@@P@@ ufw 4789/udp                   ALLOW IN    172.20.0.0/20\n",
                "",
                "ufw",
                "missing [4789/udp",
            ),
            (
                "ufw 12000/udp                  ALLOW IN    Anywhere",
                "ufw 12000/udp ALLOW IN Anywhere\n@@P@@ ufw 8080/tcp ALLOW IN Anywhere",
                "ufw",
                "unexpected [8080/tcp",
            ),
            (
                "nfs-write ok 1001:2000",
                "nfs-write fail",
                "nfs-client",
                "write as 1001:2000",
            ),
            (
                "nfs-mount ok",
                "nfs-mount fail",
                "nfs-client",
                "cannot mount",
            ),
            (
                "status chrony done",
                "status chrony failed",
                "online-steps",
                "local step chrony",
            ),
            (
                "seed-copies none",
                "seed-copies /var/lib/cloud/instances/iid-x/obj.pkl ",
                "seed-copies",
                "still in /var/lib/cloud/instances/iid-x/obj.pkl",
            ),
            (
                "status forget-seed done",
                "status forget-seed retrying",
                "seed-copies",
                "forget-seed retrying",
            ),
            (
                "online-service active",
                "online-service failed",
                "online-steps",
                "nodeimg-online.service",
            ),
        ];
        for (from, to, check, why) in cases {
            assert!(
                ok.contains(from),
                "case {check}: {from:?} not in the healthy report"
            );
            let got = failed(&w, &ok.replacen(from, to, 1), check);
            assert!(got.contains(why), "{check}: {got:?} lacks {why:?}");
        }
        // A file that differs from the rendered one.
        let conf = written_files(&w.seeds["worker-1"].user_data)["/etc/chrony/chrony.conf"].clone();
        assert!(failed(&w, &ok.replace(&conf, "0000"), "chrony").contains("differs"));
        let launch = written_files(&w.seeds["worker-1"].user_data)["/etc/microk8s.yaml"].clone();
        assert!(failed(&w, &ok.replace(&launch, "0000"), "microk8s-config").contains("differs"));
    }

    #[test]
    fn a_silent_machine_fails_every_check() {
        let w = world();
        let r = eval(&w, "[  1.0] kernel only\n");
        assert!(CHECKS
            .iter()
            .all(|c| matches!(r.checks[*c], Outcome::Failed(_))));
    }
}

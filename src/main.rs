//! The nodeimg command line: argument parsing and printing only; the work
//! is done by the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nodeimg::diag::{Diagnostic, Kind};

#[derive(Parser)]
#[command(
    name = "nodeimg",
    version,
    about = "Build cloud-init seeds that turn stock Ubuntu machines into a MicroK8s staking cluster on first boot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render, check and write every machine's seed (user-data, meta-data,
    /// network-config, seed.iso) and SHA256SUMS.
    Build(BuildArgs),
    /// Write a disk image or seed ISO to a block device (or a file), then
    /// read it back to verify it. Refuses devices in use.
    Flash(FlashArgs),
    /// Write the staking release: chart archives (verified), Helm values,
    /// the storage manifest and install.sh with the exact helm commands.
    Release(ReleaseArgs),
    /// Check the profile and render every seed in memory; write nothing.
    Validate(ValidateArgs),
    /// Build the seeds, boot every machine in QEMU on a private network, and
    /// check from inside each one that its seed did its job.
    BootTest(BootTestArgs),
    /// Print one rendered file of one machine, secrets masked.
    Show(ShowArgs),
    /// Ask every machine over SSH (host keys pinned from the secrets file)
    /// whether its first boot is done and the cluster healthy; exit 0 only
    /// when every machine is.
    Status(StatusArgs),
    /// Compare each file a machine's seed writes, as the profile renders it
    /// now, with the file on the machine (over SSH, host keys pinned).
    Diff(DiffArgs),
    /// Log in to a machine (or run COMMAND there) over SSH, its host key
    /// pinned from the secrets file; exits with the command's status.
    Ssh(SshArgs),
}

/// How the day-two commands reach the machines.
#[derive(clap::Args)]
struct ReachArgs {
    /// Reach machine NAME at HOST[:PORT] instead of its profile address and
    /// ssh.port (repeatable): a port forward, a jump host's tunnel.
    #[arg(long = "address", value_name = "NAME=HOST[:PORT]")]
    addresses: Vec<String>,
    /// The private key to log in with [default: ssh-agent and ssh's own].
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Secrets file the machines were built with [default: <profile dir>/<profile stem>.secrets.yaml].
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Seconds a machine may take to connect and answer.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

impl ReachArgs {
    fn options(self) -> nodeimg::remote::ReachOptions {
        nodeimg::remote::ReachOptions {
            addresses: self.addresses,
            identity: self.identity,
            secrets: self.secrets,
            timeout: std::time::Duration::from_secs(self.timeout),
        }
    }
}

#[derive(clap::Args)]
struct StatusArgs {
    /// The cluster profile (YAML).
    profile: PathBuf,
    /// Ask only this machine (repeatable).
    #[arg(long = "machine", value_name = "NAME")]
    machines: Vec<String>,
    /// Print the report as JSON (the table still goes to stderr).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    reach: ReachArgs,
}

#[derive(clap::Args)]
struct DiffArgs {
    /// The cluster profile (YAML).
    profile: PathBuf,
    /// Compare only this machine (repeatable).
    #[arg(long = "machine", value_name = "NAME")]
    machines: Vec<String>,
    /// Directory of templates the machines were built with (as `build`).
    #[arg(long)]
    templates: Option<PathBuf>,
    /// The master's chart archives from this folder (as `build --charts`).
    #[arg(long, value_name = "DIR")]
    charts: Option<PathBuf>,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    reach: ReachArgs,
}

#[derive(clap::Args)]
struct SshArgs {
    /// The cluster profile (YAML).
    profile: PathBuf,
    /// The machine's name in the profile.
    machine: String,
    /// A command to run there instead of a login shell (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
    #[command(flatten)]
    reach: ReachArgs,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// The cluster profile (YAML).
    profile: PathBuf,
    /// Output directory [default: out/<cluster name>].
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Rebuild only this machine (repeatable); the others' files are left as they are.
    #[arg(long = "only", value_name = "NAME")]
    only: Vec<String>,
    #[command(flatten)]
    seed: SeedArgs,
    /// Also write each machine's flashable disk image (disk.img): the
    /// profile's base image with the seed embedded.
    #[arg(long)]
    images: bool,
    /// With --images: use this local base image (raw or qcow2) instead
    /// of the profile's `image` section.
    #[arg(long, value_name = "FILE", requires = "images")]
    base_image: Option<PathBuf>,
    /// A staking profile's chart archives (<chart>-<version>.tgz) from
    /// this folder instead of downloading them; still sha256-checked.
    #[arg(long, value_name = "DIR")]
    charts: Option<PathBuf>,
    #[command(flatten)]
    fetch: FetchArgs,
}

#[derive(clap::Args)]
struct FlashArgs {
    /// The disk.img or seed.iso to write.
    image: PathBuf,
    /// The whole disk (e.g. /dev/sdc) or a regular file; everything on it is lost.
    device: PathBuf,
    /// Do not ask before overwriting.
    #[arg(long)]
    yes: bool,
}

#[derive(clap::Args)]
struct ReleaseArgs {
    /// The cluster profile (YAML).
    profile: PathBuf,
    /// Output directory [default: out/<cluster name>.release].
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Only the values, storage manifest and commands; fetch no chart.
    #[arg(long)]
    values_only: bool,
    /// Take the chart archives (<chart>-<version>.tgz) from this folder
    /// instead of downloading them; still checked against their sha256.
    #[arg(long, value_name = "DIR", conflicts_with = "values_only")]
    charts: Option<PathBuf>,
    /// Secrets file [default: <profile dir>/<profile stem>.secrets.yaml].
    #[arg(long)]
    secrets: Option<PathBuf>,
    #[command(flatten)]
    fetch: FetchArgs,
}

#[derive(clap::Args)]
struct ValidateArgs {
    /// The cluster profile (YAML).
    profile: PathBuf,
    #[command(flatten)]
    seed: SeedArgs,
}

#[derive(clap::Args)]
struct BootTestArgs {
    /// The cluster profile (YAML).
    profile: PathBuf,
    /// Bootable base disk image (qcow2 or raw): an Ubuntu cloud image, or
    /// the CI guest from qemu/build-guest. It is never written. With
    /// --images it is the base of the disk images [default there: the
    /// profile's `image` section].
    #[arg(long, required_unless_present = "images")]
    image: Option<PathBuf>,
    /// Boot each machine from its disk image (seed embedded, as
    /// `build --images` makes it) instead of the base image + seed ISO.
    #[arg(long)]
    images: bool,
    /// A staking profile's chart archives from this folder (as `build --charts`).
    #[arg(long, value_name = "DIR")]
    charts: Option<PathBuf>,
    #[command(flatten)]
    fetch: FetchArgs,
    /// Output directory [default: out/<cluster name>]; logs in DIR.boot-test/.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 1200)]
    timeout: u64,
    /// Memory per machine, MiB.
    #[arg(long, default_value_t = 768)]
    memory: u32,
    /// kvm or tcg [default: kvm where it boots guests, else tcg].
    #[arg(long, value_parser = ["kvm", "tcg"])]
    accel: Option<String>,
    /// Keep the disk overlays and test seeds after the run.
    #[arg(long)]
    keep: bool,
    /// Once the cluster is up, destroy this machine's disk, rebuild its
    /// seed (--only) and boot it again; it must come back the same.
    #[arg(long, value_name = "NAME")]
    reprovision: Option<String>,
    /// Then shut this machine down with its power button and boot it
    /// again (repeatable): it must come back as configured, cloud-init off.
    #[arg(long, value_name = "NAME")]
    reboot: Vec<String>,
    /// A throwaway private key whose public half is in ssh.authorized_keys:
    /// each machine then logs in with it to the next one on ssh.port. It is
    /// copied into the test machines: never use your own key.
    #[arg(long, value_name = "FILE")]
    login_key: Option<PathBuf>,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    seed: SeedArgs,
}

#[derive(clap::Args)]
struct ShowArgs {
    /// The cluster profile (YAML).
    profile: PathBuf,
    /// The machine's name in the profile.
    machine: String,
    /// user-data, meta-data or network-config.
    #[arg(default_value = "user-data")]
    file: String,
    /// Print the secrets instead of masking them.
    #[arg(long)]
    reveal: bool,
    #[command(flatten)]
    seed: SeedArgs,
}

/// How the seeds are rendered: the secrets they carry and the templates.
#[derive(clap::Args)]
struct SeedArgs {
    /// Secrets file [default: <profile dir>/<profile stem>.secrets.yaml].
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Directory of templates that replace the built-in ones, file by file.
    #[arg(long)]
    templates: Option<PathBuf>,
}

#[derive(clap::Args)]
struct FetchArgs {
    /// Download nothing: use only the download cache.
    #[arg(long)]
    offline: bool,
    /// The download cache [default: $NODEIMG_CACHE/downloads or ~/.cache/nodeimg/downloads].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
}

impl FetchArgs {
    fn options(self) -> nodeimg::fetch::FetchOptions {
        let mut o = nodeimg::fetch::FetchOptions {
            offline: self.offline,
            ..Default::default()
        };
        if let Some(dir) = self.cache {
            o.cache_dir = dir;
        }
        o
    }
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm_on_terminal(text: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    eprintln!("{text}");
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(Diagnostic::new(
            Kind::Device,
            "not confirmed: stdin is not a terminal, so nodeimg cannot ask"
        )
        .hint("check the device above, then run again with --yes"));
    }
    eprint!("type yes to overwrite it: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// One line per thing added to the secrets file (never its values).
fn print_secrets_changes(changes: &nodeimg::secrets::Changes, file: &std::path::Path) {
    let file = file.display();
    if changes.created {
        eprintln!("created the secrets file {file} (mode 0600): keep it private and backed up");
        return;
    }
    for m in &changes.new_machines {
        eprintln!("added a new SSH host key for machine {m} to {file}");
    }
    if changes.new_jwt {
        eprintln!("added a JWT secret to {file}");
    }
    if changes.new_signer_db_password {
        eprintln!("added the signer database's password to {file}");
    }
}

/// Every message to stderr goes through here: secrets are hidden.
fn say(text: &str) {
    eprint!("{}", nodeimg::redact::redact(text));
}

fn print_error(e: &anyhow::Error) {
    use nodeimg::diag::Diagnostic;
    let known = e.chain().find(|c| {
        c.downcast_ref::<nodeimg::Report>().is_some() || c.downcast_ref::<Diagnostic>().is_some()
    });
    let Some(known) = known else {
        // Not a mistake nodeimg knows how to explain: what failed, on what.
        say(&format!("error: {e:#}\n"));
        return;
    };
    if let Some(report) = known.downcast_ref::<nodeimg::Report>() {
        say(&report.to_string());
        if report.is_about_profile() {
            let n = report.error_count();
            say(&format!(
                "{n} error{} in {}: nothing was written\n",
                if n == 1 { "" } else { "s" },
                report.file
            ));
        }
    } else {
        say(&format!("{known}\n"));
    }
    // What the caller was doing when it failed, if it said so.
    let doing: Vec<String> = e
        .chain()
        .take_while(|c| !std::ptr::addr_eq(*c, known))
        .map(|c| c.to_string())
        .collect();
    if !doing.is_empty() {
        say(&format!("  context: {}\n", doing.join(": ")));
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build(args) => args.run(),
        Command::Flash(args) => args.run(),
        Command::Release(args) => args.run(),
        Command::Validate(args) => args.run(),
        Command::BootTest(args) => args.run(),
        Command::Show(args) => args.run(),
        Command::Status(args) => args.run(),
        Command::Diff(args) => args.run(),
        Command::Ssh(args) => args.run(),
    }
}

impl StatusArgs {
    fn run(self) -> anyhow::Result<()> {
        let report = nodeimg::status(&self.profile, &self.machines, &self.reach.options())?;
        if self.json {
            say(&report.table());
            let json = serde_json::to_string_pretty(&report)?;
            println!("{}", nodeimg::redact::redact(&json));
        } else {
            print!("{}", nodeimg::redact::redact(&report.table()));
        }
        if !report.healthy {
            anyhow::bail!("status: {}", report.summary());
        }
        Ok(())
    }
}

impl DiffArgs {
    fn run(self) -> anyhow::Result<()> {
        let opts = nodeimg::DiffOptions {
            templates: self.templates,
            charts_dir: self.charts,
            fetch: self.fetch.options(),
        };
        let diffs = nodeimg::diff(&self.profile, &self.machines, &self.reach.options(), &opts)?;
        print!(
            "{}",
            nodeimg::redact::redact(&nodeimg::remote::diff::render(&diffs))
        );
        let apart: Vec<&str> = diffs
            .iter()
            .filter(|d| !d.in_sync())
            .map(|d| d.machine.as_str())
            .collect();
        if !apart.is_empty() {
            anyhow::bail!("diff: not in sync: {}", apart.join(", "));
        }
        Ok(())
    }
}

impl SshArgs {
    fn run(self) -> anyhow::Result<()> {
        let code = nodeimg::ssh(
            &self.profile,
            &self.machine,
            &self.command,
            &self.reach.options(),
        )?;
        if code == 255 {
            // ssh's own words are above (unless a config silenced them).
            say(&format!(
                "nodeimg ssh: ssh could not log in to {} or lost the connection (exit status 255); a host key that does not match the one nodeimg made for it is refused\n",
                self.machine
            ));
        }
        // The remote command's own status, as ssh passes it on.
        std::process::exit(code);
    }
}

impl BuildArgs {
    fn run(self) -> anyhow::Result<()> {
        let BuildArgs {
            profile,
            out,
            only,
            seed,
            images,
            base_image,
            charts,
            fetch,
        } = self;
        let s = nodeimg::build(
            &profile,
            &nodeimg::BuildOptions {
                out_dir: out,
                only,
                secrets: seed.secrets,
                templates: seed.templates,
                images,
                base_image,
                charts_dir: charts,
                fetch: fetch.options(),
            },
        )?;
        say(&s.warnings);
        print_secrets_changes(&s.secrets_changes, &s.secrets_file);
        println!(
            "built {} seed(s){} in {}: {}",
            s.machines.len(),
            if images { " and disk image(s)" } else { "" },
            s.out_dir.display(),
            s.machines.join(", ")
        );
        Ok(())
    }
}

impl FlashArgs {
    fn run(self) -> anyhow::Result<()> {
        let FlashArgs { image, device, yes } = self;
        let target = nodeimg::flash::Target::inspect(&device)?;
        let mut confirm = |text: &str| {
            if yes {
                eprintln!("{text}");
                Ok(true)
            } else {
                confirm_on_terminal(text)
            }
        };
        let done = nodeimg::flash::flash(&image, &target, &mut confirm)?;
        println!(
            "wrote {} bytes to {} and read them back: sha256 {} verified",
            done.bytes,
            device.display(),
            done.sha256
        );
        Ok(())
    }
}

impl ReleaseArgs {
    fn run(self) -> anyhow::Result<()> {
        let ReleaseArgs {
            profile,
            out,
            values_only,
            charts,
            secrets,
            fetch,
        } = self;
        let s = nodeimg::release(
            &profile,
            &nodeimg::ReleaseOptions {
                out_dir: out,
                values_only,
                charts_dir: charts,
                secrets,
                fetch: fetch.options(),
            },
        )?;
        say(&s.warnings);
        print_secrets_changes(&s.secrets_changes, &s.secrets_file);
        let names: Vec<&str> = s.releases.iter().map(|r| r.name.as_str()).collect();
        println!(
            "wrote the release ({}) to {}: run {}/install.sh",
            names.join(", "),
            s.out_dir.display(),
            s.out_dir.display()
        );
        Ok(())
    }
}

impl ValidateArgs {
    fn run(self) -> anyhow::Result<()> {
        let ValidateArgs { profile, seed } = self;
        let warnings =
            nodeimg::validate_only(&profile, seed.secrets.as_deref(), seed.templates.as_deref())?;
        say(&warnings);
        println!("{}: ok", profile.display());
        Ok(())
    }
}

impl BootTestArgs {
    fn run(self) -> anyhow::Result<()> {
        let BootTestArgs {
            profile,
            image,
            out,
            timeout,
            memory,
            accel,
            keep,
            reprovision,
            reboot,
            login_key,
            json,
            seed,
            images,
            charts,
            fetch,
        } = self;
        let accel = accel.map(|a| {
            if a == "kvm" {
                nodeimg::boottest::Accel::Kvm
            } else {
                nodeimg::boottest::Accel::Tcg
            }
        });
        let opts = nodeimg::boottest::BootOptions {
            image: image.clone().unwrap_or_default(),
            timeout: std::time::Duration::from_secs(timeout),
            memory_mib: memory,
            accel,
            keep,
            reprovision,
            reboot,
            images_from: None,
            login_key,
        };
        let build = nodeimg::BuildOptions {
            out_dir: out,
            only: Vec::new(),
            secrets: seed.secrets,
            templates: seed.templates,
            images,
            base_image: if images { image.clone() } else { None },
            charts_dir: charts,
            fetch: fetch.options(),
        };
        let report = nodeimg::boot_test(&profile, &build, &opts)?;
        if json {
            // The table still goes to the terminal, on stderr.
            say(&report.table());
            let json = serde_json::to_string_pretty(&report)?;
            println!("{}", nodeimg::redact::redact(&json));
        } else {
            print!("{}", nodeimg::redact::redact(&report.table()));
        }
        if !report.passed() {
            anyhow::bail!(
                "boot-test failed: see the table above and the serial logs in {}",
                report.logs.display()
            );
        }
        Ok(())
    }
}

impl ShowArgs {
    fn run(self) -> anyhow::Result<()> {
        let ShowArgs {
            profile,
            machine,
            file,
            reveal,
            seed,
        } = self;
        let text = nodeimg::show(
            &profile,
            &machine,
            &file,
            reveal,
            seed.secrets.as_deref(),
            seed.templates.as_deref(),
        )?;
        print!("{text}");
        Ok(())
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

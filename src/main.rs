//! The nodeimg command line: argument parsing and printing only; the work
//! is done by the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Build {
        /// The cluster profile (YAML).
        profile: PathBuf,
        /// Output directory [default: out/<cluster name>].
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Rebuild only this machine (repeatable); the others' files are left as they are.
        #[arg(long = "only", value_name = "NAME")]
        only: Vec<String>,
        /// Secrets file [default: <profile dir>/<profile stem>.secrets.yaml].
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Directory of templates that replace the built-in ones, file by file.
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Check the profile and render every seed in memory; write nothing.
    Validate {
        profile: PathBuf,
        #[arg(long)]
        secrets: Option<PathBuf>,
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Build the seeds, boot every machine in QEMU on a private network, and
    /// check from inside each one that its seed did its job.
    BootTest {
        profile: PathBuf,
        /// Bootable base disk image (qcow2 or raw): an Ubuntu cloud image, or
        /// the CI guest from qemu/build-guest. It is never written.
        #[arg(long)]
        image: PathBuf,
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
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        secrets: Option<PathBuf>,
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Print one rendered file of one machine, secrets masked.
    Show {
        profile: PathBuf,
        machine: String,
        /// user-data, meta-data or network-config.
        #[arg(default_value = "user-data")]
        file: String,
        /// Print the secrets instead of masking them.
        #[arg(long)]
        reveal: bool,
        #[arg(long)]
        secrets: Option<PathBuf>,
        #[arg(long)]
        templates: Option<PathBuf>,
    },
}

fn print_error(e: &anyhow::Error) {
    if let Some(report) = e.downcast_ref::<nodeimg::Report>() {
        eprint!("{report}");
        let n = report.error_count();
        eprintln!(
            "{n} error{} in {}: nothing was written",
            if n == 1 { "" } else { "s" },
            report.file
        );
    } else {
        let text = format!("{e:#}");
        if text.contains(": error: ") {
            eprintln!("{text}");
        } else {
            eprintln!("error: {text}");
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build {
            profile,
            out,
            only,
            secrets,
            templates,
        } => {
            let s = nodeimg::build(
                &profile,
                &nodeimg::BuildOptions {
                    out_dir: out,
                    only,
                    secrets,
                    templates,
                },
            )?;
            eprint!("{}", s.warnings);
            if s.secrets_changes.created {
                eprintln!(
                    "created the secrets file {} (mode 0600): keep it private and backed up",
                    s.secrets_file.display()
                );
            }
            for m in &s.secrets_changes.new_machines {
                eprintln!(
                    "added a new SSH host key for machine {m} to {}",
                    s.secrets_file.display()
                );
            }
            println!(
                "built {} seed(s) in {}: {}",
                s.machines.len(),
                s.out_dir.display(),
                s.machines.join(", ")
            );
        }
        Command::Validate {
            profile,
            secrets,
            templates,
        } => {
            let warnings =
                nodeimg::validate_only(&profile, secrets.as_deref(), templates.as_deref())?;
            eprint!("{warnings}");
            println!("{}: ok", profile.display());
        }
        Command::BootTest {
            profile,
            image,
            out,
            timeout,
            memory,
            accel,
            keep,
            reprovision,
            json,
            secrets,
            templates,
        } => {
            let accel = accel.map(|a| {
                if a == "kvm" {
                    nodeimg::boottest::Accel::Kvm
                } else {
                    nodeimg::boottest::Accel::Tcg
                }
            });
            let opts = nodeimg::boottest::BootOptions {
                image,
                timeout: std::time::Duration::from_secs(timeout),
                memory_mib: memory,
                accel,
                keep,
                reprovision,
            };
            let build = nodeimg::BuildOptions {
                out_dir: out,
                only: Vec::new(),
                secrets,
                templates,
            };
            let report = nodeimg::boot_test(&profile, &build, &opts)?;
            if json {
                // The table still goes to the terminal, on stderr.
                eprint!("{}", report.table());
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            if !report.passed() {
                anyhow::bail!(
                    "boot-test failed: see the table above and the serial logs in {}",
                    report.logs.display()
                );
            }
        }
        Command::Show {
            profile,
            machine,
            file,
            reveal,
            secrets,
            templates,
        } => {
            let text = nodeimg::show(
                &profile,
                &machine,
                &file,
                reveal,
                secrets.as_deref(),
                templates.as_deref(),
            )?;
            print!("{text}");
        }
    }
    Ok(())
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

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

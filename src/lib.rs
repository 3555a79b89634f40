//! nodeimg: one cluster profile in, one cloud-init NoCloud seed per machine
//! out. The pipeline runs in one direction:
//!
//! load -> validate -> resolve -> render -> check -> pack -> write
//!
//! Each stage is a module; the CLI (`main.rs`) only parses arguments and
//! prints.

pub mod boottest;
pub mod check;
pub mod diag;
pub mod iso;
pub mod output;
pub mod profile;
pub mod render;
pub mod resolve;
pub mod secrets;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use diag::Report;
pub use render::Seed;
pub use secrets::Secrets;
pub use validate::Spec;

/// A profile that passed validation, with its warnings.
pub struct Validated {
    pub spec: Spec,
    pub report: Report,
}

/// Load and validate: every problem of the profile, or the checked spec.
/// A profile error comes back as a [`Report`] inside the `anyhow::Error`.
pub fn load_profile(path: &Path) -> Result<Validated> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the profile {}", path.display()))?;
    load_profile_str(&path.display().to_string(), &text)
}

/// Like [`load_profile`], from text; `file` names it in messages.
pub fn load_profile_str(file: &str, text: &str) -> Result<Validated> {
    let loaded = profile::load(file, text)?;
    let (spec, diags) = validate::validate(&loaded.profile);
    let report = Report::new(file, Some(loaded.tree), diags);
    match spec {
        Some(spec) if !report.has_errors() => Ok(Validated { spec, report }),
        _ => Err(report.into()),
    }
}

/// Everything `build` needs besides the profile.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub out_dir: Option<PathBuf>,
    /// Only these machines (empty: all).
    pub only: Vec<String>,
    pub secrets: Option<PathBuf>,
    pub templates: Option<PathBuf>,
}

/// What a build did, for the summary line.
#[derive(Debug)]
pub struct BuildSummary {
    pub out_dir: PathBuf,
    pub machines: Vec<String>,
    pub secrets_file: PathBuf,
    pub secrets_changes: secrets::Changes,
    pub warnings: String,
    /// The checked profile and the secrets the seeds were made with.
    pub spec: Spec,
    pub secrets: Secrets,
}

/// Rendered and checked seeds for the selected machines.
pub fn render_seeds(
    spec: &Spec,
    secrets: &Secrets,
    engine: &render::Engine,
    only: &[String],
) -> Result<Vec<(String, Seed)>> {
    let mut seeds = Vec::new();
    let mut problems = Vec::new();
    for m in &spec.machines {
        if !only.is_empty() && !only.contains(&m.name) {
            continue;
        }
        let ctx = resolve::context(spec, secrets, m)?;
        let seed = engine
            .render_machine(&ctx)
            .with_context(|| format!("rendering the seed of {}", m.name))?;
        problems.extend(check::check_seed(&m.name, &seed));
        seeds.push((m.name.clone(), seed));
    }
    if !problems.is_empty() {
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        bail!("{}", text.join("\n"));
    }
    Ok(seeds)
}

fn check_only(spec: &Spec, only: &[String]) -> Result<()> {
    for name in only {
        if spec.machine(name).is_none() {
            let names: Vec<&str> = spec.machines.iter().map(|m| m.name.as_str()).collect();
            bail!(
                "--only {name}: the profile has no machine of that name\n  hint: machines: {}",
                names.join(", ")
            );
        }
    }
    Ok(())
}

pub fn secrets_path(profile: &Path, explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| secrets::default_path(profile))
}

/// `nodeimg build`: validate, make or reuse the secrets, render, check,
/// pack, and write the output atomically.
pub fn build(profile_path: &Path, opts: &BuildOptions) -> Result<BuildSummary> {
    let v = load_profile(profile_path)?;
    check_only(&v.spec, &opts.only)?;
    let engine = render::Engine::new(opts.templates.as_deref())?;
    let secrets_file = secrets_path(profile_path, opts.secrets.as_deref());
    // Render and check with the secrets before persisting anything new, so
    // a template error leaves no new file behind.
    let (secrets, changes) = secrets::load_or_generate(&secrets_file, &v.spec)?;
    let seeds = render_seeds(&v.spec, &secrets, &engine, &opts.only)?;
    let mut machines = Vec::new();
    for (name, seed) in &seeds {
        let iso = iso::seed_iso(seed).with_context(|| format!("packing the seed of {name}"))?;
        machines.push((
            name.clone(),
            vec![
                output::OutFile {
                    name: "user-data",
                    bytes: seed.user_data.clone().into_bytes(),
                    private: true,
                },
                output::OutFile {
                    name: "meta-data",
                    bytes: seed.meta_data.clone().into_bytes(),
                    private: false,
                },
                output::OutFile {
                    name: "network-config",
                    bytes: seed.network_config.clone().into_bytes(),
                    private: false,
                },
                output::OutFile {
                    name: "seed.iso",
                    bytes: iso,
                    private: true,
                },
            ],
        ));
    }
    if changes.created || !changes.new_machines.is_empty() {
        secrets.write(&secrets_file)?;
    }
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&v.spec.cluster_name));
    output::write_build(&out_dir, &machines, !opts.only.is_empty())?;
    Ok(BuildSummary {
        out_dir,
        machines: seeds.into_iter().map(|(n, _)| n).collect(),
        secrets_file,
        secrets_changes: changes,
        warnings: v.report.render_filtered(|d| !d.is_error()),
        spec: v.spec,
        secrets,
    })
}

/// `nodeimg validate`: everything `build` checks, writing nothing. Returns
/// the warnings.
pub fn validate_only(
    profile_path: &Path,
    secrets: Option<&Path>,
    templates: Option<&Path>,
) -> Result<String> {
    let v = load_profile(profile_path)?;
    let engine = render::Engine::new(templates)?;
    let secrets_file = secrets_path(profile_path, secrets);
    let (secrets, _) = secrets::load_or_generate(&secrets_file, &v.spec)?;
    let seeds = render_seeds(&v.spec, &secrets, &engine, &[])?;
    for (name, seed) in &seeds {
        iso::seed_iso(seed).with_context(|| format!("packing the seed of {name}"))?;
    }
    Ok(v.report.render_filtered(|d| !d.is_error()))
}

/// The files `show` can print.
pub const SHOWABLE: &[&str] = &["user-data", "meta-data", "network-config"];

/// `nodeimg show`: one rendered file of one machine, secrets masked unless
/// `reveal`.
pub fn show(
    profile_path: &Path,
    machine: &str,
    file: &str,
    reveal: bool,
    secrets: Option<&Path>,
    templates: Option<&Path>,
) -> Result<String> {
    if !SHOWABLE.contains(&file) {
        bail!(
            "cannot show {file:?}\n  hint: choose one of: {}",
            SHOWABLE.join(", ")
        );
    }
    let v = load_profile(profile_path)?;
    check_only(&v.spec, &[machine.to_string()])?;
    let engine = render::Engine::new(templates)?;
    let secrets_file = secrets_path(profile_path, secrets);
    if reveal && !secrets_file.exists() {
        bail!(
            "{}: no secrets file yet, so there is nothing to reveal\n  hint: run `nodeimg build` first; it creates the secrets",
            secrets_file.display()
        );
    }
    let (secrets, _) = secrets::load_or_generate(&secrets_file, &v.spec)?;
    let seeds = render_seeds(&v.spec, &secrets, &engine, &[machine.to_string()])?;
    let (_, seed) = seeds
        .into_iter()
        .next()
        .context("internal: no seed rendered")?;
    let text = match file {
        "user-data" => seed.user_data,
        "meta-data" => seed.meta_data,
        _ => seed.network_config,
    };
    Ok(if reveal {
        text
    } else {
        mask(&text, &secrets.values())
    })
}

pub const MASK: &str = "<secret: nodeimg show --reveal>";

/// Replaces every line of every secret value (and the value itself) in
/// `text`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        for line in s.lines() {
            let line = line.trim();
            if line.len() >= 16 && !line.starts_with("-----") {
                out = out.replace(line, MASK);
            }
        }
    }
    out
}

/// `nodeimg boot-test`: builds the seeds into `opts.out_dir` (as `build`
/// does), then boots every machine and checks it. Run files and serial logs
/// go to `<out>.boot-test/`.
pub fn boot_test(
    profile_path: &Path,
    build_opts: &BuildOptions,
    opts: &boottest::BootOptions,
) -> Result<boottest::BootReport> {
    if !build_opts.only.is_empty() {
        bail!("boot-test boots the whole cluster: --only is not supported here");
    }
    let summary = build(profile_path, build_opts)?;
    if let Some(name) = &opts.reprovision {
        check_only(&summary.spec, std::slice::from_ref(name))?;
    }
    let seeds: Vec<(String, Seed)> = summary
        .machines
        .iter()
        .map(|m| Ok((m.clone(), read_seed(&summary.out_dir.join(m))?)))
        .collect::<Result<_>>()?;
    // Beside the build output, not in it: SHA256SUMS covers the seeds only.
    let dir = PathBuf::from(format!("{}.boot-test", summary.out_dir.display()));
    // Reprovisioning rebuilds the machine's seed as a user would.
    let rebuild = |name: &str| -> Result<Seed> {
        let only = BuildOptions {
            only: vec![name.to_string()],
            out_dir: Some(summary.out_dir.clone()),
            ..build_opts.clone()
        };
        build(profile_path, &only)?;
        read_seed(&summary.out_dir.join(name))
    };
    boottest::run(
        &summary.spec,
        &summary.secrets,
        &seeds,
        &dir,
        opts,
        &rebuild,
    )
}

/// Reads a machine's seed files back from a build directory.
pub fn read_seed(dir: &Path) -> Result<Seed> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .with_context(|| format!("cannot read {}", dir.join(f).display()))
    };
    Ok(Seed {
        user_data: read("user-data")?,
        meta_data: read("meta-data")?,
        network_config: read("network-config")?,
    })
}

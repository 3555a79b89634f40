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
pub mod disk;
pub mod fetch;
pub mod firstboot;
pub mod flash;
pub mod io;
pub mod iso;
pub mod model;
pub mod output;
pub mod payload;
pub mod profile;
pub mod redact;
pub mod remote;
pub mod render;
pub mod resolve;
pub mod secrets;
pub mod staking;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use diag::{Diagnostic, Kind};
use firstboot::{
    RELEASE_CHARTS, RELEASE_JWT, RELEASE_PASSWORDS, RELEASE_SIGNER_SECRET, RELEASE_STORAGE,
    RELEASE_VALUES,
};

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
    let bytes = io::input::read_regular(path, io::input::MAX_PROFILE).map_err(|why| {
        Diagnostic::new(Kind::Usage, io::input::about("the profile", &why))
            .hint("give the path of a cluster profile (YAML), e.g. profiles/tutorial.yaml")
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let file = path.display().to_string();
        Report::positioned(&file, vec![not_utf8(e.as_bytes(), e.utf8_error())])
    })?;
    load_profile_str(&path.display().to_string(), &text)
}

/// Where a file stops being UTF-8, as a diagnostic at that line and column.
fn not_utf8(bytes: &[u8], e: std::str::Utf8Error) -> diag::Diagnostic {
    let valid = &bytes[..e.valid_up_to()];
    let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    // Columns count characters, as the YAML positions do.
    let col = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    diag::Diagnostic::at_pos(
        Kind::Syntax,
        diag::Pos {
            line: line as u32,
            col: col as u32,
        },
        format!(
            "the file is not UTF-8 text: byte 0x{:02x} here is not part of a UTF-8 character",
            bytes[valid.len()]
        ),
        "save the profile as UTF-8 (editors call it \"UTF-8\"); it may also be a binary file given by mistake",
    )
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

/// What every command that renders seeds starts from: the checked
/// profile, its validator keys and the templates. Each command is its own
/// few steps on top (secrets, payload, seeds, then write, print or boot).
pub struct Session {
    pub checked: Validated,
    pub keys: Vec<staking::GroupKeys>,
    pub engine: render::Engine,
}

impl Session {
    /// Loads and checks the profile; `machines` must name machines of it
    /// (`how` says where they were given, for the error).
    pub fn open(
        profile: &Path,
        templates: Option<&Path>,
        machines: &[String],
        how: &str,
    ) -> Result<Session> {
        let checked = load_profile(profile)?;
        check_machine_names(&checked.spec, machines, how)?;
        let keys = read_validator_keys(&checked, profile)?;
        let engine = render::Engine::new(templates)?;
        Ok(Session {
            checked,
            keys,
            engine,
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.checked.spec
    }

    /// The profile's warnings, rendered.
    pub fn warnings(&self) -> String {
        self.checked.report.render_filtered(|d| !d.is_error())
    }

    /// The staking files each machine carries; with `charts`, the master's
    /// chart archives too (from the folder, or fetched and verified).
    pub fn payload(
        &self,
        secrets: &Secrets,
        charts: Option<(Option<&Path>, &fetch::FetchOptions)>,
    ) -> Result<payload::Payload> {
        staking_payload(&self.checked, &self.keys, secrets, charts)
    }

    /// The rendered and checked seeds of `only` (empty: every machine).
    pub fn seeds(
        &self,
        secrets: &Secrets,
        only: &[String],
        payload: &payload::Payload,
    ) -> Result<Vec<(String, Seed)>> {
        render_seeds(self.spec(), secrets, &self.engine, only, payload)
    }
}

/// The checked spec of a profile's text, for unit tests (panics on errors).
#[cfg(test)]
pub(crate) fn checked_spec(text: &str) -> Spec {
    load_profile_str("p.yaml", text)
        .unwrap_or_else(|e| panic!("{e}"))
        .spec
}

/// Everything `build` needs besides the profile.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub out_dir: Option<PathBuf>,
    /// Only these machines (empty: all).
    pub only: Vec<String>,
    pub secrets: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    /// Also write each machine's flashable disk image (`disk.img`).
    pub images: bool,
    /// Chart archives for a staking profile from this folder.
    pub charts_dir: Option<PathBuf>,
    /// The base image for `images` instead of the profile's `image` section.
    pub base_image: Option<PathBuf>,
    pub fetch: fetch::FetchOptions,
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
    payload: &payload::Payload,
) -> Result<Vec<(String, Seed)>> {
    let shared = engine.prepare(&resolve::cluster_context(spec, secrets)?)?;
    let selected: Vec<&validate::MachineSpec> = spec
        .machines
        .iter()
        .filter(|m| only.is_empty() || only.contains(&m.name))
        .collect();
    let one = |m: &validate::MachineSpec| -> Result<(Seed, Vec<check::Problem>)> {
        let own = resolve::machine_context(spec, secrets, m, payload.for_machine(&m.name))?;
        let seed = engine
            .render_machine(&shared, &own)
            .with_context(|| format!("rendering the seed of {}", m.name))?;
        let problems = check::check_seed(&m.name, &seed);
        Ok((seed, problems))
    };
    let results = io::on_every_core(&selected, |m| one(m));
    let mut seeds = Vec::with_capacity(selected.len());
    let mut problems = Vec::new();
    for (m, result) in selected.iter().zip(results) {
        let (seed, found) = result?;
        problems.extend(found);
        seeds.push((m.name.clone(), seed));
    }
    if !problems.is_empty() {
        bail!(Report::several(
            problems.iter().map(check::Problem::diagnostic).collect()
        ));
    }
    Ok(seeds)
}

/// `seed_iso` of every seed, given with its seed to `take`, on every core;
/// the first error in profile order is returned, as one by one.
fn pack_seeds(
    seeds: &[(String, Seed)],
    take: impl Fn(&str, &Seed, Vec<u8>) -> Result<()> + Sync,
) -> Result<()> {
    io::try_on_every_core(seeds, |(name, seed)| {
        let image = iso::seed_iso(seed).with_context(|| format!("packing the seed of {name}"))?;
        take(name, seed, image)
    })
}

/// Every name is a machine of the profile; `how` names where it was given.
fn check_machine_names(spec: &Spec, names: &[String], how: &str) -> Result<()> {
    for name in names {
        if spec.machine(name).is_none() {
            let known: Vec<&str> = spec.machines.iter().map(|m| m.name.as_str()).collect();
            bail!(
                Diagnostic::new(Kind::Usage, "the profile has no machine of that name")
                    .at(format!("{how}{:?}", diag::shorten(name)))
                    .hint(format!("machines: {}", known.join(", ")))
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
    let session = Session::open(
        profile_path,
        opts.templates.as_deref(),
        &opts.only,
        "--only ",
    )?;
    let v = &session.checked;
    let secrets_file = secrets_path(profile_path, opts.secrets.as_deref());
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&v.spec.cluster_name));
    let inputs = Inputs {
        profile: profile_path,
        only: &opts.only,
        spec: &v.spec,
        secrets: &secrets_file,
        templates: opts.templates.as_deref(),
        charts: opts.charts_dir.as_deref(),
        base_image: opts.base_image.as_deref(),
    };
    let writing = Writing::begin(&out_dir, &inputs)?;
    // Render and check with the secrets before persisting anything new, so
    // a template error leaves no new file behind.
    let (secrets, changes) = secrets::load_or_generate(&writing.secrets, &v.spec, &opts.only)?;
    let payload = session.payload(&secrets, Some((opts.charts_dir.as_deref(), &opts.fetch)))?;
    let seeds = session.seeds(&secrets, &opts.only, &payload)?;
    let stage = output::Stage::new(writing.out, !opts.only.is_empty())?;
    let base = if opts.images {
        Some(open_base_image(v, opts, &stage.scratch())?)
    } else {
        None
    };
    pack_seeds(&seeds, |name, seed, iso| {
        if let Some(base) = &base {
            let dir = stage.machine_dir(name)?;
            write_machine_image(v, base, &iso, name, &dir.join(DISK_IMAGE))?;
        }
        let files = [
            ("user-data", seed.user_data.as_bytes(), true),
            ("meta-data", seed.meta_data.as_bytes(), false),
            ("network-config", seed.network_config.as_bytes(), false),
            ("seed.iso", iso.as_slice(), true),
        ];
        for (file, bytes, private) in files {
            stage.write(name, file, bytes, private)?;
        }
        Ok(())
    })?;
    if changes.any() {
        secrets.write(&writing.secrets)?;
    }
    stage.commit()?;
    Ok(BuildSummary {
        out_dir,
        machines: seeds.into_iter().map(|(n, _)| n).collect(),
        secrets_file,
        secrets_changes: changes,
        warnings: session.warnings(),
        spec: session.checked.spec,
        secrets,
    })
}

/// What the user gave a writing command: none of it may end up inside the
/// output folder, which nodeimg replaces whole.
struct Inputs<'a> {
    profile: &'a Path,
    /// The machines a partial build replaces (empty: all).
    only: &'a [String],
    spec: &'a Spec,
    secrets: &'a Path,
    templates: Option<&'a Path>,
    charts: Option<&'a Path>,
    base_image: Option<&'a Path>,
}

impl Inputs<'_> {
    fn protected(&self) -> Vec<output::Protected> {
        let base = self.profile.parent().unwrap_or(Path::new("."));
        let mut v = vec![("profile", Some(self.profile.to_path_buf()))];
        v.push(("secrets file", Some(self.secrets.to_path_buf())));
        v.push(("templates folder", self.templates.map(Path::to_path_buf)));
        v.push(("charts folder", self.charts.map(Path::to_path_buf)));
        v.push(("base image", self.base_image.map(Path::to_path_buf)));
        for g in self.spec.staking.iter().flat_map(|s| &s.groups) {
            v.push(("keystore folder", Some(base.join(&g.keystores))));
            v.push(("password file", Some(base.join(&g.password_file))));
        }
        v.into_iter()
            .filter_map(|(what, p)| p.map(|path| output::Protected { what, path }))
            .collect()
    }
}

/// A writing command's hold on its secrets file and output folder: their
/// folders are locked (a second run waits), and the secrets file is
/// resolved through a symbolic link.
struct Writing {
    /// The secrets file itself (a link followed).
    secrets: PathBuf,
    /// The output directory, checked (for [`output::Stage::new`]).
    out: output::Target,
    _locks: io::lock::DirLocks,
}

impl Writing {
    fn begin(out_dir: &Path, inputs: &Inputs) -> Result<Writing> {
        let real_out = output::resolve_output(out_dir)?;
        let secrets = secrets::resolve_path(inputs.secrets)?;
        let secrets_dir = crate::io::write::parent_of(&secrets);
        let mut dirs = vec![real_out.parent().unwrap_or(Path::new("/"))];
        dirs.extend(Some(secrets_dir).filter(|d| d.is_dir()));
        let locks = io::lock::lock_dirs(&dirs)?;
        // Under the locks: no other nodeimg run changes the output meanwhile.
        let out = output::check_target(real_out, out_dir, &inputs.protected(), inputs.only)?;
        if !secrets_dir.is_dir() {
            bail!(Diagnostic::new(
                Kind::Secrets,
                "the folder of the secrets file does not exist"
            )
            .at(secrets.display())
            .hint("create it, or give another path with --secrets"));
        }
        secrets::sweep_stale_temporaries(&secrets);
        Ok(Writing {
            secrets,
            out,
            _locks: locks,
        })
    }
}

/// The file name of a machine's disk image in the build directory.
pub const DISK_IMAGE: &str = "disk.img";

/// The base image for `--images`: `--image` if given, else the profile's
/// `image` section, downloaded (or taken from the cache) and verified.
fn open_base_image(v: &Validated, opts: &BuildOptions, scratch: &Path) -> Result<disk::BaseImage> {
    let path = match &opts.base_image {
        Some(p) => p.clone(),
        None => {
            let Some(image) = &v.spec.image else {
                return Err(v
                    .report
                    .about(diag::Diagnostic::error(
                        Kind::Missing,
                        diag::Path::root(),
                        "--images needs a base image, and the profile has no `image` section",
                        "add `image:` with `release: \"22.04\"` (Ubuntu's cloud image), or `url:` and `sha256:`",
                    ))
                    .into());
            };
            let fetcher = fetch::Fetcher::new(opts.fetch.clone())?;
            let (image_url, checksum) = resolve::image_location(image);
            let sha256 = match &checksum {
                validate::Checksum::Sha256(h) => h.clone(),
                validate::Checksum::Sums { url, name } => {
                    let list = fetcher.fetch_text(url)?;
                    crate::io::hash::sums_entry(&list, name).ok_or_else(|| {
                        Diagnostic::new(Kind::Download, format!("no entry for {name}"))
                            .at(fetch::shown_url(url))
                            .hint("check image.url and image.sha256sums, or pin image.sha256")
                    })?
                }
            };
            fetcher.fetch(&image_url, &sha256, io::input::MAX_BASE_IMAGE)?
        }
    };
    disk::BaseImage::open(&path, scratch)
}

/// Writes one machine's disk image and its `.sha256` beside it.
fn write_machine_image(
    v: &Validated,
    base: &disk::BaseImage,
    iso: &[u8],
    name: &str,
    path: &Path,
) -> Result<disk::DiskImage> {
    let size = v.spec.image.as_ref().and_then(|i| i.size);
    let written = disk::write_disk_image(base, iso, name, size, path).map_err(|e| {
        match e.downcast_ref::<disk::TooSmall>() {
            Some(small) => v
                .report
                .about(diag::Diagnostic::error(
                    Kind::OutOfRange,
                    diag::Path::parse("image.size"),
                    small.to_string(),
                    format!(
                        "raise image.size to at least {}M, or remove it to get the smallest size",
                        small.needed >> 20
                    ),
                ))
                .into(),
            None => e.context(format!("writing the disk image of {name}")),
        }
    })?;
    let sidecar = path.with_file_name(format!("{DISK_IMAGE}{}", output::SIDECAR_SUFFIX));
    std::fs::write(&sidecar, format!("{}  {DISK_IMAGE}\n", written.sha256))
        .with_context(|| format!("cannot write {}", sidecar.display()))?;
    Ok(written)
}

/// Reads the validator keystores of a staking profile (relative to the
/// profile's folder); a problem is a profile error at the group's keys.
pub fn read_validator_keys(v: &Validated, profile_path: &Path) -> Result<Vec<staking::GroupKeys>> {
    let Some(s) = &v.spec.staking else {
        return Ok(Vec::new());
    };
    let base = profile_path.parent().unwrap_or(Path::new("."));
    let allowed = io::input::Confinement::new(base, &v.spec.trusted_folders);
    let (keys, diags) = staking::read_keys(s, base, &allowed);
    if diags.is_empty() {
        Ok(keys)
    } else {
        Err(v.report.about_all(diags).into())
    }
}

/// Everything `release` needs besides the profile.
#[derive(Debug, Clone, Default)]
pub struct ReleaseOptions {
    /// Output directory [default: out/<cluster name>.release].
    pub out_dir: Option<PathBuf>,
    /// Write only the values, storage manifest and commands; fetch nothing.
    pub values_only: bool,
    /// Take chart archives from this folder instead of downloading them.
    pub charts_dir: Option<PathBuf>,
    pub secrets: Option<PathBuf>,
    pub fetch: fetch::FetchOptions,
}

/// What `release` wrote.
#[derive(Debug)]
pub struct ReleaseSummary {
    pub out_dir: PathBuf,
    pub releases: Vec<staking::Release>,
    pub secrets_file: PathBuf,
    pub secrets_changes: secrets::Changes,
    pub warnings: String,
}

/// The seeds' staking payload for a build (charts fetched) or a check
/// (`charts: None`: rendered without the archives).
fn staking_payload(
    v: &Validated,
    keys: &[staking::GroupKeys],
    secrets: &Secrets,
    charts: Option<(Option<&Path>, &fetch::FetchOptions)>,
) -> Result<payload::Payload> {
    let Some(s) = &v.spec.staking else {
        return Ok(payload::Payload::default());
    };
    let migrations = match (charts, s.signer.database()) {
        (Some((dir, opts)), Some(m)) => staking::fetch_migrations(m, dir, opts)?,
        _ => Vec::new(),
    };
    let archives = match charts {
        // The legacy chart is installed by hand: the master carries nothing.
        Some(_) if s.legacy.is_some() => Vec::new(),
        Some((dir, opts)) => staking::fetch_charts(s, dir, opts)?
            .into_iter()
            .map(|(f, p)| {
                Ok((
                    f,
                    std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    Ok(staking::payload(
        &v.spec,
        s,
        keys,
        &archives,
        &migrations,
        secrets.jwt()?,
        if s.signer.is_remote() {
            Some(secrets.signer_db_password()?)
        } else {
            None
        },
    ))
}

/// `nodeimg release`: the charts (verified), values, storage manifest and
/// install commands of the staking release, in `opts.out_dir`
/// (default `out/<cluster name>.release`).
pub fn release(profile_path: &Path, opts: &ReleaseOptions) -> Result<ReleaseSummary> {
    let v = load_profile(profile_path)?;
    let Some(s) = v.spec.staking.clone() else {
        return Err(v
            .report
            .about(diag::Diagnostic::error(
                Kind::Missing,
                diag::Path::root(),
                "the profile has no `staking` section, so there is no release to write",
                "add a staking section: see profiles/hoodi.yaml",
            ))
            .into());
    };
    // Validator clients that sign remotely name their group's keys.
    let keys = if s.signer.is_remote() {
        read_validator_keys(&v, profile_path)?
    } else {
        Vec::new()
    };
    let releases = staking::releases(&v.spec, &s, &keys);
    let archives = if opts.values_only {
        Vec::new()
    } else {
        staking::fetch_charts(&s, opts.charts_dir.as_deref(), &opts.fetch)?
    };
    let secrets_file = secrets_path(profile_path, opts.secrets.as_deref());
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(format!("{}.release", v.spec.cluster_name)));
    let inputs = Inputs {
        profile: profile_path,
        only: &[],
        spec: &v.spec,
        secrets: &secrets_file,
        templates: None,
        charts: opts.charts_dir.as_deref(),
        base_image: None,
    };
    let writing = Writing::begin(&out_dir, &inputs)?;
    let (secrets, changes) = secrets::load_or_generate(&writing.secrets, &v.spec, &[])?;
    let stage = output::Stage::new(writing.out, false)?;
    for r in &releases {
        let file = r
            .values_file
            .strip_prefix(&format!("{RELEASE_VALUES}/"))
            .unwrap_or(&r.values_file);
        stage.write(
            RELEASE_VALUES,
            file,
            staking::to_yaml(&r.values).as_bytes(),
            false,
        )?;
    }
    if !archives.is_empty() {
        let dir = stage.machine_dir(RELEASE_CHARTS)?;
        for (file, path) in &archives {
            std::fs::copy(path, dir.join(file))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    if let Some(legacy) = &s.legacy {
        if !opts.values_only {
            let zip =
                staking::fetch_legacy_archive(legacy, opts.charts_dir.as_deref(), &opts.fetch)?;
            let dest = stage
                .machine_dir(RELEASE_CHARTS)?
                .join(staking::LEGACY_CHART);
            staking::extract_legacy_chart(&zip, &dest)?;
            // The chart takes each wallet password from a file (--set-file).
            stage.machine_dir(RELEASE_PASSWORDS)?;
            for g in read_validator_keys(&v, profile_path)? {
                stage.write(
                    RELEASE_PASSWORDS,
                    &format!("{}.txt", g.group),
                    String::from_utf8_lossy(&g.password).trim_end().as_bytes(),
                    true,
                )?;
            }
        }
    }
    let manifest = staking::storage_manifest(&v.spec, &s);
    stage.write_top(RELEASE_STORAGE, manifest.as_bytes(), 0o644)?;
    let script = staking::install_script(&s, &releases, !archives.is_empty())?;
    stage.write_top("install.sh", script.as_bytes(), 0o755)?;
    stage.write_top(RELEASE_JWT, secrets.jwt()?.as_bytes(), 0o600)?;
    if s.signer.is_remote() {
        let manifest = staking::signer_secret_manifest(&s, secrets.signer_db_password()?);
        stage.write_top(RELEASE_SIGNER_SECRET, manifest.as_bytes(), 0o600)?;
        let backup = staking::backup_script(&v.spec, &s)?;
        stage.write_top("backup.sh", backup.as_bytes(), 0o755)?;
    }
    if changes.any() {
        secrets.write(&writing.secrets)?;
    }
    stage.commit()?;
    Ok(ReleaseSummary {
        out_dir,
        releases,
        secrets_file,
        secrets_changes: changes,
        warnings: v.report.render_filtered(|d| !d.is_error()),
    })
}

/// What the day-two commands share: the checked profile, the machines
/// asked (all when `machines` is empty, in the profile's order), the secrets
/// they were built with, their pinned host keys and where to reach them.
struct Reach {
    spec: Spec,
    secrets: Secrets,
    pinned: remote::ssh::Pinned,
    targets: Vec<remote::ssh::Target>,
}

impl Reach {
    fn open(
        profile_path: &Path,
        machines: &[String],
        how: &str,
        opts: &remote::ReachOptions,
    ) -> Result<Reach> {
        let spec = load_profile(profile_path)?.spec;
        check_machine_names(&spec, machines, how)?;
        Reach::with_spec(spec, profile_path, machines, opts)
    }

    /// For a profile already checked (its machine names too).
    fn with_spec(
        spec: Spec,
        profile_path: &Path,
        machines: &[String],
        opts: &remote::ReachOptions,
    ) -> Result<Reach> {
        if let Some(identity) = &opts.identity {
            io::input::read_regular(identity, 64 * 1024).map_err(|why| {
                Diagnostic::new(Kind::Usage, io::input::about("the identity file", &why))
                    .at(format!("--identity {}", identity.display()))
                    .hint("give the private key (e.g. ~/.ssh/id_ed25519) whose public half is in ssh.authorized_keys")
            })?;
        }
        let names: Vec<&str> = spec
            .machines
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| machines.is_empty() || machines.iter().any(|m| m == n))
            .collect();
        let secrets = secrets::load_existing(&secrets_path(profile_path, opts.secrets.as_deref()))?;
        let pinned = remote::ssh::Pinned::new(&secrets, &names)?;
        let targets = remote::ssh::targets(&spec, &names, &opts.addresses)?;
        Ok(Reach {
            spec,
            secrets,
            pinned,
            targets,
        })
    }

    fn client<'a>(&'a self, opts: &'a remote::ReachOptions) -> remote::ssh::Client<'a> {
        remote::ssh::Client {
            pinned: &self.pinned,
            user: &self.spec.ssh.user,
            identity: opts.identity.as_deref(),
            connect_timeout: opts.timeout,
            wrapper: &[],
        }
    }
}

/// What `diff` renders the seeds with, as `build` does.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub templates: Option<PathBuf>,
    /// The master's chart archives from this folder (else the cache or a
    /// download, verified).
    pub charts_dir: Option<PathBuf>,
    pub fetch: fetch::FetchOptions,
}

/// `nodeimg diff`: every machine's seed as the profile renders it now,
/// against the files on the machine (in parallel, each within the timeout).
pub fn diff(
    profile_path: &Path,
    machines: &[String],
    reach_opts: &remote::ReachOptions,
    opts: &DiffOptions,
) -> Result<Vec<remote::diff::MachineDiff>> {
    let session = Session::open(
        profile_path,
        opts.templates.as_deref(),
        machines,
        "--machine ",
    )?;
    let reach = Reach::with_spec(session.spec().clone(), profile_path, machines, reach_opts)?;
    // Only the first master's seed carries the charts, and the NFS
    // server's the signer database's migrations.
    let spec = session.spec();
    let carries_downloads = reach.targets.iter().any(|t| {
        spec.machine(&t.machine)
            .is_some_and(|m| spec.is_first_master(m) || resolve::holds_signer_db(spec, m))
    });
    let charts = carries_downloads.then_some((opts.charts_dir.as_deref(), &opts.fetch));
    let payload = session.payload(&reach.secrets, charts)?;
    let names: Vec<String> = reach.targets.iter().map(|t| t.machine.clone()).collect();
    let mut seeds = session.seeds(&reach.secrets, &names, &payload)?;
    let pairs: Vec<(remote::ssh::Target, Seed)> = reach
        .targets
        .iter()
        .filter_map(|t| {
            let i = seeds.iter().position(|(n, _)| *n == t.machine)?;
            Some((t.clone(), seeds.swap_remove(i).1))
        })
        .collect();
    remote::diff::compare_all(&reach.client(reach_opts), &pairs, reach_opts.timeout)
}

/// `nodeimg status`: every machine (or those named) asked at once over SSH,
/// each within `opts.timeout`, its answer judged against the profile.
pub fn status(
    profile_path: &Path,
    machines: &[String],
    opts: &remote::ReachOptions,
) -> Result<remote::status::StatusReport> {
    let reach = Reach::open(profile_path, machines, "--machine ", opts)?;
    remote::status::ask_all(
        &reach.spec,
        &reach.client(opts),
        &reach.targets,
        opts.timeout,
    )
}

/// `nodeimg ssh`: a session on `machine` (or `command` there), its host key
/// pinned; the terminal is passed through. Returns ssh's exit status (the
/// command's, or 255 when ssh failed).
pub fn ssh(
    profile_path: &Path,
    machine: &str,
    command: &[String],
    opts: &remote::ReachOptions,
) -> Result<i32> {
    let reach = Reach::open(profile_path, &[machine.to_string()], "machine ", opts)?;
    let target = &reach.targets[0];
    let mut cmd = reach.client(opts).command(target, false);
    cmd.args(command);
    let status = cmd
        .status()
        .map_err(|e| diag::tool_missing("ssh", "openssh-client", e))?;
    // Killed by a signal: as a shell reports it.
    Ok(status.code().unwrap_or(255))
}

/// `nodeimg validate`: everything `build` checks, writing nothing. Returns
/// the warnings.
pub fn validate_only(
    profile_path: &Path,
    secrets: Option<&Path>,
    templates: Option<&Path>,
) -> Result<String> {
    let session = Session::open(profile_path, templates, &[], "")?;
    let secrets_file = secrets_path(profile_path, secrets);
    let (secrets, _) = secrets::load_or_generate(&secrets_file, session.spec(), &[])?;
    let payload = session.payload(&secrets, None)?;
    pack_seeds(&session.seeds(&secrets, &[], &payload)?, |_, _, _| Ok(()))?;
    Ok(session.warnings())
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
            Diagnostic::new(Kind::Usage, format!("cannot show {file:?}"))
                .hint(format!("choose one of: {}", SHOWABLE.join(", ")))
        );
    }
    let only = [machine.to_string()];
    let session = Session::open(profile_path, templates, &only, "show: machine ")?;
    let secrets_file = secrets_path(profile_path, secrets);
    if reveal && !secrets_file.exists() {
        bail!(Diagnostic::new(
            Kind::Secrets,
            "no secrets file yet, so there is nothing to reveal"
        )
        .at(secrets_file.display())
        .hint("run `nodeimg build` first; it creates the secrets"));
    }
    let (secrets, _) = secrets::load_or_generate(&secrets_file, session.spec(), &only)?;
    let payload = session.payload(&secrets, None)?;
    let (_, seed) = session
        .seeds(&secrets, &only, &payload)?
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
        // The keys, passwords and release files are base64 in user-data.
        let mut hidden = secrets.values();
        hidden.extend(payload.contents());
        mask(&text, &hidden)
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
        bail!(
            Diagnostic::new(Kind::Usage, "boot-test boots the whole cluster")
                .at("--only")
                .hint("leave --only out; to rebuild one machine during a boot test, use --reprovision NAME")
        );
    }
    let summary = build(profile_path, build_opts)?;
    let mut opts = opts.clone();
    if build_opts.images {
        opts.images_from = Some(summary.out_dir.clone());
    }
    let opts = &opts;
    if let Some(name) = &opts.reprovision {
        check_machine_names(&summary.spec, std::slice::from_ref(name), "--reprovision ")?;
    }
    check_machine_names(&summary.spec, &opts.reboot, "--reboot ")?;
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

//! Helpers shared by the integration tests: run the real binary in a
//! scratch directory holding a copy of a shipped profile.

#![allow(dead_code)]

pub mod http;
pub mod sshd;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn shipped_profile(name: &str) -> String {
    fs::read_to_string(repo().join("profiles").join(name)).expect("shipped profile")
}

pub fn shipped_profiles() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo().join("profiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && !p.to_string_lossy().ends_with(".secrets.yaml")
        })
        .collect();
    v.sort();
    v
}

/// A scratch directory with `profile.yaml` in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn with_profile(text: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("profile.yaml"), text).unwrap();
        Scratch { dir }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn profile(&self) -> PathBuf {
        self.path("profile.yaml")
    }
    pub fn secrets(&self) -> PathBuf {
        self.path("profile.secrets.yaml")
    }
    /// Runs nodeimg with `args` in the scratch directory.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run nodeimg");
        Run(out)
    }
    pub fn build(&self, out: &str) -> Run {
        let r = self.run(&["build", "profile.yaml", "-o", out]);
        assert!(r.ok(), "build failed:\n{}", r.stderr());
        r
    }
    /// Every entry below the scratch directory (relative paths).
    pub fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        if p.is_dir() {
            walk(base, &p, out);
        }
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn ok(&self) -> bool {
        self.0.status.success()
    }
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Reads a value from the secrets file the way a user would look it up.
pub fn secrets_token(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("microk8s_join_token:"))
        .expect("token line");
    line.split('"').nth(1).unwrap().to_string()
}

/// Runs an external tool; panics with its output when it fails to start.
pub fn tool(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is needed by this test (.ci/install-test-deps installs it): {e}")
    })
}

/// A small GPT disk shaped like a cloud image: an ESP, then a Linux root
/// partition last. Returns (raw path, root start byte, root bytes).
pub fn small_cloud_image(dir: &Path) -> (PathBuf, u64, Vec<u8>) {
    let raw = dir.join("base.raw");
    let f = fs::File::create(&raw).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let out = tool(
        "sgdisk",
        &[
            "-n",
            "1:1MiB:+8MiB",
            "-t",
            "1:ef00",
            "-c",
            "1:ESP",
            "-n",
            "2:0:0",
            "-t",
            "2:8300",
            "-c",
            "2:rootfs",
            raw.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "sgdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Root content that must arrive unchanged: a pattern at its start and
    // a marker at its very end, zeros (a hole) between.
    let root_start = 9u64 << 20;
    let gpt_tail = 33 * 512;
    let root_len = (64u64 << 20) - root_start - gpt_tail;
    let mut root = vec![0u8; root_len as usize];
    for (i, b) in root.iter_mut().take(1 << 20).enumerate() {
        *b = (i * 13 % 251) as u8 + 1;
    }
    let end_marker = b"END OF ROOT";
    let n = root.len();
    root[n - end_marker.len()..].copy_from_slice(end_marker);
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new().write(true).open(&raw).unwrap();
    f.seek(SeekFrom::Start(root_start)).unwrap();
    f.write_all(&root[..1 << 20]).unwrap();
    f.seek(SeekFrom::Start(
        root_start + root_len - end_marker.len() as u64,
    ))
    .unwrap();
    f.write_all(end_marker).unwrap();
    (raw, root_start, root)
}

/// Reads `len` bytes at `offset` of a file.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// `sgdisk -p` partition rows: (number, first sector, last sector, name).
pub fn partitions(image: &Path) -> Vec<(u32, u64, u64, String)> {
    let out = tool("sgdisk", &["-p", image.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = f.first()?.parse().ok()?;
            Some((
                n,
                f[1].parse().ok()?,
                f[2].parse().ok()?,
                f.last()?.to_string(),
            ))
        })
        .collect()
}

/// Where scripts/test-deps caches the tools: $NODEIMG_CACHE or ~/.cache/nodeimg.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("NODEIMG_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/nodeimg"))
}

/// The real helm (v4) the test suite uses: $NODEIMG_HELM, else the one
/// scripts/test-deps unpacks into the cache, else `helm` on PATH.
pub fn helm() -> PathBuf {
    if let Some(p) = std::env::var_os("NODEIMG_HELM") {
        return PathBuf::from(p);
    }
    let cache = cache_dir();
    let cached = cache.join("helm/helm");
    if cached.is_file() {
        return cached;
    }
    PathBuf::from("helm")
}

/// The real chronyd that scripts/test-deps unpacks into the cache (or
/// $NODEIMG_CHRONYD).
pub fn chronyd() -> PathBuf {
    if let Some(p) = std::env::var_os("NODEIMG_CHRONYD") {
        return PathBuf::from(p);
    }
    let cache = cache_dir();
    let p = cache.join("chrony/usr/sbin/chronyd");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/test-deps",
        p.display()
    );
    p
}

/// Whether the real chronyd parses `conf` (`chronyd -p`); its complaint.
pub fn chronyd_parses(conf: &Path) -> Result<(), String> {
    let out = Command::new(chronyd())
        .args(["-p", "-f"])
        .arg(conf)
        .output()
        .expect("run chronyd");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs the real helm with `args` in `dir`; it must succeed. Its output.
/// Writes `text` to `path` as an executable (a stand-in program).
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The real kubectl scripts/test-deps unpacks beside helm.
pub fn kubectl() -> PathBuf {
    if let Some(p) = std::env::var_os("NODEIMG_KUBECTL") {
        return PathBuf::from(p);
    }
    let cached = cache_dir().join("helm/kubectl");
    if cached.is_file() {
        return cached;
    }
    PathBuf::from("kubectl")
}

pub fn helm_ok(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(helm())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("helm (scripts/test-deps installs it)");
    assert!(
        out.status.success(),
        "helm {args:?} in {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fake EIP-2335 keystore for `pubkey` (96 hex digits): the shape
/// nodeimg checks, not a usable key.
pub fn fake_keystore(pubkey: &str) -> String {
    format!(
        r#"{{"crypto": {{"kdf": {{"function": "scrypt", "params": {{}}, "message": ""}}, "checksum": {{"function": "sha256", "params": {{}}, "message": ""}}, "cipher": {{"function": "aes-128-ctr", "params": {{}}, "message": ""}}}}, "description": "test", "pubkey": "{pubkey}", "path": "m/12381/3600/0/0/0", "uuid": "00000000-0000-4000-8000-000000000000", "version": 4}}"#
    )
}

/// Writes `n` fake keystores (pubkeys from `seed`) and a password file.
pub fn write_keys(dir: &Path, seed: u8, n: usize, password_file: &Path) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let pubkey = format!("{:02x}{:02x}", seed, i).repeat(24);
        fs::write(
            dir.join(format!("keystore-m_12381_3600_{i}_0_0-{seed}.json")),
            fake_keystore(&pubkey),
        )
        .unwrap();
    }
    if let Some(parent) = password_file.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(password_file, "correct horse battery staple\n").unwrap();
}

/// (line, column) of the `nth` occurrence of `needle` in `text`.
pub fn position_of(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let at = text
        .match_indices(needle)
        .nth(nth)
        .map(|(i, _)| i)
        .expect("culprit in text");
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// `r` failed (exit 1) with `profile.yaml:LINE:COL: error: ...SAYS...` and
/// `hint` in its stderr; `what` names the case in a failure. What kind of
/// error it is, [`assert_kind_at`] checks.
pub fn assert_refused_at(r: &Run, what: &str, (line, col): (usize, usize), says: &str, hint: &str) {
    let err = r.stderr();
    assert_eq!(r.code(), Some(1), "{what}: should fail:\n{err}");
    let prefix = format!("profile.yaml:{line}:{col}: error: ");
    assert!(
        err.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(says)),
        "{what}: expected `{prefix}...{says}` in:\n{err}"
    );
    assert!(
        err.contains(hint),
        "{what}: hint `{hint}` missing in:\n{err}"
    );
}

/// Every finding about the profile at `profile` as (kind, severity, line,
/// column), read through the library the CLI prints from; empty when the
/// profile is accepted.
pub fn findings(
    profile: &Path,
) -> Vec<(nodeimg::diag::Kind, nodeimg::diag::Severity, (usize, usize))> {
    let report = match nodeimg::Session::open(profile, None, &[], "") {
        Ok(session) => session.checked.report,
        Err(e) => match e.downcast::<nodeimg::Report>() {
            Ok(report) => report,
            Err(e) => panic!("not a report about the profile: {e:#}"),
        },
    };
    report
        .diagnostics
        .iter()
        .map(|d| {
            let pos = report.pos(d);
            (d.kind, d.severity, (pos.line as usize, pos.col as usize))
        })
        .collect()
}

/// The profile is refused with an error of `kind` at `at` (among others).
pub fn assert_kind_at(profile: &Path, what: &str, kind: nodeimg::diag::Kind, at: (usize, usize)) {
    let found = findings(profile);
    assert!(
        found.contains(&(kind, nodeimg::diag::Severity::Error, at)),
        "{what}: expected an error of kind {kind:?} at {at:?}, found {found:?}"
    );
}

/// The stand-in chart under `name`, in the scratch directory.
pub fn chart(s: &Scratch, name: &str) -> std::path::PathBuf {
    let dir = s.path(&format!("charts/{name}"));
    if !dir.exists() {
        // A chart of its own (web3signer), else the client charts' stand-in.
        let own = repo().join("tests/charts").join(name);
        let src = if own.is_dir() {
            own
        } else {
            repo().join("tests/charts/ethclient")
        };
        fs::create_dir_all(dir.join("templates")).unwrap();
        for f in ["values.yaml", "values.schema.json"] {
            fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        for e in fs::read_dir(src.join("templates")).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dir.join("templates").join(e.file_name())).unwrap();
        }
        let meta = fs::read_to_string(src.join("Chart.yaml"))
            .unwrap()
            .replace("name: ethclient", &format!("name: {name}"));
        fs::write(dir.join("Chart.yaml"), meta).unwrap();
    }
    dir
}

/// Packages the stand-in chart as `name` `version` into `into`; its sha256.
pub fn package_chart(s: &Scratch, name: &str, version: &str, into: &Path) -> String {
    let dir = chart(s, name);
    let meta = fs::read_to_string(dir.join("Chart.yaml"))
        .unwrap()
        .replace("version: 0.0.1", &format!("version: {version}"));
    fs::write(dir.join("Chart.yaml"), meta).unwrap();
    fs::create_dir_all(into).unwrap();
    helm_ok(
        s.dir.path(),
        &[
            "package",
            dir.to_str().unwrap(),
            "-d",
            into.to_str().unwrap(),
        ],
    );
    nodeimg::io::hash::sha256_hex(&fs::read(into.join(format!("{name}-{version}.tgz"))).unwrap())
}

/// `text` (a staking profile pinning geth 1.1.3 and prysm 1.2.3) with its
/// chart pins replaced by stand-in charts packaged into `DIR/chart-mirror`,
/// for `--charts chart-mirror`.
pub fn with_stand_in_charts(s: &Scratch, text: &str) -> String {
    let mirror = s.path("chart-mirror");
    let geth = package_chart(s, "geth", "1.1.3", &mirror);
    let prysm = package_chart(s, "prysm", "1.2.3", &mirror);
    let text = text
        .replace(
            "76ef685c9dc55a19adbd8f19ca59cb68fae0296c51e2cbee3c699db9de776493",
            &geth,
        )
        .replace(
            "c9672166ad2f891c8f06a3ce3fd0668699f08a53aad1a4fb641a13ea49c5a870",
            &prysm,
        );
    // A remote signer's chart too (pinned after the other two).
    let text = if text.contains("  signer: web3signer\n") {
        const PRYSM_PIN: &str = "    prysm: {version: 1.2.3, sha256: ";
        assert!(
            text.contains(PRYSM_PIN),
            "no prysm pin to add web3signer's after"
        );
        let version = "1.0.6";
        let sha = package_chart(s, "web3signer", version, &mirror);
        text.replacen(
            PRYSM_PIN,
            &format!("    web3signer: {{version: {version}, sha256: {sha}}}\n{PRYSM_PIN}"),
            1,
        )
    } else {
        text
    };
    with_stand_in_migrations(&mirror, &text)
}

/// `text` (the tutorial's machines) with a highly available control plane:
/// master-2 and master-3 added before worker-1.
pub fn with_three_masters(text: &str) -> String {
    const WORKER: &str = "  - {name: worker-1,";
    assert!(text.contains(WORKER), "no worker-1 to add masters before");
    text.replacen(
        WORKER,
        &format!("  - {{name: master-2, role: master, ip: 172.20.10.13}}\n  - {{name: master-3, role: master, ip: 172.20.10.14}}\n{WORKER}"),
        1,
    )
}

/// `text` (a staking profile like hoodi.yaml) signing through Web3Signer.
pub fn with_remote_signer(text: &str) -> String {
    const AFTER: &str = "  doppelganger: true\n";
    assert!(
        text.contains(AFTER),
        "no doppelganger line to add the signer after"
    );
    text.replacen(AFTER, &format!("{AFTER}  signer: web3signer\n"), 1)
}

/// A profile with `signer: web3signer` pinned to the stand-in migrations
/// (tests/signer-db), which are put in `mirror` where `--charts` finds them.
pub fn with_stand_in_migrations(mirror: &Path, text: &str) -> String {
    const SIGNER: &str = "  signer: web3signer\n";
    if !text.contains(SIGNER) {
        return text.to_string();
    }
    let commit = nodeimg::staking::WEB3SIGNER_COMMIT;
    let folder = mirror.join(nodeimg::staking::migrations_folder(commit));
    fs::create_dir_all(&folder).unwrap();
    let mut pins =
        format!("  web3signer:\n    migrations:\n      commit: {commit}\n      files:\n");
    let mut files: Vec<_> = fs::read_dir(repo().join("tests/signer-db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(&f).unwrap();
        fs::write(folder.join(&name), &bytes).unwrap();
        let sha = nodeimg::io::hash::sha256_hex(&bytes);
        pins.push_str(&format!("        {name}: {sha}\n"));
    }
    text.replace(SIGNER, &format!("{SIGNER}{pins}"))
}

/// `cloud-init schema` accepts the user-data at `ud`; `what` names it.
pub fn assert_valid_cloud_config(ud: &Path, what: &str) {
    let out = tool(
        "cloud-init",
        &["schema", "--config-file", ud.to_str().unwrap()],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("Valid cloud-config"),
        "{what}: {}:\n{text}",
        ud.display()
    );
}

/// A scratch with `text` (a staking profile) made buildable here: its chart
/// pins point at stand-in charts in chart-mirror/ (`--charts chart-mirror`)
/// and validator_keys/ holds `keys` fake keystores (pubkeys from `seed`).
pub fn staking_scratch(text: &str, seed: u8, keys: usize) -> Scratch {
    let s = Scratch::with_profile("");
    fs::write(s.profile(), with_stand_in_charts(&s, text)).unwrap();
    write_keys(
        &s.path("validator_keys"),
        seed,
        keys,
        &s.path("validator_keys/password.txt"),
    );
    s
}

/// `nodeimg COMMAND profile.yaml -o OUT --charts chart-mirror --cache cache`.
pub fn run_with_charts(s: &Scratch, command: &str, out: &str) -> Run {
    s.run(&[
        command,
        "profile.yaml",
        "-o",
        out,
        "--charts",
        "chart-mirror",
        "--cache",
        "cache",
    ])
}

/// Kubernetes' expansion of a container command (`$(VAR)` from `env`,
/// `$$` to `$`, anything else left as is), as the kubelet does it before
/// the command runs (k8s.io/kubernetes third_party/forked/golang/expansion).
pub fn k8s_expand(s: &str, env: &[(&str, &str)]) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != '$' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b[i + 1] {
            '$' => {
                out.push('$');
                i += 2;
            }
            '(' => match b[i + 2..].iter().position(|&c| c == ')') {
                Some(end) => {
                    let name: String = b[i + 2..i + 2 + end].iter().collect();
                    match env.iter().find(|(k, _)| *k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    i += 3 + end;
                }
                None => {
                    out.push_str(&b[i..].iter().collect::<String>());
                    i = b.len();
                }
            },
            c => {
                out.push('$');
                out.push(c);
                i += 2;
            }
        }
    }
    out
}

/// The pod's and the node's address in the stand-in kubelet's downward API.
pub const POD_IP: &str = "10.1.0.7";
pub const NODE_IP: &str = "172.20.0.21";

/// The argument vector a chart's container really starts its client with:
/// its command (`sh -ac LINE`, as the ethpandaops charts render it) after
/// Kubernetes' expansion, run by the real `sh` with stand-in client binaries
/// that print what they received. The first element is the binary's name.
pub fn client_argv(sts: &serde_json::Value) -> Vec<String> {
    let cmd: Vec<String> = sts["spec"]["template"]["spec"]["containers"][0]["command"]
        .as_array()
        .expect("a container command")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(&cmd[..2], ["sh", "-ac"], "{cmd:?}");
    assert_eq!(cmd.len(), 3, "{cmd:?}");
    let bin = tempfile::tempdir().unwrap();
    let printer = "#!/bin/sh\nprintf '%s\\0' \"${0##*/}\" \"$@\"\n";
    for name in [
        "geth",
        "nethermind",
        "besu",
        "reth",
        "beacon-chain",
        "validator",
        "lighthouse",
        "teku",
        "nimbus_beacon_node",
        "web3signer",
    ] {
        write_executable(&bin.path().join(name), printer);
    }
    // The container's environment as the kubelet resolves it: the
    // downward API's pod and node addresses, literal values; a variable
    // the container does not define stays `$(NAME)`, as Kubernetes leaves it.
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e["name"].as_str()?.to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("status.podIP") => POD_IP.to_string(),
                Some("status.hostIP") => NODE_IP.to_string(),
                Some(other) => panic!("no stand-in for {other}"),
                None => e["value"].as_str()?.to_string(),
            };
            Some((name, value))
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Web3Signer's chart starts the image's binary by its path.
    let line = k8s_expand(&cmd[2], &env).replace("/opt/web3signer/bin/web3signer", "web3signer");
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    let out = Command::new("sh")
        .args(["-ac", &line])
        .env("PATH", path)
        .current_dir(bin.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The write_files entries of a user-data file: (path, permissions, decoded bytes).
pub fn seed_files(user_data: &Path) -> Vec<(String, String, Vec<u8>)> {
    use base64::Engine as _;
    let text = fs::read_to_string(user_data).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    doc["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap().to_string();
            let mode = f["permissions"].as_str().unwrap().to_string();
            let content = f["content"].as_str().unwrap();
            let bytes = match f["encoding"].as_str() {
                None => content.as_bytes().to_vec(),
                Some(enc) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(content)
                        .unwrap();
                    if enc == "gz+b64" {
                        use std::io::Read;
                        let mut out = Vec::new();
                        flate2::read::GzDecoder::new(&raw[..])
                            .read_to_end(&mut out)
                            .unwrap();
                        out
                    } else {
                        assert_eq!(enc, "b64");
                        raw
                    }
                }
            };
            (path, mode, bytes)
        })
        .collect()
}

/// The text of the write_files entry whose path ends in `name`.
pub fn seed_file(user_data: &Path, name: &str) -> String {
    let (_, _, bytes) = seed_files(user_data)
        .into_iter()
        .find(|(p, _, _)| p.ends_with(name))
        .unwrap_or_else(|| panic!("no {name} in {}", user_data.display()));
    String::from_utf8(bytes).unwrap()
}

/// `sha256sum -c SHA256SUMS` in `dir`: (passed, output).
pub fn sha256sum_check(dir: &Path) -> (bool, String) {
    let out = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("sha256sum");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The staging directories of builds beside the output, in the scratch.
pub fn staging_dirs(s: &Scratch) -> Vec<String> {
    s.listing()
        .into_iter()
        .filter(|p| p.contains(".nodeimg-staging-") && !p.contains('/'))
        .collect()
}

/// The ports a machine's firewall opens to anyone (the seed's rules,
/// besides SSH), one per port and protocol.
pub fn opened_to_anyone(
    s: &Scratch,
    out: &str,
    machine: &str,
) -> std::collections::BTreeSet<(u16, String)> {
    let env = seed_file(&s.path(&format!("{out}/{machine}/user-data")), "setup.env");
    let rules = env
        .split("FIREWALL_RULES=")
        .nth(1)
        .expect("FIREWALL_RULES in setup.env");
    // A single-quoted shell value, one rule a line: PORTS PROTO FROM COMMENT.
    let rules = rules.strip_prefix('\'').expect("a quoted value");
    let rules = &rules[..rules.find("\n'").expect("the closing quote")];
    let mut open = std::collections::BTreeSet::new();
    for line in rules.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w[2] != "any" {
            continue;
        }
        for p in w[0].split(',') {
            open.insert((p.parse().unwrap(), w[1].to_string()));
        }
    }
    open
}

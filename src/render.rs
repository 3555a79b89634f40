//! Render stage: tera templates from cloudinit/ (embedded, or a directory
//! that overrides them file by file) into each machine's seed files.
//!
//! Escaping is automatic and decided by the template's suffix:
//! - `*.yaml`: every interpolated string becomes a double-quoted YAML scalar;
//! - `*.sh`: every interpolated string becomes a single-quoted shell word;
//! - anything else (config files): no escaping; the values that reach them
//!   were validated to hold no special characters.
//!
//! Numbers and booleans are written as they are. `| yaml` writes any value
//! (lists, maps) as flow YAML; `| yaml_block(indent=N)` writes a multi-line
//! string as a literal block.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use tera::{Context, Kwargs, State, Tera, Value};

use crate::diag::{Diagnostic, Kind};
use crate::model::sh_quote;

/// The embedded templates, by name (path under cloudinit/).
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "user-data.yaml",
        include_str!("../cloudinit/user-data.yaml"),
    ),
    (
        "meta-data.yaml",
        include_str!("../cloudinit/meta-data.yaml"),
    ),
    (
        "network-config.yaml",
        include_str!("../cloudinit/network-config.yaml"),
    ),
    ("files/hosts", include_str!("../cloudinit/files/hosts")),
    (
        "files/chrony.conf",
        include_str!("../cloudinit/files/chrony.conf"),
    ),
    (
        "files/sshd.conf",
        include_str!("../cloudinit/files/sshd.conf"),
    ),
    (
        "files/ssh-socket.conf",
        include_str!("../cloudinit/files/ssh-socket.conf"),
    ),
    ("files/exports", include_str!("../cloudinit/files/exports")),
    (
        "files/microk8s.yaml",
        include_str!("../cloudinit/files/microk8s.yaml"),
    ),
    (
        "files/setup.env.sh",
        include_str!("../cloudinit/files/setup.env.sh"),
    ),
    (
        "files/nodeimg-setup.sh",
        include_str!("../cloudinit/files/nodeimg-setup.sh"),
    ),
    (
        "files/nodeimg-online.service",
        include_str!("../cloudinit/files/nodeimg-online.service"),
    ),
    (
        "files/nodeimg-failover.service",
        include_str!("../cloudinit/files/nodeimg-failover.service"),
    ),
    (
        "files/nodeimg-failover.timer",
        include_str!("../cloudinit/files/nodeimg-failover.timer"),
    ),
];

/// Templates rendered into `files.<key>` before the seed files; the key is
/// the name without `files/` with `.`/`-` turned into `_`.
fn file_key(name: &str) -> Option<String> {
    name.strip_prefix("files/")
        .map(|n| n.replace(['.', '-'], "_"))
}

pub struct Engine {
    yaml: Tera,
    sh: Tera,
    plain: Tera,
    /// Template name -> the name tera knows it by (its file, for errors).
    shown: BTreeMap<String, String>,
    /// The `files/` templates that may use a machine's own values.
    per_machine: std::collections::BTreeSet<String>,
}

/// The context keys that differ between machines ([`crate::resolve::machine_context`]).
const MACHINE_KEYS: &[&str] = &[
    "machine", "hosts", "host_key", "firewall", "packages", "payload",
];

/// Whether a template may depend on the machine: an expression or tag of
/// it names one of the machine's keys, or pulls in another template.
/// (Undefined names can be falsy in tera's conditions, so rendering without
/// them proves nothing.)
fn needs_machine(text: &str) -> bool {
    let mut rest = text;
    while let Some(open) = rest.find(['{']) {
        let after = &rest[open + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                rest = after;
                continue;
            }
        };
        let end = after.find(close).unwrap_or(after.len());
        let code = &after[1..end];
        let mut words = code
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty());
        if words.any(|w| MACHINE_KEYS.contains(&w) || matches!(w, "include" | "import" | "extends"))
        {
            return true;
        }
        rest = &after[end..];
    }
    false
}

/// `"..."`: a JSON string is a valid YAML double-quoted scalar.
fn escape_yaml(input: &str, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let quoted = serde_json::to_string(input).map_err(std::io::Error::other)?;
    out.write_all(quoted.as_bytes())
}

fn escape_sh(input: &str, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    out.write_all(sh_quote(input).as_bytes())
}

fn yaml_filter(v: Value, _: Kwargs, _: &State) -> tera::TeraResult<Value> {
    let json = serde_json::to_string(&v).map_err(tera::Error::message)?;
    Ok(Value::safe_string(&json))
}

/// A literal block scalar (`|`) holding `s` exactly, indented by `indent`.
pub fn yaml_block(s: &str, indent: usize) -> String {
    // ASCII is checked byte by byte (the common case, and fast); other
    // text character by character.
    let printable = if s.is_ascii() {
        s.bytes()
            .all(|b| b == b'\n' || b == b'\t' || (b' '..0x7f).contains(&b))
    } else {
        s.chars()
            .all(|c| c == '\n' || c == '\t' || (!c.is_control() && c != '\u{feff}'))
    };
    if s.is_empty() || !printable || s.contains('\r') {
        return serde_json::to_string(s).unwrap_or_default();
    }
    let trailing = s.len() - s.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let lead = if s.starts_with(' ') || s.starts_with('\n') {
        "2"
    } else {
        ""
    };
    let pad = " ".repeat(indent);
    let body = if trailing == 0 { s } else { &s[..s.len() - 1] };
    // Sized once: a 2000-machine /etc/hosts is embedded in every seed.
    let mut out = String::with_capacity(body.len() + (body.len() / 16 + 2) * (indent + 1));
    out.push('|');
    out.push_str(lead);
    out.push_str(chomp);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out
}

fn yaml_block_filter(v: &str, kwargs: Kwargs, _: &State) -> tera::TeraResult<Value> {
    let indent = kwargs.get::<usize>("indent")?.unwrap_or(2).min(64);
    Ok(Value::safe_string(&yaml_block(v, indent)))
}

fn sh_filter(v: &str, _: Kwargs, _: &State) -> Value {
    Value::safe_string(&sh_quote(v))
}

fn new_tera(suffix: &str, escape: tera::EscapeFn) -> Tera {
    let mut t = Tera::new();
    t.set_escape_fn(escape);
    t.autoescape_on(vec![suffix.to_string()]);
    t.register_filter("yaml", yaml_filter);
    t.register_filter("yaml_block", yaml_block_filter);
    t.register_filter("sh", sh_filter);
    t
}

/// Renders one shell template of nodeimg's own (not the user's: no
/// `--templates` override), every `{{ value }}` quoted for `sh`. `shown`
/// names the template in errors.
pub fn render_own_sh(shown: &str, text: &str, ctx: &serde_json::Value) -> Result<String> {
    let mut sh = new_tera(".sh", escape_sh);
    sh.add_raw_template(shown, text)
        .map_err(|e| anyhow::Error::new(render_error(&e)))?;
    let ctx = Context::from_serialize(ctx).context("internal: context not serializable")?;
    sh.render(shown, &ctx)
        .map_err(|e| anyhow::Error::new(render_error(&e)))
}

impl Engine {
    /// The embedded templates, with files from `dir` (same relative names)
    /// replacing them; `dir` may also add templates under files/.
    pub fn new(dir: Option<&Path>) -> Result<Engine> {
        let mut sources: BTreeMap<String, (String, String)> = TEMPLATES
            .iter()
            .map(|(n, s)| (n.to_string(), (format!("cloudinit/{n}"), s.to_string())))
            .collect();
        if let Some(dir) = dir {
            if !dir.is_dir() {
                bail!(Diagnostic::new(Kind::Usage, "no such directory")
                    .at(format!("--templates {}", dir.display()))
                    .hint("give a folder of templates laid out as cloudinit/ (e.g. files/chrony.conf)"));
            }
            for rel in walk(dir)? {
                let path = dir.join(&rel);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read template {}", path.display()))?;
                sources.insert(rel, (path.display().to_string(), text));
            }
        }
        let mut yaml = new_tera(".yaml", escape_yaml);
        let mut sh = new_tera(".sh", escape_sh);
        let mut plain = new_tera(".never-escaped", escape_sh);
        let mut shown_names = BTreeMap::new();
        let mut per_machine = std::collections::BTreeSet::new();
        for (name, (shown, text)) in &sources {
            if needs_machine(text) {
                per_machine.insert(name.clone());
            }
            // Errors name the template file; tera adds line, column and a caret.
            let engine = if name.ends_with(".yaml") {
                &mut yaml
            } else if name.ends_with(".sh") {
                &mut sh
            } else {
                &mut plain
            };
            engine
                .add_raw_template(shown, text)
                .map_err(|e| anyhow::Error::new(render_error(&e)))?;
            shown_names.insert(name.clone(), shown.clone());
        }
        Ok(Engine {
            yaml,
            sh,
            plain,
            shown: shown_names,
            per_machine,
        })
    }

    fn render_one(&self, name: &str, ctx: &Context) -> Result<String> {
        let engine = if name.ends_with(".yaml") {
            &self.yaml
        } else if name.ends_with(".sh") {
            &self.sh
        } else {
            &self.plain
        };
        let shown = self
            .shown
            .get(name)
            .with_context(|| format!("template {name} is missing"))?;
        engine
            .render(shown, ctx)
            .map_err(|e| anyhow::Error::new(render_error(&e)))
    }

    /// Prepares what every machine shares: the cluster context, converted
    /// once, and the `files/` templates that render from it alone (they use
    /// no machine's own values), rendered once. Per machine only the rest is
    /// rendered, so a build of n machines costs n, not n x n.
    pub fn prepare(&self, cluster: &serde_json::Value) -> Result<Shared> {
        let context =
            Context::from_serialize(cluster).context("internal: context not serializable")?;
        let mut files = BTreeMap::new();
        for name in self.shown.keys().filter(|n| !self.per_machine.contains(*n)) {
            if let Some(key) = file_key(name) {
                // An error here is reported per machine, where it happens again.
                if let Ok(text) = self.render_one(name, &context) {
                    files.insert(key, text);
                }
            }
        }
        Ok(Shared { context, files })
    }

    /// Renders the machine's own `files/` templates, then user-data and
    /// network-config, then meta-data (whose instance-id hashes the other two).
    pub fn render_machine(&self, shared: &Shared, own: &serde_json::Value) -> Result<Seed> {
        let mut base = shared.context.clone();
        base.extend(Context::from_serialize(own).context("internal: context not serializable")?);
        let mut files = serde_json::Map::new();
        for name in self.shown.keys() {
            if let Some(key) = file_key(name) {
                let text = match shared.files.get(&key) {
                    Some(text) => text.clone(),
                    None => self.render_one(name, &base)?,
                };
                files.insert(key, serde_json::Value::String(text));
            }
        }
        let mut full = base;
        full.insert("files", &serde_json::Value::Object(files));
        let user_data = self.render_one("user-data.yaml", &full)?;
        let network_config = self.render_one("network-config.yaml", &full)?;
        let instance_id = instance_id(&user_data, &network_config);
        full.insert("instance_id", &instance_id);
        let meta_data = self.render_one("meta-data.yaml", &full)?;
        Ok(Seed {
            user_data,
            meta_data,
            network_config,
        })
    }
}

/// What [`Engine::prepare`] made once for all machines.
pub struct Shared {
    context: Context,
    /// `files.<key>` of the templates that need no machine.
    files: BTreeMap<String, String>,
}

/// The three NoCloud files of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
}

impl Seed {
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [
            ("user-data", self.user_data.as_str()),
            ("meta-data", self.meta_data.as_str()),
            ("network-config", self.network_config.as_str()),
        ]
    }

    /// Every `write_files` entry of the user-data, in order, as cloud-init
    /// reads it (entries without a path or content are skipped, as there).
    pub fn write_files(&self) -> Vec<WrittenFile> {
        use crate::diag::Path as KeyPath;
        use crate::yaml::Kind as NodeKind;
        let Ok(tree) = crate::yaml::parse(&self.user_data) else {
            return Vec::new();
        };
        let Some(NodeKind::Seq(items)) = tree.get(&KeyPath::parse("write_files")).map(|l| &l.kind)
        else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| {
                let get = |k: &str| match item.get(&KeyPath::root().key(k)).map(|n| &n.kind) {
                    Some(NodeKind::Str(s)) => Some(s.clone()),
                    _ => None,
                };
                Some(WrittenFile {
                    path: get("path")?,
                    content: get("content")?,
                    encoding: get("encoding").unwrap_or_default(),
                    permissions: get("permissions"),
                })
            })
            .collect()
    }
}

/// One `write_files` entry: the file cloud-init writes on first boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: String,
    /// As the user-data holds it (encoded when `encoding` says so).
    pub content: String,
    pub encoding: String,
    pub permissions: Option<String>,
}

impl WrittenFile {
    /// The bytes cloud-init writes: the content decoded (`b64`, `gz+b64`
    /// and their spellings); None when cloud-init could not decode it.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        use std::io::Read as _;
        let b64 = || {
            base64::engine::general_purpose::STANDARD
                .decode(self.content.split_whitespace().collect::<String>())
                .ok()
        };
        match self.encoding.as_str() {
            "" | "text/plain" => Some(self.content.as_bytes().to_vec()),
            "b64" | "base64" => b64(),
            "gz+b64" | "gzip+base64" | "gz+base64" => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&b64()?[..])
                    .read_to_end(&mut out)
                    .ok()?;
                Some(out)
            }
            _ => None,
        }
    }

    /// The file's mode; None when the entry gives none (cloud-init's
    /// default, 0644) or one that is not octal.
    pub fn mode(&self) -> Option<u32> {
        let p = self.permissions.as_deref()?;
        u32::from_str_radix(p.trim_start_matches("0o"), 8).ok()
    }
}

/// cloud-init runs first boot again when the instance-id changes, so it
/// follows the seed's content: a new seed is a new instance.
fn instance_id(user_data: &str, network_config: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(user_data.as_bytes());
    h.update([0u8]);
    h.update(network_config.as_bytes());
    format!("iid-nodeimg-{}", &hex::encode(h.finalize())[..16])
}

fn render_error(e: &tera::Error) -> Diagnostic {
    // tera 2 errors carry file:line:col and a caret in their Display and
    // in their source chain.
    let mut out = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(&format!("\n  {s}"));
        src = s.source();
    }
    Diagnostic::new(Kind::Template, format!("template error: {out}"))
        .hint("fix the template at that line (a --templates override, or report a bug)")
}

fn walk(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_that_name_a_machine_key_are_rendered_per_machine() {
        assert!(!needs_machine(
            "# every machine\n{% for m in machines %}{{ m.ip }}\n{% endfor %}"
        ));
        assert!(needs_machine(
            "{%- if machine.role == \"master\" %}x{% endif %}"
        ));
        assert!(needs_machine("{{ ssh.host_key.private }}"));
        assert!(needs_machine("{% include \"other\" %}"));
        assert!(!needs_machine("Port {{ ssh.port }} and a lone { brace"));
        let embedded = |name: &str| TEMPLATES.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(!needs_machine(embedded("files/chrony.conf")));
        assert!(needs_machine(embedded("files/hosts")));
        assert!(needs_machine(
            "{% for m in hosts %}{{ m.ip }}\n{% endfor %}"
        ));
        assert!(needs_machine(embedded("files/microk8s.yaml")));
        assert!(needs_machine(embedded("files/setup.env.sh")));
    }

    fn roundtrip(s: &str) -> String {
        let doc = format!("key: {}\n", yaml_block(s, 2));
        #[derive(serde::Deserialize)]
        struct D {
            key: String,
        }
        serde_saphyr::from_str::<D>(&doc).unwrap().key
    }

    #[test]
    fn yaml_block_keeps_text_exactly() {
        for s in [
            "a\nb\n",
            "no newline",
            "two\n\n",
            "  leading spaces\nx\n",
            "\nleading newline\n",
            "tab\there\n",
            "quote \" and ' and # and : and - \n",
            "",
            "ctrl\u{7}char",
            "a\n\nb\n",
        ] {
            assert_eq!(roundtrip(s), s, "block for {s:?}");
        }
    }

    #[test]
    fn yaml_escape_quotes_strings() {
        let mut out = Vec::new();
        escape_yaml("a\"b: c\n#d", &mut out).unwrap();
        let doc = format!("k: {}\n", String::from_utf8(out).unwrap());
        #[derive(serde::Deserialize)]
        struct D {
            k: String,
        }
        assert_eq!(serde_saphyr::from_str::<D>(&doc).unwrap().k, "a\"b: c\n#d");
    }

    #[test]
    fn sh_quote_survives_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}

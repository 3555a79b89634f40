//! The one redaction point: every message nodeimg prints (errors, warnings,
//! check problems, template errors) passes through [`redact`], which
//! replaces each secret value this process has seen with `***`. Secrets are
//! registered where they are read or made (the secrets file, the validator
//! passwords), so no message path can forget one.

use std::sync::RwLock;

use base64::Engine as _;

pub const HIDDEN: &str = "***";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shorter values would hide ordinary words; a secret that short is
/// refused where it is read.
const MIN_LEN: usize = 6;
/// A line of a multi-line secret (a private key's base64 body) is hidden
/// on its own from this length on, so a message quoting one line of it
/// hides it too.
const MIN_LINE_LEN: usize = 16;

fn forms(value: &str) -> Vec<String> {
    let mut v = Vec::new();
    let trimmed = value.trim();
    if trimmed.len() >= MIN_LEN {
        v.push(trimmed.to_string());
        // Templates may carry a secret base64-encoded (write_files).
        v.push(base64::engine::general_purpose::STANDARD.encode(trimmed));
        v.push(base64::engine::general_purpose::STANDARD.encode(value));
    }
    if trimmed.contains('\n') {
        for line in trimmed.lines() {
            let line = line.trim();
            if line.len() >= MIN_LINE_LEN && !line.starts_with("-----") {
                v.push(line.to_string());
            }
        }
        // As a JSON or YAML double-quoted string would escape it.
        v.push(trimmed.replace('\n', "\\n"));
    }
    v
}

/// Adds secret values to hide from every later message.
pub fn register(values: &[String]) {
    let mut all = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    // A set, not `contains` on the list: a 2000-machine profile registers
    // some 16000 forms (host keys), and pairwise comparison was quadratic.
    let mut seen: std::collections::HashSet<String> = all.iter().cloned().collect();
    for value in values {
        for f in forms(value) {
            if seen.insert(f.clone()) {
                all.push(f);
            }
        }
    }
    // Longest first, so a value that contains another is hidden whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Whether `text` holds a registered secret (in any of its forms).
pub fn holds_secret(text: &str) -> bool {
    let all = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    all.iter().any(|s| text.contains(s.as_str()))
}

/// `text` with every registered secret replaced by [`HIDDEN`].
pub fn redact(text: &str) -> String {
    let all = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut out = text.to_string();
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), HIDDEN);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_values_their_lines_and_base64() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\nbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
        register(&["0123456789abcdef0123456789abcdef".into(), key.into()]);
        let msg = "token 0123456789abcdef0123456789abcdef, line bm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
        assert_eq!(redact(msg), "token ***, line ***");
        let b64 =
            base64::engine::general_purpose::STANDARD.encode("0123456789abcdef0123456789abcdef");
        assert_eq!(redact(&format!("x{b64}x")), "x***x");
        assert_eq!(redact("nothing secret here"), "nothing secret here");
    }
}

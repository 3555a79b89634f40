//! Diagnostics: what is wrong, where, and how to fix it.
//!
//! Checks speak in paths (`machines[2].ip`); the path becomes
//! `file:line:col` only when the report is printed, from the YAML tree.

use std::fmt;

use crate::yaml::Node;

/// A 1-based line and column in the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into the profile, e.g. `machines[2].ip`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path(Vec<Seg>);

impl Path {
    pub fn root() -> Path {
        Path(Vec::new())
    }
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
    pub fn segments(&self) -> &[Seg] {
        &self.0
    }
    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
    /// Parses `a.b[3].c`; keys must not contain `.` or `[`.
    pub fn parse(s: &str) -> Path {
        let mut p = Path::root();
        for part in s.split('.').filter(|x| !x.is_empty()) {
            let mut rest = part;
            if let Some(i) = rest.find('[') {
                p = p.key(&rest[..i]);
                rest = &rest[i..];
                while let Some(end) = rest.find(']') {
                    if let Ok(n) = rest[1..end].parse() {
                        p = p.index(n);
                    }
                    rest = &rest[end + 1..];
                }
            } else {
                p = p.key(rest);
            }
        }
        p
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path(Path),
    Pos(Pos),
}

/// One finding: where, what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    pub message: String,
    pub hint: String,
}

impl Diagnostic {
    pub fn error(path: Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location: Location::Path(path),
            message: message.into(),
            hint: hint.into(),
        }
    }
    pub fn warning(path: Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message, hint)
        }
    }
    pub fn at_pos(pos: Pos, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location: Location::Pos(pos),
            message: message.into(),
            hint: hint.into(),
        }
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
    pub fn pos(&self, tree: Option<&Node>) -> Pos {
        match (&self.location, tree) {
            (Location::Pos(p), _) => *p,
            (Location::Path(path), Some(tree)) => tree.pos_of(path),
            (Location::Path(_), None) => Pos { line: 1, col: 1 },
        }
    }
}

/// Every finding about one file, printable as `FILE:LINE:COL: error: WHAT`.
#[derive(Debug, Clone)]
pub struct Report {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
    tree: Option<Node>,
}

impl Report {
    pub fn new(file: impl Into<String>, tree: Option<Node>, diagnostics: Vec<Diagnostic>) -> Self {
        let mut r = Report {
            file: file.into(),
            diagnostics,
            tree,
        };
        let tree = r.tree.clone();
        r.diagnostics
            .sort_by_key(|d| (d.pos(tree.as_ref()), d.severity));
        r.diagnostics.dedup();
        r
    }
    /// A report of `d` alone about the same file (for problems found after
    /// validation, such as a disk size the base image does not fit).
    pub fn about(&self, d: Diagnostic) -> Report {
        self.about_all(vec![d])
    }
    pub fn about_all(&self, diagnostics: Vec<Diagnostic>) -> Report {
        Report::new(self.file.clone(), self.tree.clone(), diagnostics)
    }
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
    /// The position a diagnostic resolves to in this file.
    pub fn pos(&self, d: &Diagnostic) -> Pos {
        d.pos(self.tree.as_ref())
    }
    /// Renders only the diagnostics that `keep` selects.
    pub fn render_filtered(&self, keep: impl Fn(&Diagnostic) -> bool) -> String {
        let mut out = String::new();
        for d in self.diagnostics.iter().filter(|d| keep(d)) {
            let pos = self.pos(d);
            let kind = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            out.push_str(&format!(
                "{}:{}:{}: {kind}: {}\n  hint: {}\n",
                self.file,
                pos.line,
                pos.col,
                shorten(&d.message),
                d.hint
            ));
        }
        out
    }
}

/// The longest message shown whole: a value pasted into a message (a 50 MB
/// string in a profile, say) is cut, with its length said.
pub const MAX_MESSAGE: usize = 400;

/// `text`, cut to about [`MAX_MESSAGE`] characters at a character boundary.
pub fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_MESSAGE {
        return text.into();
    }
    let mut end = MAX_MESSAGE - 40;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... (cut: {} characters in all)",
        &text[..end],
        text.chars().count()
    )
    .into()
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.render_filtered(|_| true))
    }
}

impl std::error::Error for Report {}

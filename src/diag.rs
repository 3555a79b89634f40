//! Diagnostics: what is wrong, where, and how to fix it.
//!
//! Checks speak in paths (`machines[2].ip`); the path becomes
//! `file:line:col` only when the report is printed, from the YAML tree.

use std::fmt;
use std::sync::Arc;

/// Where paths are in a file: the YAML tree ([`crate::yaml::Node`]) knows.
/// A trait, so that diagnostics need not know the parser.
pub trait Positions: fmt::Debug + Send + Sync {
    /// The position of the value at `path`, or of its nearest existing parent.
    fn pos_of(&self, path: &Path) -> Pos;
}

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
    pub fn pos(&self, tree: Option<&dyn Positions>) -> Pos {
        match (&self.location, tree) {
            (Location::Pos(p), _) => *p,
            (Location::Path(path), Some(tree)) => tree.pos_of(path),
            (Location::Path(_), None) => Pos { line: 1, col: 1 },
        }
    }
}

/// Collects the findings of a check run: what is wrong where (paths), and
/// how to fix it.
#[derive(Default)]
pub(crate) struct Checker {
    pub(crate) diags: Vec<Diagnostic>,
}

impl Checker {
    pub(crate) fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.is_error()).count()
    }
    pub(crate) fn error(
        &mut self,
        path: Path,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags.push(Diagnostic::error(path, message, hint));
    }
    pub(crate) fn warning(
        &mut self,
        path: Path,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags.push(Diagnostic::warning(path, message, hint));
    }
}

/// Every finding about one file, printable as `FILE:LINE:COL: error: WHAT`.
#[derive(Debug, Clone)]
pub struct Report {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
    tree: Option<Arc<dyn Positions>>,
}

impl Report {
    pub fn new(
        file: impl Into<String>,
        tree: Option<impl Positions + 'static>,
        diagnostics: Vec<Diagnostic>,
    ) -> Self {
        let tree = tree.map(|t| Arc::new(t) as Arc<dyn Positions>);
        Report::with_positions(file.into(), tree, diagnostics)
    }
    /// A report whose diagnostics all carry their position already.
    pub fn positioned(file: impl Into<String>, diagnostics: Vec<Diagnostic>) -> Self {
        Report::with_positions(file.into(), None, diagnostics)
    }
    fn with_positions(
        file: String,
        tree: Option<Arc<dyn Positions>>,
        diagnostics: Vec<Diagnostic>,
    ) -> Self {
        let mut r = Report {
            file,
            diagnostics,
            tree,
        };
        let tree = r.tree.clone();
        r.diagnostics
            .sort_by_key(|d| (d.pos(tree.as_deref()), d.severity));
        r.diagnostics.dedup();
        r
    }
    /// A report of `d` alone about the same file (for problems found after
    /// validation, such as a disk size the base image does not fit).
    pub fn about(&self, d: Diagnostic) -> Report {
        self.about_all(vec![d])
    }
    pub fn about_all(&self, diagnostics: Vec<Diagnostic>) -> Report {
        Report::with_positions(self.file.clone(), self.tree.clone(), diagnostics)
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
        d.pos(self.tree.as_deref())
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

/// What a [`Failure`] is about, for callers and tests to match on (the
/// message is for people and may be reworded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A command-line argument names something that is not there or not
    /// usable (`--only`, `show`'s file, `--login-key`, `--charts`).
    Usage,
    /// The secrets file: missing folder, damaged, not private, a dangling link.
    Secrets,
    /// The output folder (`-o`) cannot be made or replaced safely.
    Output,
    /// A download or the download cache: refused, too large, wrong sha256.
    Download,
    /// A base image that nodeimg cannot embed a seed into.
    Image,
    /// `flash`: the device is a partition, in use, or did not verify.
    Device,
    /// A rendered seed failed nodeimg's own checks (a template's doing).
    Seed,
    /// A tool nodeimg runs is missing.
    Tool,
    /// A template does not parse or render (tera names its line).
    Template,
}

/// A user-facing error that is not about a line of the profile (those are
/// [`Report`]s): what is wrong, where (a file, `file:line:col` when known, or
/// an argument), and how to fix it. Printed as
/// `PLACE: error: WHAT` and `  hint: HOW`, like the profile's diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    /// Empty when the error is about no file or argument.
    pub place: String,
    pub message: String,
    pub hint: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            place: String::new(),
            message: message.into(),
            hint: String::new(),
        }
    }

    /// Where: a path (shown as it is) or an argument (`-o out`).
    pub fn at(mut self, place: impl fmt::Display) -> Failure {
        self.place = place.to_string();
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = hint.into();
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if !self.place.is_empty() {
            write!(f, "{}: ", self.place)?;
        }
        write!(f, "error: {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// A tool nodeimg runs could not be started: a [`Failure`] naming the
/// Debian package that has it.
pub fn tool_missing(tool: &str, package: &str, e: std::io::Error) -> anyhow::Error {
    Failure::new(Kind::Tool, format!("cannot run {tool}: {e}"))
        .hint(format!("apt-get install {package}"))
        .into()
}

/// Several [`Failure`]s found together (every seed problem, not the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failures(pub Vec<Failure>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let text: Vec<String> = self.0.iter().map(Failure::to_string).collect();
        f.write_str(&text.join("\n"))
    }
}

impl std::error::Error for Failures {}

/// The [`Failure`] an error is or wraps (the first of [`Failures`]), if any.
pub fn failure_of(e: &anyhow::Error) -> Option<&Failure> {
    e.chain().find_map(|c| {
        c.downcast_ref::<Failure>()
            .or_else(|| c.downcast_ref::<Failures>().and_then(|f| f.0.first()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in tree: every path is at the line of its depth.
    #[derive(Debug)]
    struct ByDepth;
    impl Positions for ByDepth {
        fn pos_of(&self, path: &Path) -> Pos {
            Pos {
                line: path.segments().len() as u32 + 1,
                col: 3,
            }
        }
    }

    #[test]
    fn paths_parse_and_print_as_the_messages_write_them() {
        let p = Path::parse("machines[2].nics[0].ip");
        assert_eq!(p.to_string(), "machines[2].nics[0].ip");
        assert_eq!(
            p,
            Path::root()
                .key("machines")
                .index(2)
                .key("nics")
                .index(0)
                .key("ip")
        );
        assert_eq!(Path::root().to_string(), "(top level)");
        assert!(Path::parse("").is_root());
    }

    /// A report prints `FILE:LINE:COL: error: WHAT` and the hint, in the order
    /// of the file, each finding once, errors before warnings at one place.
    #[test]
    fn a_report_is_ordered_by_position_without_repeats() {
        let d = vec![
            Diagnostic::warning(Path::parse("a"), "w at a", "h1"),
            Diagnostic::error(Path::parse("a.b.c"), "deep", "h2"),
            Diagnostic::error(Path::parse("a"), "e at a", "h3"),
            Diagnostic::error(Path::parse("a"), "e at a", "h3"),
            Diagnostic::at_pos(Pos { line: 1, col: 1 }, "first", "h4"),
        ];
        let r = Report::new("p.yaml", Some(ByDepth), d);
        assert_eq!(r.error_count(), 3);
        assert_eq!(r.warnings().count(), 1);
        assert_eq!(
            r.to_string(),
            "p.yaml:1:1: error: first\n  hint: h4\n\
             p.yaml:2:3: error: e at a\n  hint: h3\n\
             p.yaml:2:3: warning: w at a\n  hint: h1\n\
             p.yaml:4:3: error: deep\n  hint: h2\n"
        );
        // Without a tree a path has no position to name but the start.
        let alone = Report::positioned(
            "p.yaml",
            vec![Diagnostic::error(Path::parse("x"), "m", "h")],
        );
        assert_eq!(alone.to_string(), "p.yaml:1:1: error: m\n  hint: h\n");
    }

    #[test]
    fn a_huge_value_in_a_message_is_cut_with_its_length_said() {
        let big = "é".repeat(10_000);
        let short = shorten(&big);
        assert!(short.len() <= MAX_MESSAGE, "{}", short.len());
        assert!(
            short.ends_with("... (cut: 10000 characters in all)"),
            "{short}"
        );
        assert_eq!(shorten("small"), "small");
        let r = Report::positioned(
            "p",
            vec![Diagnostic::at_pos(
                Pos { line: 1, col: 1 },
                big.clone(),
                "h",
            )],
        );
        assert!(r.to_string().len() < MAX_MESSAGE + 40);
    }
}

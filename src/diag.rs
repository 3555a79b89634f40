//! Diagnostics: what kind of mistake, where, what is wrong and how to fix
//! it; the one user-facing error of every stage.
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

/// What a finding is about, for callers and tests to match on: the message
/// is for people and may be reworded, the kind stays (as butane's one error
/// vocabulary). The first group names what is wrong with a value of the
/// profile, the second what went wrong in a later stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The file is not a YAML document nodeimg can read: empty, not UTF-8,
    /// bad syntax, past the parser's limits.
    Syntax,
    /// A key the profile format does not have (usually a typo).
    UnknownKey,
    /// A value of the wrong type: a list for a string, text for a number.
    WrongType,
    /// A key or section the profile needs is not there.
    Missing,
    /// A value that is not in its form: not an address, a subnet, a MAC, a
    /// name, a URL, a sha256, an image reference, an Ethereum address.
    Malformed,
    /// A name that is none of the choices: a role, a client, an override, a
    /// release, a machine the key must name.
    Unknown,
    /// Something used twice that must be unique: a name, an address, a key.
    Duplicate,
    /// A number, size or length outside what it may be, or an address
    /// outside its subnet.
    OutOfRange,
    /// A value in a reserved range or name: loopback, broadcast, the
    /// gateway's address, a system folder or account, the zero address.
    Reserved,
    /// Two settings that contradict each other.
    Conflict,
    /// Known, but not supported by this nodeimg or with these settings.
    Unsupported,
    /// Follows a moving target: an image tag, a channel, no checksum.
    Unpinned,
    /// A staking setting with a slashing or loss risk (an override may
    /// waive it; the message names the risk).
    Unsafe,
    /// Legal, but probably not what was meant (warnings).
    Risky,
    /// A validator keystore folder or password file nodeimg cannot use.
    Keystore,

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

/// Where a finding is: a path into the profile (made a line and column from
/// the YAML tree when printed), a position already known, or another place
/// (a file, `file:line:col` of a rendered seed, an argument such as `-o out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path(Path),
    Pos(Pos),
    Place(String),
    /// About no file or argument.
    Nowhere,
}

/// The one user-facing error (and warning) of every stage: what kind, where,
/// what is wrong and how to fix it. Printed as `PLACE: error: WHAT` and
/// `  hint: HOW`; a profile's findings come together in a [`Report`], which
/// turns their paths into `FILE:LINE:COL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub kind: Kind,
    pub severity: Severity,
    pub location: Location,
    pub message: String,
    /// Empty when there is nothing to add.
    pub hint: String,
}

impl Diagnostic {
    /// An error about no place yet: add one with [`Diagnostic::at`].
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Diagnostic {
            kind,
            severity: Severity::Error,
            location: Location::Nowhere,
            message: message.into(),
            hint: String::new(),
        }
    }
    /// Where: a path (shown as it is) or an argument (`-o out`).
    pub fn at(mut self, place: impl fmt::Display) -> Self {
        self.location = Location::Place(place.to_string());
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }
    fn located(kind: Kind, location: Location, message: String, hint: String) -> Self {
        Diagnostic {
            location,
            ..Diagnostic::new(kind, message).hint(hint)
        }
    }
    /// A finding about the value at `path` in the profile.
    pub fn error(
        kind: Kind,
        path: Path,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic::located(kind, Location::Path(path), message.into(), hint.into())
    }
    pub fn warning(
        kind: Kind,
        path: Path,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(kind, path, message, hint)
        }
    }
    /// A finding at a known line and column of the profile.
    pub fn at_pos(
        kind: Kind,
        pos: Pos,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic::located(kind, Location::Pos(pos), message.into(), hint.into())
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
    /// The line and column in the profile; line 0 for a finding placed
    /// elsewhere, 1:1 for a path with no tree to look it up in.
    pub fn pos(&self, tree: Option<&dyn Positions>) -> Pos {
        match (&self.location, tree) {
            (Location::Pos(p), _) => *p,
            (Location::Path(path), Some(tree)) => tree.pos_of(path),
            (Location::Path(_), None) => Pos { line: 1, col: 1 },
            (Location::Place(_) | Location::Nowhere, _) => Pos { line: 0, col: 0 },
        }
    }

    /// Writes `PLACE: error: WHAT` and the hint line; `file` and `tree`
    /// place a finding about the profile.
    fn write(
        &self,
        f: &mut impl fmt::Write,
        file: &str,
        tree: Option<&dyn Positions>,
    ) -> fmt::Result {
        match &self.location {
            Location::Path(_) | Location::Pos(_) => {
                let pos = self.pos(tree);
                write!(f, "{file}:{}:{}: ", pos.line, pos.col)?;
            }
            Location::Place(place) => write!(f, "{place}: ")?,
            Location::Nowhere => {}
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        // A profile's value pasted into a message is cut (a 50 MB string);
        // other messages (a template error naming its line) are whole.
        match self.location {
            Location::Path(_) | Location::Pos(_) => {
                write!(f, "{severity}: {}", shorten(&self.message))?
            }
            _ => write!(f, "{severity}: {}", self.message)?,
        }
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// Alone (outside a [`Report`]), a finding about the profile names its path.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.location {
            Location::Path(path) => {
                let placed = Diagnostic {
                    location: Location::Place(path.to_string()),
                    ..self.clone()
                };
                placed.write(f, "", None)
            }
            _ => self.write(f, "", None),
        }
    }
}

impl std::error::Error for Diagnostic {}

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
        kind: Kind,
        path: Path,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(kind, path, message, hint));
    }
    pub(crate) fn warning(
        &mut self,
        kind: Kind,
        path: Path,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::warning(kind, path, message, hint));
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
    /// Several findings, each with a place of its own (every problem of the
    /// rendered seeds, not the first).
    pub fn several(diagnostics: Vec<Diagnostic>) -> Self {
        // In the order found, every one (no position to sort or merge by).
        Report {
            file: String::new(),
            diagnostics,
            tree: None,
        }
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
    /// Renders only the diagnostics that `keep` selects, a line and its hint
    /// each.
    pub fn render_filtered(&self, keep: impl Fn(&Diagnostic) -> bool) -> String {
        let mut out = String::new();
        for d in self.diagnostics.iter().filter(|d| keep(d)) {
            // Writing to a String cannot fail.
            let _ = d.write(&mut out, &self.file, self.tree.as_deref());
            out.push('\n');
        }
        out
    }
    /// Whether this is about a profile (its findings carry positions in
    /// [`Report::file`]) rather than findings each with a place of its own.
    pub fn is_about_profile(&self) -> bool {
        !self.file.is_empty()
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

/// A tool nodeimg runs could not be started: an error naming the Debian
/// package that has it.
pub fn tool_missing(tool: &str, package: &str, e: std::io::Error) -> anyhow::Error {
    Diagnostic::new(Kind::Tool, format!("cannot run {tool}: {e}"))
        .hint(format!("apt-get install {package}"))
        .into()
}

/// The user-facing error an error is or wraps, if any: a [`Diagnostic`], or
/// the first error of a [`Report`].
pub fn diagnostic_of(e: &anyhow::Error) -> Option<&Diagnostic> {
    e.chain().find_map(|c| {
        c.downcast_ref::<Diagnostic>().or_else(|| {
            c.downcast_ref::<Report>()
                .and_then(|r| r.diagnostics.iter().find(|d| d.is_error()))
        })
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
            Diagnostic::warning(Kind::Risky, Path::parse("a"), "w at a", "h1"),
            Diagnostic::error(Kind::Malformed, Path::parse("a.b.c"), "deep", "h2"),
            Diagnostic::error(Kind::Malformed, Path::parse("a"), "e at a", "h3"),
            Diagnostic::error(Kind::Malformed, Path::parse("a"), "e at a", "h3"),
            Diagnostic::at_pos(Kind::Syntax, Pos { line: 1, col: 1 }, "first", "h4"),
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
            vec![Diagnostic::error(
                Kind::Malformed,
                Path::parse("x"),
                "m",
                "h",
            )],
        );
        assert_eq!(alone.to_string(), "p.yaml:1:1: error: m\n  hint: h\n");
    }

    /// A finding outside the profile prints at its own place, with the hint
    /// line only when there is a hint; several print in the order found and
    /// are not about a profile (main prints no "N errors in FILE" for them).
    #[test]
    fn a_finding_elsewhere_prints_at_its_place_in_the_same_form() {
        let d = Diagnostic::new(Kind::Output, "holds a file nodeimg did not write")
            .at("-o out")
            .hint("move it away");
        assert_eq!(
            d.to_string(),
            "-o out: error: holds a file nodeimg did not write\n  hint: move it away"
        );
        let bare = Diagnostic::new(Kind::Tool, "cannot run qemu-img");
        assert_eq!(bare.to_string(), "error: cannot run qemu-img");
        // A profile finding alone (no Report to place it) names its path.
        let alone = Diagnostic::error(Kind::Missing, Path::parse("network.dns"), "empty", "h");
        assert_eq!(alone.to_string(), "network.dns: error: empty\n  hint: h");

        let seeds = Report::several(vec![
            Diagnostic::new(Kind::Seed, "b").at("worker-1/user-data:3:1"),
            Diagnostic::new(Kind::Seed, "a").at("master/user-data:9:2"),
        ]);
        assert!(!seeds.is_about_profile());
        assert_eq!(
            seeds.to_string(),
            "worker-1/user-data:3:1: error: b\nmaster/user-data:9:2: error: a\n"
        );
        let e: anyhow::Error = seeds.into();
        assert_eq!(diagnostic_of(&e).map(|d| d.kind), Some(Kind::Seed));
        let wrapped = anyhow::Error::from(d).context("writing the seeds");
        assert_eq!(diagnostic_of(&wrapped).map(|d| d.kind), Some(Kind::Output));
    }

    /// Only an error names a report's kind: a report of warnings alone has
    /// no error to name.
    #[test]
    fn the_error_of_a_report_is_its_first_error_not_a_warning() {
        let r = Report::new(
            "p.yaml",
            Some(ByDepth),
            vec![
                Diagnostic::warning(Kind::Risky, Path::parse("a"), "w", "h"),
                Diagnostic::error(Kind::Duplicate, Path::parse("a.b"), "e", "h"),
            ],
        );
        let e: anyhow::Error = r.into();
        assert_eq!(diagnostic_of(&e).map(|d| d.kind), Some(Kind::Duplicate));
        let warnings_only = Report::new(
            "p.yaml",
            Some(ByDepth),
            vec![Diagnostic::warning(Kind::Risky, Path::parse("a"), "w", "h")],
        );
        assert_eq!(diagnostic_of(&warnings_only.into()), None);
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
                Kind::Syntax,
                Pos { line: 1, col: 1 },
                big.clone(),
                "h",
            )],
        );
        assert!(r.to_string().len() < MAX_MESSAGE + 40);
    }
}

//! The YAML layer: a document tree that remembers where every key and value
//! stood, and a serde `Deserializer` over that tree that keeps going after a
//! mistake so that one run reports every unknown key and wrong type.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{self, Diagnostic, Path, Pos};

/// The deepest nesting of mappings and lists nodeimg reads.
pub const MAX_DEPTH: usize = 32;

/// One YAML node with the position of its first character.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    /// What the node is, for messages ("a string", "a list", ...).
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing (an empty value)".into(),
            Kind::Bool(b) => format!("the boolean {b}"),
            Kind::Int(i) => format!("the number {i}"),
            Kind::Float(f) => format!("the number {f}"),
            Kind::Str(s) => format!("the string {s:?}"),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }

    /// The node a path leads to.
    pub fn get(&self, path: &Path) -> Option<&Node> {
        let mut node = self;
        for seg in path.segments() {
            node = match (&node.kind, seg) {
                (Kind::Map(entries), crate::diag::Seg::Key(k)) => {
                    &entries.iter().find(|(key, _)| key.name == *k)?.1
                }
                (Kind::Seq(items), crate::diag::Seg::Index(i)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Where a path points: the value if it exists, else the nearest
    /// existing parent (a missing key is reported at its mapping).
    pub fn pos_of(&self, path: &Path) -> Pos {
        crate::diag::Positions::pos_of(self, path)
    }
}

impl crate::diag::Positions for Node {
    fn pos_of(&self, path: &Path) -> Pos {
        let mut node = self;
        for seg in path.segments() {
            let next = match (&node.kind, seg) {
                (Kind::Map(entries), crate::diag::Seg::Key(k)) => {
                    entries.iter().find(|(key, _)| key.name == *k).map(|e| &e.1)
                }
                (Kind::Seq(items), crate::diag::Seg::Index(i)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.pos
    }
}

/// Parses YAML text into a [`Node`] tree. A syntax error comes back as one
/// diagnostic at the position the parser stopped.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    // A profile nests a handful of levels. The parser's own limits (64 and
    // 255) let a hostile file exhaust a small thread stack first.
    let options = serde_saphyr::options! {
        with_snippet: false,
        budget: serde_saphyr::budget! { max_depth: MAX_DEPTH, flow_nesting_limit: MAX_DEPTH },
    };
    match serde_saphyr::from_str_with_options::<Option<Spanned<Raw>>>(text, options) {
        Ok(Some(root)) => Ok(root.into()),
        Ok(None) => Err(Diagnostic::at_pos(
            diag::Kind::Syntax,
            Pos { line: 1, col: 1 },
            "the file is empty",
            "start from one of the shipped profiles in profiles/",
        )),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line().max(1) as u32,
                    col: l.column().max(1) as u32,
                })
                .unwrap_or(Pos { line: 1, col: 1 });
            if let Some((message, hint)) = limit_message(&e) {
                return Err(Diagnostic::at_pos(diag::Kind::Syntax, pos, message, hint));
            }
            let message = syntax_message(&e);
            if message.contains("recursion limit exceeded") {
                return Err(Diagnostic::at_pos(
                    diag::Kind::Syntax,
                    pos,
                    too_large(&nested_deeper_than(MAX_DEPTH)),
                    LIMIT_HINT,
                ));
            }
            // The parser stops at the colon of a key indented deeper than
            // its neighbours; the culprit is the key itself.
            let pos = if message.contains("mapping values are not allowed") {
                key_start(text, pos)
            } else {
                pos
            };
            let hint = if message.contains("mapping values are not allowed")
                || message.contains("did not find expected key")
                || message.contains("indent")
            {
                "a key is indented differently from its neighbours: align it with the keys of the mapping it belongs to"
            } else {
                "fix the YAML syntax at this position"
            };
            Err(Diagnostic::at_pos(
                diag::Kind::Syntax,
                pos,
                format!("invalid YAML: {message}"),
                hint,
            ))
        }
    }
}

fn key_start(text: &str, pos: Pos) -> Pos {
    let line = text.lines().nth(pos.line as usize - 1).unwrap_or("");
    let indent = line.len() - line.trim_start().len();
    Pos {
        line: pos.line,
        col: indent as u32 + 1,
    }
}

const LIMIT_HINT: &str = "this is not a cluster profile, or whatever generated it went wrong: start from one of the shipped profiles in profiles/";

/// A parser limit (a defence against hostile YAML) said in words, with the
/// limit the file went past.
fn limit_message(e: &serde_saphyr::Error) -> Option<(String, &'static str)> {
    use serde_saphyr::budget::BudgetBreach as B;
    let serde_saphyr::Error::Budget { breach, .. } = e.without_snippet() else {
        return None;
    };
    let message = match breach {
        B::Nodes { nodes } => format!(
            "the file holds more than {} values (YAML nodes); a profile has a few hundred",
            nodes.saturating_sub(1)
        ),
        B::Depth { depth } => nested_deeper_than(depth.saturating_sub(1)),
        B::Aliases { .. } | B::Anchors { .. } | B::AliasAnchorRatio { .. } => {
            "the file repeats YAML aliases (*name) beyond what a profile needs (an alias bomb?)"
                .to_string()
        }
        B::ScalarBytes { total_scalar_bytes } => format!(
            "its text values add up to more than {} bytes",
            total_scalar_bytes.saturating_sub(1)
        ),
        B::Documents { .. } => "the file holds more YAML documents than one".to_string(),
        _ => "the file is larger or more complex than a profile can be".to_string(),
    };
    Some((too_large(&message), LIMIT_HINT))
}

fn too_large(why: &str) -> String {
    format!("the profile is too large to read: {why}")
}

fn nested_deeper_than(levels: usize) -> String {
    format!("values are nested more than {levels} levels deep")
}

fn syntax_message(e: &serde_saphyr::Error) -> String {
    let text = e
        .without_snippet()
        .render_with_formatter(&serde_saphyr::UserMessageFormatter);
    let first = text.lines().next().unwrap_or("").trim();
    // The rendered message repeats the position we already report.
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let stripped = match first.find(": ") {
        Some(i) if first[..i].starts_with("line ") => &first[i + 2..],
        _ => first,
    };
    let stripped = match stripped.rfind(" at line ") {
        Some(i) => &stripped[..i],
        None => stripped,
    };
    stripped.to_string()
}

/// The intermediate shape read by serde-saphyr: every key and value spanned.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

fn pos_from(loc: &serde_saphyr::Location) -> Pos {
    Pos {
        line: loc.line() as u32,
        col: loc.column() as u32,
    }
}

impl From<Spanned<Raw>> for Node {
    fn from(s: Spanned<Raw>) -> Node {
        let pos = pos_from(&s.referenced);
        let kind = match s.value {
            Raw::Null => Kind::Null,
            Raw::Bool(b) => Kind::Bool(b),
            Raw::Int(i) => Kind::Int(i),
            Raw::Float(f) => Kind::Float(f),
            Raw::Str(s) => Kind::Str(s),
            Raw::Seq(items) => Kind::Seq(items.into_iter().map(Node::from).collect()),
            Raw::Map(entries) => Kind::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                pos: pos_from(&k.referenced),
                                name: k.value,
                            },
                            Node::from(v),
                        )
                    })
                    .collect(),
            ),
        };
        Node { pos, kind }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<Raw>>()?;
                    entries.push((key, value));
                }
                Ok(Raw::Map(entries))
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

// ---------------------------------------------------------------------------
// Typed reading with collected diagnostics.

/// Reads a typed value from a tree. Unknown keys and wrong types are all
/// collected: a wrong value is reported and replaced by a placeholder so the
/// read goes on. Returns the value only when nothing was wrong.
pub fn from_node<T: de::DeserializeOwned>(node: &Node) -> (Option<T>, Vec<Diagnostic>) {
    let sink = RefCell::new(Vec::new());
    let root = Path::root();
    let result = T::deserialize(NodeDe {
        node,
        path: &root,
        sink: &sink,
    });
    let mut diags = sink.into_inner();
    match result {
        Ok(v) if diags.is_empty() => (Some(v), diags),
        Ok(_) => (None, diags),
        Err(DeError::Reported) => (None, diags),
        Err(DeError::Message(m)) => {
            diags.push(Diagnostic::at_pos(
                diag::Kind::Malformed,
                node.pos,
                m,
                "fix the value at this position",
            ));
            (None, diags)
        }
    }
}

#[derive(Debug)]
pub enum DeError {
    /// Already recorded in the sink.
    Reported,
    /// Raised by a visitor (serde-derived code); recorded by the caller.
    Message(String),
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DeError::Reported => f.write_str("reported"),
            DeError::Message(m) => f.write_str(m),
        }
    }
}
impl std::error::Error for DeError {}
impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::Message(msg.to_string())
    }
}

#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Node,
    path: &'a Path,
    sink: &'a RefCell<Vec<Diagnostic>>,
}

impl<'a> NodeDe<'a> {
    fn report(&self, kind: diag::Kind, message: String, hint: impl Into<String>) {
        self.sink
            .borrow_mut()
            .push(Diagnostic::at_pos(kind, self.node.pos, message, hint));
    }

    fn type_error(&self, expected: &str) {
        let scalar = matches!(
            self.node.kind,
            Kind::Int(_) | Kind::Float(_) | Kind::Bool(_)
        );
        let hint = if expected == "a string" && scalar {
            "YAML read this as a number or a boolean: put it in quotes to keep it as text, e.g. \"1.30/stable\"".to_string()
        } else {
            format!("write {expected} here")
        };
        self.report(
            diag::Kind::WrongType,
            format!(
                "`{}` must be {expected}, found {}",
                self.path,
                self.node.describe()
            ),
            hint,
        );
    }

    /// Records a visitor's own error (e.g. an unparseable value) here.
    fn settle<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        match r {
            Err(DeError::Message(m)) => {
                self.report(
                    diag::Kind::Malformed,
                    format!("`{}`: {m}", self.path),
                    "fix the value at this position",
                );
                Err(DeError::Reported)
            }
            other => other,
        }
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $t:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let value: $t = match &self.node.kind {
                Kind::Int(i) => match <$t>::try_from(*i) {
                    Ok(v) => v,
                    Err(_) => {
                        self.report(
                            diag::Kind::OutOfRange,
                            format!(
                                "`{}` is out of range: {} is not between {} and {}",
                                self.path,
                                i,
                                <$t>::MIN,
                                <$t>::MAX
                            ),
                            format!("use a whole number from {} to {}", <$t>::MIN, <$t>::MAX),
                        );
                        0
                    }
                },
                _ => {
                    self.type_error("a whole number");
                    0
                }
            };
            self.settle(visitor.$visit(value))
        }
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(_) => return self.deserialize_seq(visitor),
            Kind::Map(_) => return self.deserialize_map(visitor),
        };
        self.settle(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match self.node.kind {
            Kind::Bool(b) => b,
            _ => {
                self.type_error("true or false");
                false
            }
        };
        self.settle(visitor.visit_bool(b))
    }

    int_method!(deserialize_i8, visit_i8, i8);
    int_method!(deserialize_i16, visit_i16, i16);
    int_method!(deserialize_i32, visit_i32, i32);
    int_method!(deserialize_i64, visit_i64, i64);
    int_method!(deserialize_u8, visit_u8, u8);
    int_method!(deserialize_u16, visit_u16, u16);
    int_method!(deserialize_u32, visit_u32, u32);
    int_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = match self.node.kind {
            Kind::Float(f) => f,
            Kind::Int(i) => i as f64,
            _ => {
                self.type_error("a number");
                0.0
            }
        };
        self.settle(visitor.visit_f64(f))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Str(s) => visitor.visit_str(s),
            _ => {
                self.type_error("a string");
                visitor.visit_str("")
            }
        };
        self.settle(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Null => self.settle(visitor.visit_none()),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.settle(visitor.visit_unit())
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Seq(items) => {
                let r = visitor.visit_seq(SeqDe {
                    items,
                    index: 0,
                    parent: self,
                });
                self.settle(r)
            }
            // A placeholder keeps the read going, so later mistakes are
            // reported in the same run; the value is never used.
            _ => {
                self.type_error("a list");
                let r = visitor.visit_seq(SeqDe {
                    items: &[],
                    index: 0,
                    parent: self,
                });
                self.settle(r)
            }
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_entries(None, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.visit_entries(Some(fields), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Str(s) if variants.contains(&s.as_str()) => {
                let de: de::value::StrDeserializer<'_, DeError> = s.as_str().into_deserializer();
                self.settle(visitor.visit_enum(de))
            }
            _ => {
                self.report(
                    diag::Kind::Unknown,
                    format!(
                        "`{}` must be one of {}, found {}",
                        self.path,
                        variants.join(", "),
                        self.node.describe()
                    ),
                    format!("write one of: {}", variants.join(", ")),
                );
                // The first variant as a placeholder keeps the read going, so
                // later mistakes are reported in the same run; the value is
                // never used.
                let first = variants.first().copied().unwrap_or_default();
                let de: de::value::StrDeserializer<'_, DeError> = first.into_deserializer();
                visitor.visit_enum(de).map_err(|_| DeError::Reported)
            }
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

impl<'a> NodeDe<'a> {
    fn visit_entries<'de, V: Visitor<'de>>(
        self,
        fields: Option<&'static [&'static str]>,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let entries: &[(Key, Node)] = match &self.node.kind {
            Kind::Map(entries) => entries,
            // An empty `section:` means "all defaults".
            Kind::Null => &[],
            _ => {
                self.type_error("a mapping (`key: value` lines)");
                &[]
            }
        };
        let mut known = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match fields {
                Some(fields) if !fields.contains(&key.name.as_str()) => {
                    let (message, hint) = unknown_key_message(self.path, &key.name, fields);
                    self.sink.borrow_mut().push(Diagnostic::at_pos(
                        diag::Kind::UnknownKey,
                        key.pos,
                        message,
                        hint,
                    ));
                }
                _ => known.push((key, value)),
            }
        }
        let r = visitor.visit_map(MapDe {
            entries: known,
            index: 0,
            parent: self,
            child_path: None,
        });
        self.settle(r)
    }
}

/// The message for a key that is not one of `fields`, with the nearest known
/// key as a hint.
pub fn unknown_key_message(parent: &Path, key: &str, fields: &[&str]) -> (String, String) {
    let where_ = if parent.is_root() {
        "at the top level".to_string()
    } else {
        format!("in `{parent}`")
    };
    let message = format!("unknown key `{key}` {where_}");
    let nearest = fields
        .iter()
        .map(|f| (strsim::jaro_winkler(key, f), *f))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let hint = match nearest {
        Some((_, f)) => format!("did you mean `{f}`? (known keys: {})", fields.join(", ")),
        None => format!("known keys here: {}", fields.join(", ")),
    };
    (message, hint)
}

struct SeqDe<'a> {
    items: &'a [Node],
    index: usize,
    parent: NodeDe<'a>,
}

impl<'de, 'a> SeqAccess<'de> for SeqDe<'a> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.get(self.index) else {
            return Ok(None);
        };
        let path = self.parent.path.index(self.index);
        self.index += 1;
        let de = NodeDe {
            node: item,
            path: &path,
            sink: self.parent.sink,
        };
        de.settle(seed.deserialize(de)).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.index)
    }
}

struct MapDe<'a> {
    entries: Vec<(&'a Key, &'a Node)>,
    index: usize,
    parent: NodeDe<'a>,
    child_path: Option<Path>,
}

impl<'de, 'a> MapAccess<'de> for MapDe<'a> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, _)) = self.entries.get(self.index) else {
            return Ok(None);
        };
        self.child_path = Some(self.parent.path.key(&key.name));
        let de: de::value::StrDeserializer<'_, DeError> = key.name.as_str().into_deserializer();
        seed.deserialize(de).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (_, value) = self.entries[self.index];
        self.index += 1;
        let path = self
            .child_path
            .take()
            .unwrap_or_else(|| self.parent.path.clone());
        let de = NodeDe {
            node: value,
            path: &path,
            sink: self.parent.sink,
        };
        de.settle(seed.deserialize(de))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn at(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Machine {
        name: String,
        port: u16,
        #[serde(default)]
        tags: Vec<String>,
        role: Role,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Role {
        Master,
        Worker,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Profile {
        machines: Vec<Machine>,
        #[serde(default)]
        extra: Option<Extra>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    struct Extra {
        #[serde(default)]
        flag: bool,
    }

    fn read(text: &str) -> (Option<Profile>, Vec<Diagnostic>) {
        from_node(&parse(text).expect("valid YAML"))
    }

    /// Every value and key knows its 1-based line and column, which the
    /// messages name.
    #[test]
    fn keys_and_values_keep_their_positions() {
        let tree = parse("a: 1\nlist:\n  - x\n  - {k: v}\n").unwrap();
        assert_eq!(tree.pos_of(&Path::parse("a")), at(1, 4));
        assert_eq!(tree.pos_of(&Path::parse("list[1].k")), at(4, 9));
        let Kind::Map(entries) = &tree.kind else {
            panic!("a mapping")
        };
        assert_eq!(entries[1].0.name, "list");
        assert_eq!(entries[1].0.pos, at(2, 1));
        assert_eq!(
            tree.get(&Path::parse("list[0]")).map(|n| &n.kind),
            Some(&Kind::Str("x".into()))
        );
        // A missing key points at the mapping it is missing from.
        assert_eq!(tree.pos_of(&Path::parse("list[1].absent")), at(4, 5));
        assert_eq!(tree.get(&Path::parse("list[7]")), None);
    }

    #[test]
    fn scalars_keep_their_yaml_type() {
        let tree =
            parse("i: 7\nf: 1.30\nb: true\ns: '1.30'\nn:\nbig: 18446744073709551615\n").unwrap();
        let kind = |p: &str| tree.get(&Path::parse(p)).unwrap().kind.clone();
        assert_eq!(kind("i"), Kind::Int(7));
        assert_eq!(kind("f"), Kind::Float(1.3));
        assert_eq!(kind("b"), Kind::Bool(true));
        assert_eq!(kind("s"), Kind::Str("1.30".into()));
        assert_eq!(kind("n"), Kind::Null);
        assert!(matches!(kind("big"), Kind::Float(_)), "beyond i64");
    }

    #[test]
    fn a_good_document_reads_into_its_type() {
        let (value, diags) =
            read("machines:\n  - name: a\n    port: 22\n    role: master\nextra:\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            value,
            Some(Profile {
                machines: vec![Machine {
                    name: "a".into(),
                    port: 22,
                    tags: vec![],
                    role: Role::Master,
                }],
                // An empty section is there, with its defaults.
                extra: None,
            })
        );
    }

    /// One read reports every mistake at its own position, not only the
    /// first, and yields no value.
    #[test]
    fn every_mistake_is_collected_at_its_position() {
        let text = "machines:\n  - name: 5\n    port: 70000\n    role: boss\n    prot: 1\n  - name: b\n    port: x\n    tags: no\n    role: worker\n";
        let (value, diags) = read(text);
        assert_eq!(value, None);
        let found: Vec<(Pos, &str)> = diags
            .iter()
            .map(|d| (d.pos(None), d.message.as_str()))
            .collect();
        let has = |pos: Pos, what: &str| {
            assert!(
                found.iter().any(|(p, m)| *p == pos && m.contains(what)),
                "{what} at {pos:?} in {found:?}"
            )
        };
        has(
            at(2, 11),
            "`machines[0].name` must be a string, found the number 5",
        );
        has(at(3, 11), "out of range: 70000 is not between 0 and 65535");
        has(at(4, 11), "must be one of master, worker");
        has(at(5, 5), "unknown key `prot` in `machines[0]`");
        has(at(7, 11), "`machines[1].port` must be a whole number");
        has(
            at(8, 11),
            "`machines[1].tags` must be a list, found the boolean false",
        );
        assert_eq!(diags.len(), 6, "{found:?}");
        // Each is of the kind callers match on.
        let kinds: Vec<(Pos, diag::Kind)> = diags.iter().map(|d| (d.pos(None), d.kind)).collect();
        for expected in [
            (at(2, 11), diag::Kind::WrongType),
            (at(3, 11), diag::Kind::OutOfRange),
            (at(4, 11), diag::Kind::Unknown),
            (at(5, 5), diag::Kind::UnknownKey),
            (at(7, 11), diag::Kind::WrongType),
            (at(8, 11), diag::Kind::WrongType),
        ] {
            assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
        }
        let prot = diags.iter().find(|d| d.message.contains("prot")).unwrap();
        assert!(prot.hint.contains("did you mean `port`?"), "{}", prot.hint);
    }

    #[test]
    fn a_number_where_text_belongs_is_told_to_quote_it() {
        let (_, diags) = read("machines:\n  - name: 1.30\n    port: 1\n    role: worker\n");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(
            diags[0].hint.contains("put it in quotes"),
            "{}",
            diags[0].hint
        );
    }

    #[test]
    fn an_unknown_key_far_from_any_gets_the_list_of_known_ones() {
        let (message, hint) = unknown_key_message(&Path::root(), "zzz", &["machines", "extra"]);
        assert_eq!(message, "unknown key `zzz` at the top level");
        assert_eq!(hint, "known keys here: machines, extra");
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        let e = parse("").unwrap_err();
        assert_eq!(
            (e.pos(None), e.message.as_str()),
            (at(1, 1), "the file is empty")
        );
        // A key indented deeper than its neighbours is blamed, not its colon.
        let e = parse("a:\n  b: 1\n   c: 2\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
        assert!(e.hint.contains("indented differently"), "{}", e.hint);
        assert_eq!(e.pos(None).line, 3, "{e:?}");
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
    }

    /// Nesting beyond MAX_DEPTH is refused with a plain sentence before it
    /// can exhaust the stack.
    #[test]
    fn deep_nesting_is_refused_in_plain_words() {
        let deep = "[".repeat(MAX_DEPTH + 10) + &"]".repeat(MAX_DEPTH + 10);
        let e = parse(&deep).unwrap_err();
        assert!(
            e.message
                .contains(&format!("nested more than {MAX_DEPTH} levels deep")),
            "{}",
            e.message
        );
        assert!(!e.message.contains('{'), "no debug text: {}", e.message);
        assert_eq!(e.hint, LIMIT_HINT);
        let ok = "[".repeat(MAX_DEPTH - 2) + &"]".repeat(MAX_DEPTH - 2);
        assert!(parse(&ok).is_ok());
    }
}

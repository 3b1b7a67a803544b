//! A YAML tree that remembers where every node stood, so that every configuration error can
//! name the file, line and column. Built from `yaml-rust2`'s marked events; scalars are
//! typed by YAML 1.2 core-schema rules (plain `true`, `42`, `~`…; quoted is always a string).
//! `${env:NAME}` and `${file:/path}` in strings are replaced while loading, and the values
//! they bring are marked secret: never printed.

use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node starts (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
    /// Came (in part) from `${env:…}` or `${file:…}`: never shown.
    pub secret: bool,
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value as JSON (for connector settings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            Kind::Null => J::Null,
            Kind::Bool(b) => J::Bool(*b),
            Kind::Int(i) => J::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Kind::Str(s) => J::String(s.clone()),
            Kind::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| k.to_json().to_string()),
                            v.to_json(),
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// How the value may be shown in a message.
    pub fn shown(&self) -> String {
        if self.secret {
            return "[hidden]".into();
        }
        match &self.kind {
            Kind::Str(s) => format!("{s:?}"),
            _ => self.to_json().to_string(),
        }
    }
}

/// A YAML syntax error or a failed substitution, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub pos: Pos,
    pub message: String,
}

fn plain_scalar(s: &str) -> Kind {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Kind::Int(i);
    }
    if s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.')
    {
        if let Ok(f) = s.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(s.to_string())
}

/// Replaces `${env:NAME}` and `${file:/path}` (a `${name}` without a scheme is left as it is,
/// for the connector whose placeholder it is); returns the text and whether anything was replaced.
fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut replaced = false;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            "unclosed `${` (expected `${env:NAME}` or `${file:/path}`)".to_string()
        })?;
        let inner = &after[..end];
        let value = if let Some(name) = inner.strip_prefix("env:") {
            env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?
        } else if let Some(path) = inner.strip_prefix("file:") {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read `{path}` for `${{file:…}}`: {e}"))?;
            text.trim_end_matches(['\n', '\r']).to_string()
        } else if !inner.contains(':') && !inner.is_empty() {
            // `${topic}`, `${key}`: a connector's own placeholder (the HTTP sink's URL
            // template), left for the connector to fill and to check.
            out.push_str("${");
            out.push_str(inner);
            out.push('}');
            rest = &after[end + 1..];
            continue;
        } else {
            return Err(format!(
                "unknown substitution `${{{inner}}}`: use `${{env:NAME}}` or `${{file:/path}}`"
            ));
        };
        out.push_str(&value);
        replaced = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, replaced))
}

enum Building {
    Seq(Vec<Node>, Pos),
    Map(Vec<(Node, Node)>, Option<Node>, Pos),
}

struct Builder<'e> {
    stack: Vec<Building>,
    root: Option<Node>,
    error: Option<LoadError>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl Builder<'_> {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Building::Seq(items, _)) => items.push(node),
            Some(Building::Map(entries, key, _)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(text, style, _, _) => {
                let node = match interpolate(&text, self.env) {
                    Ok((value, replaced)) => {
                        let kind = if style == TScalarStyle::Plain && !replaced {
                            plain_scalar(&value)
                        } else {
                            Kind::Str(value)
                        };
                        Node {
                            kind,
                            pos,
                            secret: replaced,
                        }
                    }
                    Err(message) => {
                        self.error = Some(LoadError { pos, message });
                        return;
                    }
                };
                self.push(node);
            }
            Event::SequenceStart(..) => self.stack.push(Building::Seq(Vec::new(), pos)),
            Event::MappingStart(..) => self.stack.push(Building::Map(Vec::new(), None, pos)),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Building::Seq(items, p)) => Node {
                        kind: Kind::Seq(items),
                        pos: p,
                        secret: false,
                    },
                    Some(Building::Map(entries, _, p)) => Node {
                        kind: Kind::Map(entries),
                        pos: p,
                        secret: false,
                    },
                    None => return,
                };
                self.push(node);
            }
            Event::Alias(_) => {
                self.error = Some(LoadError {
                    pos,
                    message: "YAML aliases (`*name`) are not supported in pipeline files".into(),
                });
            }
            _ => {}
        }
    }
}

/// Parses YAML text into a positioned tree, substituting `${env:…}` (via `env`) and `${file:…}`.
pub fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Node, LoadError> {
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
        error: None,
        env,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        return Err(LoadError {
            pos: Pos {
                line: m.line(),
                col: m.col() + 1,
            },
            message: e.info().to_string(),
        });
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or(Node {
        kind: Kind::Null,
        pos: Pos { line: 1, col: 1 },
        secret: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn positions_and_types() {
        let doc = "a: 1\nb:\n  - x\n  - \"2\"\nc: true\nd: ~\n";
        let root = load(doc, &no_env).unwrap();
        let map = root.as_map().unwrap();
        assert_eq!(
            (map[0].1.kind.clone(), map[0].1.pos),
            (Kind::Int(1), Pos { line: 1, col: 4 })
        );
        let Kind::Seq(items) = &map[1].1.kind else {
            panic!()
        };
        assert_eq!(
            (items[1].kind.clone(), items[1].pos.line),
            (Kind::Str("2".into()), 4),
            "quoted stays a string"
        );
        assert_eq!(map[2].1.kind, Kind::Bool(true));
        assert_eq!(map[3].1.kind, Kind::Null);
        assert_eq!(map[1].0.pos, Pos { line: 2, col: 1 });
    }

    #[test]
    fn substitutions_are_secret() {
        let env = |name: &str| (name == "TOKEN").then(|| "s3cret".to_string());
        let root = load("token: Bearer ${env:TOKEN}\n", &env).unwrap();
        let v = &root.as_map().unwrap()[0].1;
        assert_eq!(v.as_str(), Some("Bearer s3cret"));
        assert!(v.secret);
        assert_eq!(v.shown(), "[hidden]");
        let err = load("a: ${env:MISSING}\n", &env).unwrap_err();
        assert_eq!(
            (err.pos, err.message.as_str()),
            (
                Pos { line: 1, col: 4 },
                "environment variable `MISSING` is not set"
            )
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        let root = load(&format!("pw: ${{file:{}}}\n", path.display()), &env).unwrap();
        assert_eq!(root.as_map().unwrap()[0].1.as_str(), Some("hunter2"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = load("a: [1, 2\nb: 3\n", &no_env).unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(
            load("a: &x 1\nb: *x\n", &no_env).is_err(),
            "aliases refused"
        );
    }
}

//! Connector settings declared once — names, types, defaults, docs — so that validation,
//! error messages and `--help`-style docs all come from the same place, for built-in and
//! plugin connectors alike.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value as Json};

/// The type of a setting. Serialized (for a plugin's description) as `"string"`,
/// `"secret"`, `{"integer": {"min": 1, "max": 10}}`, `"boolean"`, `"duration"`, `"size"`,
/// `{"one_of": ["a", "b"]}`, `{"list": <kind>}`, `{"map": <kind>}`, `{"object": [<field>…]}`,
/// `{"one_key": [<field>…]}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    String,
    /// A string never printed, logged or returned (shown as `[hidden]`).
    Secret,
    Integer {
        min: i64,
        max: i64,
    },
    Boolean,
    /// `250ms`, `5s`, `2m`, `1h`, or a number of milliseconds.
    Duration,
    /// One of these strings.
    OneOf(Vec<String>),
    List(Box<FieldKind>),
    /// A number of bytes: `512`, `64KiB`, `1MiB`, `10MB` (KB, MB, GB are powers of 1000).
    Size,
    /// Names the user picks, each with a value of this kind (HTTP headers, say).
    Map(Box<FieldKind>),
    /// Nested settings, checked like the top level: `batch: {max_records: 500}`. Absent, it
    /// is its defaults (unless one of its settings is required).
    Object(Vec<FieldSpec>),
    /// Exactly one of these settings: `auth: {bearer: …}` or `auth: {basic: {…}}`.
    OneKey(Vec<FieldSpec>),
}

fn names(fields: &[FieldSpec]) -> String {
    fields
        .iter()
        .map(|f| format!("`{}`", f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldKind::String => f.write_str("a string"),
            FieldKind::Secret => f.write_str("a string (secret)"),
            FieldKind::Integer { min, max } => write!(f, "an integer from {min} to {max}"),
            FieldKind::Boolean => f.write_str("true or false"),
            FieldKind::Duration => f.write_str("a duration such as 250ms, 5s, 2m or 1h"),
            FieldKind::OneOf(options) => write!(
                f,
                "one of {}",
                options
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            FieldKind::List(inner) => write!(f, "a list of {inner}"),
            FieldKind::Size => f.write_str("a size such as 512, 64KiB or 1MiB"),
            FieldKind::Map(inner) => write!(f, "a map of names to {inner}"),
            FieldKind::Object(fields) => write!(f, "a map of settings {}", names(fields)),
            FieldKind::OneKey(fields) => write!(f, "a map with one of {}", names(fields)),
        }
    }
}

/// One setting of a connector.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldSpec {
    pub name: String,
    pub kind: FieldKind,
    pub required: bool,
    /// Used when the setting is absent (must be of `kind`).
    pub default: Option<Json>,
    pub doc: String,
}

impl FieldSpec {
    pub fn required(name: &str, kind: FieldKind, doc: &str) -> Self {
        FieldSpec {
            name: name.into(),
            kind,
            required: true,
            default: None,
            doc: doc.into(),
        }
    }

    pub fn optional(name: &str, kind: FieldKind, default: Option<Json>, doc: &str) -> Self {
        FieldSpec {
            name: name.into(),
            kind,
            required: false,
            default,
            doc: doc.into(),
        }
    }
}

/// Every setting a connector accepts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConfigSpec {
    pub fields: Vec<FieldSpec>,
    /// Checks across settings (a URL template, a header name) once each has its type: still
    /// no I/O. Built-in connectors only: it does not cross the plugin boundary.
    #[serde(skip)]
    pub check: Option<CrossCheck>,
    /// For a source that names its topics from its settings (a CDC source's
    /// `<topic_prefix>.<schema>.<table>`): the topics it writes, known with no I/O.
    /// Built-in connectors only.
    #[serde(skip)]
    pub topics: Option<SourceTopics>,
    /// Whether the source's records carry their own schemas (typed payloads, one schema per
    /// table): `avro` then registers each under `<topic>-value` and needs no `value_schema`.
    #[serde(skip)]
    pub own_schemas: bool,
}

/// The topics a source writes, from its typed settings.
#[derive(Clone, Copy)]
pub struct SourceTopics(pub fn(&ConfigValues) -> TopicsWritten);

impl fmt::Debug for SourceTopics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceTopics")
    }
}

impl PartialEq for SourceTopics {
    /// Specs compare by their fields; the function is code, not data.
    fn eq(&self, _: &SourceTopics) -> bool {
        true
    }
}

/// What [`SourceTopics`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicsWritten {
    /// The connector's own topic when the file names none (a CDC source's heartbeats).
    pub own: String,
    /// Every topic whose name starts with one of these may be written (`shop.`).
    pub prefixes: Vec<String>,
}

/// A connector's own check of its typed settings.
#[derive(Clone, Copy)]
pub struct CrossCheck(pub fn(&ConfigValues) -> Vec<ConfigIssue>);

impl fmt::Debug for CrossCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CrossCheck")
    }
}

impl PartialEq for CrossCheck {
    /// Specs compare by their fields; the check is code, not data.
    fn eq(&self, _: &CrossCheck) -> bool {
        true
    }
}

/// One problem with a connector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The setting concerned (`None`: the settings as a whole).
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "`{k}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Parses a duration setting.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().ok()?;
    Some(match unit.trim() {
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

/// Parses a size setting into bytes: `512`, `512B`, `64KiB`, `1MiB`, `2GiB`, `10KB`, `5MB`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// A duration as a setting holds one (text or milliseconds).
pub fn duration_of(v: &Json) -> Option<Duration> {
    match v {
        Json::String(s) => parse_duration(s),
        Json::Number(n) => n.as_u64().map(Duration::from_millis),
        _ => None,
    }
}

/// A size as a setting holds one (text or bytes).
pub fn size_of(v: &Json) -> Option<u64> {
    match v {
        Json::String(s) => parse_size(s),
        Json::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn check_scalar(kind: &FieldKind, v: &Json) -> bool {
    match (kind, v) {
        (FieldKind::String | FieldKind::Secret, Json::String(_)) => true,
        (FieldKind::Integer { min, max }, Json::Number(n)) => {
            n.as_i64().is_some_and(|i| i >= *min && i <= *max)
        }
        (FieldKind::Boolean, Json::Bool(_)) => true,
        (FieldKind::Duration, v) => duration_of(v).is_some(),
        (FieldKind::Size, v) => size_of(v).is_some(),
        (FieldKind::OneOf(options), Json::String(s)) => options.contains(s),
        _ => false,
    }
}

/// The closest name to a typo, if close enough.
pub fn did_you_mean<'a>(key: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k.to_string())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// What a validation collects on its way down nested settings.
#[derive(Default)]
struct Checked {
    issues: Vec<ConfigIssue>,
    /// Dotted paths of the secret values present.
    secrets: Vec<String>,
}

impl Checked {
    fn issue(&mut self, key: String, message: String) {
        self.issues.push(ConfigIssue {
            key: Some(key),
            message,
        });
    }

    /// `input` against `fields`, defaults filled in; `prefix` is the dotted path to them.
    fn fields(
        &mut self,
        fields: &[FieldSpec],
        input: &Map<String, Json>,
        prefix: &str,
    ) -> Map<String, Json> {
        for key in input.keys() {
            if !fields.iter().any(|f| &f.name == key) {
                let hint = did_you_mean(key, fields.iter().map(|f| f.name.as_str()))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.issue(join(prefix, key), format!("unknown setting{hint}"));
            }
        }
        let mut out = Map::new();
        for f in fields {
            let path = join(prefix, &f.name);
            if prefix.is_empty() && f.kind == FieldKind::Secret {
                // Top-level secrets are known by name even when absent.
                self.secrets.push(path.clone());
            }
            match input.get(&f.name).or(f.default.as_ref()) {
                Some(v) => {
                    if let Some(v) = self.value(&f.kind, v, &path) {
                        out.insert(f.name.clone(), v);
                    }
                }
                None if f.required => self.issue(
                    path,
                    format!("missing required setting ({}: {})", f.kind, f.doc),
                ),
                None => {
                    if let FieldKind::Object(inner) = &f.kind {
                        // An absent group of settings is its defaults, when it can be.
                        let mut quiet = Checked::default();
                        let filled = quiet.fields(inner, &Map::new(), &path);
                        if quiet.issues.is_empty() {
                            self.secrets.extend(quiet.secrets);
                            out.insert(f.name.clone(), Json::Object(filled));
                        }
                    }
                }
            }
        }
        out
    }

    /// One value of `kind` at `path`; `None` (with an issue) when it is not one.
    fn value(&mut self, kind: &FieldKind, v: &Json, path: &str) -> Option<Json> {
        let mismatch = |this: &mut Checked| {
            let shown = if kind == &FieldKind::Secret {
                "[hidden]".to_string()
            } else {
                v.to_string()
            };
            this.issue(path.to_string(), format!("expected {kind}, found {shown}"));
            None
        };
        match kind {
            FieldKind::List(inner) => {
                let Json::Array(items) = v else {
                    return mismatch(self);
                };
                let before = self.issues.len();
                let out: Vec<Json> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.value(inner, item, &format!("{path}[{i}]")))
                    .collect();
                (self.issues.len() == before).then_some(Json::Array(out))
            }
            FieldKind::Map(inner) => {
                let Json::Object(entries) = v else {
                    return mismatch(self);
                };
                let before = self.issues.len();
                let mut out = Map::new();
                for (name, item) in entries {
                    if let Some(item) = self.value(inner, item, &join(path, name)) {
                        out.insert(name.clone(), item);
                    }
                }
                (self.issues.len() == before).then_some(Json::Object(out))
            }
            FieldKind::Object(fields) => {
                let Json::Object(entries) = v else {
                    return mismatch(self);
                };
                let before = self.issues.len();
                let out = self.fields(fields, entries, path);
                (self.issues.len() == before).then_some(Json::Object(out))
            }
            FieldKind::OneKey(fields) => {
                let Json::Object(entries) = v else {
                    return mismatch(self);
                };
                let mut keys = entries.keys();
                match (keys.next(), keys.next()) {
                    (Some(key), None) => {
                        let Some(f) = fields.iter().find(|f| &f.name == key) else {
                            let hint = did_you_mean(key, fields.iter().map(|f| f.name.as_str()))
                                .map(|s| format!("did you mean `{s}`? "))
                                .unwrap_or_default();
                            self.issue(
                                join(path, key),
                                format!(
                                    "unknown setting ({hint}expected one of {})",
                                    names(fields)
                                ),
                            );
                            return None;
                        };
                        let item = self.value(&f.kind, &entries[key], &join(path, key))?;
                        Some(Json::Object(Map::from_iter([(key.clone(), item)])))
                    }
                    (None, _) => {
                        self.issue(
                            path.to_string(),
                            format!("expected one of {}, found none", names(fields)),
                        );
                        None
                    }
                    (Some(a), Some(b)) => {
                        self.issue(
                            path.to_string(),
                            format!(
                                "`{a}` and `{b}` cannot both be set: choose one of {}",
                                names(fields)
                            ),
                        );
                        None
                    }
                }
            }
            FieldKind::Secret if check_scalar(kind, v) => {
                self.secrets.push(path.to_string());
                Some(v.clone())
            }
            _ if check_scalar(kind, v) => Some(v.clone()),
            _ => mismatch(self),
        }
    }
}

impl ConfigSpec {
    pub fn new(fields: Vec<FieldSpec>) -> Self {
        ConfigSpec {
            fields,
            check: None,
            topics: None,
            own_schemas: false,
        }
    }

    /// The spec of a source that names the topics it writes from its settings.
    pub fn with_source_topics(mut self, topics: fn(&ConfigValues) -> TopicsWritten) -> Self {
        self.topics = Some(SourceTopics(topics));
        self
    }

    /// The spec of a source whose records carry their own schemas.
    pub fn with_own_schemas(mut self) -> Self {
        self.own_schemas = true;
        self
    }

    /// The spec with a check across its settings, run when each setting has its type.
    pub fn with_check(mut self, check: fn(&ConfigValues) -> Vec<ConfigIssue>) -> Self {
        self.check = Some(CrossCheck(check));
        self
    }

    /// Checks `input` against the spec: unknown keys (with a suggestion), wrong types, missing
    /// required settings, at every depth (a nested problem's key is its dotted path, such as
    /// `batch.max_records`). All problems are reported at once; defaults fill the rest.
    pub fn validate(&self, input: &Map<String, Json>) -> Result<ConfigValues, Vec<ConfigIssue>> {
        let mut checked = Checked::default();
        let values = checked.fields(&self.fields, input, "");
        if checked.issues.is_empty() {
            let mut secrets = checked.secrets;
            secrets.sort();
            secrets.dedup();
            let values = ConfigValues {
                values: values.into_iter().collect(),
                secrets,
            };
            match self.check.map(|CrossCheck(check)| check(&values)) {
                Some(issues) if !issues.is_empty() => Err(issues),
                _ => Ok(values),
            }
        } else {
            Err(checked.issues)
        }
    }

    /// The field at a dotted path (`batch.max_records`), looking into nested settings.
    pub fn field(&self, path: &str) -> Option<&FieldSpec> {
        let mut fields = &self.fields;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let f = fields.iter().find(|f| f.name == part)?;
            if parts.peek().is_none() {
                return Some(f);
            }
            match &f.kind {
                FieldKind::Object(inner) | FieldKind::OneKey(inner) => fields = inner,
                _ => return None,
            }
        }
        None
    }

    /// Every setting a user writes as one value, with its dotted path: nested settings
    /// (`batch.max_records`) are spread out, maps of names (`headers`) are one entry.
    pub fn leaves(&self) -> Vec<(String, &FieldSpec)> {
        fn walk<'a>(fields: &'a [FieldSpec], prefix: &str, out: &mut Vec<(String, &'a FieldSpec)>) {
            for f in fields {
                let path = join(prefix, &f.name);
                match &f.kind {
                    FieldKind::Object(inner) | FieldKind::OneKey(inner) => walk(inner, &path, out),
                    _ => out.push((path, f)),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.fields, "", &mut out);
        out
    }

    /// Settings given as Kafka Connect's flat map of strings, nested as the spec nests them:
    /// `batch.max_records=500` becomes `{"batch": {"max_records": 500}}`, `headers.X-Source=a`
    /// becomes `{"headers": {"X-Source": "a"}}`, and each text is typed as its setting
    /// expects (numbers, booleans, comma-separated lists). Keys the spec does not know stay
    /// as they are, for [`ConfigSpec::validate`] to name.
    pub fn from_flat<'a>(
        &self,
        flat: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Map<String, Json> {
        let mut out = Map::new();
        for (key, text) in flat {
            let cuts: Vec<usize> = key
                .match_indices('.')
                .map(|(i, _)| i)
                .chain([key.len()])
                .collect();
            let found = cuts
                .iter()
                .rev()
                .find_map(|&cut| self.field(&key[..cut]).map(|f| (cut, f)));
            let (path, value): (Vec<String>, Json) = match found {
                Some((cut, f)) if cut == key.len() => (
                    key.split('.').map(str::to_string).collect(),
                    typed_text(&f.kind, text),
                ),
                Some((cut, f)) => match &f.kind {
                    FieldKind::Map(inner) => {
                        let mut path: Vec<String> =
                            key[..cut].split('.').map(str::to_string).collect();
                        path.push(key[cut + 1..].to_string());
                        (path, typed_text(inner, text))
                    }
                    FieldKind::Object(_) | FieldKind::OneKey(_) => (
                        key.split('.').map(str::to_string).collect(),
                        Json::String(text.into()),
                    ),
                    _ => (vec![key.to_string()], Json::String(text.into())),
                },
                None => (vec![key.to_string()], Json::String(text.into())),
            };
            insert_at(&mut out, &path, value);
        }
        out
    }

    /// A human-readable description of every setting (for `sluice plugins list`, docs).
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        describe_fields(&self.fields, 1, &mut out);
        out.join("\n")
    }
}

/// A setting's text (Kafka Connect's values are strings) typed as its kind expects; text
/// that is not one stays text, for validation to report.
pub fn typed_text(kind: &FieldKind, text: &str) -> Json {
    match kind {
        FieldKind::Integer { .. } => text
            .trim()
            .parse::<i64>()
            .map_or_else(|_| Json::String(text.into()), Json::from),
        FieldKind::Boolean => match text.trim() {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => Json::String(text.into()),
        },
        FieldKind::List(inner) => Json::Array(
            text.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| typed_text(inner, p))
                .collect(),
        ),
        _ => Json::String(text.into()),
    }
}

fn insert_at(out: &mut Map<String, Json>, path: &[String], value: Json) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut here = out;
    for p in parents {
        let slot = here
            .entry(p.clone())
            .or_insert_with(|| Json::Object(Map::new()));
        if !slot.is_object() {
            *slot = Json::Object(Map::new());
        }
        let Json::Object(next) = slot else { return };
        here = next;
    }
    here.insert(last.clone(), value);
}

fn describe_fields(fields: &[FieldSpec], depth: usize, out: &mut Vec<String>) {
    let indent = "  ".repeat(depth);
    for f in fields {
        let default = f
            .default
            .as_ref()
            .map(|d| format!(" (default {d})"))
            .unwrap_or_default();
        let req = if f.required { " (required)" } else { "" };
        let kind = match &f.kind {
            FieldKind::Object(_) => "settings".to_string(),
            FieldKind::OneKey(_) => "one of these settings".to_string(),
            other => other.to_string(),
        };
        out.push(format!(
            "{indent}{}: {kind}{req}{default}\n{indent}    {}",
            f.name, f.doc
        ));
        if let FieldKind::Object(inner) | FieldKind::OneKey(inner) = &f.kind {
            describe_fields(inner, depth + 1, out);
        }
    }
}

/// `value` with the value at each dotted path in `secrets` replaced by `[hidden]`.
fn hide(value: &mut Json, path: &str) {
    if path.is_empty() {
        *value = Json::String("[hidden]".into());
        return;
    }
    let Json::Object(m) = value else { return };
    // Map keys may hold dots themselves: try the longest key that matches first.
    let mut cut = path.len();
    loop {
        let (head, rest) = (&path[..cut], path.get(cut + 1..).unwrap_or(""));
        if let Some(inner) = m.get_mut(head) {
            hide(inner, rest);
            return;
        }
        match path[..cut].rfind('.') {
            Some(i) => cut = i,
            None => return,
        }
    }
}

/// Validated settings with typed getters. `Debug` hides secrets.
#[derive(Clone, PartialEq)]
pub struct ConfigValues {
    values: BTreeMap<String, Json>,
    /// Dotted paths of the secret values (`token`, `auth.basic.password`).
    secrets: Vec<String>,
}

impl fmt::Debug for ConfigValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.to_json_hidden()).finish()
    }
}

impl ConfigValues {
    /// Every value, secrets included: for handing the settings to a connector across the
    /// plugin boundary, where they are validated again. Never for display.
    pub fn to_map_with_secrets(&self) -> Map<String, Json> {
        self.to_json()
    }

    /// The settings with every secret, at any depth, shown as `[hidden]`: for display.
    pub fn to_json_hidden(&self) -> Map<String, Json> {
        let mut shown = Json::Object(self.to_json());
        for path in &self.secrets {
            hide(&mut shown, path);
        }
        match shown {
            Json::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// The dotted paths of the secret settings.
    pub fn secret_keys(&self) -> &[String] {
        &self.secrets
    }

    /// Settings as a connector produced them (its task configs) or as they cross the plugin
    /// boundary, with the paths of the secret ones.
    pub fn from_parts(values: Map<String, Json>, secrets: Vec<String>) -> ConfigValues {
        ConfigValues {
            values: values.into_iter().collect(),
            secrets,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.values.get(key)
    }
    /// The value at a dotted path of nested settings (`batch.max_records`).
    pub fn at(&self, path: &str) -> Option<&Json> {
        let mut parts = path.split('.');
        let mut v = self.values.get(parts.next()?)?;
        for part in parts {
            v = v.get(part)?;
        }
        Some(v)
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.at(key).and_then(Json::as_str)
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        self.at(key).and_then(Json::as_i64)
    }
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.at(key).and_then(Json::as_bool)
    }
    pub fn duration(&self, key: &str) -> Option<Duration> {
        self.at(key).and_then(duration_of)
    }
    /// A size in bytes.
    pub fn size(&self, key: &str) -> Option<u64> {
        self.at(key).and_then(size_of)
    }
    /// A map of nested settings or of names (`headers`).
    pub fn object(&self, key: &str) -> Option<&Map<String, Json>> {
        self.at(key).and_then(Json::as_object)
    }
    pub fn strings(&self, key: &str) -> Vec<String> {
        match self.at(key) {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
    /// The settings as JSON, secrets included (to hand to a task or a plugin, never to log).
    pub fn to_json(&self) -> Map<String, Json> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests;

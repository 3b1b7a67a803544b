//! Connector settings declared once — names, types, defaults, docs — so that validation,
//! error messages and `--help`-style docs all come from the same place, for built-in and
//! plugin connectors alike.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value as Json};

/// The type of a setting. Serialized (for a plugin's description) as `"string"`,
/// `"secret"`, `{"integer": {"min": 1, "max": 10}}`, `"boolean"`, `"duration"`,
/// `{"one_of": ["a", "b"]}`, `{"list": <kind>}`.
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

fn check_kind(kind: &FieldKind, v: &Json) -> bool {
    match (kind, v) {
        (FieldKind::String | FieldKind::Secret, Json::String(_)) => true,
        (FieldKind::Integer { min, max }, Json::Number(n)) => {
            n.as_i64().is_some_and(|i| i >= *min && i <= *max)
        }
        (FieldKind::Boolean, Json::Bool(_)) => true,
        (FieldKind::Duration, Json::String(s)) => parse_duration(s).is_some(),
        (FieldKind::Duration, Json::Number(n)) => n.as_u64().is_some(),
        (FieldKind::OneOf(options), Json::String(s)) => options.contains(s),
        (FieldKind::List(inner), Json::Array(items)) => items.iter().all(|i| check_kind(inner, i)),
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

impl ConfigSpec {
    pub fn new(fields: Vec<FieldSpec>) -> Self {
        ConfigSpec { fields }
    }

    /// Checks `input` against the spec: unknown keys (with a suggestion), wrong types, missing
    /// required settings. All problems are reported at once; defaults fill the rest.
    pub fn validate(&self, input: &Map<String, Json>) -> Result<ConfigValues, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        for key in input.keys() {
            if !self.fields.iter().any(|f| &f.name == key) {
                let hint = did_you_mean(key, self.fields.iter().map(|f| f.name.as_str()))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                issues.push(ConfigIssue {
                    key: Some(key.clone()),
                    message: format!("unknown setting{hint}"),
                });
            }
        }
        let mut values = BTreeMap::new();
        let mut secrets = Vec::new();
        for f in &self.fields {
            if f.kind == FieldKind::Secret {
                secrets.push(f.name.clone());
            }
            match input.get(&f.name).or(f.default.as_ref()) {
                Some(v) if check_kind(&f.kind, v) => {
                    values.insert(f.name.clone(), v.clone());
                }
                Some(v) => {
                    let shown = if f.kind == FieldKind::Secret {
                        "[hidden]".to_string()
                    } else {
                        v.to_string()
                    };
                    issues.push(ConfigIssue {
                        key: Some(f.name.clone()),
                        message: format!("expected {}, found {shown}", f.kind),
                    });
                }
                None if f.required => issues.push(ConfigIssue {
                    key: Some(f.name.clone()),
                    message: format!("missing required setting ({}: {})", f.kind, f.doc),
                }),
                None => {}
            }
        }
        if issues.is_empty() {
            Ok(ConfigValues { values, secrets })
        } else {
            Err(issues)
        }
    }

    /// A human-readable description of every setting (for `sluice plugins list`, docs).
    pub fn describe(&self) -> String {
        self.fields
            .iter()
            .map(|f| {
                let default = f
                    .default
                    .as_ref()
                    .map(|d| format!(" (default {d})"))
                    .unwrap_or_default();
                let req = if f.required { " (required)" } else { "" };
                format!("  {}: {}{req}{default}\n      {}", f.name, f.kind, f.doc)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Validated settings with typed getters. `Debug` hides secrets.
#[derive(Clone, PartialEq)]
pub struct ConfigValues {
    values: BTreeMap<String, Json>,
    secrets: Vec<String>,
}

impl fmt::Debug for ConfigValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.values {
            if self.secrets.contains(k) {
                m.entry(k, &"[hidden]");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl ConfigValues {
    /// Every value, secrets included: for handing the settings to a connector across the
    /// plugin boundary, where they are validated again. Never for display.
    pub fn to_map_with_secrets(&self) -> Map<String, Json> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The names of the secret settings.
    pub fn secret_keys(&self) -> &[String] {
        &self.secrets
    }

    /// Settings as a connector produced them (its task configs) or as they cross the plugin
    /// boundary, with the names of the secret ones.
    pub fn from_parts(values: Map<String, Json>, secrets: Vec<String>) -> ConfigValues {
        ConfigValues {
            values: values.into_iter().collect(),
            secrets,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.values.get(key)
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(Json::as_str)
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        self.values.get(key).and_then(Json::as_i64)
    }
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.values.get(key).and_then(Json::as_bool)
    }
    pub fn duration(&self, key: &str) -> Option<Duration> {
        match self.values.get(key)? {
            Json::String(s) => parse_duration(s),
            Json::Number(n) => n.as_u64().map(Duration::from_millis),
            _ => None,
        }
    }
    pub fn strings(&self, key: &str) -> Vec<String> {
        match self.values.get(key) {
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
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> ConfigSpec {
        ConfigSpec::new(vec![
            FieldSpec::required("path", FieldKind::String, "files to read (a glob)"),
            FieldSpec::optional(
                "format",
                FieldKind::OneOf(vec!["lines".into(), "json".into(), "csv".into()]),
                Some(json!("lines")),
                "how to read",
            ),
            FieldSpec::optional(
                "poll_interval",
                FieldKind::Duration,
                Some(json!("1s")),
                "how often to look",
            ),
            FieldSpec::optional(
                "batch_size",
                FieldKind::Integer {
                    min: 1,
                    max: 100_000,
                },
                Some(json!(1000)),
                "records per batch",
            ),
            FieldSpec::optional("token", FieldKind::Secret, None, "an API token"),
        ])
    }

    fn input(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn defaults_fill_in_and_getters_type_them() {
        let c = spec()
            .validate(&input(json!({"path": "/in/*.log", "token": "t0p"})))
            .unwrap();
        assert_eq!(c.str("format"), Some("lines"));
        assert_eq!(c.duration("poll_interval"), Some(Duration::from_secs(1)));
        assert_eq!(c.int("batch_size"), Some(1000));
        assert!(
            !format!("{c:?}").contains("t0p"),
            "secrets never show in Debug"
        );
        assert_eq!(c.str("token"), Some("t0p"));
    }

    #[test]
    fn every_problem_is_reported_with_a_hint() {
        let err = spec()
            .validate(&input(
                json!({"fromat": "json", "batch_size": 0, "poll_interval": "soon", "token": 5}),
            ))
            .unwrap_err();
        let text: Vec<String> = err.iter().map(|i| i.to_string()).collect();
        assert!(
            text.contains(&"`fromat`: unknown setting (did you mean `format`?)".to_string()),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t
                    .starts_with("`batch_size`: expected an integer from 1 to 100000, found 0")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("`poll_interval`: expected a duration")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("`path`: missing required setting")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t == "`token`: expected a string (secret), found [hidden]"),
            "{text:?}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }
}

//! A connector from Kafka Connect's flat string map (what `POST /connectors` and
//! `PUT /connectors/{name}/config` carry), checked by the same code as the pipeline file.
//!
//! The map is turned into the YAML entry it stands for, with each node remembering the flat
//! key it came from, and that entry goes through [`Checker::connector`]: the messages are the
//! file's, and each names its key path (`errors.tolerance`) instead of a line and column.
//!
//! | flat key (Kafka Connect)                       | pipeline file              |
//! |------------------------------------------------|----------------------------|
//! | `connector.class`                              | `type` (and the role)      |
//! | `tasks.max`                                    | `tasks`                    |
//! | `topic` / `topics=a,b`                         | `topic` / `topics: [a, b]` |
//! | `key.converter`, `value.converter` (classes)   | `key_format`, `value_format` |
//! | `value.converter.schemas.enable`               | `value_schemas_enable`     |
//! | `errors.tolerance`, `errors.log.enable`        | `errors: { tolerance, log }` |
//! | `errors.deadletterqueue.topic.name`            | `errors.dead_letter_topic` |
//! | `errors.retry.timeout` (ms)                    | `errors.retry_timeout`     |
//! | `restart.max_attempts` …                       | `restart: { max_attempts … }` |
//! | `transforms=a,b`, `transforms.a.type=…`        | `transforms: [{ type: … }]` |
//! | `transforms.a.predicate=p`, `predicates.p.type=…` | the transform's `predicate` |
//! | anything else                                  | the connector type's own settings |

use serde_json::Value;
use sluice_connector_sdk::config::FieldKind;

use super::*;
use crate::run::Role;

/// One problem with a flat config: the key it concerns (`None`: the config as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatError {
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for FlatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{k}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn whole(message: impl Into<String>) -> FlatError {
    FlatError {
        key: None,
        message: message.into(),
    }
}

/// Settings renamed on the way from a Kafka Connect class's names to Sluice's: `(from, to)`.
pub type Renames = &'static [(&'static str, &'static str)];

/// Kafka Connect connector classes that Sluice has an equivalent of: class, Sluice type,
/// role, and settings renamed on the way (`file` → `path`).
const CONNECT_CLASSES: &[(&str, &str, Role, Renames)] = &[(
    "org.apache.kafka.connect.file.FileStreamSourceConnector",
    "file",
    Role::Source,
    &[("file", "path")],
)];

/// Kafka Connect converter classes and the Sluice format each stands for.
const CONVERTERS: [(&str, &str); 5] = [
    ("org.apache.kafka.connect.json.JsonConverter", "json"),
    ("io.confluent.connect.avro.AvroConverter", "avro"),
    ("org.apache.kafka.connect.storage.StringConverter", "string"),
    (
        "org.apache.kafka.connect.converters.ByteArrayConverter",
        "bytes",
    ),
    (
        "org.apache.kafka.connect.converters.ByteBufferConverter",
        "bytes",
    ),
];

/// The Sluice type and role `connector.class` names: a Sluice type, a Kafka Connect class
/// Sluice has an equivalent of, or a Java class name whose last segment is a Sluice type.
/// A type that is both a source and a sink (`file`) takes its role from `topic` (a source)
/// or `topics` (a sink).
pub fn connector_class(
    registry: &ConnectorRegistry,
    class: &str,
    flat: &Map<String, Value>,
) -> Result<(String, Role, Renames), String> {
    if let Some((_, t, role, renames)) = CONNECT_CLASSES.iter().find(|(c, ..)| *c == class) {
        return Ok((t.to_string(), *role, renames));
    }
    let short = class.rsplit('.').next().unwrap_or(class);
    let as_source = registry.source(class).or_else(|_| registry.source(short));
    let as_sink = registry.sink(class).or_else(|_| registry.sink(short));
    match (as_source, as_sink) {
        (Ok(s), Err(_)) => Ok((s.name.clone(), Role::Source, &[])),
        (Err(_), Ok(s)) => Ok((s.name.clone(), Role::Sink, &[])),
        (Ok(s), Ok(_)) => match (flat.contains_key("topic"), flat.contains_key("topics")) {
            (true, false) => Ok((s.name.clone(), Role::Source, &[])),
            (false, true) => Ok((s.name.clone(), Role::Sink, &[])),
            _ => Err(format!(
                "`{}` is both a source and a sink type: give `topic` (the topic a source writes) or `topics` (the topics a sink reads), not both",
                s.name
            )),
        },
        (Err(_), Err(_)) => {
            let known: Vec<&str> = registry
                .sources()
                .chain(registry.sinks())
                .map(|t| t.name.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let hint = did_you_mean(short, known.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            Err(format!(
                "unknown connector class `{class}`{hint}; known: {}",
                known.join(", ")
            ))
        }
    }
}

/// A setting as its text: Connect's values are strings; numbers and booleans sent as JSON
/// are taken as their text, lists joined with commas.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn split_list(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Builds nodes whose positions are indexes into the flat keys they came from.
struct Tree {
    keys: Vec<String>,
}

impl Tree {
    fn pos(&mut self, key: &str) -> Pos {
        self.keys.push(key.to_string());
        Pos {
            line: self.keys.len(),
            col: 1,
        }
    }

    fn key_of(&self, pos: Pos) -> Option<String> {
        pos.line
            .checked_sub(1)
            .and_then(|i| self.keys.get(i))
            .cloned()
    }
}

fn node(kind: Kind, pos: Pos) -> Node {
    Node {
        kind,
        pos,
        secret: false,
    }
}

fn string(s: &str, pos: Pos) -> Node {
    node(Kind::Str(s.to_string()), pos)
}

/// The text typed as the setting it is for expects (what YAML's scalars would have been).
fn typed(kind: Option<&FieldKind>, s: &str, pos: Pos) -> Node {
    match kind {
        Some(FieldKind::Integer { .. }) => match s.trim().parse::<i64>() {
            Ok(i) => node(Kind::Int(i), pos),
            Err(_) => string(s, pos),
        },
        Some(FieldKind::Boolean) => boolean(s, pos),
        Some(FieldKind::List(_)) => node(
            Kind::Seq(split_list(s).into_iter().map(|i| string(i, pos)).collect()),
            pos,
        ),
        _ => string(s, pos),
    }
}

fn boolean(s: &str, pos: Pos) -> Node {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => node(Kind::Bool(true), pos),
        "false" => node(Kind::Bool(false), pos),
        _ => string(s, pos),
    }
}

fn integer(s: &str, pos: Pos) -> Node {
    typed(Some(&FieldKind::Integer { min: 0, max: 0 }), s, pos)
}

fn entry(key: &str, value: Node) -> (Node, Node) {
    (string(key, value.pos), value)
}

/// A setting's JSON (nested by [`ConfigSpec::from_flat`]) as nodes, each at the position of
/// the flat key it came from (a group of settings at its first key's), so that a problem
/// deep inside is reported against the key the caller wrote.
fn settings_node(v: &Value, path: &str, flat: &[(String, String, Pos)]) -> Node {
    let prefix = format!("{path}.");
    let pos = flat
        .iter()
        .find(|(k, ..)| k == path)
        .or_else(|| flat.iter().find(|(k, ..)| k.starts_with(&prefix)))
        .map_or(Pos { line: 0, col: 0 }, |(_, _, p)| *p);
    let kind = match v {
        Value::Object(m) => Kind::Map(
            m.iter()
                .map(|(k, inner)| {
                    let child = settings_node(inner, &format!("{path}.{k}"), flat);
                    (string(k, child.pos), child)
                })
                .collect(),
        ),
        Value::Array(items) => Kind::Seq(items.iter().map(|i| node(json_scalar(i), pos)).collect()),
        other => json_scalar(other),
    };
    node(kind, pos)
}

fn json_scalar(v: &Value) -> Kind {
    match v {
        Value::Bool(b) => Kind::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Kind::Str(n.to_string()), Kind::Int),
        Value::String(s) => Kind::Str(s.clone()),
        Value::Null => Kind::Null,
        other => Kind::Str(other.to_string()),
    }
}

/// Checks a connector given as Kafka Connect's flat map. `sources` are the connectors
/// already running that write topics (a sink's reader schema is checked against theirs).
pub fn parse_flat_connector(
    name: &str,
    flat: &Map<String, Value>,
    registry: &ConnectorRegistry,
    sources: &[ConnectorPlan],
) -> Result<(ConnectorPlan, Role), Vec<FlatError>> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(vec![whole(format!(
            "connector name {name:?} must be non-empty, without `/` or control characters"
        ))]);
    }
    if let Some(given) = flat.get("name").map(text_of) {
        if given != name {
            return Err(vec![FlatError {
                key: Some("name".into()),
                message: format!("the config names connector `{given}`, the request `{name}`"),
            }]);
        }
    }
    let Some(class) = flat.get("connector.class").map(text_of) else {
        return Err(vec![FlatError {
            key: Some("connector.class".into()),
            message: "the config needs `connector.class` (a Sluice connector type)".into(),
        }]);
    };
    let (type_name, role, renames) =
        connector_class(registry, &class, flat).map_err(|message| {
            vec![FlatError {
                key: Some("connector.class".into()),
                message,
            }]
        })?;
    let spec = match role {
        Role::Source => registry.source(&type_name),
        Role::Sink => registry.sink(&type_name),
    }
    .map(|t| t.config.clone())
    .map_err(|e| vec![whole(e.to_string())])?;

    let mut tree = Tree { keys: Vec::new() };
    let mut errors = Vec::new();
    let mut top: Vec<(Node, Node)> = Vec::new();
    let mut error_keys: Vec<(Node, Node)> = Vec::new();
    let mut restart_keys: Vec<(Node, Node)> = Vec::new();
    let mut transform_order: Option<(Vec<String>, Pos)> = None;
    // The connector type's own settings: (name after renames, text, position).
    let mut settings: Vec<(String, String, Pos)> = Vec::new();
    let mut transform_keys: BTreeMap<String, Vec<(String, String, Pos)>> = BTreeMap::new();
    let mut predicate_keys: BTreeMap<String, Vec<(String, String, Pos)>> = BTreeMap::new();
    for (key, value) in flat {
        let text = text_of(value);
        let pos = tree.pos(key);
        match key.as_str() {
            "name" => {}
            "connector.class" => top.push(entry("type", string(&type_name, pos))),
            "tasks.max" => top.push(entry("tasks", integer(&text, pos))),
            "topic" => top.push(entry("topic", string(&text, pos))),
            "topics" => top.push(entry(
                "topics",
                node(
                    Kind::Seq(
                        split_list(&text)
                            .into_iter()
                            .map(|t| string(t, pos))
                            .collect(),
                    ),
                    pos,
                ),
            )),
            "key.converter" | "value.converter" => {
                let side = &key[..key.find('.').unwrap_or(0)];
                match CONVERTERS.iter().find(|(c, _)| *c == text) {
                    Some((_, format)) => {
                        top.push(entry(&format!("{side}_format"), string(format, pos)))
                    }
                    None => errors.push(FlatError {
                        key: Some(key.clone()),
                        message: format!(
                            "unknown converter `{text}`; Sluice has: {} (or set `{side}_format`)",
                            CONVERTERS.map(|(c, _)| c).join(", ")
                        ),
                    }),
                }
            }
            "key.converter.schemas.enable" | "value.converter.schemas.enable" => {
                let side = &key[..key.find('.').unwrap_or(0)];
                top.push(entry(
                    &format!("{side}_schemas_enable"),
                    boolean(&text, pos),
                ))
            }
            "key_schemas_enable" | "value_schemas_enable" => {
                top.push(entry(key, boolean(&text, pos)))
            }
            "errors.deadletterqueue.topic.name" | "errors.dead_letter_topic" => {
                error_keys.push(entry("dead_letter_topic", string(&text, pos)))
            }
            "errors.retry.timeout" | "errors.retry_timeout" => {
                error_keys.push(entry("retry_timeout", string(&text, pos)))
            }
            "errors.log.enable" | "errors.log" => {
                error_keys.push(entry("log", boolean(&text, pos)))
            }
            "transforms" => {
                transform_order = Some((
                    split_list(&text).into_iter().map(String::from).collect(),
                    pos,
                ))
            }
            "predicates" => {}
            _ => {
                if let Some(rest) = key.strip_prefix("errors.") {
                    error_keys.push(entry(rest, string(&text, pos)));
                } else if let Some(rest) = key.strip_prefix("restart.") {
                    let v = if rest == "max_attempts" {
                        integer(&text, pos)
                    } else {
                        string(&text, pos)
                    };
                    restart_keys.push(entry(rest, v));
                } else if let Some(rest) = key.strip_prefix("transforms.") {
                    match rest.split_once('.') {
                        Some((alias, k)) if !alias.is_empty() && !k.is_empty() => transform_keys
                            .entry(alias.to_string())
                            .or_default()
                            .push((k.to_string(), text, pos)),
                        _ => errors.push(FlatError {
                            key: Some(key.clone()),
                            message: "a transform's setting is `transforms.<alias>.<setting>`"
                                .into(),
                        }),
                    }
                } else if let Some(rest) = key.strip_prefix("predicates.") {
                    match rest.split_once('.') {
                        Some((alias, k)) if !alias.is_empty() && !k.is_empty() => predicate_keys
                            .entry(alias.to_string())
                            .or_default()
                            .push((k.to_string(), text, pos)),
                        _ => errors.push(FlatError {
                            key: Some(key.clone()),
                            message: "a predicate's setting is `predicates.<alias>.<setting>`"
                                .into(),
                        }),
                    }
                } else {
                    let setting = renames
                        .iter()
                        .find(|(from, _)| from == key)
                        .map_or(key.as_str(), |(_, to)| to);
                    settings.push((setting.to_string(), text, pos));
                }
            }
        }
    }
    let nested = spec.from_flat(
        settings
            .iter()
            .map(|(k, text, _)| (k.as_str(), text.as_str())),
    );
    for (k, v) in &nested {
        let value = settings_node(v, k, &settings);
        top.push((string(k, value.pos), value));
    }
    if !error_keys.is_empty() {
        let pos = error_keys[0].1.pos;
        top.push(entry("errors", node(Kind::Map(error_keys), pos)));
    }
    if !restart_keys.is_empty() {
        let pos = restart_keys[0].1.pos;
        top.push(entry("restart", node(Kind::Map(restart_keys), pos)));
    }
    let listed: Vec<String> = transform_order
        .as_ref()
        .map(|(l, _)| l.clone())
        .unwrap_or_default();
    for (alias, keys) in &transform_keys {
        if !listed.contains(alias) {
            errors.push(FlatError {
                key: Some(format!("transforms.{alias}.{}", keys[0].0)),
                message: format!("transform `{alias}` is not listed in `transforms`"),
            });
        }
    }
    if let Some((order, pos)) = transform_order {
        let mut items = Vec::new();
        for alias in order {
            let mut entries = Vec::new();
            let keys = transform_keys.get(&alias).cloned().unwrap_or_default();
            let kind_of = |k: &str| {
                let t = keys.iter().find(|(k, ..)| k == "type").map(|(_, t, _)| t)?;
                let spec = crate::transforms::spec(t)?;
                spec.fields
                    .into_iter()
                    .find(|f| f.name == k)
                    .map(|f| f.kind)
            };
            for (k, text, kpos) in &keys {
                let v = match k.as_str() {
                    "type" => string(text, *kpos),
                    "negate" => boolean(text, *kpos),
                    "predicate" => match predicate_keys.get(text) {
                        Some(p) => node(
                            Kind::Map(
                                p.iter()
                                    .map(|(pk, pt, ppos)| entry(pk, string(pt, *ppos)))
                                    .collect(),
                            ),
                            *kpos,
                        ),
                        None => {
                            errors.push(FlatError {
                                key: Some(format!("transforms.{alias}.predicate")),
                                message: format!(
                                    "predicate `{text}` has no `predicates.{text}.type`"
                                ),
                            });
                            continue;
                        }
                    },
                    _ => typed(kind_of(k).as_ref(), text, *kpos),
                };
                entries.push(entry(k, v));
            }
            items.push(node(Kind::Map(entries), pos));
        }
        top.push(entry("transforms", node(Kind::Seq(items), pos)));
    }
    let entry_node = node(Kind::Map(top), Pos { line: 0, col: 0 });
    let mut c = Checker {
        errors: Vec::new(),
        registry,
        written: BTreeSet::new(),
        written_prefixes: Vec::new(),
    };
    let source = role == Role::Source;
    let plan = c.connector(name, &entry_node, source, Pos { line: 0, col: 0 });
    if let Some((plan, _)) = &plan {
        if !source {
            let context = Pipeline {
                data_dir: PathBuf::new(),
                broker: None,
                registry: None,
                rest: None,
                kafka: None,
                plugin_path: Vec::new(),
                topics: BTreeMap::new(),
                sources: sources.to_vec(),
                sinks: vec![plan.clone()],
            };
            check_reader_schemas(&mut c, &context);
        }
    }
    errors.extend(c.errors.into_iter().map(|e| FlatError {
        key: tree.key_of(e.pos),
        message: e.message,
    }));
    match plan {
        Some((plan, _)) if errors.is_empty() => Ok((plan, role)),
        _ => {
            if errors.is_empty() {
                errors.push(whole(format!("connector `{name}` is not valid")));
            }
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry() -> ConnectorRegistry {
        let mut r = ConnectorRegistry::new();
        sluice_connector_file::register(&mut r).unwrap();
        sluice_connector_http::register(&mut r).unwrap();
        r
    }

    fn parse(name: &str, flat: Value) -> Result<(ConnectorPlan, Role), Vec<FlatError>> {
        let flat = flat.as_object().unwrap().clone();
        parse_flat_connector(name, &flat, &registry(), &[])
    }

    #[test]
    fn dotted_keys_reach_nested_settings_and_their_problems_name_the_key() {
        let (plan, _) = parse(
            "crm",
            json!({
                "connector.class": "http",
                "topics": "orders",
                "url": "http://127.0.0.1:9/${topic}",
                "batch.max_records": "20",
                "batch.linger": "5ms",
                "headers.X-Source": "sluice",
                "auth.basic.username": "ops",
                "auth.basic.password": "pw",
                "retry.max_retries": "-1",
            }),
        )
        .unwrap();
        assert_eq!(plan.settings.int("batch.max_records"), Some(20));
        assert_eq!(plan.settings.int("retry.max_retries"), Some(-1));
        assert_eq!(plan.settings.str("headers.X-Source"), Some("sluice"));
        assert_eq!(
            plan.settings.secret_keys(),
            ["auth.basic.password".to_string()]
        );

        let errors = parse(
            "crm",
            json!({
                "connector.class": "http",
                "topics": "orders",
                "url": "http://127.0.0.1:9/x",
                "batch.max_recrods": "20",
                "retry.max_backoff": "soon",
            }),
        )
        .unwrap_err();
        let keys: Vec<Option<&str>> = errors.iter().map(|e| e.key.as_deref()).collect();
        assert_eq!(
            keys,
            [Some("batch.max_recrods"), Some("retry.max_backoff")],
            "{errors:?}"
        );
        assert!(
            errors[0].message.contains("did you mean `max_records`?"),
            "{errors:?}"
        );
    }

    #[test]
    fn connects_keys_map_onto_the_files_nesting() {
        let (plan, role) = parse(
            "s",
            json!({
                "connector.class": "file",
                "name": "s",
                "topics": "a, b",
                "path": "/out",
                "roll_bytes": "1000",
                "tasks.max": "2",
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter.schemas.enable": "true",
                "errors.tolerance": "all",
                "errors.deadletterqueue.topic.name": "dlq",
                "errors.retry.timeout": "5000",
                "errors.log.enable": "false",
                "restart.max_attempts": "4",
                "transforms": "drop,tag",
                "transforms.drop.type": "filter",
                "transforms.drop.predicate": "tomb",
                "predicates": "tomb",
                "predicates.tomb.type": "record_is_tombstone",
                "transforms.tag.type": "mask_field",
                "transforms.tag.fields": "card,cvv",
            }),
        )
        .unwrap();
        assert_eq!(role, Role::Sink);
        assert_eq!(plan.topics, ["a", "b"]);
        assert_eq!(plan.tasks, 2);
        assert_eq!(plan.value.format, Format::Json);
        assert!(plan.value.schemas_enable);
        assert!(plan.errors.tolerate_all && !plan.errors.log_errors);
        assert_eq!(plan.errors.dead_letter_topic.as_deref(), Some("dlq"));
        assert_eq!(plan.errors.retry_timeout, Duration::from_secs(5));
        assert_eq!(plan.restart.max_attempts, 4);
        assert_eq!(plan.transforms.len(), 2);
        assert_eq!(plan.settings.to_json()["roll_bytes"], json!(1000));
    }

    #[test]
    fn connect_class_names_are_accepted_where_sluice_has_the_connector() {
        let (plan, role) = parse(
            "s",
            json!({
                "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "file": "/in/app.log",
                "topic": "logs",
            }),
        )
        .unwrap();
        assert_eq!((plan.type_name.as_str(), role), ("file", Role::Source));
        assert_eq!(plan.settings.to_json()["path"], json!("/in/app.log"));
    }

    fn keys_of(errors: &[FlatError]) -> Vec<Option<&str>> {
        errors.iter().map(|e| e.key.as_deref()).collect()
    }

    #[test]
    fn problems_name_their_keys() {
        let e = parse("s", json!({"connector.class": "file", "path": "/x"})).unwrap_err();
        assert_eq!(keys_of(&e), [Some("connector.class")]);
        assert!(e[0].message.contains("both a source and a sink"), "{e:?}");

        let e = parse("s", json!({"name": "t", "connector.class": "file"})).unwrap_err();
        assert_eq!(keys_of(&e), [Some("name")]);

        let e = parse(
            "s",
            json!({
                "connector.class": "file", "topics": "a", "path": "/x",
                "transforms": "f",
                "transforms.f.type": "filter",
                "transforms.f.predicate": "nope",
                "transforms.g.type": "filter",
                "value.converter": "com.example.Mine",
            }),
        )
        .unwrap_err();
        let mut keys = keys_of(&e);
        keys.sort();
        assert_eq!(
            keys,
            [
                Some("transforms.f.predicate"),
                Some("transforms.g.type"),
                Some("value.converter")
            ],
            "{e:?}"
        );

        let e = parse(
            "s",
            json!({"connector.class": "file", "topic": "a b", "path": "/x", "format": "xml"}),
        )
        .unwrap_err();
        let mut keys = keys_of(&e);
        keys.sort();
        assert_eq!(keys, [Some("format"), Some("topic")], "{e:?}");
        assert!(
            e.iter().all(|e| !e.to_string().contains(":1:")),
            "no line numbers"
        );
    }
}

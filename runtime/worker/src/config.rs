//! The pipeline file and its validation: text → positioned YAML → a checked [`Pipeline`].
//!
//! Validation does no I/O beyond reading the file (and `${file:…}` substitutions): it checks
//! every key against what is allowed at its place (with "did you mean …"), every value's
//! type, topic names and settings, connector types against the registry, each connector's
//! own settings against the spec it declares, and that every topic a sink reads is declared
//! or written by a source. All errors are reported at once, each with file, line and column.
//!
//! ```yaml
//! runtime:
//!   data_dir: ./data
//!   broker: { listen: 127.0.0.1:9092 }     # optional Kafka listener
//!   registry: { listen: 127.0.0.1:8081 }   # optional schema registry (`auth` beyond loopback)
//!   rest: { listen: 127.0.0.1:8083 }       # Kafka Connect's REST API (the default; `enabled: false`)
//! topics:
//!   orders: { partitions: 3, config: { retention.ms: 86400000 } }
//! sources:
//!   orders_in: { type: file, topic: orders, value_format: json, path: /in/*.json }
//! sinks:
//!   orders_out: { type: file, topics: [orders], value_format: json, path: /out }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Map;
use sluice_connector_sdk::config::{did_you_mean, parse_duration, ConfigValues};
use sluice_connector_sdk::registry::ConnectorRegistry;
use sluice_log::{validate_topic_name, TopicConfig};

use crate::yaml::{load, Kind, Node, Pos};

mod connector;
mod flat;
mod kafka;
mod rest;
mod transform_chain;

use connector::check_reader_schemas;
pub use flat::{connector_class, parse_flat_connector, FlatError};

/// One problem in the pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub pos: Pos,
    pub message: String,
}

/// Every problem found, with the file they are in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", self.file.display(), e.pos, e.message)?;
        }
        Ok(())
    }
}

/// How keys or values are turned into bytes on the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Pass-through: bytes as they are, never decoded.
    Bytes,
    String,
    Json,
    /// Confluent wire format, schema registered under `<topic>-key` / `<topic>-value`.
    Avro,
}

const FORMATS: [(&str, Format); 4] = [
    ("bytes", Format::Bytes),
    ("string", Format::String),
    ("json", Format::Json),
    ("avro", Format::Avro),
];

impl Format {
    pub fn name(self) -> &'static str {
        FORMATS
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("bytes")
    }
}

/// What happens when a record fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    /// `false` (`none`): the task stops; `true` (`all`): the record goes to the dead-letter topic.
    pub tolerate_all: bool,
    pub dead_letter_topic: Option<String>,
    pub retry_timeout: Duration,
    pub log_errors: bool,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy {
            tolerate_all: false,
            dead_letter_topic: None,
            retry_timeout: Duration::from_secs(300),
            log_errors: true,
        }
    }
}

/// A connector as the file declares it, checked.
#[derive(Debug, Clone)]
pub struct ConnectorPlan {
    pub name: String,
    pub type_name: String,
    /// The topic a source writes (one), or the topics a sink reads.
    pub topics: Vec<String>,
    /// How keys are stored on the topic (`key_format`, `key_schema`, `key_schemas_enable`).
    pub key: SideFormat,
    /// How values are (`value_format`, …).
    pub value: SideFormat,
    pub tasks: u32,
    pub errors: ErrorPolicy,
    /// How failed tasks restart by themselves.
    pub restart: RestartPolicy,
    /// A hash of the connector's entry as written (after substitutions; positions left
    /// out): a reload restarts the connectors whose fingerprint changed, and only those.
    pub fingerprint: u64,
    /// The connector's own settings, validated against its spec.
    pub settings: ConfigValues,
    /// Where `value_schema` stands in the file (for errors found across connectors).
    pub value_schema_pos: Option<Pos>,
    /// Applied in order: on a source before its records are stored, on a sink after they
    /// are read (and decoded).
    pub transforms: Vec<crate::transforms::Transform>,
    /// `exactly_once: true` on a source (where it stands): its records and positions go
    /// in one Kafka transaction (KIP-618); needs `runtime.kafka`.
    pub exactly_once: Option<Pos>,
}

impl ConnectorPlan {
    /// The settings of one side of the records.
    pub fn side(&self, side: Side) -> &SideFormat {
        match side {
            Side::Key => &self.key,
            Side::Value => &self.value,
        }
    }

    /// Whether either side is `avro` (the connector needs the schema registry).
    pub fn uses_avro(&self) -> bool {
        Side::BOTH
            .iter()
            .any(|s| self.side(*s).format == Format::Avro)
    }
}

/// A record's key or its value: the two sides every converter handles alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Key,
    Value,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Key, Side::Value];

    /// `key` or `value`, as the settings spell it (`key_format`, `value.converter`).
    pub fn name(self) -> &'static str {
        match self {
            Side::Key => "key",
            Side::Value => "value",
        }
    }
}

/// How one side of a connector's records is stored on its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideFormat {
    pub format: Format,
    /// The Avro schema (JSON text): on a source, what `avro` writes and `json` checks; on a
    /// sink, the reader schema that the side is resolved to.
    pub schema: Option<String>,
    /// `json` with Kafka Connect's `{"schema": …, "payload": …}` envelope
    /// (`schemas.enable=true`).
    pub schemas_enable: bool,
}

/// `restart:` of a connector: a failed task is started again after `initial_backoff`,
/// doubling up to `max_backoff`, at most `max_attempts` times in a row (a task that then
/// runs for a minute starts counting afresh); then it stays FAILED until restarted over the
/// REST API. Failures a restart cannot help (a bad record with `tolerance: none`, a deleted
/// topic) are not restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// `runtime.broker`: the Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerListener {
    pub listen: SocketAddr,
    /// `advertised_listener`: what clients are told to connect to (default: `listen`).
    pub advertised: Option<(String, u16)>,
    /// `unauthenticated: true`: the opt-in a non-loopback address needs until the listener
    /// has TLS and SASL.
    pub unauthenticated: bool,
}

/// `runtime.registry`: the schema registry's HTTP API.
#[derive(Debug, Clone)]
pub struct RegistryListener {
    pub listen: SocketAddr,
    /// `auth`: basic users and bearer tokens, as `sluice registry --config` takes them;
    /// required beyond loopback.
    pub auth: sluice_schema_registry::api::AuthConfig,
}

/// `runtime.rest`: Kafka Connect's REST API, on by default on loopback.
#[derive(Debug, Clone)]
pub struct RestListener {
    pub listen: SocketAddr,
    /// `auth`: basic users and bearer tokens; required beyond loopback.
    pub auth: sluice_schema_registry::api::AuthConfig,
}

impl RestListener {
    /// Kafka Connect's default port, on loopback.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8083);
}

impl Default for RestListener {
    fn default() -> Self {
        RestListener {
            listen: RestListener::DEFAULT_LISTEN,
            auth: Default::default(),
        }
    }
}

/// A checked pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub data_dir: PathBuf,
    pub broker: Option<BrokerListener>,
    pub registry: Option<RegistryListener>,
    /// `None`: `runtime.rest.enabled: false`.
    pub rest: Option<RestListener>,
    /// `runtime.kafka`: run on this Apache Kafka cluster instead of the embedded log.
    pub kafka: Option<sluice_kafka::KafkaSettings>,
    pub plugin_path: Vec<PathBuf>,
    pub topics: BTreeMap<String, (u32, TopicConfig)>,
    pub sources: Vec<ConnectorPlan>,
    pub sinks: Vec<ConnectorPlan>,
}

struct Checker<'r> {
    errors: Vec<ConfigError>,
    registry: &'r ConnectorRegistry,
    /// Topics sources write, even sources with errors (so that one mistake is reported once,
    /// not again at every sink that reads the topic).
    written: BTreeSet<String>,
    /// Topic name prefixes sources write (`shop.` for a CDC source's tables).
    written_prefixes: Vec<String>,
}

impl Checker<'_> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(ConfigError {
            pos,
            message: message.into(),
        });
    }

    /// The entries of a mapping, reporting keys not in `allowed` (when given).
    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: Option<&[&str]>,
    ) -> Vec<(&'n str, &'n Node, Pos)> {
        let Some(entries) = node.as_map() else {
            if node.kind != Kind::Null {
                self.err(
                    node.pos,
                    format!("{what} must be a mapping, found {}", node.type_name()),
                );
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.err(
                    k.pos,
                    format!("keys in {what} must be strings, found {}", k.type_name()),
                );
                continue;
            };
            if let Some(allowed) = allowed {
                if !allowed.contains(&key) {
                    let hint = did_you_mean(key, allowed.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    self.err(
                        k.pos,
                        format!(
                            "unknown key `{key}` in {what}{hint}; expected one of: {}",
                            allowed.join(", ")
                        ),
                    );
                    continue;
                }
            }
            out.push((key, v, k.pos));
        }
        out
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.err(
                    node.pos,
                    format!("{what} must be a string, found {}", node.type_name()),
                );
                None
            }
        }
    }

    fn int(&mut self, node: &Node, what: &str, min: i64, max: i64) -> Option<i64> {
        match node.kind {
            Kind::Int(i) if i >= min && i <= max => Some(i),
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "{what} must be an integer from {min} to {max}, found {}",
                        node.shown()
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.err(
                    node.pos,
                    format!("{what} must be true or false, found {}", node.shown()),
                );
                None
            }
        }
    }

    fn listen_addr(&mut self, v: &Node, what: &str) -> Option<SocketAddr> {
        match v.as_str().map(str::parse::<SocketAddr>) {
            Some(Ok(a)) => Some(a),
            _ => {
                self.err(
                    v.pos,
                    format!(
                        "`listen` in {what} must be HOST:PORT with an IP address, found {}",
                        v.shown()
                    ),
                );
                None
            }
        }
    }

    /// A listener policy refusal, at the listener's section.
    fn listener_policy(
        &mut self,
        pos: Pos,
        result: Result<Option<sluice_listeners::Warning>, sluice_listeners::ListenerError>,
    ) {
        if let Err(e) = result {
            self.err(pos, e.to_string());
        }
    }

    fn broker_listener(&mut self, node: &Node) -> Option<BrokerListener> {
        let what = "`runtime.broker`";
        let (mut listen, mut advertised, mut unauthenticated) = (None, None, Some(false));
        let (mut listen_pos, mut advertised_pos) = (node.pos, None);
        let allowed = ["listen", "advertised_listener", "unauthenticated"];
        for (k, v, _) in self.mapping(node, what, Some(&allowed)) {
            match k {
                "listen" => {
                    listen_pos = v.pos;
                    listen = self.listen_addr(v, what);
                }
                "advertised_listener" => {
                    advertised_pos = Some(v.pos);
                    advertised = self.string(v, "`advertised_listener`");
                }
                "unauthenticated" => unauthenticated = self.boolean(v, "`unauthenticated`"),
                _ => {}
            }
        }
        let Some(listen) = listen else {
            if node.as_map().is_some() {
                self.err(node.pos, format!("{what} needs `listen`"));
            }
            return None;
        };
        let advertised = match sluice_listeners::advertised(listen, advertised.as_deref()) {
            Ok(a) => a,
            Err(e) => {
                self.err(advertised_pos.unwrap_or(listen_pos), e.to_string());
                None
            }
        };
        // An `unauthenticated` that is not a boolean was reported already.
        let unauthenticated = unauthenticated?;
        self.listener_policy(
            listen_pos,
            sluice_listeners::check(&sluice_listeners::Listener {
                service: sluice_listeners::Service::Kafka,
                addr: listen,
                authenticated: false,
                allow_unauthenticated: unauthenticated,
            }),
        );
        Some(BrokerListener {
            listen,
            advertised,
            unauthenticated,
        })
    }

    fn registry_listener(&mut self, node: &Node) -> Option<RegistryListener> {
        let what = "`runtime.registry`";
        let (mut listen, mut listen_pos) = (None, node.pos);
        let mut auth = sluice_schema_registry::api::AuthConfig::default();
        for (k, v, _) in self.mapping(node, what, Some(&["listen", "auth"])) {
            match k {
                "listen" => {
                    listen_pos = v.pos;
                    listen = self.listen_addr(v, what);
                }
                "auth" => auth = self.http_auth(v, "`runtime.registry.auth`"),
                _ => {}
            }
        }
        let Some(listen) = listen else {
            if node.as_map().is_some() {
                self.err(node.pos, format!("{what} needs `listen`"));
            }
            return None;
        };
        self.listener_policy(
            listen_pos,
            sluice_listeners::check(&sluice_listeners::Listener {
                service: sluice_listeners::Service::Registry,
                addr: listen,
                authenticated: auth.is_enabled(),
                allow_unauthenticated: false,
            }),
        );
        Some(RegistryListener { listen, auth })
    }

    /// `auth: { basic: [{username, password}], bearer_tokens: [...] }`.
    pub(super) fn http_auth(
        &mut self,
        node: &Node,
        what: &str,
    ) -> sluice_schema_registry::api::AuthConfig {
        use sluice_schema_registry::api::{AuthConfig, BasicUser};
        let mut auth = AuthConfig::default();
        for (k, v, _) in self.mapping(node, what, Some(&["basic", "bearer_tokens"])) {
            let Kind::Seq(items) = &v.kind else {
                self.err(
                    v.pos,
                    format!("`{k}` in {what} must be a list, found {}", v.type_name()),
                );
                continue;
            };
            for item in items {
                if k == "bearer_tokens" {
                    if let Some(t) = self.string(item, "each of `bearer_tokens`") {
                        if t.is_empty() {
                            self.err(item.pos, "an empty bearer token would let anyone in");
                        } else {
                            auth.bearer_tokens.push(t);
                        }
                    }
                    continue;
                }
                let (mut username, mut password) = (None, None);
                for (uk, uv, _) in
                    self.mapping(item, "each of `basic`", Some(&["username", "password"]))
                {
                    let value = self.string(uv, &format!("`{uk}`"));
                    if uk == "username" {
                        username = value;
                    } else {
                        password = value;
                    }
                }
                match (username, password) {
                    (Some(username), Some(password)) => {
                        auth.basic.push(BasicUser { username, password })
                    }
                    _ => self.err(item.pos, "each of `basic` needs `username` and `password`"),
                }
            }
        }
        auth
    }

    fn format(&mut self, node: &Node, what: &str) -> Format {
        match node
            .as_str()
            .and_then(|s| FORMATS.iter().find(|(n, _)| *n == s))
        {
            Some((_, f)) => *f,
            None => {
                let names: Vec<&str> = FORMATS.iter().map(|(n, _)| *n).collect();
                let hint = node
                    .as_str()
                    .and_then(|s| did_you_mean(s, names.iter().copied()))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.err(
                    node.pos,
                    format!(
                        "{what} must be one of {}, found {}{hint}",
                        names.join(", "),
                        node.shown()
                    ),
                );
                Format::Bytes
            }
        }
    }

    fn topic_name(&mut self, node: &Node, what: &str) -> Option<String> {
        let name = self.string(node, what)?;
        match validate_topic_name(&name) {
            Ok(()) => Some(name),
            Err(e) => {
                self.err(node.pos, e.to_string());
                None
            }
        }
    }

    fn errors_policy(&mut self, node: &Node, what: &str) -> ErrorPolicy {
        let mut p = ErrorPolicy::default();
        let mut dlq_pos = None;
        for (k, v, _) in self.mapping(
            node,
            what,
            Some(&["tolerance", "dead_letter_topic", "retry_timeout", "log"]),
        ) {
            match k {
                "tolerance" => match v.as_str() {
                    Some("none") => p.tolerate_all = false,
                    Some("all") => p.tolerate_all = true,
                    _ => self.err(
                        v.pos,
                        format!("`tolerance` must be `none` or `all`, found {}", v.shown()),
                    ),
                },
                "dead_letter_topic" => {
                    dlq_pos = Some(v.pos);
                    p.dead_letter_topic = self.topic_name(v, "`dead_letter_topic`");
                }
                "retry_timeout" => match v.as_str().and_then(parse_duration) {
                    Some(d) => p.retry_timeout = d,
                    None => self.err(
                        v.pos,
                        format!(
                            "`retry_timeout` must be a duration such as 30s or 5m, found {}",
                            v.shown()
                        ),
                    ),
                },
                "log" => match v.kind {
                    Kind::Bool(b) => p.log_errors = b,
                    _ => self.err(
                        v.pos,
                        format!("`log` must be true or false, found {}", v.shown()),
                    ),
                },
                _ => {}
            }
        }
        if let (Some(pos), false) = (dlq_pos, p.tolerate_all) {
            self.err(pos, "`dead_letter_topic` needs `tolerance: all` (with `none` a failing record stops the task)");
        }
        p
    }
}

/// Reads and checks a pipeline file. `env` supplies `${env:NAME}` values.
pub fn load_pipeline(
    path: &Path,
    registry: &ConnectorRegistry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigErrors> {
    let fail = |pos: Pos, message: String| ConfigErrors {
        file: path.to_path_buf(),
        errors: vec![ConfigError { pos, message }],
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(
            Pos { line: 1, col: 1 },
            format!("cannot read the file: {e}"),
        )
    })?;
    parse_pipeline(&text, registry, env).map_err(|errors| ConfigErrors {
        file: path.to_path_buf(),
        errors,
    })
}

/// Checks pipeline text (no file needed: tests and `sluice validate` of stdin).
pub fn parse_pipeline(
    text: &str,
    registry: &ConnectorRegistry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, Vec<ConfigError>> {
    let root = load(text, env).map_err(|e| {
        vec![ConfigError {
            pos: e.pos,
            message: format!("invalid YAML: {}", e.message),
        }]
    })?;
    let mut c = Checker {
        errors: Vec::new(),
        registry,
        written: BTreeSet::new(),
        written_prefixes: Vec::new(),
    };
    let mut pipeline = Pipeline {
        data_dir: PathBuf::from("./data"),
        broker: None,
        registry: None,
        rest: Some(RestListener::default()),
        kafka: None,
        plugin_path: Vec::new(),
        topics: BTreeMap::new(),
        sources: Vec::new(),
        sinks: Vec::new(),
    };
    if root.as_map().is_none() {
        c.err(root.pos, format!("a pipeline file is a mapping with `sources`, `sinks` (and optionally `runtime`, `topics`, `plugin_path`); found {}", root.type_name()));
        return Err(c.errors);
    }
    let top = c.mapping(
        &root,
        "the pipeline file",
        Some(&["runtime", "topics", "sources", "sinks", "plugin_path"]),
    );
    let mut reads: Vec<(String, String, Pos)> = Vec::new();
    let mut names: BTreeMap<String, Pos> = BTreeMap::new();
    let mut kafka_pos: Option<Pos> = None;
    for (key, node, _) in &top {
        match *key {
            "runtime" => {
                for (k, v, kpos) in c.mapping(
                    node,
                    "`runtime`",
                    Some(&["data_dir", "broker", "registry", "rest", "kafka"]),
                ) {
                    match k {
                        "data_dir" => {
                            if let Some(s) = c.string(v, "`data_dir`") {
                                pipeline.data_dir = PathBuf::from(s);
                            }
                        }
                        "broker" => pipeline.broker = c.broker_listener(v),
                        "registry" => pipeline.registry = c.registry_listener(v),
                        "rest" => pipeline.rest = c.rest_listener(v),
                        "kafka" => {
                            pipeline.kafka = c.kafka_settings(v);
                            kafka_pos = Some(kpos);
                        }
                        _ => {}
                    }
                }
                if let (Some(pos), Some(_)) = (kafka_pos, &pipeline.broker) {
                    c.err(pos, "`runtime.kafka` runs the pipelines on a Kafka cluster, and `runtime.broker` serves the embedded log: remove one (clients read the cluster's topics from the cluster)");
                }
            }
            "plugin_path" => match &node.kind {
                Kind::Seq(items) => {
                    for item in items {
                        if let Some(s) = c.string(item, "each of `plugin_path`") {
                            pipeline.plugin_path.push(PathBuf::from(s));
                        }
                    }
                }
                _ => c.err(
                    node.pos,
                    format!(
                        "`plugin_path` must be a list of folders, found {}",
                        node.type_name()
                    ),
                ),
            },
            "topics" => {
                for (name, spec, kpos) in c.mapping(node, "`topics`", None) {
                    let Ok(()) = validate_topic_name(name).map_err(|e| c.err(kpos, e.to_string()))
                    else {
                        continue;
                    };
                    let (mut partitions, mut config) = (1u32, TopicConfig::default());
                    for (k, v, _) in c.mapping(
                        spec,
                        &format!("topic `{name}`"),
                        Some(&["partitions", "config"]),
                    ) {
                        match k {
                            "partitions" => {
                                partitions =
                                    c.int(v, "`partitions`", 1, 100_000).unwrap_or(1) as u32
                            }
                            "config" => {
                                for (ck, cv, cpos) in
                                    c.mapping(v, &format!("`config` of topic `{name}`"), None)
                                {
                                    let value = match &cv.kind {
                                        Kind::Str(s) => s.clone(),
                                        Kind::Int(i) => i.to_string(),
                                        Kind::Bool(b) => b.to_string(),
                                        _ => {
                                            c.err(cv.pos, format!("topic setting `{ck}` must be a string, number or boolean, found {}", cv.type_name()));
                                            continue;
                                        }
                                    };
                                    if let Err(e) = config.set(ck, &value) {
                                        c.err(
                                            if e.to_string().starts_with("unknown") {
                                                cpos
                                            } else {
                                                cv.pos
                                            },
                                            format!("topic `{name}`: {e}"),
                                        );
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    pipeline
                        .topics
                        .insert(name.to_string(), (partitions, config));
                }
            }
            "sources" | "sinks" => {
                let source = *key == "sources";
                for (name, spec, kpos) in c.mapping(node, &format!("`{key}`"), None) {
                    if let Some(first) = names.insert(name.to_string(), kpos) {
                        c.err(
                            kpos,
                            format!(
                                "connector name `{name}` is already used at line {}",
                                first.line
                            ),
                        );
                    }
                    let Some((plan, topics)) = c.connector(name, spec, source, kpos) else {
                        continue;
                    };
                    if source {
                        pipeline.sources.push(plan);
                    } else {
                        reads.extend(topics.into_iter().map(|(t, p)| (name.to_string(), t, p)));
                        pipeline.sinks.push(plan);
                    }
                }
            }
            _ => {}
        }
    }
    for (sink, topic, pos) in reads {
        let by_prefix = c
            .written_prefixes
            .iter()
            .any(|p| topic.starts_with(p.as_str()));
        if !c.written.contains(&topic) && !pipeline.topics.contains_key(&topic) && !by_prefix {
            let known: Vec<&str> = c
                .written
                .iter()
                .chain(pipeline.topics.keys())
                .map(String::as_str)
                .collect();
            let hint = did_you_mean(&topic, known)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            c.err(pos, format!("sink `{sink}` reads topic `{topic}`, which no source writes and `topics` does not declare{hint}"));
        }
    }
    check_reader_schemas(&mut c, &pipeline);
    if kafka_pos.is_none() {
        for s in &pipeline.sources {
            if let Some(pos) = s.exactly_once {
                c.err(pos, format!("source `{}`: `exactly_once` writes records and positions in one Kafka transaction, so it needs `runtime.kafka` (on the embedded log, sources with ordered positions such as `postgres_cdc` are exactly once already)", s.name));
            }
        }
    }
    if pipeline.sources.is_empty() && pipeline.sinks.is_empty() && c.errors.is_empty() {
        c.err(
            root.pos,
            "the pipeline declares no `sources` and no `sinks`",
        );
    }
    if c.errors.is_empty() {
        Ok(pipeline)
    } else {
        c.errors.sort_by_key(|e| (e.pos.line, e.pos.col));
        Err(c.errors)
    }
}

/// Values such as `${env:…}` are already substituted; nothing here prints them.
#[cfg(test)]
mod tests;

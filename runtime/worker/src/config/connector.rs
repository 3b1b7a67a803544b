//! One connector's entry (`sources:` or `sinks:`): its common keys (type, topics, converters,
//! schemas, tasks, errors, transforms), its own settings checked against the spec its type
//! declares, and the reader schemas of sinks checked against what sources write.

use super::*;

impl Checker<'_> {
    /// `at`: where the connector's name stands (missing keys are reported there).
    pub(super) fn connector(
        &mut self,
        name: &str,
        node: &Node,
        source: bool,
        at: Pos,
    ) -> Option<(ConnectorPlan, Vec<(String, Pos)>)> {
        let kind = if source { "source" } else { "sink" };
        let what = format!("{kind} `{name}`");
        let common: &[&str] = if source {
            &[
                "type",
                "topic",
                "key_format",
                "value_format",
                "tasks",
                "errors",
                "restart",
                "transforms",
                "key_schema",
                "value_schema",
                "key_schemas_enable",
                "value_schemas_enable",
            ]
        } else {
            &[
                "type",
                "topics",
                "key_format",
                "value_format",
                "tasks",
                "errors",
                "restart",
                "transforms",
                "key_schema",
                "value_schema",
                "key_schemas_enable",
                "value_schemas_enable",
            ]
        };
        let entries = self.mapping(node, &what, None);
        node.as_map()?;
        let (mut type_name, mut topics, mut tasks) = (None, Vec::new(), 1u32);
        let (mut key_format, mut value_format) = (Format::Bytes, Format::Bytes);
        let mut formats_given = [None, None];
        let mut errors = ErrorPolicy::default();
        let mut restart = RestartPolicy::default();
        let mut settings = Map::new();
        let mut setting_pos: BTreeMap<String, (Pos, &Node)> = BTreeMap::new();
        let mut topic_seen = false;
        let mut schemas: [Option<(String, Pos)>; 2] = [None, None];
        let mut schemas_enable = [false, false];
        let mut transforms = Vec::new();
        let mut exactly_once = None;
        for (key, v, kpos) in &entries {
            match *key {
                "type" => type_name = self.string(v, "`type`").map(|s| (s, v.pos)),
                "topic" if source => {
                    topic_seen = true;
                    if let Some(t) = self.topic_name(v, "`topic`") {
                        self.written.insert(t.clone());
                        topics.push((t, v.pos));
                    }
                }
                "topics" if !source => {
                    topic_seen = true;
                    match &v.kind {
                        Kind::Seq(items) if !items.is_empty() => {
                            for item in items {
                                if let Some(t) = self.topic_name(item, "each of `topics`") {
                                    topics.push((t, item.pos));
                                }
                            }
                        }
                        _ => self.err(
                            v.pos,
                            format!(
                                "`topics` must be a non-empty list of topic names, found {}",
                                v.shown()
                            ),
                        ),
                    }
                }
                "key_format" => {
                    key_format = self.format(v, "`key_format`");
                    formats_given[0] = Some(v.pos);
                }
                "value_format" => {
                    value_format = self.format(v, "`value_format`");
                    formats_given[1] = Some(v.pos);
                }
                "tasks" => tasks = self.int(v, "`tasks`", 1, 1024).unwrap_or(1) as u32,
                "exactly_once" if source => {
                    if self.boolean(v, "`exactly_once`") == Some(true) {
                        exactly_once = Some(v.pos);
                    }
                }
                "errors" => errors = self.errors_policy(v, &format!("`errors` of {what}")),
                "restart" => restart = self.restart_policy(v, &format!("`restart` of {what}")),
                "key_schema" | "value_schema" => {
                    let text = match &v.kind {
                        Kind::Str(s) => s.clone(),
                        _ => v.to_json().to_string(),
                    };
                    match apache_avro::Schema::parse_str(&text) {
                        Ok(_) => schemas[usize::from(*key == "value_schema")] = Some((text, v.pos)),
                        Err(e) => {
                            self.err(v.pos, format!("`{key}` is not a valid Avro schema: {e}"))
                        }
                    }
                }
                "key_schemas_enable" | "value_schemas_enable" => {
                    schemas_enable[usize::from(*key == "value_schemas_enable")] =
                        self.boolean(v, &format!("`{key}`")).unwrap_or(false)
                }
                "transforms" => transforms = self.transforms(v, &what, source),
                other => {
                    settings.insert(other.to_string(), v.to_json());
                    setting_pos.insert(other.to_string(), (*kpos, v));
                }
            }
        }
        let Some((type_name, type_pos)) = type_name else {
            if !topic_seen {
                self.err(
                    at,
                    format!("{what} needs `{}`", if source { "topic" } else { "topics" }),
                );
            }
            self.err(at, format!("{what} needs `type`"));
            return None;
        };
        let found = if source {
            self.registry.source(&type_name)
        } else {
            self.registry.sink(&type_name)
        };
        let connector_type = match found {
            Ok(t) => t,
            Err(e) => {
                if !topic_seen {
                    self.err(
                        at,
                        format!("{what} needs `{}`", if source { "topic" } else { "topics" }),
                    );
                }
                self.err(type_pos, e.to_string());
                return None;
            }
        };
        // A source that names its topics from its settings (`topic_prefix`) needs no
        // `topic`: its own is derived once the settings are checked.
        let names_own_topics = source && connector_type.config.topics.is_some();
        if !topic_seen && !names_own_topics {
            self.err(
                at,
                format!("{what} needs `{}`", if source { "topic" } else { "topics" }),
            );
        }
        let settings = match ConnectorRegistry::validate(connector_type, &settings) {
            Ok(values) => values,
            Err(issues) => {
                for issue in issues {
                    let pos = issue
                        .key
                        .as_ref()
                        .and_then(|k| setting_position(&setting_pos, k))
                        .unwrap_or(at);
                    let known: Vec<&str> = common.to_vec();
                    let mut message = format!("{what} (type `{type_name}`): {issue}");
                    if issue.message.starts_with("unknown setting")
                        && !message.contains("did you mean")
                    {
                        if let Some(s) = issue
                            .key
                            .as_deref()
                            .and_then(|k| did_you_mean(k, known.iter().copied()))
                        {
                            message.push_str(&format!(" (did you mean `{s}`?)"));
                        }
                    }
                    self.err(pos, message);
                }
                return None;
            }
        };
        if let (Some(f), true) = (connector_type.config.topics, source) {
            let written = (f.0)(&settings);
            if !topic_seen {
                self.written.insert(written.own.clone());
                topics.push((written.own, at));
            }
            self.written_prefixes.extend(written.prefixes);
        }
        let own_schemas = source && connector_type.config.own_schemas;
        let mut converters_ok = true;
        if own_schemas {
            // Typed records (a CDC source's events) are written as JSON unless told otherwise,
            // and never as raw bytes.
            for (i, (side, format)) in [("key", &mut key_format), ("value", &mut value_format)]
                .into_iter()
                .enumerate()
            {
                match formats_given[i] {
                    None => *format = Format::Json,
                    Some(pos) if !matches!(*format, Format::Json | Format::Avro) => {
                        self.err(pos, format!("{what} writes typed records: `{side}_format` must be json or avro (it is {})", format.name()));
                        converters_ok = false;
                    }
                    Some(_) => {}
                }
            }
        }
        for (i, (side, format)) in [("key", key_format), ("value", value_format)]
            .into_iter()
            .enumerate()
        {
            if source && format == Format::Avro && schemas[i].is_none() && !own_schemas {
                self.err(at, format!("{what} writes `{side}_format: avro` and needs `{side}_schema` (the Avro schema of its {side}s)"));
                converters_ok = false;
            }
            if let Some((_, pos)) = &schemas[i] {
                if !matches!(format, Format::Avro | Format::Json) {
                    self.err(
                        *pos,
                        format!(
                            "`{side}_schema` needs `{side}_format: avro` or `json` ({what} has {})",
                            format.name()
                        ),
                    );
                    converters_ok = false;
                }
            }
            if schemas_enable[i] && format != Format::Json {
                self.err(at, format!("{what}: `{side}_schemas_enable` is an option of `{side}_format: json` (it has {})", format.name()));
                converters_ok = false;
            }
        }
        if !converters_ok {
            return None;
        }
        let [key_schema, value_schema] = schemas;
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (source, node.to_json().to_string()).hash(&mut h);
            h.finish()
        };
        let plan = ConnectorPlan {
            fingerprint,
            name: name.to_string(),
            type_name,
            topics: topics.iter().map(|(t, _)| t.clone()).collect(),
            key: SideFormat {
                format: key_format,
                schema: key_schema.map(|(t, _)| t),
                schemas_enable: schemas_enable[0],
            },
            value: SideFormat {
                format: value_format,
                schema: value_schema.clone().map(|(t, _)| t),
                schemas_enable: schemas_enable[1],
            },
            tasks,
            errors,
            restart,
            settings,
            value_schema_pos: value_schema.map(|(_, p)| p),
            transforms,
            exactly_once,
        };
        Some((plan, topics))
    }
}

impl Checker<'_> {
    /// `restart: { max_attempts, initial_backoff, max_backoff }`: how a failed task is
    /// restarted by itself.
    fn restart_policy(&mut self, node: &Node, what: &str) -> RestartPolicy {
        let mut p = RestartPolicy::default();
        for (k, v, _) in self.mapping(
            node,
            what,
            Some(&["max_attempts", "initial_backoff", "max_backoff"]),
        ) {
            match k {
                "max_attempts" => {
                    if let Some(n) = self.int(v, "`max_attempts`", 0, 1_000_000) {
                        p.max_attempts = n as u32;
                    }
                }
                "initial_backoff" | "max_backoff" => match v.as_str().and_then(parse_duration) {
                    Some(d) if k == "initial_backoff" => p.initial_backoff = d,
                    Some(d) => p.max_backoff = d,
                    None => self.err(
                        v.pos,
                        format!(
                            "`{k}` must be a duration such as 500ms, 10s or 5m, found {}",
                            v.shown()
                        ),
                    ),
                },
                _ => {}
            }
        }
        if p.initial_backoff > p.max_backoff {
            self.err(
                node.pos,
                format!(
                    "{what}: `initial_backoff` ({:?}) is longer than `max_backoff` ({:?})",
                    p.initial_backoff, p.max_backoff
                ),
            );
        }
        p
    }
}

/// A sink's reader schema against the schema of each source in the file that writes a topic
/// it reads: a pair Avro cannot resolve fails now, not at the first record.
pub(super) fn check_reader_schemas(c: &mut Checker<'_>, pipeline: &Pipeline) {
    for sink in &pipeline.sinks {
        let (Some(reader_text), Some(pos)) = (&sink.value.schema, sink.value_schema_pos) else {
            continue;
        };
        let Ok(reader) = apache_avro::Schema::parse_str(reader_text) else {
            continue; // reported where it stands
        };
        for source in &pipeline.sources {
            let Some(writer_text) = &source.value.schema else {
                continue;
            };
            if !sink.topics.contains(&source.topics[0]) {
                continue;
            }
            let Ok(writer) = apache_avro::Schema::parse_str(writer_text) else {
                continue;
            };
            let problems = sluice_schema_registry::compat::incompatibilities(&reader, &writer);
            if !problems.is_empty() {
                let why: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                c.err(
                    pos,
                    format!(
                        "sink `{}`: its `value_schema` cannot read the values source `{}` writes to `{}`: {}",
                        sink.name,
                        source.name,
                        source.topics[0],
                        why.join("; ")
                    ),
                );
            }
        }
    }
}

/// Where the setting at a dotted path (`batch.max_records`) is written: its key, or the
/// closest enclosing key when the path goes deeper than the file does.
fn setting_position(settings: &BTreeMap<String, (Pos, &Node)>, path: &str) -> Option<Pos> {
    let mut parts = path.split('.');
    let (mut pos, mut node) = *settings.get(parts.next()?)?;
    let mut rest: Vec<&str> = parts.collect();
    while !rest.is_empty() {
        let Some(entries) = node.as_map() else { break };
        // A name in a map (an HTTP header) may hold dots: the longest key that matches wins.
        let found = (1..=rest.len()).rev().find_map(|n| {
            let key = rest[..n].join(".");
            entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key.as_str()))
                .map(|(k, v)| (n, k.pos, v))
        });
        let Some((n, kpos, v)) = found else { break };
        pos = kpos;
        node = v;
        rest.drain(..n);
    }
    Some(pos)
}

use serde_json::json;
use sluice_connector_sdk::config::{ConfigSpec, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::ConnectorError;
use sluice_connector_sdk::registry::{ConnectorRegistry, ConnectorType, Factory, Origin};

use super::*;

/// Connector types with realistic specs; never built in these tests.
pub(crate) fn test_registry() -> ConnectorRegistry {
    let mut r = ConnectorRegistry::new();
    let spec = |fields: Vec<FieldSpec>| ConfigSpec::new(fields);
    r.register(ConnectorType {
        name: "file".into(),
        description: "reads files".into(),
        config: spec(vec![
            FieldSpec::required("path", FieldKind::String, "a glob of files to follow"),
            FieldSpec::optional(
                "format",
                FieldKind::OneOf(vec!["lines".into(), "json".into(), "csv".into()]),
                Some(json!("lines")),
                "how lines are read",
            ),
            FieldSpec::optional("token", FieldKind::Secret, None, "a secret, for the tests"),
        ]),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|_| {
            Err(ConnectorError::fatal("not built in tests"))
        })),
    })
    .unwrap();
    r.register(ConnectorType {
        name: "file".into(),
        description: "writes files".into(),
        config: spec(vec![
            FieldSpec::required("path", FieldKind::String, "the folder to write in"),
            FieldSpec::optional(
                "roll_size",
                FieldKind::Integer {
                    min: 1,
                    max: i64::MAX,
                },
                Some(json!(104857600)),
                "bytes per file",
            ),
        ]),
        origin: Origin::BuiltIn,
        factory: Factory::Sink(Box::new(|_| {
            Err(ConnectorError::fatal("not built in tests"))
        })),
    })
    .unwrap();
    // The real HTTP sink, for settings nested in maps (`batch.max_records`).
    sluice_connector_http::register(&mut r).unwrap();
    sluice_connector_postgres::register(&mut r).unwrap();
    r
}

fn env(name: &str) -> Option<String> {
    (name == "API_TOKEN").then(|| "t0ps3cret".to_string())
}

fn fixtures(kind: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn every_valid_fixture_validates() {
    let registry = test_registry();
    for path in fixtures("valid") {
        if let Err(e) = load_pipeline(&path, &registry, &env) {
            panic!("{} should be valid:\n{e}", path.display());
        }
    }
}

#[test]
fn every_invalid_fixture_fails_with_exactly_its_expected_errors() {
    let registry = test_registry();
    for path in fixtures("invalid") {
        let expected = std::fs::read_to_string(path.with_extension("errors"))
            .unwrap_or_else(|_| panic!("{} needs a .errors file", path.display()));
        let err = load_pipeline(&path, &registry, &env)
            .expect_err(&format!("{} should be invalid", path.display()));
        let got: Vec<String> = err
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.pos, e.message))
            .collect();
        let want: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(got, want, "{}", path.display());
        assert!(
            !err.to_string().contains("t0ps3cret"),
            "a secret leaked into an error"
        );
    }
}

#[test]
fn the_checked_pipeline_carries_everything_the_runtime_needs() {
    let text = r#"
runtime:
  data_dir: /var/lib/sluice
  broker: { listen: "127.0.0.1:9092" }
topics:
  orders: { partitions: 3, config: { retention.ms: 86400000, cleanup.policy: compact } }
sources:
  orders_in:
    type: file
    topic: orders
    value_format: json
    path: /in/*.json
    token: ${env:API_TOKEN}
    errors: { tolerance: all, dead_letter_topic: orders-dlq, retry_timeout: 1m }
    restart: { max_attempts: 3, initial_backoff: 250ms }
sinks:
  orders_out: { type: file, topics: [orders], value_format: avro, path: /out, tasks: 2 }
"#;
    let p = parse_pipeline(text, &test_registry(), &env).unwrap();
    assert_eq!(p.data_dir, PathBuf::from("/var/lib/sluice"));
    assert_eq!(
        p.broker,
        Some(crate::config::BrokerListener {
            listen: "127.0.0.1:9092".parse().unwrap(),
            advertised: None,
            unauthenticated: false,
        })
    );
    let (partitions, config) = &p.topics["orders"];
    assert_eq!((*partitions, config.retention_ms), (3, 86_400_000));
    let src = &p.sources[0];
    assert_eq!(
        (src.topics.clone(), src.value.format, src.key.format),
        (vec!["orders".to_string()], Format::Json, Format::Bytes)
    );
    assert_eq!(
        src.settings.str("format"),
        Some("lines"),
        "connector defaults filled in"
    );
    assert_eq!(src.settings.str("token"), Some("t0ps3cret"));
    assert!(
        !format!("{:?}", src.settings).contains("t0ps3cret"),
        "secrets hidden in Debug"
    );
    assert!(src.errors.tolerate_all && src.errors.retry_timeout == Duration::from_secs(60));
    assert_eq!(p.sinks[0].tasks, 2);
    assert_eq!(
        (
            src.restart.max_attempts,
            src.restart.initial_backoff,
            src.restart.max_backoff
        ),
        (3, Duration::from_millis(250), Duration::from_secs(60)),
        "unset restart settings keep their defaults"
    );
    assert_eq!(p.sinks[0].restart, crate::config::RestartPolicy::default());
    let rest = p.rest.expect("the REST API is on by default");
    assert_eq!(rest.listen, "127.0.0.1:8083".parse().unwrap());
    let off = parse_pipeline(
        "runtime: { rest: { enabled: false } }\nsources: { s: { type: file, topic: t, path: /in } }\nsinks: {}\n",
        &test_registry(),
        &env,
    )
    .unwrap();
    assert!(off.rest.is_none());
}

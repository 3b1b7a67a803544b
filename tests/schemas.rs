//! `sluice run` with schemas end to end: Avro keys and values registered under the topic's
//! subjects, a sink reading with its own reader schema and writing Avro container files
//! (read back with `apache-avro`), and JSON with Kafka Connect's schema envelope.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use support::{binary, consume_topic, start, stop};

/// Every record of every finished `.avro` file under `dir/out`, in file-name order, with the
/// schema of each file.
fn avro_records(dir: &Path) -> (Vec<Value>, Vec<String>) {
    let out = dir.join("out");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".avro"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let (mut records, mut schemas) = (Vec::new(), Vec::new());
    for n in names {
        let bytes = std::fs::read(out.join(&n)).unwrap();
        let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
        schemas.push(reader.writer_schema().canonical_form());
        records.extend(reader.map(|r| r.unwrap()));
    }
    (records, schemas)
}

fn wait_for_avro(dir: &Path, n: usize) -> (Vec<Value>, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = avro_records(dir);
        if got.0.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    match record {
        Value::Record(fields) => &fields.iter().find(|(n, _)| n == name).unwrap().1,
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn avro_keys_and_values_reach_avro_files_resolved_to_the_sinks_reader_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let yaml = format!(
        r#"
runtime: {{ data_dir: {d}/data }}
sources:
  orders_in:
    type: file
    topic: orders
    path: {d}/in/*.json
    poll_interval: 50ms
    transforms:
      - {{ type: value_to_key, fields: [id] }}
    key_format: avro
    key_schema: '{{"type": "record", "name": "OrderKey", "fields": [{{"name": "id", "type": "long"}}]}}'
    value_format: avro
    value_schema: '{{"type": "record", "name": "Order", "fields": [{{"name": "id", "type": "long"}}, {{"name": "sku", "type": "string"}}, {{"name": "qty", "type": "int"}}]}}'
sinks:
  orders_out:
    type: file
    topics: [orders]
    format: avro
    key_format: avro
    value_format: avro
    # Drops `sku`, promotes `qty` to long, adds `currency` with its default.
    value_schema: '{{"type": "record", "name": "Order", "fields": [{{"name": "id", "type": "long"}}, {{"name": "qty", "type": "long"}}, {{"name": "currency", "type": "string", "default": "EUR"}}]}}'
    path: {d}/out
    roll_interval: 200ms
"#,
        d = dir.display()
    );
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let lines: String = (0..500)
        .map(|i| format!("{{\"id\": {i}, \"sku\": \"s-{i}\", \"qty\": {}}}\n", i % 7))
        .collect();
    std::fs::write(dir.join("in/orders.json"), lines).unwrap();
    let run = start(&file);
    let (records, schemas) = wait_for_avro(dir, 500);
    stop(run);
    assert_eq!(records.len(), 500);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(field(r, "id"), &Value::Long(i as i64));
        assert_eq!(field(r, "qty"), &Value::Long((i % 7) as i64));
        assert_eq!(field(r, "currency"), &Value::String("EUR".into()));
        assert!(
            matches!(r, Value::Record(f) if f.len() == 3),
            "sku is gone: {r:?}"
        );
    }
    assert!(
        schemas.iter().all(|s| s.contains("currency")),
        "{schemas:?}"
    );

    // Keys on the topic are Confluent-framed Avro too (magic byte 0, then a schema id).
    let out = std::process::Command::new(binary())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["consume", "orders", "--from-beginning", "--exit-at-end"])
        .args(["--max-messages", "1", "--print-key", "--key-separator", "|"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout[0], 0, "the key starts with the magic byte");
    assert!(
        out.stdout[5..].starts_with(&[0]),
        "then the Avro long 0 (id of the first order): {:?}",
        &out.stdout[..8]
    );
}

#[test]
fn json_with_connects_schema_envelope_round_trips_and_plain_json_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let yaml = format!(
        r#"
runtime: {{ data_dir: {d}/data }}
sources:
  events_in:
    type: file
    topic: events
    path: {d}/in/*.json
    poll_interval: 50ms
    value_format: json
    value_schemas_enable: true
    value_schema: '{{"type": "record", "name": "shop.Event", "fields": [{{"name": "kind", "type": "string"}}, {{"name": "at", "type": {{"type": "long", "logicalType": "timestamp-millis"}}}}, {{"name": "note", "type": ["null", "string"], "default": null}}]}}'
    errors: {{ tolerance: all, dead_letter_topic: events-dlq }}
  plain_in:
    type: file
    topic: events
    path: {d}/in/*.plain
    poll_interval: 50ms
    value_format: json
sinks:
  events_out:
    type: file
    topics: [events]
    format: avro
    value_format: json
    value_schemas_enable: true
    path: {d}/out
    roll_interval: 200ms
    errors: {{ tolerance: all, dead_letter_topic: events-out-dlq }}
"#,
        d = dir.display()
    );
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    std::fs::write(
        dir.join("in/e.json"),
        "{\"kind\": \"click\", \"at\": 1700000000000}\n{\"kind\": 5, \"at\": 1}\n{\"kind\": \"view\", \"at\": 1700000000001, \"note\": \"n\"}\n",
    )
    .unwrap();
    std::fs::write(dir.join("in/p.plain"), "{\"kind\": \"raw\"}\n").unwrap();
    let run = start(&file);
    let (records, schemas) = wait_for_avro(dir, 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = Vec::new();
    while refused.is_empty() && Instant::now() < deadline {
        refused = consume_topic(dir, "events-out-dlq");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(run);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(field(&records[0], "kind"), &Value::String("click".into()));
    assert_eq!(
        field(&records[0], "at"),
        &Value::TimestampMillis(1_700_000_000_000),
        "the envelope's Timestamp became timestamp-millis"
    );
    assert_eq!(
        field(&records[1], "note"),
        &Value::Union(1, Box::new(Value::String("n".into())))
    );
    assert!(schemas[0].contains("shop.Event"), "{schemas:?}");

    // On the topic: Kafka Connect's envelope, as JsonConverter with schemas.enable writes it.
    let stored = consume_topic(dir, "events");
    let first: serde_json::Value = stored
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .find(|v: &serde_json::Value| v["payload"]["kind"] == "click")
        .unwrap_or_else(|| panic!("no click in {stored:?}"));
    assert_eq!(first["schema"]["type"], "struct");
    assert_eq!(first["schema"]["name"], "shop.Event");
    assert_eq!(
        first["schema"]["fields"][1]["name"],
        "org.apache.kafka.connect.data.Timestamp"
    );
    assert_eq!(first["payload"]["kind"], "click");
    // The value that does not fit the declared schema never reached the topic.
    assert_eq!(
        consume_topic(dir, "events-dlq"),
        vec!["{\"kind\": 5, \"at\": 1}".to_string()]
    );
    // Plain JSON read with `value_schemas_enable` is refused, and says how to fix it.
    assert_eq!(refused, vec!["{\"kind\": \"raw\"}".to_string()]);
}

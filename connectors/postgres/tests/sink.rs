//! The `postgres` sink task against a real PostgreSQL server, driven as the runtime drives
//! it (open, put, flush, take_refused): inserts, upserts keeping the last change per key,
//! deletes by tombstone, a record Postgres refuses narrowed down while its neighbours land,
//! fields without a column refused, positions read back on open, and a zombie fenced out.

#[path = "../../../tests/support/pg.rs"]
mod pg;

use std::sync::Arc;

use serde_json::json;
use sluice_connector_postgres::sink::settings::checked;
use sluice_connector_postgres::sink::task::PostgresSinkTask;
use sluice_connector_sdk::connector::{ErrorKind, SinkRecord, SinkTask, TaskInfo, TopicPartition};
use sluice_connector_sdk::data::Payload;

fn record(offset: i64, key: serde_json::Value, value: Option<serde_json::Value>) -> SinkRecord {
    SinkRecord {
        topic: Arc::from("orders"),
        partition: 0,
        offset,
        timestamp: 0,
        key: Some(Payload::Raw(key.to_string().into())),
        value: value.map(|v| Payload::Raw(v.to_string().into())),
        headers: Vec::new(),
        key_schema: None,
        value_schema: None,
    }
}

fn task(server: &pg::PgServer, extra: serde_json::Value) -> PostgresSinkTask {
    let mut settings = json!({
        "connection": server.connection("postgres"),
        "insert_mode": "upsert",
        "pk_mode": "record_key",
        "delete_enabled": true,
        // Each flush writes at once, so that the test sees its rows after it.
        "batch_linger": "0ms",
    });
    settings
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let info = TaskInfo {
        connector: "replica".into(),
        task: 0,
        tasks: 1,
    };
    PostgresSinkTask::new(info, checked(settings).unwrap()).unwrap()
}

fn tp() -> Vec<TopicPartition> {
    vec![TopicPartition {
        topic: "orders".into(),
        partition: 0,
    }]
}

/// One server for the file; each part its own tables.
#[test]
fn the_sink_against_a_real_server() {
    let server = pg::PgServer::start();
    rows_are_upserted_deleted_and_refused_exactly_once(&server);
    change_events_create_widen_and_apply(&server);
    copy_and_statements_agree(&server);
    a_batch_lost_in_flight_is_written_again_once(&server);
}

/// A full batch is written while the task goes on; when its connection is cut before it
/// commits, the next flush says so (retriable), and the one after writes those records
/// again with the ones put since, once each.
fn a_batch_lost_in_flight_is_written_again_once(server: &pg::PgServer) {
    server.psql("CREATE TABLE inflight (id bigint PRIMARY KEY)");
    let mut t = task(
        server,
        json!({"table": "inflight", "insert_mode": "insert", "pk_mode": "none",
               "delete_enabled": false, "batch_size": 20}),
    );
    t.open(tp()).unwrap();
    // Another session holds the table: the batch waits for its lock, in flight.
    let mut holder = std::process::Command::new("psql")
        .arg(server.connection("postgres"))
        .args([
            "-X",
            "-q",
            "-c",
            "BEGIN; LOCK TABLE inflight; SELECT pg_sleep(60); COMMIT",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waiting = || {
        server.psql(
            "SELECT count(*) FROM pg_locks WHERE relation = 'inflight'::regclass AND NOT granted",
        )
    };
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "waiting for {what}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let held = || {
        server
            .psql("SELECT count(*) FROM pg_locks WHERE relation = 'inflight'::regclass AND granted")
    };
    until("the lock", &|| held() == "1");
    let batch: Vec<SinkRecord> = (0..20)
        .map(|n| record(n, json!(null), Some(json!({"id": n}))))
        .collect();
    t.put(&batch).unwrap();
    assert_eq!(t.flush().unwrap(), vec![], "sent, not committed");
    until("the batch to wait for the lock", &|| waiting() == "1");
    server.psql("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE relation = 'inflight'::regclass AND NOT granted");
    let more: Vec<SinkRecord> = (20..25)
        .map(|n| record(n, json!(null), Some(json!({"id": n}))))
        .collect();
    t.put(&more).unwrap();
    let e = t.flush().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Retriable, "{e:?}");
    // The table is let go (its holder's session ended).
    server.psql("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE relation = 'inflight'::regclass AND granted");
    let _ = holder.wait();
    let sent = t.flush().unwrap();
    assert!(
        sent.is_empty() || sent == vec![(tp()[0].clone(), 25)],
        "{sent:?}"
    );
    assert_eq!(t.flush().unwrap(), vec![(tp()[0].clone(), 25)]);
    assert_eq!(
        server.psql("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM inflight"),
        "25|25|0|24"
    );
}

fn rows_are_upserted_deleted_and_refused_exactly_once(server: &pg::PgServer) {
    server.psql("CREATE TABLE orders (id bigint PRIMARY KEY, note text NOT NULL, qty integer CHECK (qty >= 0))");
    let mut t = task(server, json!({}));
    assert!(t.open(tp()).unwrap().is_empty(), "nothing stored yet");
    t.put(&[
        record(
            0,
            json!({"id": 1}),
            Some(json!({"note": "first", "qty": 1})),
        ),
        record(1, json!({"id": 2}), Some(json!({"note": "two", "qty": 2}))),
        record(2, json!({"id": 1}), Some(json!({"note": "last", "qty": 3}))),
        record(
            3,
            json!({"id": 3}),
            Some(json!({"note": "three", "qty": -5})),
        ), // violates the CHECK
        record(4, json!({"id": 2}), None), // deletes id 2
        record(
            5,
            json!({"id": 4}),
            Some(json!({"note": "four", "colour": "red"})),
        ), // no such column
    ])
    .unwrap();
    let committed = t.flush().unwrap();
    assert_eq!(committed, vec![(tp()[0].clone(), 6)]);
    assert_eq!(
        server.psql("SELECT id, note, qty FROM orders ORDER BY id"),
        "1|last|3"
    );
    let refused = t.take_refused();
    let why: Vec<(i64, String)> = refused
        .iter()
        .map(|r| (r.offset, r.reason.clone()))
        .collect();
    assert_eq!(why.len(), 2, "{why:?}");
    assert_eq!(why[0].0, 5);
    assert!(
        why[0].1.contains("no column for field(s) `colour`"),
        "{why:?}"
    );
    assert_eq!(why[1].0, 3);
    assert!(
        why[1].1.contains("orders_qty_check") && why[1].1.contains("23514"),
        "{why:?}"
    );
    assert_eq!(
        server.psql("SELECT next_offset FROM sluice_offsets WHERE connector = 'replica'"),
        "6"
    );

    // A record that is not a row is refused at put, for the error policy, and nothing of
    // that put is kept (the runtime puts the records again one by one).
    let e = t
        .put(&[
            record(
                6,
                json!({"id": 8}),
                Some(json!({"note": "kept?", "qty": 1})),
            ),
            record(7, json!({"id": 9}), Some(json!([1, 2]))),
        ])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRecord);
    assert!(
        e.message
            .contains("offset 7: the value is not a JSON object"),
        "{e}"
    );
    assert_eq!(
        t.flush().unwrap(),
        vec![(tp()[0].clone(), 6)],
        "the failed put took nothing"
    );
    assert_eq!(server.psql("SELECT count(*) FROM orders WHERE id = 8"), "0");

    // A successor takes over: it resumes at the stored position, and the first task,
    // now a zombie, cannot commit.
    let mut successor = task(server, json!({}));
    assert_eq!(successor.open(tp()).unwrap(), vec![(tp()[0].clone(), 6)]);
    t.put(&[record(
        7,
        json!({"id": 7}),
        Some(json!({"note": "zombie", "qty": 1})),
    )])
    .unwrap();
    let fenced = t.flush().unwrap_err();
    assert!(
        fenced
            .message
            .contains("a newer task (epoch 2) has taken over"),
        "{fenced}"
    );
    assert_eq!(
        server.psql("SELECT count(*) FROM orders WHERE id = 7"),
        "0",
        "the zombie wrote nothing"
    );
    successor
        .put(&[record(
            6,
            json!({"id": 1}),
            Some(json!({"note": "again", "qty": 4})),
        )])
        .unwrap();
    successor.flush().unwrap();
    assert_eq!(server.psql("SELECT note FROM orders WHERE id = 1"), "again");

    // Fields are typed by the table's columns.
    server.psql("CREATE TABLE typed (id bigint PRIMARY KEY, at timestamptz, doc jsonb, price numeric(10,2), tags text[])");
    let mut typed = task(server, json!({"table": "typed"}));
    typed.open(tp()).unwrap();
    typed
        .put(&[record(
            0,
            json!({"id": 1}),
            Some(json!({"at": "2026-12-04T10:00:00Z", "doc": {"a": [1, 2]}, "price": 12.5, "tags": ["x", "y"]})),
        )])
        .unwrap();
    typed.flush().unwrap();
    assert_eq!(
        server.psql("SELECT at AT TIME ZONE 'UTC', doc->'a'->>1, price, tags[2] FROM typed"),
        "2026-12-04 10:00:00|2|12.50|y"
    );

    // The runtime closes partitions before its last flush: closing applies what is
    // pending together with its positions.
    typed
        .put(&[record(1, json!({"id": 2}), Some(json!({"price": 1})))])
        .unwrap();
    typed.close(tp()).unwrap();
    assert_eq!(server.psql("SELECT count(*) FROM typed"), "2");
    assert_eq!(
        server.psql("SELECT next_offset FROM sluice_offsets WHERE connector = 'replica'"),
        "2",
        "the rows and their position together"
    );

    // A missing table stops the task, saying what to do.
    let mut other = task(server, json!({"table": "nowhere"}));
    other.open(tp()).unwrap();
    other
        .put(&[record(8, json!({"id": 1}), Some(json!({"note": "x"})))])
        .unwrap();
    let e = other.flush().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fatal);
    assert!(
        e.message.contains("table nowhere does not exist") && e.message.contains("auto_create"),
        "{e}"
    );
    // auto_create needs a schema to create from; plain JSON has none.
    let mut blind = task(server, json!({"table": "nowhere", "auto_create": true}));
    blind.open(tp()).unwrap();
    blind
        .put(&[record(8, json!({"id": 1}), Some(json!({"note": "x"})))])
        .unwrap();
    let e = blind.flush().unwrap_err();
    assert!(
        e.message.contains("needs records that carry a schema"),
        "{e}"
    );
    assert_eq!(server.psql("SELECT to_regclass('nowhere') IS NULL"), "t");
}

/// The value schema `postgres_cdc` registers for a table (Debezium's envelope, `after` by
/// reference), with `extra` fields appended to the row.
fn envelope_schema(extra: serde_json::Value) -> Arc<str> {
    let mut fields = json!([
        {"name": "id", "type": "int"},
        {"name": "price", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2,
            "connect.name": "org.apache.kafka.connect.data.Decimal", "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"}}], "default": null},
        {"name": "amount", "type": ["null", {"type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
            "connect.name": "io.debezium.data.VariableScaleDecimal", "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}]}], "default": null},
        {"name": "at", "type": ["null", {"type": "long", "connect.name": "io.debezium.time.MicroTimestamp"}], "default": null},
        {"name": "at_tz", "type": ["null", {"type": "string", "connect.name": "io.debezium.time.ZonedTimestamp"}], "default": null},
        {"name": "day", "type": ["null", {"type": "int", "connect.name": "io.debezium.time.Date"}], "default": null},
        {"name": "clock", "type": ["null", {"type": "long", "connect.name": "io.debezium.time.MicroTime"}], "default": null},
        {"name": "took", "type": ["null", {"type": "long", "connect.name": "io.debezium.time.MicroDuration"}], "default": null},
        {"name": "doc", "type": ["null", {"type": "string", "connect.name": "io.debezium.data.Json"}], "default": null},
        {"name": "uid", "type": ["null", {"type": "string", "connect.name": "io.debezium.data.Uuid"}], "default": null},
        {"name": "tags", "type": ["null", {"type": "array", "items": ["null", "string"]}], "default": null},
        {"name": "raw", "type": ["null", "bytes"], "default": null},
        {"name": "big", "type": ["null", "string"], "default": null}
    ]);
    fields
        .as_array_mut()
        .unwrap()
        .extend(extra.as_array().unwrap().clone());
    let schema = json!({"type": "record", "name": "Envelope", "namespace": "shop.public.orders", "fields": [
        {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": fields}], "default": null},
        {"name": "after", "type": ["null", "Value"], "default": null},
        {"name": "source", "type": {"type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
            "fields": [{"name": "schema", "type": "string"}, {"name": "table", "type": "string"}]}},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"], "default": null}
    ]});
    Arc::from(schema.to_string())
}

fn event(
    offset: i64,
    id: i64,
    op: &str,
    after: serde_json::Value,
    schema: &Arc<str>,
    unavailable: &[&str],
) -> SinkRecord {
    let before = if op == "d" {
        json!({"id": id})
    } else {
        serde_json::Value::Null
    };
    let mut r = record(
        offset,
        json!({"id": id}),
        Some(
            json!({"before": before, "after": after, "op": op, "ts_ms": 1,
            "source": {"schema": "public", "table": "orders"}}),
        ),
    );
    r.topic = Arc::from("shop.public.orders");
    r.value_schema = Some(schema.clone());
    r.key_schema = Some(Arc::from(
        json!({"type": "record", "name": "Key", "fields": [{"name": "id", "type": "int"}]})
            .to_string(),
    ));
    if !unavailable.is_empty() {
        r.headers.push((
            "sluice.unavailable".into(),
            serde_json::to_vec(unavailable).unwrap(),
        ));
    }
    r
}

fn change_events_create_widen_and_apply(server: &pg::PgServer) {
    server.psql("CREATE SCHEMA mirror");
    let mut t = task(
        server,
        json!({"table": "mirror.${source.table}", "auto_create": true, "auto_evolve": true}),
    );
    let parts = vec![TopicPartition {
        topic: "shop.public.orders".into(),
        partition: 0,
    }];
    t.open(parts.clone()).unwrap();
    let v1 = envelope_schema(json!([]));
    let long_text = "x".repeat(10_000);
    // Bytes as Sluice's Avro decoding writes them in JSON: code points 0-255.
    let full = json!({"id": 1, "price": "\u{30}\u{39}", "amount": {"scale": 3, "value": "\u{ff}\u{0}"},
        "at": 1_764_806_400_123_456i64, "at_tz": "2026-12-04T10:00:00.5Z", "day": 20_426, "clock": 3_723_000_001i64,
        "took": 90_000_000i64, "doc": "{\"a\": [1, 2]}", "uid": "4f1c2d3e-0000-4000-8000-000000000001",
        "tags": ["a", null], "raw": "\u{0}\u{ff}", "big": long_text});
    t.put(&[
        event(0, 1, "r", full.clone(), &v1, &[]),
        event(1, 2, "c", json!({"id": 2, "price": null}), &v1, &[]),
        event(2, 3, "c", json!({"id": 3}), &v1, &[]),
        // An update that did not send the unchanged TOASTed `big`: left as it is.
        event(
            3,
            1,
            "u",
            json!({"id": 1, "price": "\u{0}\u{1}", "big": null}),
            &v1,
            &["big"],
        ),
        event(4, 3, "d", serde_json::Value::Null, &v1, &[]),
    ])
    .unwrap();
    t.flush().unwrap();
    assert!(t.take_refused().is_empty());
    assert_eq!(
        server.psql(
            "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns
             WHERE table_schema = 'mirror' AND table_name = 'orders' ORDER BY ordinal_position"
        ),
        "id integer NO\nprice numeric YES\namount numeric YES\nat timestamp without time zone YES\n\
         at_tz timestamp with time zone YES\nday date YES\nclock time without time zone YES\n\
         took interval YES\ndoc jsonb YES\nuid uuid YES\ntags ARRAY YES\nraw bytea YES\nbig text YES"
    );
    assert_eq!(
        server.psql("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'mirror.orders'::regclass"),
        "PRIMARY KEY (id)"
    );
    assert_eq!(
        server.psql(
            "SET TIME ZONE 'UTC'; SELECT id, price, amount, at, at_tz, day, clock, took, doc->'a'->>1, uid, tags[1], raw, length(big)
             FROM mirror.orders ORDER BY id"
        )
        .trim_start_matches("SET\n"),
        "1|0.01|-0.256|2025-12-04 00:00:00.123456|2026-12-04 10:00:00.5+00|2025-12-04|01:02:03.000001|00:01:30|2|\
         4f1c2d3e-0000-4000-8000-000000000001|a|\\x00ff|10000\n2||||||||||||"
    );

    // A new column in the source (a new schema version): the table is widened.
    let v2 =
        envelope_schema(json!([{"name": "colour", "type": ["null", "string"], "default": null}]));
    t.put(&[
        event(5, 2, "u", json!({"id": 2, "colour": "red"}), &v2, &[]),
        event(6, 0, "t", serde_json::Value::Null, &v2, &[]),
        event(7, 4, "c", json!({"id": 4, "colour": "blue"}), &v2, &[]),
    ])
    .unwrap();
    t.flush().unwrap();
    assert!(t.take_refused().is_empty());
    assert_eq!(
        server.psql("SELECT id, colour FROM mirror.orders ORDER BY id"),
        "4|blue",
        "the truncate emptied the table before id 4 came"
    );
    // Without auto_evolve a new field is refused for the error policy, naming the fix.
    let mut strict = task(server, json!({"table": "mirror.${source.table}"}));
    strict.open(parts.clone()).unwrap();
    let v3 = envelope_schema(json!([{"name": "size", "type": ["null", "int"], "default": null}]));
    strict
        .put(&[event(8, 5, "c", json!({"id": 5, "size": 3}), &v3, &[])])
        .unwrap();
    strict.flush().unwrap();
    let refused = strict.take_refused();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].reason.contains("table mirror.orders has no column for field(s) `size`: add the columns, or set `auto_evolve: true`"),
        "{}",
        refused[0].reason
    );
}

/// A row of every kind of value, awkward text included, for record `n`.
fn awkward(n: i64) -> serde_json::Value {
    let texts = [
        "plain",
        "tab\there",
        "line\nbreak",
        "back\\slash",
        "quote\"s",
        "\\N",
        "",
        "ünï €",
    ];
    json!({
        "note": if n % 9 == 0 { serde_json::Value::Null } else { json!(format!("{} {n}", texts[n as usize % texts.len()])) },
        "qty": n * 3 - 40,
        "price": format!("{}.{:02}", n * 7, n % 100),
        "at": format!("2026-12-{:02}T{:02}:30:00.123456Z", n % 28 + 1, n % 24),
        "doc": match n % 3 { 0 => json!({"k": texts[n as usize % texts.len()], "n": [n, null]}), 1 => json!("a string"), _ => json!(null) },
        "tags": json!([texts[n as usize % texts.len()], null, "x,y", "{z}"]),
        "grid": json!([[n, n + 1], [n + 2, n + 3]]),
        "docs": json!([{"a": n}, null]),
        "raw": format!("\\x{:02x}ff", n % 256),
        "flag": n % 2 == 0,
    })
}

fn copy_and_statements_agree(server: &pg::PgServer) {
    let columns = "id bigint PRIMARY KEY, note text, qty integer CHECK (qty <> 0), price numeric(12,2), \
                   at timestamptz, doc jsonb, tags text[], grid int[], docs jsonb[], raw bytea, flag boolean";
    server.psql(&format!("CREATE TABLE by_copy ({columns})"));
    server.psql(&format!("CREATE TABLE by_statement ({columns})"));
    server.psql(&format!(
        "CREATE TABLE appended ({})",
        columns.replace(" PRIMARY KEY", "")
    ));
    // Keys come back (upserts keep the last), some are deleted (20 in a row at the end, a
    // staged delete), and one row breaks the CHECK.
    let batch: Vec<SinkRecord> = (0..120)
        .map(|n| {
            let id = n % 50;
            let value = if n % 23 == 22 || n >= 100 {
                None
            } else {
                Some(awkward(n))
            };
            record(n, json!({"id": id}), value)
        })
        .collect();
    let broken = batch
        .iter()
        .filter(|r| r.value.is_some())
        .position(|_| true)
        .unwrap();
    assert_eq!(broken, 0);
    // qty = n * 3 - 40 is never 0 (not a multiple of 3): make record 30 break the CHECK.
    let mut batch = batch;
    batch[70].value = Some(Payload::Raw(
        json!({"qty": 0, "note": "breaks the check"})
            .to_string()
            .into(),
    ));
    let mut fast = task(server, json!({"table": "by_copy"}));
    fast.open(tp()).unwrap();
    // Two flushes: the first all through COPY; in the second a bad record sends every
    // record through its own savepoint, and only it is refused.
    fast.put(&batch[..60]).unwrap();
    fast.flush().unwrap();
    assert!(fast.take_refused().is_empty());
    assert!(
        fast.rows_copied() >= 40,
        "the runs went through COPY: {}",
        fast.rows_copied()
    );
    assert_eq!(
        server.psql("SELECT count(*) FROM by_copy WHERE note LIKE 'tab\there%'"),
        "6"
    );
    fast.put(&batch[60..]).unwrap();
    fast.flush().unwrap();
    let refused = fast.take_refused();
    assert_eq!(
        refused.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![70],
        "{refused:?}"
    );
    assert!(
        refused[0].reason.contains("by_copy_qty_check"),
        "{}",
        refused[0].reason
    );
    let mut slow = task(server, json!({"table": "by_statement"}));
    slow.open(tp()).unwrap();
    for r in &batch {
        slow.put(std::slice::from_ref(r)).unwrap();
        slow.flush().unwrap();
    }
    assert_eq!(slow.take_refused().len(), 1);
    let dump = |t: &str| server.psql(&format!("SELECT t.* FROM {t} t ORDER BY id"));
    assert_eq!(
        dump("by_copy"),
        dump("by_statement"),
        "COPY and statements give the same rows"
    );
    assert!(
        server
            .psql("SELECT count(*) FROM by_copy")
            .parse::<i64>()
            .unwrap()
            > 20
    );
    assert_eq!(
        server.psql("SELECT tags[2] IS NULL, tags[3], grid[2][1], docs[1]->>'a' IS NOT NULL, note FROM by_copy WHERE id = 30"),
        "t|x,y|82|t|plain 80"
    );
    // Plain inserts copy into the table itself: every record once, in order.
    let mut inserts = task(
        server,
        json!({"table": "appended", "insert_mode": "insert", "pk_mode": "none", "delete_enabled": false}),
    );
    inserts.open(tp()).unwrap();
    let rows: Vec<SinkRecord> = (0..100)
        .map(|n| {
            record(
                n,
                json!(null),
                Some(json!({"id": n, "note": format!("r{n}")})),
            )
        })
        .collect();
    inserts.put(&rows).unwrap();
    inserts.flush().unwrap();
    assert_eq!(
        server.psql("SELECT count(*), count(DISTINCT id), min(note) FROM appended"),
        "100|100|r0"
    );
    assert_eq!(inserts.rows_copied(), 100);

    // A small batch waits for more (`batch_linger`), reporting what was written before.
    let mut lingering = task(
        server,
        json!({"table": "appended", "insert_mode": "insert", "pk_mode": "none",
        "delete_enabled": false, "batch_linger": "300ms", "batch_size": 50}),
    );
    assert_eq!(lingering.open(tp()).unwrap(), vec![(tp()[0].clone(), 100)]);
    lingering
        .put(&[record(100, json!(null), Some(json!({"id": 100})))])
        .unwrap();
    assert_eq!(lingering.flush().unwrap(), vec![], "nothing written yet");
    assert_eq!(server.psql("SELECT count(*) FROM appended"), "100");
    std::thread::sleep(std::time::Duration::from_millis(350));
    assert_eq!(lingering.flush().unwrap(), vec![(tp()[0].clone(), 101)]);
    assert_eq!(server.psql("SELECT count(*) FROM appended"), "101");
    // A full batch goes at once, written while the task goes on: the flush that sends it
    // may report it or not yet (it is reported once committed), the next one does.
    let fifty: Vec<SinkRecord> = (101..151)
        .map(|n| record(n, json!(null), Some(json!({"id": n}))))
        .collect();
    lingering.put(&fifty).unwrap();
    let sent = lingering.flush().unwrap();
    assert!(
        sent == vec![(tp()[0].clone(), 101)] || sent == vec![(tp()[0].clone(), 151)],
        "{sent:?}"
    );
    assert_eq!(lingering.flush().unwrap(), vec![(tp()[0].clone(), 151)]);
    assert_eq!(server.psql("SELECT count(*) FROM appended"), "151");
}

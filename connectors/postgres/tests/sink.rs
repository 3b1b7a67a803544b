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

#[test]
fn rows_are_upserted_deleted_and_refused_exactly_once() {
    let server = pg::PgServer::start();
    server.psql("CREATE TABLE orders (id bigint PRIMARY KEY, note text NOT NULL, qty integer CHECK (qty >= 0))");
    let mut t = task(&server, json!({}));
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
    let mut successor = task(&server, json!({}));
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
    let mut typed = task(&server, json!({"table": "typed"}));
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
    let mut other = task(&server, json!({"table": "nowhere"}));
    other.open(tp()).unwrap();
    other
        .put(&[record(8, json!({"id": 1}), Some(json!({"note": "x"})))])
        .unwrap();
    let e = other.flush().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fatal);
    assert!(e.message.contains("table nowhere does not exist"), "{e}");
}

//! The `postgres_cdc` source of the real binary against a real PostgreSQL server started
//! here (one server for the file, a database per part):
//! - every mapped type through the snapshot and the stream, checked field by field in
//!   Debezium's JSON envelope; inserts, updates, deletes with tombstones, a primary-key
//!   change, truncate, a multi-row transaction, TOASTed values under DEFAULT and FULL, a
//!   column added mid-stream, and the same table in Avro through the registry;
//! - an idle captured table on a busy server: the slot's confirmed_flush_lsn advances;
//! - `kill -9` of `sluice run` again and again under a random workload: every committed
//!   change once, in order per key;
//! - bad setups (missing table, no replica identity, no REPLICATION, wrong password, a slot
//!   held by another process): each a clear message, nothing changed in the database.

mod support;

#[path = "support/pg.rs"]
mod pg;

#[path = "support/run.rs"]
mod run;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run::start;
use serde_json::{json, Value as Json};
use support::{binary, KillOnDrop, TempData};

/// A record as `sluice consume --print-headers --print-key` shows it.
#[derive(Debug, Clone)]
struct Rec {
    headers: Json,
    key: Json,
    value: Json,
}

fn records(data: &Path, topic: &str) -> Vec<Rec> {
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(data)
        .args([
            "consume",
            topic,
            "--from-beginning",
            "--exit-at-end",
            "--print-key",
            "--print-headers",
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return Vec::new(); // the topic does not exist yet
    }
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let mut next = || {
                let text = parts.next().unwrap_or("null");
                serde_json::from_str(text).unwrap_or(Json::Null)
            };
            Rec {
                headers: next(),
                key: next(),
                value: next(),
            }
        })
        .collect()
}

/// The event: the `payload` of a value in Connect's envelope, or the value (`Null` for a
/// tombstone).
fn payload(r: &Rec) -> &Json {
    match r.value.get("payload") {
        Some(p) if r.value.get("schema").is_some() => p,
        _ => &r.value,
    }
}

fn op(r: &Rec) -> &str {
    payload(r)["op"].as_str().unwrap_or("tombstone")
}

fn cdc_source(conn: &str, name: &str, tables: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    type: postgres_cdc\n    connection: \"{conn}\"\n    tables: [{tables}]\n    topic_prefix: {name}\n    slot: sluice_{name}\n    publication: sluice_{name}\n{extra}"
    )
}

/// One part of the test, on the shared server.
type Part = fn(&pg::PgServer, &Path);

#[test]
fn postgres_cdc_end_to_end() {
    let server = pg::PgServer::start();
    let dir = TempData::new();
    let root = dir.path().parent().unwrap().to_path_buf();
    // SLUICE_CDC_PART=<name> runs one part (when debugging it).
    let only = std::env::var("SLUICE_CDC_PART").ok();
    let parts: [(&str, Part); 4] = [
        ("types", types_snapshot_and_stream),
        ("idle", an_idle_captured_table_does_not_hold_wal),
        ("kill", kill_9_again_and_again_writes_every_change_once),
        ("bad", bad_setups_say_what_to_change_and_change_nothing),
    ];
    for (name, part) in parts {
        if only.as_deref().is_none_or(|o| o == name) {
            part(&server, &root);
        }
    }
}

fn types_snapshot_and_stream(server: &pg::PgServer, root: &Path) {
    server.psql("CREATE DATABASE shop");
    let sql = |s: &str| server.psql_in("shop", s);
    sql("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
         CREATE TABLE everything (
           id serial PRIMARY KEY, small smallint, big bigint, yes boolean, r real, d double precision,
           price numeric(10,2), free numeric, name varchar(20), code char(3), body text, raw bytea,
           day date, at time, at3 time(3), ts timestamp, ts3 timestamp(3), tstz timestamptz, span interval,
           u uuid, j json, jb jsonb, ints integer[], words text[], m mood, p positive)");
    sql("INSERT INTO everything (small, big, yes, r, d, price, free, name, code, body, raw, day, at, at3, ts, ts3, tstz, span, u, j, jb, ints, words, m, p)
         VALUES (-7, 9000000000, true, 1.5, 2.25, 12.34, -0.5, 'name', 'abc', 'body', '\\x00ff', '2026-12-07', '05:11:56.5', '05:11:56.123',
                 '2026-12-07 05:11:56.123456', '2026-12-07 05:11:56.123', '2026-12-07 10:41:56+05:30', '1 day 2 hours',
                 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"k\": 1}', '{\"k\": [1, 2]}', '{1,NULL,3}', '{a,\"b c\"}', 'ok', 5),
                (NULL, NULL, NULL, 'NaN', '-Infinity', NULL, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)");
    sql("CREATE TABLE docs (id int PRIMARY KEY, note text, body text)");
    sql("ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL");

    let data = root.join("shop-data");
    let conn = server.connection("shop");
    let yaml = format!(
        "runtime: {{ data_dir: {}, registry: {{ listen: 127.0.0.1:0 }} }}\nsources:\n{}{}",
        data.display(),
        cdc_source(
            &conn,
            "shop",
            "public.everything, public.docs",
            "    skipped_operations: none\n    key_format: json\n    value_format: json\n    value_schemas_enable: true\n"
        ),
        cdc_source(
            &conn,
            "shopavro",
            "public.everything",
            "    key_format: avro\n    value_format: avro\n"
        ),
    );
    let mut run = start(root, "shop", &yaml);
    let topic = "shop.public.everything";
    run.wait_for("the snapshot", 60, &mut |_| {
        records(&data, topic).len() >= 2
    });
    let snap = records(&data, topic);
    assert_eq!(snap.len(), 2, "two rows, read once");
    let first = payload(&snap[0]);
    assert_eq!(first["op"], "r");
    assert_eq!(first["source"]["snapshot"], "first");
    assert_eq!(payload(&snap[1])["source"]["snapshot"], "last");
    assert_eq!(first["source"]["connector"], "postgresql");
    assert_eq!(first["source"]["db"], "shop");
    assert_eq!(first["source"]["schema"], "public");
    assert_eq!(first["source"]["table"], "everything");
    assert!(first["source"]["lsn"].as_i64().unwrap() > 0);
    assert_eq!(first["before"], Json::Null);
    assert_eq!(snap[0].key, json!({"id": 1}));
    let after = &first["after"];
    // Field by field, as Debezium maps each type.
    let expected = json!({
        "id": 1, "small": -7, "big": 9000000000i64, "yes": true, "r": 1.5, "d": 2.25,
        "price": "BNI=",                                  // 1234 unscaled, scale 2
        "free": {"scale": 1, "value": "+w=="},           // -5, scale 1
        "name": "name", "code": "abc", "body": "body", "raw": "AP8=",
        "day": 20794,                                     // days since 1970-01-01
        "at": 18716500000i64,                             // MicroTime
        "at3": 18716123,                                  // Time (ms)
        "ts": 1796620316123456i64,                        // MicroTimestamp
        "ts3": 1796620316123i64,                          // Timestamp (ms)
        "tstz": "2026-12-07T05:11:56Z",                   // ZonedTimestamp, UTC
        "span": 93600000000i64,                           // MicroDuration
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "j": "{\"k\": 1}", "jb": "{\"k\": [1, 2]}",
        "ints": [1, null, 3], "words": ["a", "b c"], "m": "ok", "p": 5
    });
    for (field, want) in expected.as_object().unwrap() {
        assert_eq!(&after[field], want, "field `{field}` of {after}");
    }
    let second = &payload(&snap[1])["after"];
    assert_eq!(
        second["free"],
        Json::Null,
        "NaN has no precise decimal form"
    );
    assert_eq!(second["d"], Json::Null, "-Infinity has no JSON number");
    // Connect's schema names, as a Debezium consumer reads them.
    let schema = &snap[0].value["schema"];
    assert_eq!(schema["name"], "shop.public.everything.Envelope");
    let after_fields = &schema["fields"][1]["fields"];
    let field_schema = |name: &str| {
        after_fields
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        field_schema("ts")["name"],
        "io.debezium.time.MicroTimestamp"
    );
    assert_eq!(
        field_schema("price")["name"],
        "org.apache.kafka.connect.data.Decimal"
    );
    assert_eq!(field_schema("price")["parameters"]["scale"], "2");
    assert_eq!(
        field_schema("free")["name"],
        "io.debezium.data.VariableScaleDecimal"
    );
    assert_eq!(field_schema("m")["parameters"]["allowed"], "sad,ok,happy");
    assert_eq!(field_schema("jb")["name"], "io.debezium.data.Json");

    // The stream: one statement per transaction unless in BEGIN … COMMIT.
    sql("INSERT INTO everything (id, name) VALUES (10, 'ten')");
    sql("UPDATE everything SET name = 'changed' WHERE id = 1");
    sql("DELETE FROM everything WHERE id = 2");
    sql("BEGIN; INSERT INTO everything (id, name) VALUES (20, 'a'), (21, 'b'); INSERT INTO everything (id, name) VALUES (22, 'c'); COMMIT");
    sql("UPDATE everything SET id = 11 WHERE id = 10");
    sql("TRUNCATE everything");
    run.wait_for("the changes", 60, &mut |_| {
        records(&data, topic).len() >= 2 + 11
    });
    let all = records(&data, topic);
    let changes: Vec<(String, Json)> = all[2..]
        .iter()
        .map(|r| (op(r).to_string(), r.key.clone()))
        .collect();
    assert_eq!(
        changes,
        vec![
            ("c".to_string(), json!({"id": 10})),
            ("u".to_string(), json!({"id": 1})),
            ("d".to_string(), json!({"id": 2})),
            ("tombstone".to_string(), json!({"id": 2})),
            ("c".to_string(), json!({"id": 20})),
            ("c".to_string(), json!({"id": 21})),
            ("c".to_string(), json!({"id": 22})),
            ("d".to_string(), json!({"id": 10})),
            ("tombstone".to_string(), json!({"id": 10})),
            ("c".to_string(), json!({"id": 11})),
            ("t".to_string(), Json::Null),
        ],
        "Debezium's events, in commit order"
    );
    let update = payload(&all[3]);
    assert_eq!(update["after"]["name"], "changed");
    assert_eq!(
        update["before"],
        Json::Null,
        "REPLICA IDENTITY DEFAULT sends no old row"
    );
    let delete = payload(&all[4]);
    assert_eq!(delete["before"]["id"], 2);
    assert_eq!(delete["after"], Json::Null);
    let tx: Vec<&Json> = all[6..9]
        .iter()
        .map(|r| &payload(r)["source"]["txId"])
        .collect();
    assert!(tx[0] == tx[1] && tx[1] == tx[2], "one transaction: {tx:?}");
    assert_ne!(payload(&all[2])["source"]["txId"], *tx[0]);

    // TOAST: an unchanged out-of-line value is not sent under DEFAULT; it is copied from the
    // old row under FULL.
    let big: String = (0..3000)
        .map(|i| format!("{:x}", (i * 7919) % 4093))
        .collect();
    assert!(big.len() > 8000);
    sql(&format!("INSERT INTO docs VALUES (1, 'n0', '{big}')"));
    sql("UPDATE docs SET note = 'n1' WHERE id = 1");
    sql("ALTER TABLE docs REPLICA IDENTITY FULL");
    sql("UPDATE docs SET note = 'n2' WHERE id = 1");
    // A column added mid-stream: a new schema, registered before its first event.
    sql("ALTER TABLE docs ADD COLUMN extra int");
    sql("INSERT INTO docs (id, note, extra) VALUES (2, 'x', 42)");
    let docs = "shop.public.docs";
    run.wait_for("the docs events", 60, &mut |_| {
        records(&data, docs).len() >= 4
    });
    let d = records(&data, docs);
    assert_eq!(
        payload(&d[0])["after"]["body"].as_str().unwrap().len(),
        big.len()
    );
    assert_eq!(payload(&d[1])["after"]["note"], "n1");
    assert_eq!(payload(&d[1])["after"]["body"], Json::Null);
    assert_eq!(
        d[1].headers["sluice.unavailable"],
        json!("[\"body\"]"),
        "{:?}",
        d[1].headers
    );
    assert_eq!(
        payload(&d[2])["after"]["body"].as_str().unwrap(),
        big,
        "FULL: copied from the old row"
    );
    assert_eq!(payload(&d[2])["before"]["note"], "n1", "FULL: the old row");
    assert!(d[2].headers.get("sluice.unavailable").is_none());
    assert_eq!(payload(&d[3])["after"]["extra"], 42);
    let extra_schema = d[3].value["schema"]["fields"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["field"] == "extra");
    assert!(extra_schema, "the new column is in the schema");

    // A transaction of 20,000 rows streams through (it is never held whole).
    sql("INSERT INTO docs (id, note) SELECT g, 'bulk' FROM generate_series(100, 20099) g");
    run.wait_for("the large transaction", 120, &mut |_| {
        records(&data, docs).len() >= 4 + 20_000
    });
    let bulk = records(&data, docs);
    let tx: std::collections::BTreeSet<String> = bulk[4..]
        .iter()
        .map(|r| payload(r)["source"]["txId"].to_string())
        .collect();
    assert_eq!(tx.len(), 1, "one transaction");
    assert_eq!(bulk.len(), 4 + 20_000, "each row once");

    // Postgres restarts: the source retries, resumes where it was, and loses nothing.
    server.restart();
    sql("INSERT INTO docs (id, note) VALUES (3, 'after the restart')");
    run.wait_for("the change after the restart", 120, &mut |_| {
        records(&data, docs).len() > 4 + 20_000
    });
    let after = records(&data, docs);
    assert_eq!(
        after.len(),
        4 + 20_000 + 1,
        "nothing twice across the restart"
    );
    assert_eq!(
        payload(&after[after.len() - 1])["after"]["note"],
        "after the restart"
    );
    let log = run.log();
    assert!(
        log.contains("postgres_cdc: retrying"),
        "the lost connection is logged:\n{log}"
    );

    // The same table in Avro: schemas registered per topic, values decoded by `sluice tap`.
    let avro_topic = "shopavro.public.everything";
    run.wait_for("the avro events", 60, &mut |_| {
        tap(&data, avro_topic).len() >= 2 + 10
    });
    let tapped = tap(&data, avro_topic);
    assert_eq!(
        tapped[0]["value"]["after"]["price"],
        json!("\u{4}\u{d2}"),
        "{}",
        tapped[0]
    );
    assert_eq!(tapped[0]["value"]["op"], "r");
    assert_eq!(tapped[0]["key"]["id"], 1);
    assert_eq!(tapped[2]["value"]["op"], "c");
    run.kill();
}

fn tap(data: &Path, topic: &str) -> Vec<Json> {
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(data)
        .args(["tap", topic, "--from-beginning", "--exit-at-end"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn an_idle_captured_table_does_not_hold_wal(server: &pg::PgServer, root: &Path) {
    server.psql("CREATE DATABASE quiet");
    let sql = |s: &str| server.psql_in("quiet", s);
    sql("CREATE TABLE captured (id int PRIMARY KEY); CREATE TABLE busy (id serial PRIMARY KEY, v text)");
    let data = root.join("quiet-data");
    let yaml = format!(
        "runtime: {{ data_dir: {} }}\nsources:\n{}",
        data.display(),
        cdc_source(
            &server.connection("quiet"),
            "quiet",
            "public.captured",
            "    status_interval: 500ms\n"
        )
    );
    let mut run = start(root, "quiet", &yaml);
    run.wait_for("streaming", 30, &mut |log| {
        log.contains("postgres_cdc: streaming")
    });
    let confirmed = || {
        server.psql("SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'sluice_quiet'")
            .parse::<f64>()
            .unwrap()
    };
    let before = confirmed();
    // Another table (and another database) take writes for a while.
    for i in 0..20 {
        sql(&format!(
            "INSERT INTO busy (v) SELECT repeat('x', 100) FROM generate_series(1, 200) -- {i}"
        ));
        server.psql("SELECT pg_switch_wal() WHERE false");
    }
    let written = server
        .psql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        .parse::<f64>()
        .unwrap();
    run.wait_for(
        "the slot to move past the other table's writes",
        30,
        &mut |_| confirmed() >= written,
    );
    assert!(confirmed() > before);
    assert!(
        records(&data, "quiet.public.captured").is_empty(),
        "nothing captured"
    );
    run.kill();
}

fn kill_9_again_and_again_writes_every_change_once(server: &pg::PgServer, root: &Path) {
    server.psql("CREATE DATABASE load");
    let sql = |s: &str| server.psql_in("load", s);
    // A table big enough that the first kill may land in its snapshot.
    sql("CREATE TABLE acct (id int PRIMARY KEY, n bigint NOT NULL)");
    sql("INSERT INTO acct SELECT g, 0 FROM generate_series(1, 50) g");
    sql("CREATE TABLE log (id bigint PRIMARY KEY, v text)");
    sql("INSERT INTO log SELECT g, 'seed' FROM generate_series(1, 100000) g");
    let data = root.join("load-data");
    let yaml = format!(
        "runtime: {{ data_dir: {} }}\nsources:\n{}",
        data.display(),
        cdc_source(
            &server.connection("load"),
            "load",
            "public.acct, public.log",
            "    key_format: json\n    value_format: json\n"
        )
    );
    // The workload: transactions of 1 to 4 statements, each bumping an account's counter
    // by one and logging a row, written by a psql script while Sluice is killed.
    let mut script = String::new();
    let mut seed: u64 = 7;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let transactions = 1500;
    let mut log_id = 100_000u64;
    for _ in 0..transactions {
        script.push_str("BEGIN;\n");
        for _ in 0..(1 + next() % 4) {
            let acct = 1 + next() % 50;
            log_id += 1;
            script.push_str(&format!(
                "UPDATE acct SET n = n + 1 WHERE id = {acct};\nINSERT INTO log VALUES ({log_id}, 'x');\n"
            ));
        }
        if next() % 10 == 0 {
            script.push_str(&format!(
                "DELETE FROM log WHERE id = {};\n",
                1 + next() % 100_000
            ));
        }
        script.push_str("COMMIT;\n");
    }
    let script_file = root.join("workload.sql");
    std::fs::write(&script_file, script).unwrap();
    let count = |topic: &str| records(&data, topic).len();
    // Killed during the snapshot, then three times while changes stream.
    let mut logs = String::new();
    let mut run = start(root, "load", &yaml);
    // The workload starts once the slot exists (what came before is in the snapshot, as
    // state rather than as events), so every update after it is an event.
    run.wait_for("the slot", 60, &mut |log| log.contains("slot created"));
    let mut workload = KillOnDrop(
        Command::new("psql")
            .arg(server.connection("load"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&script_file)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    run.wait_for("the snapshot to begin", 60, &mut |_| {
        count("load.public.log") > 1000
    });
    logs.push_str(&run.log());
    run.kill();
    for threshold in [30, 300, 900] {
        let mut run = start(root, "load", &yaml);
        run.wait_for("changes to arrive", 120, &mut |_| {
            records(&data, "load.public.acct")
                .iter()
                .filter(|r| op(r) == "u")
                .count()
                >= threshold
        });
        logs.push_str("---- killed\n");
        logs.push_str(&run.log());
        run.kill();
    }
    assert!(workload.0.wait().unwrap().success(), "the workload ran");
    let updates = sql("SELECT sum(n) FROM acct").parse::<usize>().unwrap();
    let run = start(root, "load", &yaml);
    // Until every update is there (or a while has passed: the checks below then say what
    // is missing).
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline
        && records(&data, "load.public.acct")
            .iter()
            .filter(|r| op(r) == "u")
            .count()
            < updates
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1000)); // anything more would be a duplicate
    logs.push_str("---- killed\n");
    logs.push_str(&run.log());
    let log_text: String = logs
        .lines()
        .filter(|l| {
            l.contains("postgres_cdc")
                || l.contains("----")
                || l.contains("WARN")
                || l.contains("ERROR")
        })
        .collect::<Vec<_>>()
        .join("\n");
    run.kill();

    // Each account's updates: n = 1, 2, 3, … exactly, in order.
    let acct = records(&data, "load.public.acct");
    let mut per_key: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    let first_updates: Vec<String> = acct
        .iter()
        .filter(|r| op(r) == "u")
        .take(12)
        .map(|r| {
            format!(
                "{}:{}@{}",
                payload(r)["after"]["id"],
                payload(r)["after"]["n"],
                payload(r)["source"]["lsn"]
            )
        })
        .collect();
    let log_text = format!("{log_text}\nfirst updates: {first_updates:?}");
    for r in acct.iter().filter(|r| op(r) == "u") {
        let p = payload(r);
        per_key
            .entry(p["after"]["id"].as_i64().unwrap())
            .or_default()
            .push(p["after"]["n"].as_i64().unwrap());
    }
    for (id, ns) in &per_key {
        let want: Vec<i64> = (1..=ns.len() as i64).collect();
        assert_eq!(
            ns, &want,
            "account {id}: its updates once each, in commit order; the last run said:\n{log_text}"
        );
    }
    let total: usize = per_key.values().map(Vec::len).sum();
    assert_eq!(
        total, updates,
        "every committed update once; the last run said:\n{log_text}"
    );
    // The log table: every insert once, every delete once, and the events replayed in order
    // give the table as it is (a table whose snapshot was cut short is read again: its `r`
    // events repeat, and changes since the first snapshot's point follow them).
    let log = records(&data, "load.public.log");
    let mut created = std::collections::BTreeSet::new();
    let mut deletes = 0;
    let mut replayed = std::collections::BTreeSet::new();
    for r in &log {
        let p = payload(r);
        match op(r) {
            "c" => {
                let id = p["after"]["id"].as_i64().unwrap();
                assert!(created.insert(id), "an insert twice: {:?}", r.key);
                replayed.insert(id);
            }
            "r" => {
                replayed.insert(p["after"]["id"].as_i64().unwrap());
            }
            "d" => {
                deletes += 1;
                replayed.remove(&p["before"]["id"].as_i64().unwrap());
            }
            _ => {}
        }
    }
    let inserted = log_id as usize - 100_000;
    assert_eq!(created.len(), inserted, "every committed insert once");
    let rows: std::collections::BTreeSet<i64> = sql("SELECT id FROM log")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(
        deletes,
        100_000 + inserted - rows.len(),
        "every committed delete once"
    );
    assert!(replayed == rows, "the events replayed give the table");
}

fn bad_setups_say_what_to_change_and_change_nothing(server: &pg::PgServer, root: &Path) {
    server.psql("CREATE DATABASE bad");
    let sql = |s: &str| server.psql_in("bad", s);
    sql("CREATE TABLE keyless (v text); INSERT INTO keyless VALUES ('a')");
    sql("CREATE TABLE good (id int PRIMARY KEY)");
    sql("CREATE ROLE plain LOGIN PASSWORD 'pw1'");
    sql("CREATE ROLE capture LOGIN REPLICATION PASSWORD 'pw2'");
    sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO plain, capture; GRANT CREATE ON DATABASE bad TO capture");
    server.require_passwords();
    let data = root.join("bad-data");
    let failed = |name: &str, conn: &str, tables: &str, want: &[&str]| {
        let yaml = format!(
            "runtime: {{ data_dir: {} }}\nsources:\n{}",
            data.display(),
            cdc_source(conn, name, tables, "")
        );
        let mut run = start(root, name, &yaml);
        run.wait_for(&format!("{name} to say {want:?}"), 60, &mut |log| {
            want.iter().all(|w| log.contains(w))
        });
        run.kill();
    };
    let trusted = server.connection("bad");
    failed(
        "missing",
        &trusted,
        "public.nothere",
        &["the table public.nothere does not exist"],
    );
    failed(
        "keyless",
        &trusted,
        "public.keyless",
        &[
            "public.keyless has no usable replica identity",
            "REPLICA IDENTITY FULL",
        ],
    );
    failed(
        "noreplication",
        &server.connection_as("bad", "plain", "pw1"),
        "public.good",
        &["may not replicate", "ALTER ROLE \"plain\" REPLICATION"],
    );
    failed(
        "wrongpassword",
        &server.connection_as("bad", "capture", "nope"),
        "public.good",
        &[
            "password authentication failed",
            "check `user` and `password`",
        ],
    );
    // Nothing was created, and the keyless table still takes updates.
    assert_eq!(sql("SELECT count(*) FROM pg_publication"), "0");
    assert_eq!(
        server.psql("SELECT count(*) FROM pg_replication_slots WHERE database = 'bad'"),
        "0"
    );
    sql("UPDATE keyless SET v = 'b'");

    // The right password: SCRAM on both connections, and the stream flows.
    sql("SELECT pg_create_logical_replication_slot('held', 'pgoutput')");
    let mut holder = KillOnDrop(
        Command::new(server.tool("pg_recvlogical"))
            .args([
                "-d",
                &server.connection("bad"),
                "--slot",
                "held",
                "--start",
                "-o",
                "proto_version=1",
                "-o",
                "publication_names=none",
                "-f",
                "/dev/null",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'held'") != "t" {
        assert!(Instant::now() < deadline, "pg_recvlogical holds the slot");
        std::thread::sleep(Duration::from_millis(50));
    }
    let yaml = format!(
        "runtime: {{ data_dir: {} }}\nsources:\n{}",
        data.display(),
        cdc_source(
            &server.connection("bad"),
            "held",
            "public.good",
            "    slot: held\n"
        )
        .replace("    slot: sluice_held\n", "")
    );
    let mut run = start(root, "held", &yaml);
    run.wait_for("the holder to be named", 60, &mut |log| {
        log.contains("the slot `held` is in use by process") && log.contains("pg_recvlogical")
    });
    run.kill();
    let _ = holder.0.kill();
    let _ = holder.0.wait();

    // A user with REPLICATION but not owning the tables: the owner made the publication.
    sql("CREATE PUBLICATION sluice_scram FOR TABLE good");
    let yaml = format!(
        "runtime: {{ data_dir: {} }}\nsources:\n{}",
        data.display(),
        cdc_source(
            &server.connection_as("bad", "capture", "pw2"),
            "scram",
            "public.good",
            "    key_format: json\n"
        )
    );
    let mut run = start(root, "scram", &yaml);
    run.wait_for("streaming with SCRAM", 60, &mut |log| {
        log.contains("postgres_cdc: streaming")
    });
    sql("INSERT INTO good VALUES (7)");
    run.wait_for("the insert", 60, &mut |_| {
        records(&data, "scram.public.good").len() == 1
    });
    assert_eq!(records(&data, "scram.public.good")[0].key, json!({"id": 7}));
    run.kill();
}

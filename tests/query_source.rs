//! The `postgres_query` source of the real binary against a real PostgreSQL server:
//! - `timestamp+incrementing`: a row committed late by a transaction that started first
//!   (its id and timestamp below rows already read) still arrives; `sluice run` killed
//!   with -9 while rows are inserted: every row once, in order;
//! - `incrementing` through the restarts: every row once, in order; `bulk`: the whole
//!   result at every poll;
//! - `timestamp`: groups of rows sharing one timestamp, read in batches smaller than a
//!   few groups, arrive whole and once; timestamps one microsecond apart are told apart.

mod support;

#[path = "support/pg.rs"]
mod pg;

#[path = "support/run.rs"]
mod run;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run::start;
use serde_json::Value as Json;
use support::{binary, KillOnDrop, TempData};

/// The values of a topic so far (none while it does not exist).
fn values(data: &Path, topic: &str) -> Vec<Json> {
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(data)
        .args(["consume", topic, "--from-beginning", "--exit-at-end"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_until(what: &str, timeout_s: u64, done: &mut dyn FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    while !done() {
        assert!(Instant::now() < deadline, "waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postgres_query_reads_every_row_once() {
    let server = pg::PgServer::start();
    let dir = TempData::new();
    let root = dir.path().parent().unwrap().to_path_buf();
    server.psql("CREATE DATABASE shop");
    let sql = |s: &str| server.psql_in("shop", s);
    sql("CREATE TABLE orders (id bigserial PRIMARY KEY, note text, at timestamptz NOT NULL DEFAULT clock_timestamp())");
    sql("INSERT INTO orders (note) SELECT 'seed ' || g FROM generate_series(1, 120) g");
    sql("CREATE TABLE events (n int, at timestamp NOT NULL)");
    // Groups of 5 rows sharing a timestamp, the timestamps 1 µs apart.
    sql("INSERT INTO events SELECT g, timestamp '2026-12-07 10:00:00' + (g / 5) * interval '1 microsecond' FROM generate_series(0, 99) g");
    sql("CREATE TABLE plain (id bigserial PRIMARY KEY, v text)");
    sql("INSERT INTO plain (v) SELECT 'v' || g FROM generate_series(1, 10) g");
    let data = root.join("query-data");
    let yaml = format!(
        "runtime: {{ data_dir: {data} }}\n\
         sources:\n\
         \x20 orders_poll:\n\
         \x20   type: postgres_query\n\
         \x20   connection: \"{c}\"\n\
         \x20   mode: timestamp+incrementing\n\
         \x20   table: public.orders\n\
         \x20   incrementing_column: id\n\
         \x20   timestamp_column: at\n\
         \x20   poll_interval: 200ms\n\
         \x20   batch_max_rows: 50\n\
         \x20   key_columns: [id]\n\
         \x20   topic: orders\n\
         \x20   key_format: json\n\
         \x20   value_format: json\n\
         \x20 events_poll:\n\
         \x20   type: postgres_query\n\
         \x20   connection: \"{c}\"\n\
         \x20   mode: timestamp\n\
         \x20   query: \"SELECT n, at FROM events\"\n\
         \x20   timestamp_column: at\n\
         \x20   poll_interval: 200ms\n\
         \x20   batch_max_rows: 7\n\
         \x20   topic: events\n\
         \x20   value_format: json\n\
         \x20 plain_poll:\n\
         \x20   type: postgres_query\n\
         \x20   connection: \"{c}\"\n\
         \x20   mode: incrementing\n\
         \x20   table: plain\n\
         \x20   incrementing_column: id\n\
         \x20   poll_interval: 200ms\n\
         \x20   batch_max_rows: 4\n\
         \x20   topic: plain\n\
         \x20   value_format: json\n\
         \x20 counts:\n\
         \x20   type: postgres_query\n\
         \x20   connection: \"{c}\"\n\
         \x20   mode: bulk\n\
         \x20   query: \"SELECT count(*)::int AS n FROM plain\"\n\
         \x20   poll_interval: 300ms\n\
         \x20   topic: counts\n\
         \x20   value_format: json\n",
        data = data.display(),
        c = server.connection("shop"),
    );
    let ids = |data: &Path| -> Vec<i64> {
        values(data, "orders")
            .iter()
            .map(|v| v["id"].as_i64().unwrap())
            .collect()
    };
    let mut run = start(&root, "query", &yaml);
    wait_until("the seed rows", 60, &mut || ids(&data).len() >= 120);

    // A transaction that takes its id and timestamp first and commits last.
    let mut slow = KillOnDrop(
        Command::new("psql")
            .arg(server.connection("shop"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = slow.0.stdin.take().unwrap();
    writeln!(stdin, "BEGIN; INSERT INTO orders (note) VALUES ('slow');").unwrap();
    stdin.flush().unwrap();
    wait_until("the slow insert", 30, &mut || {
        sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'") == "1"
    });
    sql("INSERT INTO orders (note) SELECT 'after ' || g FROM generate_series(1, 30) g");
    // Polls pass while the slow one is open; the rows after it wait for it.
    std::thread::sleep(Duration::from_millis(1500));
    writeln!(stdin, "COMMIT;").unwrap();
    drop(stdin);
    assert!(slow.0.wait().unwrap().success());
    wait_until("the slow row", 30, &mut || ids(&data).len() >= 151);

    sql("INSERT INTO plain (v) SELECT 'w' || g FROM generate_series(1, 5) g");

    // Killed while rows are inserted, again and again.
    let mut writer = KillOnDrop(
        Command::new("psql")
            .arg(server.connection("shop"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg("DO $$ BEGIN FOR i IN 1..3000 LOOP INSERT INTO orders (note) VALUES ('load ' || i); COMMIT; IF i % 100 = 0 THEN PERFORM pg_sleep(0.05); END IF; END LOOP; END $$")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for pause_ms in [400u64, 700, 300] {
        std::thread::sleep(Duration::from_millis(pause_ms));
        run.kill();
        run = start(&root, "query", &yaml);
    }
    assert!(writer.0.wait().unwrap().success());
    let total: usize = sql("SELECT count(*) FROM orders").parse().unwrap();
    wait_until("every row", 60, &mut || ids(&data).len() >= total);
    std::thread::sleep(Duration::from_millis(600)); // anything more would be a duplicate
    let log = run.log();
    run.kill();
    let got = ids(&data);
    let mut in_commit_order: Vec<(String, i64)> = sql("SELECT at, id FROM orders")
        .lines()
        .map(|l| {
            let (at, id) = l.split_once('|').unwrap();
            (at.to_string(), id.parse().unwrap())
        })
        .collect();
    in_commit_order.sort();
    let slow_id: i64 = sql("SELECT id FROM orders WHERE note = 'slow'")
        .parse()
        .unwrap();
    assert!(
        got.contains(&slow_id),
        "the row committed late arrived; sluice said:\n{log}"
    );
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "no row twice");
    assert_eq!(got.len(), total, "every row");
    // In (timestamp, id) order, except the late one, which comes when it commits.
    let expected: Vec<i64> = in_commit_order
        .iter()
        .map(|(_, id)| *id)
        .filter(|id| *id != slow_id)
        .collect();
    let without_slow: Vec<i64> = got.iter().copied().filter(|id| *id != slow_id).collect();
    assert_eq!(without_slow, expected, "rows in their order");

    // Mode `timestamp`: every group whole, each row once, through the restarts.
    let events: Vec<i64> = values(&data, "events")
        .iter()
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    let mut sorted = events.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted,
        (0..100).collect::<Vec<i64>>(),
        "every event, 1 µs apart told apart"
    );
    assert_eq!(
        events.len(),
        100,
        "no event twice (the source ran without restarts during them)"
    );
}

//! Replication end to end through the real binary: `postgres_cdc` on one database →
//! topics (Avro, schemas in the registry) → the `postgres` sink into a second database,
//! tables created from the change events' schemas and named by their source. A random
//! workload (inserts, updates, deletes, multi-row transactions, primary-key changes,
//! TOASTed values left unchanged by updates, numerics of every scale, a column added
//! mid-way) runs while `sluice run` is killed with -9 again and again; afterwards the
//! replica's tables equal the source's, row for row.

mod support;

#[path = "support/pg.rs"]
mod pg;

#[path = "support/run.rs"]
mod run;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run::start;
use support::{KillOnDrop, TempData};

/// A deterministic workload: the generator keeps the model of which rows exist, so every
/// statement succeeds.
struct Workload {
    seed: u64,
    orders: BTreeSet<i64>,
    customers: BTreeSet<i64>,
    next_order: i64,
    next_customer: i64,
    colour_added: bool,
}

impl Workload {
    fn next(&mut self) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.seed >> 33
    }

    fn pick(&mut self, of: &BTreeSet<i64>) -> Option<i64> {
        if of.is_empty() {
            return None;
        }
        let at = self.next() as usize % of.len();
        of.iter().nth(at).copied()
    }

    /// A text stored out of line (random hex does not compress below the TOAST target).
    fn big_note(&mut self) -> String {
        let salt = self.next();
        format!("(SELECT string_agg(md5(g::text || '{salt}'), '') FROM generate_series(1, 300) g)")
    }

    fn order_values(&mut self, id: i64) -> String {
        let n = self.next();
        let note = if n.is_multiple_of(4) {
            self.big_note()
        } else {
            format!("'note {n}'")
        };
        let sign = if n.is_multiple_of(7) { "-" } else { "" };
        let total = match n % 5 {
            0 => "NULL".to_string(),
            1 => format!("{}.{:04}", n % 100_000, n % 10_000),
            2 => format!("-0.{:06}", n % 1_000_000),
            3 => format!("{}e18", n % 97),
            _ => format!("{}", n % 1_000),
        };
        format!(
            "{id}, {customer}, {sign}{units}.{cents:02}, {total}, {note}, ARRAY['a{n}', NULL, 'b'], \
             timestamp '2026-01-01 00:00:00' + {micros} * interval '1 microsecond', \
             timestamptz '2026-06-01 12:00:00+02' + {secs} * interval '1 second', \
             '{{\"n\": {n}, \"list\": [1, \"two\", null]}}', date '2000-01-01' + {days}, \
             md5('{n}')::uuid, decode(md5('{n}'), 'hex'), {flag}",
            customer = n % 300,
            units = n % 100_000,
            cents = n % 100,
            micros = n % 1_000_000_000_000,
            secs = n % 100_000_000,
            days = n % 20_000,
            flag = n.is_multiple_of(2),
        )
    }

    fn statement(&mut self) -> String {
        let n = self.next() % 100;
        match n {
            0..=24 => {
                let id = self.next_order;
                self.next_order += 1;
                self.orders.insert(id);
                let values = self.order_values(id);
                if self.colour_added {
                    let colour = ["'red'", "'blue'", "NULL"][self.next() as usize % 3];
                    format!("INSERT INTO orders VALUES ({values}, {colour});")
                } else {
                    format!("INSERT INTO orders VALUES ({values});")
                }
            }
            25..=49 => {
                // Only the amount: an out-of-line note is not sent, and must stay as it is.
                let Some(id) = self.pick(&self.orders.clone()) else {
                    return String::new();
                };
                format!("UPDATE orders SET amount = amount + 1.25 WHERE id = {id};")
            }
            50..=57 => {
                let Some(id) = self.pick(&self.orders.clone()) else {
                    return String::new();
                };
                let note = if self.next().is_multiple_of(2) {
                    self.big_note()
                } else {
                    format!("'short {}'", self.next())
                };
                let colour = if self.colour_added {
                    ", colour = 'green'"
                } else {
                    ""
                };
                format!("UPDATE orders SET note = {note}, flag = NOT flag{colour} WHERE id = {id};")
            }
            58..=65 => {
                let Some(id) = self.pick(&self.orders.clone()) else {
                    return String::new();
                };
                self.orders.remove(&id);
                format!("DELETE FROM orders WHERE id = {id};")
            }
            66..=80 => {
                let id = self.next_customer;
                self.next_customer += 1;
                self.customers.insert(id);
                let score = (self.next() % 1_000_000) as f64 / 7.0;
                format!("INSERT INTO customers VALUES ({id}, 'customer {id}', {score});")
            }
            81..=90 => {
                let Some(id) = self.pick(&self.customers.clone()) else {
                    return String::new();
                };
                format!(
                    "UPDATE customers SET score = score * 1.5, name = name || '+' WHERE id = {id};"
                )
            }
            91..=95 => {
                // A primary-key change: a delete and a create downstream.
                let Some(id) = self.pick(&self.customers.clone()) else {
                    return String::new();
                };
                let new = self.next_customer;
                self.next_customer += 1;
                self.customers.remove(&id);
                self.customers.insert(new);
                format!("UPDATE customers SET id = {new} WHERE id = {id};")
            }
            _ => {
                let Some(id) = self.pick(&self.customers.clone()) else {
                    return String::new();
                };
                self.customers.remove(&id);
                format!("DELETE FROM customers WHERE id = {id};")
            }
        }
    }

    fn script(&mut self, transactions: usize) -> String {
        let mut script = String::new();
        for t in 0..transactions {
            if t == transactions / 2 {
                // A column added mid-way: a new schema version, the replica widened.
                script.push_str("ALTER TABLE orders ADD COLUMN colour text;\n");
                self.colour_added = true;
            }
            script.push_str("BEGIN;\n");
            for _ in 0..(1 + self.next() % 4) {
                script.push_str(&self.statement());
                script.push('\n');
            }
            script.push_str("COMMIT;\n");
            if t % 25 == 24 {
                // Paced, so that the kills come while it runs even on a fast machine.
                script.push_str("SELECT pg_sleep(0.06);\n");
            }
        }
        script
    }
}

#[test]
fn postgres_to_postgres_through_topics_survives_kill_9() {
    let server = pg::PgServer::start();
    let dir = TempData::new();
    let root = dir.path().parent().unwrap().to_path_buf();
    server.psql("CREATE DATABASE src");
    server.psql("CREATE DATABASE dst");
    let src = |s: &str| server.psql_in("src", s);
    let dst = |s: &str| server.psql_in("dst", s);
    src("CREATE TABLE orders (id bigint PRIMARY KEY, customer bigint, amount numeric(12,2), total numeric, \
         note text, tags text[], at timestamp, at_tz timestamptz, doc jsonb, day date, uid uuid, raw bytea, flag boolean)");
    src("CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, score double precision)");
    let mut w = Workload {
        seed: 11,
        orders: BTreeSet::new(),
        customers: BTreeSet::new(),
        next_order: 1,
        next_customer: 1,
        colour_added: false,
    };
    // Rows before the start: they come through the snapshot.
    let mut seed_rows = String::new();
    for _ in 0..400 {
        let id = w.next_order;
        w.next_order += 1;
        w.orders.insert(id);
        seed_rows.push_str(&format!(
            "INSERT INTO orders VALUES ({});\n",
            w.order_values(id)
        ));
    }
    for _ in 0..100 {
        let id = w.next_customer;
        w.next_customer += 1;
        w.customers.insert(id);
        seed_rows.push_str(&format!(
            "INSERT INTO customers VALUES ({id}, 'c{id}', {id}.5);\n"
        ));
    }
    let seed_file = root.join("seed.sql");
    std::fs::write(&seed_file, seed_rows).unwrap();
    let psql_file = |file: &std::path::Path| {
        Command::new("psql")
            .arg(server.connection("src"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(file)
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    assert!(psql_file(&seed_file).wait().unwrap().success());
    let script_file = root.join("replication.sql");
    std::fs::write(&script_file, w.script(3000)).unwrap();

    let data = root.join("replication-data");
    let yaml = format!(
        "runtime: {{ data_dir: {data}, registry: {{ listen: 127.0.0.1:0 }} }}\n\
         sources:\n\
         \x20 shop:\n\
         \x20   type: postgres_cdc\n\
         \x20   connection: \"{src}\"\n\
         \x20   tables: [public.orders, public.customers]\n\
         \x20   topic_prefix: shop\n\
         \x20   key_format: avro\n\
         \x20   value_format: avro\n\
         sinks:\n\
         \x20 replica:\n\
         \x20   type: postgres\n\
         \x20   topics: [shop.public.orders, shop.public.customers]\n\
         \x20   connection: \"{dst}\"\n\
         \x20   table: \"${{source.table}}\"\n\
         \x20   insert_mode: upsert\n\
         \x20   pk_mode: record_key\n\
         \x20   delete_enabled: true\n\
         \x20   auto_create: true\n\
         \x20   auto_evolve: true\n\
         \x20   key_format: avro\n\
         \x20   value_format: avro\n",
        data = data.display(),
        src = server.connection("src"),
        dst = server.connection("dst"),
    );
    let mut logs = String::new();
    let mut run = start(&root, "replication", &yaml);
    run.wait_for("the slot", 60, &mut |log| log.contains("slot created"));
    let mut workload = KillOnDrop(psql_file(&script_file));
    // Killed while the workload runs, at different moments of it.
    let began = Instant::now();
    let mut during = 0;
    for pause_ms in [1500u64, 700, 2500, 1200] {
        std::thread::sleep(Duration::from_millis(pause_ms));
        logs.push_str(&run.log());
        logs.push_str("---- killed\n");
        during += usize::from(workload.0.try_wait().unwrap().is_none());
        run.kill();
        run = start(&root, "replication", &yaml);
    }
    assert!(workload.0.wait().unwrap().success(), "the workload ran");
    eprintln!(
        "the workload ran {:?}; {during} of 4 kills came while it ran",
        began.elapsed()
    );
    assert!(
        during >= 3,
        "the kills came while the workload ran ({during} of 4)"
    );
    let dump = |sql: &dyn Fn(&str) -> String, table: &str| {
        sql(&format!("SELECT t.* FROM {table} t ORDER BY id"))
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let same = || {
        ["orders", "customers"]
            .iter()
            .all(|t| dump(&src, t) == dump(&|s: &str| dst_or_empty(&server, s), t))
    };
    while !same() && Instant::now() < deadline {
        assert!(
            run.process.0.try_wait().unwrap().is_none(),
            "sluice run ended:\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    logs.push_str(&run.log());
    run.kill();
    let notable: String = logs
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("----"))
        .collect::<Vec<_>>()
        .join("\n");
    for table in ["orders", "customers"] {
        let (want, got) = (dump(&src, table), dump(&dst, table));
        if want != got {
            let w: BTreeSet<&str> = want.lines().collect();
            let g: BTreeSet<&str> = got.lines().collect();
            let missing: Vec<&&str> = w.difference(&g).take(3).collect();
            let extra: Vec<&&str> = g.difference(&w).take(3).collect();
            panic!(
                "{table}: the replica differs ({} rows vs {}); missing {missing:?}, extra {extra:?}; sluice said:\n{notable}",
                want.lines().count(),
                got.lines().count()
            );
        }
    }
    // The workload did what it is meant to test.
    assert!(src("SELECT count(*) FROM orders").parse::<i64>().unwrap() > 400);
    assert_eq!(
        dst("SELECT count(*) FROM orders WHERE length(note) > 8000"),
        src("SELECT count(*) FROM orders WHERE length(note) > 8000")
    );
    assert_ne!(
        dst("SELECT count(*) FROM orders WHERE length(note) > 8000"),
        "0"
    );
    assert_eq!(
        dst("SELECT data_type FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'colour'"),
        "text",
        "the replica was widened"
    );
}

/// The replica's dump, empty while the table does not exist yet.
fn dst_or_empty(server: &pg::PgServer, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(server.connection("dst"))
        .args(["-X", "-A", "-t", "-c", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

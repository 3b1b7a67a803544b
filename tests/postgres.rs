//! The `postgres` sink of the real binary against a real PostgreSQL server started here:
//! `kill -9` of `sluice run` several times while a topic of 100,000 records is applied, and
//! afterwards a pure-insert table (no key to hide duplicates) holds exactly one row per
//! record, and an upserted table equals the topic's last value per key.

mod support;

#[path = "support/pg.rs"]
mod pg;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{binary, run_ok, run_with_input, sluice, KillOnDrop, TempData};

fn count(server: &pg::PgServer, table: &str) -> i64 {
    server
        .psql(&format!("SELECT count(*) FROM {table}"))
        .parse()
        .unwrap()
}

#[test]
fn kill_9_again_and_again_applies_every_record_exactly_once() {
    let server = pg::PgServer::start();
    server.psql("CREATE TABLE events (n bigint NOT NULL, note text)");
    server.psql("CREATE TABLE latest (id bigint PRIMARY KEY, n bigint NOT NULL, note text)");
    let data = TempData::new();
    let total: i64 = 100_000;
    run_ok(sluice(&data).args(["topics", "create", "events", "--partitions", "2"]));
    // Keys 0..99 come back again and again: the upserted table keeps the last n per key.
    let lines: String = (0..total)
        .map(|n| {
            format!(
                "{{\"id\":{}}}|{{\"n\":{n},\"note\":\"event {n}\"}}\n",
                n % 100
            )
        })
        .collect();
    let out = run_with_input(
        sluice(&data).args(["produce", "events", "--key-separator", "|"]),
        &lines,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let root = data.path().parent().unwrap().to_path_buf();
    let file = root.join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "runtime: {{ data_dir: {d} }}\ntopics: {{ events: {{ partitions: 2 }} }}\nsinks:\n\
             \x20 all_events: {{ type: postgres, topics: [events], connection: \"{c}\", table: events }}\n\
             \x20 last_by_key: {{ type: postgres, topics: [events], connection: \"{c}\", table: latest, insert_mode: upsert, pk_mode: record_key }}\n",
            d = data.path().display(),
            c = server.connection("postgres"),
        ),
    )
    .unwrap();
    let log = root.join("run.err");
    let start = || {
        KillOnDrop(
            Command::new(binary())
                .arg("run")
                .arg(&file)
                .args(["--rest-listen", "127.0.0.1:0", "--no-watch"])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let wait = |what: &str, run: &mut KillOnDrop, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done() {
            let exited = run.0.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "waiting for {what}: {exited:?}; sluice run said:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Killed three times part-way through, at whatever point the transfer has reached.
    let mut kills = 0;
    for threshold in [10_000, 40_000, 70_000] {
        let mut run = start();
        wait("rows to arrive", &mut run, &|| {
            count(&server, "events") >= threshold
        });
        if count(&server, "events") < total {
            kills += 1;
        }
        run.0.kill().unwrap();
        run.0.wait().unwrap();
    }
    assert!(
        kills >= 2,
        "the transfer was over too soon to be interrupted"
    );
    let mut run = start();
    let applied = || {
        server.psql("SELECT coalesce(sum(next_offset), 0) FROM sluice_offsets WHERE connector = 'last_by_key'")
            == total.to_string()
    };
    wait("every row, in both tables", &mut run, &|| {
        count(&server, "events") >= total && applied()
    });
    std::thread::sleep(Duration::from_millis(500)); // anything more would be a duplicate
    support::stop(run);

    assert_eq!(
        count(&server, "events"),
        total,
        "exactly one row per record"
    );
    assert_eq!(
        server.psql("SELECT count(DISTINCT n) FROM events"),
        total.to_string()
    );
    // The last value per key: keys 0..99, each last written by the highest n with that key
    // in its partition order; per key every record is in one partition (keyed), so the
    // highest n overall.
    let expected: Vec<String> = (0..100)
        .map(|id| format!("{id}|{}", total - 100 + id))
        .collect();
    assert_eq!(
        server
            .psql("SELECT id, n FROM latest ORDER BY id")
            .lines()
            .collect::<Vec<_>>(),
        expected
    );
    let stored = server.psql("SELECT connector, sum(next_offset) FROM sluice_offsets GROUP BY connector ORDER BY connector");
    assert_eq!(stored, format!("all_events|{total}\nlast_by_key|{total}"));
}

//! TLS to Postgres through the real binary, against a real server that refuses every TCP
//! connection without TLS: `postgres_cdc` (its SQL connection and its own replication
//! connection) with `sslmode=verify-full`, the `postgres` sink with `verify-ca`, both
//! checked against the test CA; the server's own view (`pg_stat_ssl`) shows each session
//! encrypted. Then what a user meets when TLS is wrong: a host name the certificate does
//! not hold, a CA that did not sign it, and `sslmode=disable` against a server that wants
//! TLS, each a message that says what to change.

mod support;

#[path = "support/pg.rs"]
mod pg;

#[path = "support/run.rs"]
mod run;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use run::start;
use support::TempData;

/// A CA, and a server certificate from it for `localhost` only (not 127.0.0.1).
fn pki(dir: &std::path::Path) -> (String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    // Another CA, which signed nothing the server has.
    let other_key = KeyPair::generate().unwrap();
    let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    std::fs::write(
        dir.join("other-ca.pem"),
        other.self_signed(&other_key).unwrap().pem(),
    )
    .unwrap();
    (server.pem(), server_key.serialize_pem())
}

#[test]
fn postgres_over_tls_as_sslmode_asks_and_clear_errors_when_it_is_wrong() {
    let server = pg::PgServer::start();
    let dir = TempData::new();
    let root = dir.path().parent().unwrap().to_path_buf();
    let (cert, key) = pki(&root);
    server.require_tls(&cert, &key);
    let sql = |db: &str, s: &str| server.psql_in(db, s); // libpq's default `prefer`: TLS
    sql("postgres", "CREATE DATABASE src");
    sql("postgres", "CREATE DATABASE dst");
    sql(
        "src",
        "CREATE TABLE orders (id int PRIMARY KEY, item text); \
         INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 50) g",
    );
    let ca = root.join("ca.pem");
    let port = server.port();
    let over_tls = |host: &str, db: &str, mode: &str, ca: &std::path::Path| {
        format!(
            "host={host} port={port} user=sluice dbname={db} sslmode={mode} sslrootcert={}",
            ca.display()
        )
    };
    let yaml = format!(
        "runtime: {{ data_dir: {data}, registry: {{ listen: 127.0.0.1:0 }} }}\n\
         sources:\n\
         \x20 shop:\n\
         \x20   type: postgres_cdc\n\
         \x20   connection: \"{src}\"\n\
         \x20   tables: [public.orders]\n\
         \x20   topic_prefix: shop\n\
         \x20   slot: shop\n\
         \x20   key_format: avro\n\
         \x20   value_format: avro\n\
         sinks:\n\
         \x20 replica:\n\
         \x20   type: postgres\n\
         \x20   topics: [shop.public.orders]\n\
         \x20   connection: \"{dst}\"\n\
         \x20   table: \"${{source.table}}\"\n\
         \x20   insert_mode: upsert\n\
         \x20   pk_mode: record_key\n\
         \x20   auto_create: true\n\
         \x20   key_format: avro\n\
         \x20   value_format: avro\n",
        data = root.join("tls-data").display(),
        src = over_tls("localhost", "src", "verify-full", &ca),
        dst = over_tls("127.0.0.1", "dst", "verify-ca", &ca),
    );
    let mut run = start(&root, "tls", &yaml);
    run.wait_for("the slot", 60, &mut |log| log.contains("slot created"));
    let count = || {
        let out = std::process::Command::new("psql")
            .arg(format!(
                "host={} port={port} user=sluice dbname=dst",
                server.folder().display()
            ))
            .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM orders"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i64>()
            .unwrap_or(0)
    };
    run.wait_for("the snapshot in the replica", 60, &mut |_| count() == 50);
    sql(
        "src",
        "INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(51, 60) g",
    );
    run.wait_for("the streamed rows in the replica", 60, &mut |_| {
        count() == 60
    });
    // The server's view: the replication stream and the sink's session are encrypted.
    let encrypted = |filter: &str| {
        server
            .socket_psql(&format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND {filter}"
            ))
            .parse::<i64>()
            .unwrap()
    };
    assert!(
        encrypted("a.backend_type = 'walsender'") >= 1,
        "the replication connection is over TLS"
    );
    assert!(
        encrypted("a.datname = 'dst'") >= 1,
        "the sink's connection is over TLS"
    );
    run.kill();

    // What a user meets when TLS is wrong: each stops the connector with what to change.
    let wrong = |name: &str, connection: String, expect: &str| {
        let yaml = format!(
            "runtime: {{ data_dir: {data} }}\n\
             sources:\n\
             \x20 shop:\n\
             \x20   type: postgres_cdc\n\
             \x20   connection: \"{connection}\"\n\
             \x20   tables: [public.orders]\n\
             \x20   topic_prefix: shop\n\
             \x20   slot: {name}\n\
             \x20   publication: {name}\n\
             \x20   value_format: json\n\
             sinks: {{}}\n",
            data = root.join(format!("{name}-data")).display(),
        );
        let mut run = start(&root, name, &yaml);
        run.wait_for(expect, 60, &mut |log| log.contains(expect));
        run.kill();
    };
    wrong(
        "not_the_name",
        over_tls("127.0.0.1", "src", "verify-full", &ca),
        "for `sslmode=verify-full` that `host` is a name the certificate holds",
    );
    wrong(
        "not_our_ca",
        over_tls("localhost", "src", "verify-ca", &root.join("other-ca.pem")),
        "the server's certificate was refused",
    );
    wrong(
        "no_tls",
        format!("host=127.0.0.1 port={port} user=sluice dbname=src sslmode=disable"),
        "no encryption",
    );
    // None of them left a slot behind.
    assert_eq!(
        server.socket_psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name <> 'shop'"),
        "0"
    );

    // Like libpq, no TLS over a Unix socket, whatever `sslmode` asks: the SQL connection
    // and the replication connection both work (they once tried TLS there and failed).
    let yaml = format!(
        "runtime: {{ data_dir: {data} }}\n\
         sources:\n\
         \x20 local:\n\
         \x20   type: postgres_cdc\n\
         \x20   connection: \"host={socket} port={port} user=sluice dbname=src sslmode=require\"\n\
         \x20   tables: [public.orders]\n\
         \x20   topic_prefix: local\n\
         \x20   slot: over_the_socket\n\
         \x20   publication: over_the_socket\n\
         \x20   value_format: json\n\
         sinks: {{}}\n",
        data = root.join("socket-data").display(),
        socket = server.folder().display(),
    );
    let mut run = start(&root, "socket", &yaml);
    run.wait_for("streaming over the Unix socket", 60, &mut |log| {
        log.contains("postgres_cdc: streaming")
    });
    run.kill();
}

#![allow(dead_code)]
//! A real PostgreSQL server for tests: `initdb` into a temporary folder and `pg_ctl start`
//! on a free port of 127.0.0.1, as the `postgres` user when the tests run as root (Postgres
//! refuses root); stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

/// Where `initdb` and `pg_ctl` are: on PATH, or Debian's /usr/lib/postgresql/<n>/bin.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !path.is_empty() {
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| PathBuf::from(&path));
            return real.parent().unwrap().to_path_buf();
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().filter(|b| b.join("initdb").exists()).expect(
        "PostgreSQL is missing: install Debian's `postgresql` package (scripts/test.sh does)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the server's folder to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PgServer {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "sluice",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        server.pg_ctl(&["start"]);
        server
    }

    /// `pg_ctl` on this server with its settings, waiting for it to finish.
    fn pg_ctl(&self, action: &[&str]) {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let options = self.options();
        let mut args = vec![
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &options,
            "-w",
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    /// The server's settings: its port and socket folder, logical decoding on, room for
    /// the slots and senders the CDC tests use.
    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c wal_level=logical -c max_wal_senders=16 -c max_replication_slots=16",
            self.port,
            self.dir.path().display()
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// libpq key/value for database `db` (`postgres` always exists).
    pub fn connection(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=sluice dbname={db}", self.port)
    }

    /// Runs `sql` in database `postgres` with the real `psql`; its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_at(&self.connection("postgres"), sql)
    }

    /// Runs `sql` with the real `psql` over `conninfo`; its unaligned output.
    fn psql_at(&self, conninfo: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .arg(conninfo)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// libpq key/value for database `db` as `user` with `password`.
    pub fn connection_as(&self, db: &str, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
            self.port
        )
    }

    /// Runs `sql` in database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        self.psql_at(&self.connection(db), sql)
    }

    /// Every user but `sluice` logs in over TCP with a SCRAM-SHA-256 password (normal and
    /// replication connections); `sluice` stays trusted.
    pub fn require_passwords(&self) {
        let hba = "local all all trust\n\
                   host all sluice 127.0.0.1/32 trust\n\
                   host replication sluice 127.0.0.1/32 trust\n\
                   host all all 127.0.0.1/32 scram-sha-256\n\
                   host replication all 127.0.0.1/32 scram-sha-256\n";
        let path = self.data().join("pg_hba.conf");
        std::fs::write(&path, hba).unwrap();
        if self.as_postgres {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&path)
                .status()
                .unwrap();
        }
        self.psql("SELECT pg_reload_conf()");
    }

    /// Serves TLS with `cert_pem`/`key_pem` and refuses every TCP connection without it
    /// (normal and replication; the Unix socket stays trusted).
    #[allow(dead_code)] // only the TLS test serves TLS
    pub fn require_tls(&self, cert_pem: &str, key_pem: &str) {
        let data = self.data();
        let files = [
            (data.join("server.crt"), cert_pem),
            (data.join("server.key"), key_pem),
            (
                data.join("pg_hba.conf"),
                "local all all trust
                 local replication all trust
                 hostssl all all 127.0.0.1/32 trust
                 hostssl replication all 127.0.0.1/32 trust
                 hostnossl all all 127.0.0.1/32 reject
                 hostnossl replication all 127.0.0.1/32 reject
",
            ),
        ];
        for (path, text) in &files {
            std::fs::write(path, text).unwrap();
            let mut perms = std::fs::metadata(path).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
            std::fs::set_permissions(path, perms).unwrap();
            if self.as_postgres {
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(path)
                    .status()
                    .unwrap();
            }
        }
        self.socket_psql("ALTER SYSTEM SET ssl = on");
        self.socket_psql("SELECT pg_reload_conf()");
    }

    /// `sql` in database `postgres` over the Unix socket (trusted whatever TCP asks).
    pub fn socket_psql(&self, sql: &str) -> String {
        let conninfo = format!(
            "host={} port={} user=sluice dbname=postgres",
            self.dir.path().display(),
            self.port
        );
        self.psql_at(&conninfo, sql)
    }

    /// The server's port.
    #[allow(dead_code)]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts the server (a fast shutdown: every connection is cut), same port.
    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"]);
    }

    /// A server program (`pg_recvlogical`, …) of the same installation.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    pub fn folder(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let program = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let _ = cmd
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

//! What is checked and prepared before capture starts, each failure a message that names
//! the fix: the server reachable and the password right, `wal_level = logical`, the
//! REPLICATION attribute, every listed table there with a usable replica identity (a table
//! without one is never added to a publication: Postgres would then refuse UPDATE and
//! DELETE on it for everyone), the publication, and the slot's state.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::lsn::Lsn;
use super::replication::quote_ident;
use super::settings::CdcSettings;
use super::types::PgType;
use super::CdcError;

/// The session settings under which Postgres' text output has the one form
/// [`super::types`] reads.
pub const SESSION: &str = "SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = iso_8601; SET extra_float_digits = 3";

/// A plain SQL connection for the catalog and the snapshot (its driver runs on the
/// current runtime).
pub async fn connect(settings: &CdcSettings) -> Result<Client, CdcError> {
    let client = crate::client::open(&settings.connection)
        .await
        .map_err(|e| {
            let host = describe_host(settings);
            match CdcError::from(e) {
                CdcError::Unreachable(why) => CdcError::Unreachable(format!("{host} ({why})")),
                CdcError::Auth(why) => CdcError::Auth(format!(
                    "{why}: check `user` and `password` in `connection`"
                )),
                other => other,
            }
        })?;
    client.batch_execute(SESSION).await?;
    Ok(client)
}

fn describe_host(settings: &CdcSettings) -> String {
    let host = match settings.connection.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = settings
        .connection
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432);
    format!("{host}:{port}")
}

/// A table the source captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedTable {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: char,
    pub has_primary_key: bool,
}

impl CapturedTable {
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    pub fn dotted(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Whether UPDATE and DELETE stay possible once the table is in a publication.
    fn identity_usable(&self) -> bool {
        match self.replica_identity {
            'f' | 'i' => true,
            'd' => self.has_primary_key,
            _ => false,
        }
    }
}

/// The checks that need the server, before anything is created; the captured tables.
pub async fn check(
    client: &Client,
    settings: &CdcSettings,
) -> Result<Vec<CapturedTable>, CdcError> {
    let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    if wal_level != "logical" {
        return Err(CdcError::Setup(format!(
            "the server's wal_level is `{wal_level}`; change capture needs `logical`: run `ALTER SYSTEM SET wal_level = logical` and restart Postgres"
        )));
    }
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (user, may_replicate): (String, bool) = (row.get(0), row.get(1));
    if !may_replicate {
        return Err(CdcError::Setup(format!(
            "the user `{user}` may not replicate: run `ALTER ROLE {} REPLICATION` (as a superuser)",
            quote_ident(&user)
        )));
    }
    let rows = client
        .query(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relreplident::text,
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             ORDER BY n.nspname, c.relname",
            &[],
        )
        .await?;
    let all: Vec<CapturedTable> = rows
        .iter()
        .map(|r| CapturedTable {
            oid: r.get::<_, i64>(0) as u32,
            schema: r.get(1),
            name: r.get(2),
            replica_identity: r.get::<_, String>(3).chars().next().unwrap_or('d'),
            has_primary_key: r.get(4),
        })
        .collect();
    let mut problems = Vec::new();
    for pattern in &settings.tables {
        if !all.iter().any(|t| pattern.matches(&t.schema, &t.name)) {
            problems.push(if pattern.is_literal() {
                format!("the table {pattern} does not exist (is `tables` right, and may `{user}` see it?)")
            } else {
                format!("`{pattern}` matches no table")
            });
        }
    }
    let captured: Vec<CapturedTable> = all
        .into_iter()
        .filter(|t| settings.captures(&t.schema, &t.name))
        .collect();
    let published = published_tables(client, &settings.publication).await?;
    for t in &captured {
        if !t.identity_usable() && !published.contains(&t.oid) {
            problems.push(format!(
                "the table {} has no usable replica identity (REPLICA IDENTITY {} without a primary key): in a publication Postgres would refuse UPDATE and DELETE on it for every application. Add a primary key, or run `ALTER TABLE {} REPLICA IDENTITY FULL`",
                t.dotted(),
                if t.replica_identity == 'n' { "NOTHING" } else { "DEFAULT" },
                t.qualified()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(CdcError::Setup(problems.join("; ")));
    }
    Ok(captured)
}

async fn published_tables(client: &Client, publication: &str) -> Result<Vec<u32>, CdcError> {
    let rows = client
        .query(
            "SELECT c.oid::int8 FROM pg_publication_tables p
             JOIN pg_namespace n ON n.nspname = p.schemaname
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
             WHERE p.pubname = $1",
            &[&publication],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u32).collect())
}

/// Creates the publication for the captured tables, or adds the ones it lacks.
pub async fn ensure_publication(
    client: &Client,
    settings: &CdcSettings,
    tables: &[CapturedTable],
) -> Result<(), CdcError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&settings.publication],
        )
        .await?
        .is_some();
    let list = |ts: &[&CapturedTable]| {
        ts.iter()
            .map(|t| t.qualified())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !exists {
        let all: Vec<&CapturedTable> = tables.iter().collect();
        let sql = format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            quote_ident(&settings.publication),
            list(&all)
        );
        client.batch_execute(&sql).await.map_err(|e| {
            let e = CdcError::from(e);
            CdcError::Setup(format!(
                "creating the publication `{}`: {e}; as the tables' owner, run `{sql}`",
                settings.publication
            ))
        })?;
        tracing::info!(publication = %settings.publication, tables = tables.len(), "publication created");
        return Ok(());
    }
    let published = published_tables(client, &settings.publication).await?;
    let missing: Vec<&CapturedTable> = tables
        .iter()
        .filter(|t| !published.contains(&t.oid))
        .collect();
    if !missing.is_empty() {
        let sql = format!(
            "ALTER PUBLICATION {} ADD TABLE {}",
            quote_ident(&settings.publication),
            list(&missing)
        );
        client.batch_execute(&sql).await?;
        tracing::info!(publication = %settings.publication, added = missing.len(), "tables added to the publication");
    }
    Ok(())
}

/// A replication slot as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active_pid: Option<i32>,
    /// Who holds it, from `pg_stat_replication`.
    pub holder: Option<String>,
    pub confirmed_flush: Option<Lsn>,
    /// `lost` when Postgres invalidated it.
    pub wal_status: Option<String>,
}

pub async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>, CdcError> {
    let row = client
        .query_opt(
            "SELECT s.plugin::text, s.database::text, s.active_pid, s.confirmed_flush_lsn::text,
                    s.wal_status::text,
                    (SELECT r.application_name || ' from ' || coalesce(r.client_addr::text, 'a local socket')
                     FROM pg_stat_replication r WHERE r.pid = s.active_pid)
             FROM pg_replication_slots s WHERE s.slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| SlotState {
        plugin: r.get(0),
        database: r.get(1),
        active_pid: r.get(2),
        confirmed_flush: r.get::<_, Option<String>>(3).and_then(|s| s.parse().ok()),
        wal_status: r.get(4),
        holder: r.get(5),
    }))
}

/// Drops a slot (one of ours that never had a position stored).
pub async fn drop_slot(client: &Client, slot: &str) -> Result<(), CdcError> {
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await?;
    Ok(())
}

/// A table's columns (name, type, modifier) in order, and its primary key's columns.
pub struct TableColumns {
    pub columns: Vec<(String, u32, i32)>,
    pub primary_key: Vec<String>,
    pub replica_identity_index: Vec<String>,
}

pub async fn table_columns(client: &Client, oid: u32) -> Result<TableColumns, CdcError> {
    let oid = oid as i64;
    let rows = client
        .query(
            "SELECT attname::text, atttypid::int8, atttypmod FROM pg_attribute
             WHERE attrelid = $1::int8::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await?;
    let columns = rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u32, r.get(2)))
        .collect();
    let index_columns = |primary: bool| {
        let sql = format!(
            "SELECT a.attname::text FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = $1::int8::oid AND {} ORDER BY k.n",
            if primary {
                "i.indisprimary"
            } else {
                "i.indisreplident"
            }
        );
        async move {
            let rows = client.query(&sql, &[&oid]).await?;
            Ok::<Vec<String>, CdcError>(rows.iter().map(|r| r.get(0)).collect())
        }
    };
    Ok(TableColumns {
        columns,
        primary_key: index_columns(true).await?,
        replica_identity_index: index_columns(false).await?,
    })
}

/// Types resolved through the catalog (enums, domains, arrays of those), cached by OID.
#[derive(Default)]
pub struct Types {
    cache: HashMap<(u32, i32), PgType>,
}

impl Types {
    pub async fn resolve(
        &mut self,
        client: &Client,
        oid: u32,
        typmod: i32,
    ) -> Result<PgType, CdcError> {
        if let Some(t) = PgType::builtin(oid, typmod) {
            return Ok(t);
        }
        if let Some(t) = self.cache.get(&(oid, typmod)) {
            return Ok(t.clone());
        }
        let mut current = (oid, typmod);
        // Domains over domains, arrays of enums: a few steps at most.
        let mut resolved = None;
        for _ in 0..8 {
            if let Some(t) = PgType::builtin(current.0, current.1) {
                resolved = Some(t);
                break;
            }
            let row = client
                .query_opt(
                    "SELECT typtype::text, typbasetype::int8, typtypmod, typelem::int8, typcategory::text, typname::text
                     FROM pg_type WHERE oid = $1::int8::oid",
                    &[&(current.0 as i64)],
                )
                .await?;
            let Some(row) = row else {
                resolved = Some(PgType::Other(format!("type {}", current.0)));
                break;
            };
            let (typtype, base, base_mod, elem, category, name): (
                String,
                i64,
                i32,
                i64,
                String,
                String,
            ) = (
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
            );
            match (typtype.as_str(), category.as_str()) {
                ("d", _) => current = (base as u32, base_mod),
                ("e", _) => {
                    let labels = client
                        .query(
                            "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1::int8::oid ORDER BY enumsortorder",
                            &[&(current.0 as i64)],
                        )
                        .await?;
                    resolved = Some(PgType::Enum(labels.iter().map(|r| r.get(0)).collect()));
                    break;
                }
                (_, "A") if elem != 0 => {
                    let inner = Box::pin(self.resolve(client, elem as u32, -1)).await?;
                    resolved = Some(PgType::Array(Box::new(inner)));
                    break;
                }
                _ => {
                    resolved = Some(PgType::Other(name));
                    break;
                }
            }
        }
        let t = resolved.unwrap_or_else(|| PgType::Other(format!("type {oid}")));
        self.cache.insert((oid, typmod), t.clone());
        Ok(t)
    }
}

//! The target table as the catalog describes it, and the set-based statements that apply a
//! run of rows to it: each takes one `jsonb` array (`$1`) whose objects
//! `jsonb_populate_record` types by the table's own columns.

use sluice_connector_sdk::connector::ConnectorError;
use tokio_postgres::Client;

use super::settings::{InsertMode, PkMode, SinkSettings};
use serde_json::Value as Json;

/// An identifier, quoted for SQL (`"a""b"`).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// As written in the settings (`orders`, `replica.orders`).
    pub name: String,
    /// Quoted and schema-qualified when a schema was given.
    pub sql: String,
    /// In table order.
    pub columns: Vec<String>,
    /// How each column takes a value in COPY's text format, in the same order.
    pub kinds: Vec<ColumnKind>,
    /// The columns again, for lookups by name.
    pub names: std::collections::HashSet<String>,
    /// The columns rows are matched by (upsert, update, delete).
    pub key: Vec<String>,
}

/// What a column needs of a JSON value in COPY's text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `json`, `jsonb`: the value's JSON text.
    Json,
    /// An array type: a JSON array as an array literal (elements as JSON text for arrays
    /// of json/jsonb).
    Array { json_elements: bool },
    /// Anything else: the type's input text.
    Scalar,
}

impl Table {
    pub fn has(&self, column: &str) -> bool {
        self.names.contains(column)
    }

    /// The kind of column `name` (`Scalar` if unknown).
    pub fn kind_of(&self, name: &str) -> ColumnKind {
        self.columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| self.kinds.get(i).copied())
            .unwrap_or(ColumnKind::Scalar)
    }

    /// The columns the rows have (and the key), less those `left_out`.
    fn cols(&self, docs: &[Json], left_out: &[String]) -> Vec<&String> {
        self.cols_where(|c| docs.iter().any(|d| d.get(c).is_some()), left_out)
    }

    /// The same for rows held as [`Row`](super::row::Row)s.
    pub fn cols_of(&self, rows: &[&super::row::Row], left_out: &[String]) -> Vec<&String> {
        self.cols_where(|c| rows.iter().any(|r| r.contains_key(c)), left_out)
    }

    fn cols_where(&self, some_row_has: impl Fn(&str) -> bool, left_out: &[String]) -> Vec<&String> {
        self.columns
            .iter()
            .filter(|c| some_row_has(c.as_str()) || self.key.contains(c))
            .filter(|c| !left_out.contains(c))
            .collect()
    }
}

/// A column the sink creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub sql_type: String,
    pub nullable: bool,
}

fn definition(c: &Column) -> String {
    let null = if c.nullable { "" } else { " NOT NULL" };
    format!("{} {}{null}", ident(&c.name), c.sql_type)
}

/// `CREATE TABLE IF NOT EXISTS` (tasks of one sink may race to create it).
pub fn create_table(name: &str, columns: &[Column], key: &[String]) -> String {
    let mut parts: Vec<String> = columns.iter().map(definition).collect();
    if !key.is_empty() {
        parts.push(format!(
            "PRIMARY KEY ({})",
            key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        qualified(name),
        parts.join(", ")
    )
}

/// `ALTER TABLE … ADD COLUMN IF NOT EXISTS …` for each of `columns`.
pub fn add_columns(t: &Table, columns: &[Column]) -> String {
    let adds: Vec<String> = columns
        .iter()
        .map(|c| format!("ADD COLUMN IF NOT EXISTS {}", definition(c)))
        .collect();
    format!("ALTER TABLE {} {}", t.sql, adds.join(", "))
}

pub fn truncate(t: &Table) -> String {
    format!("TRUNCATE {}", t.sql)
}

/// `schema.table` or `table`, quoted.
pub fn qualified(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => format!("{}.{}", ident(schema), ident(table)),
        None => ident(name),
    }
}

/// Reads the table's columns and primary key (`None`: there is no such table); one without
/// the key the settings need is an error that says what to change.
pub async fn describe(
    client: &Client,
    name: &str,
    s: &SinkSettings,
) -> Result<Option<Table>, ConnectorError> {
    let sql = qualified(name);
    let db =
        |e: tokio_postgres::Error| ConnectorError::retriable(format!("reading table {name}: {e}"));
    let described = client
        .query(
            "SELECT a.attname, t.typname::text, t.typcategory::text, coalesce(e.typname::text, '')
             FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&sql],
        )
        .await
        .map_err(db)?;
    let columns: Vec<String> = described.iter().map(|r| r.get(0)).collect();
    let kinds: Vec<ColumnKind> = described
        .iter()
        .map(|r| {
            let (name, category, element): (String, String, String) =
                (r.get(1), r.get(2), r.get(3));
            let json = |t: &str| t == "json" || t == "jsonb";
            match (json(&name), category.as_str()) {
                (true, _) => ColumnKind::Json,
                (false, "A") => ColumnKind::Array {
                    json_elements: json(&element),
                },
                _ => ColumnKind::Scalar,
            }
        })
        .collect();
    if columns.is_empty() {
        return Ok(None);
    }
    let primary: Vec<String> = client
        .query(
            "SELECT a.attname FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum",
            &[&sql],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let key = match (s.pk_mode, s.pk_fields.is_empty()) {
        (PkMode::None, _) => primary,
        (PkMode::Kafka, true) => ["__connect_topic", "__connect_partition", "__connect_offset"]
            .map(String::from)
            .to_vec(),
        (_, false) => s.pk_fields.clone(),
        (_, true) => primary,
    };
    let needs_key = s.insert_mode != InsertMode::Insert || s.delete_enabled;
    if needs_key && key.is_empty() {
        return Err(ConnectorError::fatal(format!(
            "table {name} has no primary key and `pk_fields` names none: upsert, update and delete need the columns rows are matched by"
        )));
    }
    if let Some(missing) = key.iter().find(|k| !columns.contains(k)) {
        return Err(ConnectorError::fatal(format!(
            "table {name} has no column `{missing}` (a key column): add it or change `pk_fields`"
        )));
    }
    Ok(Some(Table {
        name: name.to_string(),
        sql,
        names: columns.iter().cloned().collect(),
        columns,
        kinds,
        key,
    }))
}

/// Rows typed by the table: `r` per element of `$1`, with its position `ord`.
fn rows(t: &Table) -> String {
    format!(
        "jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(doc, ord) \
         CROSS JOIN LATERAL jsonb_populate_record(NULL::{}, e.doc) AS r",
        t.sql
    )
}

/// The last row per key of `$1`.
fn last_per_key(t: &Table, cols: &[&String]) -> String {
    let key: Vec<String> = t.key.iter().map(|k| format!("r.{}", ident(k))).collect();
    let select: Vec<String> = cols.iter().map(|c| format!("r.{}", ident(c))).collect();
    format!(
        "SELECT DISTINCT ON ({k}) {s} FROM {rows} ORDER BY {k}, e.ord DESC",
        k = key.join(", "),
        s = select.join(", "),
        rows = rows(t)
    )
}

pub fn list(cols: &[&String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

pub fn insert(t: &Table, docs: &[Json], left_out: &[String]) -> String {
    let cols = t.cols(docs, left_out);
    let select: Vec<String> = cols.iter().map(|c| format!("r.{}", ident(c))).collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY e.ord",
        t.sql,
        list(&cols),
        select.join(", "),
        rows(t)
    )
}

pub fn upsert(t: &Table, docs: &[Json], left_out: &[String]) -> String {
    let cols = t.cols(docs, left_out);
    upsert_from(t, &cols, &last_per_key(t, &cols))
}

/// `INSERT … ON CONFLICT … DO UPDATE` of the rows of `last` (a query of `cols`, at most one
/// row per key).
pub fn upsert_from(t: &Table, cols: &[&String], last: &str) -> String {
    let set: Vec<String> = cols
        .iter()
        .filter(|c| !t.key.contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", ident(c)))
        .collect();
    let action = if set.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", set.join(", "))
    };
    format!(
        "INSERT INTO {t} ({cols}) SELECT {cols} FROM ({last}) AS last ON CONFLICT ({key}) {action}",
        t = t.sql,
        cols = list(cols),
        key = list(&t.key.iter().collect::<Vec<_>>()),
    )
}

pub fn update(t: &Table, docs: &[Json], left_out: &[String]) -> String {
    let cols = t.cols(docs, left_out);
    update_from(t, &cols, &last_per_key(t, &cols))
}

/// `UPDATE … FROM` the rows of `last` (a query of `cols`, at most one row per key).
pub fn update_from(t: &Table, cols: &[&String], last: &str) -> String {
    let set: Vec<String> = cols
        .iter()
        .filter(|c| !t.key.contains(c))
        .map(|c| format!("{0} = last.{0}", ident(c)))
        .collect();
    if set.is_empty() {
        return "SELECT 1".to_string(); // nothing but the key: nothing to update
    }
    format!(
        "UPDATE {t} AS target SET {set} FROM ({last}) AS last WHERE {matched}",
        t = t.sql,
        set = set.join(", "),
        matched = matched(t, "target", "last"),
    )
}

pub fn delete(t: &Table) -> String {
    let select: Vec<String> = t.key.iter().map(|k| format!("r.{}", ident(k))).collect();
    delete_using(t, &format!("SELECT {} FROM {}", select.join(", "), rows(t)))
}

/// `DELETE … USING` the keys `gone` (a query of the key columns) names.
pub fn delete_using(t: &Table, gone: &str) -> String {
    format!(
        "DELETE FROM {t} AS target USING ({gone}) AS gone WHERE {m}",
        t = t.sql,
        m = matched(t, "target", "gone"),
    )
}

/// `a.k = b.k` for every key column.
fn matched(t: &Table, a: &str, b: &str) -> String {
    t.key
        .iter()
        .map(|k| format!("{a}.{0} = {b}.{0}", ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Table {
        Table {
            name: "shop.orders".into(),
            sql: qualified("shop.orders"),
            columns: vec!["id".into(), "note".into(), "qty".into()],
            kinds: vec![ColumnKind::Scalar; 3],
            names: ["id", "note", "qty"].map(String::from).into(),
            key: vec!["id".into()],
        }
    }

    #[test]
    fn statements_name_only_the_columns_the_rows_have() {
        let t = table();
        assert_eq!(t.sql, r#""shop"."orders""#);
        assert_eq!(ident(r#"we"ird"#), r#""we""ird""#);
        let docs = [json!({"id": 1, "note": "a"})];
        let up = upsert(&t, &docs, &[]);
        assert!(up.starts_with(r#"INSERT INTO "shop"."orders" ("id", "note") SELECT "id", "note" FROM (SELECT DISTINCT ON (r."id")"#), "{up}");
        assert!(
            up.ends_with(r#"ON CONFLICT ("id") DO UPDATE SET "note" = EXCLUDED."note""#),
            "{up}"
        );
        assert!(upsert(&t, &[json!({"id": 1})], &[]).ends_with("DO NOTHING"));
        assert!(update(&t, &docs, &[]).contains(r#"SET "note" = last."note""#));
        assert!(delete(&t).contains(r#"WHERE target."id" = gone."id""#));
        assert!(!insert(&t, &docs, &[]).contains("qty"));
        // An unavailable (unchanged TOASTed) column is neither inserted nor set.
        let kept = upsert(
            &t,
            &[json!({"id": 1, "note": "a", "qty": 2})],
            &["note".into()],
        );
        assert!(!kept.contains("note"), "{kept}");
        assert!(
            kept.ends_with(r#"DO UPDATE SET "qty" = EXCLUDED."qty""#),
            "{kept}"
        );
    }

    #[test]
    fn created_and_widened_tables() {
        let columns = [
            Column {
                name: "id".into(),
                sql_type: "integer".into(),
                nullable: false,
            },
            Column {
                name: "price".into(),
                sql_type: "numeric(10,2)".into(),
                nullable: true,
            },
        ];
        assert_eq!(
            create_table("replica.orders", &columns, &["id".into()]),
            r#"CREATE TABLE IF NOT EXISTS "replica"."orders" ("id" integer NOT NULL, "price" numeric(10,2), PRIMARY KEY ("id"))"#
        );
        assert_eq!(
            add_columns(&table(), &columns[1..]),
            r#"ALTER TABLE "shop"."orders" ADD COLUMN IF NOT EXISTS "price" numeric(10,2)"#
        );
    }
}

//! The sink's fast path: a run of rows written with `COPY … FROM STDIN`, encoded straight
//! from the records' JSON into COPY's text format (no statement parameters, no `ToSql` per
//! value, no JSON document for Postgres to take apart).
//!
//! `insert` copies into the target table itself. `upsert`, `update` and deletes copy into a
//! temporary staging table (the run's columns and its order), then apply one set-based
//! statement: `INSERT … SELECT DISTINCT ON (key) … ON CONFLICT … DO UPDATE`,
//! `UPDATE … FROM`, `DELETE … USING`, keeping the last change per key.
//!
//! Values are what `jsonb_populate_record` (the record-by-record path) would make of them:
//! a JSON string is the column's input text, `json`/`jsonb` columns take the value's JSON
//! (a string stays a JSON string), array columns take a JSON array as an array literal.

use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::Value as Json;
use tokio_postgres::Transaction;

use super::row::Row;
use super::sql::{self, list, ColumnKind, Table};

/// Appends `text` escaped for COPY's text format.
fn escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// An array literal (`{1,NULL,"a b"}`) of a JSON array; nested arrays are dimensions.
fn array_literal(out: &mut String, items: &[Json], json_elements: bool) {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Json::Null => out.push_str("NULL"),
            Json::Array(inner) if !json_elements => array_literal(out, inner, false),
            Json::String(s) if !json_elements => quoted(out, s),
            Json::Bool(b) if !json_elements => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) if !json_elements => out.push_str(&n.to_string()),
            other => quoted(out, &other.to_string()),
        }
    }
    out.push('}');
}

fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Appends one value for a column of `kind`.
pub fn value(out: &mut Vec<u8>, v: Option<&Json>, kind: ColumnKind) {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        out.extend_from_slice(b"\\N");
        return;
    };
    match (kind, v) {
        (ColumnKind::Json, v) => escaped(out, &v.to_string()),
        (ColumnKind::Array { json_elements }, Json::Array(items)) => {
            let mut text = String::new();
            array_literal(&mut text, items, json_elements);
            escaped(out, &text);
        }
        (_, Json::String(s)) => escaped(out, s),
        (_, Json::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        (_, Json::Number(n)) => {
            use std::io::Write;
            let _ = write!(out, "{n}");
        }
        (_, other) => escaped(out, &other.to_string()),
    }
}

/// COPY text of `rows` for `columns`, each line ending with its position when `ordered`.
pub fn encode<'a>(
    table: &Table,
    columns: &[&String],
    rows: impl Iterator<Item = &'a Row>,
    ordered: bool,
) -> Vec<u8> {
    let kinds: Vec<ColumnKind> = columns.iter().map(|c| table.kind_of(c)).collect();
    let mut out = Vec::with_capacity(4096);
    for (n, row) in rows.enumerate() {
        for (i, (c, kind)) in columns.iter().zip(&kinds).enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            value(&mut out, row.get(c.as_str()), *kind);
        }
        if ordered {
            use std::io::Write;
            let _ = write!(out, "\t{n}");
        }
        out.push(b'\n');
    }
    out
}

/// Sends `data` through `COPY {target} ({columns}) FROM STDIN`.
async fn copy_in(
    tx: &Transaction<'_>,
    target: &str,
    columns: &str,
    data: Vec<u8>,
) -> Result<u64, tokio_postgres::Error> {
    let sink = tx
        .copy_in(&format!("COPY {target} ({columns}) FROM STDIN"))
        .await?;
    futures_util::pin_mut!(sink);
    // In slices, so that Postgres starts on the first while the rest is on its way.
    let data = Bytes::from(data);
    let mut at = 0;
    while at < data.len() {
        let end = (at + (1 << 20)).min(data.len());
        sink.feed(data.slice(at..end)).await?;
        at = end;
    }
    sink.finish().await
}

const STAGE: &str = "sluice_stage";

/// A run of rows inserted: copied into the table itself.
pub async fn insert(
    tx: &Transaction<'_>,
    table: &Table,
    cols: &[&String],
    rows: &[&Row],
) -> Result<(), tokio_postgres::Error> {
    let data = encode(table, cols, rows.iter().copied(), false);
    copy_in(tx, &table.sql, &list(cols), data).await?;
    Ok(())
}

/// What a staged run does to the table.
pub enum Staged {
    Upsert,
    Update,
    Delete,
}

/// A run of rows (or of keys to delete) copied into a staging table with their order, then
/// applied by one statement keeping the last change per key.
pub async fn staged(
    tx: &Transaction<'_>,
    table: &Table,
    cols: &[&String],
    rows: &[&Row],
    what: Staged,
) -> Result<(), tokio_postgres::Error> {
    let columns = list(cols);
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS SELECT {columns}, 0::bigint AS sluice_ord FROM {} WITH NO DATA",
        table.sql
    ))
    .await?;
    let data = encode(table, cols, rows.iter().copied(), true);
    copy_in(tx, STAGE, &format!("{columns}, sluice_ord"), data).await?;
    let key = list(&table.key.iter().collect::<Vec<_>>());
    let last = format!(
        "SELECT DISTINCT ON ({key}) {columns} FROM {STAGE} ORDER BY {key}, sluice_ord DESC"
    );
    let statement = match what {
        Staged::Upsert => sql::upsert_from(table, cols, &last),
        Staged::Update => sql::update_from(table, cols, &last),
        Staged::Delete => sql::delete_using(table, &format!("SELECT {columns} FROM {STAGE}")),
    };
    tx.batch_execute(&statement).await?;
    tx.batch_execute(&format!("DROP TABLE {STAGE}")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_in_copy_text() {
        let text = |v: Json, kind| {
            let mut out = Vec::new();
            value(&mut out, Some(&v), kind);
            String::from_utf8(out).unwrap()
        };
        let s = ColumnKind::Scalar;
        assert_eq!(text(json!(null), s), "\\N");
        assert_eq!(text(json!("a\tb\\c\nd"), s), "a\\tb\\\\c\\nd");
        assert_eq!(text(json!(12.5), s), "12.5");
        assert_eq!(text(json!(true), s), "true");
        assert_eq!(text(json!({"a": 1}), s), "{\"a\":1}");
        let j = ColumnKind::Json;
        assert_eq!(text(json!("x"), j), "\"x\"", "a JSON string stays one");
        assert_eq!(text(json!({"a": "t\tb"}), j), "{\"a\":\"t\\\\tb\"}");
        let a = ColumnKind::Array {
            json_elements: false,
        };
        assert_eq!(
            text(json!(["a b", null, "q\"\\", 1, [2, 3]]), a),
            "{\"a b\",NULL,\"q\\\\\"\\\\\\\\\",1,{2,3}}"
        );
        assert_eq!(text(json!("{x,y}"), a), "{x,y}", "array text as given");
        let aj = ColumnKind::Array {
            json_elements: true,
        };
        assert_eq!(
            text(json!([{"k": 1}, null]), aj),
            "{\"{\\\\\"k\\\\\":1}\",NULL}"
        );
    }

    proptest::proptest! {
        #[test]
        fn text_comes_back_as_written(text in "\\PC{0,60}|[\\\\\t\n\r]{0,10}") {
            // What Postgres' COPY reads back (the snapshot's COPY parser reads the same format).
            let mut out = Vec::new();
            value(&mut out, Some(&Json::String(text.clone())), ColumnKind::Scalar);
            let back = crate::cdc::types::copy_field(&out).unwrap();
            proptest::prop_assert_eq!(std::str::from_utf8(&back).unwrap(), text.as_str());
            proptest::prop_assert!(!out.contains(&b'\t') && !out.contains(&b'\n'));
        }
    }
}

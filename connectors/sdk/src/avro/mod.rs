//! JSON ↔ Avro binary for records in flight, walking the parsed schema directly: no
//! intermediate `apache_avro::types::Value` per record (the generic path is ~10× slower than
//! serde_json). `apache-avro` parses the schemas; this module encodes and decodes the data.
//!
//! JSON mapping: records are objects (missing fields take their Avro default), unions take
//! the first branch the JSON value fits (`null` for null), enums are strings, bytes and
//! fixed are strings of code points 0–255, logical types travel as their underlying type.

//!
//! Two paths, one meaning. The lean path ([`Compiled::encode_json`], [`Compiled::write_json`])
//! streams JSON text to Avro binary and back with a plan compiled once per schema
//! (`plan`, `from_json`, `to_json`): no document tree, no allocation per record. The general
//! path ([`Compiled::encode`], [`Compiled::decode`]) goes through a `serde_json::Value`;
//! the lean path hands over to it whenever it cannot be sure (and for every value that does
//! not fit), so results and error messages are the general path's, always.

use std::cell::RefCell;
use std::collections::HashMap;

use apache_avro::schema::{Name, RecordField, Schema, UuidSchema};
use serde_json::{Map, Number, Value as Json};

mod from_json;
#[cfg(test)]
mod lean_tests;
mod plan;
mod to_json;

/// A schema ready to encode and decode with: its named types, for references, and the plan
/// the lean path walks.
pub struct Compiled {
    pub schema: Schema,
    names: HashMap<String, Schema>,
    plan: plan::Plan,
}

/// Why JSON text could not be written as Avro.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonToAvroError {
    /// The text is not JSON at all (serde_json's message).
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// The JSON does not fit the schema (where and why).
    #[error("{0}")]
    DoesNotFit(String),
}

thread_local! {
    /// What the lean path reuses across records: tasks run on threads of their own.
    static SCRATCH: RefCell<(from_json::Scratch, Vec<u8>)> = RefCell::default();
}

fn full(n: &Name) -> String {
    n.fullname(None)
}

fn collect(s: &Schema, out: &mut HashMap<String, Schema>) {
    match s {
        Schema::Record(r) => {
            if out.insert(full(&r.name), s.clone()).is_some() {
                return; // seen already: a recursive type
            }
            for f in &r.fields {
                collect(&f.schema, out);
            }
        }
        Schema::Enum(e) => {
            out.insert(full(&e.name), s.clone());
        }
        Schema::Fixed(f) => {
            out.insert(full(&f.name), s.clone());
        }
        Schema::Array(a) => collect(&a.items, out),
        Schema::Map(m) => collect(&m.types, out),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

impl Compiled {
    pub fn new(schema: Schema) -> Self {
        let mut names = HashMap::new();
        collect(&schema, &mut names);
        let mut compiled = Compiled {
            schema,
            names,
            plan: plan::Plan {
                nodes: Vec::new(),
                root: 0,
            },
        };
        compiled.plan = plan::Plan::new(&compiled);
        compiled
    }

    /// Appends the Avro encoding of the JSON `text` to `out`, streaming (see the module
    /// docs). On an error `out` is as it was.
    pub fn encode_json(&self, text: &[u8], out: &mut Vec<u8>) -> Result<(), JsonToAvroError> {
        let start = out.len();
        let lean = SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => from_json::encode(&self.plan, text, out, &mut s.0),
            Err(_) => Err(from_json::GiveUp),
        });
        if lean.is_ok() {
            return Ok(());
        }
        out.truncate(start);
        let v: Json =
            serde_json::from_slice(text).map_err(|e| JsonToAvroError::NotJson(e.to_string()))?;
        let done = self.encode(&v, out).map_err(JsonToAvroError::DoesNotFit);
        if done.is_err() {
            out.truncate(start);
        }
        done
    }

    /// Appends the JSON text of one Avro `datum` to `out`, streaming; byte for byte what
    /// serializing [`Compiled::decode`]'s value gives. On an error `out` is as it was.
    pub fn write_json(&self, datum: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        if to_json::write(&self.plan, datum, out).is_ok() {
            return Ok(());
        }
        out.truncate(start);
        let v = self.decode(datum)?;
        serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())
    }

    /// [`Compiled::conform`] from JSON text to JSON text, streaming.
    pub fn conform_json(&self, text: &[u8], out: &mut Vec<u8>) -> Result<(), JsonToAvroError> {
        let datum = SCRATCH.with(|s| s.try_borrow_mut().map(|mut s| std::mem::take(&mut s.1)));
        let mut datum = datum.unwrap_or_default();
        datum.clear();
        let done = self.encode_json(text, &mut datum).and_then(|()| {
            self.write_json(&datum, out)
                .map_err(JsonToAvroError::DoesNotFit)
        });
        SCRATCH.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                s.1 = datum;
            }
        });
        done
    }

    fn resolve<'a>(&'a self, s: &'a Schema) -> &'a Schema {
        match s {
            Schema::Ref { name } => self.names.get(&full(name)).unwrap_or(s),
            _ => s,
        }
    }

    /// Appends the Avro binary encoding of `v` to `out`.
    pub fn encode(&self, v: &Json, out: &mut Vec<u8>) -> Result<(), String> {
        self.enc(&self.schema, v, out, "")
    }

    /// `v` resolved to this schema, as Avro resolves a writer's datum to a reader schema:
    /// fields this schema lacks are dropped, fields it adds take their defaults, numbers
    /// are promoted, union branches re-chosen. Done by encoding with this schema and decoding
    /// the result, so exactly what this schema can hold comes out, or an error saying where
    /// the value does not fit. (Field aliases and enum defaults are not applied.)
    pub fn conform(&self, v: &Json) -> Result<Json, String> {
        let mut datum = Vec::with_capacity(64);
        self.encode(v, &mut datum)?;
        self.decode(&datum)
    }

    /// Decodes one datum into JSON.
    pub fn decode(&self, bytes: &[u8]) -> Result<Json, String> {
        let mut r = Reader { b: bytes, at: 0 };
        let v = self.dec(&self.schema, &mut r)?;
        if r.at != bytes.len() {
            return Err(format!("{} bytes left after the datum", bytes.len() - r.at));
        }
        Ok(v)
    }

    fn enc(&self, s: &Schema, v: &Json, out: &mut Vec<u8>, path: &str) -> Result<(), String> {
        let s = self.resolve(s);
        let mismatch = || {
            Err(format!(
                "{}: expected {}, found {}",
                if path.is_empty() { "/" } else { path },
                kind(s),
                short(v)
            ))
        };
        match s {
            Schema::Null => match v {
                Json::Null => Ok(()),
                _ => mismatch(),
            },
            Schema::Boolean => match v {
                Json::Bool(b) => {
                    out.push(*b as u8);
                    Ok(())
                }
                _ => mismatch(),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                match v.as_i64().filter(|i| i32::try_from(*i).is_ok()) {
                    Some(i) => {
                        put_long(out, i);
                        Ok(())
                    }
                    None => mismatch(),
                }
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => match v.as_i64() {
                Some(i) => {
                    put_long(out, i);
                    Ok(())
                }
                None => mismatch(),
            },
            Schema::Float => match v.as_f64() {
                Some(f) => {
                    out.extend_from_slice(&(f as f32).to_le_bytes());
                    Ok(())
                }
                None => mismatch(),
            },
            Schema::Double => match v.as_f64() {
                Some(f) => {
                    out.extend_from_slice(&f.to_le_bytes());
                    Ok(())
                }
                None => mismatch(),
            },
            Schema::String | Schema::Uuid(UuidSchema::String) => match v {
                Json::String(t) => {
                    put_long(out, t.len() as i64);
                    out.extend_from_slice(t.as_bytes());
                    Ok(())
                }
                _ => mismatch(),
            },
            Schema::Bytes
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes)
            | Schema::Decimal(_) => match v {
                Json::String(t) => {
                    let bytes: Vec<u8> = t.chars().map(|c| c as u32 as u8).collect();
                    put_long(out, bytes.len() as i64);
                    out.extend_from_slice(&bytes);
                    Ok(())
                }
                _ => mismatch(),
            },
            Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => {
                match v {
                    Json::String(t) if t.chars().count() == f.size => {
                        out.extend(t.chars().map(|c| c as u32 as u8));
                        Ok(())
                    }
                    _ => mismatch(),
                }
            }
            Schema::Array(a) => match v {
                Json::Array(items) => {
                    if !items.is_empty() {
                        put_long(out, items.len() as i64);
                        for (i, item) in items.iter().enumerate() {
                            self.enc(&a.items, item, out, &format!("{path}/{i}"))?;
                        }
                    }
                    out.push(0);
                    Ok(())
                }
                _ => mismatch(),
            },
            Schema::Map(m) => match v {
                Json::Object(entries) => {
                    if !entries.is_empty() {
                        put_long(out, entries.len() as i64);
                        for (k, item) in entries {
                            put_long(out, k.len() as i64);
                            out.extend_from_slice(k.as_bytes());
                            self.enc(&m.types, item, out, &format!("{path}/{k}"))?;
                        }
                    }
                    out.push(0);
                    Ok(())
                }
                _ => mismatch(),
            },
            Schema::Enum(e) => match v
                .as_str()
                .and_then(|t| e.symbols.iter().position(|s| s == t))
            {
                Some(i) => {
                    put_long(out, i as i64);
                    Ok(())
                }
                None => Err(format!(
                    "{path}: {} is not one of the symbols {:?}",
                    short(v),
                    e.symbols
                )),
            },
            Schema::Union(u) => {
                for (i, branch) in u.variants().iter().enumerate() {
                    let mut attempt = Vec::new();
                    if self.enc(branch, v, &mut attempt, path).is_ok() {
                        put_long(out, i as i64);
                        out.extend_from_slice(&attempt);
                        return Ok(());
                    }
                }
                mismatch()
            }
            Schema::Record(r) => match v {
                Json::Object(obj) => self.enc_fields(&r.fields, obj, out, path),
                _ => mismatch(),
            },
            Schema::Ref { name } => Err(format!("{path}: unknown named type {}", full(name))),
        }
    }

    fn enc_fields(
        &self,
        fields: &[RecordField],
        obj: &Map<String, Json>,
        out: &mut Vec<u8>,
        path: &str,
    ) -> Result<(), String> {
        for f in fields {
            let fpath = format!("{path}/{}", f.name);
            match (obj.get(&f.name), &f.default) {
                (Some(v), _) => self.enc(&f.schema, v, out, &fpath)?,
                (None, Some(d)) => self.enc(&f.schema, d, out, &fpath)?,
                (None, None) => {
                    return Err(format!("{fpath}: missing, and the field has no default"))
                }
            }
        }
        Ok(())
    }

    fn dec(&self, s: &Schema, r: &mut Reader<'_>) -> Result<Json, String> {
        let s = self.resolve(s);
        Ok(match s {
            Schema::Null => Json::Null,
            Schema::Boolean => Json::Bool(r.byte()? != 0),
            Schema::Int
            | Schema::Date
            | Schema::TimeMillis
            | Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Json::from(r.long()?),
            Schema::Float => Number::from_f64(f32::from_le_bytes(
                r.take(4)?.try_into().map_err(|_| "bad float")?,
            ) as f64)
            .map(Json::Number)
            .unwrap_or(Json::Null),
            Schema::Double => Number::from_f64(f64::from_le_bytes(
                r.take(8)?.try_into().map_err(|_| "bad double")?,
            ))
            .map(Json::Number)
            .unwrap_or(Json::Null),
            Schema::String | Schema::Uuid(UuidSchema::String) => {
                let n = r.len()?;
                Json::String(
                    std::str::from_utf8(r.take(n)?)
                        .map_err(|e| e.to_string())?
                        .to_string(),
                )
            }
            Schema::Bytes
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes)
            | Schema::Decimal(_) => {
                let n = r.len()?;
                Json::String(r.take(n)?.iter().map(|b| *b as char).collect())
            }
            Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => {
                Json::String(r.take(f.size)?.iter().map(|b| *b as char).collect())
            }
            Schema::Array(a) => {
                let mut items = Vec::new();
                loop {
                    let n = r.block_len()?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        items.push(self.dec(&a.items, r)?);
                    }
                }
                Json::Array(items)
            }
            Schema::Map(m) => {
                let mut map = Map::new();
                loop {
                    let n = r.block_len()?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        let kl = r.len()?;
                        let k = std::str::from_utf8(r.take(kl)?)
                            .map_err(|e| e.to_string())?
                            .to_string();
                        map.insert(k, self.dec(&m.types, r)?);
                    }
                }
                Json::Object(map)
            }
            Schema::Enum(e) => {
                let i = r.long()?;
                Json::String(
                    e.symbols
                        .get(usize::try_from(i).map_err(|_| "negative enum index")?)
                        .ok_or("enum index out of range")?
                        .clone(),
                )
            }
            Schema::Union(u) => {
                let i = usize::try_from(r.long()?).map_err(|_| "negative union index")?;
                let branch = u.variants().get(i).ok_or("union index out of range")?;
                self.dec(branch, r)?
            }
            Schema::Record(rec) => {
                let mut obj = Map::new();
                for f in &rec.fields {
                    obj.insert(f.name.clone(), self.dec(&f.schema, r)?);
                }
                Json::Object(obj)
            }
            Schema::Ref { name } => return Err(format!("unknown named type {}", full(name))),
        })
    }
}

fn kind(s: &Schema) -> String {
    match s {
        Schema::Record(r) => format!("record {}", full(&r.name)),
        Schema::Union(_) => "one of the union's types".into(),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

fn short(v: &Json) -> String {
    let t = v.to_string();
    if t.len() > 40 {
        format!(
            "{}…",
            &t[..t.char_indices().nth(40).map(|(i, _)| i).unwrap_or(t.len())]
        )
    } else {
        t
    }
}

/// `out.extend_from_slice(s)` without a call for the short slices records are made of (keys,
/// names, codes: up to 32 bytes), with two overlapping loads and stores.
#[inline]
pub(crate) fn extend_short(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n > 32 {
        out.extend_from_slice(s);
        return;
    }
    out.reserve(n);
    let src = s.as_ptr();
    // SAFETY: `n` bytes of spare capacity were just reserved, and every store below lands in
    // `len..len + n` (the second of each pair ends exactly at `n`); loads stay inside `s`
    // for the same reason. Unaligned reads and writes of plain integers need nothing more.
    unsafe {
        use std::ptr::{read_unaligned as get, write_unaligned as put};
        let dst = out.as_mut_ptr().add(out.len());
        if n >= 16 {
            put(dst.cast::<u128>(), get(src.cast::<u128>()));
            put(
                dst.add(n - 16).cast::<u128>(),
                get(src.add(n - 16).cast::<u128>()),
            );
        } else if n >= 8 {
            put(dst.cast::<u64>(), get(src.cast::<u64>()));
            put(
                dst.add(n - 8).cast::<u64>(),
                get(src.add(n - 8).cast::<u64>()),
            );
        } else if n >= 4 {
            put(dst.cast::<u32>(), get(src.cast::<u32>()));
            put(
                dst.add(n - 4).cast::<u32>(),
                get(src.add(n - 4).cast::<u32>()),
            );
        } else {
            for i in 0..n {
                *dst.add(i) = *src.add(i);
            }
        }
        out.set_len(out.len() + n);
    }
}

/// Appends an Avro `long` (zig-zag varint), as object container files need for their
/// block headers too.
#[inline]
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    if z < 0x80 {
        out.push(z as u8); // most lengths and small numbers
    } else {
        put_varint(out, z);
    }
}

fn put_varint(out: &mut Vec<u8>, mut z: u64) {
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.at).ok_or("datum ends early")?;
        self.at += 1;
        Ok(v)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or("datum ends early")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    #[inline]
    fn long(&mut self) -> Result<i64, String> {
        // One byte (small numbers, most lengths) without the loop.
        if let Some(&b) = self.b.get(self.at).filter(|&&b| b < 0x80) {
            self.at += 1;
            return Ok(((b >> 1) as i64) ^ -((b & 1) as i64));
        }
        self.long_slow()
    }
    fn long_slow(&mut self) -> Result<i64, String> {
        let (mut z, mut shift) = (0u64, 0);
        loop {
            let b = self.byte()?;
            if shift > 63 {
                return Err("varint too long".into());
            }
            z |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }
    fn len(&mut self) -> Result<usize, String> {
        usize::try_from(self.long()?).map_err(|_| "negative length".to_string())
    }
    /// Array and map blocks; a negative count is followed by the block's byte size.
    fn block_len(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        if n < 0 {
            self.long()?;
        }
        Ok(n.unsigned_abs() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compiled(s: &str) -> Compiled {
        Compiled::new(Schema::parse_str(s).unwrap())
    }

    const ORDER: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"long"},{"name":"customer","type":"string"},
        {"name":"amount","type":"double"},{"name":"tags","type":{"type":"array","items":"string"},"default":[]},
        {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]},"default":"NEW"},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"attrs","type":{"type":"map","values":"int"},"default":{}}]}"#;

    #[test]
    fn round_trip_matches_apache_avro() {
        let c = compiled(ORDER);
        let v = json!({"id": 7, "customer": "ada", "amount": 12.5, "tags": ["a", "b"], "status": "PAID", "note": "hi", "attrs": {"x": 1}});
        let mut bytes = Vec::new();
        c.encode(&v, &mut bytes).unwrap();
        assert_eq!(c.decode(&bytes).unwrap(), v);
        // apache-avro reads what we wrote.
        let read = apache_avro::reader::datum::GenericDatumReader::builder(&c.schema)
            .build()
            .unwrap()
            .read_value(&mut &bytes[..])
            .unwrap();
        assert!(matches!(read, apache_avro::types::Value::Record(_)));
    }

    #[test]
    fn defaults_fill_missing_fields_and_mismatches_say_where() {
        let c = compiled(ORDER);
        let mut bytes = Vec::new();
        c.encode(&json!({"id": 1, "customer": "c", "amount": 1}), &mut bytes)
            .unwrap();
        assert_eq!(
            c.decode(&bytes).unwrap(),
            json!({"id": 1, "customer": "c", "amount": 1.0, "tags": [], "status": "NEW", "note": null, "attrs": {}})
        );
        let err = c
            .encode(
                &json!({"id": "seven", "customer": "c", "amount": 1}),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(err.starts_with("/id: expected"), "{err}");
        let err = c
            .encode(&json!({"id": 1, "amount": 1}), &mut Vec::new())
            .unwrap_err();
        assert_eq!(err, "/customer: missing, and the field has no default");
        assert!(
            c.decode(&[0x02]).is_err(),
            "truncated data is an error, not a panic"
        );
    }
}

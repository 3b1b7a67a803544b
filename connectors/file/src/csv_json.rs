//! CSV ↔ JSON for the file connectors, without a document tree per line.
//!
//! - [`CsvToJson`] (the source): a CSV line becomes a JSON object keyed by the header's
//!   columns, written straight into a buffer.
//! - [`CsvRows`] (the sink): a JSON object becomes a CSV row under a header of its keys.
//!
//! Both write exactly what the general path writes (the `csv` crate's reader and writer with
//! RFC 4180 quoting, serde_json's objects with their keys in order) and hand to that path
//! what they cannot be sure of: lines that are not UTF-8, a header with a repeated name,
//! values with escapes or repeated keys. So the messages for bad input are the general
//! path's. What this module must not do: read or write files, or decide what a bad line
//! becomes (the source and sink do).
//!
//! ```
//! use sluice_connector_file::csv_json::{CsvRows, CsvToJson};
//! let mut to_json = CsvToJson::new(vec!["id".into(), "note".into()]);
//! let mut json = Vec::new();
//! to_json.object(br#"7,"a, b""#, &mut json).unwrap();
//! assert_eq!(json, br#"{"id":"7","note":"a, b"}"#);
//!
//! let mut rows = CsvRows::default();
//! rows.row(Some(&json), || "t-0 offset 0".into()).unwrap();
//! assert_eq!(rows.row, b"7,\"a, b\"\n");
//! assert!(rows.same_columns(&["id".to_string(), "note".to_string()]));
//! ```

use sluice_connector_sdk::connector::ConnectorError;
use sluice_connector_sdk::json::{object_cells, write_string, write_text, Member};

/// Fields of one CSV line (RFC 4180 quoting) read by the `csv` crate, or why it cannot be
/// read: the general path, and how header rows are read.
pub fn csv_fields(line: &[u8]) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line);
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(record.iter().map(str::to_string).collect()),
        Ok(false) => Ok(Vec::new()),
        Err(e) => Err(format!("malformed CSV line: {e}")),
    }
}

/// CSV lines of one file → JSON objects keyed by its header's column names.
pub struct CsvToJson {
    names: Vec<String>,
    /// Each column's `"name":` (a comma before it for all but the first), one after another.
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    /// A name appears twice: a JSON object keeps one of them, the general path decides.
    repeated: bool,
    reader: csv_core::Reader,
    /// One field's unquoted bytes.
    field: Vec<u8>,
}

impl CsvToJson {
    pub fn new(names: Vec<String>) -> Self {
        let (mut keys, mut key_ends) = (Vec::new(), Vec::new());
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                keys.push(b',');
            }
            write_string(name, &mut keys);
            keys.push(b':');
            key_ends.push(keys.len());
        }
        let repeated = names
            .iter()
            .enumerate()
            .any(|(i, n)| names[..i].contains(n));
        CsvToJson {
            names,
            keys,
            key_ends,
            repeated,
            // The `csv` crate's defaults: `,`, `"` doubled inside quotes, CR and LF end records.
            reader: csv_core::Reader::new(),
            field: Vec::new(),
        }
    }

    /// Appends the JSON object of one line (its ending taken off) to `out`; or why the line
    /// is not a row of this header, with `out` as it was.
    pub fn object(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        // A BOM starts every text the `csv` crate reads anew: it strips it, so does the
        // general path here.
        if self.repeated || line.starts_with(b"\xef\xbb\xbf") || !is_utf8(line) {
            return self.object_by_csv_crate(line, out);
        }
        let start = out.len();
        out.push(b'{');
        if memchr::memchr2(b'"', b'\r', line).is_none() {
            // No quotes and no CR: the fields are what lies between the commas, as csv-core
            // reads them (an empty line has none), with no copy.
            let mut fields = 0;
            if !line.is_empty() {
                let mut from = 0;
                for end in memchr::memchr_iter(b',', line).chain([line.len()]) {
                    self.put_field(fields, &line[from..end], out);
                    fields += 1;
                    from = end + 1;
                }
            }
            return self.close(fields, start, out);
        }
        if self.field.len() < line.len() + 1 {
            self.field.resize(line.len() + 1, 0);
        }
        self.reader.reset();
        let (mut input, mut at, mut fields) = (line, 0, 0);
        loop {
            let (result, read, wrote) = self.reader.read_field(input, &mut self.field[at..]);
            input = &input[read..];
            at += wrote;
            match result {
                // The whole line was read: the next call's empty input says it ends there
                // (and an end already said has nothing more to give).
                csv_core::ReadFieldResult::InputEmpty if read == 0 && input.is_empty() => break,
                csv_core::ReadFieldResult::InputEmpty => {}
                csv_core::ReadFieldResult::OutputFull => {
                    let grown = self.field.len() * 2;
                    self.field.resize(grown, 0);
                }
                csv_core::ReadFieldResult::Field { record_end } => {
                    let field = std::mem::take(&mut self.field);
                    self.put_field(fields, &field[..at], out);
                    self.field = field;
                    fields += 1;
                    at = 0;
                    if record_end {
                        break;
                    }
                }
                csv_core::ReadFieldResult::End => break,
            }
        }
        self.close(fields, start, out)
    }

    /// Field `i`'s key and value (text the line's UTF-8 check covers: only ASCII quotes
    /// were taken out of it); fields past the header's are counted, not written.
    #[inline]
    fn put_field(&self, i: usize, field: &[u8], out: &mut Vec<u8>) {
        if let Some(&end) = self.key_ends.get(i) {
            let from = if i == 0 { 0 } else { self.key_ends[i - 1] };
            out.extend_from_slice(&self.keys[from..end]);
            write_text(field, out);
        }
    }

    fn close(&self, fields: usize, start: usize, out: &mut Vec<u8>) -> Result<(), String> {
        if fields != self.names.len() {
            out.truncate(start);
            return Err(field_count(fields, self.names.len()));
        }
        out.push(b'}');
        Ok(())
    }

    /// [`CsvToJson::object`] by the `csv` crate and serde_json.
    fn object_by_csv_crate(&self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let fields = csv_fields(line)?;
        if fields.len() != self.names.len() {
            return Err(field_count(fields.len(), self.names.len()));
        }
        let object: serde_json::Map<String, serde_json::Value> = self
            .names
            .iter()
            .cloned()
            .zip(fields.into_iter().map(serde_json::Value::String))
            .collect();
        serde_json::to_writer(out, &object).map_err(|e| e.to_string())
    }
}

fn field_count(got: usize, want: usize) -> String {
    format!("CSV line has {got} fields, the header has {want}")
}

fn is_utf8(b: &[u8]) -> bool {
    b.is_ascii() || std::str::from_utf8(b).is_ok()
}

/// JSON objects → CSV rows, in reused buffers.
#[derive(Default)]
pub struct CsvRows {
    /// The last row made, newline included.
    pub row: Vec<u8>,
    /// Its columns' names, one after another, and where each ends.
    names: Vec<u8>,
    name_ends: Vec<usize>,
    cells: Vec<u8>,
    members: Vec<Member>,
}

impl CsvRows {
    /// Makes the row of a record's value (a JSON object) in [`CsvRows::row`], its keys
    /// the columns; or why the value has no row (`where_` names the record).
    pub fn row(
        &mut self,
        value: Option<&[u8]>,
        where_: impl Fn() -> String,
    ) -> Result<(), ConnectorError> {
        let Some(value) = value else {
            return Err(ConnectorError::bad_record(format!(
                "`format: csv` has no row for a tombstone (null value) at {}; drop tombstones with a `filter` transform and the `record_is_tombstone` predicate",
                where_()
            )));
        };
        self.cells.clear();
        self.names.clear();
        self.name_ends.clear();
        if object_cells(value, &mut self.cells, &mut self.members) {
            for m in &self.members {
                self.names
                    .extend_from_slice(&value[m.key.0 as usize..m.key.1 as usize]);
                self.name_ends.push(self.names.len());
            }
            let (cells, members) = (&self.cells, &self.members);
            write_row(
                members
                    .iter()
                    .map(|m| &cells[m.cell.0 as usize..m.cell.1 as usize]),
                &mut self.row,
            );
            return Ok(());
        }
        // The general path: serde_json's tree, and its messages.
        let object = match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(other) => {
                return Err(ConnectorError::bad_record(format!(
                    "`format: csv` writes JSON objects as rows; the value at {} is {}",
                    where_(),
                    kind(&other)
                )))
            }
            Err(e) => {
                return Err(ConnectorError::bad_record(format!(
                    "`format: csv` writes JSON objects as rows; the value at {} is not JSON: {e}",
                    where_()
                )))
            }
        };
        let mut cell_ends = Vec::with_capacity(object.len());
        for (name, v) in &object {
            self.names.extend_from_slice(name.as_bytes());
            self.name_ends.push(self.names.len());
            match v {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => self.cells.extend_from_slice(s.as_bytes()),
                other => self.cells.extend_from_slice(other.to_string().as_bytes()),
            }
            cell_ends.push(self.cells.len());
        }
        let cells = &self.cells;
        write_row(
            cell_ends.iter().scan(0, |from, &end| {
                Some(&cells[std::mem::replace(from, end)..end])
            }),
            &mut self.row,
        );
        Ok(())
    }

    /// Whether the last row's columns are `columns` (those of the file being written).
    pub fn same_columns(&self, columns: &[String]) -> bool {
        columns.len() == self.name_ends.len()
            && self.columns_iter().eq(columns.iter().map(|c| c.as_bytes()))
    }

    /// The last row's columns, for a new file's header.
    pub fn columns(&self) -> Vec<String> {
        self.columns_iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }

    fn columns_iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.name_ends.iter().scan(0, |from, &end| {
            Some(&self.names[std::mem::replace(from, end)..end])
        })
    }
}

/// One CSV row of `cells` into `row` (cleared first), `\n` at its end, quoted as the `csv`
/// crate's writer quotes (`QuoteStyle::Necessary`): a cell with a comma, a quote, CR or LF
/// goes in quotes with its quotes doubled, and a row of no bytes at all is `""`.
pub fn write_row<'a>(cells: impl Iterator<Item = &'a [u8]>, row: &mut Vec<u8>) {
    row.clear();
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            row.push(b',');
        }
        if !needs_quotes(cell) {
            row.extend_from_slice(cell);
            continue;
        }
        row.push(b'"');
        let mut from = 0;
        for at in memchr::memchr_iter(b'"', cell) {
            row.extend_from_slice(&cell[from..=at]);
            row.push(b'"');
            from = at + 1;
        }
        row.extend_from_slice(&cell[from..]);
        row.push(b'"');
    }
    if row.is_empty() {
        row.extend_from_slice(b"\"\"");
    }
    row.push(b'\n');
}

/// Whether a cell holds a comma, a quote, CR or LF: eight bytes at a time.
#[inline]
fn needs_quotes(cell: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has = |w: u64, b: u8| {
        let x = w ^ (ONES * b as u64);
        x.wrapping_sub(ONES) & !x & HIGH
    };
    let mut chunks = cell.chunks_exact(8);
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if has(w, b',') | has(w, b'"') | has(w, b'\r') | has(w, b'\n') != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;

use super::*;
use proptest::prelude::*;

/// What the source made of a CSV line before this module: the `csv` crate's fields, then a
/// serde_json object of the header's names.
fn object_by_tree(names: &[String], line: &[u8]) -> Result<String, String> {
    let fields = csv_fields(line)?;
    if fields.len() != names.len() {
        return Err(field_count(fields.len(), names.len()));
    }
    let object: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .cloned()
        .zip(fields.into_iter().map(serde_json::Value::String))
        .collect();
    Ok(serde_json::Value::Object(object).to_string())
}

/// What the sink made of a value before this module: serde_json's tree, its cells, the
/// `csv` crate's writer.
fn row_by_tree(value: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let serde_json::Value::Object(o) = serde_json::from_slice(value).ok()? else {
        return None;
    };
    let cells: Vec<String> = o
        .values()
        .map(|v| match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    Some((csv_writer_row(&cells), o.keys().cloned().collect()))
}

fn csv_writer_row(cells: &[String]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(cells).unwrap();
    writer.into_inner().unwrap()
}

#[test]
fn lines_and_rows_of_every_kind() {
    let names: Vec<String> = ["id", "note"].map(String::from).to_vec();
    let mut to_json = CsvToJson::new(names.clone());
    for line in [
        &b"1,x"[..],
        b"\"1\",\"a \"\"q\"\" b\"",
        b"1,",
        b",",
        b"1,x\rjunk",
        b"1",
        b"1,2,3",
        b"",
        b"\xef\xbb\xbf1,x",
        b"1,\xff",
        b"1,\"tab\there\\\"",
        b"1,\"open",
    ] {
        let mut out = b"kept".to_vec();
        let got = to_json.object(line, &mut out);
        let want = object_by_tree(&names, line);
        match (&got, &want) {
            (Ok(()), Ok(w)) => assert_eq!(out[4..], *w.as_bytes(), "{line:?}"),
            (Err(a), Err(b)) => {
                assert_eq!(a, b);
                assert_eq!(out, b"kept");
            }
            _ => panic!("{line:?}: {got:?} vs {want:?}"),
        }
    }
    // A repeated name: the object keeps one key, as serde_json's map does.
    let mut repeated = CsvToJson::new(["a", "a"].map(String::from).to_vec());
    let mut out = Vec::new();
    repeated.object(b"1,2", &mut out).unwrap();
    assert_eq!(out, br#"{"a":"2"}"#);

    let mut rows = CsvRows::default();
    for (value, row) in [
        (
            &br#"{"a":"x","b":null,"c":[1,2.50],"d":"say \"hi\", then go"}"#[..],
            &b"x,,\"[1,2.5]\",\"say \"\"hi\"\", then go\"\n"[..],
        ),
        (br#"{"a":""}"#, b"\"\"\n"),
        (br#"{}"#, b"\"\"\n"),
        (br#"{"a":"","b":""}"#, b",\n"),
        (br#"{"a":"\u00e9\n"}"#, "\"é\n\"\n".as_bytes()),
        (br#"{"a":1,"a":2}"#, b"2\n"),
        (br#"{"a":true,"b":-0,"c":1e300}"#, b"true,-0.0,1e+300\n"),
    ] {
        rows.row(Some(value), || "t-0 offset 1".into())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&rows.row),
            String::from_utf8_lossy(row),
            "{}",
            String::from_utf8_lossy(value)
        );
        let (want, columns) = row_by_tree(value).unwrap();
        assert_eq!(rows.row, want);
        assert!(rows.same_columns(&columns));
        assert_eq!(rows.columns(), columns);
    }
    for (value, message) in [
        (Some(&b"[1]"[..]), "the value at t-0 offset 1 is an array"),
        (
            Some(b"{oops"),
            "the value at t-0 offset 1 is not JSON: key must be a string",
        ),
        (None, "no row for a tombstone (null value) at t-0 offset 1"),
    ] {
        let e = rows.row(value, || "t-0 offset 1".into()).unwrap_err();
        assert!(e.to_string().contains(message), "{e}");
    }
}

proptest! {
    /// Any line, any header: the same object, or the same error, as the `csv` crate and
    /// serde_json give.
    #[test]
    fn lines_become_what_the_csv_crate_and_serde_json_make_of_them(
        line in "[ab,\" \r\t\\\\\u{e9}\u{1}\u{feff}]{0,24}",
        width in 1usize..4,
        repeat in any::<bool>(),
    ) {
        let names: Vec<String> = (0..width)
            .map(|i| if repeat && i == 1 { "c0".to_string() } else { format!("c{i}\"") })
            .collect();
        let mut to_json = CsvToJson::new(names.clone());
        // And the line without quotes and CRs, which takes the path that splits at commas.
        for line in [line.clone(), line.replace(['"', '\r'], "")] {
            let mut out = b"kept".to_vec();
            let got = to_json.object(line.as_bytes(), &mut out);
            match (got, object_by_tree(&names, line.as_bytes())) {
                (Ok(()), Ok(want)) => prop_assert_eq!(String::from_utf8_lossy(&out[4..]), want),
                (Err(a), Err(b)) => {
                    prop_assert_eq!(a, b);
                    prop_assert_eq!(&out, b"kept");
                }
                (a, b) => prop_assert!(false, "{:?}: {:?} vs {:?}", line, a, b),
            }
        }
    }

    /// Rows of any cells: what the `csv` crate's writer writes.
    #[test]
    fn rows_are_the_csv_writers(cells in prop::collection::vec("[a,\"\r\n \u{e9}]{0,3}|[ab\u{e9}]{0,20}[,\"\r\n]?[ab]{0,4}", 0..4)) {
        let mut row = Vec::new();
        write_row(cells.iter().map(|c| c.as_bytes()), &mut row);
        if cells.is_empty() {
            prop_assert_eq!(row, b"\"\"\n".to_vec());
        } else {
            let want = csv_writer_row(&cells);
            prop_assert_eq!(String::from_utf8_lossy(&row), String::from_utf8_lossy(&want));
        }
    }

    /// Objects of any shape: the row and columns the tree gave.
    #[test]
    fn objects_become_the_rows_the_tree_made(
        text in "\\{(\"[ab]\":(\"[a,\"\r\n]{0,3}\"|-?[0-9]{1,3}(\\.[0-9]{1,2})?|null|true|\\[1, \"x\"\\]|\\{\"k\": 2.50\\}),){0,3}\"z\":0\\}",
    ) {
        let mut rows = CsvRows::default();
        let made = rows.row(Some(text.as_bytes()), || "t-0 offset 1".into());
        match row_by_tree(text.as_bytes()) {
            Some((want, columns)) => {
                prop_assert!(made.is_ok(), "{}", text);
                prop_assert_eq!(String::from_utf8_lossy(&rows.row), String::from_utf8_lossy(&want), "{}", text);
                prop_assert_eq!(rows.columns(), columns);
            }
            None => prop_assert!(made.is_err(), "{}", text),
        }
    }
}

//! A row as the sink holds it between reading a record and writing it: the fields in the
//! record's order, found by name with a short scan.
//!
//! Rows have tens of fields. `serde_json::Map` (an `IndexMap` with SipHash here, as the
//! workspace keeps JSON objects in order) hashed every field name of every record and grew
//! its tables field by field: reading records into maps was the largest cost of the sink.
//! A row is read straight from the record's JSON into a list sized for it.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value as Json};

/// The fields of one row (a name appears once; the last one read wins, as in JSON maps).
#[derive(Debug, Clone, Default)]
pub struct Row(Vec<(String, Json)>);

/// Rows are equal when they hold the same fields, in any order (as JSON objects are).
impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Row {
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Json> {
        self.0.iter_mut().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// Sets `name` (in place if the row has it, else last).
    pub fn insert(&mut self, name: String, value: Json) {
        match self.get_mut(&name) {
            Some(v) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Json> {
        let at = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(at).1)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Json)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The row as a JSON object (for the statement path, which sends rows as JSON).
    pub fn to_json(&self) -> Json {
        Json::Object(self.0.iter().cloned().collect())
    }

    /// A JSON document read as a row, or as the value it is when it is not an object.
    pub fn parse(bytes: &[u8]) -> Result<Result<Row, Json>, serde_json::Error> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return serde_json::from_slice(bytes).map(Err);
        }
        serde_json::from_slice(bytes).map(Ok)
    }
}

impl From<Map<String, Json>> for Row {
    fn from(map: Map<String, Json>) -> Row {
        Row(map.into_iter().collect())
    }
}

impl FromIterator<(String, Json)> for Row {
    fn from_iter<I: IntoIterator<Item = (String, Json)>>(iter: I) -> Row {
        let mut row = Row::default();
        row.extend(iter);
        row
    }
}

impl Extend<(String, Json)> for Row {
    fn extend<I: IntoIterator<Item = (String, Json)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Row {
    type Item = (String, Json);
    type IntoIter = std::vec::IntoIter<(String, Json)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Row {
    type Item = (&'a String, &'a Json);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Json)>,
        fn(&'a (String, Json)) -> (&'a String, &'a Json),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Row, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = Row;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Row, A::Error> {
                let mut fields = Vec::with_capacity(access.size_hint().unwrap_or(16));
                while let Some((k, v)) = access.next_entry::<String, Json>()? {
                    fields.push((k, v));
                }
                // A name twice is rare: only then is the row rebuilt, keeping the last.
                let repeated = fields
                    .iter()
                    .enumerate()
                    .any(|(i, (k, _))| fields[..i].iter().any(|(seen, _)| seen == k));
                Ok(match repeated {
                    false => Row(fields),
                    true => fields.into_iter().collect(),
                })
            }
        }
        deserializer.deserialize_map(RowVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_read_like_json_objects() {
        let row = Row::parse(br#" {"id": 1, "note": "a", "id": 2, "n": {"x": [1]}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(row.get("id"), Some(&json!(2)), "the last one wins");
        assert_eq!(row.keys().collect::<Vec<_>>(), ["id", "note", "n"]);
        assert_eq!(
            row.to_json(),
            json!({"id": 2, "note": "a", "n": {"x": [1]}})
        );
        assert_eq!(Row::parse(b"[1, 2]").unwrap(), Err(json!([1, 2])));
        assert_eq!(Row::parse(b"7").unwrap(), Err(json!(7)));
        assert!(Row::parse(b"{\"id\": ").is_err());
        assert!(Row::parse(b"[1,").is_err());
        let mut row = row;
        row.insert("note".into(), json!("b"));
        row.insert("z".into(), json!(null));
        assert_eq!(row.remove("id"), Some(json!(2)));
        assert_eq!(
            row.to_json(),
            json!({"note": "b", "n": {"x": [1]}, "z": null})
        );
    }

    proptest::proptest! {
        /// Whatever object serde_json reads, a row reads the same fields.
        #[test]
        fn a_row_holds_what_a_map_holds(
            fields in proptest::collection::vec(("[a-c]{1,2}", proptest::option::of(-5i64..5)), 0..12)
        ) {
            let text = format!(
                "{{{}}}",
                fields
                    .iter()
                    .map(|(k, v)| format!("\"{k}\":{}", v.map_or("null".into(), |n| n.to_string())))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let map: Map<String, Json> = serde_json::from_str(&text).unwrap();
            let row = Row::parse(text.as_bytes()).unwrap().unwrap();
            proptest::prop_assert_eq!(row.to_json(), Json::Object(map.clone()));
            proptest::prop_assert_eq!(row, Row::from(map));
        }
    }
}

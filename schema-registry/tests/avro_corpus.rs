//! A table of reader/writer pairs from the Avro specification's schema-resolution rules and
//! Avro Java's compatibility tests, with the verdict the specification (and Confluent) gives.
//! Cases where `apache-avro` 0.22's own checker disagrees are named `apache_avro_gap_*`.

use apache_avro::Schema;
use sluice_schema_registry::compat::{can_read, incompatibilities, IncompatibilityKind as K};
use sluice_schema_registry::levels::{check, CompatibilityLevel, Direction};

fn parse(s: &str) -> Schema {
    Schema::parse_str(s).unwrap_or_else(|e| panic!("test schema does not parse: {e}\n{s}"))
}

/// `None` = the reader can read the writer; `Some(kind)` = the first incompatibility's kind.
fn verdict(reader: &str, writer: &str) -> Option<K> {
    incompatibilities(&parse(reader), &parse(writer))
        .first()
        .map(|i| i.kind)
}

const RECORD_A: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;

#[test]
fn primitives_and_promotions() {
    let ok = [
        ("\"int\"", "\"int\""),
        ("\"long\"", "\"int\""),
        ("\"float\"", "\"int\""),
        ("\"float\"", "\"long\""),
        ("\"double\"", "\"int\""),
        ("\"double\"", "\"long\""),
        ("\"double\"", "\"float\""),
        ("\"string\"", "\"bytes\""),
        ("\"bytes\"", "\"string\""),
        ("\"null\"", "\"null\""),
        ("\"boolean\"", "\"boolean\""),
    ];
    for (r, w) in ok {
        assert_eq!(verdict(r, w), None, "{r} reading {w}");
    }
    let bad = [
        ("\"int\"", "\"long\""),
        ("\"long\"", "\"float\""),
        ("\"float\"", "\"double\""),
        ("\"int\"", "\"string\""),
        ("\"boolean\"", "\"int\""),
        ("\"null\"", "\"int\""),
        ("\"string\"", "\"int\""),
    ];
    for (r, w) in bad {
        assert_eq!(verdict(r, w), Some(K::TypeMismatch), "{r} reading {w}");
    }
}

#[test]
fn arrays_and_maps_compare_their_items() {
    assert_eq!(
        verdict(
            r#"{"type":"array","items":"long"}"#,
            r#"{"type":"array","items":"int"}"#
        ),
        None
    );
    assert_eq!(
        verdict(
            r#"{"type":"array","items":"int"}"#,
            r#"{"type":"array","items":"long"}"#
        ),
        Some(K::TypeMismatch)
    );
    assert_eq!(
        verdict(
            r#"{"type":"map","values":"double"}"#,
            r#"{"type":"map","values":"float"}"#
        ),
        None
    );
    assert_eq!(
        verdict(
            r#"{"type":"map","values":"int"}"#,
            r#"{"type":"array","items":"int"}"#
        ),
        Some(K::TypeMismatch)
    );
    let errs = incompatibilities(
        &parse(r#"{"type":"array","items":"int"}"#),
        &parse(r#"{"type":"array","items":"long"}"#),
    );
    assert_eq!(errs[0].location, "/items");
}

#[test]
fn enums_need_every_writer_symbol_or_a_reader_default() {
    let ab = r#"{"type":"enum","name":"E","symbols":["A","B"]}"#;
    let abc = r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#;
    let ab_default = r#"{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}"#;
    assert_eq!(verdict(abc, ab), None, "adding symbols is readable");
    assert_eq!(verdict(ab, abc), Some(K::MissingEnumSymbols));
    assert_eq!(
        verdict(ab_default, abc),
        None,
        "an enum default reads unknown symbols"
    );
    assert_eq!(
        verdict(r#"{"type":"enum","name":"Other","symbols":["A","B"]}"#, ab),
        Some(K::NameMismatch)
    );
}

#[test]
fn fixed_needs_same_name_and_size() {
    assert_eq!(
        verdict(
            r#"{"type":"fixed","name":"F","size":4}"#,
            r#"{"type":"fixed","name":"F","size":4}"#
        ),
        None
    );
    assert_eq!(
        verdict(
            r#"{"type":"fixed","name":"F","size":4}"#,
            r#"{"type":"fixed","name":"F","size":8}"#
        ),
        Some(K::FixedSizeMismatch)
    );
    assert_eq!(
        verdict(
            r#"{"type":"fixed","name":"G","size":4}"#,
            r#"{"type":"fixed","name":"F","size":4}"#
        ),
        Some(K::NameMismatch)
    );
}

#[test]
fn record_fields_added_and_removed() {
    let a_b_default = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}]}"#;
    let a_b = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}"#;
    assert_eq!(
        verdict(a_b_default, RECORD_A),
        None,
        "a new field with a default"
    );
    assert_eq!(
        verdict(a_b, RECORD_A),
        Some(K::ReaderFieldMissingDefaultValue),
        "a new field without a default"
    );
    assert_eq!(
        verdict(RECORD_A, a_b),
        None,
        "the writer's extra field is skipped"
    );
    let errs = incompatibilities(&parse(a_b), &parse(RECORD_A));
    assert_eq!(errs[0].location, "/fields/1");
    assert!(errs[0].message.contains("'b'"), "{}", errs[0].message);
    // A field's type must resolve too; the location points at it.
    let a_string = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    let errs = incompatibilities(&parse(a_string), &parse(RECORD_A));
    assert_eq!(
        (errs[0].kind, errs[0].location.as_str()),
        (K::TypeMismatch, "/fields/0/type")
    );
}

#[test]
fn every_incompatibility_is_reported_not_just_the_first() {
    let reader = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"},{"name":"c","type":"long"}]}"#;
    let errs = incompatibilities(&parse(reader), &parse(RECORD_A));
    let kinds: Vec<K> = errs.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            K::TypeMismatch,
            K::ReaderFieldMissingDefaultValue,
            K::ReaderFieldMissingDefaultValue
        ]
    );
}

#[test]
fn field_aliases_match_renamed_fields() {
    let renamed =
        r#"{"type":"record","name":"R","fields":[{"name":"alpha","type":"int","aliases":["a"]}]}"#;
    assert_eq!(verdict(renamed, RECORD_A), None);
    let renamed_no_alias =
        r#"{"type":"record","name":"R","fields":[{"name":"alpha","type":"int"}]}"#;
    assert_eq!(
        verdict(renamed_no_alias, RECORD_A),
        Some(K::ReaderFieldMissingDefaultValue)
    );
}

#[test]
fn names_compare_unqualified_and_namespaces_may_change() {
    let ns1 =
        r#"{"type":"record","name":"R","namespace":"one","fields":[{"name":"a","type":"int"}]}"#;
    let ns2 =
        r#"{"type":"record","name":"R","namespace":"two","fields":[{"name":"a","type":"int"}]}"#;
    assert_eq!(verdict(ns1, ns2), None);
    let other = r#"{"type":"record","name":"S","fields":[{"name":"a","type":"int"}]}"#;
    assert_eq!(verdict(other, RECORD_A), Some(K::NameMismatch));
}

#[test]
fn apache_avro_gap_record_name_aliases() {
    // The reader renamed the record and kept the old name as an alias: readable (Avro spec,
    // Java). apache-avro 0.22 ignores aliases on record names.
    let renamed = r#"{"type":"record","name":"NewR","namespace":"ns","aliases":["R"],"fields":[{"name":"a","type":"int"}]}"#;
    let old =
        r#"{"type":"record","name":"R","namespace":"ns","fields":[{"name":"a","type":"int"}]}"#;
    assert_eq!(verdict(renamed, old), None, "namespace-relative alias");
    let renamed_full = r#"{"type":"record","name":"NewR","namespace":"ns","aliases":["ns.R"],"fields":[{"name":"a","type":"int"}]}"#;
    assert_eq!(verdict(renamed_full, old), None, "fully qualified alias");
}

#[test]
fn apache_avro_gap_enum_and_fixed_name_aliases() {
    let e_new = r#"{"type":"enum","name":"Color2","aliases":["Color"],"symbols":["RED","GREEN"]}"#;
    let e_old = r#"{"type":"enum","name":"Color","symbols":["RED","GREEN"]}"#;
    assert_eq!(verdict(e_new, e_old), None);
    let f_new = r#"{"type":"fixed","name":"Hash2","aliases":["Hash"],"size":16}"#;
    let f_old = r#"{"type":"fixed","name":"Hash","size":16}"#;
    assert_eq!(verdict(f_new, f_old), None);
}

#[test]
fn apache_avro_gap_partial_counts_as_incompatible() {
    // apache-avro returns `Partial` for these; the specification says the reader fails.
    assert_eq!(
        verdict(
            r#"{"type":"enum","name":"E","symbols":["A"]}"#,
            r#"{"type":"enum","name":"E","symbols":["A","B"]}"#
        ),
        Some(K::MissingEnumSymbols)
    );
    assert_eq!(
        verdict(r#"["null","int"]"#, r#"["null","string"]"#),
        Some(K::MissingUnionBranch)
    );
    assert_eq!(
        verdict(r#""string""#, r#"["null","string"]"#),
        Some(K::TypeMismatch),
        "a union read as a plain type"
    );
}

#[test]
fn unions_on_either_side() {
    assert_eq!(
        verdict(r#"["null","string"]"#, r#""string""#),
        None,
        "a union reads one of its branches"
    );
    assert_eq!(
        verdict(r#"["null","long"]"#, r#""int""#),
        None,
        "with promotion"
    );
    assert_eq!(verdict(r#"["null","long"]"#, r#"["null","int"]"#), None);
    assert_eq!(
        verdict(r#"["null","string","int"]"#, r#"["null","string"]"#),
        None,
        "adding a branch"
    );
    assert_eq!(
        verdict(r#"["null","string"]"#, r#"["null","string","int"]"#),
        Some(K::MissingUnionBranch),
        "removing a branch"
    );
    assert_eq!(
        verdict(r#"["int","string"]"#, r#""boolean""#),
        Some(K::MissingUnionBranch)
    );
    let errs = incompatibilities(
        &parse(r#"["null","string"]"#),
        &parse(r#"["null","string","int"]"#),
    );
    assert_eq!(errs[0].location, "/2", "which writer branch");
}

#[test]
fn apache_avro_gap_reference_against_inline_definition() {
    // The reader defines Inner in field `a` and refers to it by name in field `b`; the
    // writer only has `b`, with Inner inline. apache-avro compares the reference itself and
    // reports a false incompatibility.
    let reader = r#"{"type":"record","name":"R","fields":[
        {"name":"a","type":["null",{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"}]}],"default":null},
        {"name":"b","type":"Inner"}]}"#;
    let writer = r#"{"type":"record","name":"R","fields":[
        {"name":"b","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"}]}}]}"#;
    assert_eq!(verdict(reader, writer), None);
    assert_eq!(verdict(writer, reader), None);
    // And a real difference behind the reference is still found.
    let writer_long = writer.replace(r#""x","type":"int""#, r#""x","type":"long""#);
    assert_eq!(verdict(reader, &writer_long), Some(K::TypeMismatch));
}

#[test]
fn apache_avro_gap_recursive_types_that_change_namespace() {
    let list = |ns: &str| {
        format!(
            r#"{{"type":"record","name":"Node","namespace":"{ns}","fields":[
            {{"name":"value","type":"long"}},{{"name":"next","type":["null","Node"],"default":null}}]}}"#
        )
    };
    assert_eq!(verdict(&list("one"), &list("two")), None);
    let int_list = list("two").replace(r#""value","type":"long""#, r#""value","type":"int""#);
    assert_eq!(
        verdict(&list("one"), &int_list),
        None,
        "long reads int, through the recursion"
    );
    assert_eq!(verdict(&int_list, &list("one")), Some(K::TypeMismatch));
}

#[test]
fn logical_types_resolve_by_their_underlying_type() {
    assert_eq!(
        verdict(r#"{"type":"int","logicalType":"date"}"#, r#""int""#),
        None
    );
    assert_eq!(
        verdict(
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            r#"{"type":"long","logicalType":"timestamp-micros"}"#
        ),
        None
    );
    assert_eq!(
        verdict(
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            r#"{"type":"int","logicalType":"date"}"#
        ),
        None,
        "int promotes to long"
    );
    assert_eq!(
        verdict(r#"{"type":"string","logicalType":"uuid"}"#, r#""string""#),
        None
    );
    // Confluent ignores decimal precision and scale; apache-avro reports an error.
    let d = |p: u32, s: u32| {
        format!(r#"{{"type":"bytes","logicalType":"decimal","precision":{p},"scale":{s}}}"#)
    };
    assert_eq!(
        verdict(&d(10, 2), &d(12, 4)),
        None,
        "apache_avro_gap: decimal parameters"
    );
    assert_eq!(
        verdict(r#"{"type":"int","logicalType":"date"}"#, r#""long""#),
        Some(K::TypeMismatch)
    );
}

#[test]
fn nested_records_in_arrays_and_maps() {
    let w = r#"{"type":"record","name":"Order","fields":[{"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[{"name":"qty","type":"int"}]}}}]}"#;
    let r_ok = r#"{"type":"record","name":"Order","fields":[{"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[{"name":"qty","type":"long"},{"name":"sku","type":"string","default":""}]}}}]}"#;
    let r_bad = r#"{"type":"record","name":"Order","fields":[{"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[{"name":"qty","type":"int"},{"name":"sku","type":"string"}]}}}]}"#;
    assert_eq!(verdict(r_ok, w), None);
    let errs = incompatibilities(&parse(r_bad), &parse(w));
    assert_eq!(
        (errs[0].kind, errs[0].location.as_str()),
        (
            K::ReaderFieldMissingDefaultValue,
            "/fields/0/type/items/fields/1"
        )
    );
}

#[test]
fn levels_check_the_right_versions_in_the_right_direction() {
    // v1 {a}; v2 {a, b = default}; v3 {a, b without default}.
    let v1 = parse(RECORD_A);
    let v2 = parse(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}]}"#,
    );
    let v3 = parse(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}"#,
    );
    use CompatibilityLevel::*;
    assert!(check(Backward, &v2, std::slice::from_ref(&v1)).is_empty());
    // Removing the default is fine against v2 (which has b) but not against v1 (which lacks it).
    assert!(check(Backward, &v3, &[v2.clone(), v1.clone()]).is_empty());
    let f = check(BackwardTransitive, &v3, &[v2.clone(), v1.clone()]);
    assert_eq!(
        (f[0].previous_index, f[0].direction),
        (1, Direction::NewReadsOld)
    );
    // FORWARD: old readers read new data. Adding a field is forward compatible; removing a
    // field without a default is not.
    assert!(check(Forward, &v2, std::slice::from_ref(&v1)).is_empty());
    let f = check(Forward, &v1, std::slice::from_ref(&v3));
    assert_eq!(
        (f[0].direction, f[0].incompatibility.kind),
        (Direction::OldReadsNew, K::ReaderFieldMissingDefaultValue)
    );
    assert!(check(Full, &v2, std::slice::from_ref(&v1)).is_empty());
    assert!(!check(Full, &v3, std::slice::from_ref(&v1)).is_empty());
    assert!(!check(FullTransitive, &v3, &[v2.clone(), v1.clone()]).is_empty());
    assert!(check(None, &parse("\"string\""), std::slice::from_ref(&v1)).is_empty());
    assert!(
        check(BackwardTransitive, &v1, &[]).is_empty(),
        "an empty subject accepts anything"
    );
    assert_eq!(
        "backward_transitive".parse::<CompatibilityLevel>().unwrap(),
        BackwardTransitive
    );
    assert!("sideways".parse::<CompatibilityLevel>().is_err());
    assert!(can_read(&v2, &v1));
}

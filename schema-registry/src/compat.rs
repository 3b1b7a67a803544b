//! Avro reader/writer compatibility, written from the Avro specification's schema-resolution
//! rules and checked case by case against Avro Java's `SchemaCompatibility` (which Confluent's
//! registry uses), because `apache-avro`'s own checker disagrees with it in known places:
//!
//! - it reports `Partial` for cases the spec calls incompatible (missing enum symbols without a
//!   reader default, missing union branches, a union read as a plain type): here they are errors;
//! - it ignores aliases on record, enum and fixed names: here a reader alias matching the
//!   writer's full name matches, as in Java;
//! - it reports a false incompatibility when one schema refers by name to a type the other
//!   defines inline: here every reference is resolved against its own schema's definitions;
//! - it compares recursive references by full name: here names compare unqualified, as in Java,
//!   so a type that moved namespace still matches;
//! - decimal precision or scale changes and other logical-type parameters are ignored, as
//!   Confluent does (logical types resolve by their underlying Avro type).
//!
//! Every incompatibility found is reported with its kind (Confluent's `errorType` names) and a
//! location in the reader schema, not just the first.

use std::collections::{HashMap, HashSet};
use std::fmt;

use apache_avro::schema::{InnerDecimalSchema, Name, RecordField, Schema, UuidSchema};

/// Kinds of incompatibility, named as Avro Java and Confluent name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncompatibilityKind {
    NameMismatch,
    FixedSizeMismatch,
    MissingEnumSymbols,
    ReaderFieldMissingDefaultValue,
    TypeMismatch,
    MissingUnionBranch,
}

impl IncompatibilityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IncompatibilityKind::NameMismatch => "NAME_MISMATCH",
            IncompatibilityKind::FixedSizeMismatch => "FIXED_SIZE_MISMATCH",
            IncompatibilityKind::MissingEnumSymbols => "MISSING_ENUM_SYMBOLS",
            IncompatibilityKind::ReaderFieldMissingDefaultValue => {
                "READER_FIELD_MISSING_DEFAULT_VALUE"
            }
            IncompatibilityKind::TypeMismatch => "TYPE_MISMATCH",
            IncompatibilityKind::MissingUnionBranch => "MISSING_UNION_BRANCH",
        }
    }
}

/// One reason a reader cannot read a writer's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    pub kind: IncompatibilityKind,
    /// JSON-pointer-like path in the reader schema, e.g. `/fields/1/type`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at '{}': {}",
            self.kind.as_str(),
            self.location,
            self.message
        )
    }
}

/// The Avro type a schema resolves as: logical types are their underlying type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array,
    Map,
    Union,
    Record,
    Enum,
    Fixed,
}

fn type_name(b: Base) -> &'static str {
    match b {
        Base::Null => "null",
        Base::Boolean => "boolean",
        Base::Int => "int",
        Base::Long => "long",
        Base::Float => "float",
        Base::Double => "double",
        Base::Bytes => "bytes",
        Base::String => "string",
        Base::Array => "array",
        Base::Map => "map",
        Base::Union => "union",
        Base::Record => "record",
        Base::Enum => "enum",
        Base::Fixed => "fixed",
    }
}

/// A named type as the resolution rules see it.
struct Named<'a> {
    name: &'a Name,
    aliases: Vec<String>,
}

fn full(name: &Name) -> String {
    name.fullname(None)
}

/// Every named type a schema defines, by full name, so that references can be resolved.
fn collect_names<'a>(schema: &'a Schema, out: &mut HashMap<String, &'a Schema>) {
    match schema {
        Schema::Record(r) => {
            if out.insert(full(&r.name), schema).is_some() {
                return; // seen already: a recursive type
            }
            for f in &r.fields {
                collect_names(&f.schema, out);
            }
        }
        Schema::Enum(e) => {
            out.insert(full(&e.name), schema);
        }
        Schema::Fixed(f) | Schema::Duration(f) => {
            out.insert(full(&f.name), schema);
        }
        Schema::Decimal(d) => {
            if let InnerDecimalSchema::Fixed(f) = &d.inner {
                out.insert(full(&f.name), schema);
            }
        }
        Schema::Uuid(UuidSchema::Fixed(f)) => {
            out.insert(full(&f.name), schema);
        }
        Schema::Array(a) => collect_names(&a.items, out),
        Schema::Map(m) => collect_names(&m.types, out),
        Schema::Union(u) => {
            for v in u.variants() {
                collect_names(v, out);
            }
        }
        _ => {}
    }
}

struct Side<'a> {
    names: HashMap<String, &'a Schema>,
}

impl<'a> Side<'a> {
    fn new(root: &'a Schema, referenced: &'a [Schema]) -> Self {
        let mut names = HashMap::new();
        for r in referenced {
            collect_names(r, &mut names);
        }
        collect_names(root, &mut names);
        Side { names }
    }

    /// Follows references to their definitions (an unknown reference stays as it is).
    fn resolve(&self, s: &'a Schema) -> &'a Schema {
        let mut current = s;
        for _ in 0..64 {
            match current {
                Schema::Ref { name } => match self.names.get(&full(name)) {
                    Some(def) => current = def,
                    None => return current,
                },
                _ => return current,
            }
        }
        current
    }
}

fn base(s: &Schema) -> Option<Base> {
    Some(match s {
        Schema::Null => Base::Null,
        Schema::Boolean => Base::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Base::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Base::Long,
        Schema::Float => Base::Float,
        Schema::Double => Base::Double,
        Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => Base::Bytes,
        Schema::String | Schema::Uuid(UuidSchema::String) => Base::String,
        Schema::Decimal(d) => match d.inner {
            InnerDecimalSchema::Bytes => Base::Bytes,
            InnerDecimalSchema::Fixed(_) => Base::Fixed,
        },
        Schema::Array(_) => Base::Array,
        Schema::Map(_) => Base::Map,
        Schema::Union(_) => Base::Union,
        Schema::Record(_) => Base::Record,
        Schema::Enum(_) => Base::Enum,
        Schema::Fixed(_) | Schema::Duration(_) | Schema::Uuid(UuidSchema::Fixed(_)) => Base::Fixed,
        Schema::Ref { .. } => return None,
    })
}

fn named(s: &Schema) -> Option<Named<'_>> {
    let (name, aliases) = match s {
        Schema::Record(r) => (&r.name, &r.aliases),
        Schema::Enum(e) => (&e.name, &e.aliases),
        Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => {
            (&f.name, &f.aliases)
        }
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Fixed(f) => (&f.name, &f.aliases),
            InnerDecimalSchema::Bytes => return None,
        },
        _ => return None,
    };
    let aliases = aliases
        .as_ref()
        .map(|a| {
            a.iter()
                .map(|alias| {
                    // Aliases are relative to the named type's namespace.
                    match (alias.namespace(), name.namespace()) {
                        (None, Some(ns)) => format!("{ns}.{}", alias.name()),
                        _ => alias.fullname(None),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Named { name, aliases })
}

fn fixed_size(s: &Schema) -> Option<usize> {
    match s {
        Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => Some(f.size),
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Fixed(f) => Some(f.size),
            InnerDecimalSchema::Bytes => None,
        },
        _ => None,
    }
}

struct Checker<'a> {
    reader: Side<'a>,
    writer: Side<'a>,
    /// Named pairs under comparison: a recursive type meeting itself again is assumed to
    /// match (the rest of the comparison decides), as Avro Java does.
    in_progress: HashSet<(String, String)>,
    found: Vec<Incompatibility>,
}

impl<'a> Checker<'a> {
    fn report(&mut self, kind: IncompatibilityKind, location: &str, message: String) {
        self.found.push(Incompatibility {
            kind,
            location: if location.is_empty() {
                "/".into()
            } else {
                location.into()
            },
            message,
        });
    }

    /// Whether `reader` can read `writer` without reporting anything.
    fn quietly(&mut self, reader: &'a Schema, writer: &'a Schema, loc: &str) -> bool {
        let before = self.found.len();
        self.check(reader, writer, loc);
        let ok = self.found.len() == before;
        self.found.truncate(before);
        ok
    }

    fn check(&mut self, reader: &'a Schema, writer: &'a Schema, loc: &str) {
        let reader = self.reader.resolve(reader);
        let writer = self.writer.resolve(writer);
        let (Some(rb), Some(wb)) = (base(reader), base(writer)) else {
            self.report(
                IncompatibilityKind::TypeMismatch,
                loc,
                "a reference to an undefined named type".into(),
            );
            return;
        };
        if let (Some(rn), Some(wn)) = (named(reader), named(writer)) {
            let key = (full(rn.name), full(wn.name));
            if self.in_progress.contains(&key) {
                return;
            }
            self.in_progress.insert(key.clone());
            self.check_same_or_promoted(reader, writer, rb, wb, loc);
            self.in_progress.remove(&key);
            return;
        }
        self.check_same_or_promoted(reader, writer, rb, wb, loc);
    }

    fn check_names(&mut self, reader: &Schema, writer: &Schema, loc: &str) -> bool {
        let (Some(rn), Some(wn)) = (named(reader), named(writer)) else {
            return true;
        };
        if rn.name.name() == wn.name.name() || rn.aliases.contains(&full(wn.name)) {
            return true;
        }
        self.report(
            IncompatibilityKind::NameMismatch,
            &format!("{loc}/name"),
            format!(
                "expected name '{}' (or a reader alias for it), found '{}'",
                full(wn.name),
                full(rn.name)
            ),
        );
        false
    }

    fn check_same_or_promoted(
        &mut self,
        reader: &'a Schema,
        writer: &'a Schema,
        rb: Base,
        wb: Base,
        loc: &str,
    ) {
        if rb == wb && rb != Base::Union {
            // Named types (record, enum, fixed) must match by name or reader alias first.
            if !self.check_names(reader, writer, loc) {
                return;
            }
            match (reader, writer) {
                (Schema::Array(r), Schema::Array(w)) => {
                    self.check(&r.items, &w.items, &format!("{loc}/items"))
                }
                (Schema::Map(r), Schema::Map(w)) => {
                    self.check(&r.types, &w.types, &format!("{loc}/values"))
                }
                (Schema::Record(r), Schema::Record(w)) => {
                    self.check_fields(&r.fields, &w.fields, loc)
                }
                (Schema::Enum(r), Schema::Enum(w)) => {
                    let missing: Vec<&String> = w
                        .symbols
                        .iter()
                        .filter(|s| !r.symbols.contains(s))
                        .collect();
                    let has_default = r
                        .default
                        .as_ref()
                        .map(|d| r.symbols.contains(d))
                        .unwrap_or(false);
                    if !missing.is_empty() && !has_default {
                        self.report(
                            IncompatibilityKind::MissingEnumSymbols,
                            &format!("{loc}/symbols"),
                            format!("the reader's enum has no symbol {missing:?} and no default"),
                        );
                    }
                }
                _ if rb == Base::Fixed => {
                    let (rs, ws) = (fixed_size(reader), fixed_size(writer));
                    if rs != ws {
                        self.report(
                            IncompatibilityKind::FixedSizeMismatch,
                            &format!("{loc}/size"),
                            format!(
                                "expected size {}, found {}",
                                ws.unwrap_or(0),
                                rs.unwrap_or(0)
                            ),
                        );
                    }
                }
                _ => {}
            }
            return;
        }
        if let Schema::Union(w) = writer {
            // Every branch the writer may have used must be readable.
            for (i, branch) in w.variants().iter().enumerate() {
                let wb = self.writer.resolve(branch);
                if let Schema::Union(r) = reader {
                    if !r.variants().iter().any(|rv| self.quietly(rv, wb, loc)) {
                        let what = base(wb).map(type_name).unwrap_or("?");
                        self.report(
                            IncompatibilityKind::MissingUnionBranch,
                            &format!("{loc}/{i}"),
                            format!(
                                "the reader's union has no branch that reads the writer's {what}"
                            ),
                        );
                    }
                } else {
                    self.check(reader, wb, loc);
                }
            }
            return;
        }
        match (rb, wb) {
            (Base::Union, _) => {
                let Schema::Union(r) = reader else { return };
                if !r.variants().iter().any(|rv| self.quietly(rv, writer, loc)) {
                    self.report(
                        IncompatibilityKind::MissingUnionBranch,
                        loc,
                        format!(
                            "the reader's union has no branch that reads the writer's {}",
                            type_name(wb)
                        ),
                    );
                }
            }
            (Base::Long, Base::Int)
            | (Base::Float, Base::Int | Base::Long)
            | (Base::Double, Base::Int | Base::Long | Base::Float)
            | (Base::String, Base::Bytes)
            | (Base::Bytes, Base::String) => {}
            _ => self.report(
                IncompatibilityKind::TypeMismatch,
                loc,
                format!(
                    "the reader's type {} cannot read the writer's {}",
                    type_name(rb),
                    type_name(wb)
                ),
            ),
        }
    }

    fn check_fields(&mut self, reader: &'a [RecordField], writer: &'a [RecordField], loc: &str) {
        for (i, rf) in reader.iter().enumerate() {
            let by_name = writer.iter().find(|wf| wf.name == rf.name);
            let matched =
                by_name.or_else(|| writer.iter().find(|wf| rf.aliases.contains(&wf.name)));
            match matched {
                Some(wf) => self.check(&rf.schema, &wf.schema, &format!("{loc}/fields/{i}/type")),
                None if rf.default.is_some() => {}
                None => self.report(
                    IncompatibilityKind::ReaderFieldMissingDefaultValue,
                    &format!("{loc}/fields/{i}"),
                    format!("the reader's field '{}' is missing in the writer's schema and has no default value", rf.name),
                ),
            }
        }
    }
}

/// Every reason `reader` cannot read data written with `writer` (empty: it can).
pub fn incompatibilities(reader: &Schema, writer: &Schema) -> Vec<Incompatibility> {
    incompatibilities_with_references(reader, &[], writer, &[])
}

/// As [`incompatibilities`], for schemas that use named types from referenced schemas
/// (schema references): names resolve against the root schema and its references.
pub fn incompatibilities_with_references(
    reader: &Schema,
    reader_refs: &[Schema],
    writer: &Schema,
    writer_refs: &[Schema],
) -> Vec<Incompatibility> {
    let mut c = Checker {
        reader: Side::new(reader, reader_refs),
        writer: Side::new(writer, writer_refs),
        in_progress: HashSet::new(),
        found: Vec::new(),
    };
    c.check(reader, writer, "");
    c.found
}

/// Whether `reader` can read data written with `writer`.
pub fn can_read(reader: &Schema, writer: &Schema) -> bool {
    incompatibilities(reader, writer).is_empty()
}

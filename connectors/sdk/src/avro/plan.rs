//! A schema compiled once into a flat plan that the transcoders walk per record: named
//! types resolved to indices (recursive types included), record fields with their JSON keys
//! already escaped and their defaults already encoded, enum symbols already quoted.

use std::collections::HashMap;

use apache_avro::schema::{Schema, UuidSchema};

use super::{full, Compiled};

pub(crate) type NodeId = usize;

pub(crate) enum Node {
    Null,
    Boolean,
    /// `int` and the logical types on it (`date`, `time-millis`).
    Int,
    /// `long` and the logical types on it (timestamps, `time-micros`).
    Long,
    Float,
    Double,
    /// `string` (and `uuid` on a string).
    String,
    /// `bytes` (and `decimal`, `big-decimal`, `uuid` on bytes): JSON strings of code points
    /// 0–255.
    Bytes,
    /// `fixed` of this size (and `duration`, `uuid` on fixed).
    Fixed(usize),
    Enum {
        symbols: Vec<String>,
        /// Each symbol as a JSON string, quotes included.
        quoted: Vec<Vec<u8>>,
    },
    Array(NodeId),
    Map(NodeId),
    Union(Vec<NodeId>),
    Record(Vec<Field>),
}

pub(crate) struct Field {
    pub name: String,
    /// `,"name":`, escaped as JSON: what goes before the field's value in a JSON object
    /// (without the comma for the first field).
    pub key: Vec<u8>,
    pub node: NodeId,
    /// The default's encoding; `None`: no default (or one that does not fit, which the
    /// general path reports).
    pub default: Option<Vec<u8>>,
}

pub(crate) struct Plan {
    pub nodes: Vec<Node>,
    pub root: NodeId,
}

impl Plan {
    pub fn new(compiled: &Compiled) -> Plan {
        let mut b = Builder {
            compiled,
            nodes: Vec::new(),
            named: HashMap::new(),
        };
        let root = b.node(&compiled.schema);
        Plan {
            nodes: b.nodes,
            root,
        }
    }
}

struct Builder<'c> {
    compiled: &'c Compiled,
    nodes: Vec<Node>,
    named: HashMap<String, NodeId>,
}

impl Builder<'_> {
    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn node(&mut self, s: &Schema) -> NodeId {
        let s = self.compiled.resolve(s);
        match s {
            Schema::Null => self.push(Node::Null),
            Schema::Boolean => self.push(Node::Boolean),
            Schema::Int | Schema::Date | Schema::TimeMillis => self.push(Node::Int),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.push(Node::Long),
            Schema::Float => self.push(Node::Float),
            Schema::Double => self.push(Node::Double),
            Schema::String | Schema::Uuid(UuidSchema::String) => self.push(Node::String),
            Schema::Bytes
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes)
            | Schema::Decimal(_) => self.push(Node::Bytes),
            Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => {
                self.push(Node::Fixed(f.size))
            }
            Schema::Enum(e) => {
                let name = full(&e.name);
                if let Some(&id) = self.named.get(&name) {
                    return id;
                }
                let quoted = e
                    .symbols
                    .iter()
                    .map(|s| {
                        let mut q = Vec::with_capacity(s.len() + 2);
                        super::to_json::quote(s.as_bytes(), &mut q);
                        q
                    })
                    .collect();
                let id = self.push(Node::Enum {
                    symbols: e.symbols.clone(),
                    quoted,
                });
                self.named.insert(name, id);
                id
            }
            Schema::Array(a) => {
                let id = self.push(Node::Null);
                let items = self.node(&a.items);
                self.nodes[id] = Node::Array(items);
                id
            }
            Schema::Map(m) => {
                let id = self.push(Node::Null);
                let values = self.node(&m.types);
                self.nodes[id] = Node::Map(values);
                id
            }
            Schema::Union(u) => {
                let id = self.push(Node::Null);
                let branches = u.variants().iter().map(|v| self.node(v)).collect();
                self.nodes[id] = Node::Union(branches);
                id
            }
            Schema::Record(r) => {
                let name = full(&r.name);
                if let Some(&id) = self.named.get(&name) {
                    return id;
                }
                // Registered before its fields, so that a field of its own type refers back.
                let id = self.push(Node::Null);
                self.named.insert(name, id);
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    let node = self.node(&f.schema);
                    let default = f.default.as_ref().and_then(|d| {
                        let mut out = Vec::new();
                        self.compiled
                            .enc(&f.schema, d, &mut out, "")
                            .ok()
                            .map(|_| out)
                    });
                    let mut key = Vec::with_capacity(f.name.len() + 4);
                    key.push(b',');
                    super::to_json::quote(f.name.as_bytes(), &mut key);
                    key.push(b':');
                    fields.push(Field {
                        name: f.name.clone(),
                        key,
                        node,
                        default,
                    });
                }
                self.nodes[id] = Node::Record(fields);
                id
            }
            // A name the schema never defines: the general path reports it.
            Schema::Ref { .. } => self.push(Node::Union(Vec::new())),
        }
    }
}

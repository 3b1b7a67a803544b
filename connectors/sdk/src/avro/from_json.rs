//! JSON text → Avro binary in one pass, directed by the [`Plan`]: serde_json's streaming
//! parser calls back into the plan (a `DeserializeSeed` per value), and each value is
//! written as Avro as it is parsed. No document tree, no allocation per record: strings and
//! keys are borrowed from the input, field spans live on a reused stack.
//!
//! Record fields are written in the order they arrive and put in the schema's order only
//! when they arrived in another (or some are missing and take their defaults). A value this
//! pass cannot place with certainty (a union whose first candidate branch does not fit, a
//! map with a repeated key) makes it give up; the caller then takes the general path, which
//! decides exactly as before and says why a value does not fit.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::plan::{Field, Node, NodeId, Plan};
use super::put_long;

/// What the pass reuses across records (one per thread).
#[derive(Default)]
pub(crate) struct Scratch {
    /// For each record being written, a span per field (relative to the record's start).
    spans: Vec<(u32, u32)>,
    /// A record's bytes while its fields are put in order.
    tmp: Vec<u8>,
}

const UNSET: (u32, u32) = (u32::MAX, 0);

/// Appends the Avro encoding of the JSON `text` to `out`; `Err(())` when the general path
/// must decide (the caller truncates `out`).
pub(crate) fn encode(
    plan: &Plan,
    text: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Result<(), ()> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let mut ctx = Ctx { plan, out, scratch };
    let seed = Seed {
        ctx: &mut ctx,
        node: plan.root,
    };
    let done = seed.deserialize(&mut de).and_then(|_| de.end());
    ctx.scratch.spans.clear();
    done.map_err(|_| ())
}

struct Ctx<'p> {
    plan: &'p Plan,
    out: &'p mut Vec<u8>,
    scratch: &'p mut Scratch,
}

struct Seed<'c, 'p> {
    ctx: &'c mut Ctx<'p>,
    node: NodeId,
}

fn give_up<E: de::Error>() -> E {
    E::custom("")
}

/// A JSON number as serde_json parsed it.
#[derive(Clone, Copy)]
enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    /// serde_json's `as_i64`.
    fn as_i64(self) -> Option<i64> {
        match self {
            Num::I(i) => Some(i),
            Num::U(u) => i64::try_from(u).ok(),
            Num::F(_) => None,
        }
    }
    /// serde_json's `as_f64`.
    fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::U(u) => u as f64,
            Num::F(f) => f,
        }
    }
}

/// Whether `n` fits `node` as the general path would have it.
fn fits_number(node: &Node, n: Num) -> bool {
    match node {
        Node::Int => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        Node::Long => n.as_i64().is_some(),
        Node::Float | Node::Double => true,
        _ => false,
    }
}

/// Writes `n` as `node`, if it fits there as the general path would have it.
fn put_number(node: &Node, n: Num, out: &mut Vec<u8>) -> bool {
    match node {
        Node::Int => match n.as_i64().filter(|i| i32::try_from(*i).is_ok()) {
            Some(i) => put_long(out, i),
            None => return false,
        },
        Node::Long => match n.as_i64() {
            Some(i) => put_long(out, i),
            None => return false,
        },
        Node::Float => out.extend_from_slice(&(n.as_f64() as f32).to_le_bytes()),
        Node::Double => out.extend_from_slice(&n.as_f64().to_le_bytes()),
        _ => return false,
    }
    true
}

/// Writes `s` as `node` (string, bytes, fixed or enum), if it fits there.
fn put_str(node: &Node, s: &str, out: &mut Vec<u8>) -> bool {
    match node {
        Node::String => {
            put_long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
        Node::Bytes => {
            if s.is_ascii() {
                put_long(out, s.len() as i64);
                out.extend_from_slice(s.as_bytes());
            } else {
                put_long(out, s.chars().count() as i64);
                out.extend(s.chars().map(|c| c as u32 as u8));
            }
        }
        Node::Fixed(size) => {
            if s.chars().count() != *size {
                return false;
            }
            out.extend(s.chars().map(|c| c as u32 as u8));
        }
        Node::Enum { symbols, .. } => match symbols.iter().position(|x| x == s) {
            Some(i) => put_long(out, i as i64),
            None => return false,
        },
        _ => return false,
    }
    true
}

impl Seed<'_, '_> {
    fn node(&self) -> &Node {
        &self.ctx.plan.nodes[self.node]
    }

    /// The first branch of a union that `fits`, with its index written; `None` when this
    /// node is not a union.
    fn branch<E: de::Error>(&mut self, fits: impl Fn(&Node) -> bool) -> Result<Option<NodeId>, E> {
        let plan = self.ctx.plan;
        let Node::Union(branches) = &plan.nodes[self.node] else {
            return Ok(None);
        };
        let (i, id) = branches
            .iter()
            .enumerate()
            .find(|(_, b)| fits(&plan.nodes[**b]))
            .ok_or_else(give_up)?;
        put_long(self.ctx.out, i as i64);
        Ok(Some(*id))
    }

    fn number<E: de::Error>(mut self, n: Num) -> Result<(), E> {
        let plan = self.ctx.plan;
        // A union takes the first branch the number fits, as the general path does.
        let node = match &plan.nodes[self.node] {
            Node::Union(branches) => {
                let Some((i, id)) = branches
                    .iter()
                    .enumerate()
                    .find(|(_, b)| fits_number(&plan.nodes[**b], n))
                else {
                    return Err(give_up());
                };
                put_long(self.ctx.out, i as i64);
                self.node = *id;
                &plan.nodes[*id]
            }
            other => other,
        };
        if put_number(node, n, self.ctx.out) {
            Ok(())
        } else {
            Err(give_up())
        }
    }

    fn string<E: de::Error>(mut self, s: &str) -> Result<(), E> {
        let plan = self.ctx.plan;
        let node = match &plan.nodes[self.node] {
            Node::Union(branches) => {
                let fits = |n: &Node| match n {
                    Node::String | Node::Bytes => true,
                    Node::Fixed(size) => s.chars().count() == *size,
                    Node::Enum { symbols, .. } => symbols.iter().any(|x| x == s),
                    _ => false,
                };
                let Some((i, id)) = branches
                    .iter()
                    .enumerate()
                    .find(|(_, b)| fits(&plan.nodes[**b]))
                else {
                    return Err(give_up());
                };
                put_long(self.ctx.out, i as i64);
                self.node = *id;
                &plan.nodes[*id]
            }
            other => other,
        };
        if put_str(node, s, self.ctx.out) {
            Ok(())
        } else {
            Err(give_up())
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of the schema")
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        if self.branch(|n| matches!(n, Node::Null))?.is_some() || matches!(self.node(), Node::Null)
        {
            return Ok(());
        }
        Err(give_up())
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        if self.branch(|n| matches!(n, Node::Boolean))?.is_some()
            || matches!(self.node(), Node::Boolean)
        {
            self.ctx.out.push(v as u8);
            return Ok(());
        }
        Err(give_up())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(Num::I(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(Num::U(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(Num::F(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.string(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if let Some(id) = self.branch(|n| matches!(n, Node::Array(_)))? {
            self.node = id;
        }
        let Node::Array(items) = *self.node() else {
            return Err(give_up());
        };
        let start = self.ctx.out.len();
        let mut n = 0i64;
        while seq
            .next_element_seed(Seed {
                ctx: &mut *self.ctx,
                node: items,
            })?
            .is_some()
        {
            n += 1;
        }
        if n > 0 {
            let mut count = Vec::with_capacity(10);
            put_long(&mut count, n);
            self.ctx.out.splice(start..start, count);
        }
        self.ctx.out.push(0);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        if let Some(id) = self.branch(|n| matches!(n, Node::Record(_) | Node::Map(_)))? {
            self.node = id;
        }
        let plan = self.ctx.plan;
        match &plan.nodes[self.node] {
            Node::Record(fields) => record(self.ctx, fields, map),
            Node::Map(values) => avro_map(self.ctx, *values, map),
            _ => Err(give_up()),
        }
    }
}

/// A record's fields, in the schema's order in the end.
fn record<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx<'_>,
    fields: &[Field],
    mut map: A,
) -> Result<(), A::Error> {
    let start = ctx.out.len();
    let base = ctx.scratch.spans.len();
    ctx.scratch.spans.resize(base + fields.len(), UNSET);
    let (mut next, mut in_order) = (0usize, true);
    while let Some(key) = map.next_key_seed(FieldKey(fields))? {
        let Some(i) = key else {
            map.next_value::<IgnoredAny>()?;
            continue;
        };
        let from = ctx.out.len() - start;
        map.next_value_seed(Seed {
            ctx: &mut *ctx,
            node: fields[i].node,
        })?;
        let to = ctx.out.len() - start;
        let slot = &mut ctx.scratch.spans[base + i];
        if *slot != UNSET || i != next {
            in_order = false;
        }
        *slot = (from as u32, to as u32);
        if in_order {
            next = i + 1;
        }
    }
    if !(in_order && next == fields.len()) {
        // Put the fields in the schema's order; missing ones take their defaults.
        let Scratch { spans, tmp } = &mut *ctx.scratch;
        tmp.clear();
        tmp.extend_from_slice(&ctx.out[start..]);
        ctx.out.truncate(start);
        for (i, f) in fields.iter().enumerate() {
            match (spans[base + i], &f.default) {
                (UNSET, Some(d)) => ctx.out.extend_from_slice(d),
                (UNSET, None) => return Err(give_up()),
                ((from, to), _) => ctx.out.extend_from_slice(&tmp[from as usize..to as usize]),
            }
        }
    }
    ctx.scratch.spans.truncate(base);
    Ok(())
}

/// An Avro map: one block of entries (keys as strings), counted once its end is known.
fn avro_map<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx<'_>,
    values: NodeId,
    mut map: A,
) -> Result<(), A::Error> {
    let start = ctx.out.len();
    let base = ctx.scratch.spans.len();
    let mut n = 0i64;
    while let Some(key_start) = map.next_key_seed(MapKey(ctx.out))? {
        // A repeated key is left to the general path (a JSON object keeps the last value at
        // the first key's place). Keys are compared as written: length prefix and bytes.
        let key_end = ctx.out.len();
        let key = &ctx.out[key_start..key_end];
        if ctx.scratch.spans[base..]
            .iter()
            .any(|&(f, t)| &ctx.out[f as usize..t as usize] == key)
        {
            return Err(give_up());
        }
        ctx.scratch.spans.push((key_start as u32, key_end as u32));
        n += 1;
        map.next_value_seed(Seed {
            ctx: &mut *ctx,
            node: values,
        })?;
    }
    ctx.scratch.spans.truncate(base);
    if n > 0 {
        let mut count = Vec::with_capacity(10);
        put_long(&mut count, n);
        ctx.out.splice(start..start, count);
    }
    ctx.out.push(0);
    Ok(())
}

/// A record's key: the index of the field it names (`None`: not in the schema, skipped).
struct FieldKey<'f>(&'f [Field]);

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|f| f.name == v))
    }
}

/// A map's key, written as an Avro string; its value is where it starts in the output.
struct MapKey<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for MapKey<'_> {
    type Value = usize;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MapKey<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        let start = self.0.len();
        put_long(self.0, v.len() as i64);
        self.0.extend_from_slice(v.as_bytes());
        Ok(start)
    }
}

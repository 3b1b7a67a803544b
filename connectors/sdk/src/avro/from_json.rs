//! JSON text → Avro binary in one pass, directed by the [`Plan`]: the text is scanned
//! ([`crate::json`]) and each value written as Avro as it is read. No document tree, no
//! allocation per record: strings are slices of the input, field spans live on a reused
//! stack.
//!
//! Record fields are written in the order they arrive and put in the schema's order only
//! when they arrived in another (or some are missing and take their defaults). Whatever this
//! pass cannot place with certainty (an escape in a string, a number it does not parse
//! itself, a union whose first candidate branch does not fit, a map with a repeated key)
//! makes it give up; the caller then takes the general path, which decides exactly as before
//! and says why a value does not fit.

use super::plan::{Field, Node, NodeId, Plan};
use super::{extend_short, put_long};
use crate::json::number::Num;
use crate::json::{Scanner, MAX_DEPTH};

/// What the pass reuses across records (one per thread).
#[derive(Default)]
pub(crate) struct Scratch {
    /// For each record being written, a span per field (relative to the record's start).
    spans: Vec<(u32, u32)>,
    /// A record's bytes while its fields are put in order.
    tmp: Vec<u8>,
}

const UNSET: (u32, u32) = (u32::MAX, 0);

/// The general path must decide.
pub(crate) struct GiveUp;

type Step = Result<(), GiveUp>;

/// Appends the Avro encoding of the JSON `text` to `out`; `Err` when the general path must
/// decide (the caller truncates `out`).
pub(crate) fn encode(
    plan: &Plan,
    text: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Result<(), GiveUp> {
    // Strings are taken as UTF-8 without another look: check the whole text once.
    if !text.is_ascii() && std::str::from_utf8(text).is_err() {
        return Err(GiveUp);
    }
    let mut ctx = Ctx {
        plan,
        out,
        scratch,
        s: Scanner::new(text),
    };
    let done = ctx.value(plan.root, 0);
    ctx.scratch.spans.clear();
    done?;
    ctx.s.ws();
    if ctx.s.at != text.len() {
        return Err(GiveUp);
    }
    Ok(())
}

struct Ctx<'p, 't> {
    plan: &'p Plan,
    out: &'p mut Vec<u8>,
    scratch: &'p mut Scratch,
    s: Scanner<'t>,
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

fn put_number(node: &Node, n: Num, out: &mut Vec<u8>) -> Step {
    match node {
        Node::Int | Node::Long if fits_number(node, n) => put_long(out, n.as_i64().ok_or(GiveUp)?),
        Node::Float => out.extend_from_slice(&(n.as_f64() as f32).to_le_bytes()),
        Node::Double => out.extend_from_slice(&n.as_f64().to_le_bytes()),
        _ => return Err(GiveUp),
    }
    Ok(())
}

/// Code points of a string (UTF-8 checked with the whole text).
fn chars(s: &[u8]) -> Result<std::str::Chars<'_>, GiveUp> {
    std::str::from_utf8(s).map(str::chars).map_err(|_| GiveUp)
}

fn fits_str(node: &Node, s: &[u8]) -> bool {
    match node {
        Node::String | Node::Bytes => true,
        Node::Fixed(size) => {
            if s.is_ascii() {
                s.len() == *size
            } else {
                chars(s).is_ok_and(|c| c.count() == *size)
            }
        }
        Node::Enum { symbols, .. } => symbols.iter().any(|x| x.as_bytes() == s),
        _ => false,
    }
}

/// Writes the string `s` as `node` (string, bytes, fixed or enum), if it fits there.
fn put_str(node: &Node, s: &[u8], out: &mut Vec<u8>) -> Step {
    if !fits_str(node, s) {
        return Err(GiveUp);
    }
    match node {
        Node::String => {
            put_long(out, s.len() as i64);
            out.extend_from_slice(s);
        }
        Node::Bytes | Node::Fixed(_) => {
            if let Node::Bytes = node {
                let n = if s.is_ascii() {
                    s.len()
                } else {
                    chars(s)?.count()
                };
                put_long(out, n as i64);
            }
            if s.is_ascii() {
                out.extend_from_slice(s);
            } else {
                out.extend(chars(s)?.map(|c| c as u32 as u8));
            }
        }
        Node::Enum { symbols, .. } => {
            let i = symbols
                .iter()
                .position(|x| x.as_bytes() == s)
                .ok_or(GiveUp)?;
            put_long(out, i as i64);
        }
        _ => return Err(GiveUp),
    }
    Ok(())
}

impl<'t> Ctx<'_, 't> {
    /// For a union, the first branch that `fits`, with its index written; other nodes as
    /// they are.
    fn choose(&mut self, id: NodeId, fits: impl Fn(&Node) -> bool) -> Result<NodeId, GiveUp> {
        let plan = self.plan;
        let Node::Union(branches) = &plan.nodes[id] else {
            return Ok(id);
        };
        let (i, b) = branches
            .iter()
            .enumerate()
            .find(|(_, b)| fits(&plan.nodes[**b]))
            .ok_or(GiveUp)?;
        put_long(self.out, i as i64);
        Ok(*b)
    }

    fn expect(&mut self, c: u8) -> Step {
        if self.s.peek() == Some(c) {
            self.s.at += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    fn string(&mut self) -> Result<&'t [u8], GiveUp> {
        self.expect(b'"')?;
        self.s.string_body().map_err(|_| GiveUp)
    }

    /// The value for `id`: the common leaves (no union around them) straight to their
    /// encoding, anything else through [`Ctx::any_value`]. A text of another kind than the
    /// leaf gives up, as the general choice would.
    #[inline]
    fn value(&mut self, id: NodeId, depth: u32) -> Step {
        let plan = self.plan;
        match self.leaf(&plan.nodes[id]) {
            Some(done) => done,
            None => self.any_value(id, depth),
        }
    }

    /// A common leaf written straight away; `None` for other nodes.
    #[inline(always)]
    fn leaf(&mut self, node: &Node) -> Option<Step> {
        match node {
            Node::String => Some(self.string_leaf()),
            Node::Long | Node::Int | Node::Double => Some(self.number_leaf(node)),
            _ => None,
        }
    }

    #[inline(always)]
    fn string_leaf(&mut self) -> Step {
        self.expect(b'"')?;
        let s = self.s.string_body().map_err(|_| GiveUp)?;
        put_long(self.out, s.len() as i64);
        extend_short(self.out, s);
        Ok(())
    }

    #[inline(always)]
    fn number_leaf(&mut self, node: &Node) -> Step {
        if !matches!(self.s.peek(), Some(b'-' | b'0'..=b'9')) {
            return Err(GiveUp);
        }
        let n = match self.s.short_number() {
            Some(short) => Num::from_short(short),
            None => {
                let (text, float) = self.s.number().map_err(|_| GiveUp)?;
                Num::parse(text, float)
            }
        };
        put_number(node, n.ok_or(GiveUp)?, self.out)
    }

    fn any_value(&mut self, id: NodeId, depth: u32) -> Step {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        let plan = self.plan;
        match self.s.peek().ok_or(GiveUp)? {
            b'"' => {
                self.s.at += 1;
                let s = self.s.string_body().map_err(|_| GiveUp)?;
                let id = self.choose(id, |n| fits_str(n, s))?;
                put_str(&plan.nodes[id], s, self.out)
            }
            b'-' | b'0'..=b'9' => {
                let (text, float) = self.s.number().map_err(|_| GiveUp)?;
                let n = Num::parse(text, float).ok_or(GiveUp)?;
                let id = self.choose(id, |node| fits_number(node, n))?;
                put_number(&plan.nodes[id], n, self.out)
            }
            b'n' => {
                self.s.literal(b"null").map_err(|_| GiveUp)?;
                let id = self.choose(id, |n| matches!(n, Node::Null))?;
                match plan.nodes[id] {
                    Node::Null => Ok(()),
                    _ => Err(GiveUp),
                }
            }
            c @ (b't' | b'f') => {
                let v = c == b't';
                self.s
                    .literal(if v { b"true" } else { b"false" })
                    .map_err(|_| GiveUp)?;
                let id = self.choose(id, |n| matches!(n, Node::Boolean))?;
                match plan.nodes[id] {
                    Node::Boolean => {
                        self.out.push(v as u8);
                        Ok(())
                    }
                    _ => Err(GiveUp),
                }
            }
            b'[' => {
                let id = self.choose(id, |n| matches!(n, Node::Array(_)))?;
                let Node::Array(items) = plan.nodes[id] else {
                    return Err(GiveUp);
                };
                self.array(items, depth)
            }
            b'{' => {
                let id = self.choose(id, |n| matches!(n, Node::Record(_) | Node::Map(_)))?;
                match &plan.nodes[id] {
                    Node::Record(fields) => self.record(fields, depth),
                    Node::Map(values) => self.map(*values, depth),
                    _ => Err(GiveUp),
                }
            }
            _ => Err(GiveUp),
        }
    }

    fn array(&mut self, items: NodeId, depth: u32) -> Step {
        self.expect(b'[')?;
        let start = self.out.len();
        let mut n = 0i64;
        if self.s.peek() == Some(b']') {
            self.s.at += 1;
        } else {
            loop {
                self.value(items, depth + 1)?;
                n += 1;
                match self.s.peek() {
                    Some(b',') => self.s.at += 1,
                    Some(b']') => {
                        self.s.at += 1;
                        break;
                    }
                    _ => return Err(GiveUp),
                }
            }
        }
        if n > 0 {
            let mut count = Vec::with_capacity(10);
            put_long(&mut count, n);
            self.out.splice(start..start, count);
        }
        self.out.push(0);
        Ok(())
    }

    /// A record's fields, in the schema's order in the end.
    fn record(&mut self, fields: &[Field], depth: u32) -> Step {
        self.expect(b'{')?;
        let start = self.out.len();
        let base = self.scratch.spans.len();
        self.scratch.spans.resize(base + fields.len(), UNSET);
        // Keys mostly come in the schema's order and written as the schema's own (`"name":`):
        // matched as bytes, with the leaves written in line. `next` fields are done in order;
        // `more`: a key this loop did not take follows.
        let mut next = 0;
        let more = loop {
            let Some(f) = fields.get(next) else {
                match self.s.peek() {
                    Some(b'}') => self.s.at += 1,
                    Some(b',') if next > 0 => {
                        self.s.at += 1;
                        break true; // keys the schema does not have, or repeated
                    }
                    _ => return Err(GiveUp),
                }
                break false;
            };
            if next > 0 {
                match self.s.peek() {
                    Some(b',') => self.s.at += 1,
                    Some(b'}') => {
                        self.s.at += 1;
                        break false; // fields missing: their defaults below
                    }
                    _ => return Err(GiveUp),
                }
            }
            if !self.s.eat(&f.key[1..]) {
                break true;
            }
            let from = self.out.len() - start;
            let plan = self.plan;
            match self.leaf(&plan.nodes[f.node]) {
                Some(done) => done?,
                None => self.any_value(f.node, depth + 1)?,
            }
            self.scratch.spans[base + next] = (from as u32, (self.out.len() - start) as u32);
            next += 1;
        };
        let mut in_order = true;
        if more && next == 0 && self.s.peek() == Some(b'}') {
            self.s.at += 1; // `{}`: every field takes its default
        } else if more {
            // The other keys, in any order (unknown ones skipped, repeated ones replaced).
            loop {
                let key = self.string()?;
                let found = match fields.get(next) {
                    Some(f) if in_order && f.name.as_bytes() == key => Some(next),
                    _ => fields.iter().position(|f| f.name.as_bytes() == key),
                };
                self.expect(b':')?;
                match found {
                    None => self.s.skip_value(depth + 1).map_err(|_| GiveUp)?,
                    Some(i) => {
                        let from = self.out.len() - start;
                        self.value(fields[i].node, depth + 1)?;
                        let to = self.out.len() - start;
                        let slot = &mut self.scratch.spans[base + i];
                        if *slot != UNSET || i != next {
                            in_order = false;
                        }
                        *slot = (from as u32, to as u32);
                        if in_order {
                            next = i + 1;
                        }
                    }
                }
                match self.s.peek() {
                    Some(b',') => self.s.at += 1,
                    Some(b'}') => {
                        self.s.at += 1;
                        break;
                    }
                    _ => return Err(GiveUp),
                }
            }
        }
        if !(in_order && next == fields.len()) {
            // Put the fields in the schema's order; missing ones take their defaults.
            let Scratch { spans, tmp } = &mut *self.scratch;
            tmp.clear();
            tmp.extend_from_slice(&self.out[start..]);
            self.out.truncate(start);
            for (i, f) in fields.iter().enumerate() {
                match (spans[base + i], &f.default) {
                    (UNSET, Some(d)) => self.out.extend_from_slice(d),
                    (UNSET, None) => return Err(GiveUp),
                    ((from, to), _) => self.out.extend_from_slice(&tmp[from as usize..to as usize]),
                }
            }
        }
        self.scratch.spans.truncate(base);
        Ok(())
    }

    /// An Avro map: one block of entries (keys as strings), counted once its end is known.
    fn map(&mut self, values: NodeId, depth: u32) -> Step {
        self.expect(b'{')?;
        let start = self.out.len();
        let base = self.scratch.spans.len();
        let mut n = 0i64;
        if self.s.peek() == Some(b'}') {
            self.s.at += 1;
        } else {
            loop {
                let key = self.string()?;
                let key_start = self.out.len();
                put_long(self.out, key.len() as i64);
                self.out.extend_from_slice(key);
                // A repeated key is left to the general path (a JSON object keeps the last
                // value at the first key's place). Keys are compared as written.
                let written = &self.out[key_start..];
                if self.scratch.spans[base..]
                    .iter()
                    .any(|&(f, t)| &self.out[f as usize..t as usize] == written)
                {
                    return Err(GiveUp);
                }
                self.scratch
                    .spans
                    .push((key_start as u32, self.out.len() as u32));
                n += 1;
                self.expect(b':')?;
                self.value(values, depth + 1)?;
                match self.s.peek() {
                    Some(b',') => self.s.at += 1,
                    Some(b'}') => {
                        self.s.at += 1;
                        break;
                    }
                    _ => return Err(GiveUp),
                }
            }
        }
        self.scratch.spans.truncate(base);
        if n > 0 {
            let mut count = Vec::with_capacity(10);
            put_long(&mut count, n);
            self.out.splice(start..start, count);
        }
        self.out.push(0);
        Ok(())
    }
}

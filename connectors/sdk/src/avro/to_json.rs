//! Avro binary → JSON text in one pass, directed by the [`Plan`]: the JSON is written as the
//! datum is read, byte for byte what serializing the general path's tree gives (compact,
//! serde_json's escapes, ryu's floats), with no tree and no allocation per record.
//!
//! A datum this pass cannot write with certainty (a map with a repeated key, which a JSON
//! object would fold) or that is malformed makes it give up; the caller then takes the
//! general path, which says what is wrong.

use super::plan::{Node, NodeId, Plan};
use super::{extend_short, Reader};
pub(crate) use crate::json::string::{any_needs_look, quote};
use crate::json::string::{escape, put_escape};

/// The general path decides (an empty `String` allocates nothing; the message, if any, comes
/// from the general path).
type Step = Result<(), String>;

fn give_up<T>() -> Result<T, String> {
    Err(String::new())
}

/// Appends the JSON text of `datum` to `out`; an error when the general path must decide
/// (the caller truncates `out`).
pub(crate) fn write(plan: &Plan, datum: &[u8], out: &mut Vec<u8>) -> Step {
    let mut r = Reader { b: datum, at: 0 };
    value(plan, plan.root, &mut r, out)?;
    if r.at != datum.len() {
        return give_up();
    }
    Ok(())
}

fn float(f: f64, out: &mut Vec<u8>) {
    if f.is_finite() {
        // serde_json's own float formatter, so the text is the one it would write.
        out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes());
    } else {
        // As serde_json's Number::from_f64 has it: no JSON number for NaN or infinity.
        out.extend_from_slice(b"null");
    }
}

fn value(plan: &Plan, id: NodeId, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Step {
    match &plan.nodes[id] {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Boolean => out.extend_from_slice(if r.byte()? != 0 { b"true" } else { b"false" }),
        Node::Int | Node::Long => {
            out.extend_from_slice(itoa::Buffer::new().format(r.long()?).as_bytes())
        }
        Node::Float => {
            let b: [u8; 4] = r.take(4)?.try_into().or_else(|_| give_up())?;
            float(f32::from_le_bytes(b) as f64, out);
        }
        Node::Double => {
            let b: [u8; 8] = r.take(8)?.try_into().or_else(|_| give_up())?;
            float(f64::from_le_bytes(b), out);
        }
        Node::String => {
            let n = r.len()?;
            quote_checked(r.take(n)?, out)?;
        }
        Node::Bytes => {
            let n = r.len()?;
            quote_latin1(r.take(n)?, out);
        }
        Node::Fixed(size) => quote_latin1(r.take(*size)?, out),
        Node::Enum { quoted, .. } => {
            let Ok(i) = usize::try_from(r.long()?) else {
                return give_up();
            };
            let Some(q) = quoted.get(i) else {
                return give_up();
            };
            out.extend_from_slice(q);
        }
        Node::Array(items) => {
            out.push(b'[');
            let mut first = true;
            loop {
                let n = r.block_len()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    value(plan, *items, r, out)?;
                }
            }
            out.push(b']');
        }
        Node::Map(values) => {
            out.push(b'{');
            let mut keys: Vec<&[u8]> = Vec::new();
            loop {
                let n = r.block_len()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let kl = r.len()?;
                    let k = r.take(kl)?;
                    if (!k.is_ascii() && std::str::from_utf8(k).is_err()) || keys.contains(&k) {
                        // Not text, or a repeated key a JSON object would fold.
                        return give_up();
                    }
                    if !keys.is_empty() {
                        out.push(b',');
                    }
                    keys.push(k);
                    quote(k, out);
                    out.push(b':');
                    value(plan, *values, r, out)?;
                }
            }
            out.push(b'}');
        }
        Node::Union(branches) => {
            let Ok(i) = usize::try_from(r.long()?) else {
                return give_up();
            };
            let Some(&branch) = branches.get(i) else {
                return give_up();
            };
            value(plan, branch, r, out)?;
        }
        Node::Record(fields) => {
            // Each key comes with the comma before it: the first goes without.
            out.push(b'{');
            for (i, f) in fields.iter().enumerate() {
                extend_short(out, &f.key[(i == 0) as usize..]);
                value(plan, f.node, r, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Bytes that are UTF-8 text as a JSON string (escaped exactly as serde_json escapes);
/// an error when they are not UTF-8. Printable ASCII (most strings) is checked 8 bytes at a
/// time and copied in one go.
fn quote_checked(s: &[u8], out: &mut Vec<u8>) -> Step {
    if !any_needs_look(s) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        extend_short(out, s);
        out.push(b'"');
        return Ok(());
    }
    if !s.is_ascii() && std::str::from_utf8(s).is_err() {
        return give_up();
    }
    quote(s, out);
    Ok(())
}

/// Bytes as a JSON string of the code points 0–255 (how the general path maps `bytes`).
fn quote_latin1(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        if b >= 0x80 {
            out.extend_from_slice(&[0xc0 | (b >> 6), 0x80 | (b & 0x3f)]);
            continue;
        }
        match escape(b) {
            0 => out.push(b),
            e => put_escape(b, e, out),
        }
    }
    out.push(b'"');
}

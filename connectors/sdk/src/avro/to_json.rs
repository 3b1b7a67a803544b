//! Avro binary → JSON text in one pass, directed by the [`Plan`]: the JSON is written as the
//! datum is read, byte for byte what serializing the general path's tree gives (compact,
//! serde_json's escapes, ryu's floats), with no tree and no allocation per record.
//!
//! A datum this pass cannot write with certainty (a map with a repeated key, which a JSON
//! object would fold) or that is malformed makes it give up; the caller then takes the
//! general path, which says what is wrong.

use super::plan::{Node, NodeId, Plan};
use super::{extend_short, Reader};

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

/// serde_json's escape for a byte that needs one (`0`: none).
fn escape(b: u8) -> u8 {
    match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0x00..=0x1f => b'u',
        _ => 0,
    }
}

fn put_escape(b: u8, e: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'\\');
    out.push(e);
    if e == b'u' {
        out.extend_from_slice(&[b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
    }
}

/// Whether any of the 8 bytes in `w` is a control character, `"`, `\\` or not ASCII: the
/// bytes that need a look of their own.
#[inline]
fn needs_look(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (control
        | has_zero(w ^ (ONES * b'"' as u64))
        | has_zero(w ^ (ONES * b'\\' as u64))
        | (w & HIGH))
        != 0
}

/// Whether `s` has a byte [`needs_look`] marks: 16 bytes at a time (SSE2, the last 16
/// overlapping the ones before), 8 for shorter strings, one by one below 8.
#[inline]
pub(crate) fn any_needs_look(s: &[u8]) -> bool {
    let n = s.len();
    #[cfg(target_arch = "x86_64")]
    if n >= 16 {
        return needs_look_sse2(s);
    }
    if n >= 8 {
        let load = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
        let mut look = false;
        let mut at = 0;
        while at + 8 < n {
            look |= needs_look(load(at));
            at += 8;
        }
        return look || needs_look(load(n - 8));
    }
    s.iter()
        .any(|&b| !(0x20..0x80).contains(&b) || b == b'"' || b == b'\\')
}

/// [`any_needs_look`] for 16 bytes or more.
#[cfg(target_arch = "x86_64")]
#[inline]
fn needs_look_sse2(s: &[u8]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };
    let n = s.len();
    debug_assert!(n >= 16);
    // SAFETY: SSE2 is part of every x86_64 target; each load reads 16 bytes at `at`, and
    // `at + 16 <= n` for every one of them.
    unsafe {
        let (quote, backslash, space) = (
            _mm_set1_epi8(b'"' as i8),
            _mm_set1_epi8(b'\\' as i8),
            _mm_set1_epi8(0x20),
        );
        let look = |at: usize| {
            let v = _mm_loadu_si128(s.as_ptr().add(at).cast::<__m128i>());
            // Signed: bytes of 0x80 and above are negative, so below 0x20 with the controls.
            let low = _mm_cmplt_epi8(v, space);
            _mm_or_si128(
                low,
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
            )
        };
        let mut acc = _mm_setzero_si128();
        let mut at = 0;
        while at + 16 < n {
            acc = _mm_or_si128(acc, look(at));
            at += 16;
        }
        acc = _mm_or_si128(acc, look(n - 16));
        _mm_movemask_epi8(acc) != 0
    }
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

/// `s` (valid UTF-8) as a JSON string, escaped exactly as serde_json escapes.
pub(crate) fn quote(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        let e = escape(b);
        if e != 0 {
            out.extend_from_slice(&s[run..i]);
            put_escape(b, e, out);
            run = i + 1;
        }
    }
    out.extend_from_slice(&s[run..]);
    out.push(b'"');
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

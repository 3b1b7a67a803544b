//! Any JSON text → the compact text serde_json writes for it (parsing into a `Value`, then
//! `to_string`), streamed: whitespace dropped, strings without escapes copied as they are,
//! numbers in serde_json's own form, keys in their order. No document tree and no allocation
//! per text. A text with an escape, a repeated key (a `Value` keeps the last value at the
//! first key's place), a number past [`super::number`] or very deep nesting is left to
//! serde_json, as is every verdict on a text that is not JSON.

use std::cell::RefCell;

use super::number::write_canonical;
use super::{Scanner, Stop, MAX_DEPTH};

thread_local! {
    /// The keys of the objects being written (spans of the text), to find repeated ones.
    static KEYS: RefCell<Vec<(u32, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Appends to `out` exactly what `serde_json::from_slice::<Value>(text)?.to_string()` gives
/// and returns `true`; `false` (with `out` as it was) when serde_json must decide.
///
/// ```
/// let mut out = Vec::new();
/// assert!(sluice_connector_sdk::json::write_compact(br#" { "a" : [1, 2.50, -0] } "#, &mut out));
/// assert_eq!(out, br#"{"a":[1,2.5,-0.0]}"#);
/// ```
pub fn write_compact(text: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let written = (text.is_ascii() || std::str::from_utf8(text).is_ok())
        && text.len() < u32::MAX as usize
        && KEYS.with(|keys| {
            let Ok(mut keys) = keys.try_borrow_mut() else {
                return false;
            };
            keys.clear();
            let mut s = Scanner::new(text);
            let done = value(&mut s, out, &mut keys, 0).is_ok();
            s.ws();
            done && s.at == text.len()
        });
    if !written {
        out.truncate(start);
    }
    written
}

/// One member of an object read by [`object_cells`]: where its key lies in the text (as
/// written: keys with escapes are left to serde_json) and where its cell lies in the cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub key: (u32, u32),
    pub cell: (u32, u32),
}

/// A JSON object's members as text cells, for a table's row (CSV): each value's text as
/// serde_json's `Value` gives it to a table writer (a string's contents, nothing for
/// `null`, `to_string()` of anything else), appended to `cells`, and each member in
/// `members` (cleared first). `false` (with `cells` as it was) when the text is not one
/// object this can be sure of: serde_json must then decide, and say what is wrong.
///
/// ```
/// use sluice_connector_sdk::json::object_cells;
/// let (text, mut cells, mut members) = (br#"{"a": "x", "b": null, "c": [1, 2.50]}"#, Vec::new(), Vec::new());
/// assert!(object_cells(text, &mut cells, &mut members));
/// let cell = |i: usize| { let (f, t) = members[i].cell; &cells[f as usize..t as usize] };
/// assert_eq!((cell(0), cell(1), cell(2)), (&b"x"[..], &b""[..], &b"[1,2.5]"[..]));
/// ```
pub fn object_cells(text: &[u8], cells: &mut Vec<u8>, members: &mut Vec<Member>) -> bool {
    let start = cells.len();
    members.clear();
    let read = (text.is_ascii() || std::str::from_utf8(text).is_ok())
        && text.len() < u32::MAX as usize
        && KEYS.with(|keys| {
            let Ok(mut keys) = keys.try_borrow_mut() else {
                return false;
            };
            keys.clear();
            let mut s = Scanner::new(text);
            let done = members_of(&mut s, cells, members, &mut keys).is_ok();
            s.ws();
            done && s.at == text.len()
        })
        && cells.len() < u32::MAX as usize;
    if !read {
        cells.truncate(start);
        members.clear();
    }
    read
}

fn members_of(
    s: &mut Scanner<'_>,
    cells: &mut Vec<u8>,
    members: &mut Vec<Member>,
    keys: &mut Vec<(u32, u32)>,
) -> Result<(), Stop> {
    if s.peek() != Some(b'{') {
        return Err(Stop::Unsure); // serde_json names what it is instead
    }
    s.at += 1;
    if s.peek() == Some(b'}') {
        s.at += 1;
        return Ok(());
    }
    loop {
        let b = s.b;
        let key = member_key(s, |key| {
            members
                .iter()
                .any(|m| &b[m.key.0 as usize..m.key.1 as usize] == key)
        })?;
        let at = cells.len();
        if s.peek() == Some(b'"') {
            s.at += 1;
            cells.extend_from_slice(s.string_body()?);
        } else {
            value(s, cells, keys, 1)?;
            if cells[at..] == *b"null" {
                cells.truncate(at);
            }
        }
        members.push(Member {
            key,
            cell: (at as u32, cells.len() as u32),
        });
        match s.peek() {
            Some(b',') => s.at += 1,
            Some(b'}') => {
                s.at += 1;
                return Ok(());
            }
            _ => return Err(Stop::Invalid),
        }
    }
}

fn value(
    s: &mut Scanner<'_>,
    out: &mut Vec<u8>,
    keys: &mut Vec<(u32, u32)>,
    depth: u32,
) -> Result<(), Stop> {
    match s.peek().ok_or(Stop::Invalid)? {
        b'"' => {
            s.at += 1;
            let body = s.string_body()?;
            out.push(b'"');
            out.extend_from_slice(body);
            out.push(b'"');
        }
        b'-' | b'0'..=b'9' => {
            let (number, float) = s.number()?;
            write_canonical(number, float, out).ok_or(Stop::Unsure)?;
        }
        b't' => literal(s, b"true", out)?,
        b'f' => literal(s, b"false", out)?,
        b'n' => literal(s, b"null", out)?,
        b'[' => {
            if depth >= MAX_DEPTH {
                return Err(Stop::Unsure);
            }
            s.at += 1;
            out.push(b'[');
            if s.peek() == Some(b']') {
                s.at += 1;
            } else {
                loop {
                    value(s, out, keys, depth + 1)?;
                    match s.peek() {
                        Some(b',') => out.push(b','),
                        Some(b']') => break,
                        _ => return Err(Stop::Invalid),
                    }
                    s.at += 1;
                }
                s.at += 1;
            }
            out.push(b']');
        }
        b'{' => {
            if depth >= MAX_DEPTH {
                return Err(Stop::Unsure);
            }
            s.at += 1;
            out.push(b'{');
            let base = keys.len();
            if s.peek() == Some(b'}') {
                s.at += 1;
            } else {
                loop {
                    let b = s.b;
                    let key = member_key(s, |key| {
                        keys[base..]
                            .iter()
                            .any(|&(f, t)| &b[f as usize..t as usize] == key)
                    })?;
                    keys.push(key);
                    out.push(b'"');
                    out.extend_from_slice(&b[key.0 as usize..key.1 as usize]);
                    out.extend_from_slice(b"\":");
                    value(s, out, keys, depth + 1)?;
                    match s.peek() {
                        Some(b',') => out.push(b','),
                        Some(b'}') => break,
                        _ => return Err(Stop::Invalid),
                    }
                    s.at += 1;
                }
                s.at += 1;
                keys.truncate(base);
            }
            out.push(b'}');
        }
        _ => return Err(Stop::Invalid),
    }
    Ok(())
}

/// An object member's `"key":`, read up to its value; the key's span in the text. A key
/// `seen` before is serde_json's call (a `Value` keeps the last value at the first key's
/// place): without escapes, equal keys are equal texts.
fn member_key(s: &mut Scanner<'_>, seen: impl Fn(&[u8]) -> bool) -> Result<(u32, u32), Stop> {
    if s.peek() != Some(b'"') {
        return Err(Stop::Invalid);
    }
    s.at += 1;
    let from = s.at;
    let key = s.string_body()?;
    if seen(key) {
        return Err(Stop::Unsure);
    }
    if s.peek() != Some(b':') {
        return Err(Stop::Invalid);
    }
    s.at += 1;
    Ok((from as u32, (from + key.len()) as u32))
}

fn literal(s: &mut Scanner<'_>, word: &[u8], out: &mut Vec<u8>) -> Result<(), Stop> {
    s.literal(word)?;
    out.extend_from_slice(word);
    Ok(())
}

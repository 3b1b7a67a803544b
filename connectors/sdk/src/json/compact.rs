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
                    if s.peek() != Some(b'"') {
                        return Err(Stop::Invalid);
                    }
                    s.at += 1;
                    let from = s.at;
                    let key = s.string_body()?;
                    // Without escapes, equal keys are equal texts.
                    let b = s.b;
                    if keys[base..]
                        .iter()
                        .any(|&(f, t)| &b[f as usize..t as usize] == key)
                    {
                        return Err(Stop::Unsure);
                    }
                    keys.push((from as u32, (from + key.len()) as u32));
                    out.push(b'"');
                    out.extend_from_slice(key);
                    out.extend_from_slice(b"\":");
                    if s.peek() != Some(b':') {
                        return Err(Stop::Invalid);
                    }
                    s.at += 1;
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

fn literal(s: &mut Scanner<'_>, word: &[u8], out: &mut Vec<u8>) -> Result<(), Stop> {
    s.literal(word)?;
    out.extend_from_slice(word);
    Ok(())
}

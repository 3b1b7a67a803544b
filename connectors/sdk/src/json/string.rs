//! JSON strings written exactly as serde_json writes them: the same escapes (`\"`, `\\`,
//! `\b \f \n \r \t`, `\u00XX` for other control characters; everything else as it is), with
//! a 16-bytes-at-a-time check so that most strings are one copy.

/// `s` as a JSON string, quotes included, exactly as serde_json writes it.
///
/// ```
/// let mut out = Vec::new();
/// sluice_connector_sdk::json::write_string("a\"b\n", &mut out);
/// assert_eq!(out, br#""a\"b\n""#);
/// ```
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    write_text(s.as_bytes(), out)
}

/// [`write_string`] for bytes the caller knows to be UTF-8 text (spans of a checked text,
/// say), without checking them again: bytes that are not UTF-8 are copied as they are.
pub fn write_text(b: &[u8], out: &mut Vec<u8>) {
    if any_needs_look(b) {
        return quote(b, out);
    }
    out.reserve(b.len() + 2);
    out.push(b'"');
    out.extend_from_slice(b);
    out.push(b'"');
}

/// serde_json's escape for a byte that needs one (`0`: none).
pub(crate) fn escape(b: u8) -> u8 {
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

pub(crate) fn put_escape(b: u8, e: u8, out: &mut Vec<u8>) {
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

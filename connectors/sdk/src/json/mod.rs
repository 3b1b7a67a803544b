//! A fast scanner for JSON text on the record path: nothing is allocated, and strings are
//! skipped without looking at their bytes one by one. A text with no escape and no control
//! character (most records) is classified once, 16 bytes at a time, into a bit per quote, so
//! that a string ends at the next quote bit; other texts are scanned 8 bytes at a time. It answers only what it is sure of; for anything unusual (escapes,
//! very deep nesting, numbers it does not parse itself) it says "unsure" and the caller asks
//! serde_json, which stays the reference for every verdict and every error message.
// The Avro transcoder (feature `avro`) is the one user of the number readers.
#![cfg_attr(not(feature = "avro"), allow(dead_code))]

/// `Some(true)`: `b` is one JSON value (with surrounding whitespace), exactly as
/// `serde_json::from_slice::<IgnoredAny>` would accept it; `Some(false)`: it is not;
/// `None`: ask serde_json.
pub fn is_valid(b: &[u8]) -> Option<bool> {
    if !b.is_ascii() && std::str::from_utf8(b).is_err() {
        return None;
    }
    let mut s = Scanner::new(b);
    match s.skip_value(0) {
        Ok(()) => {}
        Err(Stop::Invalid) => return Some(false),
        Err(Stop::Unsure) => return None,
    }
    s.ws();
    Some(s.at == b.len())
}

/// Why scanning stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Not JSON.
    Invalid,
    /// Something this scanner leaves to serde_json.
    Unsure,
}

/// A number read by [`Scanner::short_number`]: `±significand`, divided by 10 to the
/// `fraction` digits when it has a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShortNumber {
    pub negative: bool,
    pub significand: u64,
    pub fraction: Option<u32>,
}

/// serde_json's recursion limit: deeper documents are its call.
pub(crate) const MAX_DEPTH: u32 = 100;

pub(crate) struct Scanner<'a> {
    pub b: &'a [u8],
    pub at: usize,
    /// Set when the text has no backslash and no control character: then every quote opens
    /// or closes a string, and `quotes` has a bit for each (bit `i % 64` of word `i / 64`).
    plain: bool,
    quotes: [u64; QUOTE_WORDS],
}

/// Texts up to this many 64-byte words get a quote index; longer ones are scanned.
const QUOTE_WORDS: usize = 32;

/// Fills `quotes` (zeroed) with a bit per `"` of `b`; `true` when `b` has no `\\` and no
/// byte below 0x20, so that the bits alone tell where strings end.
#[cfg(target_arch = "x86_64")]
fn index_quotes(b: &[u8], quotes: &mut [u64; QUOTE_WORDS]) -> bool {
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has just been asked whether it has AVX2.
        unsafe { index_quotes_avx2(b, quotes) }
    } else {
        // SAFETY: SSE2 is part of every x86_64 target.
        unsafe { index_quotes_sse2(b, quotes) }
    }
}

/// [`index_quotes_sse2`] 32 bytes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn index_quotes_avx2(b: &[u8], quotes: &mut [u64; QUOTE_WORDS]) -> bool {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };
    if b.len() > QUOTE_WORDS * 64 {
        return false;
    }
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let control = _mm256_set1_epi8(0x1f);
    let mut special = 0;
    // The quote bits of the 32 bytes at `at`, with `special` noted.
    let mut lane = |at: usize| {
        // SAFETY: callers pass `at + 32 <= b.len()`; an unaligned load has no other need.
        let v = unsafe { _mm256_loadu_si256(b.as_ptr().add(at).cast::<__m256i>()) };
        let q = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, quote)) as u32 as u64;
        let low = _mm256_cmpeq_epi8(_mm256_min_epu8(v, control), v);
        special |= _mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(v, backslash), low));
        q
    };
    let n = b.len();
    let mut at = 0;
    // A word of bits per 64 bytes, stored once.
    while at + 64 <= n {
        quotes[at / 64] = lane(at) | lane(at + 32) << 32;
        at += 64;
    }
    if at + 32 <= n {
        quotes[at / 64] = lane(at);
        at += 32;
    }
    let rest = n - at;
    if rest > 0 {
        if n >= 32 {
            // The last 32 bytes, overlapping the ones before: only the new bits count.
            let bits = lane(n - 32) >> (32 - rest);
            quotes[at / 64] |= bits << (at % 64);
        } else {
            let mut last = [b' '; 32];
            last[..rest].copy_from_slice(&b[at..]);
            // SAFETY: as above, for a padded copy.
            let v = unsafe { _mm256_loadu_si256(last.as_ptr().cast::<__m256i>()) };
            let q = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, quote)) as u32 as u64;
            let low = _mm256_cmpeq_epi8(_mm256_min_epu8(v, control), v);
            special |= _mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(v, backslash), low));
            quotes[0] = q;
        }
    }
    special == 0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn index_quotes_sse2(b: &[u8], quotes: &mut [u64; QUOTE_WORDS]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    if b.len() > QUOTE_WORDS * 64 {
        return false;
    }
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let control = _mm_set1_epi8(0x1f);
    let mut special = 0;
    let mut lane = |at: usize, chunk: &[u8; 16]| {
        // SAFETY: `chunk` is 16 readable bytes; an unaligned load has no other need.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
        let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u32 as u64;
        // A byte is at most 0x1f exactly when min(byte, 0x1f) is the byte (unsigned).
        let low = _mm_cmpeq_epi8(_mm_min_epu8(v, control), v);
        special |= _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, backslash), low));
        quotes[at / 64] |= q << (at % 64);
    };
    let mut chunks = b.chunks_exact(16);
    let mut at = 0;
    for chunk in &mut chunks {
        lane(at, chunk.try_into().expect("chunks of 16"));
        at += 16;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Padded with spaces: neither a quote nor special.
        let mut last = [b' '; 16];
        last[..rest.len()].copy_from_slice(rest);
        lane(at, &last);
    }
    special == 0
}

#[cfg(not(target_arch = "x86_64"))]
fn index_quotes(_: &[u8], _: &mut [u64; QUOTE_WORDS]) -> bool {
    false
}

/// The bytes of `w` (little-endian) that are a control character, `"` or `\`, each
/// marked by its high bit; the lowest mark is exact (the first such byte).
#[inline]
pub(crate) fn string_stops(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    // Bytes of 0x80 and above are never control characters.
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    control | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))
}

/// `a == b` for slices of the same length, with two overlapping loads instead of a call for
/// the lengths record keys mostly have (4 to 16 bytes).
#[inline]
fn eq_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a == b,
    }
}

/// Where the number at `i` ends (its grammar as in [`Scanner::number`]).
#[inline(always)]
fn number_end(b: &[u8], mut i: usize) -> Result<usize, Stop> {
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i != from
    };
    i += (b.get(i) == Some(&b'-')) as usize;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return Err(Stop::Invalid),
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return Err(Stop::Invalid);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        i += matches!(b.get(i), Some(b'+' | b'-')) as usize;
        if !digits(&mut i) {
            return Err(Stop::Invalid);
        }
    }
    Ok(i)
}

/// Where the literal `word` at `i` ends.
#[inline]
fn literal_end(b: &[u8], i: usize, word: &[u8]) -> Result<usize, Stop> {
    match b.get(i..i + word.len()) {
        Some(w) if w == word => Ok(i + word.len()),
        _ => Err(Stop::Invalid),
    }
}

impl<'a> Scanner<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        let mut quotes = [0u64; QUOTE_WORDS];
        let plain = index_quotes(b, &mut quotes);
        Scanner {
            b,
            at: 0,
            plain,
            quotes,
        }
    }

    #[inline]
    pub fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.at) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.at += 1;
        }
    }

    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.at).copied()
    }

    /// After the opening quote: the string's content up to the closing quote, which is
    /// consumed. An escape is left to serde_json.
    #[inline(always)]
    pub fn string_body(&mut self) -> Result<&'a [u8], Stop> {
        let start = self.at;
        if self.plain {
            let end = self.closing_quote(start)?;
            self.at = end + 1;
            return Ok(&self.b[start..end]);
        }
        self.string_body_scanned()
    }

    /// [`Scanner::string_body`] for a text without the quote index.
    fn string_body_scanned(&mut self) -> Result<&'a [u8], Stop> {
        let start = self.at;
        let b = self.b;
        let mut i = start;
        // Eight bytes at a time to the first byte that ends or escapes the string.
        while let Some(chunk) = b.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let stops = string_stops(u64::from_le_bytes(word));
            if stops != 0 {
                i += (stops.trailing_zeros() / 8) as usize;
                return self.string_end(start, i);
            }
            i += 8;
        }
        while let Some(&c) = b.get(i) {
            if matches!(c, b'"' | b'\\' | 0x00..=0x1f) {
                return self.string_end(start, i);
            }
            i += 1;
        }
        Err(Stop::Invalid)
    }

    /// In a plain text: the first quote at or after `start`, from the index.
    #[inline]
    fn closing_quote(&self, start: usize) -> Result<usize, Stop> {
        let mut word = start / 64;
        let mut bits = match self.quotes.get(word) {
            Some(w) => w & (!0u64 << (start % 64)),
            None => return Err(Stop::Invalid),
        };
        while bits == 0 {
            word += 1;
            bits = match self.quotes.get(word) {
                Some(&w) if word * 64 < self.b.len() => w,
                _ => return Err(Stop::Invalid), // unterminated
            };
        }
        Ok(word * 64 + bits.trailing_zeros() as usize)
    }

    /// [`Scanner::skip_value`] for a plain text: one loop over the tokens with the open
    /// containers kept as bits (objects 1, arrays 0), strings skipped by the quote index.
    /// The only whitespace a plain text can have is the space.
    fn skip_plain(&mut self, depth: u32) -> Result<(), Stop> {
        let b = self.b;
        let mut i = self.at;
        let mut open: u32 = 0;
        // A bit per open container (objects 1, arrays 0); `in_object` is the innermost one's.
        let mut objects: u128 = 0;
        let mut in_object = false;
        let spaces = |i: &mut usize| {
            while b.get(*i) == Some(&b' ') {
                *i += 1;
            }
        };
        // After `{` or `,` in an object: a key and its colon.
        let key = |s: &Self, i: &mut usize| -> Result<(), Stop> {
            if b.get(*i) != Some(&b'"') {
                return Err(Stop::Invalid);
            }
            *i = s.closing_quote(*i + 1)? + 1;
            spaces(i);
            if b.get(*i) != Some(&b':') {
                return Err(Stop::Invalid);
            }
            *i += 1;
            Ok(())
        };
        'value: loop {
            spaces(&mut i);
            match b.get(i) {
                Some(b'"') => i = self.closing_quote(i + 1)? + 1,
                Some(&c @ (b'{' | b'[')) => {
                    if depth + open > MAX_DEPTH {
                        return Err(Stop::Unsure);
                    }
                    i += 1;
                    spaces(&mut i);
                    let close = if c == b'{' { b'}' } else { b']' };
                    if b.get(i) == Some(&close) {
                        i += 1; // empty: a whole value
                    } else {
                        in_object = c == b'{';
                        if in_object {
                            objects |= 1 << open;
                            key(self, &mut i)?;
                        } else {
                            objects &= !(1 << open);
                        }
                        open += 1;
                        continue 'value;
                    }
                }
                Some(b't') => i = literal_end(b, i, b"true")?,
                Some(b'f') => i = literal_end(b, i, b"false")?,
                Some(b'n') => i = literal_end(b, i, b"null")?,
                Some(b'-' | b'0'..=b'9') => i = number_end(b, i)?,
                _ => return Err(Stop::Invalid),
            }
            // A value is whole: go on in its container, or close it.
            loop {
                if open == 0 {
                    self.at = i;
                    return Ok(());
                }
                spaces(&mut i);
                match b.get(i) {
                    Some(b',') => {
                        i += 1;
                        if in_object {
                            spaces(&mut i);
                            key(self, &mut i)?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if in_object => i += 1,
                    Some(b']') if !in_object => i += 1,
                    _ => return Err(Stop::Invalid),
                }
                open -= 1;
                in_object = open > 0 && (objects >> (open - 1)) & 1 == 1;
            }
        }
    }

    /// At the byte `i` that stopped a string's scan.
    #[inline]
    fn string_end(&mut self, start: usize, i: usize) -> Result<&'a [u8], Stop> {
        match self.b.get(i) {
            Some(b'"') => {
                self.at = i + 1;
                Ok(&self.b[start..i])
            }
            Some(b'\\') => Err(Stop::Unsure),
            _ => Err(Stop::Invalid),
        }
    }

    /// After any whitespace: whether the text goes on with `word`, which is then consumed.
    #[inline]
    pub fn eat(&mut self, word: &[u8]) -> bool {
        self.ws();
        let hit = self
            .b
            .get(self.at..self.at + word.len())
            .is_some_and(|w| eq_short(w, word));
        if hit {
            self.at += word.len();
        }
        hit
    }

    pub fn literal(&mut self, word: &[u8]) -> Result<(), Stop> {
        if self.b[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(Stop::Invalid)
        }
    }

    /// The common number, read in one pass: `-?(0|[1-9][0-9]*)(\.[0-9]+)?` with at most 18
    /// digits and no exponent, consumed. `None` (nothing consumed) for any other text, which
    /// [`Scanner::number`] then reads.
    #[inline]
    pub fn short_number(&mut self) -> Option<ShortNumber> {
        let b = self.b;
        let mut i = self.at;
        let negative = b.get(i) == Some(&b'-');
        i += negative as usize;
        let mut significand = 0u64;
        let mut digits = |i: &mut usize| {
            let from = *i;
            while let Some(d) = b.get(*i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
                significand = significand.wrapping_mul(10).wrapping_add(d as u64);
                *i += 1;
            }
            *i - from
        };
        let first = i;
        let whole = digits(&mut i);
        if whole == 0 || (whole > 1 && b[first] == b'0') {
            return None;
        }
        let mut fraction = None;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let n = digits(&mut i);
            if n == 0 {
                return None;
            }
            fraction = Some(n as u32);
        }
        if whole + fraction.unwrap_or(0) as usize > 18 || matches!(b.get(i), Some(b'e' | b'E')) {
            return None;
        }
        self.at = i;
        Some(ShortNumber {
            negative,
            significand,
            fraction,
        })
    }

    /// A number's text: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, and whether it
    /// has a fraction or an exponent.
    pub fn number(&mut self) -> Result<(&'a [u8], bool), Stop> {
        let b = self.b;
        let start = self.at;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(Stop::Invalid),
        }
        let mut float = false;
        if b.get(i) == Some(&b'.') {
            i += 1;
            float = true;
            if digits(&mut i) == 0 {
                return Err(Stop::Invalid);
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            float = true;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return Err(Stop::Invalid);
            }
        }
        self.at = i;
        Ok((&b[start..i], float))
    }

    pub fn skip_value(&mut self, depth: u32) -> Result<(), Stop> {
        if self.plain {
            return self.skip_plain(depth);
        }
        if depth > MAX_DEPTH {
            return Err(Stop::Unsure);
        }
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                self.string_body().map(|_| ())
            }
            Some(b'{') => {
                self.at += 1;
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(Stop::Invalid);
                    }
                    self.at += 1;
                    self.string_body()?;
                    if self.peek() != Some(b':') {
                        return Err(Stop::Invalid);
                    }
                    self.at += 1;
                    self.skip_value(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(());
                        }
                        _ => return Err(Stop::Invalid),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(());
                        }
                        _ => return Err(Stop::Invalid),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            _ => Err(Stop::Invalid),
        }
    }
}

/// Kafka Connect's schema envelope taken apart: the texts of the `schema` and `payload`
/// values (as written, whitespace around them left out) when `text` is one object with
/// exactly those two keys, in either order; `None` for anything else, a text that is not
/// JSON included (serde_json then says what is wrong).
///
/// ```
/// let text = br#"{"schema": {"type": "string"}, "payload": "x"}"#;
/// let (schema, payload) = sluice_connector_sdk::json::envelope_parts(text).unwrap();
/// assert_eq!((schema, payload), (&br#"{"type": "string"}"#[..], &br#""x""#[..]));
/// ```
pub fn envelope_parts(text: &[u8]) -> Option<(&[u8], &[u8])> {
    if !text.is_ascii() && std::str::from_utf8(text).is_err() {
        return None;
    }
    let mut s = Scanner::new(text);
    let (mut schema, mut payload) = (None, None);
    for opening in [b'{', b','] {
        if s.peek()? != opening {
            return None;
        }
        s.at += 1;
        if s.peek()? != b'"' {
            return None;
        }
        s.at += 1;
        let key = s.string_body().ok()?;
        if s.peek()? != b':' {
            return None;
        }
        s.at += 1;
        s.ws();
        let from = s.at;
        s.skip_value(1).ok()?;
        let slot = match key {
            b"schema" => &mut schema,
            b"payload" => &mut payload,
            _ => return None,
        };
        if slot.replace(&text[from..s.at]).is_some() {
            return None; // the same key twice
        }
    }
    if s.peek()? != b'}' {
        return None;
    }
    s.at += 1;
    s.ws();
    if s.at != text.len() {
        return None;
    }
    Some((schema?, payload?))
}

/// The payload's text when `text` is an envelope written the way Sluice writes them,
/// `{"schema":<schema>,"payload":<payload>}` with `schema`'s exact text (only whitespace
/// after the closing brace): a topic's envelopes mostly repeat one schema, and a compare of
/// its bytes is cheaper than a scan. The payload is not checked: it is JSON only if the
/// caller's parse of it (e.g. [`write_compact`]) says so, and anything else is an envelope
/// for [`envelope_parts`] to judge.
///
/// ```
/// use sluice_connector_sdk::json::payload_after_schema;
/// let text = br#"{"schema":{"type":"string"},"payload":"x"}"#;
/// assert_eq!(payload_after_schema(text, br#"{"type":"string"}"#), Some(&br#""x""#[..]));
/// assert_eq!(payload_after_schema(text, br#"{"type":"int32"}"#), None);
/// ```
pub fn payload_after_schema<'a>(text: &'a [u8], schema: &[u8]) -> Option<&'a [u8]> {
    let rest = text.strip_prefix(b"{\"schema\":")?;
    let rest = rest.strip_prefix(schema)?;
    let rest = rest.strip_prefix(b",\"payload\":")?;
    let last = rest
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    (rest[last] == b'}').then(|| &rest[..last])
}

mod compact;
pub(crate) mod string;
pub use string::{write_string, write_text};
pub(crate) mod number;
#[cfg(test)]
mod tests;

pub use compact::{object_cells, write_compact, Member};

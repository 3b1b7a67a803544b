//! A fast scanner for JSON text on the record path: strings are skipped 8 bytes at a time,
//! nothing is allocated. It answers only what it is sure of; for anything unusual (escapes,
//! very deep nesting, numbers it does not parse itself) it says "unsure" and the caller asks
//! serde_json, which stays the reference for every verdict and every error message.

/// `Some(true)`: `b` is one JSON value (with surrounding whitespace), exactly as
/// `serde_json::from_slice::<IgnoredAny>` would accept it; `Some(false)`: it is not;
/// `None`: ask serde_json.
pub fn is_valid(b: &[u8]) -> Option<bool> {
    if !b.is_ascii() && std::str::from_utf8(b).is_err() {
        return None;
    }
    let mut s = Scanner { b, at: 0 };
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

/// serde_json's recursion limit: deeper documents are its call.
pub(crate) const MAX_DEPTH: u32 = 100;

pub(crate) struct Scanner<'a> {
    pub b: &'a [u8],
    pub at: usize,
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

impl<'a> Scanner<'a> {
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
    #[inline]
    pub fn string_body(&mut self) -> Result<&'a [u8], Stop> {
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

    pub fn literal(&mut self, word: &[u8]) -> Result<(), Stop> {
        if self.b[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(Stop::Invalid)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_says(b: &[u8]) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
    }

    #[test]
    fn known_texts_agree_with_serde_json() {
        for t in [
            &br#"{"a": [1, -2.5e+3, true, false, null, "x\u00e9"], "b": {}}"#[..],
            b"  0 ",
            b"-0",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"\"tab\there\"",
            b"\"\xff\"",
            b"\"caf\xc3\xa9\"",
            b"tru",
            b"nulll",
            b"[] []",
            b"",
            b"\"esc \\\" \\u12\"",
            b"123456789012345678901234567890",
            b"1e99999",
        ] {
            if let Some(v) = is_valid(t) {
                assert_eq!(v, serde_says(t), "{}", String::from_utf8_lossy(t));
            }
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(
            is_valid(deep.as_bytes()),
            None,
            "deep nesting is serde_json's call"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        #[test]
        fn random_texts_agree_with_serde_json(t in "[\\[\\]{}\":,0-9.eE+\\- \\ta-z\\\\\u{e9}\u{1}]{0,40}") {
            if let Some(v) = is_valid(t.as_bytes()) {
                prop_assert_eq!(v, serde_says(t.as_bytes()), "{}", t);
            }
        }

        #[test]
        fn json_values_are_valid(v in prop::collection::vec(("\\PC{0,12}", any::<i64>(), any::<f64>(), any::<bool>()), 0..6)) {
            let text = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(is_valid(&text).unwrap_or(true), true);
        }
    }
}

//! JSON numbers as serde_json reads and writes them, for the lean paths: the same value
//! (bits included) from the same text, and the same text back (`Value::to_string`), without
//! a document tree. Short decimals are divided exactly here; anything else is serde_json's.

use super::ShortNumber;

/// A JSON number as serde_json would have parsed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    /// serde_json's `as_i64`.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Num::I(i) => Some(i),
            Num::U(u) => i64::try_from(u).ok(),
            Num::F(_) => None,
        }
    }
    /// serde_json's `as_f64`.
    pub fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::U(u) => u as f64,
            Num::F(f) => f,
        }
    }

    /// A number read by [`super::Scanner::short_number`], as serde_json parses it; `None` when it
    /// must parse the text itself.
    pub fn from_short(n: ShortNumber) -> Option<Num> {
        let ShortNumber {
            negative,
            significand,
            fraction,
        } = n;
        Some(match fraction {
            Some(digits) => Num::F(divide_exactly(negative, significand, digits)?),
            None => Num::integer(negative, significand),
        })
    }

    /// The number `text` is, as serde_json parses it; `None` past what is parsed here.
    pub fn parse(text: &[u8], float: bool) -> Option<Num> {
        if float {
            return Some(Num::F(
                exact_decimal(text).or_else(|| serde_json::from_slice::<f64>(text).ok())?,
            ));
        }
        let (negative, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        let mut v: u64 = 0;
        for d in digits {
            // Past u64, serde_json reads the text as a float: its call.
            v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
        }
        Some(Num::integer(negative, v))
    }

    /// An integer as serde_json makes it: `u64` when positive, `i64` when negative and in
    /// range, a float otherwise (`-0` included).
    fn integer(negative: bool, v: u64) -> Num {
        if !negative {
            return Num::U(v);
        }
        let negated = (v as i64).wrapping_neg();
        if negated >= 0 {
            Num::F(-(v as f64))
        } else {
            Num::I(negated)
        }
    }
}

/// Powers of ten that are exact as `f64`.
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A decimal without an exponent (`-?digits.digits`, already checked), as
/// [`divide_exactly`] reads it; `None` otherwise.
fn exact_decimal(text: &[u8]) -> Option<f64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.len() > 17 {
        return None; // 16 digits and the point: below 10^16, checked against 2^53 below
    }
    let (mut significand, mut fraction, mut point) = (0u64, 0u32, false);
    for &d in digits {
        match d {
            b'.' => point = true,
            b'0'..=b'9' => {
                significand = significand * 10 + (d - b'0') as u64;
                fraction += point as u32;
            }
            _ => return None, // an exponent
        }
    }
    divide_exactly(negative, significand, fraction)
}

/// The decimal `±significand / 10^fraction` when the significand is below 2^53 and there
/// are at most 22 fraction digits: both numbers are then exact as `f64`, so their quotient is
/// the correctly rounded value, the bits serde_json gives (it divides the same two numbers,
/// or parses correctly rounded with `float_roundtrip`). `None` otherwise.
fn divide_exactly(negative: bool, significand: u64, fraction: u32) -> Option<f64> {
    let pow = EXACT_POW10.get(fraction as usize)?;
    if significand > 1 << 53 {
        return None;
    }
    let f = significand as f64 / pow;
    Some(if negative { -f } else { f })
}

/// Appends serde_json's compact text for the number `text` (scanned, `float` when it has a
/// fraction or an exponent), what `Value::to_string` writes for it; `None` past what is
/// handled here (the caller asks serde_json).
pub(crate) fn write_canonical(text: &[u8], float: bool, out: &mut Vec<u8>) -> Option<()> {
    match Num::parse(text, float)? {
        // JSON's grammar has no leading zeros, and `-0` reads as a float: an integer that
        // fits is written back as it was read.
        Num::I(_) | Num::U(_) => out.extend_from_slice(text),
        Num::F(f) if f.is_finite() => {
            out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes())
        }
        Num::F(_) => return None,
    }
    Some(())
}

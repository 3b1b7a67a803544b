//! Postgres column types as Debezium maps them (default settings: `time.precision.mode:
//! adaptive`, `interval.handling.mode: numeric`, `binary.handling.mode: bytes`), and values
//! parsed from Postgres' text output, which `pgoutput` and `COPY … TO STDOUT` both send.
//! The replication and snapshot sessions run with `DateStyle=ISO`, `TimeZone=UTC`,
//! `IntervalStyle=iso_8601` and `extra_float_digits=3`, so the text has one form.
//!
//! A value that does not parse as its type says so; the caller turns that into a bad
//! record, never a crash.

use std::sync::Arc;

use sluice_connector_sdk::data::{Field, Schema, Value};

/// How `numeric` columns are written (Debezium's `decimal.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalHandling {
    /// Connect's `Decimal` (bytes with a scale), or `VariableScaleDecimal` when the column
    /// has no scale. `NaN` and ±Infinity have no such form and are written as null.
    Precise,
    /// A double (`NaN` and ±Infinity included).
    Double,
    /// The number's text (`NaN`, `Infinity` included).
    String,
}

/// What a column's type is, resolved through the catalog for types that are not built in.
#[derive(Debug, Clone, PartialEq)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    /// `numeric(precision, scale)`; `None`: unconstrained.
    Numeric(Option<(u32, u32)>),
    Text,
    Bytea,
    Date,
    /// `time(p)`, `timestamp(p)`: the fractional digits kept (6 unless declared).
    Time(u32),
    TimeTz,
    Timestamp(u32),
    TimestampTz,
    Interval,
    Uuid,
    Json,
    Xml,
    Enum(Vec<String>),
    Array(Box<PgType>),
    /// Anything else (inet, money, ranges, geometry…): its text.
    Other(String),
}

impl PgType {
    /// A built-in type by OID and modifier; `None` for types the catalog must describe
    /// (enums, domains, arrays of those).
    pub fn builtin(oid: u32, typmod: i32) -> Option<PgType> {
        let precision = |m: i32| if m < 0 { 6 } else { (m as u32).min(6) };
        Some(match oid {
            16 => PgType::Bool,
            21 => PgType::Int2,
            23 => PgType::Int4,
            20 => PgType::Int8,
            26 => PgType::Oid,
            700 => PgType::Float4,
            701 => PgType::Float8,
            1700 => PgType::Numeric(if typmod < 4 {
                None
            } else {
                let m = (typmod - 4) as u32;
                Some(((m >> 16) & 0xffff, m & 0x7ff))
            }),
            18 | 19 | 25 | 1042 | 1043 => PgType::Text,
            17 => PgType::Bytea,
            1082 => PgType::Date,
            1083 => PgType::Time(precision(typmod)),
            1266 => PgType::TimeTz,
            1114 => PgType::Timestamp(precision(typmod)),
            1184 => PgType::TimestampTz,
            1186 => PgType::Interval,
            2950 => PgType::Uuid,
            114 | 3802 => PgType::Json,
            142 => PgType::Xml,
            869 => PgType::Other("inet".into()),
            650 => PgType::Other("cidr".into()),
            829 => PgType::Other("macaddr".into()),
            790 => PgType::Other("money".into()),
            1000 => PgType::Array(Box::new(PgType::Bool)),
            1005 => PgType::Array(Box::new(PgType::Int2)),
            1007 => PgType::Array(Box::new(PgType::Int4)),
            1016 => PgType::Array(Box::new(PgType::Int8)),
            1021 => PgType::Array(Box::new(PgType::Float4)),
            1022 => PgType::Array(Box::new(PgType::Float8)),
            1231 => PgType::Array(Box::new(PgType::Numeric(None))),
            1009 | 1014 | 1015 => PgType::Array(Box::new(PgType::Text)),
            1001 => PgType::Array(Box::new(PgType::Bytea)),
            1182 => PgType::Array(Box::new(PgType::Date)),
            1115 => PgType::Array(Box::new(PgType::Timestamp(6))),
            1185 => PgType::Array(Box::new(PgType::TimestampTz)),
            2951 => PgType::Array(Box::new(PgType::Uuid)),
            199 | 3807 => PgType::Array(Box::new(PgType::Json)),
            _ => return None,
        })
    }

    /// The Connect/Avro schema Debezium gives a column of this type (not yet optional).
    pub fn schema(&self, decimals: DecimalHandling) -> Schema {
        let dbz = |name: &str, inner: Schema| Schema::named(name, Some(1), inner);
        match self {
            PgType::Bool => Schema::Boolean,
            PgType::Int2 | PgType::Int4 => Schema::Int,
            PgType::Int8 | PgType::Oid => Schema::Long,
            PgType::Float4 => Schema::Float,
            PgType::Float8 => Schema::Double,
            PgType::Numeric(spec) => match (decimals, spec) {
                (DecimalHandling::Double, _) => Schema::Double,
                (DecimalHandling::String, _) => Schema::String,
                (DecimalHandling::Precise, Some((precision, scale))) => Schema::Named {
                    name: "org.apache.kafka.connect.data.Decimal".into(),
                    version: Some(1),
                    parameters: vec![
                        ("scale".into(), scale.to_string()),
                        ("connect.decimal.precision".into(), precision.to_string()),
                    ],
                    schema: Box::new(Schema::Decimal {
                        precision: *precision,
                        scale: *scale,
                    }),
                },
                (DecimalHandling::Precise, None) => Schema::named(
                    "io.debezium.data.VariableScaleDecimal",
                    Some(1),
                    Schema::Record {
                        name: "io.debezium.data.VariableScaleDecimal".into(),
                        fields: vec![
                            Field::new("scale", Schema::Int),
                            Field::new("value", Schema::Bytes),
                        ],
                    },
                ),
            },
            PgType::Text | PgType::Other(_) => Schema::String,
            PgType::Bytea => Schema::Bytes,
            PgType::Date => dbz("io.debezium.time.Date", Schema::Int),
            PgType::Time(p) if *p <= 3 => dbz("io.debezium.time.Time", Schema::Int),
            PgType::Time(_) => dbz("io.debezium.time.MicroTime", Schema::Long),
            PgType::TimeTz => dbz("io.debezium.time.ZonedTime", Schema::String),
            PgType::Timestamp(p) if *p <= 3 => dbz("io.debezium.time.Timestamp", Schema::Long),
            PgType::Timestamp(_) => dbz("io.debezium.time.MicroTimestamp", Schema::Long),
            PgType::TimestampTz => dbz("io.debezium.time.ZonedTimestamp", Schema::String),
            PgType::Interval => dbz("io.debezium.time.MicroDuration", Schema::Long),
            PgType::Uuid => dbz("io.debezium.data.Uuid", Schema::String),
            PgType::Json => dbz("io.debezium.data.Json", Schema::String),
            PgType::Xml => dbz("io.debezium.data.Xml", Schema::String),
            PgType::Enum(labels) => Schema::Named {
                name: "io.debezium.data.Enum".into(),
                version: Some(1),
                parameters: vec![("allowed".into(), labels.join(","))],
                schema: Box::new(Schema::String),
            },
            PgType::Array(element) => Schema::Array(Box::new(element.schema(decimals).optional())),
        }
    }

    /// A value of this type from Postgres' text output.
    pub fn parse(&self, text: &str, decimals: DecimalHandling) -> Result<Value, String> {
        let bad = || format!("`{}` is not a valid {}", shorten(text), self.name());
        Ok(match self {
            PgType::Bool => match text {
                "t" | "true" => Value::Boolean(true),
                "f" | "false" => Value::Boolean(false),
                _ => return Err(bad()),
            },
            PgType::Int2 | PgType::Int4 => Value::Int(text.parse().map_err(|_| bad())?),
            PgType::Int8 | PgType::Oid => Value::Long(text.parse().map_err(|_| bad())?),
            PgType::Float4 => Value::Float(parse_float(text).ok_or_else(bad)? as f32),
            PgType::Float8 => Value::Double(parse_float(text).ok_or_else(bad)?),
            PgType::Numeric(spec) => match decimals {
                DecimalHandling::String => Value::String(text.to_string()),
                DecimalHandling::Double => Value::Double(parse_float(text).ok_or_else(bad)?),
                DecimalHandling::Precise => {
                    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
                        // Connect's Decimal has no such values (Debezium writes null too).
                        return Ok(Value::Null);
                    }
                    let (unscaled, scale) = decimal_unscaled(text).ok_or_else(bad)?;
                    match spec {
                        Some(_) => Value::Bytes(unscaled),
                        None => Value::Record(vec![
                            ("scale".into(), Value::Int(scale as i32)),
                            ("value".into(), Value::Bytes(unscaled)),
                        ]),
                    }
                }
            },
            PgType::Text
            | PgType::Other(_)
            | PgType::Uuid
            | PgType::Json
            | PgType::Xml
            | PgType::Enum(_) => Value::String(text.to_string()),
            PgType::Bytea => Value::Bytes(parse_bytea(text).ok_or_else(bad)?),
            PgType::Date => Value::Int(parse_date(text).ok_or_else(bad)?),
            PgType::Time(p) => {
                let micros = parse_time(text).ok_or_else(bad)?;
                if *p <= 3 {
                    Value::Int((micros / 1000) as i32)
                } else {
                    Value::Long(micros)
                }
            }
            PgType::TimeTz => {
                let (micros, offset) = parse_time_tz(text).ok_or_else(bad)?;
                let utc = (micros - offset * 1_000_000).rem_euclid(86_400_000_000);
                Value::String(format!("{}Z", format_time(utc)))
            }
            PgType::Timestamp(p) => {
                let micros = parse_timestamp(text).ok_or_else(bad)?;
                if *p <= 3 {
                    Value::Long(micros.div_euclid(1000))
                } else {
                    Value::Long(micros)
                }
            }
            PgType::TimestampTz => {
                let micros = parse_timestamp(text).ok_or_else(bad)?;
                Value::String(format_zoned(micros))
            }
            PgType::Interval => Value::Long(parse_interval(text).ok_or_else(bad)?),
            PgType::Array(element) => {
                let items = parse_array(text).ok_or_else(bad)?;
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    values.push(match item {
                        None => Value::Null,
                        Some(t) => element.parse(&t, decimals)?,
                    });
                }
                Value::Array(values)
            }
        })
    }

    fn name(&self) -> &str {
        match self {
            PgType::Bool => "boolean",
            PgType::Int2 => "smallint",
            PgType::Int4 => "integer",
            PgType::Int8 => "bigint",
            PgType::Oid => "oid",
            PgType::Float4 => "real",
            PgType::Float8 => "double precision",
            PgType::Numeric(_) => "numeric",
            PgType::Text => "text",
            PgType::Bytea => "bytea",
            PgType::Date => "date",
            PgType::Time(_) => "time",
            PgType::TimeTz => "time with time zone",
            PgType::Timestamp(_) => "timestamp",
            PgType::TimestampTz => "timestamp with time zone",
            PgType::Interval => "interval",
            PgType::Uuid => "uuid",
            PgType::Json => "json",
            PgType::Xml => "xml",
            PgType::Enum(_) => "enum",
            PgType::Array(_) => "array",
            PgType::Other(n) => n,
        }
    }
}

fn shorten(text: &str) -> String {
    if text.len() <= 40 {
        text.to_string()
    } else {
        let mut end = 40;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// A decimal's text as its unscaled value (big-endian two's complement, as Connect's
/// `Decimal` and Avro's `decimal` hold it) and its scale.
pub fn decimal_unscaled(text: &str) -> Option<(Vec<u8>, u32)> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    // Magnitude as little-endian base-256 limbs, built digit by digit.
    let mut mag: Vec<u8> = Vec::with_capacity(digits.len() / 2 + 1);
    for c in int.bytes().chain(frac.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        let mut carry = u32::from(c - b'0');
        for limb in mag.iter_mut() {
            let v = u32::from(*limb) * 10 + carry;
            *limb = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.push(carry as u8);
            carry >>= 8;
        }
    }
    if negative {
        // Two's complement: invert and add one.
        let mut carry = 1u16;
        for limb in mag.iter_mut() {
            let v = u16::from(!*limb) + carry;
            *limb = v as u8;
            carry = v >> 8;
        }
        if mag.last().is_none_or(|&b| b & 0x80 == 0) {
            mag.push(0xff);
        }
    } else if mag.last().is_none_or(|&b| b & 0x80 != 0) {
        mag.push(0);
    }
    // Shortest form: drop leading bytes that only repeat the sign.
    while mag.len() > 1 {
        let top = mag[mag.len() - 1];
        let next = mag[mag.len() - 2];
        if (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0) {
            mag.pop();
        } else {
            break;
        }
    }
    mag.reverse();
    Some((mag, frac.len() as u32))
}

/// `\x0a0b` (hex output) to bytes.
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-12-07` (or `0044-03-15 BC`) to days since the epoch.
fn parse_date(text: &str) -> Option<i32> {
    match text {
        "infinity" => return Some(i32::MAX),
        "-infinity" => return Some(i32::MIN),
        _ => {}
    }
    let (date, bc) = match text.strip_suffix(" BC") {
        Some(d) => (d, true),
        None => (text, false),
    };
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Postgres' dates end in 5874897 AD; anything past that is not a date it writes.
    if !(0..=6_000_000).contains(&y) {
        return None;
    }
    let y = if bc { 1 - y } else { y };
    i32::try_from(days_from_civil(y, m, d)).ok()
}

/// `05:11:56.123456` to microseconds since midnight (`24:00:00` allowed, as Postgres does).
fn parse_time(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s = parts.next()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if frac.len() > 6 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    if !(0..=24).contains(&h) || !(0..=59).contains(&m) || !(0..=60).contains(&secs) {
        return None;
    }
    Some(((h * 60 + m) * 60 + secs) * 1_000_000 + micros)
}

/// Splits a trailing UTC offset (`+00`, `-05:30`, `+05:30:15`) off; its seconds east.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    let at = text.rfind(['+', '-'])?;
    let (rest, off) = text.split_at(at);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let mut secs = 0i64;
    for (i, part) in off[1..].split(':').enumerate() {
        let v: i64 = part.parse().ok()?;
        if !(0..=99).contains(&v) {
            return None;
        }
        secs += v * [3600, 60, 1].get(i)?;
    }
    Some((rest, sign * secs))
}

fn parse_time_tz(text: &str) -> Option<(i64, i64)> {
    let (time, offset) = split_offset(text)?;
    Some((parse_time(time)?, offset))
}

/// `2026-12-07 05:11:56.123456` or with an offset (`+00`) to microseconds since the epoch
/// (UTC when there is an offset, as written when there is none).
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    match text {
        "infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let (date, time) = text.split_once(' ')?;
    // The time itself has no sign: one there starts the UTC offset.
    let (time, offset) = if time.contains(['+', '-']) {
        split_offset(time)?
    } else {
        (time, 0)
    };
    let days = i64::from(parse_date(&if bc {
        format!("{date} BC")
    } else {
        date.to_string()
    })?);
    let micros = parse_time(time)?;
    days.checked_mul(86_400_000_000)?
        .checked_add(micros)?
        .checked_sub(offset * 1_000_000)
}

pub(crate) fn format_time(micros: i64) -> String {
    let mut out = String::with_capacity(15);
    push_time(&mut out, micros);
    out
}

/// Appends `n` with at least `width` digits (`n` not negative).
fn push_padded(out: &mut String, n: i64, width: usize) {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(n);
    for _ in text.len()..width {
        out.push('0');
    }
    out.push_str(text);
}

/// `HH:MM:SS[.ffffff]`, trailing zeros of the fraction left out. Written by hand: this runs
/// for every time and timestamp of every row, where `format!` cost a visible share.
fn push_time(out: &mut String, micros: i64) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    push_padded(out, secs / 3600, 2);
    out.push(':');
    push_padded(out, secs / 60 % 60, 2);
    out.push(':');
    push_padded(out, secs % 60, 2);
    if frac != 0 {
        out.push('.');
        let mut digits = [b'0'; 6];
        let mut f = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        let kept = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
        for &d in &digits[..kept] {
            out.push(d as char);
        }
    }
}

/// Microseconds since the epoch as Debezium's `ZonedTimestamp` writes them in UTC.
pub fn format_zoned(micros: i64) -> String {
    if micros == i64::MAX {
        return "infinity".into();
    }
    if micros == i64::MIN {
        return "-infinity".into();
    }
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(27);
    if y < 0 {
        // As `format!("{y:04}")` writes it: the sign counts in the width.
        out.push('-');
        push_padded(&mut out, -y, 3);
    } else {
        push_padded(&mut out, y, 4);
    }
    out.push('-');
    push_padded(&mut out, i64::from(m), 2);
    out.push('-');
    push_padded(&mut out, i64::from(d), 2);
    out.push('T');
    push_time(&mut out, rest);
    out.push('Z');
    out
}

/// An ISO 8601 interval (`P1Y2M3DT4H5M6.5S`, parts may be negative) to microseconds, a
/// month counted as 30.4375 days as Debezium's `MicroDuration` does.
fn parse_interval(text: &str) -> Option<i64> {
    let body = text.strip_prefix('P')?;
    let (date, time) = body.split_once('T').unwrap_or((body, ""));
    let mut micros: f64 = 0.0;
    let mut number = String::new();
    for (part, in_time) in [(date, false), (time, true)] {
        for c in part.chars() {
            if c.is_ascii_digit() || c == '-' || c == '.' || c == '+' {
                number.push(c);
                continue;
            }
            let v: f64 = number.parse().ok()?;
            number.clear();
            micros += v * match (c, in_time) {
                ('Y', false) => 12.0 * 30.4375 * 86_400e6,
                ('M', false) => 30.4375 * 86_400e6,
                ('W', false) => 7.0 * 86_400e6,
                ('D', false) => 86_400e6,
                ('H', true) => 3_600e6,
                ('M', true) => 60e6,
                ('S', true) => 1e6,
                _ => return None,
            };
        }
    }
    if !number.is_empty() {
        return None;
    }
    Some(micros.round() as i64)
}

/// A one-dimensional array's text (`{1,2,NULL}`, `{"a b",c}`) to its items.
fn parse_array(text: &str) -> Option<Vec<Option<String>>> {
    // A lower bound decoration (`[0:1]={…}`) is skipped.
    let text = match text.find('=') {
        Some(at) if text.starts_with('[') => &text[at + 1..],
        _ => text,
    };
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if inner.is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => item.push(chars.next()?),
                    '"' => break,
                    c => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' {
                    return None; // several dimensions: not mapped
                }
                item.push(c);
                chars.next();
            }
        }
        items.push(if !quoted && item == "NULL" {
            None
        } else {
            Some(item)
        });
        match chars.next() {
            None => return Some(items),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// One field of `COPY … TO STDOUT` text format, unescaped (`None`: `\N`).
pub fn copy_field(raw: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if raw == b"\\N" {
        return None;
    }
    if !raw.contains(&b'\\') {
        return Some(std::borrow::Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != b'\\' || i >= raw.len() {
            out.push(c);
            continue;
        }
        let e = raw[i];
        i += 1;
        match e {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    Some(std::borrow::Cow::Owned(out))
}

/// A column as the source captures it: name, type, part of the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    pub name: String,
    pub pg: PgType,
    pub key: bool,
}

/// The schemas of one table's events (see [`super::event`]), shared by its records.
pub type SharedSchema = Arc<Schema>;

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The hand-written timestamp text is what `format!` wrote before it.
        #[test]
        fn zoned_timestamps_as_format_wrote_them(micros in -100_000_000_000_000_000i64..300_000_000_000_000_000) {
            let days = micros.div_euclid(86_400_000_000);
            let rest = micros.rem_euclid(86_400_000_000);
            let (y, m, d) = civil_from_days(days);
            let (secs, frac) = (rest / 1_000_000, rest % 1_000_000);
            let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
            let time = if frac == 0 {
                base
            } else {
                format!("{base}.{}", format!("{frac:06}").trim_end_matches('0'))
            };
            proptest::prop_assert_eq!(format_zoned(micros), format!("{y:04}-{m:02}-{d:02}T{time}Z"));
            proptest::prop_assert_eq!(format_time(rest), time);
        }
    }

    const P: DecimalHandling = DecimalHandling::Precise;

    #[test]
    fn decimals_are_unscaled_twos_complement() {
        assert_eq!(decimal_unscaled("123.45"), Some((vec![0x30, 0x39], 2)));
        assert_eq!(decimal_unscaled("-1.00"), Some((vec![0x9c], 2)));
        assert_eq!(decimal_unscaled("-200"), Some((vec![0xff, 0x38], 0)));
        assert_eq!(decimal_unscaled("0"), Some((vec![0], 0)));
        assert_eq!(decimal_unscaled("128"), Some((vec![0, 0x80], 0)));
        assert_eq!(decimal_unscaled("-128"), Some((vec![0x80], 0)));
        assert_eq!(decimal_unscaled("1e5"), None);
        // A thousand digits go through.
        let big = "9".repeat(1000);
        let (bytes, scale) = decimal_unscaled(&big).unwrap();
        assert_eq!(scale, 0);
        assert!(bytes.len() > 400 && bytes[0] & 0x80 == 0, "positive");
    }

    #[test]
    fn numeric_special_values_follow_decimal_handling() {
        let n = PgType::builtin(1700, (12 << 16) + 2 + 4).unwrap();
        assert_eq!(n, PgType::Numeric(Some((12, 2))));
        assert_eq!(n.parse("NaN", P).unwrap(), Value::Null);
        assert_eq!(
            n.parse("Infinity", DecimalHandling::String).unwrap(),
            Value::String("Infinity".into())
        );
        assert!(
            matches!(n.parse("NaN", DecimalHandling::Double).unwrap(), Value::Double(d) if d.is_nan())
        );
        let free = PgType::builtin(1700, -1).unwrap();
        assert_eq!(
            free.parse("-0.5", P).unwrap(),
            Value::Record(vec![
                ("scale".into(), Value::Int(1)),
                ("value".into(), Value::Bytes(vec![0xfb]))
            ])
        );
    }

    #[test]
    fn times_are_debeziums() {
        let ts = PgType::builtin(1114, -1).unwrap();
        assert_eq!(
            ts.parse("2026-12-07 05:11:56.123456", P).unwrap(),
            Value::Long(1_796_620_316_123_456)
        );
        let ts3 = PgType::builtin(1114, 3).unwrap();
        assert_eq!(
            ts3.parse("2026-12-07 05:11:56.123", P).unwrap(),
            Value::Long(1_796_620_316_123)
        );
        let tz = PgType::builtin(1184, -1).unwrap();
        assert_eq!(
            tz.parse("2026-12-07 05:11:56.5+00", P).unwrap(),
            Value::String("2026-12-07T05:11:56.5Z".into())
        );
        assert_eq!(
            tz.parse("2026-12-07 10:41:56+05:30", P).unwrap(),
            Value::String("2026-12-07T05:11:56Z".into())
        );
        let date = PgType::builtin(1082, -1).unwrap();
        assert_eq!(date.parse("1970-01-02", P).unwrap(), Value::Int(1));
        assert_eq!(date.parse("1969-12-31", P).unwrap(), Value::Int(-1));
        assert_eq!(
            date.parse("0001-01-01 BC", P).unwrap(),
            Value::Int(-719_528)
        );
        let time = PgType::builtin(1083, -1).unwrap();
        assert_eq!(time.parse("00:00:01.5", P).unwrap(), Value::Long(1_500_000));
        let interval = PgType::builtin(1186, -1).unwrap();
        assert_eq!(
            interval.parse("P1DT2H", P).unwrap(),
            Value::Long(93_600_000_000)
        );
        assert_eq!(
            interval.parse("PT-1.5S", P).unwrap(),
            Value::Long(-1_500_000)
        );
        assert_eq!(
            interval.parse("P1M", P).unwrap(),
            Value::Long(2_629_800_000_000)
        );
        assert!(date.parse("2026-13-01", P).is_err());
        // Numbers no server writes are refused, never overflowed (found by the fuzzer).
        let tz = PgType::builtin(1266, -1).unwrap();
        assert!(tz.parse("-07684516109551615", P).is_err());
        assert!(ts.parse("99999999999-01-01 00:00:00", P).is_err());
        assert!(PgType::builtin(1184, -1)
            .unwrap()
            .parse("5000000-01-01 00:00:00+00", P)
            .is_err());
        assert!(time.parse("-1:00:00", P).is_err());
    }

    #[test]
    fn arrays_bytes_and_copy_escapes() {
        let a = PgType::builtin(1009, -1).unwrap();
        assert_eq!(
            a.parse(r#"{"a b",c,NULL,"NULL","q\"x"}"#, P).unwrap(),
            Value::Array(vec![
                Value::String("a b".into()),
                Value::String("c".into()),
                Value::Null,
                Value::String("NULL".into()),
                Value::String("q\"x".into()),
            ])
        );
        assert_eq!(
            PgType::builtin(1007, -1).unwrap().parse("{}", P).unwrap(),
            Value::Array(vec![])
        );
        assert!(PgType::builtin(1007, -1)
            .unwrap()
            .parse("{{1},{2}}", P)
            .is_err());
        assert_eq!(
            PgType::Bytea.parse("\\x00ff", P).unwrap(),
            Value::Bytes(vec![0, 255])
        );
        assert_eq!(copy_field(b"\\N"), None);
        assert_eq!(copy_field(b"a\\tb\\\\c\\n").unwrap().as_ref(), b"a\tb\\c\n");
        assert_eq!(copy_field(b"\\x41\\101").unwrap().as_ref(), b"AA");
    }

    #[test]
    fn schemas_carry_debeziums_names() {
        let s = PgType::Timestamp(6).schema(P).to_connect();
        assert_eq!(s["name"], "io.debezium.time.MicroTimestamp");
        let d = PgType::Numeric(Some((10, 2))).schema(P).to_connect();
        assert_eq!(d["name"], "org.apache.kafka.connect.data.Decimal");
        assert_eq!(d["parameters"]["scale"], "2");
        let e = PgType::Enum(vec!["a".into(), "b".into()])
            .schema(P)
            .to_connect();
        assert_eq!(e["parameters"]["allowed"], "a,b");
    }
}

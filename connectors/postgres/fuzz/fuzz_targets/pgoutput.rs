//! Outside bytes the `postgres_cdc` source decodes: pgoutput messages (in and out of a
//! streamed transaction), and each column's text as every type Debezium maps, as COPY's
//! escapes. Run: `cargo fuzz run pgoutput`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_connector_postgres::cdc::pgoutput::decode;
use sluice_connector_postgres::cdc::types::{copy_field, DecimalHandling, PgType};

/// Built-in type OIDs with a modifier each: every parser of column text.
const TYPES: &[(u32, i32)] = &[
    (16, -1), (21, -1), (23, -1), (20, -1), (700, -1), (701, -1), (1700, -1), (1700, (10 << 16) + 2 + 4),
    (25, -1), (17, -1), (1082, -1), (1083, -1), (1083, 3), (1266, -1), (1114, -1), (1114, 3), (1184, -1),
    (1186, -1), (2950, -1), (3802, -1), (1007, -1), (1009, -1), (1231, -1),
];

fuzz_target!(|data: &[u8]| {
    let _ = decode(data, false);
    let _ = decode(data, true);
    if let Some(field) = copy_field(data) {
        if let Ok(text) = std::str::from_utf8(&field) {
            for &(oid, typmod) in TYPES {
                let t = PgType::builtin(oid, typmod).expect("a built-in type");
                for d in [DecimalHandling::Precise, DecimalHandling::Double, DecimalHandling::String] {
                    let _ = t.parse(text, d);
                }
            }
        }
    }
});

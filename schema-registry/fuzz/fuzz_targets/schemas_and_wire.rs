//! Outside bytes the registry decodes: schema texts (canonical form, parsing, compatibility
//! of a schema with itself) and Confluent-framed messages. Run: `cargo fuzz run schemas_and_wire`.
#![no_main]

use apache_avro::Schema;
use libfuzzer_sys::fuzz_target;
use sluice_schema_registry::{canonical, compat, wire};

fuzz_target!(|data: &[u8]| {
    let _ = wire::split(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = canonical::canonical_text(text);
        if let Ok(schema) = Schema::parse_str(text) {
            // A schema can always read its own data.
            assert!(compat::incompatibilities(&schema, &schema).is_empty(), "{text}");
            let _ = wire::decode(&[0, 0, 0, 0, 1, 2, 3, 4], &schema, Some(&schema));
        }
    }
});

//! Converters: a source's payloads to the bytes stored on a topic ([`Encoder`]), and stored
//! bytes to what a sink receives ([`Decoder`]). `bytes` passes them through untouched (the
//! fast path), `string` checks UTF-8, `json` checks that they parse (and, with a declared
//! schema or `schemas_enable`, conforms them and writes Kafka Connect's schema envelope),
//! `avro` writes and reads the Confluent wire format with schemas from the registry.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;
use sluice_connector_sdk::avro::{Compiled, JsonToAvroError};
use sluice_connector_sdk::data::{Payload, Value};
use sluice_connector_sdk::Bytes;
use sluice_log::batch::{split_verified, Compression};

use crate::config::Format;

/// A typed value as JSON.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    v.to_json()
}

/// Whether `b` is JSON: the fast scanner where it is sure, serde_json (and its message)
/// otherwise.
fn check_json(b: &[u8]) -> Result<(), String> {
    if sluice_connector_sdk::json::is_valid(b) == Some(true) {
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(b)
        .map(|_| ())
        .map_err(|e| format!("not valid JSON: {e}"))
}

/// Why a payload cannot be stored, with the payload's bytes (for the dead-letter topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    pub message: String,
    pub original: Option<Vec<u8>>,
}

fn raw_of(p: &Payload) -> Option<Vec<u8>> {
    match p {
        Payload::Raw(b) => Some(b.to_vec()),
        Payload::Typed { value, .. } => Some(value_to_json(value).to_string().into_bytes()),
    }
}

/// What the `avro` format writes with: the schema's id in the registry and its codec.
pub struct AvroOut {
    pub schema_id: u32,
    pub codec: Compiled,
}

impl AvroOut {
    fn encode(&self, json: &Json) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(64);
        sluice_schema_registry::wire::write_header(&mut out, self.schema_id);
        self.codec.encode(json, &mut out)?;
        Ok(out)
    }

    /// JSON text straight to the Confluent wire format (no document tree).
    fn encode_text(&self, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        sluice_schema_registry::wire::write_header(out, self.schema_id);
        self.codec.encode_json(text, out).map_err(|e| {
            out.truncate(start);
            e.to_string()
        })
    }
}

/// Schemas that typed payloads carry themselves (a CDC source's per-table envelopes), for
/// a connector that declares none: for `avro`, each is registered under
/// `<topic>-<side>` the first time it is seen on that topic (the registry checks its
/// compatibility with the versions before it); for `json` with `schemas_enable`, its Connect
/// form is written beside the payload.
pub struct OwnSchemas {
    registry: Option<Arc<sluice_schema_registry::registry::Registry>>,
    side: &'static str,
    /// By topic and schema (the `Arc` is kept, so its address stays its own).
    seen: Mutex<HashMap<(String, usize), Arc<OwnSchema>>>,
}

struct OwnSchema {
    _schema: Arc<sluice_connector_sdk::data::Schema>,
    avro: Option<AvroOut>,
    connect: Option<String>,
}

impl OwnSchemas {
    pub fn new(
        registry: Option<Arc<sluice_schema_registry::registry::Registry>>,
        side: &'static str,
    ) -> Self {
        OwnSchemas {
            registry,
            side,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn get(
        &self,
        format: Format,
        topic: &str,
        schema: &Arc<sluice_connector_sdk::data::Schema>,
    ) -> Result<Arc<OwnSchema>, String> {
        let key = (topic.to_string(), Arc::as_ptr(schema) as usize);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = seen.get(&key) {
            return Ok(found.clone());
        }
        let own = match format {
            Format::Avro => {
                let registry = self
                    .registry
                    .as_ref()
                    .ok_or("the avro format needs the schema registry")?;
                let text = schema.to_avro().to_string();
                let parsed = apache_avro::Schema::parse_str(&text)
                    .map_err(|e| format!("the record's schema is not valid Avro: {e}"))?;
                let subject = format!("{topic}-{}", self.side);
                let req = sluice_schema_registry::registry::SchemaRequest {
                    schema: text,
                    ..Default::default()
                };
                let (id, version) = registry
                    .register(&subject, &req)
                    .map_err(|e| format!("registering its schema under `{subject}`: {e}"))?;
                tracing::info!(subject = %subject, id, version, "schema registered");
                OwnSchema {
                    _schema: schema.clone(),
                    avro: Some(AvroOut {
                        schema_id: id,
                        codec: Compiled::new(parsed),
                    }),
                    connect: None,
                }
            }
            _ => OwnSchema {
                _schema: schema.clone(),
                avro: None,
                connect: Some(schema.to_connect().to_string()),
            },
        };
        let own = Arc::new(own);
        seen.insert(key, own.clone());
        Ok(own)
    }
}

/// How a source's keys or values become the bytes stored on the topic.
pub struct Encoder {
    format: Format,
    /// `avro`: the registered schema and its codec.
    avro: Option<AvroOut>,
    /// `json` with a declared schema: each value is checked against it (and conformed).
    declared: Option<Compiled>,
    /// `json` with `schemas_enable`: the Connect schema written beside each payload
    /// (`null` when the connector declares none).
    envelope: Option<Json>,
    /// `envelope` as compact JSON text, written before each payload.
    envelope_text: Option<String>,
    /// Typed payloads' own schemas, when nothing is declared.
    own: Option<OwnSchemas>,
}

impl Encoder {
    /// `bytes`, `string`, or `json` without a schema.
    pub fn plain(format: Format) -> Self {
        Encoder {
            format,
            avro: None,
            declared: None,
            envelope: None,
            envelope_text: None,
            own: None,
        }
    }

    /// This encoder, writing typed payloads with the schemas they carry (when it declares
    /// none): registered per topic for `avro`, Connect's envelope for `json` with
    /// `schemas_enable`.
    pub fn with_own_schemas(mut self, own: OwnSchemas) -> Self {
        if self.avro.is_none() && self.declared.is_none() {
            self.own = Some(own);
        }
        self
    }

    /// Whether raw bytes are stored as they are (`bytes`): nothing to check or convert.
    pub fn passes_through(&self) -> bool {
        self.format == Format::Bytes
    }

    /// Whether raw bytes are stored as they are once checked (`bytes`, `string`, plain
    /// `json`): [`Encoder::check_raw`] is then all this converter does.
    pub fn checks_in_place(&self) -> bool {
        match self.format {
            Format::Bytes | Format::String => true,
            Format::Json => self.declared.is_none() && self.envelope.is_none(),
            Format::Avro => false,
        }
    }

    /// The check of a format that stores raw bytes as they are.
    pub fn check_raw(&self, b: &[u8]) -> Result<(), String> {
        match self.format {
            Format::Bytes => Ok(()),
            Format::String => std::str::from_utf8(b)
                .map(|_| ())
                .map_err(|e| format!("not valid UTF-8 text: {e}")),
            _ => check_json(b),
        }
    }

    /// Whether [`Encoder::encode_raw_into`] converts raw bytes without a document tree:
    /// `avro`, and `json` with a declared schema or Connect's envelope (or both).
    pub fn transcodes_raw(&self) -> bool {
        match self.format {
            Format::Avro => self.avro.is_some(),
            Format::Json => self.declared.is_some() || self.envelope.is_some(),
            _ => false,
        }
    }

    /// Appends what a raw payload is stored as to `out`, for the formats that
    /// [`Encoder::transcodes_raw`]; on an error (the same message as [`Encoder::encode`]
    /// gives) `out` is as it was.
    pub fn encode_raw_into(&self, raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match (self.format, &self.avro, &self.declared) {
            (Format::Avro, Some(avro), _) => avro
                .encode_text(raw, out)
                .map_err(|m| format!("does not fit the Avro schema: {m}")),
            (Format::Json, _, Some(schema)) => {
                let start = out.len();
                if let Some(envelope) = &self.envelope_text {
                    out.extend_from_slice(b"{\"schema\":");
                    out.extend_from_slice(envelope.as_bytes());
                    out.extend_from_slice(b",\"payload\":");
                }
                match schema.conform_json(raw, out) {
                    Ok(()) => {
                        if self.envelope_text.is_some() {
                            out.push(b'}');
                        }
                        Ok(())
                    }
                    Err(e) => {
                        out.truncate(start);
                        Err(match e {
                            JsonToAvroError::NotJson(_) => e.to_string(),
                            JsonToAvroError::DoesNotFit(m) => {
                                format!("does not fit the declared schema: {m}")
                            }
                        })
                    }
                }
            }
            (Format::Json, _, None) if self.envelope_text.is_some() => {
                // No declared schema: the envelope's schema is `null` and its payload the
                // value's compact text, as serde_json would write it.
                let start = out.len();
                out.extend_from_slice(b"{\"schema\":");
                out.extend_from_slice(self.envelope_text.as_deref().unwrap_or("null").as_bytes());
                out.extend_from_slice(b",\"payload\":");
                if !sluice_connector_sdk::json::write_compact(raw, out) {
                    let written = serde_json::from_slice::<Json>(raw)
                        .map_err(|e| format!("not valid JSON: {e}"))
                        .and_then(|json| {
                            serde_json::to_writer(&mut *out, &json).map_err(|e| e.to_string())
                        });
                    if let Err(e) = written {
                        out.truncate(start);
                        return Err(e);
                    }
                }
                out.push(b'}');
                Ok(())
            }
            _ => Err(format!(
                "the {:?} format stores raw bytes without converting them",
                self.format
            )),
        }
    }

    /// `avro`, with the schema registered under the topic's subject.
    pub fn avro(out: AvroOut) -> Self {
        Encoder {
            avro: Some(out),
            ..Encoder::plain(Format::Avro)
        }
    }

    /// `json` with a declared Avro schema and/or Connect's schema envelope.
    pub fn json(
        declared: Option<apache_avro::Schema>,
        schemas_enable: bool,
    ) -> Result<Self, String> {
        let envelope = match (&declared, schemas_enable) {
            (_, false) => None,
            (Some(s), true) => Some(crate::connect_schema::from_avro(s)?),
            (None, true) => Some(Json::Null),
        };
        Ok(Encoder {
            declared: declared.map(Compiled::new),
            envelope_text: envelope.as_ref().map(Json::to_string),
            envelope,
            ..Encoder::plain(Format::Json)
        })
    }

    /// The bytes to store for a payload, or why it cannot be stored in this format. Raw
    /// payloads are moved, never copied, unless a schema makes them change.
    pub fn encode(&self, payload: Option<Payload>) -> Result<Option<Bytes>, EncodeError> {
        self.encode_to("", payload)
    }

    /// [`Encoder::encode`] for a record going to `topic`: a typed payload with its own
    /// schema is written with it (see [`OwnSchemas`]).
    pub fn encode_to(
        &self,
        topic: &str,
        payload: Option<Payload>,
    ) -> Result<Option<Bytes>, EncodeError> {
        let Some(payload) = payload else {
            return Ok(None);
        };
        if let (Some(own), Payload::Typed { schema, value }) = (&self.own, &payload) {
            return self.encode_own(own, topic, schema, value);
        }
        let fail =
            |message: String, original: Option<Vec<u8>>| Err(EncodeError { message, original });
        let as_json = |p: &Payload| match p {
            Payload::Raw(b) => {
                serde_json::from_slice::<Json>(b).map_err(|e| format!("not valid JSON: {e}"))
            }
            Payload::Typed { value, .. } => Ok(value_to_json(value)),
        };
        if let Payload::Raw(raw) = &payload {
            if self.transcodes_raw() {
                let mut out = Vec::with_capacity(raw.len() + 16);
                return match self.encode_raw_into(raw, &mut out) {
                    Ok(()) => Ok(Some(out.into())),
                    Err(message) => fail(message, Some(raw.to_vec())),
                };
            }
        }
        match (self.format, payload) {
            (Format::Avro, payload) => {
                let Some(avro) = &self.avro else {
                    return fail("the avro format needs a schema".into(), raw_of(&payload));
                };
                match as_json(&payload).and_then(|j| avro.encode(&j)) {
                    Ok(bytes) => Ok(Some(bytes.into())),
                    Err(message) => fail(
                        format!("does not fit the Avro schema: {message}"),
                        raw_of(&payload),
                    ),
                }
            }
            (Format::Json, payload) if self.declared.is_some() || self.envelope.is_some() => {
                let mut json = match as_json(&payload) {
                    Ok(j) => j,
                    Err(message) => return fail(message, raw_of(&payload)),
                };
                if let Some(schema) = &self.declared {
                    json = match schema.conform(&json) {
                        Ok(j) => j,
                        Err(message) => {
                            return fail(
                                format!("does not fit the declared schema: {message}"),
                                raw_of(&payload),
                            )
                        }
                    };
                }
                let out = match &self.envelope {
                    Some(schema) => serde_json::json!({"schema": schema, "payload": json}),
                    None => json,
                };
                Ok(Some(out.to_string().into()))
            }
            (Format::Bytes, Payload::Raw(b)) => Ok(Some(b)),
            (Format::String, Payload::Raw(b)) => match std::str::from_utf8(&b) {
                Ok(_) => Ok(Some(b)),
                Err(e) => fail(format!("not valid UTF-8 text: {e}"), Some(b.to_vec())),
            },
            (Format::Json, Payload::Raw(b)) => match check_json(&b) {
                Ok(()) => Ok(Some(b)),
                Err(message) => fail(message, Some(b.to_vec())),
            },
            (Format::Json, Payload::Typed { value, .. }) => {
                Ok(Some(value_to_json(&value).to_string().into()))
            }
            (
                Format::String,
                Payload::Typed {
                    value: Value::String(s),
                    ..
                },
            ) => Ok(Some(s.into())),
            (
                Format::Bytes,
                Payload::Typed {
                    value: Value::Bytes(b),
                    ..
                },
            ) => Ok(Some(b.into())),
            (f, p) => fail(
                format!("a typed value cannot be written in the {f:?} format; use json"),
                raw_of(&p),
            ),
        }
    }
}

impl Encoder {
    fn encode_own(
        &self,
        own: &OwnSchemas,
        topic: &str,
        schema: &Arc<sluice_connector_sdk::data::Schema>,
        value: &Value,
    ) -> Result<Option<Bytes>, EncodeError> {
        let fail = |message: String| EncodeError {
            message,
            original: Some(value.to_connect_json().to_string().into_bytes()),
        };
        match self.format {
            Format::Avro => {
                let found = own.get(self.format, topic, schema).map_err(fail)?;
                let avro = found
                    .avro
                    .as_ref()
                    .ok_or_else(|| fail("no Avro codec".into()))?;
                avro.encode(&value.to_json())
                    .map(|b| Some(b.into()))
                    .map_err(|m| fail(format!("does not fit its Avro schema: {m}")))
            }
            Format::Json if self.envelope.is_some() => {
                let found = own.get(self.format, topic, schema).map_err(fail)?;
                let connect = found.connect.as_deref().unwrap_or("null");
                let mut out = Vec::with_capacity(connect.len() + 512);
                out.extend_from_slice(b"{\"schema\":");
                out.extend_from_slice(connect.as_bytes());
                out.extend_from_slice(b",\"payload\":");
                value.write_connect_json(&mut out);
                out.push(b'}');
                Ok(Some(out.into()))
            }
            Format::Json => {
                let mut out = Vec::with_capacity(256);
                value.write_connect_json(&mut out);
                Ok(Some(out.into()))
            }
            f => Err(fail(format!(
                "a typed value cannot be written in the {f:?} format; use json or avro"
            ))),
        }
    }
}

/// A writer's schema as decoding needs it: compiled, and as text for the sink.
type WriterSchema = (Arc<Compiled>, Arc<str>);

/// A hash for schema ids, looked up once per record: a multiply instead of SipHash. Only ids
/// the registry knows are ever inserted, so there is nothing to flood.
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// What the `avro` format reads with: schemas by id from the registry, compiled once.
pub struct AvroIn {
    pub registry: Arc<sluice_schema_registry::registry::Registry>,
    pub cache: Mutex<HashMap<u32, WriterSchema, BuildHasherDefault<IdHasher>>>,
}

impl AvroIn {
    pub fn new(registry: Arc<sluice_schema_registry::registry::Registry>) -> Self {
        AvroIn {
            registry,
            cache: Mutex::new(HashMap::default()),
        }
    }

    /// Confluent-framed Avro to JSON, with the writer's schema text.
    pub fn decode(&self, bytes: &[u8]) -> Result<(Json, Arc<str>), String> {
        let (id, datum) = sluice_schema_registry::wire::split(bytes).map_err(|e| e.to_string())?;
        let (codec, text) = self.writer_schema(id)?;
        Ok((codec.decode(datum)?, text))
    }

    /// Confluent-framed Avro to JSON text appended to `out` (no document tree), with the
    /// writer's schema text; on an error `out` is as it was.
    pub fn decode_into(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Arc<str>, String> {
        let (id, datum) = sluice_schema_registry::wire::split(bytes).map_err(|e| e.to_string())?;
        let (codec, text) = self.writer_schema(id)?;
        codec.write_json(datum, out)?;
        Ok(text)
    }

    fn writer_schema(&self, id: u32) -> Result<WriterSchema, String> {
        Ok({
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(&id) {
                Some(c) => c.clone(),
                None => {
                    let (text, _, _) = self.registry.schema_by_id(id).map_err(|e| e.to_string())?;
                    let schema = apache_avro::Schema::parse_str(&text)
                        .map_err(|e| format!("schema {id}: {e}"))?;
                    let entry = (Arc::new(Compiled::new(schema)), Arc::<str>::from(text));
                    cache.insert(id, entry.clone());
                    entry
                }
            }
        })
    }
}

/// The last envelope schema a decoder saw: as found in the text (empty until a lean read
/// sees it), as a tree, and in its Avro form.
struct SeenEnvelope {
    raw: Vec<u8>,
    tree: Json,
    avro: Arc<str>,
}

/// How a sink's keys or values are read from the stored bytes: decoded (`avro`), unwrapped
/// (`json` with `schemas_enable`), resolved to the reader schema the sink declares, or
/// passed through as they are.
pub struct Decoder {
    format: Format,
    avro: Option<Arc<AvroIn>>,
    schemas_enable: bool,
    /// The sink's reader schema: its text and codec.
    reader: Option<(Arc<str>, Compiled)>,
    /// The last envelope schema seen and its Avro form: a topic's records mostly share one.
    last_envelope: Mutex<Option<SeenEnvelope>>,
}

impl Decoder {
    pub fn new(
        format: Format,
        avro: Option<Arc<AvroIn>>,
        schemas_enable: bool,
        reader: Option<(String, apache_avro::Schema)>,
    ) -> Self {
        Decoder {
            format,
            avro,
            schemas_enable,
            reader: reader.map(|(text, s)| (Arc::from(text), Compiled::new(s))),
            last_envelope: Mutex::new(None),
        }
    }

    /// Whether bytes pass through untouched.
    pub fn is_pass_through(&self) -> bool {
        self.format != Format::Avro && !self.schemas_enable && self.reader.is_none()
    }

    /// Whether [`Decoder::decode_into`] converts without a document tree: `avro` (with or
    /// without a reader schema), and `json` resolved to a reader schema.
    pub fn decodes_in_place(&self) -> bool {
        !self.is_pass_through() && (self.format != Format::Avro || self.avro.is_some())
    }

    /// Appends what the sink receives for stored `bytes` to `out`, for the decoders that
    /// [`Decoder::decodes_in_place`], with the Avro schema it conforms to; on an error (the
    /// same message as [`Decoder::decode`] gives) `out` is as it was.
    pub fn decode_into(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Option<Arc<str>>, String> {
        let start = out.len();
        let writer = match (self.format, &self.avro, &self.reader) {
            (Format::Avro, Some(avro), None) => {
                return avro
                    .decode_into(bytes, out)
                    .map(Some)
                    .map_err(|e| format!("not decodable as Avro: {e}"));
            }
            (Format::Avro, Some(avro), Some(_)) => {
                // The writer's JSON first, then resolved to the reader's schema.
                avro.decode_into(bytes, out)
                    .map_err(|e| format!("not decodable as Avro: {e}"))?;
                Some(start)
            }
            (Format::Avro, None, _) => return Err("the avro format has no registry".into()),
            _ if self.schemas_enable => {
                let schema = self.unwrap_envelope_into(bytes, out)?;
                if self.reader.is_none() {
                    return Ok(schema);
                }
                Some(start)
            }
            _ => None,
        };
        let Some((text, codec)) = &self.reader else {
            return Err("this decoder passes bytes through".into());
        };
        let resolved = match writer {
            Some(at) => {
                let json = out.split_off(at);
                codec.conform_json(&json, out)
            }
            None => codec.conform_json(bytes, out),
        };
        match resolved {
            Ok(()) => Ok(Some(text.clone())),
            Err(e) => {
                out.truncate(start);
                Err(match e {
                    JsonToAvroError::NotJson(_) => e.to_string(),
                    JsonToAvroError::DoesNotFit(m) => {
                        format!("does not fit the sink's reader schema: {m}")
                    }
                })
            }
        }
    }

    /// The bytes the sink receives and the Avro schema they conform to, if known; or why
    /// not, with the stored bytes back (for the dead-letter topic).
    #[allow(clippy::type_complexity)]
    pub fn decode(&self, bytes: Bytes) -> Result<(Bytes, Option<Arc<str>>), (String, Bytes)> {
        if self.is_pass_through() {
            return Ok((bytes, None));
        }
        if self.decodes_in_place() {
            let mut out = Vec::with_capacity(bytes.len() * 2);
            return match self.decode_into(&bytes, &mut out) {
                Ok(schema) => Ok((out.into(), schema)),
                Err(e) => Err((e, bytes)),
            };
        }
        match self.decode_ref(&bytes) {
            Ok(out) => Ok(out),
            Err(e) => Err((e, bytes)),
        }
    }

    fn decode_ref(&self, bytes: &[u8]) -> Result<(Bytes, Option<Arc<str>>), String> {
        let (json, schema) = match (self.format, &self.avro) {
            (Format::Avro, Some(avro)) => {
                let (json, text) = avro
                    .decode(bytes)
                    .map_err(|e| format!("not decodable as Avro: {e}"))?;
                (json, Some(text))
            }
            (Format::Avro, None) => return Err("the avro format has no registry".into()),
            _ => {
                let json: Json =
                    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
                if self.schemas_enable {
                    self.unwrap_envelope(json)?
                } else {
                    (json, None)
                }
            }
        };
        match &self.reader {
            Some((text, codec)) => {
                let json = codec
                    .conform(&json)
                    .map_err(|e| format!("does not fit the sink's reader schema: {e}"))?;
                Ok((json.to_string().into(), Some(text.clone())))
            }
            None => Ok((json.to_string().into(), schema)),
        }
    }

    /// Connect's envelope `{"schema": ..., "payload": ...}` taken apart without a document
    /// tree: the payload's compact text appended to `out`, the schema's Avro form (the
    /// last one seen again, compared as text). Whatever this cannot be sure of goes the
    /// tree's way, with its messages; on an error `out` is as it was.
    fn unwrap_envelope_into(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Arc<str>>, String> {
        use sluice_connector_sdk::json::{envelope_parts, payload_after_schema, write_compact};
        let start = out.len();
        let seen = {
            let last = self.last_envelope.lock().unwrap_or_else(|e| e.into_inner());
            last.as_ref().map(|seen| {
                (
                    payload_after_schema(bytes, &seen.raw).filter(|_| !seen.raw.is_empty()),
                    seen.avro.clone(),
                )
            })
        };
        // The last schema again, spelled as Sluice spells envelopes: a compare, no scan.
        if let Some((Some(payload), avro)) = &seen {
            if write_compact(payload, out) {
                return Ok(Some(avro.clone()));
            }
        }
        if let Some((schema, payload)) = envelope_parts(bytes) {
            let known = match &seen {
                _ if schema == b"null" => Some(None),
                Some((_, avro)) if self.is_last_raw(schema) => Some(Some(avro.clone())),
                _ => None,
            };
            if let Some(avro) = known {
                if write_compact(payload, out) {
                    return Ok(avro);
                }
            }
        }
        out.truncate(start);
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let (payload, schema) = self.unwrap_envelope(json)?;
        serde_json::to_writer(&mut *out, &payload).map_err(|e| e.to_string())?;
        if let (Some(_), Some((raw, _))) = (&schema, envelope_parts(bytes)) {
            // The schema just taken from the tree is the last one seen: next time its
            // text is enough. (A `null` schema never becomes the last one.)
            let mut last = self.last_envelope.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(seen) = last.as_mut() {
                seen.raw = raw.to_vec();
            }
        }
        Ok(schema)
    }

    fn is_last_raw(&self, schema: &[u8]) -> bool {
        let last = self.last_envelope.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().is_some_and(|seen| *seen.raw == *schema)
    }

    fn unwrap_envelope(&self, json: Json) -> Result<(Json, Option<Arc<str>>), String> {
        let Json::Object(mut o) = json else {
            return Err(envelope_error());
        };
        if o.len() != 2 || !o.contains_key("schema") || !o.contains_key("payload") {
            return Err(envelope_error());
        }
        let payload = o.remove("payload").unwrap_or(Json::Null);
        let schema = o.remove("schema").unwrap_or(Json::Null);
        if schema.is_null() {
            return Ok((payload, None));
        }
        let mut last = self.last_envelope.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = &*last {
            if seen.tree == schema {
                return Ok((payload, Some(seen.avro.clone())));
            }
        }
        let avro = crate::connect_schema::to_avro(&schema)
            .map_err(|e| format!("the embedded schema: {e}"))?;
        crate::connect_schema::parse(&avro).map_err(|e| format!("the embedded schema: {e}"))?;
        let text: Arc<str> = Arc::from(avro.to_string());
        *last = Some(SeenEnvelope {
            raw: Vec::new(),
            tree: schema,
            avro: text.clone(),
        });
        Ok((payload, Some(text)))
    }
}

fn envelope_error() -> String {
    // Kafka Connect's JsonConverter says the same, so users find the same fix.
    "with `schemas_enable: true` a JSON value must be an object with exactly the fields \"schema\" and \"payload\"; for plain JSON set `schemas_enable: false`".into()
}

/// A record read from the log for a sink: key and value are slices of the read buffer.
pub struct ReadRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Decodes batches read from the log (CRCs already checked by the read), compressed ones
/// too, skipping control batches. Keys and values of uncompressed batches share `bytes` (no
/// copy per record).
pub fn decode_batches(bytes: &Bytes) -> Result<Vec<ReadRecord>, String> {
    let mut out = Vec::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    for (start, h) in split_verified(bytes).map_err(|e| e.to_string())? {
        if h.is_control() {
            continue;
        }
        let batch = &bytes[start..start + h.size];
        let codec = h.compression().map_err(|e| e.to_string())?;
        if codec == Compression::None {
            let records =
                sluice_log::record::decode_records(batch, &h).map_err(|e| e.to_string())?;
            out.reserve(records.len());
            out.extend(records.into_iter().map(|r| {
                ReadRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.map(|k| bytes.slice_ref(k)),
                    value: r.value.map(|v| bytes.slice_ref(v)),
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                        .collect(),
                }
            }));
            continue;
        }
        let mut buf = bytes.slice(start..start + h.size);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
            .map_err(|e| format!("cannot decompress a {} batch: {e}", codec.name()))?;
        out.extend(set.records.into_iter().filter(|r| !r.control).map(|r| {
            ReadRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.to_vec())))
                    .collect(),
            }
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_check_without_reencoding() {
        let raw = |s: &str| Some(Payload::Raw(Bytes::copy_from_slice(s.as_bytes())));
        assert_eq!(
            Encoder::plain(Format::Json)
                .encode(raw(r#"{"a": 1}"#))
                .unwrap(),
            Some(Bytes::from_static(br#"{"a": 1}"#)),
            "bytes kept as they came"
        );
        let err = Encoder::plain(Format::Json)
            .encode(raw("{oops"))
            .unwrap_err();
        assert!(err.message.starts_with("not valid JSON"));
        assert_eq!(
            err.original,
            Some(b"{oops".to_vec()),
            "the bytes come back for the dead-letter topic"
        );
        assert!(Encoder::plain(Format::String)
            .encode(Some(Payload::Raw(Bytes::from_static(&[0xff]))))
            .is_err());
        assert_eq!(
            Encoder::plain(Format::Bytes)
                .encode(Some(Payload::Raw(Bytes::from_static(&[0xff]))))
                .unwrap(),
            Some(Bytes::from_static(&[0xff]))
        );
        assert_eq!(Encoder::plain(Format::Json).encode(None).unwrap(), None);
    }

    fn order_schema() -> apache_avro::Schema {
        apache_avro::Schema::parse_str(
            r#"{"type": "record", "name": "Order", "fields": [
                {"name": "id", "type": "long"}, {"name": "note", "type": ["null", "string"], "default": null}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn json_with_schemas_enable_round_trips_connects_envelope() {
        let enc = Encoder::json(Some(order_schema()), true).unwrap();
        let bytes = enc
            .encode(Some(Payload::Raw(Bytes::from_static(
                br#"{"id": 7, "extra": true}"#,
            ))))
            .unwrap()
            .unwrap();
        let written: Json = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            written["payload"],
            serde_json::json!({"id": 7, "note": null})
        );
        assert_eq!(written["schema"]["type"], "struct");
        assert_eq!(written["schema"]["fields"][0]["type"], "int64");
        assert_eq!(written["schema"]["fields"][1]["optional"], true);
        let err = enc
            .encode(Some(Payload::Raw(Bytes::from_static(
                br#"{"id": "seven"}"#,
            ))))
            .unwrap_err();
        assert!(
            err.message.contains("/id: expected long"),
            "{}",
            err.message
        );

        let dec = Decoder::new(Format::Json, None, true, None);
        let (payload, schema) = dec.decode(bytes.clone()).unwrap();
        assert_eq!(payload, br#"{"id":7,"note":null}"#.to_vec());
        let schema = apache_avro::Schema::parse_str(&schema.unwrap()).unwrap();
        assert!(sluice_schema_registry::compat::can_read(
            &schema,
            &order_schema()
        ));
        let (_, again) = dec.decode(bytes).unwrap();
        assert!(again.is_some(), "the cached schema is handed out again");

        let (e, original) = dec.decode(Bytes::from_static(br#"{"id": 7}"#)).unwrap_err();
        assert!(e.contains("\"schema\" and \"payload\""), "{e}");
        assert_eq!(original, br#"{"id": 7}"#.to_vec());
    }

    #[test]
    fn envelopes_without_a_schema_are_written_in_place_as_by_the_tree() {
        let enc = Encoder::json(None, true).unwrap();
        assert!(enc.transcodes_raw());
        for text in [
            r#" { "a" : [1, 2.50, -0], "b": "x" } "#,
            r#"{"a":1,"a":2}"#,
            r#""\u00e9""#,
            "12345678901234567890123",
            "{oops",
            "",
        ] {
            let mut out = b"kept".to_vec();
            let in_place = enc.encode_raw_into(text.as_bytes(), &mut out);
            let by_tree = serde_json::from_slice::<Json>(text.as_bytes())
                .map(|j| serde_json::json!({"schema": null, "payload": j}).to_string())
                .map_err(|e| format!("not valid JSON: {e}"));
            match (in_place, by_tree) {
                (Ok(()), Ok(tree)) => assert_eq!(out[4..], *tree.as_bytes(), "{text}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a, b, "{text}");
                    assert_eq!(out, b"kept", "{text}: out as it was");
                }
                (a, b) => panic!("{text}: in place {a:?}, tree {b:?}"),
            }
        }
    }

    #[test]
    fn envelopes_taken_apart_in_place_match_the_tree() {
        let schema = r#"{"type":"struct","fields":[{"field":"id","type":"int64","optional":false},{"field":"note","type":"string","optional":true}]}"#;
        let other =
            r#"{"type":"struct","fields":[{"field":"id","type":"int64","optional":false}]}"#;
        let reader = r#"{"type": "record", "name": "Order", "fields": [
            {"name": "id", "type": "double"}, {"name": "qty", "type": "int", "default": 1}]}"#;
        let texts = [
            format!(r#"{{"schema":{schema},"payload":{{"id":7,"note":"x"}}}}"#),
            format!(r#"{{"schema":{schema},"payload":{{"id":8,"note":null}}}}"#),
            format!(" {{ \"payload\" : {{ \"id\" : 9 , \"note\" : \"a\\u00e9\" }} ,\n \"schema\" : {schema} }} "),
            format!(r#"{{"schema":{other},"payload":{{"id":1.50}}}}"#),
            format!(r#"{{"schema":{schema},"payload":{{"id":2,"id":3}}}}"#),
            r#"{"schema":null,"payload":[1, 2.0, "z"]}"#.to_string(),
            r#"{"schema":null,"payload":"\u00e9"}"#.to_string(),
            r#"{"schema":null,"payload":{"a":1,"a":2}}"#.to_string(),
            r#"{"schema":null,"payload":1}"#.to_string(),
            format!(r#"{{"schema":{schema},"payload":{{"id":7}}}}"#),
            r#"{"schema":{"type":"nonsense"},"payload":1}"#.to_string(),
            r#"{"schema":null,"payload":1,"extra":2}"#.to_string(),
            r#"{"payload":1}"#.to_string(),
            r#"[1]"#.to_string(),
            r#"{"schema":null,"payload":{oops}"#.to_string(),
        ];
        for reader in [None, Some(reader)] {
            let make = || {
                Decoder::new(
                    Format::Json,
                    None,
                    true,
                    reader.map(|r| (r.to_string(), apache_avro::Schema::parse_str(r).unwrap())),
                )
            };
            let (lean, tree) = (make(), make());
            assert!(lean.decodes_in_place());
            for text in &texts {
                let mut out = b"kept".to_vec();
                let in_place = lean.decode_into(text.as_bytes(), &mut out);
                let by_tree = tree.decode_ref(text.as_bytes());
                match (in_place, by_tree) {
                    (Ok(a), Ok((bytes, b))) => {
                        assert_eq!(out[4..], bytes[..], "{text}");
                        assert_eq!(out[..4], *b"kept");
                        assert_eq!(a, b, "{text}");
                    }
                    (Err(a), Err(b)) => {
                        assert_eq!(a, b, "{text}");
                        assert_eq!(out, b"kept", "{text}: out as it was");
                    }
                    (a, b) => panic!("{text}: in place {a:?}, tree {b:?}"),
                }
            }
        }
    }

    #[test]
    fn a_sink_reader_schema_resolves_values_or_refuses_them() {
        let reader = r#"{"type": "record", "name": "Order", "fields": [
            {"name": "id", "type": "double"}, {"name": "qty", "type": "int", "default": 1}]}"#;
        let dec = Decoder::new(
            Format::Json,
            None,
            false,
            Some((
                reader.to_string(),
                apache_avro::Schema::parse_str(reader).unwrap(),
            )),
        );
        assert!(!dec.is_pass_through());
        let (v, schema) = dec
            .decode(Bytes::from_static(br#"{"id": 3, "note": "x"}"#))
            .unwrap();
        assert_eq!(
            v,
            br#"{"id":3.0,"qty":1}"#.to_vec(),
            "promoted, defaulted, projected"
        );
        assert_eq!(schema.as_deref(), Some(reader));
        let (e, _) = dec
            .decode(Bytes::from_static(br#"{"qty": 2}"#))
            .unwrap_err();
        assert!(e.contains("/id: missing"), "{e}");
        assert!(Decoder::new(Format::Json, None, false, None).is_pass_through());
    }
}

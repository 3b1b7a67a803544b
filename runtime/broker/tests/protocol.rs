//! Wire-level tests with raw frames on a real loopback socket: the traps old and new Kafka
//! clients fall into, malformed input, ordering and long-poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_broker::{Broker, BrokerConfig, BrokerState};
use sluice_log::{BatchBuilder, Log, LogOptions, Record, TopicConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

struct TestBroker {
    addr: std::net::SocketAddr,
    log: Log,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start() -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        },
    )
    .unwrap();
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_request_bytes: 1 << 20,
        ..BrokerConfig::default()
    };
    let state = BrokerState::new(log.clone(), config, 0).unwrap();
    let broker = Broker::bind(state).await.unwrap();
    let addr = broker.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(broker.serve(stop.clone()));
    TestBroker {
        addr,
        log,
        stop,
        _dir: dir,
    }
}

fn request<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &R) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("protocol-test")));
    header
        .encode(&mut out, key.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    let len = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Reads one response frame: (correlation id, rest after the correlation id).
async fn read_frame(s: &mut TcpStream) -> Option<(i32, Bytes)> {
    let len = tokio::time::timeout(Duration::from_secs(10), s.read_i32())
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.ok()?;
    let mut b = Bytes::from(buf);
    let corr = b.get_i32();
    Some((corr, b))
}

async fn is_closed(s: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn records(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(&Record {
            key: None,
            value: Some(v.as_bytes()),
            timestamp: 1_700_000_000_000,
            headers: vec![],
        });
    }
    Bytes::from(b.build())
}

fn produce(topic: &str, acks: i16, values: &[&str]) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(records(values));
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.into()));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 5000;
    req.topic_data = vec![t];
    req
}

fn fetch(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.into()));
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = 1;
    req.max_bytes = 1 << 20;
    req.topics = vec![t];
    req
}

#[tokio::test]
async fn api_versions_v3_answers_with_a_v0_header_and_no_tagged_fields() {
    let b = start().await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(&request(
        ApiKey::ApiVersions,
        3,
        7,
        &ApiVersionsRequest::default(),
    ))
    .await
    .unwrap();
    let (corr, mut body) = read_frame(&mut s).await.unwrap();
    assert_eq!(corr, 7);
    // Header v0: the body starts right after the correlation id, and ends with an empty tag
    // section (librdkafka < 2.2 mis-skips any tagged field).
    assert_eq!(*body.last().unwrap(), 0u8);
    let resp = ApiVersionsResponse::decode(&mut body, 3).unwrap();
    assert!(body.is_empty(), "the whole body decodes as v3");
    assert_eq!(resp.error_code, 0);
    let produce = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 9));
    assert!(
        resp.api_keys
            .iter()
            .all(|k| k.api_key != ApiKey::OffsetForLeaderEpoch as i16),
        "only what is implemented"
    );
}

#[tokio::test]
async fn a_too_new_api_versions_gets_a_v0_body_with_unsupported_version() {
    let b = start().await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    // Version 9 with a body we do not understand: the broker must not decode it.
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(9);
    frame.put_i32(42);
    frame.put_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let len = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&frame).await.unwrap();
    let (corr, mut body) = read_frame(&mut s).await.unwrap();
    assert_eq!(corr, 42);
    let resp = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(resp.error_code, 35);
    assert!(!resp.api_keys.is_empty());
    // The connection stays usable for the retry at a version we listed.
    s.write_all(&request(
        ApiKey::ApiVersions,
        2,
        43,
        &ApiVersionsRequest::default(),
    ))
    .await
    .unwrap();
    assert_eq!(read_frame(&mut s).await.unwrap().0, 43);
}

#[tokio::test]
async fn bad_frames_close_only_their_own_connection() {
    let b = start().await;
    let mut healthy = TcpStream::connect(b.addr).await.unwrap();

    let mut unknown_key = TcpStream::connect(b.addr).await.unwrap();
    unknown_key
        .write_all(&[0, 0, 0, 10, 0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0])
        .await
        .unwrap();
    assert!(is_closed(&mut unknown_key).await, "unknown API key 999");

    let mut oversized = TcpStream::connect(b.addr).await.unwrap();
    oversized
        .write_all(&(200_000_000i32).to_be_bytes())
        .await
        .unwrap();
    assert!(
        is_closed(&mut oversized).await,
        "frame past max_request_bytes"
    );

    let mut negative = TcpStream::connect(b.addr).await.unwrap();
    negative.write_all(&(-5i32).to_be_bytes()).await.unwrap();
    assert!(is_closed(&mut negative).await, "negative frame size");

    let mut truncated_body = TcpStream::connect(b.addr).await.unwrap();
    let full = request(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    let mut cut = full[..full.len() - 2].to_vec();
    let len = (cut.len() - 4) as i32;
    cut[0..4].copy_from_slice(&len.to_be_bytes());
    truncated_body.write_all(&cut).await.unwrap();
    assert!(
        is_closed(&mut truncated_body).await,
        "malformed Metadata body"
    );

    let mut unsupported_version = TcpStream::connect(b.addr).await.unwrap();
    unsupported_version
        .write_all(&request(ApiKey::Fetch, 13, 1, &FetchRequest::default()))
        .await
        .unwrap();
    assert!(
        is_closed(&mut unsupported_version).await,
        "Fetch v13 is not served"
    );

    let mut half = TcpStream::connect(b.addr).await.unwrap();
    half.write_all(&[0, 0, 1, 0, 0, 3]).await.unwrap();
    drop(half); // a client that dies mid-request

    healthy
        .write_all(&request(
            ApiKey::ApiVersions,
            3,
            9,
            &ApiVersionsRequest::default(),
        ))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut healthy).await.unwrap().0,
        9,
        "other connections are unaffected"
    );
}

#[tokio::test]
async fn acks_zero_gets_no_answer_and_pipelined_produces_keep_their_order() {
    let b = start().await;
    b.log.create_topic("t", 1, TopicConfig::default()).unwrap();
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(&request(
        ApiKey::Produce,
        7,
        1,
        &produce("t", 0, &["fire-and-forget"]),
    ))
    .await
    .unwrap();
    let mut batch = BytesMut::new();
    for i in 0..50 {
        let value = format!("v{i}");
        batch.extend_from_slice(&request(
            ApiKey::Produce,
            9,
            100 + i,
            &produce("t", if i % 2 == 0 { 1 } else { -1 }, &[&value]),
        ));
    }
    s.write_all(&batch).await.unwrap();
    for i in 0..50 {
        let (corr, mut body) = read_frame(&mut s).await.unwrap();
        assert_eq!(corr, 100 + i, "answers in request order; none for acks=0");
        // Produce v9 has a flexible header: skip its (empty) tag section.
        assert_eq!(body.get_u8(), 0);
        let resp = ProduceResponse::decode(&mut body, 9).unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.base_offset, 1 + i as i64, "stored in the order sent");
    }
}

#[tokio::test]
async fn a_parked_fetch_wakes_on_new_data_and_blocks_no_other_connection() {
    let b = Arc::new(start().await);
    b.log.create_topic("t", 1, TopicConfig::default()).unwrap();
    let mut consumer = TcpStream::connect(b.addr).await.unwrap();
    let started = Instant::now();
    consumer
        .write_all(&request(ApiKey::Fetch, 11, 5, &fetch("t", 0, 10_000)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut producer = TcpStream::connect(b.addr).await.unwrap();
    producer
        .write_all(&request(
            ApiKey::Produce,
            7,
            6,
            &produce("t", 1, &["wake", "up"]),
        ))
        .await
        .unwrap();
    let (corr, _) = read_frame(&mut producer).await.unwrap();
    assert_eq!(corr, 6);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the producer was not held up by the parked fetch"
    );

    let (corr, mut body) = read_frame(&mut consumer).await.unwrap();
    assert_eq!(corr, 5);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fetch woke on the append, not its 10 s timeout"
    );
    let resp = FetchResponse::decode(&mut body, 11).unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 2);
    let got = sluice_log::decode_record_set(p.records.as_ref().unwrap()).unwrap();
    assert_eq!(
        got.iter()
            .map(|r| r.value.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![b"wake".to_vec(), b"up".to_vec()]
    );
}

#[tokio::test]
async fn corrupt_batches_and_unknown_partitions_get_error_codes() {
    let b = start().await;
    b.log.create_topic("t", 1, TopicConfig::default()).unwrap();
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let mut req = produce("t", 1, &["x"]);
    let mut bad = req.topic_data[0].partition_data[0]
        .records
        .clone()
        .unwrap()
        .to_vec();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    req.topic_data[0].partition_data[0].records = Some(Bytes::from(bad));
    let mut other = PartitionProduceData::default();
    other.index = 7;
    other.records = Some(records(&["y"]));
    req.topic_data[0].partition_data.push(other);
    s.write_all(&request(ApiKey::Produce, 7, 1, &req))
        .await
        .unwrap();
    let (_, mut body) = read_frame(&mut s).await.unwrap();
    let resp = ProduceResponse::decode(&mut body, 7).unwrap();
    let codes: Vec<i16> = resp.responses[0]
        .partition_responses
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![2, 3],
        "CORRUPT_MESSAGE, UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        b.log.partition("t", 0).unwrap().end_offset(),
        0,
        "nothing stored"
    );

    s.write_all(&request(ApiKey::Fetch, 11, 2, &fetch("t", 99, 0)))
        .await
        .unwrap();
    let (_, mut body) = read_frame(&mut s).await.unwrap();
    let resp = FetchResponse::decode(&mut body, 11).unwrap();
    assert_eq!(
        resp.responses[0].partitions[0].error_code, 1,
        "OFFSET_OUT_OF_RANGE"
    );
}

fn idempotent_records(producer_id: i64, epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
    let mut raw = records(values).to_vec();
    // Producer fields sit inside the CRC-covered part of the header: set them, then re-checksum.
    raw[43..51].copy_from_slice(&producer_id.to_be_bytes());
    raw[51..53].copy_from_slice(&epoch.to_be_bytes());
    raw[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c(&raw[21..]);
    raw[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(raw)
}

fn crc32c(data: &[u8]) -> u32 {
    // Bitwise CRC-32C (Castagnoli), enough for a test.
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn idempotent_retries_get_the_original_offset_and_gaps_are_refused() {
    let b = start().await;
    b.log.create_topic("t", 1, TopicConfig::default()).unwrap();
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(&request(
        ApiKey::InitProducerId,
        4,
        1,
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    ))
    .await
    .unwrap();
    let (_, mut body) = read_frame(&mut s).await.unwrap();
    assert_eq!(body.get_u8(), 0, "flexible header");
    let init = InitProducerIdResponse::decode(&mut body, 4).unwrap();
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;

    let send = |corr: i32, seq: i32, values: &'static [&'static str]| {
        let mut req = produce("t", -1, values);
        req.topic_data[0].partition_data[0].records = Some(idempotent_records(pid, 0, seq, values));
        request(ApiKey::Produce, 7, corr, &req)
    };
    let mut answers = Vec::new();
    let frames = [
        send(10, 0, &["a", "b"]),
        send(11, 2, &["c"]),
        send(12, 0, &["a", "b"]),
        send(13, 5, &["gap"]),
    ];
    for f in frames {
        s.write_all(&f).await.unwrap();
        let (_, mut body) = read_frame(&mut s).await.unwrap();
        let resp = ProduceResponse::decode(&mut body, 7).unwrap();
        let p = &resp.responses[0].partition_responses[0];
        answers.push((p.error_code, p.base_offset));
    }
    assert_eq!(answers[0], (0, 0));
    assert_eq!(answers[1], (0, 2));
    assert_eq!(
        answers[2],
        (0, 0),
        "a retried batch gets its original offset back"
    );
    assert_eq!(answers[3].0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER for a gap");
    assert_eq!(
        b.log.partition("t", 0).unwrap().end_offset(),
        3,
        "the duplicate and the gap stored nothing"
    );
}

#[tokio::test]
async fn a_huge_array_count_is_refused_without_allocating() {
    // Found by the fuzzer: a Metadata v0 request declaring ~10⁹ topics in 16 bytes made the
    // codec try to allocate 48 GB and abort the whole broker.
    let b = start().await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let body: [u8; 16] = [0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0x28, 0, 0, 0, 0, 0x0a];
    s.write_all(&(body.len() as i32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&body).await.unwrap();
    assert!(
        is_closed(&mut s).await,
        "the malformed request closes its connection"
    );
    let mut healthy = TcpStream::connect(b.addr).await.unwrap();
    healthy
        .write_all(&request(
            ApiKey::ApiVersions,
            3,
            1,
            &ApiVersionsRequest::default(),
        ))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut healthy).await.unwrap().0,
        1,
        "the broker is still up"
    );
}

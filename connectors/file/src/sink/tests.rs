use super::*;

fn rec(offset: i64, v: &str) -> SinkRecord {
    SinkRecord {
        topic: "t".into(),
        partition: 0,
        offset,
        timestamp: 0,
        key: None,
        value: Some(Payload::Raw(v.as_bytes().to_vec().into())),
        headers: vec![],
        key_schema: None,
        value_schema: None,
    }
}

fn task(dir: &Path, roll_bytes: u64) -> FileSinkTask {
    FileSinkTask {
        dir: dir.to_path_buf(),
        roll_bytes,
        roll_interval: Duration::from_secs(3600),
        format: OutFormat::Json,
        open: HashMap::new(),
        done: HashMap::new(),
        csv_rows: CsvRows::default(),
    }
}

fn output(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(dir.join(n))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_crash_before_finishing_a_file_repeats_nothing_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition {
        topic: "t".into(),
        partition: 0,
    };
    let mut t = task(dir.path(), 20);
    assert!(t.open(vec![tp.clone()]).unwrap().is_empty());
    let first: Vec<SinkRecord> = (0..6).map(|i| rec(i, &format!(r#"{{"n":{i}}}"#))).collect();
    t.put(&first).unwrap();
    let done = t.flush().unwrap();
    assert!(!done.is_empty(), "rolled by size: {done:?}");
    let durable = done[0].1;
    drop(t); // a crash: the in-progress file is left behind

    let mut t = task(dir.path(), 20);
    let resume = t.open(vec![tp.clone()]).unwrap();
    assert_eq!(
        resume,
        vec![(tp.clone(), durable)],
        "resumes after the last finished file"
    );
    // The runtime replays from there (and, at worst, a little before: those are skipped).
    let replay: Vec<SinkRecord> = (durable - 1..8)
        .map(|i| rec(i, &format!(r#"{{"n":{i}}}"#)))
        .collect();
    t.put(&replay).unwrap();
    t.stop().unwrap();
    let lines = output(dir.path());
    let expected: Vec<String> = (0..8).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    assert_eq!(lines, expected, "every record exactly once, in order");
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".inprogress")));
}

fn csv_output(dir: &Path) -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

/// A CSV sink task on `t-0`, ready for records.
fn csv_task(dir: &Path) -> FileSinkTask {
    let mut t = task(dir, 1 << 20);
    t.format = OutFormat::Csv;
    let tp = TopicPartition {
        topic: "t".into(),
        partition: 0,
    };
    t.open(vec![tp]).unwrap();
    t
}

#[test]
fn csv_rows_under_a_header_with_quoting_and_a_new_file_when_fields_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = csv_task(dir.path());
    t.put(&[
        rec(
            0,
            r#"{"id":1,"name":"Ada, Countess","note":"said \"hi\"","tags":["a"],"gone":null}"#,
        ),
        rec(
            1,
            r#"{"id":2,"name":"Bob","note":"two\nlines","tags":[],"gone":true}"#,
        ),
        rec(2, r#"{"id":3,"email":"c@example.com"}"#),
    ])
    .unwrap();
    t.stop().unwrap();
    let files = csv_output(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0]
        .0
        .ends_with("-00000000000000000000-00000000000000000001.csv"));
    assert_eq!(
        files[0].1,
        "id,name,note,tags,gone\n1,\"Ada, Countess\",\"said \"\"hi\"\"\",\"[\"\"a\"\"]\",\n2,Bob,\"two\nlines\",[],true\n"
    );
    assert!(files[1]
        .0
        .ends_with("-00000000000000000002-00000000000000000002.csv"));
    assert_eq!(files[1].1, "id,email\n3,c@example.com\n");
}

#[test]
fn csv_rows_from_runs_of_values_are_the_rows_from_records() {
    let values = [
        r#"{"id":1,"name":"Ada, Countess","note":"said \"hi\"","tags":["a"],"gone":null}"#,
        r#"{"id":2,"name":"B\u00f6b","note":"two\nlines","tags":[],"gone":true}"#,
        r#"{"id":3,"email":"c@example.com"}"#,
        r#"{"id":4,"email":"d@example.com","id":5}"#,
    ];
    let (by_records, by_values) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut t = csv_task(by_records.path());
    let records: Vec<SinkRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| rec(i as i64, v))
        .collect();
    t.put(&records).unwrap();
    t.stop().unwrap();
    let mut t = csv_task(by_values.path());
    assert!(t.accepts_values());
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for (i, v) in values.iter().enumerate() {
        spans.push((
            i as i64,
            Some((buf.len() as u32, (buf.len() + v.len()) as u32)),
        ));
        buf.extend_from_slice(v.as_bytes());
    }
    t.put_values(&[SinkValueRun {
        topic: "t".into(),
        partition: 0,
        buf: buf.into(),
        values: spans,
    }])
    .unwrap();
    t.stop().unwrap();
    let (a, b) = (csv_output(by_records.path()), csv_output(by_values.path()));
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a, b);
    assert_eq!(
        a[1].1, "id,email\n3,c@example.com\n5,d@example.com\n",
        "a repeated key keeps its first place and last value, as serde_json does"
    );
    let e = t
        .put_values(&[SinkValueRun {
            topic: "t".into(),
            partition: 0,
            buf: bytes::Bytes::from_static(b"[1]"),
            values: vec![(9, Some((0, 3))), (10, None)],
        }])
        .unwrap_err();
    assert!(
        e.message.contains("the value at t-0 offset 9 is an array"),
        "{}",
        e.message
    );
}

#[test]
fn csv_refuses_values_that_are_not_objects_and_a_replay_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = csv_task(dir.path());
    let batch = [rec(0, r#"{"n":0}"#), rec(1, "[1,2]"), rec(2, r#"{"n":2}"#)];
    let e = t.put(&batch).unwrap_err();
    assert_eq!(
        e.kind,
        sluice_connector_sdk::connector::ErrorKind::BadRecord
    );
    assert!(
        e.message.contains("t-0 offset 1 is an array"),
        "{}",
        e.message
    );
    // What the runtime does next: the batch again, one record at a time.
    for r in &batch {
        let result = t.put(std::slice::from_ref(r));
        assert_eq!(result.is_err(), r.offset == 1, "offset {}", r.offset);
    }
    let mut tomb = rec(3, "");
    tomb.value = None;
    let e = t.put(&[tomb]).unwrap_err();
    assert!(e.message.contains("tombstone"), "{}", e.message);
    t.stop().unwrap();
    let files = csv_output(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].1, "n\n0\n2\n", "each good record once");
}

#[test]
fn avro_files_take_the_records_schema_and_a_new_schema_starts_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(dir.path(), 1 << 20);
    t.format = OutFormat::Avro;
    let tp = TopicPartition {
        topic: "t".into(),
        partition: 0,
    };
    t.open(vec![tp.clone()]).unwrap();
    let v1: Arc<str> =
        Arc::from(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#);
    let v2: Arc<str> = Arc::from(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":"string","default":""}]}"#,
    );
    let with = |offset: i64, v: &str, schema: &Arc<str>| {
        let mut r = rec(offset, v);
        r.value_schema = Some(schema.clone());
        r
    };
    t.put(&[with(0, r#"{"a":1}"#, &v1), with(1, r#"{"a":2}"#, &v1)])
        .unwrap();
    // A value that does not fit its schema is refused, and nothing of it is written.
    let err = t.put(&[with(2, r#"{"a":"x"}"#, &v1)]).unwrap_err();
    assert_eq!(
        err.kind,
        sluice_connector_sdk::connector::ErrorKind::BadRecord
    );
    // No schema at all: refused, saying where schemas come from.
    let err = t.put(&[rec(2, r#"{"a":3}"#)]).unwrap_err();
    assert!(
        err.message.contains("value_format: avro"),
        "{}",
        err.message
    );
    t.put(&[with(3, r#"{"a":4,"b":"x"}"#, &v2)]).unwrap();
    t.close(vec![tp]).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "t-0-00000000000000000000-00000000000000000001.avro",
            "t-0-00000000000000000003-00000000000000000003.avro",
        ]
    );
    let read = |name: &str| {
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
        let fields = match reader.writer_schema() {
            apache_avro::Schema::Record(r) => r.fields.len(),
            _ => 0,
        };
        (fields, reader.count())
    };
    assert_eq!(read(&names[0]), (1, 2));
    assert_eq!(read(&names[1]), (2, 1));
}

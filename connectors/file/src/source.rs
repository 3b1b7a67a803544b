//! The file source: follows every file a glob matches (new files are picked up as they
//! appear), one record per complete line, and remembers its place per file.
//!
//! A file is known by a fingerprint, not by its path: its device and inode (which a rename
//! keeps) and a hash of its first line (which tells a reused inode or a file truncated and
//! rewritten in place apart). A rotated or renamed file keeps its place; a new file at an old
//! path starts from the beginning. A file is read once its first line is complete. Only
//! whole lines (ending in `\n`) are read: a line still being written waits for its end.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_connector_sdk::config::{ConfigSpec, ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::SOURCE_ERROR_HEADER;
use sluice_connector_sdk::connector::{
    ConnectorError, Polled, Result, SourceConnector, SourcePosition, SourceRecord, SourceTask,
    TaskInfo, ValueRun,
};
use sluice_connector_sdk::data::Payload;

use crate::csv_json::{csv_fields, CsvToJson};

/// At most this much of the first line goes into the fingerprint.
const FINGERPRINT_BYTES: usize = 256;
const READ_CHUNK: usize = 4 << 20;

pub fn spec() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required("path", FieldKind::String, "files to follow: a path whose file name may use `*` and `?`, e.g. /var/log/app/*.log"),
        FieldSpec::optional("format", FieldKind::OneOf(vec!["lines".into(), "json".into(), "csv".into()]), Some(json!("lines")), "`lines`: each line is a record; `json`: each line is one JSON document (checked by the value format); `csv`: the first line names the columns, each other line becomes a JSON object"),
        FieldSpec::optional("poll_interval", FieldKind::Duration, Some(json!("250ms")), "how often to look for new files and new lines when idle"),
    ])
}

/// `*` and `?` in a file name.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn matching_files(pattern: &Path) -> Vec<PathBuf> {
    let (dir, name) = match (
        pattern.parent(),
        pattern.file_name().and_then(|n| n.to_str()),
    ) {
        (Some(d), Some(n)) => (
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            },
            n,
        ),
        _ => return Vec::new(),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| !n.starts_with('.') && name_matches(name, n))
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn fingerprint(dev: u64, ino: u64, first_line: &[u8]) -> String {
    // FNV-1a, 64 bits: stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in first_line {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("file:{dev}:{ino}:{h:016x}")
}

pub struct FileSource {
    config: ConfigValues,
}

impl FileSource {
    pub fn new(config: ConfigValues) -> Self {
        FileSource { config }
    }
}

impl SourceConnector for FileSource {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        // One task follows every matched file: order within a file is what matters.
        Ok(vec![self.config.clone()])
    }

    fn create_task(&self, _info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        let path = PathBuf::from(
            config
                .str("path")
                .ok_or_else(|| ConnectorError::fatal("`path` is missing"))?,
        );
        Ok(Box::new(FileSourceTask {
            pattern: path,
            poll_interval: config
                .duration("poll_interval")
                .unwrap_or(Duration::from_millis(250)),
            positions: HashMap::new(),
            csv: config.str("format") == Some("csv"),
            columns: HashMap::new(),
            last_read: None,
            last_json: None,
        }))
    }
}

struct FileSourceTask {
    pattern: PathBuf,
    poll_interval: Duration,
    /// Fingerprint → next byte to read.
    positions: HashMap<String, u64>,
    /// `format: csv`: lines become JSON objects keyed by the header row's column names.
    csv: bool,
    /// Per file (fingerprint): its header's columns, and how its lines become objects.
    columns: HashMap<String, CsvToJson>,
    /// `format: csv`: the last buffer of JSON objects, reused as `last_read` is.
    last_json: Option<bytes::Bytes>,
    /// The last read buffer. Records are slices of it; once they are all dropped (the
    /// runtime has appended them), the next read reuses its memory instead of fresh pages.
    last_read: Option<bytes::Bytes>,
}

impl FileSourceTask {
    /// The fingerprint of a file, once its first line is complete (or 256 bytes long), and
    /// that first line.
    fn identify(file: &mut File) -> std::io::Result<Option<(String, Vec<u8>)>> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        let mut head = vec![0u8; FINGERPRINT_BYTES];
        let mut n = 0;
        while n < head.len() {
            let got = file.read(&mut head[n..])?;
            if got == 0 {
                break;
            }
            n += got;
        }
        head.truncate(n);
        let first_line = match head.iter().position(|b| *b == b'\n') {
            Some(nl) => &head[..=nl],
            None if n == FINGERPRINT_BYTES => &head[..],
            None => return Ok(None),
        };
        Ok(Some((
            fingerprint(meta.dev(), meta.ino(), first_line),
            first_line.to_vec(),
        )))
    }

    /// Reads new complete lines of one file as a run of values (`lines`, `json`, and `csv`,
    /// whose lines become objects), or as records when CSV lines carry errors. `taken`
    /// counts both.
    fn read_file(
        &mut self,
        path: &Path,
        max_records: usize,
        taken: &mut usize,
        out: &mut Vec<SourceRecord>,
        runs: &mut Vec<ValueRun>,
    ) -> std::io::Result<()> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // rotated away meanwhile
            Err(e) => return Err(e),
        };
        let Some((stream, first_line)) = Self::identify(&mut file)? else {
            return Ok(());
        };
        if self.csv && !self.columns.contains_key(&stream) {
            let header = first_line.strip_suffix(b"\n").unwrap_or(&first_line);
            let header = header.strip_suffix(b"\r").unwrap_or(header);
            match csv_fields(header) {
                Ok(names) if !names.is_empty() => {
                    self.columns.insert(stream.clone(), CsvToJson::new(names));
                }
                _ => return Ok(()), // not a header row yet (a long first line still being written)
            }
        }
        let len = file.metadata()?.len();
        // Shorter than where we were: truncated in place, start over.
        let start = self
            .positions
            .get(&stream)
            .copied()
            .filter(|p| *p <= len)
            .unwrap_or(0);
        if start >= len {
            return Ok(());
        }
        file.seek(SeekFrom::Start(start))?;
        let want = ((len - start) as usize).min(READ_CHUNK);
        // The last read's buffer is taken back once no record holds a slice of it (the
        // runtime has appended them), and read into without zeroing it first.
        let mut vec = match self.last_read.take().map(bytes::Bytes::try_into_mut) {
            Some(Ok(unique)) => Vec::from(unique),
            _ => Vec::new(),
        };
        vec.clear();
        vec.reserve(want);
        (&mut file).take(want as u64).read_to_end(&mut vec)?;
        // One shared buffer: each line's value is a slice of it, not a copy.
        let buf = bytes::Bytes::from(vec);
        self.last_read = Some(buf.clone());
        let shared_stream: Arc<str> = Arc::from(stream.as_str());
        let mut offset = start;
        let mut at = 0;
        if !self.csv {
            // Plain values: spans of the buffer, no record object per line.
            let mut run = ValueRun::new(buf.clone(), shared_stream);
            while *taken < max_records {
                let Some(nl) = memchr::memchr(b'\n', &buf[at..]) else {
                    break;
                };
                let mut end = at + nl;
                if end > at && buf[end - 1] == b'\r' {
                    end -= 1;
                }
                offset += nl as u64 + 1;
                run.push(at, end, offset)
                    .map_err(|e| std::io::Error::other(format!("reading {stream}: {e}")))?;
                at += nl + 1;
                *taken += 1;
            }
            self.positions.insert(stream, offset);
            if !run.is_empty() {
                runs.push(run);
            }
            return Ok(());
        }
        // CSV: each row's JSON object goes into one buffer, the values a run over it. A line
        // that is not a row of the header's shape becomes a record of its own that carries
        // its error (the raw line, for the dead-letter topic).
        let Some(to_json) = self.columns.get_mut(&stream) else {
            return Ok(());
        };
        let mut json = match self.last_json.take().map(bytes::Bytes::try_into_mut) {
            Some(Ok(unique)) => Vec::from(unique),
            _ => Vec::new(),
        };
        json.clear();
        json.reserve(buf.len() * 2);
        let mut pieces: Vec<CsvPiece> = Vec::new();
        let mut rows = Vec::new();
        while *taken < max_records {
            let Some(nl) = memchr::memchr(b'\n', &buf[at..]) else {
                break;
            };
            let mut end = at + nl;
            if end > at && buf[end - 1] == b'\r' {
                end -= 1;
            }
            let (line_start, line) = (offset, at..end);
            offset += nl as u64 + 1;
            at += nl + 1;
            if line_start == 0 {
                continue; // the header row itself
            }
            let from = json.len();
            match to_json.object(&buf[line.clone()], &mut json) {
                Ok(()) => rows.push((from, json.len(), offset)),
                Err(e) => {
                    if !rows.is_empty() {
                        pieces.push(CsvPiece::Rows(std::mem::take(&mut rows)));
                    }
                    pieces.push(CsvPiece::Bad(Box::new(SourceRecord {
                        topic: None,
                        partition: None,
                        key: None,
                        value: Some(Payload::Raw(buf.slice(line))),
                        headers: vec![(SOURCE_ERROR_HEADER.to_string(), e.into_bytes())],
                        timestamp: None,
                        position: SourcePosition {
                            stream: shared_stream.clone(),
                            offset: json!(offset),
                        },
                    })));
                }
            }
            *taken += 1;
        }
        self.positions.insert(stream, offset);
        let json = bytes::Bytes::from(json);
        self.last_json = Some(json.clone());
        let run_of = |rows: Vec<(usize, usize, u64)>| -> std::io::Result<ValueRun> {
            let mut run = ValueRun::new(json.clone(), shared_stream.clone());
            for (from, to, position) in rows {
                run.push(from, to, position)
                    .map_err(|e| std::io::Error::other(format!("CSV rows: {e}")))?;
            }
            Ok(run)
        };
        if pieces.is_empty() {
            if !rows.is_empty() {
                runs.push(run_of(rows)?);
            }
            return Ok(());
        }
        // Bad lines are rare: this file's rows become records around them, in order.
        if !rows.is_empty() {
            pieces.push(CsvPiece::Rows(rows));
        }
        for piece in pieces {
            match piece {
                CsvPiece::Rows(rows) => out.extend(run_of(rows)?.into_records()),
                CsvPiece::Bad(record) => out.push(*record),
            }
        }
        Ok(())
    }
}

/// A stretch of one CSV read: rows that became objects, or a line that did not.
enum CsvPiece {
    Rows(Vec<(usize, usize, u64)>),
    Bad(Box<SourceRecord>),
}

impl SourceTask for FileSourceTask {
    fn start(&mut self, committed: Vec<SourcePosition>) -> Result<()> {
        for p in committed {
            if let Some(offset) = p.offset.as_u64() {
                self.positions.insert(p.stream.to_string(), offset);
            }
        }
        Ok(())
    }

    fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<SourceRecord>> {
        match self.poll_batch(max_records, timeout)? {
            Polled::Records(r) => Ok(r),
            Polled::Values(runs) => Ok(runs.into_iter().flat_map(ValueRun::into_records).collect()),
            Polled::Encoded(_) => Err(ConnectorError::fatal("the file source encodes no batches")),
        }
    }

    /// Lines and CSV rows as runs of values (no record object per line); a poll that met
    /// CSV lines that are not rows gives records.
    fn poll_batch(&mut self, max_records: usize, timeout: Duration) -> Result<Polled> {
        let deadline = Instant::now() + timeout;
        loop {
            let (mut out, mut runs, mut taken) = (Vec::new(), Vec::new(), 0);
            for path in matching_files(&self.pattern) {
                if taken >= max_records {
                    break;
                }
                self.read_file(&path, max_records, &mut taken, &mut out, &mut runs)
                    .map_err(|e| {
                        ConnectorError::retriable(format!("reading {}: {e}", path.display()))
                    })?;
            }
            if taken > 0 || Instant::now() >= deadline {
                // CSV lines that carry an error are records: then all of this poll is.
                return Ok(if out.is_empty() {
                    Polled::Values(runs)
                } else {
                    out.extend(runs.into_iter().flat_map(ValueRun::into_records));
                    Polled::Records(out)
                });
            }
            std::thread::sleep(
                self.poll_interval
                    .min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }

    fn committed(&mut self, _positions: Vec<SourcePosition>) -> Result<()> {
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn task(pattern: &Path) -> FileSourceTask {
        FileSourceTask {
            pattern: pattern.to_path_buf(),
            poll_interval: Duration::from_millis(10),
            positions: HashMap::new(),
            csv: false,
            columns: HashMap::new(),
            last_read: None,
            last_json: None,
        }
    }

    #[test]
    fn csv_lines_become_json_objects_and_bad_lines_carry_their_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.csv"),
            "id,name\n1,ada\n2,\"lovelace, a\"\n3\n",
        )
        .unwrap();
        let mut t = task(&dir.path().join("*.csv"));
        t.csv = true;
        let got = t.poll(10, Duration::ZERO).unwrap();
        assert_eq!(
            values(&got[..2]),
            vec![
                r#"{"id":"1","name":"ada"}"#.to_string(),
                r#"{"id":"2","name":"lovelace, a"}"#.into()
            ]
        );
        assert!(got[0].headers.is_empty());
        assert_eq!(
            values(&got[2..]),
            vec!["3".to_string()],
            "the raw line, for the dead-letter topic"
        );
        assert_eq!(got[2].headers[0].0, SOURCE_ERROR_HEADER);
        // Resuming mid-file still knows the columns.
        let mut t2 = task(&dir.path().join("*.csv"));
        t2.csv = true;
        t2.start(vec![got[0].position.clone()]).unwrap();
        assert_eq!(
            values(&t2.poll(1, Duration::ZERO).unwrap()),
            vec![r#"{"id":"2","name":"lovelace, a"}"#.to_string()]
        );
    }

    fn values(records: &[SourceRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| match &r.value {
                Some(Payload::Raw(b)) => String::from_utf8(b.to_vec()).unwrap(),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn globs() {
        assert!(name_matches("*.log", "app.log"));
        assert!(name_matches("app-??.log", "app-01.log"));
        assert!(!name_matches("*.log", "app.log.gz"));
        assert!(name_matches("*", "anything"));
    }

    #[test]
    fn reads_whole_lines_resumes_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(300);
        let path = dir.path().join("app.log");
        let mut f = File::create(&path).unwrap();
        write!(f, "{long}\nsecond\npartial").unwrap();
        let mut t = task(&dir.path().join("*.log"));
        let got = t.poll(100, Duration::ZERO).unwrap();
        assert_eq!(
            values(&got),
            vec![long.clone(), "second".into()],
            "the partial line waits"
        );
        writeln!(f, " line").unwrap();
        assert_eq!(
            values(&t.poll(100, Duration::ZERO).unwrap()),
            vec!["partial line".to_string()]
        );

        // Rotation: the file moves away and a new one appears; the old keeps its place.
        std::fs::rename(&path, dir.path().join("app.1.log")).unwrap();
        writeln!(f, "after rotation").unwrap();
        let mut g = File::create(&path).unwrap();
        writeln!(g, "{}", "y".repeat(300)).unwrap();
        let mut got = values(&t.poll(100, Duration::ZERO).unwrap());
        got.sort();
        assert_eq!(got, vec!["after rotation".to_string(), "y".repeat(300)]);

        // A restart resumes from the committed positions: nothing again.
        let positions: Vec<SourcePosition> = t
            .positions
            .iter()
            .map(|(s, o)| SourcePosition {
                stream: s.as_str().into(),
                offset: json!(o),
            })
            .collect();
        let mut t2 = task(&dir.path().join("*.log"));
        t2.start(positions).unwrap();
        assert!(t2.poll(100, Duration::ZERO).unwrap().is_empty());
    }

    #[test]
    fn files_wait_for_a_complete_first_line_and_keep_their_identity_as_they_grow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        std::fs::write(&path, "par").unwrap();
        let mut t = task(&dir.path().join("*.log"));
        assert!(
            t.poll(10, Duration::ZERO).unwrap().is_empty(),
            "no complete line yet"
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(f, "tial\nb\n").unwrap();
        assert_eq!(
            values(&t.poll(10, Duration::ZERO).unwrap()),
            vec!["partial".to_string(), "b".into()]
        );
        writeln!(f, "{}", "z".repeat(400)).unwrap();
        assert_eq!(
            values(&t.poll(10, Duration::ZERO).unwrap()),
            vec!["z".repeat(400)],
            "same file, same stream: no re-read"
        );
    }
}

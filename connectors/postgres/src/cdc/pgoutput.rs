//! The `pgoutput` logical decoding messages, decoded from the bytes of one `XLogData`
//! payload (protocol versions 1 and 2: the stream messages of in-progress transactions are
//! decoded too). Pure: bytes in, a message or an error that says what and where out; every
//! length is checked against what is there, so hostile bytes cannot panic or allocate much
//! (fuzzed by `connectors/postgres/fuzz`).
//!
//! Reference: PostgreSQL's "Logical Replication Message Formats".

use std::fmt;

use super::lsn::Lsn;

/// Microseconds since 2000-01-01 (Postgres' epoch).
pub type PgTimestamp = i64;

/// Microseconds between the Unix epoch and Postgres' epoch.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity (the key) when set.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// A table as the stream describes it before its first change (and again after DDL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum<'a> {
    Null,
    /// An unchanged TOASTed value Postgres did not send.
    UnchangedToast,
    Text(&'a [u8]),
    Binary(&'a [u8]),
}

/// The values of one row, in the relation's column order.
pub type Tuple<'a> = Vec<Datum<'a>>;

/// A decoded message; borrowed values point into the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Begin {
        final_lsn: Lsn,
        commit_time: PgTimestamp,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: PgTimestamp,
    },
    Origin {
        lsn: Lsn,
        name: String,
    },
    Relation(Relation),
    Type {
        id: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple<'a>,
    },
    Update {
        relation: u32,
        /// The old key (`K`, replica identity DEFAULT or INDEX with a changed key) or the
        /// whole old row (`O`, FULL).
        old: Option<(u8, Tuple<'a>)>,
        new: Tuple<'a>,
    },
    Delete {
        relation: u32,
        old: (u8, Tuple<'a>),
    },
    Truncate {
        options: u8,
        relations: Vec<u32>,
    },
    /// `pg_logical_emit_message` (with `messages 'true'`).
    Logical {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: &'a [u8],
    },
    StreamStart {
        xid: u32,
        first_segment: bool,
    },
    StreamStop,
    StreamCommit {
        xid: u32,
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: PgTimestamp,
    },
    StreamAbort {
        xid: u32,
        subtransaction: u32,
    },
}

/// Bytes that are not a pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub tag: u8,
    pub at: usize,
    pub what: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pgoutput message `{}` at byte {}: {}",
            self.tag.escape_ascii(),
            self.at,
            self.what
        )
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    tag: u8,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, what: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError {
            tag: self.tag,
            at: self.pos,
            what: what.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.buf.get(self.pos..self.pos.saturating_add(n)) {
            Some(s) if self.pos.checked_add(n).is_some() => {
                self.pos += n;
                Ok(s)
            }
            _ => self.fail(format!(
                "needs {n} more bytes, {} left",
                self.buf.len() - self.pos.min(self.buf.len())
            )),
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn lsn(&mut self) -> Result<Lsn, DecodeError> {
        Ok(Lsn(self.u64()?))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            return self.fail("a string without its terminating zero byte");
        };
        let text = match std::str::from_utf8(&rest[..end]) {
            Ok(t) => t.to_string(),
            Err(e) => return self.fail(format!("a string that is not UTF-8: {e}")),
        };
        self.pos += end + 1;
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Tuple<'a>, DecodeError> {
        let n = self.i16()?;
        if n < 0 {
            return self.fail(format!("a tuple of {n} columns"));
        }
        // Each column takes at least one byte: a count past what is left is refused before
        // anything is allocated for it.
        if n as usize > self.buf.len() - self.pos {
            return self.fail(format!("a tuple of {n} columns in fewer bytes"));
        }
        let mut values = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let kind = self.u8()?;
            values.push(match kind {
                b'n' => Datum::Null,
                b'u' => Datum::UnchangedToast,
                b't' | b'b' => {
                    let len = self.i32()?;
                    if len < 0 {
                        return self.fail(format!("a value of {len} bytes"));
                    }
                    let bytes = self.take(len as usize)?;
                    if kind == b't' {
                        Datum::Text(bytes)
                    } else {
                        Datum::Binary(bytes)
                    }
                }
                other => {
                    return self.fail(format!("unknown column kind `{}`", other.escape_ascii()))
                }
            });
        }
        Ok(values)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            self.fail(format!(
                "{} bytes after the message",
                self.buf.len() - self.pos
            ))
        }
    }
}

/// Decodes one message. `in_stream`: between Stream Start and Stream Stop, where data
/// messages carry the transaction id first (protocol version 2).
pub fn decode(buf: &[u8], in_stream: bool) -> Result<Message<'_>, DecodeError> {
    let Some(&tag) = buf.first() else {
        return Err(DecodeError {
            tag: 0,
            at: 0,
            what: "an empty message".into(),
        });
    };
    let mut r = Reader { buf, pos: 1, tag };
    let streamed_xid = |r: &mut Reader<'_>| -> Result<(), DecodeError> {
        if in_stream {
            r.u32()?;
        }
        Ok(())
    };
    let message = match tag {
        b'B' => Message::Begin {
            final_lsn: r.lsn()?,
            commit_time: r.u64()? as i64,
            xid: r.u32()?,
        },
        b'C' => Message::Commit {
            flags: r.u8()?,
            commit_lsn: r.lsn()?,
            end_lsn: r.lsn()?,
            commit_time: r.u64()? as i64,
        },
        b'O' => Message::Origin {
            lsn: r.lsn()?,
            name: r.string()?,
        },
        b'R' => {
            streamed_xid(&mut r)?;
            let id = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let n = r.i16()?;
            if n < 0 || n as usize > buf.len() - r.pos {
                return r.fail(format!("a relation of {n} columns"));
            }
            let mut columns = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let flags = r.u8()?;
                columns.push(Column {
                    key: flags & 1 == 1,
                    name: r.string()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => {
            streamed_xid(&mut r)?;
            Message::Type {
                id: r.u32()?,
                namespace: r.string()?,
                name: r.string()?,
            }
        }
        b'I' => {
            streamed_xid(&mut r)?;
            let relation = r.u32()?;
            match r.u8()? {
                b'N' => Message::Insert {
                    relation,
                    new: r.tuple()?,
                },
                other => {
                    return r.fail(format!("`{}` where `N` was expected", other.escape_ascii()))
                }
            }
        }
        b'U' => {
            streamed_xid(&mut r)?;
            let relation = r.u32()?;
            let mut old = None;
            let mut kind = r.u8()?;
            if kind == b'K' || kind == b'O' {
                old = Some((kind, r.tuple()?));
                kind = r.u8()?;
            }
            if kind != b'N' {
                return r.fail(format!("`{}` where `N` was expected", kind.escape_ascii()));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            streamed_xid(&mut r)?;
            let relation = r.u32()?;
            let kind = r.u8()?;
            if kind != b'K' && kind != b'O' {
                return r.fail(format!(
                    "`{}` where `K` or `O` was expected",
                    kind.escape_ascii()
                ));
            }
            Message::Delete {
                relation,
                old: (kind, r.tuple()?),
            }
        }
        b'T' => {
            streamed_xid(&mut r)?;
            let n = r.u32()?;
            let options = r.u8()?;
            if n as usize > (buf.len() - r.pos) / 4 {
                return r.fail(format!("{n} truncated relations in fewer bytes"));
            }
            let mut relations = Vec::with_capacity(n as usize);
            for _ in 0..n {
                relations.push(r.u32()?);
            }
            Message::Truncate { options, relations }
        }
        b'M' => {
            streamed_xid(&mut r)?;
            let flags = r.u8()?;
            let lsn = r.lsn()?;
            let prefix = r.string()?;
            let len = r.u32()?;
            Message::Logical {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.take(len as usize)?,
            }
        }
        b'S' => Message::StreamStart {
            xid: r.u32()?,
            first_segment: r.u8()? == 1,
        },
        b'E' => Message::StreamStop,
        b'c' => Message::StreamCommit {
            xid: r.u32()?,
            flags: r.u8()?,
            commit_lsn: r.lsn()?,
            end_lsn: r.lsn()?,
            commit_time: r.u64()? as i64,
        },
        b'A' => {
            let m = Message::StreamAbort {
                xid: r.u32()?,
                subtransaction: r.u32()?,
            };
            // Protocol version 4 adds the abort's LSN and time; neither is needed here.
            if r.buf.len() - r.pos == 16 {
                r.take(16)?;
            }
            m
        }
        other => {
            return Err(DecodeError {
                tag: other,
                at: 0,
                what: "unknown message type".into(),
            })
        }
    };
    r.end()?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(out: &mut Vec<u8>, values: &[Option<&str>]) {
        out.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                None => out.push(b'n'),
                Some(t) => {
                    out.push(b't');
                    out.extend_from_slice(&(t.len() as i32).to_be_bytes());
                    out.extend_from_slice(t.as_bytes());
                }
            }
        }
    }

    #[test]
    fn begin_relation_insert_update_delete_commit() {
        let mut b = vec![b'B'];
        b.extend_from_slice(&0x0000_0001_0000_0100u64.to_be_bytes());
        b.extend_from_slice(&5i64.to_be_bytes());
        b.extend_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            decode(&b, false).unwrap(),
            Message::Begin {
                final_lsn: Lsn(0x1_0000_0100),
                commit_time: 5,
                xid: 7
            }
        );

        let mut r = vec![b'R'];
        r.extend_from_slice(&16384u32.to_be_bytes());
        r.extend_from_slice(b"public\0orders\0d");
        r.extend_from_slice(&2i16.to_be_bytes());
        r.push(1);
        r.extend_from_slice(b"id\0");
        r.extend_from_slice(&23u32.to_be_bytes());
        r.extend_from_slice(&(-1i32).to_be_bytes());
        r.push(0);
        r.extend_from_slice(b"note\0");
        r.extend_from_slice(&25u32.to_be_bytes());
        r.extend_from_slice(&(-1i32).to_be_bytes());
        let Message::Relation(rel) = decode(&r, false).unwrap() else {
            panic!("a relation")
        };
        assert_eq!(
            (rel.namespace.as_str(), rel.name.as_str()),
            ("public", "orders")
        );
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!(rel.columns[1].type_oid, 25);

        let mut i = vec![b'I'];
        i.extend_from_slice(&16384u32.to_be_bytes());
        i.push(b'N');
        tuple(&mut i, &[Some("1"), None]);
        assert_eq!(
            decode(&i, false).unwrap(),
            Message::Insert {
                relation: 16384,
                new: vec![Datum::Text(b"1"), Datum::Null]
            }
        );

        let mut u = vec![b'U'];
        u.extend_from_slice(&16384u32.to_be_bytes());
        u.push(b'K');
        tuple(&mut u, &[Some("1"), None]);
        u.push(b'N');
        u.extend_from_slice(&2i16.to_be_bytes());
        u.extend_from_slice(b"t\0\0\0\x012u");
        let Message::Update { old, new, .. } = decode(&u, false).unwrap() else {
            panic!("an update")
        };
        assert_eq!(old.unwrap().0, b'K');
        assert_eq!(new, vec![Datum::Text(b"2"), Datum::UnchangedToast]);

        let mut d = vec![b'D'];
        d.extend_from_slice(&16384u32.to_be_bytes());
        d.push(b'O');
        tuple(&mut d, &[Some("2"), Some("x")]);
        assert!(matches!(
            decode(&d, false).unwrap(),
            Message::Delete { old: (b'O', _), .. }
        ));

        let mut c = vec![b'C', 0];
        c.extend_from_slice(&10u64.to_be_bytes());
        c.extend_from_slice(&20u64.to_be_bytes());
        c.extend_from_slice(&30i64.to_be_bytes());
        assert_eq!(
            decode(&c, false).unwrap(),
            Message::Commit {
                flags: 0,
                commit_lsn: Lsn(10),
                end_lsn: Lsn(20),
                commit_time: 30
            }
        );
    }

    #[test]
    fn streamed_messages_carry_their_transaction() {
        let mut i = vec![b'I'];
        i.extend_from_slice(&99u32.to_be_bytes()); // xid
        i.extend_from_slice(&16384u32.to_be_bytes());
        i.push(b'N');
        tuple(&mut i, &[Some("1")]);
        assert!(matches!(
            decode(&i, true).unwrap(),
            Message::Insert {
                relation: 16384,
                ..
            }
        ));
        assert!(
            decode(&i, false).is_err(),
            "without the stream flag the bytes do not fit"
        );
        let mut a = vec![b'A'];
        a.extend_from_slice(&99u32.to_be_bytes());
        a.extend_from_slice(&100u32.to_be_bytes());
        assert_eq!(
            decode(&a, false).unwrap(),
            Message::StreamAbort {
                xid: 99,
                subtransaction: 100
            }
        );
    }

    #[test]
    fn bad_bytes_say_what_and_where() {
        let e = decode(b"B\0\0", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pgoutput message `B` at byte 1: needs 8 more bytes, 2 left"
        );
        let e = decode(b"Z", false).unwrap_err();
        assert!(e.to_string().contains("unknown message type"));
        // A tuple claiming 30,000 columns in 3 bytes is refused before any allocation.
        let mut i = vec![b'I'];
        i.extend_from_slice(&1u32.to_be_bytes());
        i.push(b'N');
        i.extend_from_slice(&30000i16.to_be_bytes());
        i.push(b'n');
        assert!(decode(&i, false)
            .unwrap_err()
            .what
            .contains("30000 columns"));
        let mut t = vec![b'I'];
        t.extend_from_slice(&1u32.to_be_bytes());
        t.push(b'N');
        t.extend_from_slice(&1i16.to_be_bytes());
        t.push(b't');
        t.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(decode(&t, false).unwrap_err().what.contains("-5 bytes"));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), stream: bool) {
            let _ = decode(&bytes, stream);
        }
    }
}

//! Large transactions streamed while in progress (pgoutput protocol version 2, `streaming
//! 'on'`, PostgreSQL 14 and later): the server sends a transaction's changes in blocks
//! (Stream Start … Stream Stop) before it commits, interleaved with other transactions,
//! then Stream Commit or Stream Abort. Nothing of it may be handed on before its commit (an
//! aborted transaction's rows must never reach a topic), so each block is written, as it
//! comes, to a spill file of its transaction, never held in memory; a subtransaction rolled
//! back (`ROLLBACK TO SAVEPOINT`) is remembered and skipped. At Stream Commit the file is
//! read back, a bounded step at a time, as if the transaction had come whole at its commit.
//!
//! A reconnect starts with none of these: the server decodes again from the slot's restart
//! point and streams every transaction still open from its first block.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use super::CdcError;

/// One streamed transaction being received.
struct Spill {
    file: BufWriter<File>,
    /// Subtransactions rolled back: their changes are skipped.
    aborted: HashSet<u32>,
    changes: u64,
}

/// The transactions streamed so far and not yet ended.
#[derive(Default)]
pub struct Streamed {
    open: HashMap<u32, Spill>,
}

fn spill_err(e: std::io::Error) -> CdcError {
    CdcError::Setup(format!(
        "spilling a large streamed transaction to a temporary file: {e} (is the temporary folder full?)"
    ))
}

impl Streamed {
    /// Keeps one change of streamed transaction `xid` (its raw pgoutput message, whose first
    /// bytes after the tag name the (sub)transaction).
    pub fn keep(&mut self, xid: u32, message: &[u8]) -> Result<(), CdcError> {
        let spill = match self.open.entry(xid) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(Spill {
                file: BufWriter::with_capacity(
                    256 * 1024,
                    tempfile::tempfile().map_err(spill_err)?,
                ),
                aborted: HashSet::new(),
                changes: 0,
            }),
        };
        spill
            .file
            .write_all(&(message.len() as u32).to_be_bytes())
            .and_then(|()| spill.file.write_all(message))
            .map_err(spill_err)?;
        spill.changes += 1;
        Ok(())
    }

    /// Stream Abort: the whole transaction (`sub == xid`) or one subtransaction of it.
    pub fn abort(&mut self, xid: u32, sub: u32) {
        if sub == xid {
            self.open.remove(&xid);
        } else if let Some(s) = self.open.get_mut(&xid) {
            s.aborted.insert(sub);
        }
    }

    /// Stream Commit: the transaction's changes to replay, in order.
    pub fn commit(&mut self, xid: u32) -> Result<Replay, CdcError> {
        let Some(spill) = self.open.remove(&xid) else {
            return Ok(Replay::empty());
        };
        let mut file = spill
            .file
            .into_inner()
            .map_err(|e| spill_err(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(spill_err)?;
        Ok(Replay {
            reader: Some(BufReader::with_capacity(256 * 1024, file)),
            aborted: spill.aborted,
            left: spill.changes,
        })
    }

    /// Transactions being received.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// A committed streamed transaction, read back.
pub struct Replay {
    reader: Option<BufReader<File>>,
    aborted: HashSet<u32>,
    left: u64,
}

impl Replay {
    fn empty() -> Replay {
        Replay {
            reader: None,
            aborted: HashSet::new(),
            left: 0,
        }
    }

    /// The next change not rolled back (its raw message), or `None` at the end.
    pub fn next_change(&mut self) -> Result<Option<Vec<u8>>, CdcError> {
        while self.left > 0 {
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            self.left -= 1;
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).map_err(spill_err)?;
            let mut message = vec![0u8; u32::from_be_bytes(len) as usize];
            reader.read_exact(&mut message).map_err(spill_err)?;
            if !self.aborted.contains(&streamed_xid(&message)) {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }
}

/// The (sub)transaction a streamed data message names (the four bytes after its tag).
pub fn streamed_xid(message: &[u8]) -> u32 {
    match message.get(1..5) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(xid: u32, n: u8) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend_from_slice(&xid.to_be_bytes());
        m.push(n);
        m
    }

    #[test]
    fn a_committed_transaction_comes_back_without_its_rolled_back_subtransactions() {
        let mut s = Streamed::default();
        s.keep(700, &change(700, 1)).unwrap();
        s.keep(700, &change(701, 2)).unwrap(); // a savepoint's
        s.keep(800, &change(800, 9)).unwrap(); // another transaction, interleaved
        s.keep(700, &change(702, 3)).unwrap();
        s.abort(700, 701);
        s.abort(800, 800);
        assert_eq!(s.len(), 1);
        let mut r = s.commit(700).unwrap();
        let mut got = Vec::new();
        while let Some(m) = r.next_change().unwrap() {
            got.push(m[5]);
        }
        assert_eq!(got, vec![1, 3]);
        assert!(s.is_empty());
        assert!(
            s.commit(800).unwrap().next_change().unwrap().is_none(),
            "aborted whole"
        );
    }
}

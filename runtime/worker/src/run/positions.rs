//! Exactly once into the log for sources whose positions are ordered
//! ([`SourceTask::position_order`]): each record carries its place in that order and its
//! connector's name ([`POSITION_HEADER`]). A source's positions are committed after its
//! records are appended, so a crash in between leaves records in the log that the source,
//! resuming from its last committed position, polls again. At start the last such record of
//! every partition is read back (the partition's *tail*), and a re-polled record at or
//! before its partition's tail is dropped instead of appended.
//!
//! Per partition, because records reach a partition in the source's order: a partition's
//! tail says exactly which of the re-polled records it already has, whichever partitions an
//! interrupted round of appends reached.

use std::collections::HashMap;

use sluice_connector_sdk::connector::POSITION_HEADER;
use sluice_log::Log;

/// How far back a partition is searched for this connector's last record (other writers
/// may have appended after it).
const MAX_BATCHES_BACK: usize = 64;

/// The header's value, readable in any tool that shows headers: the order as 32 hex digits,
/// a space, the connector's name.
pub(super) fn header_value(order: u128, connector: &str) -> Vec<u8> {
    format!("{order:032x} {connector}").into_bytes()
}

fn parse(value: &[u8], connector: &str) -> Option<u128> {
    let (order, name) = value.split_at_checked(32)?;
    if name.strip_prefix(b" ")? != connector.as_bytes() {
        return None;
    }
    u128::from_str_radix(std::str::from_utf8(order).ok()?, 16).ok()
}

/// Each partition's last record from `connector`: its order.
#[derive(Debug, Default)]
pub(super) struct Tails {
    by_topic: HashMap<String, Vec<Option<u128>>>,
}

impl Tails {
    /// Reads the tail of every partition of every topic (internal ones aside).
    pub(super) fn recover(log: &Log, connector: &str) -> Tails {
        let mut by_topic = HashMap::new();
        for topic in log.topics() {
            if topic.name.starts_with("__") {
                continue;
            }
            let tails: Vec<Option<u128>> = topic
                .partitions
                .iter()
                .map(|p| partition_tail(p, connector))
                .collect();
            if tails.iter().any(Option::is_some) {
                by_topic.insert(topic.name.clone(), tails);
            }
        }
        Tails { by_topic }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// Whether a record of this order is already in `topic`'s partition `p`. A record past
    /// the tail means every later one is too: that partition's tail is forgotten.
    pub(super) fn holds(&mut self, topic: &str, p: usize, order: u128) -> bool {
        let Some(tails) = self.by_topic.get_mut(topic) else {
            return false;
        };
        let Some(slot) = tails.get_mut(p) else {
            return false;
        };
        match *slot {
            Some(tail) if order <= tail => true,
            Some(_) => {
                *slot = None;
                if tails.iter().all(Option::is_none) {
                    self.by_topic.remove(topic);
                }
                false
            }
            None => false,
        }
    }
}

fn partition_tail(p: &sluice_log::Partition, connector: &str) -> Option<u128> {
    let start = p.log_start_offset();
    let mut offset = p.end_offset() - 1;
    for _ in 0..MAX_BATCHES_BACK {
        if offset < start {
            return None;
        }
        let read = p.read(offset, 1).ok()?;
        let records = crate::convert::decode_batches(&read.records.into()).ok()?;
        let first = records.first()?.offset;
        let found = records
            .iter()
            .filter(|r| r.offset <= offset)
            .rev()
            .find_map(|r| {
                r.headers
                    .iter()
                    .find(|(k, _)| k.as_slice() == POSITION_HEADER.as_bytes())
                    .and_then(|(_, v)| v.as_deref())
                    .and_then(|v| parse(v, connector))
            });
        if found.is_some() {
            return found;
        }
        offset = first - 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_its_connector() {
        let v = header_value(7 << 64 | 3, "shop");
        assert_eq!(v, b"00000000000000070000000000000003 shop");
        assert_eq!(parse(&v, "shop"), Some(7 << 64 | 3));
        assert_eq!(parse(&v, "other"), None);
        assert_eq!(parse(&v[..10], "shop"), None);
    }

    #[test]
    fn a_partition_holds_records_up_to_its_tail_then_nothing() {
        let mut t = Tails::default();
        t.by_topic.insert("a".into(), vec![Some(10), None]);
        assert!(t.holds("a", 0, 9));
        assert!(t.holds("a", 0, 10));
        assert!(!t.holds("a", 1, 5), "partition 1 had none of it");
        assert!(!t.holds("a", 0, 11));
        assert!(
            !t.holds("a", 0, 3),
            "past the tail once, the partition is caught up"
        );
        assert!(t.is_empty());
        assert!(!t.holds("b", 0, 1));
    }
}

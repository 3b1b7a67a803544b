//! One answer of the poller read into records, each with the position after it, and where
//! the next request goes. Pure: no I/O, so every pagination rule is unit tested.

use serde_json::{json, Value as Json};

use super::link::next_link;
use super::{CursorFrom, PollSettings};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// This cursor in the url's `${cursor}` (or the url as written, when it has none).
    Cursor(String),
    /// A URL a `Link: rel="next"` header gave.
    Url(String),
}

/// Where the poller stands: the request to send, and how many records at the start of its
/// answer were already taken (the last page grows as the feed does; what it gave before is
/// not given again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub at: At,
    pub skip: u64,
}

impl Position {
    pub fn start(settings: &PollSettings) -> Position {
        Position {
            at: At::Cursor(settings.initial_cursor.clone()),
            skip: 0,
        }
    }

    /// As stored in the offsets topic: `{"cursor": …, "skip": n}` or `{"url": …, "skip": n}`.
    pub fn to_json(&self) -> Json {
        match &self.at {
            At::Cursor(c) => json!({"cursor": c, "skip": self.skip}),
            At::Url(u) => json!({"url": u, "skip": self.skip}),
        }
    }

    /// A stored position; `None` for one this version does not understand.
    pub fn from_json(stored: &Json) -> Option<Position> {
        let skip = stored.get("skip").and_then(Json::as_u64).unwrap_or(0);
        let at = if let Some(c) = stored.get("cursor").and_then(Json::as_str) {
            At::Cursor(c.to_string())
        } else {
            At::Url(stored.get("url").and_then(Json::as_str)?.to_string())
        };
        Some(Position { at, skip })
    }

    /// The URL to request.
    pub fn url(&self, settings: &PollSettings) -> String {
        match &self.at {
            At::Cursor(c) => settings.url.render_cursor(c),
            At::Url(u) => u.clone(),
        }
    }
}

/// A record of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Where the poller stands once this record is in the log.
    pub after: Position,
}

/// What a page gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<PageRecord>,
    /// The next request.
    pub next: Position,
    /// No next page yet: wait `interval` before asking `next`.
    pub last: bool,
}

/// An answer the poller cannot read; says what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("GET {url}: the answer is not JSON: {message}")]
    NotJson { url: String, message: String },
    #[error("GET {url}: records_pointer {pointer:?} points at {found}, not an array of records")]
    NotArray {
        url: String,
        pointer: String,
        found: &'static str,
    },
    #[error("GET {url}: record {index} of the page has no cursor at record_cursor_pointer {pointer:?} (a string or a number)")]
    NoRecordCursor {
        url: String,
        index: u64,
        pointer: String,
    },
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// A cursor as text: strings as they are, numbers as written; nothing else is one.
fn cursor_text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn key_bytes(v: Option<&Json>) -> Option<Vec<u8>> {
    match v? {
        Json::Null => None,
        Json::String(s) => Some(s.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// Reads the answer `body` to the request for `at` (sent to `url`), with its `Link`
/// header if any.
pub fn read_page(
    settings: &PollSettings,
    at: &Position,
    url: &str,
    body: &[u8],
    link: Option<&str>,
) -> Result<Page, PageError> {
    let doc: Json = serde_json::from_slice(body).map_err(|e| PageError::NotJson {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    let items: &[Json] = match doc.pointer(&settings.records_pointer) {
        // No array at all (many APIs leave it out when it is empty): an empty page.
        None | Some(Json::Null) => &[],
        Some(Json::Array(items)) => items,
        Some(other) => {
            return Err(PageError::NotArray {
                url: url.to_string(),
                pointer: settings.records_pointer.clone(),
                found: kind(other),
            })
        }
    };
    let fresh = items.iter().skip(at.skip as usize);
    let record = |item: &Json, after: Position| PageRecord {
        key: settings
            .key_pointer
            .as_deref()
            .and_then(|p| key_bytes(item.pointer(p))),
        value: serde_json::to_vec(item).unwrap_or_default(),
        after,
    };
    if let CursorFrom::Record(pointer) = &settings.cursor {
        // Each record is its own resume point: the next request asks for what follows it.
        let mut records = Vec::new();
        for (i, item) in fresh.enumerate() {
            let cursor =
                cursor_text(item.pointer(pointer)).ok_or_else(|| PageError::NoRecordCursor {
                    url: url.to_string(),
                    index: at.skip + i as u64,
                    pointer: pointer.clone(),
                })?;
            records.push(record(
                item,
                Position {
                    at: At::Cursor(cursor),
                    skip: 0,
                },
            ));
        }
        let next = records.last().map_or(at.clone(), |r| r.after.clone());
        let last = records.is_empty();
        return Ok(Page {
            records,
            next,
            last,
        });
    }
    let from_answer = match &settings.cursor {
        CursorFrom::Answer(pointer) => cursor_text(doc.pointer(pointer)).map(At::Cursor),
        _ => None,
    };
    let from_link = || {
        settings
            .follow_link
            .then(|| link.and_then(|h| next_link(h, url)).map(At::Url))
            .flatten()
    };
    // A next page that is this page again would be asked for for ever: it is the last.
    let next_at = from_answer.or_else(from_link).filter(|n| *n != at.at);
    let fresh: Vec<&Json> = fresh.collect();
    let count = fresh.len() as u64;
    let mut records: Vec<PageRecord> = fresh
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            record(
                item,
                Position {
                    at: at.at.clone(),
                    skip: at.skip + i as u64 + 1,
                },
            )
        })
        .collect();
    Ok(match next_at {
        Some(next_at) => {
            let next = Position {
                at: next_at,
                skip: 0,
            };
            // Once the page's last record is in the log, the next page is where we stand.
            if let Some(r) = records.last_mut() {
                r.after = next.clone();
            }
            Page {
                records,
                next,
                last: false,
            }
        }
        None => Page {
            records,
            next: Position {
                at: at.at.clone(),
                skip: at.skip + count,
            },
            last: true,
        },
    })
}

//! The sink's `url`, with placeholders filled per record: `${topic}`, `${partition}` and
//! `${key}` (the record's key bytes); and the poller's, with `${cursor}`. Values are percent-encoded as a path segment or query
//! value (everything but RFC 3986's unreserved characters), so a key `a/b c` cannot reach
//! another path than the user wrote.
//!
//! Parsed once at validation, with no I/O: an unknown placeholder, an unclosed `${` or a
//! scheme other than `http`/`https` is an error naming the column.

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986 unreserved characters stay; everything else is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Topic,
    Partition,
    Key,
    Cursor,
}

/// The sink's placeholders.
const SINK_PLACEHOLDERS: &[(&str, Part)] = &[
    ("topic", Part::Topic),
    ("partition", Part::Partition),
    ("key", Part::Key),
];
/// The poller's.
const POLL_PLACEHOLDERS: &[(&str, Part)] = &[("cursor", Part::Cursor)];

/// A parsed `url` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    text: String,
    parts: Vec<Part>,
}

/// A `url` setting that cannot be used; says what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlTemplateError {
    #[error("url {url:?}: unknown placeholder `${{{name}}}` at column {column} (known: {known})")]
    UnknownPlaceholder {
        url: String,
        name: String,
        column: usize,
        known: String,
    },
    #[error("url {url:?}: `${{` at column {column} is never closed with `}}`")]
    Unclosed { url: String, column: usize },
    #[error("url {url:?}: must start with http:// or https:// followed by a host, before any placeholder")]
    Scheme { url: String },
}

/// Why a record's URL could not be made: the record is refused, not retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the url has ${{key}} and the record has no key")]
pub struct MissingKey;

impl UrlTemplate {
    /// Reads the sink's `url` setting.
    pub fn parse(url: &str) -> Result<UrlTemplate, UrlTemplateError> {
        UrlTemplate::parse_with(url, SINK_PLACEHOLDERS)
    }

    /// Reads the poller's `url` setting (`${cursor}` only).
    pub fn parse_cursor(url: &str) -> Result<UrlTemplate, UrlTemplateError> {
        UrlTemplate::parse_with(url, POLL_PLACEHOLDERS)
    }

    fn parse_with(url: &str, known: &[(&str, Part)]) -> Result<UrlTemplate, UrlTemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = url;
        let mut offset = 0;
        while let Some(start) = rest.find("${") {
            literal.push_str(&rest[..start]);
            let column = offset + start + 1;
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(UrlTemplateError::Unclosed {
                    url: url.to_string(),
                    column,
                });
            };
            let name = &after[..end];
            let Some((_, part)) = known.iter().find(|(n, _)| *n == name) else {
                return Err(UrlTemplateError::UnknownPlaceholder {
                    url: url.to_string(),
                    name: name.to_string(),
                    column,
                    known: known
                        .iter()
                        .map(|(n, _)| format!("${{{n}}}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            let part = part.clone();
            if parts.is_empty() && !has_scheme_and_host(&literal) {
                return Err(UrlTemplateError::Scheme {
                    url: url.to_string(),
                });
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            let consumed = start + 2 + end + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        literal.push_str(rest);
        if parts.is_empty() && !has_scheme_and_host(&literal) {
            return Err(UrlTemplateError::Scheme {
                url: url.to_string(),
            });
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(UrlTemplate {
            text: url.to_string(),
            parts,
        })
    }

    /// The setting as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the URL is the same for every record (no placeholder at all).
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Whether the URL depends on the record's key (so the sink needs keys, not just values).
    pub fn uses_key(&self) -> bool {
        self.parts.contains(&Part::Key)
    }

    /// Whether the URL has `${cursor}`.
    pub fn uses_cursor(&self) -> bool {
        self.parts.contains(&Part::Cursor)
    }

    /// The poller's URL for `cursor`, percent-encoded.
    pub fn render_cursor(&self, cursor: &str) -> String {
        let mut url = String::with_capacity(self.text.len() + cursor.len());
        for part in &self.parts {
            match part {
                Part::Literal(text) => url.push_str(text),
                Part::Cursor => url.extend(utf8_percent_encode(cursor, SEGMENT)),
                Part::Topic | Part::Partition | Part::Key => {}
            }
        }
        url
    }

    /// The URL for one record. A key that is not UTF-8 is percent-encoded byte by byte.
    pub fn render(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
    ) -> Result<String, MissingKey> {
        let mut url = String::with_capacity(self.text.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(text) => url.push_str(text),
                Part::Topic => url.extend(utf8_percent_encode(topic, SEGMENT)),
                Part::Partition => {
                    let _ = write!(url, "{partition}");
                }
                Part::Key => {
                    let key = key.ok_or(MissingKey)?;
                    url.extend(percent_encoding::percent_encode(key, SEGMENT));
                }
                Part::Cursor => {}
            }
        }
        Ok(url)
    }
}

fn has_scheme_and_host(prefix: &str) -> bool {
    let lower = prefix.to_ascii_lowercase();
    let host = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    host.is_some_and(|h| !h.is_empty() && !h.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_encodes_placeholders() {
        let template =
            UrlTemplate::parse("http://127.0.0.1:8080/in/${topic}/${partition}?id=${key}").unwrap();
        assert!(!template.is_fixed() && template.uses_key());
        assert_eq!(
            template.render("orders.eu", 3, Some(b"a/b c")).unwrap(),
            "http://127.0.0.1:8080/in/orders.eu/3?id=a%2Fb%20c"
        );
        assert_eq!(
            template.render("t", 0, Some(&[0xff, b'x'])).unwrap(),
            "http://127.0.0.1:8080/in/t/0?id=%FFx"
        );
        assert_eq!(template.render("t", 0, None), Err(MissingKey));
    }

    #[test]
    fn a_fixed_url_is_one_literal() {
        let template = UrlTemplate::parse("https://example.test/ingest").unwrap();
        assert!(template.is_fixed() && !template.uses_key());
        assert_eq!(
            template.render("t", 1, None).unwrap(),
            "https://example.test/ingest"
        );
        let by_topic = UrlTemplate::parse("http://h/${topic}").unwrap();
        assert!(!by_topic.is_fixed() && !by_topic.uses_key());
    }

    #[test]
    fn bad_templates_say_what_and_where() {
        let error = UrlTemplate::parse("http://h/${topik}")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown placeholder `${topik}` at column 10"),
            "{error}"
        );
        let error = UrlTemplate::parse("http://h/x/${topic")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`${` at column 12 is never closed"),
            "{error}"
        );
        for url in [
            "ftp://h/x",
            "h/x",
            "http://",
            "${topic}/x",
            "http:///x",
            "http://${topic}",
        ] {
            let error = UrlTemplate::parse(url).unwrap_err();
            assert!(
                matches!(error, UrlTemplateError::Scheme { .. }),
                "{url}: {error}"
            );
        }
        assert!(UrlTemplate::parse("HTTPS://Host/${topic}").is_ok());
    }

    #[test]
    fn the_pollers_cursor_is_encoded_and_the_sinks_placeholders_are_not_its() {
        let t = UrlTemplate::parse_cursor("http://h/items?after=${cursor}&n=2").unwrap();
        assert!(t.uses_cursor());
        assert_eq!(
            t.render_cursor("a b/c"),
            "http://h/items?after=a%20b%2Fc&n=2"
        );
        let error = UrlTemplate::parse_cursor("http://h/${topic}")
            .unwrap_err()
            .to_string();
        assert!(error.contains("(known: ${cursor})"), "{error}");
        let error = UrlTemplate::parse("http://h/${cursor}")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("known: ${topic}, ${partition}, ${key}"),
            "{error}"
        );
    }
}

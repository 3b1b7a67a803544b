use super::page::{read_page, At, Position};
use super::*;
use serde_json::{json, Value as Json};

fn settings(v: Json) -> Result<PollSettings, Vec<String>> {
    let values = spec()
        .validate(v.as_object().unwrap())
        .map_err(|issues| issues.iter().map(|i| i.to_string()).collect::<Vec<_>>())?;
    PollSettings::from_config(&values).map_err(|i| i.iter().map(|i| i.to_string()).collect())
}

fn values(page: &super::page::Page) -> Vec<Json> {
    page.records
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect()
}

#[test]
fn settings_are_typed_and_their_mistakes_named() {
    let s = settings(json!({
        "url": "http://127.0.0.1:9/items?after=${cursor}",
        "initial_cursor": "0",
        "interval": "5s",
        "records_pointer": "/data",
        "cursor_pointer": "/next",
        "auth": {"bearer": "s3cret"},
        "headers": {"Accept": "application/json"},
    }))
    .unwrap();
    assert_eq!(s.interval, Duration::from_secs(5));
    assert_eq!(s.cursor, CursorFrom::Answer("/next".into()));
    assert_eq!(s.max_body, 16 << 20);
    assert!(!format!("{s:?}").contains("s3cret"));

    let errors = settings(json!({"url": "http://h/x?c=${cursor}"})).unwrap_err();
    assert!(
        errors[0].contains("no `cursor_pointer` or `record_cursor_pointer`"),
        "{errors:?}"
    );
    let errors = settings(json!({
        "url": "http://h/x?c=${cursor}",
        "cursor_pointer": "/a",
        "record_cursor_pointer": "/b",
    }))
    .unwrap_err();
    assert!(errors[0].contains("cannot both be set"), "{errors:?}");
    let errors = settings(json!({"url": "http://h/x", "cursor_pointer": "next"})).unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("not a JSON pointer")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("no ${cursor} to put the cursor in")),
        "{errors:?}"
    );
    let errors = settings(json!({"url": "http://h/${topic}"})).unwrap_err();
    assert!(errors[0].contains("known: ${cursor}"), "{errors:?}");
    let errors =
        settings(json!({"url": "http://h/", "headers": {"Authorization": "x"}})).unwrap_err();
    assert!(errors[0].contains("headers.Authorization"), "{errors:?}");
}

#[test]
fn a_cursor_from_the_answer_moves_page_by_page_and_the_last_page_is_asked_again_skipping_what_it_gave(
) {
    let s = settings(json!({
        "url": "http://h/items?after=${cursor}",
        "records_pointer": "/data",
        "cursor_pointer": "/next",
        "key_pointer": "/id",
    }))
    .unwrap();
    let start = Position::start(&s);
    assert_eq!(start.url(&s), "http://h/items?after=");
    let body = br#"{"data":[{"id":"a"},{"id":"b"}],"next":"c 2"}"#;
    let page = read_page(&s, &start, "http://h/items?after=", body, None).unwrap();
    assert!(!page.last);
    assert_eq!(
        page.next,
        Position {
            at: At::Cursor("c 2".into()),
            skip: 0
        }
    );
    assert_eq!(page.next.url(&s), "http://h/items?after=c%202");
    assert_eq!(page.records[0].key.as_deref(), Some(&b"a"[..]));
    assert_eq!(
        page.records[0].after,
        Position {
            at: At::Cursor("".into()),
            skip: 1
        }
    );
    assert_eq!(
        page.records[1].after, page.next,
        "the last record carries the next page"
    );

    // The last page (no next): asked again later, skipping the two it gave.
    let at = page.next.clone();
    let body = br#"{"data":[{"id":"c"},{"id":"d"}],"next":null}"#;
    let page = read_page(&s, &at, "u", body, None).unwrap();
    assert!(page.last);
    assert_eq!(
        page.next,
        Position {
            at: at.at.clone(),
            skip: 2
        }
    );
    let body = br#"{"data":[{"id":"c"},{"id":"d"},{"id":"e"}]}"#;
    let again = read_page(&s, &page.next, "u", body, None).unwrap();
    assert_eq!(values(&again), vec![json!({"id":"e"})]);
    assert_eq!(again.next.skip, 3);
    // Stored and read back as it was.
    assert_eq!(
        Position::from_json(&again.next.to_json()),
        Some(again.next.clone())
    );
}

#[test]
fn a_record_cursor_resumes_after_the_last_record() {
    let s = settings(json!({
        "url": "http://h/events?since=${cursor}",
        "initial_cursor": "0",
        "record_cursor_pointer": "/seq",
    }))
    .unwrap();
    let start = Position::start(&s);
    let page = read_page(&s, &start, "u", br#"[{"seq":1},{"seq":2}]"#, None).unwrap();
    assert!(!page.last);
    assert_eq!(page.records[0].after.at, At::Cursor("1".into()));
    assert_eq!(page.next.url(&s), "http://h/events?since=2");
    let empty = read_page(&s, &page.next, "u", b"[]", None).unwrap();
    assert!(empty.last && empty.records.is_empty());
    assert_eq!(empty.next, page.next);
    let error = read_page(&s, &start, "http://h/e", br#"[{"seq":1},{"x":2}]"#, None).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("record 1 of the page has no cursor"),
        "{error}"
    );
}

#[test]
fn link_headers_lead_to_the_next_page_until_there_is_none() {
    let s = settings(json!({"url": "http://h/items"})).unwrap();
    let start = Position::start(&s);
    let link = r#"</items?page=2>; rel="next""#;
    let page = read_page(&s, &start, "http://h/items", b"[1,2]", Some(link)).unwrap();
    assert_eq!(page.next.at, At::Url("http://h/items?page=2".into()));
    assert_eq!(page.next.url(&s), "http://h/items?page=2");
    let last = read_page(&s, &page.next, "http://h/items?page=2", b"[3]", None).unwrap();
    assert!(last.last);
    assert_eq!(last.next.skip, 1);
    // A next link to the same page is the last page, not a loop.
    let same = read_page(
        &s,
        &last.next,
        "http://h/items?page=2",
        b"[3]",
        Some(r#"<http://h/items?page=2>; rel="next""#),
    )
    .unwrap();
    assert!(same.last && same.records.is_empty());
    let no_follow = settings(json!({"url": "http://h/items", "follow_link": false})).unwrap();
    assert!(
        read_page(&no_follow, &start, "http://h/items", b"[1]", Some(link))
            .unwrap()
            .last
    );
}

#[test]
fn answers_that_are_not_pages_say_what_is_wrong() {
    let s = settings(json!({"url": "http://h/x", "records_pointer": "/items"})).unwrap();
    let start = Position::start(&s);
    let e = read_page(&s, &start, "http://h/x", b"<html>", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("GET http://h/x: the answer is not JSON"),
        "{e}"
    );
    let e = read_page(&s, &start, "http://h/x", br#"{"items":{"a":1}}"#, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("points at an object, not an array"), "{e}");
    let empty = read_page(&s, &start, "http://h/x", br#"{"other":1}"#, None).unwrap();
    assert!(empty.records.is_empty() && empty.last);
}

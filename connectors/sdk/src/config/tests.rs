use super::*;
use serde_json::json;

fn spec() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required("path", FieldKind::String, "files to read (a glob)"),
        FieldSpec::optional(
            "format",
            FieldKind::OneOf(vec!["lines".into(), "json".into(), "csv".into()]),
            Some(json!("lines")),
            "how to read",
        ),
        FieldSpec::optional(
            "poll_interval",
            FieldKind::Duration,
            Some(json!("1s")),
            "how often to look",
        ),
        FieldSpec::optional(
            "batch_size",
            FieldKind::Integer {
                min: 1,
                max: 100_000,
            },
            Some(json!(1000)),
            "records per batch",
        ),
        FieldSpec::optional("token", FieldKind::Secret, None, "an API token"),
    ])
}

fn input(v: Json) -> Map<String, Json> {
    v.as_object().cloned().unwrap()
}

#[test]
fn defaults_fill_in_and_getters_type_them() {
    let c = spec()
        .validate(&input(json!({"path": "/in/*.log", "token": "t0p"})))
        .unwrap();
    assert_eq!(c.str("format"), Some("lines"));
    assert_eq!(c.duration("poll_interval"), Some(Duration::from_secs(1)));
    assert_eq!(c.int("batch_size"), Some(1000));
    assert!(
        !format!("{c:?}").contains("t0p"),
        "secrets never show in Debug"
    );
    assert_eq!(c.str("token"), Some("t0p"));
}

#[test]
fn every_problem_is_reported_with_a_hint() {
    let err = spec()
        .validate(&input(
            json!({"fromat": "json", "batch_size": 0, "poll_interval": "soon", "token": 5}),
        ))
        .unwrap_err();
    let text: Vec<String> = err.iter().map(|i| i.to_string()).collect();
    assert!(
        text.contains(&"`fromat`: unknown setting (did you mean `format`?)".to_string()),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("`batch_size`: expected an integer from 1 to 100000, found 0")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("`poll_interval`: expected a duration")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("`path`: missing required setting")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t == "`token`: expected a string (secret), found [hidden]"),
        "{text:?}"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("1500"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("5 parsecs"), None);
    assert_eq!(parse_duration(""), None);
}

fn http_like() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required("url", FieldKind::String, "where to send"),
        FieldSpec::optional(
            "headers",
            FieldKind::Map(Box::new(FieldKind::String)),
            None,
            "extra headers",
        ),
        FieldSpec::optional(
            "batch",
            FieldKind::Object(vec![
                FieldSpec::optional(
                    "max_records",
                    FieldKind::Integer {
                        min: 1,
                        max: 10_000,
                    },
                    Some(json!(500)),
                    "records per request",
                ),
                FieldSpec::optional(
                    "max_bytes",
                    FieldKind::Size,
                    Some(json!("1MiB")),
                    "bytes per request",
                ),
            ]),
            None,
            "batching",
        ),
        FieldSpec::optional(
            "auth",
            FieldKind::OneKey(vec![
                FieldSpec::optional("bearer", FieldKind::Secret, None, "a token"),
                FieldSpec::optional(
                    "basic",
                    FieldKind::Object(vec![
                        FieldSpec::required("username", FieldKind::String, "who"),
                        FieldSpec::required("password", FieldKind::Secret, "the password"),
                    ]),
                    None,
                    "user and password",
                ),
            ]),
            None,
            "how to authenticate",
        ),
    ])
}

#[test]
fn nested_settings_fill_their_defaults_and_hide_their_secrets() {
    let c = http_like()
        .validate(&input(json!({
            "url": "http://127.0.0.1/x",
            "headers": {"X-Source": "sluice", "X.Dotted": "yes"},
            "batch": {"max_records": 20},
            "auth": {"basic": {"username": "ops", "password": "hunter2"}},
        })))
        .unwrap();
    assert_eq!(c.int("batch.max_records"), Some(20));
    assert_eq!(c.size("batch.max_bytes"), Some(1 << 20));
    assert_eq!(c.str("auth.basic.password"), Some("hunter2"));
    assert_eq!(c.object("headers").unwrap()["X.Dotted"], json!("yes"));
    assert_eq!(c.secret_keys(), ["auth.basic.password".to_string()]);
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("ops"),
        "{shown}"
    );

    let defaults = http_like().validate(&input(json!({"url": "u"}))).unwrap();
    assert_eq!(
        defaults.int("batch.max_records"),
        Some(500),
        "an absent group is its defaults"
    );
    assert_eq!(defaults.get("auth"), None, "an absent choice stays absent");
}

#[test]
fn nested_problems_name_their_dotted_path() {
    let err = http_like()
        .validate(&input(json!({
            "url": "u",
            "headers": {"X-Count": 5},
            "batch": {"max_recrods": 20, "max_bytes": "lots"},
            "auth": {"bearer": "t0k", "basic": {"username": "a", "password": "b"}},
        })))
        .unwrap_err();
    let text: Vec<String> = err.iter().map(|i| i.to_string()).collect();
    let has = |s: &str| text.iter().any(|t| t.starts_with(s));
    assert!(
        has("`headers.X-Count`: expected a string, found 5"),
        "{text:?}"
    );
    assert!(
        has("`batch.max_recrods`: unknown setting (did you mean `max_records`?)"),
        "{text:?}"
    );
    assert!(has("`batch.max_bytes`: expected a size"), "{text:?}");
    assert!(
        has("`auth`: `bearer` and `basic` cannot both be set"),
        "{text:?}"
    );
    assert!(text.iter().all(|t| !t.contains("t0k")), "{text:?}");

    let err = http_like()
        .validate(&input(
            json!({"url": "u", "auth": {"basic": {"username": "a"}, }}),
        ))
        .unwrap_err();
    assert_eq!(
        err[0].key.as_deref(),
        Some("auth.basic.password"),
        "{err:?}"
    );
    let err = http_like()
        .validate(&input(json!({"url": "u", "auth": {"bearr": "x"}})))
        .unwrap_err();
    assert!(
        err[0].to_string().contains("did you mean `bearer`?"),
        "{err:?}"
    );
}

#[test]
fn sizes() {
    assert_eq!(parse_size("512"), Some(512));
    assert_eq!(parse_size("64KiB"), Some(65536));
    assert_eq!(parse_size("1MiB"), Some(1 << 20));
    assert_eq!(parse_size("10MB"), Some(10_000_000));
    assert_eq!(parse_size("2 gib"), Some(2 << 30));
    assert_eq!(parse_size("1 parsec"), None);
    assert_eq!(parse_size("99999999999999999999GB"), None);
}

#[test]
fn a_field_is_found_by_its_dotted_path() {
    let s = http_like();
    assert_eq!(
        s.field("batch.max_bytes").map(|f| &f.kind),
        Some(&FieldKind::Size)
    );
    assert_eq!(
        s.field("auth.basic.password").map(|f| &f.kind),
        Some(&FieldKind::Secret)
    );
    assert!(s.field("batch.nothing").is_none());
    assert!(
        s.describe().contains("    max_records: an integer"),
        "{}",
        s.describe()
    );
}

#[test]
fn flat_keys_nest_as_the_spec_does() {
    let spec = http_like();
    let flat = [
        ("url", "http://127.0.0.1/x"),
        ("batch.max_records", "20"),
        ("headers.X.Dotted", "yes"),
        ("auth.basic.username", "ops"),
        ("auth.basic.password", "pw"),
        ("batch.max_recrods", "1"),
    ];
    let nested = spec.from_flat(flat);
    assert_eq!(
        Json::Object(nested.clone()),
        json!({
            "url": "http://127.0.0.1/x",
            "batch": {"max_records": 20, "max_recrods": "1"},
            "headers": {"X.Dotted": "yes"},
            "auth": {"basic": {"username": "ops", "password": "pw"}},
        })
    );
    let err = spec.validate(&nested).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].key.as_deref(), Some("batch.max_recrods"));
    let leaves: Vec<String> = spec.leaves().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        leaves,
        [
            "url",
            "headers",
            "batch.max_records",
            "batch.max_bytes",
            "auth.bearer",
            "auth.basic.username",
            "auth.basic.password"
        ]
    );
}

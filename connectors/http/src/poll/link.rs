//! The `Link` header (RFC 8288): the target of `rel="next"`, resolved against the URL of
//! the request that got it, as GitHub's and many other APIs paginate.

/// The `rel="next"` target of a `Link` header value, resolved against `base`; `None` when
/// there is none (the last page) or it is not a URL.
pub fn next_link(header: &str, base: &str) -> Option<String> {
    let mut rest = header;
    loop {
        // A link value: `<target>` followed by `;` parameters, up to the next `,` outside
        // the angle brackets (a target may hold commas).
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = rest[open + 1..close].trim();
        let after = &rest[close + 1..];
        let params_end = after
            .find('<')
            .map_or(after.len(), |next| after[..next].rfind(',').unwrap_or(next));
        let params = &after[..params_end];
        if params.split(';').any(is_rel_next) {
            let base = reqwest::Url::parse(base).ok()?;
            return base.join(target).ok().map(String::from);
        }
        rest = &after[params_end..];
    }
}

/// `rel=next`, `rel="next"` or a list such as `rel="next last"`, any case.
fn is_rel_next(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_matches('"')
            .split_ascii_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_link_header_gives_the_next_page() {
        let header = r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last""#;
        assert_eq!(
            next_link(header, "https://api.github.com/repositories/1/issues").as_deref(),
            Some("https://api.github.com/repositories/1/issues?page=2")
        );
    }

    #[test]
    fn relative_targets_unquoted_rels_and_lists_are_understood() {
        let base = "http://127.0.0.1:9/items?page=1";
        assert_eq!(
            next_link("</items?page=2>; rel=next", base).as_deref(),
            Some("http://127.0.0.1:9/items?page=2")
        );
        assert_eq!(
            next_link(r#"<?page=3>; title="a, b"; rel="NEXT last""#, base).as_deref(),
            Some("http://127.0.0.1:9/items?page=3")
        );
        assert_eq!(
            next_link(
                r#"<http://h/a,b>; rel="prev", <http://h/c>; rel="next""#,
                base
            )
            .as_deref(),
            Some("http://h/c")
        );
    }

    #[test]
    fn no_next_is_the_last_page() {
        let base = "http://h/x";
        assert_eq!(next_link(r#"<http://h/1>; rel="prev""#, base), None);
        assert_eq!(next_link("", base), None);
        assert_eq!(next_link("garbage", base), None);
        assert_eq!(next_link(r#"<http://h/1; rel="next""#, base), None);
    }
}

//! The `transforms` list of a connector and the predicates that gate them.

use super::*;

impl Checker<'_> {
    pub(super) fn transforms(
        &mut self,
        node: &Node,
        what: &str,
        source: bool,
    ) -> Vec<crate::transforms::Transform> {
        use crate::transforms::{spec, Transform, TYPES};
        let Kind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!(
                    "`transforms` of {what} must be a list, found {}",
                    node.type_name()
                ),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let label = format!("transform {} of {what}", i + 1);
            let entries = self.mapping(item, &label, None);
            let mut type_name = None;
            let (mut predicate, mut negate) = (None, false);
            let mut settings = Map::new();
            let mut positions: BTreeMap<String, Pos> = BTreeMap::new();
            for (k, v, kpos) in entries {
                match k {
                    "type" => type_name = self.string(v, "`type`").map(|t| (t, v.pos)),
                    "negate" => match v.kind {
                        Kind::Bool(b) => negate = b,
                        _ => self.err(
                            v.pos,
                            format!("`negate` must be true or false, found {}", v.shown()),
                        ),
                    },
                    "predicate" => predicate = self.predicate(v),
                    other => {
                        settings.insert(other.to_string(), v.to_json());
                        positions.insert(other.to_string(), kpos);
                    }
                }
            }
            let Some((t, tpos)) = type_name else {
                self.err(
                    item.pos,
                    format!("{label} needs `type` (one of {})", TYPES.join(", ")),
                );
                continue;
            };
            let Some(spec) = spec(&t) else {
                let hint = did_you_mean(&t, TYPES.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.err(
                    tpos,
                    format!(
                        "unknown transform type `{t}`{hint}; known: {}",
                        TYPES.join(", ")
                    ),
                );
                continue;
            };
            if !source && (t == "timestamp_router" || t == "regex_router") {
                self.err(tpos, format!("`{t}` changes topics and applies to sources only (a sink's positions follow the topics it reads)"));
                continue;
            }
            match spec.validate(&settings) {
                Ok(values) => {
                    match Transform::build(&label, &t, &values, predicate.clone(), negate) {
                        Ok(tr) => out.push(tr),
                        Err(e) => self.err(item.pos, format!("{label}: {e}")),
                    }
                }
                Err(issues) => {
                    for issue in issues {
                        let pos = issue
                            .key
                            .as_ref()
                            .and_then(|k| positions.get(k))
                            .copied()
                            .unwrap_or(item.pos);
                        self.err(pos, format!("{label} (`{t}`): {issue}"));
                    }
                }
            }
        }
        out
    }

    fn predicate(&mut self, node: &Node) -> Option<crate::transforms::Predicate> {
        use crate::transforms::Predicate;
        let entries = self.mapping(node, "`predicate`", Some(&["type", "pattern", "name"]));
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _, _)| *key == k)
                .map(|(_, v, _)| *v)
        };
        let kinds = [
            "topic_name_matches",
            "has_header_key",
            "record_is_tombstone",
        ];
        let Some(t) = get("type") else {
            self.err(
                node.pos,
                format!("`predicate` needs `type`: one of {}", kinds.join(", ")),
            );
            return None;
        };
        match t.as_str() {
            Some("record_is_tombstone") => Some(Predicate::RecordIsTombstone),
            Some("has_header_key") => match get("name").and_then(Node::as_str) {
                Some(n) => Some(Predicate::HasHeaderKey(n.to_string())),
                None => {
                    self.err(t.pos, "`has_header_key` needs `name`");
                    None
                }
            },
            Some("topic_name_matches") => match get("pattern")
                .and_then(Node::as_str)
                .map(|p| regex::Regex::new(&format!("^(?:{p})$")))
            {
                Some(Ok(re)) => Some(Predicate::TopicNameMatches(re)),
                Some(Err(e)) => {
                    self.err(t.pos, format!("invalid `pattern`: {e}"));
                    None
                }
                None => {
                    self.err(t.pos, "`topic_name_matches` needs `pattern`");
                    None
                }
            },
            _ => {
                self.err(
                    t.pos,
                    format!(
                        "unknown predicate {}: use one of {}",
                        t.shown(),
                        kinds.join(", ")
                    ),
                );
                None
            }
        }
    }
}

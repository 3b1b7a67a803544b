//! The pipeline graph's layout: sources on the left, topics in the middle, sinks on the
//! right, as the product's picture has it (N sources and M sinks meeting at topics, not
//! N × M pipes). Pure: the page draws what this returns.
//!
//! Rows are ordered to keep edges from crossing: sources keep the file's order, each topic
//! sits at the mean row of the sources writing it, each sink at the mean row of the topics
//! it reads (the barycenter heuristic), ties broken by name so a layout never jumps between
//! two identical snapshots.

use serde::Serialize;

/// Horizontal distance between columns and vertical distance between rows, in SVG units.
pub const COLUMN_WIDTH: f64 = 300.0;
pub const ROW_HEIGHT: f64 = 80.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Source,
    Topic,
    Sink,
}

/// A connector as the graph needs it: what it writes (a source) or reads (a sink).
#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    pub kind: NodeKind,
    pub topics: Vec<String>,
    /// Where refused records go; drawn as an edge into that topic.
    pub dead_letter_topic: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// `source:<name>`, `topic:<name>` or `sink:<name>`: connectors and topics may share
    /// names.
    pub id: String,
    pub kind: NodeKind,
    pub label: String,
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// An edge into a dead-letter topic.
    pub dead_letter: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub width: f64,
    pub height: f64,
}

pub fn node_id(kind: NodeKind, name: &str) -> String {
    let prefix = match kind {
        NodeKind::Source => "source",
        NodeKind::Topic => "topic",
        NodeKind::Sink => "sink",
    };
    format!("{prefix}:{name}")
}

/// Orders `names` by the mean of their neighbours' rows (`rows_of` gives them); names with
/// no neighbour go last, in name order.
fn by_barycenter(names: Vec<String>, rows_of: impl Fn(&str) -> Vec<usize>) -> Vec<String> {
    let mut keyed: Vec<(f64, String)> = names
        .into_iter()
        .map(|n| {
            let rows = rows_of(&n);
            let center = if rows.is_empty() {
                f64::INFINITY
            } else {
                rows.iter().sum::<usize>() as f64 / rows.len() as f64
            };
            (center, n)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, n)| n).collect()
}

/// Lays out the connectors and every topic they touch.
pub fn layout(connectors: &[Connector]) -> Graph {
    let sources: Vec<&Connector> = connectors
        .iter()
        .filter(|c| c.kind == NodeKind::Source)
        .collect();
    let sinks: Vec<&Connector> = connectors
        .iter()
        .filter(|c| c.kind == NodeKind::Sink)
        .collect();
    let mut topics: Vec<String> = Vec::new();
    for c in sources.iter().chain(&sinks) {
        for t in c.topics.iter().chain(&c.dead_letter_topic) {
            if !topics.contains(t) {
                topics.push(t.clone());
            }
        }
    }
    let topics = by_barycenter(topics, |t| {
        sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.topics.iter().chain(&s.dead_letter_topic).any(|x| x == t))
            .map(|(i, _)| i)
            .collect()
    });
    let sink_names = by_barycenter(sinks.iter().map(|s| s.name.clone()).collect(), |name| {
        let sink = sinks.iter().find(|s| s.name == name);
        topics
            .iter()
            .enumerate()
            .filter(|(_, t)| sink.is_some_and(|s| s.topics.contains(t)))
            .map(|(i, _)| i)
            .collect()
    });
    let tallest = sources.len().max(topics.len()).max(sink_names.len()).max(1);
    let height = tallest as f64 * ROW_HEIGHT;
    let column = |kind: NodeKind, col: usize, names: Vec<String>| -> Vec<Node> {
        // Each column is centred against the tallest one.
        let offset = (tallest - names.len()) as f64 * ROW_HEIGHT / 2.0;
        names
            .into_iter()
            .enumerate()
            .map(|(row, name)| Node {
                id: node_id(kind, &name),
                kind,
                label: name,
                x: COLUMN_WIDTH / 2.0 + col as f64 * COLUMN_WIDTH,
                y: offset + ROW_HEIGHT / 2.0 + row as f64 * ROW_HEIGHT,
            })
            .collect()
    };
    let mut nodes = column(
        NodeKind::Source,
        0,
        sources.iter().map(|s| s.name.clone()).collect(),
    );
    nodes.extend(column(NodeKind::Topic, 1, topics));
    nodes.extend(column(NodeKind::Sink, 2, sink_names));
    let mut edges = Vec::new();
    for s in &sources {
        for t in &s.topics {
            edges.push(Edge {
                from: node_id(NodeKind::Source, &s.name),
                to: node_id(NodeKind::Topic, t),
                dead_letter: false,
            });
        }
    }
    for s in &sinks {
        for t in &s.topics {
            edges.push(Edge {
                from: node_id(NodeKind::Topic, t),
                to: node_id(NodeKind::Sink, &s.name),
                dead_letter: false,
            });
        }
    }
    for c in sources.iter().chain(&sinks) {
        if let Some(t) = &c.dead_letter_topic {
            edges.push(Edge {
                from: node_id(c.kind, &c.name),
                to: node_id(NodeKind::Topic, t),
                dead_letter: true,
            });
        }
    }
    Graph {
        nodes,
        edges,
        width: 3.0 * COLUMN_WIDTH,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, topic: &str) -> Connector {
        Connector {
            name: name.into(),
            kind: NodeKind::Source,
            topics: vec![topic.into()],
            dead_letter_topic: None,
        }
    }

    fn sink(name: &str, topics: &[&str]) -> Connector {
        Connector {
            name: name.into(),
            kind: NodeKind::Sink,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            dead_letter_topic: None,
        }
    }

    fn y(g: &Graph, id: &str) -> f64 {
        g.nodes.iter().find(|n| n.id == id).map(|n| n.y).unwrap()
    }

    /// Two edges between adjacent columns cross when their ends are in opposite orders.
    fn crossings(g: &Graph) -> usize {
        let ends: Vec<(f64, f64, f64)> = g
            .edges
            .iter()
            .map(|e| {
                let from = g.nodes.iter().find(|n| n.id == e.from).unwrap();
                (from.x, from.y, y(g, &e.to))
            })
            .collect();
        let mut n = 0;
        for (i, a) in ends.iter().enumerate() {
            for b in &ends[i + 1..] {
                if a.0 == b.0 && (a.1 - b.1) * (a.2 - b.2) < 0.0 {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn columns_hold_sources_topics_and_sinks() {
        let g = layout(&[source("files", "lines"), sink("out", &["lines"])]);
        let kinds: Vec<(NodeKind, f64)> = g.nodes.iter().map(|n| (n.kind, n.x)).collect();
        assert_eq!(
            kinds,
            vec![
                (NodeKind::Source, 150.0),
                (NodeKind::Topic, 450.0),
                (NodeKind::Sink, 750.0)
            ]
        );
        assert_eq!(g.edges.len(), 2);
        assert_eq!(
            y(&g, "source:files"),
            y(&g, "sink:out"),
            "one row, one line"
        );
    }

    #[test]
    fn topics_and_sinks_follow_their_sources_so_edges_do_not_cross() {
        // File order would cross every edge: sinks listed in the opposite order.
        let connectors = vec![
            source("a", "ta"),
            source("b", "tb"),
            source("c", "tc"),
            sink("sink-c", &["tc"]),
            sink("sink-b", &["tb"]),
            sink("sink-a", &["ta"]),
        ];
        let g = layout(&connectors);
        assert_eq!(crossings(&g), 0);
        assert!(y(&g, "sink:sink-a") < y(&g, "sink:sink-c"));
    }

    #[test]
    fn a_shared_topic_sits_between_its_sources_and_a_dead_letter_topic_is_an_edge() {
        let mut b = source("b", "shared");
        b.dead_letter_topic = Some("dlq".into());
        let g = layout(&[source("a", "shared"), b, source("c", "own")]);
        let shared = y(&g, "topic:shared");
        assert!(y(&g, "source:a") <= shared && shared <= y(&g, "source:c"));
        assert!(g
            .edges
            .iter()
            .any(|e| e.dead_letter && e.from == "source:b" && e.to == "topic:dlq"));
    }

    #[test]
    fn the_same_input_gives_the_same_layout() {
        let connectors = vec![
            sink("x", &["t2", "t1"]),
            source("s1", "t1"),
            source("s2", "t2"),
        ];
        assert_eq!(layout(&connectors), layout(&connectors));
        let empty = layout(&[]);
        assert!(empty.nodes.is_empty() && empty.height > 0.0);
    }
}

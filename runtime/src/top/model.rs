//! What `sluice top` shows, computed from two REST answers with no terminal involved: the
//! connectors with their states (`/connectors?expand=status&expand=info`) and their
//! counters (`/metrics`), rates from the difference of two samples, sorted and filtered.

use std::time::Instant;

use serde_json::Value;

pub use sluice_worker::metrics_text::{parse_metrics, Series};

/// A connector as the REST API and the metrics describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    /// `source` or `sink`.
    pub kind: String,
    /// The connector type (`file`, `http`, …).
    pub class: String,
    /// The connector's state, or `FAILED` when a task failed.
    pub state: String,
    pub tasks: usize,
    pub failed_tasks: usize,
    pub records_in: f64,
    pub records_out: f64,
    pub dead_letter: f64,
    pub errors: f64,
    pub restarts: f64,
    /// Records a sink has not committed yet (sinks only).
    pub lag: Option<f64>,
    /// The first failed task's trace.
    pub trace: Option<String>,
}

/// One look at the running pipeline.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub rows: Vec<Row>,
}

fn sum(series: &[Series], name: &str, connector: &str) -> f64 {
    series
        .iter()
        .filter(|s| {
            s.name == name && s.labels.get("connector").map(String::as_str) == Some(connector)
        })
        .map(|s| s.value)
        .sum()
}

/// The rows of an expanded connector list and the metrics.
pub fn rows(connectors: &Value, series: &[Series]) -> Vec<Row> {
    let Some(map) = connectors.as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, c)| {
            let status = &c["status"];
            let tasks = status["tasks"].as_array().cloned().unwrap_or_default();
            let failed: Vec<&Value> = tasks.iter().filter(|t| t["state"] == "FAILED").collect();
            let connector_state = status["connector"]["state"].as_str().unwrap_or("UNKNOWN");
            let state = if failed.is_empty() {
                connector_state.to_string()
            } else {
                "FAILED".to_string()
            };
            let kind = status["type"]
                .as_str()
                .or_else(|| c["info"]["type"].as_str())
                .unwrap_or("?")
                .to_string();
            let has_lag = series.iter().any(|s| {
                s.name == "sluice_sink_lag_records" && s.labels.get("connector") == Some(name)
            });
            Row {
                name: name.clone(),
                class: c["info"]["config"]["connector.class"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                kind,
                state,
                tasks: tasks.len(),
                failed_tasks: failed.len(),
                records_in: sum(series, "sluice_task_records_in_total", name),
                records_out: sum(series, "sluice_task_records_out_total", name),
                dead_letter: sum(series, "sluice_task_dead_letter_records_total", name),
                errors: sum(series, "sluice_task_errors_total", name),
                restarts: sum(series, "sluice_task_restarts_total", name),
                lag: has_lag.then(|| sum(series, "sluice_sink_lag_records", name)),
                trace: failed
                    .first()
                    .and_then(|t| t["trace"].as_str())
                    .map(str::to_string),
            }
        })
        .collect()
}

/// A row with its rates since the previous sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub row: Row,
    pub in_per_sec: Option<f64>,
    pub out_per_sec: Option<f64>,
}

/// What the table is sorted by (`s` cycles through them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Name,
    State,
    In,
    Out,
    Lag,
    Errors,
}

impl SortBy {
    pub fn next(self) -> SortBy {
        match self {
            SortBy::Name => SortBy::State,
            SortBy::State => SortBy::In,
            SortBy::In => SortBy::Out,
            SortBy::Out => SortBy::Lag,
            SortBy::Lag => SortBy::Errors,
            SortBy::Errors => SortBy::Name,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SortBy::Name => "name",
            SortBy::State => "state",
            SortBy::In => "in/s",
            SortBy::Out => "out/s",
            SortBy::Lag => "lag",
            SortBy::Errors => "errors",
        }
    }
}

fn rate(now: f64, before: f64, secs: f64) -> Option<f64> {
    (secs > 0.0).then(|| ((now - before) / secs).max(0.0))
}

/// The lines to show: `now`'s rows with rates against `before`, keeping those whose name,
/// type or state contain `filter`, sorted (busiest first for numbers).
pub fn lines(before: Option<&Sample>, now: &Sample, sort: SortBy, filter: &str) -> Vec<Line> {
    let filter = filter.to_lowercase();
    let mut lines: Vec<Line> = now
        .rows
        .iter()
        .filter(|r| {
            filter.is_empty()
                || [&r.name, &r.class, &r.state, &r.kind]
                    .iter()
                    .any(|f| f.to_lowercase().contains(&filter))
        })
        .map(|r| {
            let prev = before.and_then(|b| b.rows.iter().find(|p| p.name == r.name));
            let secs = before.map_or(0.0, |b| now.at.duration_since(b.at).as_secs_f64());
            Line {
                row: r.clone(),
                in_per_sec: prev.and_then(|p| rate(r.records_in, p.records_in, secs)),
                out_per_sec: prev.and_then(|p| rate(r.records_out, p.records_out, secs)),
            }
        })
        .collect();
    let num = |v: Option<f64>| v.unwrap_or(-1.0);
    lines.sort_by(|a, b| {
        let by = match sort {
            SortBy::Name => std::cmp::Ordering::Equal,
            SortBy::State => a.row.state.cmp(&b.row.state),
            SortBy::In => num(b.in_per_sec).total_cmp(&num(a.in_per_sec)),
            SortBy::Out => num(b.out_per_sec).total_cmp(&num(a.out_per_sec)),
            SortBy::Lag => num(b.row.lag).total_cmp(&num(a.row.lag)),
            SortBy::Errors => {
                (b.row.errors + b.row.dead_letter).total_cmp(&(a.row.errors + a.row.dead_letter))
            }
        };
        by.then_with(|| a.row.name.cmp(&b.row.name))
    });
    lines
}

/// `1234567` → `1.2M`, `5300` → `5.3k`: rates and counts that fit a column.
pub fn human(v: f64) -> String {
    let v = v + 0.0; // -0.0 (an empty sum) prints as 0
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const METRICS: &str = r#"# HELP sluice_task_records_in Records a task took in
# TYPE sluice_task_records_in counter
sluice_task_records_in_total{pipeline="p",connector="orders_in",task="0"} 100
sluice_task_records_in_total{pipeline="p",connector="orders_in",task="1"} 50
sluice_task_records_out_total{pipeline="p",connector="orders_in",task="0"} 140
sluice_task_records_out_total{pipeline="p",connector="crm",task="0"} 90
sluice_task_errors_total{pipeline="p",connector="crm",task="0",stage="put"} 2
sluice_task_dead_letter_records_total{pipeline="p",connector="crm",task="0"} 1
sluice_sink_lag_records{pipeline="p",connector="crm",topic="orders",partition="0"} 7
sluice_sink_lag_records{pipeline="p",connector="crm",topic="orders",partition="1"} 3
sluice_odd{a="x \"quoted\", with comma",b="y"} 1.5
"#;

    fn status() -> Value {
        json!({
            "orders_in": {"status": {"type": "source", "connector": {"state": "RUNNING"},
                           "tasks": [{"id": 0, "state": "RUNNING"}, {"id": 1, "state": "RUNNING"}]},
                          "info": {"config": {"connector.class": "file"}}},
            "crm": {"status": {"type": "sink", "connector": {"state": "RUNNING"},
                     "tasks": [{"id": 0, "state": "FAILED", "trace": "boom\nat line 1"}]},
                    "info": {"config": {"connector.class": "http"}}}
        })
    }

    #[test]
    fn prometheus_text_is_read_with_its_labels() {
        let s = parse_metrics(METRICS);
        assert_eq!(s.len(), 9);
        assert_eq!(s[0].name, "sluice_task_records_in_total");
        assert_eq!(s[0].labels["connector"], "orders_in");
        assert_eq!(s[0].value, 100.0);
        let odd = s.iter().find(|s| s.name == "sluice_odd").unwrap();
        assert_eq!(odd.labels["a"], "x \"quoted\", with comma");
        assert_eq!(odd.labels["b"], "y");
        assert_eq!(
            parse_metrics("plain 3\nbroken\n"),
            vec![Series {
                name: "plain".into(),
                labels: std::collections::BTreeMap::new(),
                value: 3.0
            }]
        );
    }

    #[test]
    fn rows_sum_tasks_and_partitions_and_a_failed_task_shows() {
        let rows = rows(&status(), &parse_metrics(METRICS));
        let crm = rows.iter().find(|r| r.name == "crm").unwrap();
        assert_eq!(
            (crm.kind.as_str(), crm.class.as_str(), crm.state.as_str()),
            ("sink", "http", "FAILED")
        );
        assert_eq!(
            (crm.failed_tasks, crm.lag, crm.errors, crm.dead_letter),
            (1, Some(10.0), 2.0, 1.0)
        );
        assert_eq!(crm.trace.as_deref(), Some("boom\nat line 1"));
        let src = rows.iter().find(|r| r.name == "orders_in").unwrap();
        assert_eq!(
            (src.records_in, src.records_out, src.lag, src.tasks),
            (150.0, 140.0, None, 2)
        );
    }

    #[test]
    fn rates_come_from_two_samples_and_sorting_and_filtering_work() {
        let t0 = Instant::now();
        let before = Sample {
            at: t0,
            rows: rows(&status(), &parse_metrics(METRICS)),
        };
        let later = METRICS.replace("} 140", "} 340").replace("} 90", "} 100");
        let now = Sample {
            at: t0 + Duration::from_secs(2),
            rows: rows(&status(), &parse_metrics(&later)),
        };
        let by_out = lines(Some(&before), &now, SortBy::Out, "");
        assert_eq!(by_out[0].row.name, "orders_in");
        assert_eq!(by_out[0].out_per_sec, Some(100.0));
        assert_eq!(by_out[1].out_per_sec, Some(5.0));
        let by_name = lines(Some(&before), &now, SortBy::Name, "");
        assert_eq!(by_name[0].row.name, "crm");
        assert_eq!(
            lines(None, &now, SortBy::Name, "")[0].in_per_sec,
            None,
            "no rate from one sample"
        );
        let failed = lines(Some(&before), &now, SortBy::Name, "fail");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].row.name, "crm");
        assert_eq!(SortBy::Errors.next(), SortBy::Name);
        assert_eq!(human(-0.0), "0");
        assert_eq!(
            (human(1_234_567.0), human(5300.0), human(12.25), human(7.0)),
            ("1.2M".into(), "5300".into(), "12.2".into(), "7".into())
        );
    }
}

//! `sluice top`: a live terminal view of a running `sluice run`, like `vector top`, from its
//! REST API: every connector with its state, records in and out per second, sink lag,
//! dead-lettered records, errors and restarts; keys to sort, filter, and pause, resume or
//! restart the selected connector. `--once` prints one table as text and exits (scripts).
//!
//! The numbers come from [`model`] (pure, unit tested); this file draws them (ratatui) and
//! turns keys into REST calls.

pub mod model;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use serde_json::Value;

use crate::cli::TopArgs;
use crate::status::Api;
use model::{human, lines, parse_metrics, rows, Line, Sample, SortBy};

fn sample(api: &Api) -> Result<Sample> {
    let connectors = api.get("/connectors?expand=status&expand=info")?;
    let metrics = match api.get("/metrics")? {
        Value::String(text) => text,
        other => other.to_string(),
    };
    Ok(Sample {
        at: Instant::now(),
        rows: rows(&connectors, &parse_metrics(&metrics)),
    })
}

fn rate(v: Option<f64>) -> String {
    v.map_or("-".to_string(), human)
}

fn state_style(state: &str) -> Style {
    let colour = match state {
        "RUNNING" => Color::Green,
        "PAUSED" => Color::Yellow,
        "FAILED" => Color::Red,
        "STOPPED" => Color::Magenta,
        _ => Color::Gray,
    };
    Style::default().fg(colour).add_modifier(Modifier::BOLD)
}

const HEADER: [&str; 11] = [
    "CONNECTOR",
    "KIND",
    "TYPE",
    "STATE",
    "TASKS",
    "IN/s",
    "OUT/s",
    "LAG",
    "DLQ",
    "ERRORS",
    "RESTARTS",
];

fn cells(l: &Line) -> [String; 11] {
    let r = &l.row;
    let tasks = if r.failed_tasks > 0 {
        format!("{} ({} failed)", r.tasks, r.failed_tasks)
    } else {
        r.tasks.to_string()
    };
    [
        r.name.clone(),
        r.kind.clone(),
        r.class.clone(),
        r.state.clone(),
        tasks,
        rate(l.in_per_sec),
        rate(l.out_per_sec),
        r.lag.map_or("-".to_string(), human),
        human(r.dead_letter),
        human(r.errors),
        human(r.restarts),
    ]
}

/// `--once`: one table as plain text (two samples `interval` apart, for the rates).
fn print_once(api: &Api, interval: Duration) -> Result<()> {
    let before = sample(api)?;
    std::thread::sleep(interval);
    let now = sample(api)?;
    let lines = lines(Some(&before), &now, SortBy::Name, "");
    let table: Vec<[String; 11]> = lines.iter().map(cells).collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|i| {
            table
                .iter()
                .map(|c| c[i].len())
                .chain([HEADER[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let print = |row: &[String]| {
        let text: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    print(&HEADER.map(str::to_string));
    for row in &table {
        print(row);
    }
    for l in &lines {
        if let Some(trace) = &l.row.trace {
            println!("\n{} failed:\n{trace}", l.row.name);
        }
    }
    Ok(())
}

/// What the screen shows and the keys change.
struct Screen {
    url: String,
    before: Option<Sample>,
    now: Option<Sample>,
    sort: SortBy,
    filter: String,
    typing_filter: bool,
    selected: TableState,
    detail: bool,
    /// The last action's outcome, or why the API could not be reached.
    message: String,
}

impl Screen {
    fn lines(&self) -> Vec<Line> {
        match &self.now {
            Some(now) => lines(self.before.as_ref(), now, self.sort, &self.filter),
            None => Vec::new(),
        }
    }

    fn selected_name(&self) -> Option<String> {
        let lines = self.lines();
        self.selected
            .selected()
            .and_then(|i| lines.get(i))
            .map(|l| l.row.name.clone())
    }
}

fn draw(frame: &mut Frame, screen: &mut Screen) {
    let lines = screen.lines();
    if lines.is_empty() {
        screen.selected.select(None);
    } else if screen.selected.selected().is_none_or(|i| i >= lines.len()) {
        screen.selected.select(Some(0));
    }
    let detail_height = if screen.detail { 10 } else { 0 };
    let [head, body, detail, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(detail_height),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    let filter = if screen.filter.is_empty() {
        String::new()
    } else {
        format!("  filter: {}", screen.filter)
    };
    frame.render_widget(
        Paragraph::new(format!(
            "sluice top — {} — {} connectors — sorted by {}{filter}",
            screen.url,
            lines.len(),
            screen.sort.label()
        ))
        .style(Style::default().add_modifier(Modifier::BOLD)),
        head,
    );
    let rows: Vec<Row> = lines
        .iter()
        .map(|l| {
            let c = cells(l);
            Row::new(c.into_iter().enumerate().map(|(i, text)| {
                let cell = Cell::from(text);
                if i == 3 {
                    cell.style(state_style(&l.row.state))
                } else {
                    cell
                }
            }))
        })
        .collect();
    let widths = [
        Constraint::Min(16),
        Constraint::Length(6),
        Constraint::Length(11),
        Constraint::Length(10),
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(8),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(HEADER).style(Style::default().add_modifier(Modifier::REVERSED)))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ")
        .block(Block::default().borders(Borders::NONE));
    frame.render_stateful_widget(table, body, &mut screen.selected);
    if screen.detail {
        let selected = screen
            .selected
            .selected()
            .and_then(|i| lines.get(i))
            .map(|l| {
                l.row
                    .trace
                    .clone()
                    .unwrap_or_else(|| format!("{}: no failed task", l.row.name))
            })
            .unwrap_or_default();
        frame.render_widget(
            Paragraph::new(selected)
                .wrap(Wrap { trim: false })
                .block(Block::default().borders(Borders::TOP).title(" trace ")),
            detail,
        );
    }
    let keys = if screen.typing_filter {
        format!("filter: {}▏  (Enter: keep, Esc: clear)", screen.filter)
    } else {
        "↑↓ select  s sort  / filter  p pause  r resume  R restart  Enter trace  q quit".to_string()
    };
    frame.render_widget(
        Paragraph::new(vec![
            TextLine::from(Span::styled(keys, Style::default().fg(Color::Cyan))),
            TextLine::from(screen.message.clone()),
        ]),
        foot,
    );
}

/// A key's REST call on the selected connector; the outcome for the message line.
fn act(api: &Api, name: &str, key: char) -> String {
    let (method, path, done) = match key {
        'p' => (
            reqwest::Method::PUT,
            format!("/connectors/{name}/pause"),
            "pausing",
        ),
        'r' => (
            reqwest::Method::PUT,
            format!("/connectors/{name}/resume"),
            "resuming",
        ),
        _ => (
            reqwest::Method::POST,
            format!("/connectors/{name}/restart?includeTasks=true&onlyFailed=false"),
            "restarting",
        ),
    };
    match api.call(method, &path) {
        Ok(_) => format!("{name}: {done}"),
        Err(e) => format!("{name}: {e:#}"),
    }
}

pub fn run(args: TopArgs) -> Result<()> {
    let api = Api::with_timeout(&args.rest, Duration::from_secs(5))?;
    let interval = Duration::from_millis(args.interval_ms.max(100));
    if args.once {
        return print_once(&api, interval);
    }
    // Fail before taking over the terminal when nothing answers.
    let first = sample(&api).with_context(|| format!("sluice top: {}", api.base))?;
    let mut screen = Screen {
        url: api.base.clone(),
        before: None,
        now: Some(first),
        sort: SortBy::Name,
        filter: String::new(),
        typing_filter: false,
        selected: TableState::default(),
        detail: false,
        message: String::new(),
    };
    let mut terminal = ratatui::init();
    let result = (|| -> Result<()> {
        let mut next = Instant::now() + interval;
        loop {
            terminal.draw(|f| draw(f, &mut screen))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                let Event::Key(key) = event::read()? else {
                    continue;
                };
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                if screen.typing_filter {
                    match key.code {
                        KeyCode::Enter => screen.typing_filter = false,
                        KeyCode::Esc => {
                            screen.typing_filter = false;
                            screen.filter.clear();
                        }
                        KeyCode::Backspace => {
                            screen.filter.pop();
                        }
                        KeyCode::Char(c) => screen.filter.push(c),
                        _ => {}
                    }
                    continue;
                }
                let count = screen.lines().len();
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(())
                    }
                    KeyCode::Down | KeyCode::Char('j') if count > 0 => {
                        let i = screen
                            .selected
                            .selected()
                            .map_or(0, |i| (i + 1).min(count - 1));
                        screen.selected.select(Some(i));
                    }
                    KeyCode::Up | KeyCode::Char('k') => {
                        let i = screen
                            .selected
                            .selected()
                            .map_or(0, |i| i.saturating_sub(1));
                        screen.selected.select(Some(i));
                    }
                    KeyCode::Char('s') => screen.sort = screen.sort.next(),
                    KeyCode::Char('/') => screen.typing_filter = true,
                    KeyCode::Enter => screen.detail = !screen.detail,
                    KeyCode::Char(c @ ('p' | 'r' | 'R')) => {
                        if let Some(name) = screen.selected_name() {
                            screen.message = act(&api, &name, c);
                            next = Instant::now(); // show the new state at once
                        }
                    }
                    _ => {}
                }
                continue;
            }
            next = Instant::now() + interval;
            match sample(&api) {
                Ok(s) => {
                    screen.before = screen.now.take();
                    screen.now = Some(s);
                }
                Err(e) => screen.message = format!("{e:#}"),
            }
        }
    })();
    ratatui::restore();
    result
}

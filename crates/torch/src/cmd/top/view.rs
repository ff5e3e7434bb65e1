//! What `torch top` shows, and how it is laid out.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use torch_api::rest::{AgentView, AlertList, EventView};

/// Recent events kept for the events pane.
const RECENT: usize = 200;
/// Rates are measured over this window.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The state of the view.
pub(super) struct View {
    hub: String,
    pub(super) agents: Vec<AgentView>,
    pub(super) counts: BTreeMap<String, u64>,
    pub(super) alerts: AlertList,
    /// An error to show in the status line.
    pub(super) status: Option<String>,
    recent: VecDeque<EventView>,
    /// (when, kind) of recent task ends and submissions, for rates.
    ticks: VecDeque<(Instant, &'static str)>,
}

impl View {
    pub(super) fn new(hub: String) -> View {
        View {
            hub,
            agents: Vec::new(),
            counts: BTreeMap::new(),
            alerts: AlertList::default(),
            status: None,
            recent: VecDeque::new(),
            ticks: VecDeque::new(),
        }
    }

    /// Takes in a page of events received at `now`.
    pub(super) fn events(&mut self, events: Vec<EventView>, now: Instant) {
        for e in events {
            let tick = match e.kind.as_str() {
                "task.submitted" => Some("submitted"),
                "task.succeeded" => Some("succeeded"),
                "task.failed" | "task.lease_expired" => Some("failed"),
                "task.dead" => Some("dead"),
                _ => None,
            };
            if let Some(t) = tick {
                self.ticks.push_back((now, t));
            }
            if self.recent.len() >= RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(e);
        }
        while self
            .ticks
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.ticks.pop_front();
        }
    }

    fn rate(&self, kind: &str) -> f64 {
        let n = self.ticks.iter().filter(|(_, k)| *k == kind).count();
        n as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// Draws everything on `f`.
    pub(super) fn draw(&self, f: &mut Frame<'_>) {
        let [top, middle, bottom, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Percentage(55),
            Constraint::Min(5),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let connected = self
            .agents
            .iter()
            .filter(|a| a.state != "disconnected")
            .count();
        let title = format!(
            " torch top — {} — {connected} agents, {} queued, {} running — q quits",
            self.hub,
            self.counts.get("queued").copied().unwrap_or(0),
            self.counts.get("running").copied().unwrap_or(0)
                + self.counts.get("assigned").copied().unwrap_or(0),
        );
        f.render_widget(
            Paragraph::new(title).style(Style::default().add_modifier(Modifier::REVERSED)),
            top,
        );
        let [fleet, side] =
            Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)])
                .areas(middle);
        self.draw_fleet(f, fleet);
        let [queue, alerts] =
            Layout::vertical([Constraint::Length(12), Constraint::Min(3)]).areas(side);
        self.draw_queue(f, queue);
        self.draw_alerts(f, alerts);
        self.draw_events(f, bottom);
        let line = match &self.status {
            Some(s) => Line::styled(format!(" {s}"), Style::default().fg(Color::Red)),
            None => Line::raw(" live"),
        };
        f.render_widget(Paragraph::new(line), status);
    }

    fn draw_fleet(&self, f: &mut Frame<'_>, area: Rect) {
        let header = Row::new(["NAME", "STATE", "SLOTS", "DONE", "TEMPLATE", "CPU", "RSS"])
            .style(Style::default().add_modifier(Modifier::BOLD));
        let rows = self.agents.iter().map(|a| {
            let m = a.managed.as_ref();
            let color = match a.state.as_str() {
                "busy" => Color::Green,
                "silent" | "disconnected" => Color::Red,
                _ => Color::Reset,
            };
            Row::new(vec![
                Cell::from(a.name.clone()),
                Cell::from(a.state.clone()).style(Style::default().fg(color)),
                Cell::from(format!("{}/{}", a.running, a.slots)),
                Cell::from(a.completed.to_string()),
                Cell::from(m.map_or_else(|| "-".into(), |m| m.template.clone())),
                Cell::from(
                    m.and_then(|m| m.cpu)
                        .map_or_else(|| "-".into(), |c| format!("{:.0}%", c * 100.0)),
                ),
                Cell::from(
                    m.and_then(|m| m.rss_bytes)
                        .map_or_else(|| "-".into(), |b| format!("{:.0}M", b as f64 / 1_048_576.0)),
                ),
            ])
        });
        let widths = [
            Constraint::Min(12),
            Constraint::Length(12),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(12),
            Constraint::Length(6),
            Constraint::Length(7),
        ];
        let table = Table::new(rows, widths)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title(" fleet "));
        f.render_widget(table, area);
    }

    fn draw_queue(&self, f: &mut Frame<'_>, area: Rect) {
        let mut lines: Vec<Line<'_>> = [
            "blocked",
            "queued",
            "assigned",
            "running",
            "succeeded",
            "dead",
            "cancelled",
        ]
        .iter()
        .map(|s| {
            Line::raw(format!(
                "{s:<10} {}",
                self.counts.get(*s).copied().unwrap_or(0)
            ))
        })
        .collect();
        lines.push(Line::raw(format!(
            "rates/s    in {:.1}  ok {:.1}  fail {:.1}  dead {:.1}",
            self.rate("submitted"),
            self.rate("succeeded"),
            self.rate("failed"),
            self.rate("dead")
        )));
        f.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" queue ")),
            area,
        );
    }

    fn draw_alerts(&self, f: &mut Frame<'_>, area: Rect) {
        let lines: Vec<Line<'_>> = if self.alerts.firing.is_empty() {
            vec![Line::raw(format!(
                "none firing ({} rules)",
                self.alerts.rules
            ))]
        } else {
            self.alerts
                .firing
                .iter()
                .map(|a| {
                    Line::styled(
                        format!("{} [{}] {}={:.2}", a.alert, a.severity, a.signal, a.value),
                        Style::default().fg(Color::Red),
                    )
                })
                .collect()
        };
        f.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" alerts ")),
            area,
        );
    }

    fn draw_events(&self, f: &mut Frame<'_>, area: Rect) {
        let room = area.height.saturating_sub(2) as usize;
        let lines: Vec<Line<'_>> = self
            .recent
            .iter()
            .rev()
            .take(room)
            .map(|e| {
                let who = e
                    .task_id
                    .map(|t| t.to_string())
                    .or_else(|| e.agent_id.map(|a| format!("agent {a}")))
                    .unwrap_or_default();
                Line::raw(format!("{:>8} {:<24} {who}", e.id, e.kind))
            })
            .collect();
        f.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" events ")),
            area,
        );
    }
}

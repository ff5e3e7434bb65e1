//! Liveness from an agent CLI's own event stream, while it runs.
//!
//! The runner taps the task's stdout and feeds it here line by line. Model
//! turns, tool calls and token counts are activity; Claude's
//! `system/api_retry` and Codex's `Reconnecting...` errors mean the CLI is
//! waiting on the model API. What changed is sent to the hub as a progress
//! report (at most once per [`MIN_GAP`]), and repeated every [`KEEPALIVE`]
//! while a tool call is running, so a long tool run is not a stall while a
//! CLI that has gone silent is.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use torch_api::ws::ProgressReport;
use torch_core::lifecycle::OutputFormat;
use torch_core::{Liveness, TaskId, Waiting};

use crate::runner::RunnerEvent;

/// Least time between two reports of one task.
const MIN_GAP: Duration = Duration::from_secs(1);
/// How often a running tool call is reported again.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Longest line kept while waiting for its end.
const MAX_LINE: usize = 1 << 20;

/// What the CLI is doing, as far as its stream says.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Activity {
    /// Model turns (Claude: assistant messages; Codex: completed items).
    turns: u64,
    /// The last tool it called.
    last_tool: Option<String>,
    /// Tokens so far (input and output).
    tokens: u64,
    /// A tool call has started and not finished.
    tool_running: bool,
    /// Waiting on the model API: the reason and, if known, for how long.
    waiting: Option<(String, Option<Duration>)>,
    /// Claude repeats an assistant message once per content block.
    last_message_id: Option<String>,
    /// When the stream last changed any of the above (unix ms).
    at_ms: u64,
    /// When the wait ends (unix ms), if the CLI said.
    until_ms: Option<u64>,
}

impl Activity {
    /// Takes one line of the stream; true when something worth reporting changed.
    pub(crate) fn feed(&mut self, format: OutputFormat, line: &str) -> bool {
        let Ok(ev) = serde_json::from_str::<Value>(line.trim()) else {
            return false;
        };
        let before = self.clone();
        match format {
            OutputFormat::ClaudeJson => self.claude(&ev),
            OutputFormat::CodexJsonl => self.codex(&ev),
            OutputFormat::Text => {}
        }
        let changed = *self != before;
        if changed {
            self.at_ms = crate::resume::now_ms();
            let delay = self.waiting.as_ref().and_then(|(_, d)| *d);
            self.until_ms = delay.map(|d| {
                self.at_ms
                    .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            });
        }
        changed
    }

    /// The same as fields: activity, and what it waits on.
    pub(crate) fn live(&self) -> Liveness {
        let waiting = self.waiting.as_ref().map(|(reason, _)| {
            let (reason, detail) = match reason.strip_prefix("api_retry (") {
                Some(rest) => ("api_retry", Some(rest.trim_end_matches(')').to_string())),
                None => (reason.as_str(), None),
            };
            Waiting {
                reason: reason.to_string(),
                until_ms: self.until_ms,
                detail,
            }
        });
        Liveness {
            activity: Some(torch_core::Activity {
                last_tool: self.last_tool.clone(),
                turns: self.turns,
                tokens_so_far: self.tokens,
                at_ms: self.at_ms,
            }),
            waiting,
        }
    }

    fn claude(&mut self, ev: &Value) {
        let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
        let subtype = ev.get("subtype").and_then(Value::as_str).unwrap_or("");
        match (kind, subtype) {
            ("system", "api_retry") => {
                let status = ev.get("error_status").and_then(Value::as_u64);
                let error = ev.get("error").and_then(Value::as_str).unwrap_or("");
                let reason = if status == Some(429) || error == "rate_limit" {
                    "rate_limited".to_string()
                } else {
                    format!(
                        "api_retry ({})",
                        if error.is_empty() { "error" } else { error }
                    )
                };
                let delay = ev
                    .get("retry_delay_ms")
                    .and_then(Value::as_u64)
                    .map(Duration::from_millis);
                self.waiting = Some((reason, delay));
            }
            ("assistant", _) => {
                self.waiting = None;
                let msg = ev.get("message");
                let id = msg
                    .and_then(|m| m.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if id.is_none() || id != self.last_message_id {
                    self.turns += 1;
                    if let Some(u) = msg.and_then(|m| m.get("usage")) {
                        self.tokens += ["input_tokens", "output_tokens", "cache_read_input_tokens"]
                            .iter()
                            .filter_map(|k| u.get(*k).and_then(Value::as_u64))
                            .sum::<u64>();
                    }
                    self.last_message_id = id;
                }
                let tools = msg
                    .and_then(|m| m.get("content"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"));
                for b in tools {
                    if let Some(name) = b.get("name").and_then(Value::as_str) {
                        self.last_tool = Some(name.to_string());
                        self.tool_running = true;
                    }
                }
            }
            ("user", _) => {
                self.waiting = None;
                self.tool_running = false;
            }
            _ => {}
        }
    }

    fn codex(&mut self, ev: &Value) {
        let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
        let item = ev.get("item");
        let item_kind = item
            .and_then(|i| i.get("type").or_else(|| i.get("item_type")))
            .and_then(Value::as_str)
            .unwrap_or("");
        let tool = match item_kind {
            "command_execution" => Some("shell".to_string()),
            "file_change" => Some("apply_patch".to_string()),
            "mcp_tool_call" => Some(format!(
                "mcp {}",
                item.and_then(|i| i.get("tool"))
                    .and_then(Value::as_str)
                    .unwrap_or("tool")
            )),
            "web_search" => Some("web_search".to_string()),
            _ => None,
        };
        match kind {
            "error" => {
                let msg = ev.get("message").and_then(Value::as_str).unwrap_or("");
                if let Some(rest) = msg.strip_prefix("Reconnecting... ") {
                    let n = rest.split_whitespace().next().unwrap_or("");
                    self.waiting = Some((format!("api_retry ({n})"), None));
                }
            }
            "item.started" => {
                self.waiting = None;
                if let Some(t) = tool {
                    self.last_tool = Some(t);
                    self.tool_running = true;
                }
            }
            "item.completed" => {
                self.waiting = None;
                self.turns += 1;
                if let Some(t) = tool {
                    self.last_tool = Some(t);
                }
                self.tool_running = false;
            }
            "turn.completed" => {
                self.waiting = None;
                if let Some(u) = ev.get("usage") {
                    self.tokens = ["input_tokens", "output_tokens"]
                        .iter()
                        .filter_map(|k| u.get(*k).and_then(Value::as_u64))
                        .sum();
                }
            }
            _ => {}
        }
    }

    /// The progress message: `waiting: …` or `activity: …`.
    pub(crate) fn message(&self) -> String {
        if let Some((reason, delay)) = &self.waiting {
            return match delay {
                Some(d) => format!("waiting: {reason}, retrying in {} ms", d.as_millis()),
                None => format!("waiting: {reason}"),
            };
        }
        let mut parts = vec![format!("turn {}", self.turns)];
        if let Some(t) = &self.last_tool {
            let state = if self.tool_running { "running" } else { "last" };
            parts.push(format!("{state} tool {t}"));
        }
        parts.push(format!("{} tokens", self.tokens));
        format!("activity: {}", parts.join(", "))
    }
}

/// Reads tapped stdout chunks until the tap closes, reporting activity for
/// `(task_id, fence)` to the session; returns the last activity.
pub(crate) async fn follow(
    mut chunks: mpsc::Receiver<Vec<u8>>,
    format: OutputFormat,
    task_id: TaskId,
    fence: u64,
    events: mpsc::Sender<RunnerEvent>,
) -> Liveness {
    let mut activity = Activity::default();
    let mut partial: Vec<u8> = Vec::new();
    let mut dirty = false;
    let mut last_sent: Option<Instant> = None;
    let mut tick = tokio::time::interval(MIN_GAP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let send = |activity: &Activity| {
        RunnerEvent::Progress(ProgressReport {
            task_id,
            fence,
            percent: 0.0,
            message: activity.message(),
            live: activity.live(),
        })
    };
    loop {
        tokio::select! {
            chunk = chunks.recv() => {
                let Some(chunk) = chunk else {
                    // The CLI is done: its last activity stays on the task.
                    if dirty {
                        let _ = events.send(send(&activity)).await;
                    }
                    break;
                };
                partial.extend_from_slice(&chunk);
                while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=end).collect();
                    dirty |= activity.feed(format, &String::from_utf8_lossy(&line));
                }
                if partial.len() > MAX_LINE {
                    partial.clear();
                }
            }
            _ = tick.tick() => {
                let due = match last_sent {
                    None => dirty,
                    Some(at) => {
                        (dirty && at.elapsed() >= MIN_GAP)
                            || (activity.tool_running && at.elapsed() >= KEEPALIVE)
                    }
                };
                if due {
                    if events.send(send(&activity)).await.is_err() {
                        break;
                    }
                    dirty = false;
                    last_sent = Some(Instant::now());
                }
            }
        }
    }
    activity.live()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(format: OutputFormat, text: &str) -> (Activity, Vec<String>) {
        let mut a = Activity::default();
        let mut seen = Vec::new();
        for line in text.lines() {
            if a.feed(format, line) {
                seen.push(a.message());
            }
        }
        (a, seen)
    }

    #[test]
    fn claude_stream_turns_tools_tokens_and_retries() {
        let path = format!(
            "{}/tests/fixtures/claude-write.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let (a, seen) = feed_all(
            OutputFormat::ClaudeJson,
            &std::fs::read_to_string(path).unwrap(),
        );
        assert_eq!(
            seen,
            [
                "activity: turn 1, running tool Write, 1001 tokens",
                "activity: turn 1, last tool Write, 1001 tokens",
                "activity: turn 2, last tool Write, 3002 tokens",
            ]
        );
        assert!(!a.tool_running);

        let path = format!(
            "{}/tests/fixtures/claude-retries-exhausted.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let (_, seen) = feed_all(OutputFormat::ClaudeJson, &text);
        assert_eq!(
            seen[0],
            "waiting: api_retry (overloaded), retrying in 507 ms"
        );
        let limited = r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":2000,"error_status":429,"error":"rate_limit"}"#;
        let (_, seen) = feed_all(OutputFormat::ClaudeJson, limited);
        assert_eq!(seen, ["waiting: rate_limited, retrying in 2000 ms"]);
    }

    #[test]
    fn codex_stream_items_and_reconnects() {
        let path = format!(
            "{}/tests/fixtures/codex-write.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let (a, seen) = feed_all(
            OutputFormat::CodexJsonl,
            &std::fs::read_to_string(path).unwrap(),
        );
        assert_eq!(seen[0], "activity: turn 0, running tool shell, 0 tokens");
        assert_eq!(
            a.message(),
            "activity: turn 3, last tool apply_patch, 1140 tokens"
        );
        let path = format!(
            "{}/tests/fixtures/codex-retries-exhausted.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let (_, seen) = feed_all(
            OutputFormat::CodexJsonl,
            &std::fs::read_to_string(path).unwrap(),
        );
        assert_eq!(seen[0], "waiting: api_retry (1/5)");
    }
}

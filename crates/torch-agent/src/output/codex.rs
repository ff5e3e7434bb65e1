//! `codex exec --json` events.

use serde_json::Value;

use torch_core::{CliError, Usage};

use super::{RateLimit, Verdict, count, error_text, objects, str_of};

/// The last terminal event decides: a `turn.completed` is success; a
/// `turn.failed` or an `error` after the last completed turn is failure
/// (codex may still exit 0). An MCP tool call codex refused (it needed an
/// approval nobody can give) fails the attempt too.
pub(super) fn verdict(stdout: &str) -> Option<Verdict> {
    let mut state: Option<Result<(), String>> = None;
    let mut reconnects = 0usize;
    let mut last_message = None;
    let mut usage = None;
    let mut refused: Vec<String> = Vec::new();
    let mut thread = None;
    for ev in objects(stdout) {
        match str_of(&ev, "type").unwrap_or("") {
            "thread.started" => thread = str_of(&ev, "thread_id").map(str::to_string),
            "turn.started" => reconnects = 0,
            "turn.completed" => {
                state = Some(Ok(()));
                reconnects = 0;
                if let Some(u) = ev.get("usage").filter(|u| u.is_object()) {
                    usage = Some(turn_usage(u));
                }
            }
            "turn.failed" => {
                let msg = ev
                    .get("error")
                    .map(error_text)
                    .unwrap_or_else(|| "turn failed".into());
                state = Some(Err(msg));
            }
            "error" => {
                let msg = error_text(&ev);
                if msg.starts_with("Reconnecting...") {
                    reconnects += 1;
                } else {
                    state = Some(Err(msg));
                }
            }
            "item.completed" => {
                let Some(item) = ev.get("item") else { continue };
                let kind = str_of(item, "type").or_else(|| str_of(item, "item_type"));
                match kind {
                    Some("agent_message" | "assistant_message") => {
                        if let Some(text) = str_of(item, "text") {
                            last_message = Some(text.to_string());
                        }
                    }
                    Some("mcp_tool_call") => {
                        if let Some(why) = refusal(item) {
                            refused.push(why);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let state = state?;
    // Codex says only "… last status: 429 Too Many Requests": no reset time.
    let rate_limit = match &state {
        Err(msg) => {
            let lower = msg.to_lowercase();
            (lower.contains("429")
                || lower.contains("too many requests")
                || lower.contains("rate limit"))
            .then_some(RateLimit { retry_after: None })
        }
        Ok(()) => None,
    };
    let error = match state {
        Err(msg) => Some(CliError {
            kind: if rate_limit.is_some() {
                "rate_limited"
            } else if reconnects > 0 {
                "retries_exhausted"
            } else {
                "api_error"
            }
            .into(),
            detail: if reconnects > 0 {
                format!("after {reconnects} retries: {msg}")
            } else {
                msg
            },
        }),
        Ok(()) if !refused.is_empty() => Some(CliError {
            kind: "tool_refused".into(),
            detail: refused.join("; "),
        }),
        Ok(()) => None,
    };
    Some(Verdict {
        error,
        result: last_message,
        usage,
        session_id: thread,
        rate_limit,
    })
}

/// `server/tool: message` for a failed MCP call codex would not make.
fn refusal(item: &Value) -> Option<String> {
    if str_of(item, "status") != Some("failed") {
        return None;
    }
    let msg = item.get("error").map(error_text).unwrap_or_default();
    let lower = msg.to_lowercase();
    if !(lower.contains("approval") || lower.contains("not allowed") || lower.contains("denied")) {
        return None;
    }
    let tool = match (str_of(item, "server"), str_of(item, "tool")) {
        (Some(s), Some(t)) => format!("{s}/{t}"),
        (None, Some(t)) => t.to_string(),
        _ => "an MCP tool".to_string(),
    };
    Some(format!("{tool}: {msg}"))
}

/// `turn.completed.usage`: `input_tokens` already counts the cached ones.
fn turn_usage(u: &Value) -> Usage {
    Usage {
        tokens_in: count(u, "input_tokens"),
        tokens_out: count(u, "output_tokens"),
        tokens_cached: count(u, "cached_input_tokens"),
        cost_usd: None,
        source: "codex turn.completed".into(),
    }
}

//! Reading an executor's own verdict from its stdout.
//!
//! Agent CLIs do not say what happened in their exit status: Claude Code
//! prints in-run failures (an API error, `error_max_turns`) as its result
//! object with `subtype: "success"`, denies tools without failing, and
//! `codex exec` can exit 0 after `turn.failed` or `error` events. So for
//! [`OutputFormat::ClaudeJson`] and [`OutputFormat::CodexJsonl`] the runner
//! parses the output after the process ends: a failure reported there ends
//! the attempt with its own reason ([`CliError`]: kind and detail) whatever
//! the exit code, and the CLI's token counts and cost become the attempt's
//! [`Usage`].

use std::time::Duration;

use serde_json::Value;

use torch_core::lifecycle::OutputFormat;
use torch_core::{CliError, CriterionResult, Usage};

mod claude;
mod codex;
#[cfg(test)]
mod tests;

/// Longest message or result text quoted in a criterion's detail.
const QUOTE_CHARS: usize = 300;

/// What the executor's output said about its run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Verdict {
    /// The failure it reported, if any; `None` means it reported success.
    pub(crate) error: Option<CliError>,
    /// Its final answer (Claude's `result`, Codex's last agent message).
    pub(crate) result: Option<String>,
    /// The tokens and cost it reported.
    pub(crate) usage: Option<Usage>,
    /// Its session (Claude's `session_id`, Codex's `thread_id`).
    pub(crate) session_id: Option<String>,
    /// It stopped on the model provider's rate limit (then `error.kind` is
    /// `rate_limited`).
    pub(crate) rate_limit: Option<RateLimit>,
}

/// A run the provider's rate limit ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RateLimit {
    /// How long the API said to wait (Claude's last `api_retry` delay), if
    /// it said.
    pub(crate) retry_after: Option<Duration>,
}

/// The session a run started (Claude's `system/init` `session_id`, Codex's
/// `thread.started` `thread_id`), read from the first events of `stdout`:
/// known even when the run was killed before its result.
pub(crate) fn session_of(format: OutputFormat, stdout: &str) -> Option<String> {
    let key = match format {
        OutputFormat::Text => return None,
        OutputFormat::ClaudeJson => "session_id",
        OutputFormat::CodexJsonl => "thread_id",
    };
    objects(stdout)
        .take(64)
        .find_map(|v| str_of(&v, key).map(str::to_string))
}

/// Parses `stdout` in `format`. `None` for [`OutputFormat::Text`] (nothing
/// to parse) and when the output holds no verdict at all (for example a
/// Claude run killed before its result object, or a tail that cut it).
pub(crate) fn parse(format: OutputFormat, stdout: &str) -> Option<Verdict> {
    match format {
        OutputFormat::Text => None,
        OutputFormat::ClaudeJson => claude::verdict(stdout),
        OutputFormat::CodexJsonl => codex::verdict(stdout),
    }
}

/// The name used in criteria (`claude-json`, `codex-jsonl`).
pub(crate) fn format_name(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Text => "text",
        OutputFormat::ClaudeJson => "claude-json",
        OutputFormat::CodexJsonl => "codex-jsonl",
    }
}

/// The error for an output that holds no verdict.
pub(crate) fn no_result(format: OutputFormat) -> CliError {
    CliError {
        kind: "no_result".into(),
        detail: format!(
            "no result found in the executor's output ({})",
            format_name(format)
        ),
    }
}

/// The one-line reason of an attempt the CLI reported as failed.
pub(crate) fn reason(e: &CliError) -> String {
    format!("agent error ({}): {}", e.kind, quote(&e.detail))
}

/// The evidence entry for an executor with a structured output: holds when
/// the output reports success, fails when it reports an error or nothing.
pub(crate) fn criterion(format: OutputFormat, verdict: Option<&Verdict>) -> CriterionResult {
    let criterion = format!("executor result ({})", format_name(format));
    let (ok, detail) = match verdict {
        None => (false, no_result(format).detail),
        Some(v) => {
            let mut parts = Vec::new();
            if let Some(e) = &v.error {
                parts.push(format!(
                    "reported an error: {}: {}",
                    e.kind,
                    quote(&e.detail)
                ));
            }
            // The error message often is the result text: say it once.
            if let Some(r) = &v.result
                && !v
                    .error
                    .as_ref()
                    .is_some_and(|e| e.detail.contains(r.trim()))
            {
                parts.push(format!("result: {}", quote(r)));
            }
            if let Some(c) = v.usage.as_ref().and_then(|u| u.cost_usd) {
                parts.push(format!("cost ${c:.4}"));
            }
            if parts.is_empty() {
                parts.push("succeeded".into());
            }
            (v.error.is_none(), parts.join("; "))
        }
    };
    CriterionResult {
        criterion,
        ok,
        detail,
    }
}

fn quote(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// JSON objects on the lines of `text`, in order; unparsable lines (a
/// tail's cut first line, plain log text) are skipped.
fn objects(text: &str) -> impl DoubleEndedIterator<Item = Value> + '_ {
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
}

/// `{"message": …}` or a bare string, else the JSON itself.
fn error_text(v: &Value) -> String {
    match v.get("message") {
        Some(m) => value_text(m),
        None => value_text(v),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("message") => error_text(v),
        other => other.to_string(),
    }
}

/// A non-negative integer field, 0 when absent.
fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

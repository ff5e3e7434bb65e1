//! Reading an executor's own verdict from its stdout.
//!
//! Agent CLIs do not always say what happened in their exit status: Claude
//! Code prints in-run failures (missing auth, `error_max_turns`) as its
//! result object, and `codex exec` can exit 0 after `turn.failed` or
//! `error` events. So for [`OutputFormat::ClaudeJson`] and
//! [`OutputFormat::CodexJsonl`] the runner parses the output after the
//! process ends, and an error reported there fails the attempt even when the
//! exit code is 0 (the "lying status").

use serde_json::Value;

use torch_core::CriterionResult;
use torch_core::lifecycle::OutputFormat;

/// Longest message or result text quoted in a criterion's detail.
const QUOTE_CHARS: usize = 300;

/// What the executor's output said about its run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Verdict {
    /// The failure it reported, if any; `None` means it reported success.
    pub(crate) error: Option<String>,
    /// Its final answer (Claude's `result`, Codex's last agent message).
    pub(crate) result: Option<String>,
    /// Claude's `total_cost_usd` (Codex reports no cost).
    pub(crate) cost_usd: Option<f64>,
}

/// Parses `stdout` in `format`. `None` for [`OutputFormat::Text`] (nothing
/// to parse) and when the output holds no verdict at all (for example a
/// Claude run killed before its result object, or a tail that cut it).
pub(crate) fn parse(format: OutputFormat, stdout: &str) -> Option<Verdict> {
    match format {
        OutputFormat::Text => None,
        OutputFormat::ClaudeJson => claude(stdout),
        OutputFormat::CodexJsonl => codex(stdout),
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

/// The evidence entry for an executor with a structured output: holds when
/// the output reports success, fails when it reports an error or nothing.
pub(crate) fn criterion(format: OutputFormat, verdict: Option<&Verdict>) -> CriterionResult {
    let criterion = format!("executor result ({})", format_name(format));
    let (ok, detail) = match verdict {
        None => (
            false,
            "no result found in the executor's output".to_string(),
        ),
        Some(v) => {
            let mut parts = Vec::new();
            if let Some(e) = &v.error {
                parts.push(format!("reported an error: {}", quote(e)));
            }
            // The error message often is the result text: say it once.
            if let Some(r) = &v.result
                && !v.error.as_deref().is_some_and(|e| e.contains(r.trim()))
            {
                parts.push(format!("result: {}", quote(r)));
            }
            if let Some(c) = v.cost_usd {
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

/// JSON objects on the lines of `text`, last first; unparsable lines (a
/// tail's cut first line, plain log text) are skipped.
fn objects_from_end(text: &str) -> impl Iterator<Item = Value> + '_ {
    text.lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
}

/// Claude Code `--output-format json` (one result object) or `stream-json`
/// (its last line is the result object).
fn claude(stdout: &str) -> Option<Verdict> {
    let whole = serde_json::from_str::<Value>(stdout.trim())
        .ok()
        .filter(is_claude_result);
    let result = whole.or_else(|| objects_from_end(stdout).find(is_claude_result))?;
    let text = result
        .get("result")
        .and_then(Value::as_str)
        .map(str::to_string);
    let subtype = result.get("subtype").and_then(Value::as_str).unwrap_or("");
    let is_error = result.get("is_error").and_then(Value::as_bool) == Some(true)
        || subtype.starts_with("error");
    let error = is_error.then(|| {
        let mut what = Vec::new();
        if !subtype.is_empty() && subtype != "success" {
            what.push(subtype.to_string());
        }
        if let Some(status) = result.get("api_error_status").filter(|v| !v.is_null()) {
            what.push(format!("API status {status}"));
        }
        let errors: Vec<String> = result
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(value_text).collect())
            .unwrap_or_default();
        let detail = match (&text, errors.is_empty()) {
            (Some(t), _) if !t.trim().is_empty() => t.clone(),
            (_, false) => errors.join("; "),
            _ => "is_error is true".into(),
        };
        what.push(detail);
        what.join(": ")
    });
    Some(Verdict {
        error,
        result: text,
        cost_usd: result.get("total_cost_usd").and_then(Value::as_f64),
    })
}

fn is_claude_result(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("result")
}

/// `codex exec --json` events. The last terminal event decides: a
/// `turn.completed` is success; a `turn.failed` or an `error` after the last
/// completed turn is failure (codex may still exit 0).
fn codex(stdout: &str) -> Option<Verdict> {
    let mut events: Vec<Value> = objects_from_end(stdout).collect();
    events.reverse();
    let mut state: Option<Result<(), String>> = None;
    let mut last_message = None;
    for ev in &events {
        match ev.get("type").and_then(Value::as_str).unwrap_or("") {
            "turn.completed" => state = Some(Ok(())),
            "turn.failed" => {
                let msg = ev
                    .get("error")
                    .map(error_text)
                    .unwrap_or_else(|| "turn failed".into());
                state = Some(Err(msg));
            }
            "error" => state = Some(Err(error_text(ev))),
            "item.completed" => {
                let item = ev.get("item");
                let kind = item
                    .and_then(|i| i.get("type").or_else(|| i.get("item_type")))
                    .and_then(Value::as_str);
                if matches!(kind, Some("agent_message" | "assistant_message"))
                    && let Some(text) = item.and_then(|i| i.get("text")).and_then(Value::as_str)
                {
                    last_message = Some(text.to_string());
                }
            }
            _ => {}
        }
    }
    let state = state?;
    Some(Verdict {
        error: state.err(),
        result: last_message,
        cost_usd: None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_results() {
        let ok = r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":2100,"num_turns":3,"result":"Fixed the bug.","session_id":"s1","total_cost_usd":0.0421,"usage":{"input_tokens":10}}"#;
        let v = parse(OutputFormat::ClaudeJson, ok).unwrap();
        assert_eq!(v.error, None);
        assert_eq!(v.result.as_deref(), Some("Fixed the bug."));
        assert_eq!(v.cost_usd, Some(0.0421));
        let c = criterion(OutputFormat::ClaudeJson, Some(&v));
        assert!(c.ok);
        assert_eq!(c.criterion, "executor result (claude-json)");
        assert_eq!(c.detail, "result: Fixed the bug.; cost $0.0421");

        // In-run failure printed as the result, exit status 0.
        let auth = r#"{"type":"result","subtype":"success","is_error":true,"result":"Invalid API key · Please run /login","api_error_status":401,"total_cost_usd":0}"#;
        let v = parse(OutputFormat::ClaudeJson, auth).unwrap();
        assert_eq!(
            v.error.as_deref(),
            Some("API status 401: Invalid API key · Please run /login")
        );
        let c = criterion(OutputFormat::ClaudeJson, Some(&v));
        assert!(!c.ok);
        assert!(
            c.detail.starts_with("reported an error: API status 401"),
            "{}",
            c.detail
        );

        let turns = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":5,"total_cost_usd":0.3}"#;
        let v = parse(OutputFormat::ClaudeJson, turns).unwrap();
        assert_eq!(
            v.error.as_deref(),
            Some("error_max_turns: is_error is true")
        );
        let errs = r#"{"type":"result","subtype":"error_during_execution","is_error":false,"errors":["tool crashed",{"message":"boom"}]}"#;
        let v = parse(OutputFormat::ClaudeJson, errs).unwrap();
        assert_eq!(
            v.error.as_deref(),
            Some("error_during_execution: tool crashed; boom"),
            "an error subtype counts even without is_error"
        );

        // stream-json: many lines, the last one is the result; a cut first line.
        let stream = concat!(
            "ial\":true}\n",
            r#"{"type":"system","subtype":"init","session_id":"s1","tools":[]}"#,
            "\n",
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}}"#,
            "\nsome log line\n",
            r#"{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.01}"#,
            "\n"
        );
        let v = parse(OutputFormat::ClaudeJson, stream).unwrap();
        assert_eq!((v.error, v.result.as_deref()), (None, Some("done")));

        // Killed before the result (SIGTERM leaves none), or not JSON at all.
        let cut = r#"{"type":"system","subtype":"init"}"#;
        assert_eq!(parse(OutputFormat::ClaudeJson, cut), None);
        assert_eq!(parse(OutputFormat::ClaudeJson, "Error: bad flag"), None);
        let c = criterion(OutputFormat::ClaudeJson, None);
        assert!(!c.ok);
        assert_eq!(c.detail, "no result found in the executor's output");
        assert_eq!(parse(OutputFormat::Text, ok), None);
    }

    #[test]
    fn codex_events() {
        let ok = concat!(
            r#"{"type":"thread.started","thread_id":"t1"}"#,
            "\n",
            r#"{"type":"turn.started"}"#,
            "\n",
            r#"{"type":"item.completed","item":{"id":"i0","type":"reasoning","text":"thinking"}}"#,
            "\n",
            r#"{"type":"item.completed","item":{"id":"i1","type":"command_execution","command":"cargo test","exit_code":1,"status":"failed"}}"#,
            "\n",
            r#"{"type":"item.completed","item":{"id":"i2","type":"agent_message","text":"All tests pass now."}}"#,
            "\n",
            r#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"output_tokens":20}}"#,
            "\n"
        );
        let v = parse(OutputFormat::CodexJsonl, ok).unwrap();
        assert_eq!(v.error, None);
        assert_eq!(v.result.as_deref(), Some("All tests pass now."));
        assert_eq!(v.cost_usd, None);
        assert!(criterion(OutputFormat::CodexJsonl, Some(&v)).ok);

        // Capacity error then turn.failed: codex may still exit 0.
        let failed = concat!(
            r#"{"type":"thread.started","thread_id":"t1"}"#,
            "\n",
            r#"{"type":"turn.started"}"#,
            "\n",
            r#"{"type":"error","message":"Selected model is at capacity. Please try a different model."}"#,
            "\n",
            r#"{"type":"turn.failed","error":{"message":"Selected model is at capacity."}}"#,
            "\n"
        );
        let v = parse(OutputFormat::CodexJsonl, failed).unwrap();
        assert_eq!(v.error.as_deref(), Some("Selected model is at capacity."));
        let c = criterion(OutputFormat::CodexJsonl, Some(&v));
        assert!(!c.ok);
        assert_eq!(c.criterion, "executor result (codex-jsonl)");

        // A transient error (reconnect) followed by a completed turn is fine;
        // an error after the last completed turn is not.
        let retried = concat!(
            r#"{"type":"error","message":"Reconnecting... 1/5"}"#,
            "\n",
            r#"{"type":"item.completed","item":{"id":"i1","item_type":"assistant_message","text":"ok"}}"#,
            "\n",
            r#"{"type":"turn.completed","usage":{}}"#,
            "\n"
        );
        let v = parse(OutputFormat::CodexJsonl, retried).unwrap();
        assert_eq!((v.error, v.result.as_deref()), (None, Some("ok")));
        let late = format!(
            "{retried}{}\n",
            r#"{"type":"error","message":"stream closed"}"#
        );
        let v = parse(OutputFormat::CodexJsonl, &late).unwrap();
        assert_eq!(v.error.as_deref(), Some("stream closed"));

        // No terminal event at all: no verdict.
        let partial = r#"{"type":"thread.started","thread_id":"t1"}"#;
        assert_eq!(parse(OutputFormat::CodexJsonl, partial), None);
        assert_eq!(parse(OutputFormat::CodexJsonl, ""), None);

        let long = "x".repeat(1000);
        assert_eq!(quote(&long).chars().count(), QUOTE_CHARS + 1);
    }
}

//! Claude Code's `--output-format json` (one result object) or
//! `stream-json` (events, the last one the result object).

use std::time::Duration;

use serde_json::Value;

use torch_core::{CliError, Usage};

use super::{RateLimit, Verdict, count, objects, str_of, value_text};

/// The verdict of the last result object in `stdout`.
pub(super) fn verdict(stdout: &str) -> Option<Verdict> {
    let whole = serde_json::from_str::<Value>(stdout.trim())
        .ok()
        .filter(is_result);
    let result = whole.or_else(|| objects(stdout).rev().find(is_result))?;
    let retries = objects(stdout)
        .filter(|v| {
            str_of(v, "type") == Some("system") && str_of(v, "subtype") == Some("api_retry")
        })
        .count();
    let text = str_of(&result, "result").map(str::to_string);
    let mut error = error(&result, text.as_deref(), retries);
    // A 429 at the end: the provider's rate limit, with the delay of the
    // last retry Claude announced for it (it honours `retry-after`).
    let rate_limit =
        (result.get("api_error_status").and_then(Value::as_u64) == Some(429)).then(|| RateLimit {
            retry_after: objects(stdout)
                .rev()
                .find(|v| {
                    str_of(v, "subtype") == Some("api_retry")
                        && v.get("error_status").and_then(Value::as_u64) == Some(429)
                })
                .and_then(|v| v.get("retry_delay_ms").and_then(Value::as_u64))
                .map(Duration::from_millis),
        });
    if let (Some(_), Some(e)) = (&rate_limit, error.as_mut()) {
        e.kind = "rate_limited".into();
    }
    Some(Verdict {
        error,
        result: text,
        usage: usage(&result),
        session_id: str_of(&result, "session_id").map(str::to_string),
        rate_limit,
    })
}

fn is_result(v: &Value) -> bool {
    str_of(v, "type") == Some("result")
}

/// Judged by `is_error`, `terminal_reason`, `api_error_status`, the error
/// subtypes and `permission_denials`, never by `subtype == "success"` alone
/// (an API error says `subtype: "success"` with `is_error: true`).
fn error(r: &Value, text: Option<&str>, retries: usize) -> Option<CliError> {
    let subtype = str_of(r, "subtype").unwrap_or("");
    let terminal = str_of(r, "terminal_reason").unwrap_or("");
    let is_error = r.get("is_error").and_then(Value::as_bool) == Some(true);
    let status = r.get("api_error_status").filter(|v| !v.is_null());
    let denials: Vec<String> = r
        .get("permission_denials")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(denial).collect())
        .unwrap_or_default();
    let errors: Vec<String> = r
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(value_text).collect())
        .unwrap_or_default();
    let said = match (text.filter(|t| !t.trim().is_empty()), errors.is_empty()) {
        (Some(t), _) => t.to_string(),
        (None, false) => errors.join("; "),
        (None, true) => String::new(),
    };
    let with_said = |head: String| {
        if said.is_empty() {
            head
        } else if head.is_empty() {
            said.clone()
        } else {
            format!("{head}: {said}")
        }
    };
    let kind = if status.is_some() || terminal == "api_error" {
        if retries > 0 {
            "retries_exhausted"
        } else {
            "api_error"
        }
    } else if subtype == "error_max_turns" || terminal == "max_turns" {
        "max_turns"
    } else if subtype == "error_max_budget_usd" {
        "max_budget"
    } else if !denials.is_empty() {
        "permission_denied"
    } else if is_error || subtype.starts_with("error") {
        "execution_error"
    } else {
        return None;
    };
    let detail = match kind {
        "api_error" | "retries_exhausted" => {
            let mut head = match status {
                Some(s) => format!("API status {s}"),
                None => "API error".to_string(),
            };
            if retries > 0 {
                head.push_str(&format!(" after {retries} retries"));
            }
            with_said(head)
        }
        "permission_denied" => with_said(format!("denied {}", denials.join(", "))),
        _ if subtype.is_empty() || subtype == "success" => with_said(if said.is_empty() {
            "is_error is true".into()
        } else {
            String::new()
        }),
        _ => with_said(subtype.to_string()),
    };
    Some(CliError {
        kind: kind.into(),
        detail,
    })
}

/// `Bash (rm -rf x)`: the tool and what it was asked to do.
fn denial(d: &Value) -> String {
    let tool = str_of(d, "tool_name").unwrap_or("a tool");
    let input = d.get("tool_input");
    let what = input
        .and_then(|i| {
            ["command", "file_path", "path", "url", "pattern"]
                .iter()
                .find_map(|k| str_of(i, k))
        })
        .map(str::to_string);
    match what {
        Some(w) => format!("{tool} ({w})"),
        None => tool.to_string(),
    }
}

/// `usage` (uncached input, cache writes and reads, output) and
/// `total_cost_usd`. Input counts all three kinds of input tokens.
fn usage(r: &Value) -> Option<Usage> {
    let u = r.get("usage").filter(|u| u.is_object());
    let cost = r.get("total_cost_usd").and_then(Value::as_f64);
    if u.is_none() && cost.is_none() {
        return None;
    }
    let u = u.cloned().unwrap_or(Value::Null);
    let cached = count(&u, "cache_read_input_tokens");
    Some(Usage {
        tokens_in: count(&u, "input_tokens") + count(&u, "cache_creation_input_tokens") + cached,
        tokens_out: count(&u, "output_tokens"),
        tokens_cached: cached,
        cost_usd: cost,
        source: "claude-code result".into(),
    })
}

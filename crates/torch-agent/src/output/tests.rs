//! Verdicts from synthetic outputs and from outputs recorded from the real
//! CLIs (`tests/fixtures`, Claude Code 2.1.332 and Codex 0.171.0 against the
//! scripted model server in `tools/model-server`).

use super::*;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn kind(v: &Verdict) -> Option<&str> {
    v.error.as_ref().map(|e| e.kind.as_str())
}

#[test]
fn claude_recorded_runs() {
    let v = parse(OutputFormat::ClaudeJson, &fixture("claude-write.jsonl")).unwrap();
    assert_eq!(v.error, None);
    assert_eq!(v.result.as_deref(), Some("Wrote hello.txt."));
    assert_eq!(
        v.usage,
        Some(Usage {
            tokens_in: 3000,
            tokens_out: 50,
            tokens_cached: 800,
            cost_usd: Some(0.00996),
            source: "claude-code result".into(),
        })
    );
    assert_eq!(
        v.session_id.as_deref(),
        Some("1d81d1b6-7f0f-42eb-a651-20367e3b646e")
    );
    let c = criterion(OutputFormat::ClaudeJson, Some(&v));
    assert!(c.ok);
    assert_eq!(c.detail, "result: Wrote hello.txt.; cost $0.0100");

    // A 500 with no retries: exit 1, `subtype: "success"`, `is_error: true`.
    let v = parse(OutputFormat::ClaudeJson, &fixture("claude-api-error.jsonl")).unwrap();
    let e = v.error.clone().unwrap();
    assert_eq!(e.kind, "api_error");
    assert!(
        e.detail
            .starts_with("API status 500: API Error: 500 scripted failure"),
        "{e:?}"
    );
    assert_eq!(
        reason(&e).split(':').next(),
        Some("agent error (api_error)")
    );

    // A 529 retried once, then given up.
    let v = parse(
        OutputFormat::ClaudeJson,
        &fixture("claude-retries-exhausted.jsonl"),
    )
    .unwrap();
    let e = v.error.unwrap();
    assert_eq!(e.kind, "retries_exhausted");
    assert!(
        e.detail.starts_with("API status 529 after 1 retries"),
        "{e:?}"
    );

    // Bash denied without a prompt: exit 0, `is_error: false`.
    let v = parse(
        OutputFormat::ClaudeJson,
        &fixture("claude-permission-denied.jsonl"),
    )
    .unwrap();
    let e = v.error.unwrap();
    assert_eq!(e.kind, "permission_denied");
    assert_eq!(
        e.detail,
        "denied Bash (rm -rf /tmp/nothing-here): could not"
    );
}

#[test]
fn codex_recorded_runs() {
    let v = parse(OutputFormat::CodexJsonl, &fixture("codex-write.jsonl")).unwrap();
    assert_eq!(v.error, None);
    assert_eq!(v.result.as_deref(), Some("Wrote a.txt and b.txt."));
    assert_eq!(
        v.usage,
        Some(Usage {
            tokens_in: 1100,
            tokens_out: 40,
            tokens_cached: 100,
            cost_usd: None,
            source: "codex turn.completed".into(),
        })
    );
    assert_eq!(
        v.session_id.as_deref(),
        Some("01a250db-fcb3-7e32-aa35-2bc21d5c3187")
    );
    assert!(criterion(OutputFormat::CodexJsonl, Some(&v)).ok);

    let v = parse(OutputFormat::CodexJsonl, &fixture("codex-api-error.jsonl")).unwrap();
    assert_eq!(kind(&v), Some("api_error"));
    assert!(v.error.unwrap().detail.contains("scripted bad request"));

    let v = parse(
        OutputFormat::CodexJsonl,
        &fixture("codex-retries-exhausted.jsonl"),
    )
    .unwrap();
    let e = v.error.unwrap();
    assert_eq!(e.kind, "retries_exhausted");
    assert!(
        e.detail
            .starts_with("after 5 retries: unexpected status 401"),
        "{e:?}"
    );
}

#[test]
fn claude_results() {
    let ok = r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":2100,"num_turns":3,"result":"Fixed the bug.","session_id":"s1","total_cost_usd":0.0421,"usage":{"input_tokens":10}}"#;
    let v = parse(OutputFormat::ClaudeJson, ok).unwrap();
    assert_eq!(v.error, None);
    assert_eq!(v.result.as_deref(), Some("Fixed the bug."));
    assert_eq!(v.usage.as_ref().and_then(|u| u.cost_usd), Some(0.0421));
    let c = criterion(OutputFormat::ClaudeJson, Some(&v));
    assert!(c.ok);
    assert_eq!(c.criterion, "executor result (claude-json)");
    assert_eq!(c.detail, "result: Fixed the bug.; cost $0.0421");

    // In-run failure printed as the result, exit status 0.
    let auth = r#"{"type":"result","subtype":"success","is_error":true,"result":"Invalid API key · Please run /login","api_error_status":401,"total_cost_usd":0}"#;
    let v = parse(OutputFormat::ClaudeJson, auth).unwrap();
    let e = v.error.clone().unwrap();
    assert_eq!(e.kind, "api_error");
    assert_eq!(
        e.detail,
        "API status 401: Invalid API key · Please run /login"
    );
    let c = criterion(OutputFormat::ClaudeJson, Some(&v));
    assert!(!c.ok);
    assert!(
        c.detail
            .starts_with("reported an error: api_error: API status 401"),
        "{}",
        c.detail
    );

    let turns = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":5,"total_cost_usd":0.3}"#;
    let v = parse(OutputFormat::ClaudeJson, turns).unwrap();
    assert_eq!(kind(&v), Some("max_turns"));
    assert_eq!(v.error.unwrap().detail, "error_max_turns");
    let errs = r#"{"type":"result","subtype":"error_during_execution","is_error":false,"errors":["tool crashed",{"message":"boom"}]}"#;
    let v = parse(OutputFormat::ClaudeJson, errs).unwrap();
    let e = v.error.unwrap();
    assert_eq!(
        e.kind, "execution_error",
        "an error subtype counts even without is_error"
    );
    assert_eq!(e.detail, "error_during_execution: tool crashed; boom");
    let bare = r#"{"type":"result","subtype":"success","is_error":true}"#;
    let e = parse(OutputFormat::ClaudeJson, bare)
        .unwrap()
        .error
        .unwrap();
    assert_eq!(
        (e.kind.as_str(), e.detail.as_str()),
        ("execution_error", "is_error is true")
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
    assert_eq!(
        c.detail,
        "no result found in the executor's output (claude-json)"
    );
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
    assert_eq!(
        v.usage.as_ref().map(|u| (u.tokens_in, u.tokens_out)),
        Some((100, 20))
    );
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
    assert_eq!(
        v.error.as_ref().map(|e| e.detail.as_str()),
        Some("Selected model is at capacity.")
    );
    let c = criterion(OutputFormat::CodexJsonl, Some(&v));
    assert!(!c.ok);
    assert_eq!(c.criterion, "executor result (codex-jsonl)");

    // A reconnect followed by a completed turn is fine; an error after the
    // last completed turn is not.
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
    assert_eq!(v.error.map(|e| e.detail), Some("stream closed".to_string()));

    // An MCP call codex refused for want of an approval.
    let refused = concat!(
        r#"{"type":"item.completed","item":{"id":"i1","type":"mcp_tool_call","server":"torch","tool":"lock","status":"failed","error":{"message":"MCP tool call requires approval, but approval policy is never"}}}"#,
        "\n",
        r#"{"type":"turn.completed","usage":{}}"#,
        "\n"
    );
    let e = parse(OutputFormat::CodexJsonl, refused)
        .unwrap()
        .error
        .unwrap();
    assert_eq!(e.kind, "tool_refused");
    assert!(
        e.detail
            .starts_with("torch/lock: MCP tool call requires approval"),
        "{e:?}"
    );

    // No terminal event at all: no verdict.
    let partial = r#"{"type":"thread.started","thread_id":"t1"}"#;
    assert_eq!(parse(OutputFormat::CodexJsonl, partial), None);
    assert_eq!(parse(OutputFormat::CodexJsonl, ""), None);

    let long = "x".repeat(1000);
    assert_eq!(quote(&long).chars().count(), QUOTE_CHARS + 1);
}

#[test]
fn rate_limits_and_sessions_from_recorded_runs() {
    // Claude: a 429 with `retry-after: 2`, retried once, then given up.
    let text = fixture("claude-rate-limited.jsonl");
    let v = parse(OutputFormat::ClaudeJson, &text).unwrap();
    assert_eq!(kind(&v), Some("rate_limited"));
    let wait = v.rate_limit.and_then(|r| r.retry_after).unwrap();
    assert!(
        (2000..3000).contains(&wait.as_millis()),
        "retry-after with jitter: {wait:?}"
    );
    let session = session_of(OutputFormat::ClaudeJson, &text).unwrap();
    assert_eq!(v.session_id.as_deref(), Some(session.as_str()));

    // Codex: no reset time, only the status.
    let text = fixture("codex-rate-limited.jsonl");
    let v = parse(OutputFormat::CodexJsonl, &text).unwrap();
    assert_eq!(kind(&v), Some("rate_limited"));
    assert_eq!(v.rate_limit.map(|r| r.retry_after), Some(None));
    assert_eq!(
        session_of(OutputFormat::CodexJsonl, &text).as_deref(),
        Some("01a25193-c26b-7e11-b74f-a2cf5d879008")
    );

    // Other failures are not rate limits; a killed run still names its session.
    let v = parse(OutputFormat::ClaudeJson, &fixture("claude-api-error.jsonl")).unwrap();
    assert_eq!(v.rate_limit, None);
    let head = fixture("claude-write.jsonl");
    let first = head.lines().next().unwrap();
    assert!(session_of(OutputFormat::ClaudeJson, first).is_some());
    assert_eq!(session_of(OutputFormat::Text, first), None);
}

//! `torch mcp` wired into the shipped Claude Code and Codex templates, with
//! the real CLIs against the scripted model server: each CLI calls
//! `send_message` to the other's task and `acquire_lock` through its MCP
//! client, reads its inbox, then waits (`read_inbox` on thread `go`) until
//! the test, having seen both locks held in `torch locks list --json`, sends
//! `go` as the operator. Each task's own output shows the other's message
//! arrived verified; both locks are released when the tasks end.
//!
//! The templates' sandbox network is `host`, so `send_message` reaches the
//! task's own agent endpoint (under the `hub` network it cannot yet; see
//! docs/collaboration.md).

use std::fs;

use serde_json::{Value, json};

use crate::agents::{ModelServer, agent_clis, start_fleet};
use crate::harness::{Agent, TestDir, secs};

/// Calls of one torch tool, in Claude's (`mcp__torch__NAME`) or Codex's
/// (namespace `mcp__torch`) form.
fn call(claude: bool, tool: &str, input: Value) -> Value {
    if claude {
        json!({"tool": format!("mcp__torch__{tool}"), "input": input})
    } else {
        json!({"tool": tool, "namespace": "mcp__torch", "input": input})
    }
}

/// One CLI's conversation: message the peer task, take a lock, try to
/// release it with a wrong fence (refused), read the peer's message, wait
/// for `go`, finish.
fn steps(claude: bool, me: &str, peer_task: &str) -> Value {
    json!([
        call(claude, "send_message", json!({
            "task": peer_task, "thread": format!("from-{me}"), "text": format!("hello from {me}")
        })),
        call(claude, "acquire_lock", json!({"name": format!("{me}-lock"), "ttl_seconds": 600})),
        // A refused call is a tool error the model reads, not a failed attempt.
        call(claude, "release_lock", json!({"name": format!("{me}-lock"), "fence": 999_999})),
        call(claude, "read_inbox", json!({
            "thread": if me == "claude" { "from-codex" } else { "from-claude" },
            "wait_seconds": 120
        })),
        call(claude, "read_inbox", json!({"thread": "go", "wait_seconds": 300})),
        {"text": format!("{me}: done")}
    ])
}

/// Every JSON value in `v` (depth first), strings holding JSON parsed too.
fn walk(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::String(s) => {
            if let Ok(inner) = serde_json::from_str::<Value>(s)
                && (inner.is_object() || inner.is_array())
            {
                walk(&inner, out);
                out.push(inner);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        Value::Object(o) => o.values().for_each(|x| walk(x, out)),
        _ => {}
    }
}

/// The inbox messages a task's CLI printed (as tool results in its JSON
/// output) with `body`.
fn inbox_messages(stdout: &str, body: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for line in stdout.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            walk(&v, &mut all);
            all.push(v);
        }
    }
    all.into_iter()
        .filter_map(|v| v.get("messages").and_then(Value::as_array).cloned())
        .flatten()
        .filter(|m| m["body"] == body)
        .collect()
}

#[test]
fn claude_and_codex_message_each_other_and_take_locks_through_torch_mcp() {
    let Some(clis) = agent_clis() else { return };
    let dir = TestDir::new("agents-mcp");
    let server = ModelServer::start(&dir, &json!({}));
    let hub = start_fleet(&dir, &clis, &server, 0);
    let api = hub.api();
    // A gate holds both CLI tasks back until the script names their ids.
    let out = dir.subdir("out");
    let token = hub.token(&dir, "agent");
    let out_s = out.to_string_lossy().into_owned();
    let _gate_agent = Agent::start_args(
        &dir,
        &hub.url,
        &token,
        "gate",
        "gate",
        1,
        &["--sandbox-write", &out_s],
    );
    let go = out.join("go");
    let ids = api.submit(vec![
        json!({"name": "gate", "skills": ["gate"], "max_retries": 0,
               "command": ["sh", "-c", format!("while [ ! -e {} ]; do sleep 0.1; done", go.display())]}),
        json!({"name": "codex-mcp", "prompt": "[x-mcp] talk to claude", "skills": ["go"],
               "depends_on": ["gate"], "max_retries": 0, "timeout": "5m"}),
        json!({"name": "claude-mcp", "prompt": "[c-mcp] talk to codex", "skills": ["review"],
               "depends_on": ["gate"], "max_retries": 0, "timeout": "5m"}),
    ]);
    let (codex, claude) = (ids[1].clone(), ids[2].clone());
    let script = json!({
        "c-mcp": steps(true, "claude", &codex),
        "x-mcp": steps(false, "codex", &claude),
    });
    let tmp = dir.write("model-script.json.tmp", &script.to_string());
    fs::rename(&tmp, dir.join("model-script.json")).expect("replace the script");
    fs::write(&go, "").expect("open the gate");

    // Both locks held by their tasks while both wait for `go`.
    let holders = dir.wait_for("both locks held", secs(120), || {
        let list = hub.cli(&dir).json(&["locks", "list"]);
        let holder = |name: &str| {
            list["locks"]
                .as_array()?
                .iter()
                .find(|l| l["name"] == name)?["holders"][0]["holder"]
                .as_str()
                .map(str::to_string)
        };
        Some((holder("claude-lock")?, holder("codex-lock")?))
    });
    assert_eq!(holders.0, format!("task:{claude}"));
    assert_eq!(holders.1, format!("task:{codex}"));
    for id in [&claude, &codex] {
        hub.cli(&dir)
            .run(&["msg", "send", "--task", id, "--thread", "go", "go"])
            .assert_code(0, "operator's go");
    }
    for id in [&claude, &codex] {
        api.wait_state(&dir, id, "succeeded", secs(120));
    }

    // Each CLI read the other's message, verified, from the other's agent.
    for (id, from) in [(&codex, "claude"), (&claude, "codex")] {
        let logs = api.get(&format!("/api/v1/tasks/{id}/logs"));
        let stdout = logs["stdout"].as_str().unwrap_or_default();
        let got = inbox_messages(stdout, &format!("hello from {from}"));
        assert!(!got.is_empty(), "no message from {from} in {stdout}");
        for m in &got {
            assert_eq!(m["verified"], true, "{m}");
            assert_eq!(m["delivery"], "direct", "{m}");
        }
        assert!(
            stdout.contains("(stale_fence)") || stdout.contains("(not_held)"),
            "the refused release reached the model as a tool error: {stdout}"
        );
    }
    // Their attempts ended: their locks go (the hub checks holders' attempts
    // every half second).
    dir.wait_for("both locks released", secs(30), || {
        let list = hub.cli(&dir).json(&["locks", "list"]);
        let held = list["locks"].as_array().is_some_and(|a| {
            a.iter()
                .any(|l| l["name"] == "claude-lock" || l["name"] == "codex-lock")
        });
        (!held).then_some(())
    });
    // Both CLIs went through their MCP clients: the model saw tool results.
    let turns = server
        .requests()
        .iter()
        .filter(|r| r["tag"] == "c-mcp" || r["tag"] == "x-mcp")
        .count();
    assert!(turns >= 12, "six turns each: {turns}");
}

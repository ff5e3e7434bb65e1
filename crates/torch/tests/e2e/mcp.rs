//! `torch mcp` driven by the official Python MCP client (PyPI `mcp`) from
//! inside a real task: the client starts `torch mcp` over stdio with the
//! task's token, lists the tools and calls each one, checking every result
//! against the tool's output schema (`tests/mcp/mcp_client.py`): a signed
//! message to itself read back verified and acked, an operator's help
//! request accepted (and its own refused), a lock held while a delegated
//! child waits for it, and the wait that would close that cycle refused
//! with the cycle named.
//!
//! The agent runs its tasks in the default `hub` sandbox network: the
//! messaging tools reach the task's own agent through `TORCH_AGENT_SOCKET`,
//! the others the hub through `TORCH_HUB_SOCKET`.
//!
//! `.ci/run` installs `mcp` into its venv and points `TORCH_TEST_PYTHON` at
//! it. Under CI a missing client fails the test; elsewhere the test says it
//! cannot run and passes.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{Agent, Hub, TEST_PYTHON_ENV, TORCH, TestDir, secs};

fn python() -> Option<String> {
    let python = std::env::var(TEST_PYTHON_ENV).unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import mcp, jsonschema"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the MCP test needs the Python `mcp` package under CI ({python}); .ci/run installs it"
    );
    eprintln!("MCP test cannot run here: no `mcp` package for {python}; see .ci/run");
    None
}

#[test]
fn the_python_mcp_client_drives_every_tool_from_inside_a_task() {
    let Some(python) = python() else {
        return;
    };
    let dir = TestDir::new("mcp");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    // The task runs the client script from the source tree with the venv's
    // Python (under $HOME here): the sandbox must let the task read them.
    let prefixes = Command::new(&python)
        .args([
            "-c",
            "import sys; print(sys.prefix); print(sys.base_prefix)",
        ])
        .output()
        .expect("ask python for its prefixes");
    let prefixes = String::from_utf8_lossy(&prefixes.stdout).into_owned();
    let mut args = vec![
        "--sandbox-read",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp"),
    ];
    for p in prefixes.lines().filter(|l| !l.is_empty()) {
        args.extend(["--sandbox-read", p]);
    }
    let _agent = Agent::start_args(&dir, &hub.url, &token, "mcp-agent", "sh", 2, &args);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/mcp_client.py");
    // An operator's help request for the task to accept.
    let r = api.post(
        "/api/v1/help",
        &json!({"skill": "sh", "text": "an operator asks", "timeout_ms": 300_000}),
    );
    assert!((200..300).contains(&r.status), "help request: {}", r.text());
    let help_id = r.json()["id"].as_str().expect("help id").to_string();
    let ids = api.submit(vec![json!({
        "name": "mcp-parent",
        "command": [python, script, TORCH, help_id],
        "skills": ["sh"],
        "max_retries": 0,
        "timeout": "90s",
    })]);
    let done = api.wait_state(&dir, &ids[0], "succeeded", secs(120));
    let logs = api.get(&format!("/api/v1/tasks/{}/logs", ids[0]));
    let stdout = logs["stdout"].as_str().unwrap_or_default();
    let found: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no findings line in {stdout:?} / {}", logs["stderr"]));
    eprintln!("mcp findings: {found}");
    let tools: Vec<&str> = found["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "delegate_task",
        "get_task",
        "report_progress",
        "spawn_helper",
        "wait_task",
        "list_peers",
        "send_message",
        "read_inbox",
        "ack_messages",
        "request_help",
        "accept_help",
        "acquire_lock",
        "release_lock",
    ] {
        assert!(tools.contains(&t), "{t} missing: {tools:?}");
    }
    assert!(found["peers"].as_u64().is_some_and(|n| n >= 1), "{found}");
    assert_eq!(found["delivery"], "direct", "{found}");
    assert_eq!(found["verified"], true, "{found}");
    assert_eq!(found["acked"], 1, "{found}");
    let text = |k: &str| found[k].as_str().unwrap_or_default().to_string();
    assert!(
        text("no_recipient").contains("exactly one recipient"),
        "{found}"
    );
    assert!(text("own_accept").contains("own_request"), "{found}");
    assert_eq!(found["accepted"], "accepted", "{found}");
    assert!(text("again").contains("already_accepted"), "{found}");
    // The refused wait names the cycle: both locks, both tasks.
    let deadlock = text("deadlock");
    assert!(
        deadlock.contains("409") && deadlock.contains("deadlock"),
        "{deadlock}"
    );
    for part in ["mcp-L1", "mcp-L2", ids[0].as_str()] {
        assert!(deadlock.contains(part), "{part} not in {deadlock}");
    }
    assert_eq!(found["released"], true, "{found}");
    assert!(
        text("stale_release").contains("not_held") || text("stale_release").contains("stale"),
        "{found}"
    );
    // The operator's request is accepted by this task.
    let help = api.get(&format!("/api/v1/help/{help_id}"));
    assert_eq!(help["accepted_by"], format!("task:{}", ids[0]), "{help}");
    assert_eq!(found["self_state"], "running", "{found}");
    assert_eq!(found["child"], "succeeded", "{found}");
    assert!(
        found["progress_notes"].as_u64().is_some_and(|n| n >= 1),
        "{found}"
    );
    assert!(
        found["spawn_refused"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-template")),
        "the refusal names the template: {found}"
    );
    // The child is this task's child, and the progress reached the hub.
    let children = api.get(&format!("/api/v1/tasks?parent={}", ids[0]));
    assert_eq!(children["tasks"][0]["name"], "mcp-child", "{children}");
    assert!(done["progress"]["percent"].as_f64().is_some(), "{done}");
}

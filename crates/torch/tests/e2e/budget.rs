//! Per-task budgets and usage: `torch usage report` from inside a plain
//! shell task until it crosses `resources.budget_usd`; the hub stops it and
//! it ends `budget_exceeded` without a retry; `torch usage --json` totals
//! what was reported. With the real Claude CLI (through the scripted model
//! server), the tokens of its stream reach `resources.max_tokens`.

use serde_json::json;

use crate::agents::{ModelServer, agent_clis, claude_task, start_fleet};
use crate::harness::{Agent, Hub, TestDir, secs};

/// Reports 100 tokens in, 50 out and $0.25 at a time until the hub answers
/// that the budget is reached, then waits to be stopped (bounded to ~30 s).
const REPORTER: &str = r#"for i in $(seq 1 40); do
  out=$(torch usage report --tokens-in 100 --tokens-out 50 --cost-usd 0.25) || exit 7
  echo "report $i: $out"
  case "$out" in *"budget exceeded"*) break;; esac
done
sleep 30"#;

#[test]
fn task_over_its_budget_ends_budget_exceeded() {
    let dir = TestDir::new("budget");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a", "sh", 2);

    let id = api
        .submit(vec![json!({
            "name": "spender",
            "command": ["sh", "-c", REPORTER],
            "skills": ["sh"],
            "max_retries": 2,
            "resources": {"budget_usd": 1.0},
        })])
        .remove(0);
    api.wait_state(&dir, &id, "dead", secs(60));
    let v = cli.json(&["tasks", "show", &id]);
    let outcome = &v["outcome"];
    assert_eq!(outcome["kind"], "budget_exceeded", "{v:#}");
    let reason = outcome["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("budget_usd 1 reached: cost $1.0000, 600 tokens"),
        "the reason names the limit and the usage: {reason}"
    );
    assert_eq!(v["attempt"], 1, "budget_exceeded is not retried: {v:#}");
    // $0.25 a report: the fourth reaches $1 (limits use >=).
    assert_eq!(v["usage"]["tokens_in"], 400, "{v:#}");
    assert_eq!(v["usage"]["tokens_out"], 200, "{v:#}");
    assert_eq!(v["usage"]["cost_usd"].as_f64(), Some(1.0), "{v:#}");

    // A task within its budget succeeds and counts too.
    let ok = api
        .submit(vec![json!({
            "name": "frugal",
            "command": ["sh", "-c", "torch usage report --tokens-in 10 --tokens-out 5 --cost-usd 0.5"],
            "skills": ["sh"],
            "resources": {"budget_usd": 1.0, "max_tokens": 1000},
        })])
        .remove(0);
    api.wait_state(&dir, &ok, "succeeded", secs(60));

    let u = cli.json(&["usage"]);
    let t = &u["totals"];
    assert_eq!(t["tokens_in"], 410, "{u:#}");
    assert_eq!(t["tokens_out"], 205, "{u:#}");
    assert_eq!(t["cost_usd"].as_f64(), Some(1.5), "{u:#}");
    assert_eq!(t["tasks"], 2, "{u:#}");
    assert_eq!(u["by_tenant"][0]["name"], "default", "{u:#}");
    assert_eq!(u["by_tenant"][0]["tasks"], 2, "{u:#}");
    let since_later = cli.json(&["usage", "--since", "2100-01-01"]);
    assert_eq!(since_later["totals"]["tasks"], 0, "{since_later:#}");

    // Outside a task, `usage report` refuses plainly.
    let out = cli.run_timeout(&["usage", "report", "--cost-usd", "1"], secs(30));
    out.assert_code(2, "torch usage report outside a task");
}

#[test]
fn invalid_budget_is_refused() {
    let dir = TestDir::new("budget-invalid");
    let hub = Hub::start(&dir, &[]);
    let cli = hub.cli(&dir);
    let spec = dir.path().join("bad.json");
    std::fs::write(
        &spec,
        json!({"command": ["true"], "resources": {"budget_usd": -1}}).to_string(),
    )
    .expect("write the spec");
    let out = cli.run_timeout(&["validate", spec.to_str().unwrap_or_default()], secs(30));
    assert!(
        out.stdout.contains("resources") || out.stderr.contains("resources"),
        "validate names the field: {} {}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn claude_over_max_tokens_is_stopped_from_its_stream() {
    let Some(clis) = agent_clis() else { return };
    let dir = TestDir::new("budget-claude");
    // A first turn of 1,030 tokens, then a model that takes 20 s to answer:
    // the stream's tokens reach max_tokens 500 well before the answer.
    let script = json!({
        "c-spend": [
            {"tool": "Write", "input": {"file_path": "hello.txt", "content": "hi\n"},
             "usage": {"input_tokens": 1000, "output_tokens": 30}},
            {"text": "Wrote hello.txt.", "delay_ms": 20000,
             "usage": {"input_tokens": 1200, "output_tokens": 20}}
        ]
    });
    let server = ModelServer::start(&dir, &script);
    let hub = start_fleet(&dir, &clis, &server, 0);
    let api = hub.api();
    let mut task = claude_task("claude-spend", "[c-spend] write hello.txt");
    task["resources"] = json!({"max_tokens": 500});
    task["max_retries"] = json!(2);
    let id = api.submit(vec![task]).remove(0);
    api.wait_state(&dir, &id, "dead", secs(90));
    let v = api.task(&id);
    assert_eq!(v["outcome"]["kind"], "budget_exceeded", "{v:#}");
    let reason = v["outcome"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_tokens 500 reached"), "{reason}");
    assert_eq!(v["attempt"], 1, "not retried: {v:#}");
}

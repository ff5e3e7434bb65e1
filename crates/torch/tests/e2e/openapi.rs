//! The OpenAPI document against a live hub: `schemathesis` (PyPI) reads
//! `GET /api/v1/openapi.json`, generates requests for every operation from
//! it (valid and invalid ones) and checks every answer: no 5xx, a status the
//! document lists, its content type, its headers and its body against the
//! schema.
//!
//! Left out, as schemathesis cannot exercise them: the WebSocket upgrades
//! (`/api/v1/agent/ws`, `/api/v1/node/ws`) and the server-sent event stream
//! (`/api/v1/events/stream`), which never ends.
//!
//! Long polls are shortened to a second by `tests/openapi/st_hooks.py`, so
//! every request answers within the run's request timeout; token
//! revocation runs last, on its own, so the run does not revoke its own
//! token halfway.
//!
//! `.ci/run` installs a pinned schemathesis into the test venv
//! (`TORCH_TEST_PYTHON`). Under CI a missing schemathesis fails the test;
//! elsewhere the test says it cannot run and passes.

use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::json;

use crate::harness::{Agent, Hub, TEST_PYTHON_ENV, TestDir, secs};

/// The checks run on every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// Generated cases per operation: enough to reach every parameter and body
/// field, few enough for the run to stay well under a minute.
const MAX_EXAMPLES: &str = "25";

/// Revokes tokens: the stateful phase would find the run's own token in
/// `GET /api/v1/tokens` and revoke it, leaving the rest of the run with
/// 401s. It gets a run of its own, last.
const REVOKE: &str = "/api/v1/tokens/{id}/revoke";

/// The routes schemathesis cannot exercise (see the module docs).
const EXCLUDED: [&str; 3] = [
    "/api/v1/agent/ws",
    "/api/v1/node/ws",
    "/api/v1/events/stream",
];

fn python() -> Option<String> {
    let python = std::env::var(TEST_PYTHON_ENV).unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import schemathesis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the OpenAPI test needs schemathesis for {python} under CI; .ci/run installs it"
    );
    eprintln!("OpenAPI test cannot run here (no schemathesis for {python}); see .ci/run");
    None
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let Some(python) = python() else {
        return;
    };
    let dir = TestDir::new("openapi");
    let hub = Hub::start(&dir, &[]);
    let agent_token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &agent_token, "st-agent", "sh", 1);
    let api = hub.api();
    dir.wait_for("the agent to connect", secs(30), || {
        let agents = api.get("/api/v1/agents");
        (!agents["agents"].as_array()?.is_empty()).then_some(())
    });
    // Real data in the lists and views schemathesis reads back.
    let ids = api.submit(vec![
        json!({"name": "st-ok", "command": ["true"], "skills": ["sh"]}),
        json!({"name": "st-fail", "command": ["false"], "skills": ["sh"], "max_retries": 0}),
    ]);
    for id in &ids {
        dir.wait_for("the tasks to finish", secs(30), || {
            let t = api.get(&format!("/api/v1/tasks/{id}"));
            matches!(t["state"].as_str(), Some("succeeded" | "dead")).then_some(())
        });
    }

    let first = schemathesis(&python, &dir, &hub, "all", &["--exclude-path", REVOKE]);
    let second = schemathesis(&python, &dir, &hub, "revoke", &["--include-path", REVOKE]);
    for (report, stdout) in [first, second] {
        assert!(
            stdout.contains(" passed") && !stdout.contains("No operations"),
            "schemathesis tested nothing:\n{stdout}"
        );
        assert!(report.exists(), "no report at {}", report.display());
    }
}

/// Runs schemathesis against `hub` with `extra` arguments; panics with its
/// output unless every check passed. Returns its JUnit report and stdout.
fn schemathesis(
    python: &str,
    dir: &TestDir,
    hub: &Hub,
    name: &str,
    extra: &[&str],
) -> (std::path::PathBuf, String) {
    let report = dir.join(&format!("schemathesis-{name}.xml"));
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/api/v1/openapi.json", hub.url))
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", "7", "--workers", "2", "--request-timeout", "10"])
        .args(["--header", &format!("Authorization: Bearer {}", hub.admin)])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&report)
        .args(extra)
        // Its cache (`.schemathesis/`) goes in the test dir.
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("PYTHONPATH", hooks)
        .env("SCHEMATHESIS_HOOKS", "st_hooks")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for path in EXCLUDED {
        cmd.args(["--exclude-path", path]);
    }
    let started = Instant::now();
    let out = cmd.output().expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "schemathesis ({name}) took {:?}:\n{stdout}",
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "schemathesis ({name}) found problems:\n{stdout}\n{}{}",
        String::from_utf8_lossy(&out.stderr),
        dir.log_tails()
    );
    (report, stdout)
}

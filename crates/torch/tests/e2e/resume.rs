//! Resume instead of restart, with the real Claude Code and Codex CLIs
//! against the scripted model server (see `agents.rs`): a run the
//! provider's rate limit ended pauses until the reset time and resumes its
//! session inside the same attempt; an attempt whose CLI was killed is
//! retried on the same agent, in the kept work dir, with `--resume` /
//! `exec resume`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::agents::{
    ModelServer, agent_clis, claude_task, codex_task, install_template, start_hub, start_hub_with,
};
use crate::harness::{TestDir, secs};

/// What the executor tells a resumed session (the default `resume-prompt`).
const RESUME_PROMPT: &str = "Your previous run of this task was interrupted.";

/// Both templates against `server`, at most one agent each: a retry lands
/// on the agent that kept the work dir.
fn install_single(dir: &TestDir, server: &ModelServer) {
    install_template(dir, "claude-code", &server.url, 0);
    install_template(dir, "codex", &format!("{}/v1", server.url), 0);
    for name in ["claude-code", "codex"] {
        let path = dir.join(&format!("templates/{name}.toml"));
        let mut t: toml::Table = fs::read_to_string(&path)
            .expect("template")
            .parse()
            .expect("TOML");
        t.insert("max".into(), toml::Value::Integer(1));
        fs::write(&path, toml::to_string(&t).expect("TOML")).expect("write template");
    }
}

/// The requests of conversation `tag` that told the session to go on.
fn resumed(server: &ModelServer, tag: &str) -> Vec<Value> {
    server
        .requests()
        .into_iter()
        .filter(|r| {
            r["tag"] == tag
                && r["last_user"]
                    .as_str()
                    .is_some_and(|u| u.starts_with(RESUME_PROMPT))
        })
        .collect()
}

#[test]
fn a_rate_limited_run_pauses_then_resumes_its_session() {
    let Some(clis) = agent_clis() else { return };
    let dir = TestDir::new("resume-rate-limit");
    // A Write, then the provider says 429 (retry-after 2 s) twice: Claude
    // retries once (as told by CLAUDE_CODE_MAX_RETRIES) and gives up; the
    // third request, from the resumed session, gets the answer.
    let script = json!({
        "c-limit": [
            {"tool": "Write", "input": {"file_path": "hello.txt", "content": "hi\n"}},
            {"error": {"status": 429, "message": "slow down", "retry_after": 2, "times": 2},
             "text": "Wrote hello.txt."}
        ]
    });
    let server = ModelServer::start(&dir, &script);
    install_single(&dir, &server);
    let hub = start_hub(&dir, &clis);
    let api = hub.api();
    let mut task = claude_task("claude-limited", "[c-limit] write hello.txt");
    task["env"] = json!({"CLAUDE_CODE_MAX_RETRIES": "1"});
    task["success"] = json!({"file_exists": ["hello.txt"]});
    let ids = api.submit(vec![task]);

    // Paused: waiting on the rate limit, with the reset time, as fields of
    // their own (and as the progress message); the last activity stays.
    let paused = dir.wait_for("the task to wait on the rate limit", secs(60), || {
        let v = api.task(&ids[0]);
        // Claude's own retry waits too ("retrying in …"): this is torch's pause.
        let msg = v["progress"]["message"].as_str().unwrap_or("");
        (msg.starts_with("waiting: rate_limited until ")
            && v["waiting"]["reason"] == "rate_limited")
            .then_some(v)
    });
    let until = paused["waiting"]["until_ms"].as_u64().expect("until_ms");
    let msg = paused["progress"]["message"].as_str().unwrap_or("");
    assert_eq!(msg, format!("waiting: rate_limited until {until}"));
    assert!(
        until > paused["progress"]["updated_ms"].as_u64().unwrap_or(0),
        "the reset time is ahead: {paused:#}"
    );
    assert_eq!(paused["state"], "running", "paused, not failed: {paused:#}");
    assert_eq!(paused["activity"]["last_tool"], "Write", "{paused:#}");

    let v = api.wait_state(&dir, &ids[0], "succeeded", secs(60));
    assert_eq!(v["attempt"], 1, "the pause burnt no attempt: {v:#}");
    let reqs = server.requests();
    let limited = reqs.iter().filter(|r| r["status"] == 429).count();
    assert_eq!(limited, 2, "two 429s, then no hot retries: {reqs:#?}");
    let again = resumed(&server, "c-limit");
    assert_eq!(again.len(), 1, "one resumed request: {reqs:#?}");
    // The resumed request carries the session so far: the first prompt and
    // the Write turn.
    let r = &again[0];
    assert_eq!(r["tagged_user"], "[c-limit] write hello.txt", "{r}");
    assert!(
        r["turn"].as_u64().unwrap_or(0) >= 1,
        "earlier turns in it: {r}"
    );
    assert_eq!(r["status"], 200);
    let session = v["outcome"]["evidence"]["session_id"]
        .as_str()
        .unwrap_or("");
    assert_eq!(session.len(), 36, "{v:#}");
    assert!(v["waiting"].is_null(), "no waiting once done: {v:#}");
    // The pause is on the task's events too.
    let events = api.task_events(&ids[0], "task.progress");
    assert!(
        events
            .iter()
            .any(|e| e["data"]["waiting"]["reason"] == "rate_limited"
                && e["data"]["waiting"]["until_ms"] == until),
        "{events:#?}"
    );
}

/// Pids of the CLI processes (`needle` in their command line) running in a
/// work dir under `root` that holds `file`.
fn cli_pids(root: &Path, needle: &str, file: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let cwd: Option<PathBuf> = fs::read_link(format!("/proc/{pid}/cwd")).ok();
        // The CLI itself, not torch's supervisor around it.
        let argv0 = cmd.split(' ').next().unwrap_or("");
        if cmd.contains(needle)
            && !argv0.ends_with("torch")
            && let Some(cwd) = cwd
            && cwd.starts_with(root)
            && cwd.join(file).exists()
        {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_killed_attempt_resumes_its_session_on_retry() {
    let Some(clis) = agent_clis() else { return };
    let dir = TestDir::new("resume-killed");
    // Each CLI writes a file with its own tool; the model's next answer is
    // slow, and the test kills the CLI meanwhile (kill -9).
    let script = json!({
        "c-kill": [
            {"tool": "Write", "input": {"file_path": "hello.txt", "content": "hi\n"}},
            {"text": "Wrote hello.txt.", "delay_ms": 3000}
        ],
        "x-kill": [
            {"tool": "exec_command", "input": {"cmd": "echo hi > a.txt"}},
            {"text": "Wrote a.txt.", "delay_ms": 3000}
        ]
    });
    let server = ModelServer::start(&dir, &script);
    install_single(&dir, &server);
    let hub = start_hub(&dir, &clis);
    let api = hub.api();
    let mut c = claude_task("claude-killed", "[c-kill] write hello.txt");
    c["max_retries"] = json!(1);
    c["success"] = json!({"file_exists": ["hello.txt"]});
    let mut x = codex_task("codex-killed", "[x-kill] write a.txt");
    x["max_retries"] = json!(1);
    x["success"] = json!({"file_exists": ["a.txt"]});
    let ids = api.submit(vec![c, x]);

    let work = dir.path().to_path_buf();
    for (needle, file) in [("stream-json", "hello.txt"), ("--json", "a.txt")] {
        let pids = dir.wait_for(&format!("the CLI that wrote {file}"), secs(60), || {
            let p = cli_pids(&work, needle, file);
            (!p.is_empty()).then_some(p)
        });
        for pid in pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }

    for (id, tag) in [(&ids[0], "c-kill"), (&ids[1], "x-kill")] {
        let v = api.wait_state(&dir, id, "succeeded", secs(90));
        assert_eq!(v["attempt"], 2, "the killed attempt was retried: {v:#}");
        // The retry resumed the session: its request ends with the resume
        // prompt (which has no tag) yet holds the first prompt (the tag
        // comes from it) and the tool turn; the file the first attempt
        // wrote is in the work dir it kept.
        let again = resumed(&server, tag);
        assert_eq!(again.len(), 1, "{:#?}", server.requests());
        let r = &again[0];
        assert!(
            r["turn"].as_u64().unwrap_or(0) >= 1,
            "earlier turns in it: {r}"
        );
        assert!(
            r["tagged_user"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("[{tag}]")),
            "the first prompt in it: {r}"
        );
        let first = server
            .requests()
            .into_iter()
            .filter(|q| q["tag"] == tag && q["turn"] == 0)
            .count();
        assert_eq!(first, 1, "the conversation was never started over");
    }
}

#[test]
fn a_long_tool_run_is_not_a_stall_but_a_silent_cli_is() {
    let Some(clis) = agent_clis() else { return };
    let dir = TestDir::new("resume-stall");
    // Codex runs a 28 s shell command: its running tool is reported again
    // every 20 s, inside the 25 s stall limit. Claude waits 30 s on a model
    // that says nothing: no report, so it is stalled (event only).
    let script = json!({
        "x-long": [
            {"tool": "exec_command", "input": {"cmd": "sleep 28 && echo done > long.txt",
                                               "yield_time_ms": 40000}},
            {"text": "Done."}
        ],
        "c-silent": [{"text": "Finally.", "delay_ms": 30000}]
    });
    let server = ModelServer::start(&dir, &script);
    install_single(&dir, &server);
    let hub = start_hub_with(&dir, &clis, "[hub]\nstall-after = \"25s\"\n");
    let api = hub.api();
    let mut x = codex_task("codex-long-tool", "[x-long] run the long job");
    x["success"] = json!({"file_exists": ["long.txt"]});
    let ids = api.submit(vec![
        x,
        claude_task("claude-silent", "[c-silent] think hard"),
    ]);
    let x = api.wait_state(&dir, &ids[0], "succeeded", secs(90));
    let c = api.wait_state(&dir, &ids[1], "succeeded", secs(90));
    assert!(
        api.task_events(&ids[0], "task.stalled").is_empty(),
        "a running tool is activity: {x:#}"
    );
    assert_eq!(x["activity"]["last_tool"], "shell", "{x:#}");
    let stalled = api.task_events(&ids[1], "task.stalled");
    assert_eq!(stalled.len(), 1, "a silent CLI is a stall: {c:#}");
    assert_eq!(stalled[0]["data"]["requeue"], false);
}

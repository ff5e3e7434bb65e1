//! The shipped Claude Code and Codex templates with the real CLIs, through a
//! real hub, its node and template agents. The one thing faked is the model
//! API: `tools/model-server/model_server.py`, a scripted server on an
//! ephemeral port, answers both CLIs from a per-test script. The templates
//! are the files in `examples/templates` with only their documented
//! settings changed: `base-url` (the scripted server) and, for the
//! concurrency test, `min`.
//!
//! The CLIs come from `TORCH_AGENT_CLIS` (a directory holding `claude` and
//! `codex`; `.ci/run` installs pinned versions there with npm) or
//! `~/.cache/torch-ci/npm/node_modules/.bin`. When they are missing the tests
//! say so and pass, except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{Hub, TORCH, TestDir, secs};

/// Where the CLIs are, or `None` (after saying why) when they are missing
/// outside CI.
pub(crate) fn agent_clis() -> Option<PathBuf> {
    let dir = match std::env::var_os("TORCH_AGENT_CLIS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/torch-ci/npm/node_modules/.bin"),
    };
    let missing: Vec<&str> = ["claude", "codex"]
        .into_iter()
        .filter(|c| !dir.join(c).is_file())
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let msg = format!(
        "agent CLIs missing from {} ({}): run .ci/run, or npm install --prefix ~/.cache/torch-ci/npm \
         @anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0",
        dir.display(),
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// The scripted model server, killed on drop.
pub(crate) struct ModelServer {
    pub(crate) url: String,
    log: PathBuf,
    child: Child,
}

impl ModelServer {
    pub(crate) fn start(dir: &TestDir, script: &Value) -> ModelServer {
        let script_path = dir.write("model-script.json", &script.to_string());
        let url_file = dir.join("model-server.url");
        let log = dir.join("model-requests.jsonl");
        let server =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/model-server/model_server.py");
        let out = fs::File::create(dir.join("model-server.log")).expect("server log");
        let err = out.try_clone().expect("server log");
        let child = Command::new("python3")
            .arg(&server)
            .arg("--script")
            .arg(&script_path)
            .arg("--port-file")
            .arg(&url_file)
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start python3 tools/model-server/model_server.py");
        let url = dir.wait_for("the model server's url", secs(20), || {
            fs::read_to_string(&url_file)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        });
        ModelServer { url, log, child }
    }

    /// Every request logged so far.
    pub(crate) fn requests(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shipped template with `base-url` pointed at `base_url` and `min` set,
/// written to `templates/NAME.toml`.
pub(crate) fn install_template(dir: &TestDir, name: &str, base_url: &str, min: u32) {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/templates/{name}.toml"));
    let text = fs::read_to_string(&src).expect("read a shipped template");
    let mut t: toml::Table = text.parse().expect("shipped template is TOML");
    t.insert("min".into(), toml::Value::Integer(i64::from(min)));
    let exec = t
        .get_mut("executor")
        .and_then(toml::Value::as_table_mut)
        .expect("[executor]");
    exec.insert("base-url".into(), toml::Value::String(base_url.into()));
    dir.subdir("templates");
    dir.write(
        &format!("templates/{name}.toml"),
        &toml::to_string(&t).expect("serialize template"),
    );
}

/// A hub whose node runs the two templates against `server`, with the
/// CLIs on its `PATH` and fake API keys in its environment.
pub(crate) fn start_fleet(dir: &TestDir, clis: &Path, server: &ModelServer, min: u32) -> Hub {
    install_template(dir, "claude-code", &server.url, min);
    install_template(dir, "codex", &format!("{}/v1", server.url), min);
    start_hub(dir, clis)
}

/// A hub whose node runs the templates already in `templates/`, with the
/// CLIs on its `PATH` and fake API keys in its environment.
pub(crate) fn start_hub(dir: &TestDir, clis: &Path) -> Hub {
    start_hub_with(dir, clis, "")
}

/// [`start_hub`] with `extra` prepended to its `torch.toml`.
pub(crate) fn start_hub_with(dir: &TestDir, clis: &Path, extra: &str) -> Hub {
    dir.write(
        "torch.toml",
        &(extra.to_string()
            + r#"
[lifecycle]
tick = "200ms"
terminate-grace = "2s"
spawn-timeout = "30s"

[spawn]
node-cpu-max = 1.0
node-mem-max = 1.0
"#),
    );
    let path = format!(
        "{}:{}",
        clis.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // TMPDIR stays the machine's: Codex's sandbox guards the global
    // `/tmp/.codex` mount with a lock under $TMPDIR, so Codex agents with
    // different TMPDIRs (as tests running side by side would have) race.
    Hub::start(
        dir,
        &[
            ("PATH", path.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-fake"),
            ("OPENAI_API_KEY", "sk-fake"),
        ],
    )
}

/// A Claude task (`review` is a skill only the claude-code template has).
pub(crate) fn claude_task(name: &str, prompt: &str) -> Value {
    json!({"name": name, "prompt": prompt, "skills": ["review"], "max_retries": 0})
}

/// A Codex task (`go` is a skill only the codex template has).
pub(crate) fn codex_task(name: &str, prompt: &str) -> Value {
    json!({"name": name, "prompt": prompt, "skills": ["go"], "max_retries": 0})
}

/// The script both tests use. `c-*` conversations are Claude's (its Write
/// tool), `x-*` Codex's (`exec_command`, then `apply_patch`).
fn script() -> Value {
    json!({
        "c-write": [
            {"tool": "Write", "input": {"file_path": "hello.txt", "content": "hi from claude\n"},
             "usage": {"input_tokens": 1000, "output_tokens": 30}},
            {"text": "Wrote hello.txt.",
             "usage": {"input_tokens": 1200, "output_tokens": 20, "cache_read_input_tokens": 800}}
        ],
        "x-write": [
            {"tool": "exec_command", "input": {"cmd": "echo hi > a.txt"},
             "usage": {"input_tokens": 900, "output_tokens": 20, "cached_tokens": 100}},
            {"tool": "apply_patch",
             "input": "*** Begin Patch\n*** Add File: b.txt\n+hello from codex\n*** End Patch\n",
             "usage": {"input_tokens": 1000, "output_tokens": 25}},
            {"text": "Wrote a.txt and b.txt.", "usage": {"input_tokens": 1100, "output_tokens": 15}}
        ],
        "c-fail": [{"error": {"status": 500, "message": "scripted outage"}}],
        "x-fail": [{"error": {"status": 400, "message": "scripted bad request",
                              "type": "invalid_request_error"}}],
        "c-deny": [
            {"tool": "Bash", "input": {"command": "rm -rf /tmp/torch-nothing-here",
                                       "description": "clean up"}},
            {"text": "I could not run that."}
        ]
    })
}

/// Claude wrote with its own Write tool, in its own HOME and TMPDIR.
fn claude_writes() -> Value {
    let mut t = claude_task("claude-write", "[c-write] write hello.txt");
    t["success"] = json!({
        "file_exists": ["hello.txt"],
        "check": ["sh", "-c", "grep -qx 'hi from claude' hello.txt \
            && test -f \"$HOME/.claude.json\" && test \"$TMPDIR\" = \"$HOME/tmp\" \
            && case \"$HOME\" in */home) ;; *) exit 1;; esac"],
    });
    t
}

/// Codex ran a shell command and applied a patch, with its own config.toml.
fn codex_writes() -> Value {
    let mut t = codex_task("codex-write", "[x-write] write a.txt and b.txt");
    t["success"] = json!({
        "file_exists": ["a.txt", "b.txt"],
        "check": ["sh", "-c", "grep -qx hi a.txt && grep -qx 'hello from codex' b.txt \
            && test \"$CODEX_HOME\" = \"$HOME/.codex\" \
            && grep -q 'model_provider = \"torch\"' \"$CODEX_HOME/config.toml\""],
    });
    t
}

/// Tokens (in, out, cached) and cost of a finished task.
fn usage(v: &Value) -> (u64, u64, u64, Option<f64>, String) {
    let u = &v["outcome"]["evidence"]["usage"];
    (
        u["tokens_in"].as_u64().unwrap_or(0),
        u["tokens_out"].as_u64().unwrap_or(0),
        u["tokens_cached"].as_u64().unwrap_or(0),
        u["cost_usd"].as_f64(),
        u["source"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn claude_code_and_codex_templates_end_to_end() {
    let Some(clis) = agent_clis() else { return };
    let dir = TestDir::new("agents-e2e");
    let server = ModelServer::start(&dir, &script());
    let hub = start_fleet(&dir, &clis, &server, 0);
    let api = hub.api();

    let mut c_fail = claude_task("claude-api-error", "[c-fail] anything");
    // No retries inside Claude: its default retries a 500 ten times.
    c_fail["env"] = json!({"CLAUDE_CODE_MAX_RETRIES": "0"});
    let ids = api.submit(vec![
        claude_writes(),
        codex_writes(),
        c_fail,
        codex_task("codex-api-error", "[x-fail] anything"),
        claude_task("claude-denied", "[c-deny] clean up /tmp"),
    ]);

    // Success with the CLIs' own tools, evidence and usage.
    let c = api.wait_state(&dir, &ids[0], "succeeded", secs(90));
    let criteria = c["outcome"]["evidence"]["criteria"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        criteria.iter().all(|k| k["ok"] == true) && criteria.len() == 4,
        "exit code, executor result, file, check: {criteria:#?}"
    );
    let (tin, tout, cached, cost, source) = usage(&c);
    assert_eq!(
        (tin, tout, cached),
        (3000, 50, 800),
        "the scripted numbers: {c:#}"
    );
    assert!(
        cost.is_some_and(|c| c > 0.0),
        "Claude prices its tokens: {c:#}"
    );
    assert_eq!(source, "claude-code result");
    assert!(c["outcome"]["evidence"]["agent_error"].is_null());

    let x = api.wait_state(&dir, &ids[1], "succeeded", secs(90));
    let (tin, tout, cached, cost, source) = usage(&x);
    assert_eq!(
        (tin, tout, cached, cost),
        (3000, 60, 100, None),
        "summed over the turn's requests: {x:#}"
    );
    assert_eq!(source, "codex turn.completed");
    for v in [&c, &x] {
        let session = v["outcome"]["evidence"]["session_id"]
            .as_str()
            .unwrap_or("");
        assert_eq!(session.len(), 36, "the CLI's session id: {v:#}");
    }

    let shown = hub.cli(&dir).run(&["tasks", "show", &ids[0]]);
    shown.assert_code(0, "torch tasks show");
    assert!(
        shown
            .stdout
            .contains("usage     3000 tokens in (800 cached), 50 out, $"),
        "{}",
        shown.stdout
    );
    let json = hub.cli(&dir).json(&["tasks", "show", &ids[1]]);
    assert_eq!(json["outcome"]["evidence"]["usage"]["tokens_out"], 60);

    // Failures in the CLI's own words, never as an exit code.
    for (i, kind, words) in [
        (
            2,
            "api_error",
            "API status 500: API Error: 500 scripted outage",
        ),
        (3, "api_error", "scripted bad request"),
        (
            4,
            "permission_denied",
            "denied Bash (rm -rf /tmp/torch-nothing-here)",
        ),
    ] {
        let v = api.wait_state(&dir, &ids[i], "dead", secs(90));
        let err = &v["outcome"]["evidence"]["agent_error"];
        assert_eq!(err["kind"], kind, "{v:#}");
        let detail = err["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(words), "{detail:?} has {words:?}");
        let reason = v["outcome"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("agent error ({kind}): ")) && !reason.contains("exit_code"),
            "{reason}"
        );
    }

    // The model API was the only thing faked: both CLIs reached it with the
    // templates' models, over their own APIs.
    let reqs = server.requests();
    let models: BTreeSet<(String, String)> = reqs
        .iter()
        .map(|r| {
            (
                r["api"].as_str().unwrap_or("").to_string(),
                r["model"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        models.contains(&("openai".into(), "gpt-5.5".into())),
        "{models:?}"
    );
    assert!(
        models
            .iter()
            .any(|(api, m)| api == "anthropic" && m.contains("sonnet")),
        "--model sonnet: {models:?}"
    );
    assert_eq!(
        reqs.iter().filter(|r| r["tag"] == "c-fail").count(),
        1,
        "no retries inside Claude"
    );
}

/// `torch templates check` with `path` as `PATH`: (exit code, stdout + stderr).
fn check_templates(dir: &TestDir, path: &str) -> (i32, String) {
    let out = Command::new(TORCH)
        .args([
            "templates",
            "check",
            "templates/claude-code.toml",
            "templates/codex.toml",
        ])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run torch templates check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn templates_check_runs_the_clis_and_list_names_them() {
    let Some(clis) = agent_clis() else { return };
    let dir = TestDir::new("agents-templates");
    install_template(&dir, "claude-code", "http://127.0.0.1:9", 0);
    install_template(&dir, "codex", "http://127.0.0.1:9/v1", 0);
    let (code, text) = check_templates(&dir, &format!("{}:/usr/bin:/bin", clis.display()));
    assert_eq!(code, 0, "{text}");
    for want in [
        "templates/claude-code.toml: ok (claude-code)",
        "claude: 2.1.",
        "templates/codex.toml: ok (codex)",
        "codex: codex-cli 0.",
        "none of ANTHROPIC_API_KEY",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    // The generated `torch mcp` wiring, with this torch binary.
    for want in [
        format!("mcp: `torch mcp` wired in, started as {TORCH} mcp"),
        "--mcp-config {home}/.torch/mcp.json".into(),
        format!(
            r#"mcp: file {{home}}/.torch/mcp.json: {{"mcpServers": {{"torch": {{"type": "stdio", "command": "{TORCH}", "args": ["mcp"]}}}}}}"#
        ),
        format!(r#"'mcp_servers.torch.command="{TORCH}"'"#),
        r#"'mcp_servers.torch.default_tools_approval_mode="approve"'"#.into(),
    ] {
        assert!(text.contains(&want), "{want:?} in {text}");
    }
    let (code, text) = check_templates(&dir, "/usr/bin:/bin");
    assert_eq!(code, 1, "a missing CLI fails the check: {text}");
    assert!(
        text.contains(
            "claude: missing: not found on PATH (install: npm install -g @anthropic-ai/claude-code)"
        ),
        "{text}"
    );

    let hub = Hub::start(&dir, &[]);
    let list = hub.cli(&dir).json(&["templates", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["claude-code", "codex"], "{list:#}");
    assert_eq!(list[1]["executor"]["base-url"], "http://127.0.0.1:9/v1");
}

#[test]
fn the_cli_stream_shows_activity_and_rate_limit_waits() {
    let Some(clis) = agent_clis() else { return };
    let dir = TestDir::new("agents-activity");
    let mut script = script();
    // Claude: a tool call, then a 429 with retry-after on the next request
    // (once), then the answer.
    script["c-limited"] = json!([
        {"tool": "Write", "input": {"file_path": "hello.txt", "content": "hi\n"}},
        {"error": {"status": 429, "message": "slow down", "retry_after": 3, "times": 1},
         "text": "Wrote hello.txt."}
    ]);
    // Codex: a shell command, then a slow model answer.
    script["x-slow"] = json!([
        {"tool": "exec_command", "input": {"cmd": "echo hi > a.txt"}},
        {"text": "Done.", "delay_ms": 3000}
    ]);
    let server = ModelServer::start(&dir, &script);
    let hub = start_fleet(&dir, &clis, &server, 0);
    let api = hub.api();
    let ids = api.submit(vec![
        claude_task("claude-limited", "[c-limited] write hello.txt"),
        codex_task("codex-slow", "[x-slow] write a.txt"),
    ]);
    let progress = |id: &str, want: &str| {
        dir.wait_for(&format!("progress {want:?} of {id}"), secs(60), || {
            let v = api.task(id);
            let msg = v["progress"]["message"].as_str().unwrap_or("").to_string();
            msg.starts_with(want).then_some(msg)
        })
    };
    let waiting = progress(&ids[0], "waiting: rate_limited");
    assert!(waiting.contains("retrying in"), "{waiting}");
    // The same as fields: Claude's own retry of the 429, until its retry time.
    let v = api.task(&ids[0]);
    if v["state"] == "running" && v["waiting"].is_object() {
        assert_eq!(v["waiting"]["reason"], "rate_limited", "{v:#}");
        assert!(v["waiting"]["until_ms"].as_u64().is_some(), "{v:#}");
    }
    let active = progress(&ids[1], "activity: ");
    assert!(
        active.contains("tool shell"),
        "the running or last tool: {active}"
    );
    for id in &ids {
        api.wait_state(&dir, id, "succeeded", secs(60));
    }
    let shown = hub.cli(&dir).run(&["tasks", "show", &ids[0]]);
    shown.assert_code(0, "torch tasks show");
    assert!(
        shown.stdout.contains("activity: turn 2, last tool Write"),
        "the last activity stays on the task: {}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("activity  turn 2, last tool Write, "),
        "{}",
        shown.stdout
    );
    let v = api.task(&ids[0]);
    let a = &v["activity"];
    assert_eq!(
        (a["turns"].as_u64(), a["last_tool"].as_str()),
        (Some(2), Some("Write")),
        "{v:#}"
    );
    assert!(a["tokens_so_far"].as_u64().unwrap_or(0) > 0, "{v:#}");
    assert!(a["at_ms"].as_u64().unwrap_or(0) > 0, "{v:#}");
    let x = api.task(&ids[1]);
    assert_eq!(x["activity"]["last_tool"], "shell", "{x:#}");
    let events = api.task_events(&ids[0], "task.progress");
    assert!(
        events
            .iter()
            .any(|e| e["data"]["waiting"]["reason"] == "rate_limited")
            && events.iter().all(|e| e["data"]["activity"].is_object()),
        "activity and waiting on the events: {events:#?}"
    );
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r["tag"] == "c-limited" && r["status"] == 429)
            .count(),
        1,
        "one 429, then the same session went on"
    );
}

#[test]
fn eight_claude_and_codex_agents_at_once() {
    let Some(clis) = agent_clis() else { return };
    let dir = TestDir::new("agents-fleet");
    let server = ModelServer::start(&dir, &script());
    let hub = start_fleet(&dir, &clis, &server, 4);
    let api = hub.api();
    // Four agents of each template up before the burst.
    dir.wait_for("4 + 4 template agents", secs(60), || {
        let v = api.get("/api/v1/agents");
        let ready = v["agents"]
            .as_array()?
            .iter()
            .filter(|a| a["managed"]["phase"] == "ready")
            .count();
        (ready == 8).then_some(())
    });
    let mut tasks = Vec::new();
    for i in 0..4 {
        let mut c = claude_writes();
        c["name"] = json!(format!("claude-{i}"));
        let mut x = codex_writes();
        x["name"] = json!(format!("codex-{i}"));
        tasks.push(c);
        tasks.push(x);
    }
    let ids = api.submit(tasks);
    let mut agents = BTreeSet::new();
    for id in &ids {
        let v = api.wait_state(&dir, id, "succeeded", secs(100));
        assert!(usage(&v).0 > 0, "usage recorded: {v:#}");
        for e in api.task_events(id, "task.assigned") {
            if let Some(a) = e["agent_id"].as_str() {
                agents.insert(a.to_string());
            }
        }
    }
    assert_eq!(
        agents.len(),
        8,
        "one task per agent, all at once: {agents:?}"
    );
    let convs = server
        .requests()
        .iter()
        .filter(|r| r["turn"] == 0 && r["status"] == 200)
        .count();
    assert_eq!(convs, 8, "eight conversations with the one model server");
}

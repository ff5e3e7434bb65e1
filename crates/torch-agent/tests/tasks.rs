//! Real task processes through a real agent session (tasks spawned directly,
//! no supervisor): success criteria, environment, timeout, output cap,
//! spawn failures, capacity, cancel and shutdown.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use torch_api::ws::HubMessage;
use torch_core::OutcomeKind;
use torch_core::lifecycle::{Executor, OutputFormat, PromptVia};

use common::*;

#[tokio::test]
async fn success_criteria_decide_the_outcome() {
    let tasks = vec![
        assign(&["true"]),
        with(sh("exit 3"), |c| c.exit_codes = vec![3]),
        sh("exit 1"),
        with(sh("mkdir out && echo x > out/r.txt"), |c| {
            c.file_exists = vec!["out/r.txt".into()]
        }),
        with(assign(&["true"]), |c| {
            c.file_exists = vec!["nope.txt".into()]
        }),
        with(sh("echo passed: 12"), |c| {
            c.stdout_matches = Some(r"passed: \d+".into())
        }),
        with(sh("echo failed"), |c| {
            c.stdout_matches = Some(r"passed: \d+".into())
        }),
        with(sh("echo ok > flag"), |c| {
            c.check = Some(vec!["sh".into(), "-c".into(), "grep -q ok flag".into()])
        }),
        with(assign(&["true"]), |c| {
            c.check = Some(vec!["sh".into(), "-c".into(), "exit 2".into()])
        }),
        with(sh("echo all good; touch a b"), |c| {
            c.file_exists = vec!["a".into(), "b".into()];
            c.stdout_matches = Some("good".into());
            c.check = Some(vec!["test".into(), "-f".into(), "a".into()]);
        }),
    ];
    let (r, _root) = run_all(|_| {}, &tasks).await;
    let kinds: Vec<OutcomeKind> = r.iter().map(|r| r.outcome.kind).collect();
    use OutcomeKind::{Failed, Succeeded};
    assert_eq!(
        kinds,
        [
            Succeeded, Succeeded, Failed, Succeeded, Failed, Succeeded, Failed, Succeeded, Failed,
            Succeeded
        ],
        "{r:#?}"
    );
    let reason = |i: usize| r[i].outcome.reason.clone().unwrap_or_default();
    assert_eq!(r[0].outcome.evidence.criteria.len(), 1);
    assert_eq!(
        r[0].outcome.evidence.criteria[0].criterion,
        "exit_code in [0]"
    );
    assert_eq!(r[1].outcome.evidence.exit_code, Some(3));
    assert_eq!(
        reason(2),
        "criterion not met: exit_code in [0] (exited with 1)"
    );
    // Exit 0 with an unmet criterion is a failure naming the criterion.
    assert_eq!(r[4].outcome.evidence.exit_code, Some(0));
    assert_eq!(
        reason(4),
        "criterion not met: file_exists nope.txt (missing)"
    );
    assert!(
        reason(6).starts_with(r"criterion not met: stdout_matches passed: \d+"),
        "{}",
        reason(6)
    );
    assert!(
        reason(8).starts_with("criterion not met: check sh -c exit 2 (exited with 2"),
        "{}",
        reason(8)
    );
    // Every criterion is listed with its result.
    let all = &r[9].outcome.evidence.criteria;
    let listed: Vec<(&str, bool)> = all.iter().map(|c| (c.criterion.as_str(), c.ok)).collect();
    assert_eq!(
        listed,
        [
            ("exit_code in [0]", true),
            ("file_exists a", true),
            ("file_exists b", true),
            ("stdout_matches good", true),
            ("check test -f a", true)
        ]
    );
}

#[tokio::test]
async fn the_environment_is_cleared() {
    let mut t = assign(&["env"]);
    t.env.insert("SPEC_VAR".into(), "from spec".into());
    t.env.insert("TORCH_TASK_ID".into(), "spoofed".into());
    let outside: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k != "PATH")
        .collect();
    assert!(
        !outside.is_empty(),
        "the test process has variables to leak"
    );
    let (r, root) = run_all(
        |cfg| cfg.env_allowlist = vec!["PATH".into(), "NOT_SET_ANYWHERE".into()],
        std::slice::from_ref(&t),
    )
    .await;
    assert_eq!(r[0].outcome.kind, OutcomeKind::Succeeded);
    let out = &r[0].logs.as_ref().unwrap().stdout;
    let vars: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let keys: BTreeSet<&str> = vars.iter().map(|(k, _)| *k).collect();
    let expected: BTreeSet<&str> = [
        "PATH",
        "SPEC_VAR",
        "TORCH_HUB",
        "TORCH_TASK_ID",
        "TORCH_TASK_TOKEN",
        "TORCH_ATTEMPT",
        "TORCH_WORKDIR",
        "TORCH_AGENT_URL",
    ]
    .into();
    assert_eq!(keys, expected, "task saw: {out}");
    let get = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| *v).unwrap();
    assert_eq!(
        get("TORCH_TASK_ID"),
        t.task_id.to_string(),
        "TORCH_* cannot be overridden by the spec"
    );
    assert_eq!(get("TORCH_ATTEMPT"), "1");
    assert_eq!(get("TORCH_TASK_TOKEN"), "task-token");
    assert_eq!(get("SPEC_VAR"), "from spec");
    assert_eq!(Path::new(get("TORCH_WORKDIR")), workdir(root.path(), &t));
    assert!(get("TORCH_HUB").starts_with("http://127.0.0.1:"));
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    // The shell and its children ignore SIGTERM: only the SIGKILL after the
    // grace period ends them.
    let mut t = sh("trap '' TERM; sleep 100 & echo $! >> pids; sleep 100 & echo $! >> pids; wait");
    t.timeout_ms = Some(300);
    let (r, root) = run_all(|_| {}, std::slice::from_ref(&t)).await;
    let o = &r[0].outcome;
    assert_eq!(o.kind, OutcomeKind::TimedOut, "{o:?}");
    assert_eq!(o.reason.as_deref(), Some("timed out after 300 ms"));
    assert_eq!(
        o.evidence.signal,
        Some(9),
        "SIGTERM was ignored, SIGKILL ended it"
    );
    assert!(
        o.evidence.duration_ms >= 600,
        "timeout plus grace: {}",
        o.evidence.duration_ms
    );
    assert!(o.evidence.criteria.is_empty());
    let pids = read_pids(&workdir(root.path(), &t).join("pids"));
    assert_eq!(pids.len(), 2);
    eventually("forked children are gone", || {
        pids.iter().all(|p| !alive(*p))
    })
    .await;
}

#[tokio::test]
async fn output_is_capped_and_the_task_never_blocks() {
    let t = sh("head -c 300000 /dev/zero | tr '\\0' a; echo; echo END; echo oops >&2");
    let small = sh("head -c 5000 /dev/zero | tr '\\0' b");
    let (r, root) = run_all(|cfg| cfg.max_log_bytes = 1000, &[t.clone(), small.clone()]).await;
    assert_eq!(r[0].outcome.kind, OutcomeKind::Succeeded);
    let dir = workdir(root.path(), &t);
    let file = std::fs::read(dir.join("stdout.log")).unwrap();
    assert_eq!(file.len(), 1000);
    assert!(file.iter().all(|b| *b == b'a'));
    assert_eq!(
        std::fs::read_to_string(dir.join("stderr.log")).unwrap(),
        "oops\n"
    );
    let logs = r[0].logs.as_ref().unwrap();
    assert!(logs.truncated);
    assert_eq!(logs.stdout.len(), 64 * 1024);
    assert!(logs.stdout.ends_with("aaa\nEND\n"));
    assert_eq!(logs.stderr, "oops\n");
    let ev = &r[0].outcome.evidence;
    assert_eq!(ev.stdout_tail.len(), 2048);
    assert!(ev.stdout_tail.ends_with("\nEND\n"));
    assert_eq!(ev.stderr_tail, "oops\n");
    // The report holds all 5000 bytes, but the log file does not.
    let logs = r[1].logs.as_ref().unwrap();
    assert_eq!(logs.stdout.len(), 5000);
    assert!(logs.truncated);
    assert_eq!(
        std::fs::metadata(workdir(root.path(), &small).join("stdout.log"))
            .unwrap()
            .len(),
        1000
    );
}

#[tokio::test]
async fn unstartable_and_prompt_only_tasks() {
    let missing = assign(&["no-such-program-xyz", "--flag"]);
    let prompt_only = prompt("write a poem");
    let mut nothing = assign(&[]);
    nothing.command = None;
    let (r, _root) = run_all(|_| {}, &[missing, prompt_only, nothing]).await;
    assert_eq!(r[0].outcome.kind, OutcomeKind::Failed);
    let reason = r[0].outcome.reason.as_deref().unwrap();
    assert!(reason.contains("`no-such-program-xyz`"), "{reason}");
    assert_eq!(r[1].outcome.kind, OutcomeKind::Fatal);
    assert_eq!(
        r[1].outcome.reason.as_deref(),
        Some(
            "agent test-agent has no executor for prompt tasks; start it from a template with [executor]"
        )
    );
    assert_eq!(r[2].outcome.kind, OutcomeKind::Fatal);
    assert_eq!(
        r[2].outcome.reason.as_deref(),
        Some("task has neither a command nor a prompt")
    );
}

fn executor(argv: &[&str], via: PromptVia, output: OutputFormat) -> Executor {
    Executor {
        command: argv.iter().map(|s| s.to_string()).collect(),
        prompt_via: via,
        output,
        ..Executor::default()
    }
}

#[tokio::test]
async fn prompt_tasks_run_the_executor() {
    // Placeholders, one argument each (no shell joining); task.json without
    // the token; prompt.txt; a task with a command still runs its command.
    let script = r#"printf '%s\n' "$1" "$2" "$3" "$4"; grep -qF '"prompt": "fix it; rm -rf \"$HOME\""' "$5" && ! grep -q task_token "$5" && echo json-ok; cat prompt.txt"#;
    let exec = executor(
        &[
            "sh",
            "-c",
            script,
            "sh",
            "{prompt}",
            "{workdir}",
            "{task_id}",
            "{task_name}",
            "{task_file}",
        ],
        PromptVia::Arg,
        OutputFormat::Text,
    );
    let mut p = prompt(r#"fix it; rm -rf "$HOME""#);
    p.name = "fix bug".into();
    let cmd = sh("echo own command");
    let (r, root) = run_all(|cfg| cfg.executor = Some(exec), &[p.clone(), cmd]).await;
    assert_eq!(
        r[0].outcome.kind,
        OutcomeKind::Succeeded,
        "{:?}",
        r[0].outcome
    );
    let dir = workdir(root.path(), &p);
    let want = format!(
        "fix it; rm -rf \"$HOME\"\n{}\n{}\nfix bug\njson-ok\nfix it; rm -rf \"$HOME\"",
        dir.display(),
        p.task_id
    );
    assert_eq!(r[0].logs.as_ref().unwrap().stdout, want);
    assert_eq!(r[1].logs.as_ref().unwrap().stdout, "own command\n");

    // Prompt appended when no argument mentions it; prompt on stdin.
    let appended = executor(
        &["sh", "-c", r#"echo "last: $0""#],
        PromptVia::Arg,
        OutputFormat::Text,
    );
    let p = prompt("hello");
    let (r, _root) = run_all(|cfg| cfg.executor = Some(appended), &[p]).await;
    assert_eq!(r[0].logs.as_ref().unwrap().stdout, "last: hello\n");
    let stdin = executor(
        &["sh", "-c", "cat; echo; cat {{}} 2>/dev/null || echo braces"],
        PromptVia::Stdin,
        OutputFormat::Text,
    );
    let p = prompt("from stdin");
    let (r, _root) = run_all(|cfg| cfg.executor = Some(stdin), &[p]).await;
    assert_eq!(r[0].logs.as_ref().unwrap().stdout, "from stdin\nbraces\n");

    // A template error is fatal.
    let broken = executor(&["tool", "{bogus}"], PromptVia::Arg, OutputFormat::Text);
    let (r, _root) = run_all(|cfg| cfg.executor = Some(broken), &[prompt("x")]).await;
    assert_eq!(r[0].outcome.kind, OutcomeKind::Fatal);
    let reason = r[0].outcome.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("cannot build the executor command"),
        "{reason}"
    );
}

#[tokio::test]
async fn executor_output_can_fail_an_exit_zero() {
    // The fake CLI prints its prompt: each prompt is a canned output.
    let echo = |output| {
        executor(
            &["sh", "-c", r#"printf '%s\n' "$0""#],
            PromptVia::Arg,
            output,
        )
    };
    let claude_ok = prompt(
        r#"{"type":"result","subtype":"success","is_error":false,"result":"Done.","total_cost_usd":0.25}"#,
    );
    let claude_lying = prompt(
        r#"{"type":"result","subtype":"success","is_error":true,"result":"Invalid API key","api_error_status":401}"#,
    );
    let claude_silent = prompt("no json at all");
    let claude_max_turns =
        prompt(r#"{"type":"result","subtype":"error_max_turns","is_error":true}"#);
    let (r, _root) = run_all(
        |cfg| cfg.executor = Some(echo(OutputFormat::ClaudeJson)),
        &[claude_ok, claude_lying, claude_silent, claude_max_turns],
    )
    .await;
    assert_eq!(
        r[0].outcome.kind,
        OutcomeKind::Succeeded,
        "{:?}",
        r[0].outcome
    );
    let c = &r[0].outcome.evidence.criteria;
    assert_eq!(c.len(), 2);
    assert_eq!(c[1].criterion, "executor result (claude-json)");
    assert_eq!(c[1].detail, "result: Done.; cost $0.2500");
    assert_eq!(r[1].outcome.kind, OutcomeKind::Failed);
    assert_eq!(r[1].outcome.evidence.exit_code, Some(0));
    assert_eq!(
        r[1].outcome.reason.as_deref(),
        Some("agent error (api_error): API status 401: Invalid API key"),
        "the CLI's own words, not a criterion"
    );
    let e = r[1].outcome.evidence.agent_error.as_ref().unwrap();
    assert_eq!(
        (e.kind.as_str(), e.detail.as_str()),
        ("api_error", "API status 401: Invalid API key")
    );
    let u = r[0].outcome.evidence.usage.as_ref().unwrap();
    assert_eq!(
        (u.cost_usd, u.source.as_str()),
        (Some(0.25), "claude-code result")
    );
    assert_eq!(r[2].outcome.kind, OutcomeKind::Failed);
    assert!(
        r[2].outcome
            .reason
            .as_deref()
            .unwrap()
            .contains("no result found"),
        "{:?}",
        r[2].outcome
    );
    assert_eq!(
        r[2].outcome
            .evidence
            .agent_error
            .as_ref()
            .map(|e| e.kind.as_str()),
        Some("no_result")
    );
    assert_eq!(r[3].outcome.kind, OutcomeKind::Failed);
    assert_eq!(
        r[3].outcome.reason.as_deref(),
        Some("agent error (max_turns): error_max_turns")
    );

    let codex_failed = prompt(concat!(
        r#"{"type":"thread.started","thread_id":"t"}"#,
        "\n",
        r#"{"type":"turn.failed","error":{"message":"model at capacity"}}"#
    ));
    let codex_ok = prompt(concat!(
        r#"{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"ok"}}"#,
        "\n",
        r#"{"type":"turn.completed","usage":{}}"#
    ));
    let (r, _root) = run_all(
        |cfg| cfg.executor = Some(echo(OutputFormat::CodexJsonl)),
        &[codex_failed, codex_ok],
    )
    .await;
    assert_eq!(r[0].outcome.kind, OutcomeKind::Failed);
    assert!(
        r[0].outcome
            .reason
            .as_deref()
            .unwrap()
            .contains("model at capacity"),
        "{:?}",
        r[0].outcome
    );
    assert_eq!(
        r[1].outcome.kind,
        OutcomeKind::Succeeded,
        "{:?}",
        r[1].outcome
    );
}

#[tokio::test]
async fn wall_time_caps_the_timeout() {
    let unbounded = sh("sleep 30");
    let mut longer = sh("sleep 30");
    longer.timeout_ms = Some(60_000);
    let mut shorter = sh("sleep 30");
    shorter.timeout_ms = Some(200);
    let (r, _root) = run_all(
        |cfg| cfg.limits.wall_time = Some(Duration::from_millis(400)),
        &[unbounded, longer, shorter],
    )
    .await;
    let reasons: Vec<&str> = r
        .iter()
        .map(|r| r.outcome.reason.as_deref().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "timed out after 400 ms",
            "timed out after 400 ms",
            "timed out after 200 ms"
        ]
    );
    assert!(r.iter().all(|r| r.outcome.kind == OutcomeKind::TimedOut));
}

#[tokio::test]
async fn capacity_cancel_and_shutdown() {
    let hub = Hub::start().await;
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, root.path());
    cfg.slots = 1;
    let agent = Agent::start(cfg);
    let mut conn = hub.accept().await;
    conn.welcome(agent_id()).await;

    let first = sh("sleep 100 & echo $! > pids; wait");
    let second = assign(&["true"]);
    conn.send(vec![
        HubMessage::Assign(first.clone()),
        HubMessage::Assign(second.clone()),
    ])
    .await;
    let refused = conn.finished(second.task_id).await;
    assert_eq!(refused.outcome.kind, OutcomeKind::Failed);
    assert_eq!(refused.outcome.reason.as_deref(), Some("agent at capacity"));
    assert!(!conn.saw_started(second.task_id));
    let pid_file = workdir(root.path(), &first).join("pids");
    eventually("the first task wrote its pid", || {
        read_pids(&pid_file).len() == 1
    })
    .await;
    let pid = read_pids(&pid_file)[0];
    assert!(alive(pid));
    conn.send(vec![HubMessage::Cancel {
        task_id: first.task_id,
        fence: first.fence,
        reason: "user asked".into(),
    }])
    .await;
    let cancelled = conn.finished(first.task_id).await;
    assert_eq!(cancelled.outcome.kind, OutcomeKind::Cancelled);
    assert_eq!(
        cancelled.outcome.reason.as_deref(),
        Some("cancelled: user asked")
    );
    eventually("the cancelled task's child is gone", || !alive(pid)).await;

    // A slot is free again; then shut down while a task runs.
    let third = sh("sleep 100 & echo $! > pids; wait");
    conn.send(vec![HubMessage::Assign(third.clone())]).await;
    let pid_file = workdir(root.path(), &third).join("pids");
    eventually("the third task wrote its pid", || {
        read_pids(&pid_file).len() == 1
    })
    .await;
    let pid = read_pids(&pid_file)[0];
    agent.shutdown.cancel();
    let stopped = conn.finished(third.task_id).await;
    assert_eq!(stopped.outcome.kind, OutcomeKind::Failed);
    assert_eq!(
        stopped.outcome.reason.as_deref(),
        Some("agent shutting down")
    );
    conn.ack(&stopped).await;
    assert!(agent.join().await.is_ok());
    eventually("shutdown killed the task's group", || !alive(pid)).await;
}

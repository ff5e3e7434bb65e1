//! What happens to task processes: timeouts, cancellation, progress reports.

use serde_json::json;

use crate::harness::{Agent, Hub, TestDir, pid_alive, q, read_pids, secs};

#[test]
fn timeout_kills_forked_children() {
    let dir = TestDir::new("timeout");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a", "sh", 1);
    let out = dir.subdir("out");

    let script = r#"sleep 100 & echo $! > "$OUT/child"; sleep 100 & echo $! >> "$OUT/child"; wait"#;
    let id = api
        .submit(vec![json!({
            "name": "forks",
            "command": ["sh", "-c", script],
            "skills": ["sh"],
            "timeout": "1s",
            "max_retries": 0,
            "env": {"OUT": out},
        })])
        .remove(0);
    let dead = api.wait_state(&dir, &id, "dead", secs(30));
    assert_eq!(
        dead["outcome"]["kind"], "timed_out",
        "outcome of a timed-out task: {dead}"
    );
    assert_eq!(dead["attempt"], 1, "no retry with max_retries 0");
    let pids = read_pids(&out.join("child"));
    assert_eq!(pids.len(), 2, "the task recorded both children");
    dir.wait_for(
        &format!("forked children {pids:?} to be killed"),
        secs(10),
        || pids.iter().all(|&p| !pid_alive(p)).then_some(()),
    );
    assert_eq!(
        api.task_events(&id, "task.dead").len(),
        1,
        "one task.dead event"
    );
}

#[test]
fn cancel_reaches_running_agent() {
    let dir = TestDir::new("cancel");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a", "sh", 2);
    let agent_id = api.agent_id(&dir, "a");
    let out = dir.subdir("out");

    let script = r#"sleep 60 & echo $! > "$OUT/pid"; echo $$ >> "$OUT/pid"; wait"#;
    let spec = format!(
        "[[task]]\nname = \"root\"\ncommand = [\"sh\", \"-c\", {}]\nskills = [\"sh\"]\nenv = {{ OUT = {} }}\n\n\
         [[task]]\nname = \"mid\"\ncommand = [\"true\"]\nskills = [\"sh\"]\ndepends_on = [\"root\"]\n\n\
         [[task]]\nname = \"leaf\"\ncommand = [\"true\"]\nskills = [\"sh\"]\ndepends_on = [\"mid\"]\n\n\
         [[task]]\nname = \"bystander\"\ncommand = [\"true\"]\nskills = [\"sh\"]\n",
        q(script),
        q(&out.to_string_lossy())
    );
    dir.write("cancel.toml", &spec);
    let submitted = cli.json(&["submit", "cancel.toml"]);
    let id = |name: &str| -> String {
        submitted["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .find(|t| t["name"] == name)
            .and_then(|t| t["id"].as_str())
            .unwrap_or_else(|| panic!("{name} in {submitted}"))
            .to_string()
    };
    let (root, mid, leaf, bystander) = (id("root"), id("mid"), id("leaf"), id("bystander"));
    api.wait_state(&dir, &root, "running", secs(20));
    let pids = dir.wait_for("the task to record its pids", secs(10), || {
        let p = read_pids(&out.join("pid"));
        (p.len() == 2).then_some(p)
    });

    let resp = cli.json(&["tasks", "cancel", &root]);
    let mut cancelled: Vec<String> = resp["cancelled"]
        .as_array()
        .expect("cancelled")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect();
    cancelled.sort();
    let mut want = vec![root.clone(), mid.clone(), leaf.clone()];
    want.sort();
    assert_eq!(cancelled, want, "cancel covers the task and its dependents");

    dir.wait_for(
        &format!("the cancelled task's processes {pids:?} to die"),
        secs(10),
        || pids.iter().all(|&p| !pid_alive(p)).then_some(()),
    );
    // Let the agent report the killed attempt, then check nothing was revived.
    dir.wait_for("the agent to release the cancelled task", secs(15), || {
        let agents = api.get("/api/v1/agents");
        agents["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == agent_id.as_str()).cloned())
            .filter(|x| x["running"] == 0)
            .map(|_| ())
    });
    for t in [&root, &mid, &leaf] {
        let v = api.task(t);
        assert_eq!(
            v["state"], "cancelled",
            "{} stays cancelled: {v}",
            v["name"]
        );
    }
    api.wait_state(&dir, &bystander, "succeeded", secs(20));
    assert!(
        api.task_events(&root, "task.succeeded").is_empty(),
        "a cancelled task never succeeds"
    );
    assert!(!api.task_events(&root, "task.cancelled").is_empty());
}

#[test]
fn progress_from_inside_a_task() {
    let dir = TestDir::new("progress");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a", "sh", 2);
    let out = dir.subdir("out");

    // Report progress, then hold until the test has seen it (bounded to ~20 s).
    let script = r#"torch progress 42 halfway || exit 7; i=0; while [ ! -e "$OUT/go" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done"#;
    let id = api
        .submit(vec![json!({
            "name": "reporter",
            "command": ["sh", "-c", script],
            "skills": ["sh"],
            "max_retries": 0,
            "env": {"OUT": out},
        })])
        .remove(0);
    let shown = dir.wait_for("tasks show to report 42% halfway", secs(30), || {
        let v = cli.json(&["tasks", "show", &id]);
        let p = &v["progress"];
        (p["percent"].as_f64() == Some(42.0) && p["message"] == "halfway").then_some(v)
    });
    assert_eq!(
        shown["state"], "running",
        "progress seen while running: {shown}"
    );
    std::fs::write(out.join("go"), b"").expect("release the task");
    api.wait_state(&dir, &id, "succeeded", secs(30));
    let progress = api.task_events(&id, "task.progress");
    assert_eq!(progress.len(), 1, "one task.progress event: {progress:?}");
    assert_eq!(progress[0]["data"]["percent"].as_f64(), Some(42.0));

    let failing = cli.run_timeout(
        &[
            "submit",
            "--wait",
            "--skill",
            "sh",
            "--name",
            "fails",
            "--retries",
            "0",
            "--",
            "sh",
            "-c",
            "exit 1",
        ],
        secs(60),
    );
    failing.assert_code(3, "torch submit --wait on a failing task");
}

#[test]
fn stalled_task_is_reported_then_requeued() {
    let dir = TestDir::new("stall");
    let hub = Hub::start(
        &dir,
        &[
            ("TORCH_HUB__STALL_AFTER", "1s"),
            ("TORCH_HUB__STALL_ACTION", "requeue"),
        ],
    );
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a", "sh", 1);

    // Attempt 1 reports progress once, then goes quiet; attempt 2 finishes.
    let script =
        r#"if [ "$TORCH_ATTEMPT" = 1 ]; then torch progress 10 starting; sleep 60; fi; exit 0"#;
    let id = api
        .submit(vec![json!({
            "name": "quiet",
            "command": ["sh", "-c", script],
            "skills": ["sh"],
            "max_retries": 1,
            "backoff": {"initial": "100ms"},
        })])
        .remove(0);
    let done = api.wait_state(&dir, &id, "succeeded", secs(30));
    assert_eq!(
        done["attempt"], 2,
        "the stalled attempt was ended and retried: {done}"
    );
    let stalled = api.task_events(&id, "task.stalled");
    assert_eq!(stalled.len(), 1, "exactly one stall event: {stalled:?}");
    assert_eq!(stalled[0]["data"]["requeue"], true);
    assert_eq!(api.task_events(&id, "task.succeeded").len(), 1);
}

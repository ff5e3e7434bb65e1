//! Bad input, authentication and load shedding at the edge.

use serde_json::json;

use crate::harness::{Cli, Hub, Out, TestDir, free_port};

fn submit_file(cli: &Cli, dir: &TestDir, name: &str, text: &str) -> Out {
    dir.write(name, text);
    cli.run(&["submit", name])
}

fn assert_stderr_has(out: &Out, what: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{what}: stderr should contain {n:?}:\n{}",
            out.stderr
        );
    }
}

#[test]
fn bad_input_is_rejected_clearly_and_changes_nothing() {
    let dir = TestDir::new("bad_input");
    let hub = Hub::start(&dir, &[]);
    let cli = hub.cli(&dir);
    let api = hub.api();

    let out = submit_file(
        &cli,
        &dir,
        "bad.toml",
        "[[task]]\nname = \"a\"\npriority = = 1\ncommand = [\"true\"]\n",
    );
    out.assert_code(2, "malformed TOML");
    assert_stderr_has(&out, "malformed TOML", &["bad.toml:3"]);

    let out = submit_file(
        &cli,
        &dir,
        "unknown.toml",
        "[[task]]\nname = \"a\"\ncolour = \"red\"\ncommand = [\"true\"]\n",
    );
    out.assert_code(2, "unknown field");
    assert_stderr_has(&out, "unknown field", &["unknown.toml", "colour"]);

    let out = submit_file(
        &cli,
        &dir,
        "cycle.toml",
        "[[task]]\nname = \"a\"\ncommand = [\"true\"]\ndepends_on = [\"b\"]\n\n\
         [[task]]\nname = \"b\"\ncommand = [\"true\"]\ndepends_on = [\"a\"]\n",
    );
    out.assert_code(2, "dependency cycle");
    assert!(
        out.stderr.contains("dependency cycle: a -> b -> a")
            || out.stderr.contains("dependency cycle: b -> a -> b"),
        "the cycle is named: {}",
        out.stderr
    );

    let out = submit_file(
        &cli,
        &dir,
        "missing.toml",
        "[[task]]\nname = \"a\"\ncommand = [\"true\"]\ndepends_on = [\"ghost\"]\n",
    );
    out.assert_code(2, "missing dependency");
    assert_stderr_has(&out, "missing dependency", &["missing.toml", "ghost"]);

    let out = submit_file(
        &cli,
        &dir,
        "empty.toml",
        "[[task]]\nname = \"a\"\ncommand = []\n",
    );
    out.assert_code(2, "empty command");
    assert_stderr_has(&out, "empty command", &["empty.toml", "command"]);

    // Authentication and roles.
    let valid = json!({"tasks": [{"name": "ok", "command": ["true"], "skills": ["sh"]}]});
    let anonymous = Cli::new(&dir, &hub.url, None);
    let out = anonymous.run(&["submit", "--skill", "sh", "--", "true"]);
    out.assert_code(1, "submit without a token");
    assert!(
        out.stderr.to_lowercase().contains("token"),
        "the message mentions the token: {}",
        out.stderr
    );
    let r = api.with_token(None).post("/api/v1/tasks", &valid);
    assert_eq!(r.status, 401, "no token: {}", r.text());
    assert_eq!(r.json()["code"], "unauthorized");
    let r = api
        .with_token(Some("torch_not-a-real-token"))
        .post("/api/v1/tasks", &valid);
    assert_eq!(r.status, 401, "unknown token: {}", r.text());

    let submitter = hub.token(&dir, "submitter");
    let agent = hub.token(&dir, "agent");
    let as_submitter = Cli::new(&dir, &hub.url, Some(&submitter));
    let listed = as_submitter.json(&["tasks", "list"]);
    assert!(listed["tasks"].is_array(), "a submitter token reads tasks");
    // A submitter may submit: this invalid batch gets past auth to validation.
    let r = api.with_token(Some(&submitter)).post(
        "/api/v1/tasks",
        &json!({"tasks": [{"name": "x", "command": []}]}),
    );
    assert_eq!(r.status, 400, "submitter passes auth: {}", r.text());
    let r = api.with_token(Some(&agent)).post("/api/v1/tasks", &valid);
    assert_eq!(r.status, 403, "agent token cannot submit: {}", r.text());
    assert_eq!(r.json()["code"], "forbidden");
    let out =
        Cli::new(&dir, &hub.url, Some(&agent)).run(&["submit", "--skill", "sh", "--", "true"]);
    out.assert_code(1, "submit with an agent token");
    assert!(
        out.stderr.contains("403"),
        "the 403 is reported: {}",
        out.stderr
    );

    // Bodies: too large, and unknown fields over HTTP.
    let big = "x".repeat(10 << 20);
    let body = serde_json::to_vec(
        &json!({"tasks": [{"name": "big", "command": ["true"], "prompt": big}]}),
    )
    .expect("serialize");
    let r = api
        .request("POST", "/api/v1/tasks", Some(&body))
        .expect("a 10 MB POST gets an answer");
    assert_eq!(r.status, 413, "10 MB body: {}", r.text());
    assert_eq!(r.json()["code"], "payload_too_large");

    let r = api.post(
        "/api/v1/tasks",
        &json!({"tasks": [{"name": "x", "command": ["true"], "colour": "red"}]}),
    );
    assert_eq!(r.status, 400, "unknown field over HTTP: {}", r.text());
    let err = r.json();
    assert_eq!(err["code"], "invalid_spec");
    let msg = err["message"].as_str().expect("message");
    assert!(
        msg.contains("tasks[0]") && msg.contains("colour"),
        "the error names the field path: {msg}"
    );

    let r = api.post(
        "/api/v1/tasks",
        &json!({"tasks": [{"name": "x"}], "extra": 1}),
    );
    assert_eq!(r.status, 400, "unknown top-level field: {}", r.text());

    // A NUL byte cannot reach argv or the environment: refused up front, by
    // the CLI and by the hub, rather than failing the task at run time.
    let out = submit_file(
        &cli,
        &dir,
        "nul.toml",
        "[[task]]\nname = \"a\"\ncommand = [\"echo\", \"a\\u0000b\"]\n\n\
         [[task]]\nname = \"b\"\ncommand = [\"true\"]\n",
    );
    out.assert_code(2, "NUL in an argument");
    assert_stderr_has(
        &out,
        "NUL in an argument",
        &["nul.toml: task[0].command[1] (a): contains a NUL byte"],
    );
    let r = api.post(
        "/api/v1/tasks",
        &json!({"tasks": [{"name": "x", "command": ["true"], "env": {"A": "1\u{0}2"}}]}),
    );
    assert_eq!(r.status, 400, "NUL in an env value over HTTP: {}", r.text());
    let err = r.json();
    assert_eq!(err["code"], "invalid_spec");
    assert_eq!(
        err["message"], "request: env.A: contains a NUL byte",
        "the error names the field: {err}"
    );

    // Nothing above created a task.
    let listed = cli.json(&["tasks", "list"]);
    assert_eq!(
        listed["tasks"].as_array().map(Vec::len),
        Some(0),
        "store unchanged: {listed}"
    );
    let total: u64 = listed["counts"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(total, 0, "no task in any state: {listed}");

    let down = Cli::new(
        &dir,
        &format!("http://127.0.0.1:{}", free_port()),
        Some("x"),
    );
    let out = down.run(&["submit", "--skill", "sh", "--", "true"]);
    out.assert_code(4, "submit with the hub down");
}

#[test]
fn queue_high_water_sheds_load() {
    let dir = TestDir::new("high_water");
    let hub = Hub::start(&dir, &[("TORCH_HUB__QUEUE_HIGH_WATER", "5")]);
    let api = hub.api();
    for i in 0..5 {
        let r = api.post(
            "/api/v1/tasks",
            &json!({"tasks": [{"name": format!("t{i}"), "command": ["true"], "skills": ["sh"]}]}),
        );
        assert_eq!(
            r.status,
            201,
            "task {i} under the high-water mark: {}",
            r.text()
        );
    }
    let r = api.post(
        "/api/v1/tasks",
        &json!({"tasks": [{"name": "t5", "command": ["true"], "skills": ["sh"]}]}),
    );
    assert_eq!(r.status, 429, "past the high-water mark: {}", r.text());
    assert_eq!(r.json()["code"], "queue_full");
    let retry_after: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 carries Retry-After: {:?}", r.headers))
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");

    let out = hub
        .cli(&dir)
        .run(&["submit", "--skill", "sh", "--", "true"]);
    out.assert_code(1, "CLI submit past the high-water mark");
    assert!(
        out.stderr.contains("429"),
        "the CLI reports 429: {}",
        out.stderr
    );
    let total: u64 = api.counts().values().sum();
    assert_eq!(total, 5, "only the first five were stored");
}

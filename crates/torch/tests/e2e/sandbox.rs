//! Escape tests (issue 17): real tasks try each wall of the sandbox; each
//! attempt must be contained, reported with its reason, and leave the agent
//! and hub healthy, with no process or cgroup behind.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;

use serde_json::{Value, json};

use crate::harness::*;

/// A task that must not succeed: no retries.
fn task(name: &str, argv: &[&str], sandbox: Value) -> Value {
    let mut t = json!({
        "name": name,
        "command": argv,
        "skills": ["sh"],
        "max_retries": 0,
    });
    if !sandbox.is_null() {
        t["sandbox"] = sandbox;
    }
    t
}

fn sh(name: &str, script: &str) -> Value {
    task(name, &["sh", "-c", script], Value::Null)
}

/// Runs the tasks on a fresh hub and agent; returns each task's final view.
struct Run {
    dir: TestDir,
    hub: Hub,
    agent: Agent,
}

impl Run {
    fn start(name: &str, extra: &[&str]) -> Run {
        let dir = TestDir::new(name);
        let hub = Hub::start(&dir, &[]);
        let token = hub.token(&dir, "agent");
        let agent = Agent::start_args(&dir, &hub.url, &token, "a", "sh", 4, extra);
        Run { dir, hub, agent }
    }

    fn run(&self, tasks: Vec<Value>) -> Vec<Value> {
        let api = self.hub.api();
        let ids = api.submit(tasks);
        ids.iter()
            .map(|id| {
                self.dir
                    .wait_for(&format!("task {id} to end"), secs(60), || {
                        let v = api.task(id);
                        matches!(v["state"].as_str(), Some("succeeded" | "dead")).then_some(v)
                    })
            })
            .collect()
    }

    /// The agent and the hub still work: a plain task succeeds.
    fn assert_healthy(&self) {
        let v = self.run(vec![sh("after", "echo still fine")]);
        assert_eq!(v[0]["state"], "succeeded", "{:#}", v[0]);
        assert!(pid_alive(self.agent.pid()), "the agent is alive");
    }
}

fn kind(v: &Value) -> &str {
    v["outcome"]["kind"].as_str().unwrap_or_default()
}

fn reason(v: &Value) -> &str {
    v["outcome"]["reason"].as_str().unwrap_or_default()
}

/// Asserts the task was stopped by the sandbox at `layer`.
fn denied(v: &Value, layer: &str) {
    assert_eq!(kind(v), "sandbox_denied", "{:#}", v["outcome"]);
    assert!(
        reason(v).contains(&format!("({layer})")),
        "the reason names the {layer} wall: {:#}",
        v["outcome"]
    );
    assert_eq!(v["state"], "dead", "no retry was asked for");
}

/// No task cgroup of this agent is left in any hierarchy.
fn no_cgroups_left(agent_pid: i32) {
    let prefix = format!("torch-{agent_pid}-");
    let mut left = Vec::new();
    let mut visit = |dir: &Path| {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    left.push(e.path());
                }
            }
        }
    };
    for line in std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
    {
        let mut it = line.splitn(3, ':');
        let (_, ctrl, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
        let rel = path.trim_start_matches('/');
        if ctrl.is_empty() {
            visit(&Path::new("/sys/fs/cgroup/unified").join(rel));
            visit(&Path::new("/sys/fs/cgroup").join(rel));
        }
        for c in ctrl.split(',').filter(|c| !c.is_empty()) {
            let c = c.trim_start_matches("name=");
            visit(&Path::new("/sys/fs/cgroup").join(c).join(rel));
        }
    }
    assert!(left.is_empty(), "task cgroups left behind: {left:?}");
}

#[test]
fn files_outside_the_work_dir_are_out_of_reach() {
    let r = Run::start("sb-files", &[]);
    let db = r.dir.join("hub-data/torch.db");
    assert!(
        db.exists(),
        "the hub keeps its database at {}",
        db.display()
    );
    // Another task's work dir: a file under the same work root.
    let other = r.dir.subdir("work-a/other-task-1");
    std::fs::write(other.join("secret"), "s3cret").expect("write a secret");
    let outside = r.dir.join("escaped");
    let agent_environ = format!("/proc/{}/environ", r.agent.pid());
    let v = r.run(vec![
        sh(
            "hub-db",
            &format!("cat {} > /dev/null", q(&db.to_string_lossy())),
        ),
        sh(
            "other-task",
            &format!("cat {}", q(&other.join("secret").to_string_lossy())),
        ),
        sh(
            "write-outside",
            &format!("echo x > {}", q(&outside.to_string_lossy())),
        ),
        sh("agent-environ", &format!("cat {agent_environ} > /dev/null")),
        sh(
            "inside",
            "echo ok > mine && mkdir -p d && cat mine && echo t > \"$TMPDIR/t\"",
        ),
    ]);
    for t in &v[..3] {
        denied(t, "files");
    }
    assert!(!reason(&v[1]).contains("s3cret") && !outside.exists());
    assert_eq!(kind(&v[3]), "sandbox_denied", "{:#}", v[3]["outcome"]);
    assert_eq!(v[4]["state"], "succeeded", "{:#}", v[4]);
    let sb = &v[4]["outcome"]["evidence"]["sandbox"];
    assert_eq!(sb["level"], "full", "{sb:#}");
    assert!(
        sb["layers"]["files"]
            .as_str()
            .is_some_and(|f| f.starts_with("landlock")),
        "{sb:#}"
    );
    let shown = r
        .hub
        .cli(&r.dir)
        .run(&["tasks", "show", v[4]["id"].as_str().unwrap_or("")]);
    assert!(
        shown.stdout.contains("sandbox   full (files landlock"),
        "tasks show names the sandbox: {}",
        shown.stdout
    );
    r.assert_healthy();
    no_cgroups_left(r.agent.pid());
}

#[test]
fn network_reaches_only_the_hub_socket() {
    let r = Run::start("sb-net", &[]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("addr").port();
    let hub_port = r.hub.url.rsplit(':').next().unwrap_or_default().to_string();
    let connect = |name: &str, port: &str| {
        let code = format!(
            "import socket,sys\ns=socket.create_connection(('127.0.0.1',{port}),timeout=5)\n\
             s.sendall(b'GET /api/v1/tasks HTTP/1.0\\r\\nAuthorization: Bearer '+sys.argv[1].encode()+b'\\r\\n\\r\\n')\n\
             print(s.recv(100))"
        );
        task(
            name,
            &["/usr/bin/python3", "-c", &code, "stolen-looking-token"],
            Value::Null,
        )
    };
    let v = r.run(vec![
        connect("listener", &port.to_string()),
        connect("hub-port", &hub_port),
        // What a task may do: report progress through its hub socket.
        sh("progress", "torch progress 50 through-the-socket"),
        // `none`: not even the hub.
        task(
            "none",
            &["sh", "-c", "torch progress 10 nope"],
            json!({"network": "none"}),
        ),
    ]);
    denied(&v[0], "network");
    denied(&v[1], "network");
    let mut buf = [0u8; 16];
    let got = listener.accept().map(|(mut s, _)| s.read(&mut buf));
    assert!(got.is_err(), "nothing reached the host's listener");
    assert_eq!(v[2]["state"], "succeeded", "{:#}", v[2]);
    assert_eq!(v[2]["progress"]["percent"].as_f64(), Some(50.0));
    let layers = &v[2]["outcome"]["evidence"]["sandbox"]["layers"];
    assert_eq!(layers["network"], "netns+hub-socket", "{layers:#}");
    assert_eq!(v[3]["state"], "dead", "network none has no hub: {:#}", v[3]);
    assert_eq!(
        v[3]["outcome"]["evidence"]["sandbox"]["layers"]["network"],
        "netns"
    );
    r.assert_healthy();
    no_cgroups_left(r.agent.pid());
}

#[test]
fn limits_end_fork_bombs_allocations_and_spins() {
    let r = Run::start("sb-limits", &[]);
    let v = r.run(vec![
        task(
            "fork-bomb",
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 2000 ]; do sleep 30 & i=$((i+1)); done; wait",
            ],
            json!({"processes": 64}),
        ),
        task(
            "ten-gb",
            &[
                "/usr/bin/python3",
                "-c",
                "b = bytearray(10 * 1024**3); print(len(b))",
            ],
            json!({"memory": "256MiB"}),
        ),
        task(
            "spin",
            &["sh", "-c", "while :; do :; done"],
            json!({"cpu_secs": 1}),
        ),
    ]);
    assert_eq!(kind(&v[0]), "pids_exceeded", "{:#}", v[0]["outcome"]);
    assert!(reason(&v[0]).contains("64"), "{}", reason(&v[0]));
    assert_eq!(kind(&v[1]), "oom", "{:#}", v[1]["outcome"]);
    assert!(reason(&v[1]).contains("256MiB"), "{}", reason(&v[1]));
    assert_eq!(kind(&v[2]), "cpu_time", "{:#}", v[2]["outcome"]);
    let layers = &v[1]["outcome"]["evidence"]["sandbox"]["layers"];
    assert!(
        layers["memory"]
            .as_str()
            .is_some_and(|m| m.starts_with("cgroup")),
        "{layers:#}"
    );
    r.assert_healthy();
    no_cgroups_left(r.agent.pid());
}

#[test]
fn escaped_children_ptrace_and_namespaces_are_contained() {
    let r = Run::start("sb-procs", &[]);
    let agent = r.agent.pid();
    let ptrace = format!(
        "import ctypes,os,sys\nl=ctypes.CDLL(None,use_errno=True)\n\
         r=l.ptrace(16,{agent},0,0)\nprint(r, os.strerror(ctypes.get_errno()), file=sys.stderr)\n\
         sys.exit(0 if r == 0 else 1)"
    );
    let v = r.run(vec![
        sh(
            "setsid",
            "setsid sleep 1000 > /dev/null 2>&1 & echo \"escapee $!\"",
        ),
        task("ptrace", &["/usr/bin/python3", "-c", &ptrace], Value::Null),
        task("unshare", &["unshare", "-U", "true"], Value::Null),
    ]);
    assert_eq!(v[0]["state"], "succeeded", "{:#}", v[0]);
    let out = v[0]["outcome"]["evidence"]["stdout_tail"]
        .as_str()
        .unwrap_or_default();
    let pid: i32 = out
        .trim()
        .strip_prefix("escapee ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the task printed its child: {out:?}"));
    r.dir
        .wait_for("the setsid child to be killed", secs(10), || {
            (!pid_alive(pid)).then_some(())
        });
    denied(&v[1], "syscalls");
    denied(&v[2], "syscalls");
    r.assert_healthy();
    no_cgroups_left(agent);
}

#[test]
fn strict_refuses_a_missing_layer_and_best_effort_says_so() {
    let strict = Run::start(
        "sb-strict",
        &[
            "--sandbox-require",
            "strict",
            "--sandbox-disable",
            "network",
        ],
    );
    let v = strict.run(vec![sh("refused", "echo ran")]);
    assert_eq!(kind(&v[0]), "fatal", "{:#}", v[0]["outcome"]);
    let why = reason(&v[0]);
    assert!(
        why.contains("strict") && why.contains("network") && why.contains("fix:"),
        "the refusal carries the probe's message: {why}"
    );
    assert!(
        v[0]["outcome"]["evidence"]["exit_code"].is_null(),
        "nothing ran: {:#}",
        v[0]["outcome"]
    );
    drop(strict);

    let lax = Run::start("sb-lax", &["--sandbox-disable", "network"]);
    let v = lax.run(vec![sh("partial", "echo ran")]);
    assert_eq!(v[0]["state"], "succeeded", "{:#}", v[0]);
    let sb = &v[0]["outcome"]["evidence"]["sandbox"];
    assert_eq!(sb["level"], "partial", "{sb:#}");
    assert_eq!(sb["missing"], json!(["network"]), "{sb:#}");
    // A task asking for strict on that agent is refused too.
    let v = lax.run(vec![task(
        "task-strict",
        &["sh", "-c", "echo ran"],
        json!({"require": "strict"}),
    )]);
    assert_eq!(kind(&v[0]), "fatal", "{:#}", v[0]["outcome"]);
    let shown = lax.hub.cli(&lax.dir).json(&["agent", "--check-sandbox"]);
    assert!(shown["landlock_abi"].as_u64().is_some(), "{shown:#}");
}

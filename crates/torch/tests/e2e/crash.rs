//! Durability: `kill -9` of the hub under load loses no acknowledged task and
//! records every success exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Agent, Api, Hub, TestDir, secs};

const TASKS: usize = 1000;
const BATCH: usize = 20;
const KILL_AFTER: usize = 300;

fn spec(n: usize, out: &Path) -> Value {
    // Every other task runs a real process with a side effect; the rest are
    // built-in no-ops so the test stays fast.
    let command = if n.is_multiple_of(2) {
        json!(["sh", "-c", r#"echo "$TORCH_TASK_ID" >> "$OUT/done.log""#])
    } else {
        json!(["@noop"])
    };
    json!({
        "name": format!("n{n}"),
        "command": command,
        "skills": ["sh"],
        "idempotency_key": format!("k-{n}"),
        "max_retries": 5,
        "backoff": {"initial": "100ms", "max": "500ms", "multiplier": 2.0},
        "env": {"OUT": out},
    })
}

#[derive(Default)]
struct Submitted {
    /// Idempotency key to the acknowledged task id.
    acked: BTreeMap<String, String>,
    failed_attempts: usize,
    duplicates: usize,
    error: Option<String>,
}

/// Submits all batches in order, retrying a failed batch with the same keys
/// (bounded to 60 s per batch).
fn submit_all(api: &Api, out: &Path, state: &Mutex<Submitted>, count: &AtomicUsize) {
    for b in 0..TASKS / BATCH {
        let tasks: Vec<Value> = (b * BATCH..(b + 1) * BATCH).map(|n| spec(n, out)).collect();
        let body = serde_json::to_vec(&json!({"tasks": tasks, "source": "e2e"})).expect("json");
        let start = Instant::now();
        let mut ok = false;
        for _ in 0..2000 {
            match api.request("POST", "/api/v1/tasks", Some(&body)) {
                Ok(r) if r.status == 201 => {
                    let v = r.json();
                    let mut s = state.lock().expect("lock");
                    for (i, t) in v["tasks"].as_array().expect("tasks").iter().enumerate() {
                        let key = format!("k-{}", b * BATCH + i);
                        let id = t["id"].as_str().expect("id").to_string();
                        if t["duplicate"] == true {
                            s.duplicates += 1;
                        }
                        assert_eq!(
                            t["name"],
                            format!("n{}", b * BATCH + i),
                            "response in request order"
                        );
                        s.acked.insert(key, id);
                    }
                    count.store(s.acked.len(), Ordering::SeqCst);
                    ok = true;
                    break;
                }
                Ok(r) if r.status == 503 || r.status == 429 => {
                    state.lock().expect("lock").failed_attempts += 1;
                }
                Ok(r) => {
                    state.lock().expect("lock").error =
                        Some(format!("batch {b}: unexpected {} {}", r.status, r.text()));
                    return;
                }
                Err(_) => state.lock().expect("lock").failed_attempts += 1,
            }
            if start.elapsed() > secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !ok {
            state.lock().expect("lock").error =
                Some(format!("batch {b} never accepted within 60 s"));
            return;
        }
    }
}

#[test]
fn kill9_hub_under_load_loses_nothing() {
    let started = Instant::now();
    let dir = TestDir::new("kill9_hub");
    let env = [
        ("TORCH_HUB__LEASE", "2s"),
        ("TORCH_HUB__HEARTBEAT", "500ms"),
    ];
    let mut hub = Hub::start_fixed_port(&dir, &env);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let out = dir.subdir("out");
    let _agents: Vec<Agent> = (1..=3)
        .map(|i| Agent::start(&dir, &hub.url, &token, &format!("a{i}"), "sh", 4))
        .collect();
    let mut agent_ids: Vec<String> = (1..=3)
        .map(|i| api.agent_id(&dir, &format!("a{i}")))
        .collect();
    agent_ids.sort();

    let state = Arc::new(Mutex::new(Submitted::default()));
    let count = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (api, out, state, count, finished) = (
            api.clone(),
            out.clone(),
            state.clone(),
            count.clone(),
            finished.clone(),
        );
        std::thread::spawn(move || {
            submit_all(&api, &out, &state, &count);
            finished.store(true, Ordering::SeqCst);
        })
    };

    // Poll tightly (1 ms, bounded to 60 s) so the kill lands close to 300.
    let deadline = Instant::now() + secs(60);
    for _ in 0..60_000 {
        if count.load(Ordering::SeqCst) >= KILL_AFTER
            || finished.load(Ordering::SeqCst)
            || Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let at_kill = count.load(Ordering::SeqCst);
    hub.kill9();
    eprintln!("kill9_hub: hub killed after {at_kill} acknowledged tasks");
    assert!(
        at_kill < TASKS,
        "the hub was killed while the submitter was still running"
    );
    std::thread::sleep(Duration::from_millis(300)); // let some submissions fail
    hub.restart(&dir);

    dir.wait_for("the submitter to finish", secs(120), || {
        finished.load(Ordering::SeqCst).then_some(())
    });
    submitter.join().expect("submitter thread");
    let s = state.lock().expect("lock");
    assert_eq!(s.error, None, "submitter error");
    assert_eq!(s.acked.len(), TASKS, "every key acknowledged");
    let unique: HashSet<&String> = s.acked.values().collect();
    assert_eq!(unique.len(), TASKS, "every key has its own task");

    let counts = dir.wait_for("every task to be terminal", secs(120), || {
        let c = api.counts();
        let terminal: u64 = ["succeeded", "dead", "cancelled"]
            .iter()
            .map(|k| c.get(*k).copied().unwrap_or(0))
            .sum();
        (terminal >= TASKS as u64).then_some(c)
    });
    let total: u64 = counts.values().sum();
    assert_eq!(
        total, TASKS as u64,
        "no duplicate tasks were created: {counts:?}"
    );

    // One page holds all 1000 (the API's maximum); anything missing is read singly.
    let page = api.get("/api/v1/tasks?limit=1000");
    let states: HashMap<String, String> = page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().expect("id").to_string(),
                t["state"].as_str().expect("state").to_string(),
            )
        })
        .collect();
    for (key, id) in &s.acked {
        let st = match states.get(id) {
            Some(st) => st.clone(),
            None => api.task(id)["state"].as_str().expect("state").to_string(),
        };
        assert_eq!(st, "succeeded", "acknowledged task {key} ({id})");
    }

    let mut succeeded: HashMap<String, usize> = HashMap::new();
    for e in api.events("nova.torch.tasks.completed") {
        if e["kind"] == "task.succeeded" {
            *succeeded
                .entry(e["task_id"].as_str().expect("task_id").to_string())
                .or_default() += 1;
        }
    }
    let wrong: Vec<(&String, usize)> = s
        .acked
        .values()
        .map(|id| (id, succeeded.get(id).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "tasks without exactly one task.succeeded: {wrong:?}"
    );
    assert_eq!(
        succeeded.len(),
        TASKS,
        "no task.succeeded for unknown tasks"
    );

    // The agents came back to the restarted hub under their old ids.
    let mut back: Vec<String> = (1..=3)
        .map(|i| api.agent_id(&dir, &format!("a{i}")))
        .collect();
    back.sort();
    assert_eq!(back, agent_ids, "agents rejoin with the ids they had");

    let log = std::fs::read_to_string(out.join("done.log")).unwrap_or_default();
    let mut lines: HashMap<&str, usize> = HashMap::new();
    for l in log.lines() {
        *lines.entry(l).or_default() += 1;
    }
    let repeated = lines.values().filter(|&&n| n > 1).count();
    eprintln!(
        "kill9_hub: {} side-effect lines for {} process tasks, {repeated} ran more than once; \
         {} failed submit attempts, {} duplicates returned; {:.1} s",
        log.lines().count(),
        TASKS / 2,
        s.failed_attempts,
        s.duplicates,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        lines.len(),
        TASKS / 2,
        "every process task left its side effect"
    );
}

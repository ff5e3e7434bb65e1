//! Submissions to a follower that cannot reach the leader (issue 6: any hub
//! accepts submissions): the follower writes them itself and hands them off
//! through the store; the leader reads the hand-off through its consumer
//! group and schedules them at once, not at the next reconcile. A hand-off
//! made while there is no leader is scheduled by the next one.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use torch_store_redis::testing::RedisServer;

use crate::harness::{Agent, Api, Cli, Hub, TestDir, free_port, secs};

fn role(api: &Api) -> String {
    api.request("GET", "/api/v1/health", None)
        .ok()
        .map(|r| r.json()["role"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn spec(name: &str) -> Value {
    json!({"name": name, "command": ["true"], "skills": ["sh"]})
}

/// Submits one task to `api` and checks it was handed off; returns its id.
fn submit_handed_off(api: &Api, name: &str) -> String {
    let r = api.post("/api/v1/tasks", &json!({ "tasks": [spec(name)] }));
    assert_eq!(r.status, 201, "submit to the follower: {}", r.text());
    assert_eq!(
        r.header("x-torch-handed-off"),
        Some("1"),
        "accepted by the follower itself: {:?}",
        r.headers
    );
    let body = r.json();
    let task = &body["tasks"][0];
    let warnings = task["warnings"].to_string();
    assert!(warnings.contains("handed off"), "{body}");
    task["id"].as_str().expect("task id").to_string()
}

/// The hand-off entries on `nova.torch.hubs.handoff`.
fn handoffs(api: &Api) -> Vec<Value> {
    api.events("nova.torch.hubs.handoff")
}

#[test]
fn a_follower_that_cannot_reach_the_leader_hands_submissions_off() {
    let _machine = crate::machine_shared();
    let Some(redis) = RedisServer::start_or_skip(&["--appendonly", "yes"]) else {
        return;
    };
    let (da, db) = (TestDir::new("handoff-a"), TestDir::new("handoff-b"));
    let url = redis.url();
    // Hub A leads but advertises an address nobody listens on, so hub B
    // cannot forward to it (connection refused). Reconcile is far off: only
    // the hand-off can bring B's submissions to A in time.
    let dead_end = format!("http://127.0.0.1:{}", free_port());
    let common = [
        ("TORCH_STORE__URL", url.as_str()),
        ("TORCH_HUB__LEADER_LEASE", "2s"),
        ("TORCH_HUB__LEASE", "3s"),
        ("TORCH_HUB__HEARTBEAT", "500ms"),
        ("TORCH_HUB__RECONCILE_EVERY", "10m"),
    ];
    let mut env_a = common.to_vec();
    env_a.push(("TORCH_HUB__ADVERTISE_URL", dead_end.as_str()));
    let mut a = Hub::start_fixed_port(&da, &env_a);
    let api_a = a.api();
    da.wait_for("hub A to lead", secs(20), || {
        (role(&api_a) == "leader").then_some(())
    });
    db.write("admin.token", &a.admin);
    let b = Hub::start_fixed_port(&db, &common);
    let api_b = b.api();
    db.wait_for("hub B to follow", secs(20), || {
        (role(&api_b) == "follower").then_some(())
    });
    // The agent talks to A directly; it knows B too, for when A is gone.
    let token = a.token(&da, "agent");
    let both = format!("{},{}", a.url, b.url);
    let _agent = Agent::start(&da, &both, &token, "at-a", "sh", 2);
    api_a.agent_id(&da, "at-a");

    // 1. Leader alive but unreachable from B.
    let first = submit_handed_off(&api_b, "handed-1");
    let start = Instant::now();
    api_a.wait_state(&da, &first, "succeeded", secs(30));
    let took = start.elapsed();
    eprintln!(
        "hand-off to a live leader: succeeded after {} ms",
        took.as_millis()
    );
    assert!(
        took < Duration::from_secs(60),
        "scheduled by the hand-off, not by the 10 min reconcile"
    );
    let entries = handoffs(&api_a);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["kind"], "tasks.handed_off");
    let data = &entries[0]["data"];
    assert_eq!(data["tasks"], json!([first]), "{data}");
    let b_id = api_b.get("/api/v1/health")["hub_id"].clone();
    assert!(
        b_id.as_str().is_some_and(|h| h.starts_with(&b.url)),
        "hub B's id starts with its URL: {b_id}"
    );
    assert_eq!(data["hub"], b_id, "names hub B: {data}");
    // A submission to the leader itself is no hand-off.
    let direct = api_a.submit(vec![spec("direct")]);
    api_a.wait_state(&da, &direct[0], "succeeded", secs(30));
    assert_eq!(
        handoffs(&api_a).len(),
        1,
        "no hand-off for the leader's own"
    );

    // 2. The leader dies: B accepts a submission while it is no leader yet
    // (or knows only A's dead address), takes over, and runs it on the same
    // agent, which finds B in its list once A does not answer.
    a.kill9();
    let during = submit_handed_off(&api_b, "handed-2");
    db.wait_for("hub B to lead", secs(20), || {
        (role(&api_b) == "leader").then_some(())
    });
    api_b.wait_state(&db, &during, "succeeded", secs(60));
    let ran_on = api_b.task(&during)["last_agent_id"].clone();
    assert_eq!(
        ran_on.as_str(),
        Some(api_b.agent_id(&db, "at-a").as_str()),
        "the agent moved to B: {ran_on}"
    );
    // The CLI given both hubs skips the dead one.
    let cli = Cli::new(&db, &both, Some(&a.admin));
    let shown = cli.json(&["tasks", "show", &during]);
    assert_eq!(shown["state"], "succeeded", "{shown}");
    let all = handoffs(&api_b);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1]["data"]["tasks"], json!([during]));
    // Each task ran once.
    for id in [&first, &during, &direct[0]] {
        let done = api_b.task_events(id, "task.succeeded");
        assert_eq!(done.len(), 1, "{id}: {done:?}");
    }
}

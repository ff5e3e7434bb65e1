//! Retention (`[store] retention`): the hub deletes finished tasks once they
//! are older than the period, and never unfinished ones.

use serde_json::json;

use crate::harness::{Agent, Hub, TestDir, secs};

#[test]
fn finished_tasks_past_the_retention_period_are_deleted() {
    let dir = TestDir::new("retention");
    let hub = Hub::start(&dir, &[("TORCH_STORE__RETENTION", "2s")]);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "keeper", "sh", 2);
    api.agent_id(&dir, "keeper");

    let done = api.submit(vec![
        json!({"name": "quick-1", "command": ["true"], "skills": ["sh"]}),
        json!({"name": "quick-2", "command": ["sh", "-c", "exit 3"], "skills": ["sh"], "max_retries": 0}),
    ]);
    // Still running when the others are deleted, and a task no agent can take.
    let slow = api.submit(vec![
        json!({"name": "slow", "command": ["sleep", "8"], "skills": ["sh"]}),
    ]);
    let waiting = api.submit(vec![
        json!({"name": "nobody", "command": ["true"], "skills": ["gpu"]}),
    ]);
    api.wait_state(&dir, &done[0], "succeeded", secs(30));
    api.wait_state(&dir, &done[1], "dead", secs(30));

    // Gone within the period plus a round or two.
    for id in &done {
        dir.wait_for("a finished task to be deleted", secs(30), || {
            let r = api
                .request("GET", &format!("/api/v1/tasks/{id}"), None)
                .expect("GET task");
            (r.status == 404).then_some(())
        });
    }
    let stats = api.get("/api/v1/stats");
    assert!(
        stats["tasks_purged"].as_u64().unwrap_or(0) >= 2,
        "stats count the deleted tasks: {stats}"
    );
    // The unfinished ones are untouched.
    assert_eq!(api.task(&slow[0])["state"], "running");
    assert_eq!(api.task(&waiting[0])["state"], "queued");
    // The running one finishes normally later.
    api.wait_state(&dir, &slow[0], "succeeded", secs(30));
}

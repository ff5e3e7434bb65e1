//! The autonomy metrics in `/api/v1/stats` and `torch stats`: what an
//! operator touches leaves the autonomous share.

use serde_json::json;

use crate::harness::{Agent, Hub, TestDir, secs};

/// Three tasks succeed on their own; a fourth dies, an operator retries it
/// and it succeeds: 75 % of the succeeded tasks ran without intervention.
#[test]
fn an_operator_retry_leaves_the_autonomous_share() {
    let dir = TestDir::new("autonomy");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a1", "sh", 2);
    let marker = dir.subdir("out").join("failed-once");
    let flaky = format!(
        "if [ -f {m} ]; then echo ok; else touch {m}; exit 1; fi",
        m = marker.display()
    );
    let mut specs: Vec<_> = (0..3)
        .map(|i| json!({"name": format!("ok{i}"), "command": ["true"], "skills": ["sh"]}))
        .collect();
    specs.push(json!({"name": "flaky", "command": ["sh", "-c", flaky], "skills": ["sh"], "max_retries": 0}));
    let ids = api.submit(specs);
    for id in &ids[..3] {
        api.wait_state(&dir, id, "succeeded", secs(30));
    }
    api.wait_state(&dir, &ids[3], "dead", secs(30));
    let r = api.post(&format!("/api/v1/tasks/{}/retry", ids[3]), &json!({}));
    assert_eq!(r.status, 200, "retry: {}", r.text());
    api.wait_state(&dir, &ids[3], "succeeded", secs(30));

    let stats = hub.cli(&dir).json(&["stats"]);
    let a = &stats["autonomy"];
    assert_eq!(a["tasks_without_intervention_pct"], 75.0, "{a}");
    assert!(
        a["tasks_per_agent_hour"].as_f64().is_some_and(|r| r > 0.0),
        "{a}"
    );
    assert_eq!(a["self_spawn_events"], 0, "{a}");
    assert!(
        a["self_spawn_success_rate"].is_null(),
        "nothing to divide: {a}"
    );
    for key in [
        "team_formation_success_rate",
        "messages_delivered_rate",
        "help_accept_rate",
        "adapt_seconds",
    ] {
        assert!(a.get(key).is_some(), "{key} is part of the contract: {a}");
    }
    let text = hub.cli(&dir).run(&["stats"]);
    text.assert_code(0, "torch stats");
    assert!(
        text.stdout.contains("tasks without intervention") && text.stdout.contains("75.0 %"),
        "{}",
        text.stdout
    );
}

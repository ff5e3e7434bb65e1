//! Load shedding by priority on a live hub with no agents: as the backlog
//! climbs past `hub.shed-from` × `hub.queue-high-water`, low priorities are
//! refused with `429 shed` (the floor in the body, `Retry-After`), high
//! ones are still accepted, and at the high-water mark everything is refused.

use serde_json::{Value, json};

use crate::harness::{Api, Hub, Response, TestDir};

fn submit(api: &Api, tasks: &[(&str, i32)]) -> Response {
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|(name, priority)| {
            json!({"name": name, "command": ["true"], "skills": ["sh"], "priority": priority})
        })
        .collect();
    api.post("/api/v1/tasks", &json!({ "tasks": tasks }))
}

fn retry_after(r: &Response) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("429 carries Retry-After: {:?}", r.headers))
        .parse()
        .expect("Retry-After is a number of seconds")
}

/// Asserts `r` is `429 shed` with `floor`.
fn assert_shed(r: &Response, floor: i64, what: &str) {
    assert_eq!(r.status, 429, "{what}: {}", r.text());
    let body = r.json();
    assert_eq!(body["code"], "shed", "{what}: {body}");
    assert_eq!(body["floor"], floor, "{what}: {body}");
    assert_eq!(retry_after(r), 7, "{what}");
}

/// `torch_shed_total` samples in `/metrics`, as `(labels, value)`.
fn shed_metrics(api: &Api) -> Vec<(String, f64)> {
    let text = api
        .request("GET", "/metrics", None)
        .expect("GET /metrics")
        .text();
    text.lines()
        .filter_map(|l| l.strip_prefix("torch_shed_total{"))
        .filter_map(|l| {
            let (labels, value) = l.split_once("} ")?;
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn shed_count(samples: &[(String, f64)], reason: &str, band: &str) -> f64 {
    samples
        .iter()
        .filter(|(l, _)| {
            l.contains(&format!("reason=\"{reason}\""))
                && l.contains(&format!("priority=\"{band}\""))
        })
        .map(|(_, v)| *v)
        .sum()
}

#[test]
fn low_priorities_are_shed_first_and_the_limit_refuses_all() {
    let dir = TestDir::new("shed");
    // Limit 10, shedding from 5: the floor is -1000 at 5 unfinished tasks,
    // then -600, -200, 200, 600 at 6..9; at 10 everything is refused.
    let hub = Hub::start(
        &dir,
        &[
            ("TORCH_HUB__QUEUE_HIGH_WATER", "10"),
            ("TORCH_HUB__SHED_FROM", "0.5"),
            ("TORCH_HUB__RETRY_AFTER_SECS", "7"),
        ],
    );
    let api = hub.api();
    let stats = api.get("/api/v1/stats");
    assert_eq!(
        stats["shed"],
        json!({"backlog": 0, "from": 5, "limit": 10, "floor": null}),
        "{stats}"
    );

    // Below the mark every priority is accepted, the lowest included.
    for i in 0..5 {
        let r = submit(&api, &[(&format!("low{i}"), -1000)]);
        assert_eq!(r.status, 201, "low{i} below the mark: {}", r.text());
    }
    assert_eq!(api.get("/api/v1/stats")["shed"]["floor"], -1000);
    // 5 unfinished: floor -1000; 6: -600; 7: -200.
    assert_eq!(submit(&api, &[("p0-a", 0)]).status, 201);
    assert_shed(
        &submit(&api, &[("p-700", -700)]),
        -600,
        "priority -700 at 6",
    );
    assert_eq!(submit(&api, &[("p0-b", 0)]).status, 201);
    assert_eq!(submit(&api, &[("p0-c", 0)]).status, 201);

    // 8 unfinished: floor 200. Priority 0 is shed; a batch is judged by
    // its lowest priority, as a whole.
    let r = submit(&api, &[("p0-d", 0)]);
    assert_shed(&r, 200, "priority 0 at 8");
    let message = r.json()["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("floor 200"), "{message}");
    let r = submit(&api, &[("b-high", 900), ("b-low", 100)]);
    assert_shed(&r, 200, "a batch with one task below the floor");
    assert_eq!(api.get("/api/v1/stats")["shed"]["floor"], 200);

    // The CLI shows the refusal (exit 1, the code and the floor).
    let out = hub
        .cli(&dir)
        .run(&["submit", "--skill", "sh", "--priority", "5", "--", "true"]);
    out.assert_code(1, "CLI submit below the floor");
    assert!(
        out.stderr.contains("429 (shed)") && out.stderr.contains("floor 200"),
        "the CLI names the refusal and the floor: {}",
        out.stderr
    );

    // High priorities are still accepted: 8 → 9 (floor 600) → 10.
    let r = submit(&api, &[("p500", 500), ("p800", 800)]);
    assert_eq!(r.status, 201, "a batch at or above 200: {}", r.text());
    // 10 unfinished: the hard limit refuses even the highest priority.
    let r = submit(&api, &[("p1000", 1000)]);
    assert_eq!(r.status, 429, "at the limit: {}", r.text());
    assert_eq!(r.json()["code"], "queue_full", "{}", r.text());
    assert_eq!(retry_after(&r), 7);

    // Nothing was stored for a refused submission.
    let total: u64 = api.counts().values().sum();
    assert_eq!(total, 10, "only the accepted tasks are stored");
    let names: Vec<String> = api.get("/api/v1/tasks?limit=100")["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    for refused in ["p-700", "p0-d", "b-high", "b-low", "p1000"] {
        assert!(
            !names.iter().any(|n| n == refused),
            "{refused} stored: {names:?}"
        );
    }

    // The counter counts refused tasks by reason and priority band.
    let m = shed_metrics(&api);
    assert_eq!(shed_count(&m, "floor", "low"), 1.0, "{m:?}");
    // p0-d (normal); the batch counts 2 tasks in its lowest band (high).
    assert_eq!(shed_count(&m, "floor", "normal"), 1.0, "{m:?}");
    assert_eq!(shed_count(&m, "floor", "high"), 3.0, "{m:?}");
    assert_eq!(shed_count(&m, "limit", "high"), 1.0, "{m:?}");
    assert_eq!(shed_count(&m, "limit", "low"), 0.0, "{m:?}");
}

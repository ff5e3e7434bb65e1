//! `torch tasks list`: paging through the API past one page.

use serde_json::{Value, json};

use crate::harness::{Hub, TestDir};

/// The ids listed, newest first.
fn ids(listed: &Value) -> Vec<String> {
    listed["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("tasks array: {listed}"))
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect()
}

/// Asserts that `listed` is exactly `want` (newest first) without printing
/// a thousand ids when it is not.
fn assert_listed(listed: &[String], want: &[String], what: &str) {
    assert_eq!(listed.len(), want.len(), "{what}: how many tasks");
    if let Some(i) = (0..want.len()).find(|&i| listed[i] != want[i]) {
        panic!(
            "{what}: position {i} is {} instead of {}",
            listed[i], want[i]
        );
    }
}

/// Regression: `--limit 1000000` returned the API's page (1,000 tasks) and
/// said nothing. The CLI follows the `before` cursor to the limit or the end.
/// (Submitting 1,003 tasks with no agent takes well under a second.)
#[test]
fn tasks_list_pages_past_the_api_page_size() {
    let dir = TestDir::new("list_paging");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    // No agent has this skill: the tasks stay queued.
    let specs: Vec<Value> = (0..1003)
        .map(|i| json!({"name": format!("t{i}"), "command": ["true"], "skills": ["nobody"]}))
        .collect();
    let mut newest_first = api.submit(specs);
    newest_first.reverse();

    let all = cli.json(&["tasks", "list", "--limit", "1000000"]);
    assert_listed(&ids(&all), &newest_first, "--limit 1000000");
    assert_eq!(
        all["counts"]["queued"], 1003,
        "counts over the store: {}",
        all["counts"]
    );

    // A limit just past one page takes one task from the second.
    let some = cli.json(&["tasks", "list", "--limit", "1001"]);
    assert_listed(&ids(&some), &newest_first[..1001], "--limit 1001");

    // Within one page, and the default (50), nothing changes.
    let few = cli.json(&["tasks", "list", "--limit", "3"]);
    assert_listed(&ids(&few), &newest_first[..3], "--limit 3");
    let default = cli.json(&["tasks", "list"]);
    assert_listed(&ids(&default), &newest_first[..50], "default limit");

    // The table has a header, one row per task and the totals line.
    let out = cli.run(&["tasks", "list", "--limit", "1002"]);
    out.assert_code(0, "table past one page");
    assert_eq!(out.stdout.lines().count(), 1 + 1002 + 1, "table rows");
    assert!(out.stderr.is_empty(), "nothing was cut: {}", out.stderr);

    // Zero used to mean the hub's default page (100 tasks).
    let out = cli.run(&["tasks", "list", "--limit", "0"]);
    out.assert_code(2, "--limit 0");
    assert!(out.stderr.contains("--limit"), "{}", out.stderr);
}

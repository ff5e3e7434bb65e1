//! `torch demo`, as a new user runs it: the pipeline, and the sprint-review
//! scenarios with `--json`, each checked by its verdict.

use crate::harness::{Cli, TestDir, secs};

#[test]
fn the_pipeline_demo_ends_as_designed() {
    let dir = TestDir::new("demo-pipeline");
    let out = Cli::new(&dir, "http://127.0.0.1:9", None).run_timeout(&["demo"], secs(120));
    out.assert_code(0, "torch demo");
    assert!(
        out.stdout.contains("✔ demo complete"),
        "no verdict line:\n{}",
        out.stdout
    );
}

#[test]
fn every_scenario_ends_ok_with_its_verdict() {
    let dir = TestDir::new("demo-scenarios");
    let out = Cli::new(&dir, "http://127.0.0.1:9", None)
        .run_timeout(&["demo", "all", "--json"], secs(240));
    let v = out.json();
    let scenarios = v["scenarios"].as_array().expect("a scenarios array");
    let numbers: Vec<u64> = scenarios
        .iter()
        .map(|s| s["number"].as_u64().expect("a number"))
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "every scenario, in order");
    for s in scenarios {
        let verdict = s["verdict"].as_str().expect("a verdict");
        assert!(!verdict.is_empty() && s["name"].is_string(), "{s}");
        assert!(s["seconds"].as_f64().is_some_and(|t| t >= 0.0), "{s}");
        assert_eq!(
            s["ok"], true,
            "scenario {}: {verdict}\nstderr: {}",
            s["number"], out.stderr
        );
    }
    out.assert_code(0, "every scenario ended as designed");
}

#[test]
fn one_scenario_runs_alone_and_a_wrong_one_is_refused() {
    let dir = TestDir::new("demo-one");
    let cli = Cli::new(&dir, "http://127.0.0.1:9", None);
    let v = cli.json(&["demo", "1"]);
    assert_eq!(v["scenarios"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["scenarios"][0]["ok"], true, "{v}");
    let out = cli.run(&["demo", "6"]);
    out.assert_code(2, "an unknown scenario is a usage error");
    assert!(out.stderr.contains("possible values"), "{}", out.stderr);
}

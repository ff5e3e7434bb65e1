//! Intelligent routing with real processes: warm-context affinity, the
//! per-agent circuit breaker, retries avoiding the agents that failed,
//! `torch explain` against what happened, and `torch analyze`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::harness::{Agent, Api, Hub, TestDir, fast_backoff, secs};

/// A task spec running `command`, requiring `skills`.
fn spec(name: &str, command: &[&str], skills: &[&str]) -> Value {
    json!({
        "name": name,
        "command": command,
        "skills": skills,
        "max_retries": 0,
    })
}

/// `spec` with `context.repository = repo`.
fn in_repo(name: &str, repo: &str) -> Value {
    let mut s = spec(name, &["true"], &["sh"]);
    s["context"] = json!({ "repository": repo });
    s
}

/// A string field of a JSON value, panicking with the value when absent.
fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {v:#}"))
}

/// `(agent id, event)` of every `task.assigned` event of `task`, oldest first.
fn assignments(api: &Api, task: &str) -> Vec<(String, Value)> {
    api.task_events(task, "task.assigned")
        .into_iter()
        .map(|e| (str_of(&e, "agent_id").to_string(), e))
        .collect()
}

/// The `routing` state of agent `id` from `GET /api/v1/agents`.
fn routing_of(api: &Api, id: &str) -> Value {
    let v = api.get("/api/v1/agents");
    let agents = v["agents"].as_array().expect("agents array");
    let a = agents
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("agent {id} is not listed: {v:#}"));
    a["routing"].clone()
}

/// The value of factor `name` of an explanation candidate.
fn factor(candidate: &Value, name: &str) -> f64 {
    candidate["factors"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no factor {name} in {candidate:#}"))
}

/// The candidate entry of `agent` in an explanation.
fn candidate<'a>(expl: &'a Value, agent: &str) -> Option<&'a Value> {
    expl["candidates"]
        .as_array()
        .expect("candidates array")
        .iter()
        .find(|c| c["agent"] == agent)
}

/// The reason kind of the rejection of `agent` in an explanation, if listed.
fn rejection_kind(expl: &Value, agent: &str) -> Option<String> {
    expl["rejected"]
        .as_array()
        .expect("rejected array")
        .iter()
        .find(|r| r["agent"] == agent)
        .map(|r| str_of(&r["reason"], "kind").to_string())
}

/// Checks an explanation is self-consistent: the chosen agent is the first
/// candidate and has the highest total, and every total is Σ weight × value.
fn check_consistent(expl: &Value) {
    let chosen = str_of(expl, "chosen");
    let cands = expl["candidates"].as_array().expect("candidates array");
    assert!(!cands.is_empty(), "no candidates: {expl:#}");
    assert_eq!(
        cands[0]["agent"], chosen,
        "the chosen agent is the first candidate: {expl:#}"
    );
    let total = |c: &Value| c["total"].as_f64().expect("total");
    let best = cands.iter().map(total).fold(f64::NEG_INFINITY, f64::max);
    assert!(
        total(&cands[0]) >= best - 1e-12,
        "the chosen agent has the top total ({} < {best}): {expl:#}",
        total(&cands[0])
    );
    for c in cands {
        let weights = expl["weights"].as_object().expect("weights map");
        let factors = c["factors"].as_object().expect("factors map");
        assert_eq!(
            factors.keys().collect::<Vec<_>>(),
            weights.keys().collect::<Vec<_>>(),
            "every factor has a weight: {expl:#}"
        );
        let sum: f64 = factors
            .iter()
            .map(|(f, v)| v.as_f64().expect("value") * weights[f].as_f64().expect("weight"))
            .sum();
        assert!(
            (sum - total(c)).abs() < 1e-3,
            "total {} is not the weighted sum {sum} of its factors: {c:#}",
            total(c)
        );
    }
    let feasible = expl["feasible"].as_u64().expect("feasible");
    assert_eq!(
        cands.len() as u64,
        feasible.min(8),
        "the candidates are the feasible agents (at most 8): {expl:#}"
    );
}

#[test]
fn affinity_keeps_repository_on_warm_agent() {
    let dir = TestDir::new("affinity");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let names = ["a1", "a2", "a3"];
    let _agents: Vec<Agent> = names
        .iter()
        .map(|n| Agent::start(&dir, &hub.url, &token, n, "sh", 1))
        .collect();
    let ids: Vec<String> = names.iter().map(|n| api.agent_id(&dir, n)).collect();
    let repos: Vec<String> = (0..3).map(|i| format!("team/repo-{i}")).collect();

    // Round 1: one task per repository; one slot each spreads them.
    let first = api.submit(
        repos
            .iter()
            .enumerate()
            .map(|(i, r)| in_repo(&format!("warm-{i}"), r))
            .collect(),
    );
    let mut home: BTreeMap<String, String> = BTreeMap::new(); // repo -> agent
    for (id, repo) in first.iter().zip(&repos) {
        let v = api.wait_state(&dir, id, "succeeded", secs(30));
        home.insert(repo.clone(), str_of(&v, "last_agent_id").to_string());
    }
    let distinct: BTreeSet<&String> = home.values().collect();
    assert_eq!(distinct.len(), 3, "round 1 spread over 3 agents: {home:?}");

    // The agents now report the repositories they worked in.
    for (repo, agent) in &home {
        let r = routing_of(&api, agent);
        let recent = r["recent_repositories"].as_array().expect("recent list");
        assert!(
            recent.iter().any(|x| x == repo.as_str()),
            "agent {agent} lists {repo} among recent repositories: {r:#}"
        );
    }

    // Round 2: the same repositories, submitted in reverse order, all at once:
    // each must go back to the agent that has it warm.
    let second_repos: Vec<&String> = repos.iter().rev().collect();
    let second = api.submit(
        second_repos
            .iter()
            .enumerate()
            .map(|(i, r)| in_repo(&format!("again-{i}"), r))
            .collect(),
    );
    for (id, repo) in second.iter().zip(&second_repos) {
        let v = api.wait_state(&dir, id, "succeeded", secs(30));
        let want = &home[*repo];
        assert_eq!(
            str_of(&v, "last_agent_id"),
            want,
            "task {id} on {repo} ran on the warm agent (agents {ids:?})"
        );
        let a = assignments(&api, id);
        assert_eq!(a.len(), 1, "assigned once: {a:?}");
        assert_eq!(&a[0].0, want, "task.assigned names the warm agent");
        let expl = &v["explanation"];
        assert_eq!(expl["chosen"], want.as_str(), "explanation: {expl:#}");
        let c = candidate(expl, want).expect("the chosen agent is a candidate");
        assert!(factor(c, "affinity") > 0.5, "warm affinity: {c:#}");
    }

    // Round 3: one task alone, every agent free: the warm one wins, and the
    // explanation shows why (its affinity beats every other candidate's).
    let repo = &repos[1];
    let want = &home[repo];
    let solo = api.submit(vec![in_repo("solo", repo)]).remove(0);
    let v = api.wait_state(&dir, &solo, "succeeded", secs(30));
    assert_eq!(
        str_of(&v, "last_agent_id"),
        want,
        "solo went to the warm agent"
    );
    let expl = &v["explanation"];
    check_consistent(expl);
    assert_eq!(expl["chosen"], want.as_str(), "{expl:#}");
    let cands = expl["candidates"].as_array().expect("candidates");
    assert_eq!(cands.len(), 3, "all three agents were free: {expl:#}");
    let warm = factor(&cands[0], "affinity");
    assert!(warm > 0.5, "the chosen agent's affinity is high: {expl:#}");
    for c in &cands[1..] {
        assert!(
            factor(c, "affinity") < warm,
            "a cold agent's affinity is below the warm one's: {expl:#}"
        );
    }
    // The task.assigned event carries the same explanation.
    let a = assignments(&api, &solo);
    assert_eq!(a.len(), 1);
    assert_eq!(&a[0].0, want);
    assert_eq!(
        &a[0].1["data"]["explanation"], expl,
        "event and task view explanations agree"
    );
}

/// Fails on the agent whose work dir is `work-flaky`, succeeds elsewhere.
const FAIL_ON_FLAKY: &str = "case \"$TORCH_WORKDIR\" in */work-flaky/*) exit 1;; esac";

#[test]
fn flaky_agent_is_excluded_then_returns() {
    let dir = TestDir::new("breaker");
    let hub = Hub::start(
        &dir,
        &[
            ("TORCH_ROUTING__BREAKER__FAILURE_THRESHOLD", "2"),
            ("TORCH_ROUTING__BREAKER__COOLDOWN", "3s"),
        ],
    );
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    // The flaky agent is the more proficient one, so routing prefers it
    // until its failures count against it.
    let _f = Agent::start(&dir, &hub.url, &token, "flaky", "sh:1.0", 2);
    let _g = Agent::start(&dir, &hub.url, &token, "steady", "sh:0.1", 2);
    let f = api.agent_id(&dir, "flaky");
    let g = api.agent_id(&dir, "steady");

    // Two tasks that fail only on the flaky agent, with one retry each.
    let failing: Vec<Value> = (0..2)
        .map(|i| {
            let mut s = spec(&format!("job-{i}"), &["sh", "-c", FAIL_ON_FLAKY], &["sh"]);
            s["max_retries"] = json!(1);
            s["backoff"] = fast_backoff();
            s
        })
        .collect();
    let ids = api.submit(failing);
    for id in &ids {
        let v = api.wait_state(&dir, id, "succeeded", secs(30));
        let a = assignments(&api, id);
        let agents: Vec<&str> = a.iter().map(|(x, _)| x.as_str()).collect();
        assert_eq!(
            agents,
            vec![f.as_str(), g.as_str()],
            "task {id}: first on the preferred flaky agent, the retry on the steady one"
        );
        assert_eq!(v["failed_agents"], json!([f]), "failed_agents: {v:#}");
        assert_eq!(str_of(&v, "last_agent_id"), g);
        // Avoided, or already out for its open breaker (availability is
        // checked first), depending on when the retry was placed.
        let retry = &a[1].1["data"]["explanation"];
        let kind = rejection_kind(retry, &f);
        assert!(
            matches!(kind.as_deref(), Some("avoided" | "breaker-open")),
            "the retry's explanation says why the flaky agent was out: {retry:#}"
        );
    }

    // Two consecutive failures opened the flaky agent's breaker.
    let until = dir.wait_for("the flaky agent's breaker to open", secs(10), || {
        let r = routing_of(&api, &f);
        (r["breaker"]["state"] == "open").then(|| r["breaker"]["until"].as_u64())
    });
    let until = until.expect("an open breaker has `until`");
    let r = routing_of(&api, &f);
    assert_eq!(r["breaker_trips"], 1, "one trip: {r:#}");
    assert_eq!(
        routing_of(&api, &g)["breaker"]["state"],
        "closed",
        "the steady agent's breaker stays closed"
    );

    // While open: an ordinary task goes to the steady agent and its
    // explanation says the flaky one was out (breaker-open); a task only the
    // flaky agent can take (sh >= 0.9) waits for the cool-down, then is the
    // probe.
    let ids = api.submit(vec![
        spec("while-open", &["true"], &["sh"]),
        spec("probe", &["true"], &["sh:0.9"]),
    ]);
    let (open_task, probe) = (&ids[0], &ids[1]);
    let v = api.wait_state(&dir, open_task, "succeeded", secs(20));
    assert_eq!(str_of(&v, "last_agent_id"), g, "steady ran it");
    let expl = &v["explanation"];
    check_consistent(expl);
    assert_eq!(
        rejection_kind(expl, &f).as_deref(),
        Some("breaker-open"),
        "the flaky agent is rejected as breaker-open: {expl:#}"
    );
    assert_eq!(expl["rejected_counts"]["breaker-open"], 1, "{expl:#}");
    assert!(candidate(expl, &f).is_none(), "not a candidate: {expl:#}");

    let v = api.wait_state(&dir, probe, "succeeded", secs(20));
    assert_eq!(str_of(&v, "last_agent_id"), f, "the probe ran on flaky");
    let a = assignments(&api, probe);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].0, f);
    let at = a[0].1["at_ms"].as_u64().expect("at_ms");
    assert!(
        at >= until,
        "the probe was assigned at {at}, before the cool-down ended at {until}"
    );
    let expl = &a[0].1["data"]["explanation"];
    assert_eq!(expl["chosen"], f.as_str(), "{expl:#}");
    assert_eq!(
        rejection_kind(expl, &g).as_deref(),
        Some("level-too-low"),
        "{expl:#}"
    );

    // The probe succeeded: the breaker is closed again and the agent is a
    // candidate for ordinary work once more.
    let r = dir.wait_for("the flaky agent's breaker to close", secs(10), || {
        let r = routing_of(&api, &f);
        (r["breaker"]["state"] == "closed").then_some(r)
    });
    assert_eq!(r["breaker_trips"], 1, "{r:#}");
    let back = api
        .submit(vec![spec("after", &["true"], &["sh"])])
        .remove(0);
    let v = api.wait_state(&dir, &back, "succeeded", secs(20));
    let expl = &v["explanation"];
    check_consistent(expl);
    assert!(
        candidate(expl, &f).is_some(),
        "the flaky agent is back among the candidates: {expl:#}"
    );
    assert_eq!(rejection_kind(expl, &f), None, "{expl:#}");
}

#[test]
fn retry_lands_on_a_different_agent() {
    let dir = TestDir::new("retry-elsewhere");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _a = Agent::start(&dir, &hub.url, &token, "one", "sh", 1);
    let _b = Agent::start(&dir, &hub.url, &token, "two", "sh", 1);
    let ids: BTreeSet<String> = ["one", "two"]
        .iter()
        .map(|n| api.agent_id(&dir, n))
        .collect();

    // Fails on its first attempt wherever it runs, succeeds on the second.
    let mut once = spec(
        "fails-once",
        &["sh", "-c", "test \"$TORCH_ATTEMPT\" -ge 2"],
        &["sh"],
    );
    once["max_retries"] = json!(1);
    once["backoff"] = fast_backoff();
    // Fails everywhere: dies after trying both agents.
    let mut never = spec("always-fails", &["false"], &["sh"]);
    never["max_retries"] = json!(2);
    never["backoff"] = fast_backoff();
    let once = api.submit(vec![once]).remove(0);
    let once = &once;
    let v = api.wait_state(&dir, once, "succeeded", secs(30));
    assert_eq!(v["attempt"], 2, "{v:#}");
    let a = assignments(&api, once);
    assert_eq!(a.len(), 2, "two attempts: {a:?}");
    let (first, second) = (&a[0].0, &a[1].0);
    assert!(ids.contains(first) && ids.contains(second));
    assert_ne!(first, second, "the retry landed on the other agent");
    assert_eq!(v["failed_agents"], json!([first]), "{v:#}");
    assert_eq!(str_of(&v, "last_agent_id"), second);
    assert_eq!(a[1].1["data"]["attempt"], 2);
    let expl = &a[1].1["data"]["explanation"];
    assert_eq!(expl["chosen"], second.as_str(), "{expl:#}");
    assert_eq!(
        rejection_kind(expl, first).as_deref(),
        Some("avoided"),
        "{expl:#}"
    );

    // One at a time, so that the retry's explanation is not about slots.
    let never = api.submit(vec![never]).remove(0);
    let never = &never;
    let v = api.wait_state(&dir, never, "dead", secs(30));
    let a = assignments(&api, never);
    assert_eq!(a.len(), 3, "three attempts: {a:?}");
    assert_ne!(a[0].0, a[1].0, "the first retry went to the other agent");
    let failed: BTreeSet<String> = v["failed_agents"]
        .as_array()
        .expect("failed_agents")
        .iter()
        .map(|x| x.as_str().expect("id").to_string())
        .collect();
    assert_eq!(failed, ids, "failed on both agents: {v:#}");
    let reason = str_of(&v, "reason");
    assert!(
        reason.starts_with("failed on 2 agents"),
        "dead reason names the agents it failed on: {reason:?}"
    );
    // The third attempt had nowhere new to go: it reused a failed agent and
    // said so.
    let expl = &a[2].1["data"]["explanation"];
    let notes = expl["notes"].to_string();
    assert!(
        notes.contains("already failed"),
        "the fallback onto a failed agent is noted: {expl:#}"
    );
}

#[test]
fn explain_matches_what_happened() {
    let dir = TestDir::new("explain");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    let token = hub.token(&dir, "agent");
    let _a = Agent::start(&dir, &hub.url, &token, "alpha", "sh:0.9,python", 1);
    let _b = Agent::start(&dir, &hub.url, &token, "beta", "sh:0.5", 1);
    let alpha = api.agent_id(&dir, "alpha");
    let beta = api.agent_id(&dir, "beta");
    let name_of = |id: &str| if id == alpha { "alpha" } else { "beta" };

    let ids = api.submit(vec![
        spec("needs-python", &["true"], &["python"]),
        spec("any-sh", &["true"], &["sh"]),
        spec("good-sh", &["true"], &["sh:0.8"]),
    ]);
    let cobol = api
        .submit(vec![spec("needs-cobol", &["true"], &["cobol"])])
        .remove(0);
    for id in &ids {
        let v = api.wait_state(&dir, id, "succeeded", secs(30));
        let last = str_of(&v, "last_agent_id").to_string();
        let a = assignments(&api, id);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].0, last, "task.assigned and last_agent_id agree");

        let out = cli.json(&["explain", id]);
        assert_eq!(out["task_id"], id.as_str());
        assert_eq!(out["state"], "succeeded");
        let expl = &out["explanation"];
        assert_eq!(expl["policy"], "torch", "{expl:#}");
        assert_eq!(
            expl["chosen"],
            last.as_str(),
            "explain names the agent that ran it"
        );
        assert_eq!(
            &a[0].1["data"]["explanation"], expl,
            "explain --json prints what the task.assigned event carried"
        );
        assert_eq!(&v["explanation"], expl);
        check_consistent(expl);

        let table = cli.run(&["explain", id]);
        table.assert_code(0, "torch explain");
        let name = name_of(&last);
        assert!(
            table.stdout.contains(&format!("assigned to {name} ")),
            "the table names the chosen agent {name}:\n{}",
            table.stdout
        );
        assert!(
            table
                .stdout
                .lines()
                .any(|l| l.contains('→') && l.contains(name)),
            "the chosen row is marked:\n{}",
            table.stdout
        );
        // The documented order (guide.md), not the JSON map's alphabetical one.
        let header = table.stdout.lines().nth(1).unwrap_or_default();
        let at: Vec<Option<usize>> = ["SKILL", "LOAD ×", "PERFORMANCE", "AFFINITY", "COST"]
            .iter()
            .map(|f| header.find(f))
            .collect();
        assert!(
            at.iter().all(Option::is_some) && at.is_sorted(),
            "factors in the order skill, load, performance, affinity, cost:\n{}",
            table.stdout
        );
    }
    // Only alpha has python: the skill index skips beta without examining it.
    let v = api.task(&ids[0]);
    assert_eq!(str_of(&v, "last_agent_id"), alpha);
    let expl = &v["explanation"];
    assert!(candidate(expl, &beta).is_none(), "{expl:#}");
    assert_eq!(expl["not_examined"], 1, "{expl:#}");
    // Only alpha has sh >= 0.8: beta is rejected for its level.
    let v = api.task(&ids[2]);
    assert_eq!(str_of(&v, "last_agent_id"), alpha);
    let expl = &v["explanation"];
    assert_eq!(
        rejection_kind(expl, &beta).as_deref(),
        Some("level-too-low"),
        "{expl:#}"
    );
    assert!(candidate(expl, &beta).is_none(), "{expl:#}");
    let table = cli.run(&["explain", &ids[2]]);
    assert!(
        table.stdout.contains("rejected:")
            && table.stdout.contains("level-too-low")
            && table.stdout.lines().any(|l| l.contains("beta")),
        "the table lists the rejection of beta:\n{}",
        table.stdout
    );

    // Nobody can run cobol: nothing to explain, and explain says so.
    assert_eq!(api.task(&cobol)["state"], "queued");
    let out = cli.run(&["explain", &cobol]);
    assert_ne!(out.code, 0, "explain of an unassigned task fails: {out:?}");
    assert!(
        out.stderr.contains("not been assigned"),
        "explain says why: {out:?}"
    );
}

#[test]
fn analyze_cli_reports_inferred_skills_and_warnings() {
    let dir = TestDir::new("analyze");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    dir.write(
        "analyze.toml",
        r#"[[task]]
name = "unit-suite"
prompt = "Run the pytest suite and fix what breaks."
command = ["true"]
context = { repository = "acme/lib", paths = ["src/lib.rs", "src/parse.rs"] }

[[task]]
name = "mystery"
command = ["true"]
skills = ["klingon-poetry"]
"#,
    );

    let out = cli.json(&["analyze", "analyze.toml"]);
    let analyses = out["analyses"].as_array().expect("analyses array");
    assert_eq!(analyses.len(), 2, "{out:#}");
    let preferred: BTreeSet<&str> = analyses[0]["preferred"]
        .as_array()
        .expect("preferred")
        .iter()
        .map(|p| p["skill"]["name"].as_str().expect("skill name"))
        .collect();
    assert!(
        preferred.contains("testing") && preferred.contains("rust"),
        "pytest in the prompt and .rs paths give testing and rust: {:#}",
        analyses[0]
    );
    let warnings = analyses[1]["warnings"].to_string();
    assert!(
        warnings.contains("unknown skill klingon-poetry"),
        "an unknown skill is warned about: {:#}",
        analyses[1]
    );
    assert_eq!(
        analyses[1]["required"][0]["name"], "klingon-poetry",
        "{:#}",
        analyses[1]
    );

    let table = cli.run(&["analyze", "analyze.toml"]);
    table.assert_code(0, "torch analyze (table)");
    for want in ["unit-suite", "testing", "rust", "klingon-poetry"] {
        assert!(table.stdout.contains(want), "{want}:\n{}", table.stdout);
    }
    // Analysis submits nothing.
    assert_eq!(
        api.counts().values().sum::<u64>(),
        0,
        "analyze is read-only"
    );

    let sub = cli.run(&["submit", "analyze.toml", "--json"]);
    sub.assert_code(0, "torch submit with an unknown skill");
    assert!(
        sub.stderr
            .lines()
            .any(|l| l.starts_with("warning: mystery:")
                && l.contains("unknown skill klingon-poetry")),
        "the warning reaches stderr:\n{}",
        sub.stderr
    );
    let tasks = sub.json()["tasks"].clone();
    let tasks = tasks.as_array().expect("tasks");
    assert_eq!(tasks.len(), 2);
    // The analysis is stored with the task.
    let v = api.task(str_of(&tasks[0], "id"));
    let stored: BTreeSet<&str> = v["analysis"]["preferred"]
        .as_array()
        .expect("stored analysis")
        .iter()
        .map(|p| p["skill"]["name"].as_str().expect("name"))
        .collect();
    assert!(
        stored.contains("testing") && stored.contains("rust"),
        "{v:#}"
    );
}

//! Routing: dependencies, skills, priority and FIFO order.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::harness::{Agent, Hub, Rng, TestDir, q, secs};

/// Skill requirements a generated task may have (every one is met by some agent).
const SKILL_SETS: [&[&str]; 8] = [
    &["rust"],
    &["python"],
    &["sh"],
    &["rust:0.8"],
    &["python:0.95"],
    &["rust", "sh"],
    &["python", "sh"],
    &["rust", "python"],
];

/// (name, skills) of the fleet: no agent has everything, and `python:0.95`
/// is only met by `py-sh`.
const FLEET: [(&str, &str); 4] = [
    ("rust-sh", "rust:0.9,sh"),
    ("py-sh", "python,sh"),
    ("rust-py", "rust,python:0.5"),
    ("sh-only", "sh"),
];

struct Gen {
    name: String,
    skills: Vec<&'static str>,
    deps: Vec<usize>,
}

/// A layered DAG of 50 tasks: each task after the first layer depends on one
/// task of the previous layer and up to two more of any earlier layer.
fn generate(seed: u64) -> Vec<Gen> {
    let mut rng = Rng::new(seed);
    let layers = [8usize, 10, 10, 8, 8, 6];
    let mut out: Vec<Gen> = Vec::new();
    let mut prev_start = 0;
    for (l, &size) in layers.iter().enumerate() {
        let start = out.len();
        for _ in 0..size {
            let i = out.len();
            let mut deps = Vec::new();
            if l > 0 {
                let prev_len = (start - prev_start) as u64;
                deps.push(prev_start + rng.below(prev_len) as usize);
                for _ in 0..rng.below(3) {
                    let d = rng.below(start as u64) as usize;
                    if !deps.contains(&d) {
                        deps.push(d);
                    }
                }
            }
            let skills = SKILL_SETS[rng.below(SKILL_SETS.len() as u64) as usize].to_vec();
            out.push(Gen {
                name: format!("t{i:02}"),
                skills,
                deps,
            });
        }
        prev_start = start;
    }
    assert_eq!(out.len(), 50);
    out
}

fn to_toml(tasks: &[Gen], rng: &mut Rng) -> String {
    let mut s = String::new();
    for t in tasks {
        let skills: Vec<String> = t.skills.iter().map(|k| q(k)).collect();
        let deps: Vec<String> = t.deps.iter().map(|&d| q(&tasks[d].name)).collect();
        let priority = rng.below(11) as i32 - 5;
        s.push_str(&format!(
            "[[task]]\nname = {}\ncommand = [\"true\"]\nskills = [{}]\npriority = {priority}\ndepends_on = [{}]\nmax_retries = 0\n\n",
            q(&t.name),
            skills.join(", "),
            deps.join(", ")
        ));
    }
    s
}

/// `(name, min)` pairs of a spec's `skills`.
fn required(view: &Value) -> Vec<(String, f64)> {
    view["spec"]["skills"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["name"].as_str().expect("skill name").to_string(),
                        s["min"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn dag_50_respects_dependencies_and_skills() {
    let seed = 0x7012_c4d5_0050_u64;
    eprintln!("dag_50 seed: {seed:#x}");
    let dir = TestDir::new("dag50");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    let token = hub.token(&dir, "agent");
    let _agents: Vec<Agent> = FLEET
        .iter()
        .map(|(name, skills)| Agent::start(&dir, &hub.url, &token, name, skills, 2))
        .collect();
    for (name, _) in FLEET {
        api.agent_id(&dir, name);
    }

    let tasks = generate(seed);
    let mut rng = Rng::new(seed ^ 0xabcd);
    dir.write("dag.toml", &to_toml(&tasks, &mut rng));
    let out = cli.run_timeout(&["submit", "dag.toml", "--wait", "--json"], secs(150));
    out.assert_code(0, "torch submit dag.toml --wait");
    let finals = out.json();
    let finals = finals.as_array().expect("--wait --json prints an array");
    assert_eq!(finals.len(), 50);

    let by_id: HashMap<String, &Value> = finals
        .iter()
        .map(|v| (v["id"].as_str().expect("id").to_string(), v))
        .collect();
    let id_of: HashMap<String, String> = finals
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name").to_string(),
                v["id"].as_str().expect("id").to_string(),
            )
        })
        .collect();
    for v in finals {
        assert_eq!(
            v["state"], "succeeded",
            "task {} did not succeed: {v}",
            v["name"]
        );
    }
    // The hub resolved `depends_on` names to exactly the generated edges.
    for t in &tasks {
        let view = by_id[&id_of[&t.name]];
        let mut got: Vec<String> = view["depends_on"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| d.as_str().expect("dep id").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut want: Vec<String> = t
            .deps
            .iter()
            .map(|&d| id_of[&tasks[d].name].clone())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "dependencies of {}", t.name);
    }

    let agents = cli.json(&["agents", "list"]);
    let skills_of: HashMap<String, Vec<(String, f64)>> = agents["agents"]
        .as_array()
        .expect("agents array")
        .iter()
        .map(|a| {
            let skills = a["skills"]
                .as_array()
                .expect("skills")
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().expect("name").to_string(),
                        s["level"].as_f64().expect("level"),
                    )
                })
                .collect();
            (a["id"].as_str().expect("agent id").to_string(), skills)
        })
        .collect();
    assert_eq!(skills_of.len(), 4, "four agents registered: {agents}");

    let events = api.events("");
    let mut assigned: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    let mut succeeded: HashMap<String, Vec<u64>> = HashMap::new();
    for e in &events {
        let Some(task) = e["task_id"].as_str() else {
            continue;
        };
        let id = e["id"].as_u64().expect("event id");
        match e["kind"].as_str() {
            Some("task.assigned") => assigned.entry(task.to_string()).or_default().push((
                id,
                e["agent_id"]
                    .as_str()
                    .expect("assigned has agent_id")
                    .to_string(),
            )),
            Some("task.succeeded") => succeeded.entry(task.to_string()).or_default().push(id),
            _ => {}
        }
    }
    let mut per_agent: BTreeMap<String, usize> = BTreeMap::new();
    for t in &tasks {
        let id = &id_of[&t.name];
        let a = assigned.get(id).cloned().unwrap_or_default();
        let s = succeeded.get(id).cloned().unwrap_or_default();
        assert_eq!(a.len(), 1, "{} assigned exactly once: {a:?}", t.name);
        assert_eq!(s.len(), 1, "{} succeeded exactly once: {s:?}", t.name);
        let (assigned_at, agent) = &a[0];
        for &d in &t.deps {
            let dep_done = succeeded[&id_of[&tasks[d].name]][0];
            assert!(
                *assigned_at > dep_done,
                "{} was assigned (event {assigned_at}) before its dependency {} succeeded (event {dep_done})",
                t.name,
                tasks[d].name
            );
        }
        let have = skills_of
            .get(agent)
            .unwrap_or_else(|| panic!("{} assigned to unknown agent {agent}", t.name));
        for (skill, min) in required(by_id[id]) {
            assert!(
                have.iter().any(|(n, lvl)| *n == skill && lvl + 1e-9 >= min),
                "{} needs {skill}>={min} but went to agent {agent} with {have:?}",
                t.name
            );
        }
        *per_agent.entry(agent.clone()).or_default() += 1;
    }
    eprintln!("dag_50 tasks per agent: {per_agent:?}");
}

#[test]
fn priority_then_fifo() {
    let dir = TestDir::new("priority");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    let priorities = [0, 5, -1, 5, 0, 10, -1, 5, 0, 10, 3, 0];
    let mut ids = Vec::new();
    for (i, p) in priorities.iter().enumerate() {
        let name = format!("p{i:02}");
        let p = p.to_string();
        let out = cli.run(&[
            "submit",
            "--skill",
            "sh",
            "--name",
            &name,
            "--priority",
            &p,
            "--json",
            "--",
            "true",
        ]);
        out.assert_code(0, "torch submit inline");
        let v = out.json();
        ids.push(v["tasks"][0]["id"].as_str().expect("id").to_string());
    }
    assert_eq!(
        api.counts().get("queued"),
        Some(&12),
        "all queued without agents"
    );

    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "solo", "sh", 1);
    dir.wait_for("all 12 tasks to succeed", secs(60), || {
        (api.counts().get("succeeded") == Some(&12)).then_some(())
    });

    let mut expected: Vec<usize> = (0..priorities.len()).collect();
    expected.sort_by_key(|&i| -priorities[i]); // stable: submission order within a priority
    let expected: Vec<String> = expected.into_iter().map(|i| ids[i].clone()).collect();
    let got: Vec<String> = api
        .events("nova.torch.tasks.active")
        .into_iter()
        .filter(|e| e["kind"] == "task.assigned")
        .map(|e| e["task_id"].as_str().expect("task_id").to_string())
        .collect();
    let name = |id: &String| format!("p{:02}", ids.iter().position(|x| x == id).unwrap_or(99));
    assert_eq!(
        got.iter().map(name).collect::<Vec<_>>(),
        expected.iter().map(name).collect::<Vec<_>>(),
        "assignment order must be priority descending, then submission order (priorities {priorities:?})"
    );
}

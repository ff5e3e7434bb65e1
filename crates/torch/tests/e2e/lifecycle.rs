//! Agent lifecycle with real processes: the hub's built-in node starts
//! `torch agent` processes from templates; the autoscaler scales them up and
//! down; helpers spawned from inside tasks are stopped by the spawn limits and
//! cleaned up with their parent; memory is inherited within policy; agents are
//! recycled and replaced after a `kill -9` without losing a task.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::harness::{Api, Hub, TestDir, pid_alive, secs};

/// `[lifecycle]` settings fast enough for tests, plus `extra` TOML.
pub(crate) fn config(extra: &str) -> String {
    format!(
        r#"
[lifecycle]
tick = "200ms"
terminate-grace = "2s"
spawn-timeout = "20s"

[spawn]
node-cpu-max = 1.0
node-mem-max = 1.0
{extra}
"#
    )
}

/// The managed agents (`GET /api/v1/agents` entries with `managed`).
fn managed(api: &Api) -> Vec<Value> {
    let v = api.get("/api/v1/agents");
    v["agents"]
        .as_array()
        .expect("agents array")
        .iter()
        .filter(|a| a["managed"].is_object())
        .cloned()
        .collect()
}

/// Managed agents of `template` that are not being stopped.
fn live(api: &Api, template: &str) -> Vec<Value> {
    managed(api)
        .into_iter()
        .filter(|a| a["managed"]["template"] == template)
        .filter(|a| matches!(a["managed"]["phase"].as_str(), Some("starting" | "ready")))
        .collect()
}

/// Events on the agent streams, with `kind`.
fn agent_events(api: &Api, kind: &str) -> Vec<Value> {
    api.events("nova.torch.agents.")
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// A task spec running a shell `script`, requiring `skill`.
fn sh(name: &str, skill: &str, script: &str) -> Value {
    json!({
        "name": name,
        "command": ["sh", "-c", script],
        "skills": [skill],
        "max_retries": 2,
        "backoff": {"initial": "100ms", "max": "500ms", "multiplier": 2.0},
    })
}

/// Replays spawn and stop events: the most managed agents alive at once.
fn peak_pool(events: &[Value]) -> usize {
    let mut alive = BTreeSet::new();
    let mut peak = 0;
    for e in events {
        let Some(agent) = e["agent_id"].as_str() else {
            continue;
        };
        match e["kind"].as_str() {
            Some("agent.spawned") => {
                alive.insert(agent.to_string());
            }
            Some("agent.terminated" | "agent.exited" | "agent.spawn_failed") => {
                alive.remove(agent);
            }
            _ => {}
        }
        peak = peak.max(alive.len());
    }
    peak
}

#[test]
fn burst_scales_up_to_max_then_back_to_min_without_killing_busy_agents() {
    let dir = TestDir::new("lifecycle-burst");
    dir.write(
        "torch.toml",
        &config(
            r#"
[templates.worker]
skills = ["burst"]
slots = 1
min = 1
max = 4
idle-timeout = "1s"
executor = { command = ["sh", "-c", "{prompt}"] }

[templates.worker.scaling]
up-cooldown = "200ms"
down-cooldown = "500ms"
"#,
        ),
    );
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    dir.wait_for("the template's min of 1 agent", secs(20), || {
        (live(&api, "worker").len() == 1 && live(&api, "worker")[0]["managed"]["phase"] == "ready")
            .then_some(())
    });

    let tasks: Vec<Value> = (0..24)
        .map(|i| sh(&format!("b{i}"), "burst", "sleep 0.4"))
        .collect();
    let ids = api.submit(tasks);
    let mut peak = 0;
    dir.wait_for("the burst to finish", secs(90), || {
        peak = peak.max(live(&api, "worker").len());
        let c = api.counts();
        (c.get("succeeded").copied().unwrap_or(0) == 24).then_some(())
    });
    assert_eq!(
        peak, 4,
        "the pool reaches the template max of 4 (and not more)"
    );

    // Idle: back to min, by draining idle agents only.
    dir.wait_for("the pool back at min", secs(30), || {
        let m: Vec<Value> = managed(&api)
            .into_iter()
            .filter(|a| a["managed"]["template"] == "worker")
            .collect();
        (m.len() == 1).then_some(())
    });
    let events = api.events("nova.torch.agents.");
    assert!(peak_pool(&events) <= 4, "never more than max alive");
    let terminated: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "agent.terminated")
        .collect();
    assert_eq!(terminated.len(), 3, "three agents stopped: {terminated:#?}");
    for e in &terminated {
        assert_eq!(e["data"]["requested"], true, "{e:#}");
        assert!(
            e["data"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("scale-down")),
            "{e:#}"
        );
    }
    assert!(
        !events.iter().any(|e| e["kind"] == "agent.exited"),
        "no agent died unexpectedly"
    );
    // No busy agent was killed: every task succeeded on its first attempt.
    for id in &ids {
        let t = api.task(id);
        assert_eq!(t["state"], "succeeded", "{t:#}");
        assert_eq!(t["attempt"], 1, "task ran once: {t:#}");
    }
    // Each decision is recorded with its inputs.
    let scaling = api.get("/api/v1/agents/scaling?template=worker&limit=500");
    let decisions = scaling["decisions"].as_array().expect("decisions");
    assert!(
        decisions
            .iter()
            .any(|d| d["action"] == "up" && d["inputs"]["queue_depth"].as_u64() > Some(0)),
        "a scale-up driven by queued tasks: {scaling:#}"
    );
    assert!(
        decisions.iter().any(|d| d["action"] == "down"),
        "a scale-down decision: {scaling:#}"
    );
    let out = hub
        .cli(&dir)
        .run(&["agents", "scaling", "--template", "worker"]);
    out.assert_code(0, "torch agents scaling");
    assert!(out.stdout.contains("worker"), "{}", out.stdout);
}

/// The script a cascading task runs: delegate one child to a new helper
/// (which runs this script again, one level deeper), then ask for two more
/// helpers. Each `torch` call's exit code and output go to `log`.
fn cascade_script(dir: &TestDir) -> String {
    let log = dir.join("cascade.log");
    let child = dir.join("child.toml");
    format!(
        r#"set -u
echo "depth-start $TORCH_TASK_ID" >> {log}
torch delegate {child} --helper cascader --wait >> {log} 2>&1; echo "delegate rc=$?" >> {log}
torch spawn --template cascader --no-wait >> {log} 2>&1; echo "spawn rc=$?" >> {log}
torch spawn --template cascader --no-wait >> {log} 2>&1; echo "spawn rc=$?" >> {log}
exit 0
"#,
        log = log.display(),
        child = child.display()
    )
}

#[test]
fn spawn_cascade_is_stopped_by_depth_children_pool_and_rate_limits() {
    let dir = TestDir::new("lifecycle-cascade");
    let script = dir.write("cascade.sh", &cascade_script(&dir));
    dir.write(
        "child.toml",
        &format!(
            "[[task]]\nname = \"child\"\ncommand = [\"sh\", \"{}\"]\nskills = [\"cascade\"]\n",
            script.display()
        ),
    );
    dir.write(
        "torch.toml",
        &config(
            r#"
pool-max = 5
children-per-parent = 2
max-depth = 2
global-rate = { burst = 7, per-sec = 0.001 }

[templates.cascader]
skills = ["cascade"]
slots = 2
min = 1
max = 10
idle-timeout = "1h"
executor = { command = ["sh", "-c", "{prompt}"] }
sandbox = { write = ["@DIR@"] }
"#,
        )
        .replace("@DIR@", &dir.path().display().to_string()),
    );
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    dir.wait_for("the first agent", secs(20), || {
        live(&api, "cascader")
            .iter()
            .any(|a| a["managed"]["phase"] == "ready")
            .then_some(())
    });
    let root = api.submit(vec![json!({
        "name": "root",
        "command": ["sh", script.to_str().expect("utf-8 path")],
        "skills": ["cascade"],
    })]);
    api.wait_state(&dir, &root[0], "succeeded", secs(120));

    let refused = agent_events(&api, "agent.spawn_refused");
    let limits: BTreeSet<String> = refused
        .iter()
        .filter_map(|e| e["data"]["limit"].as_str().map(str::to_string))
        .collect();
    let log = std::fs::read_to_string(dir.join("cascade.log")).unwrap_or_default();
    assert!(limits.contains("depth"), "depth refused: {limits:?}\n{log}");
    assert!(
        limits.contains("children") || limits.contains("pool-max"),
        "children or pool refused: {limits:?}\n{log}"
    );
    for e in &refused {
        let msg = e["data"]["message"].as_str().unwrap_or_default();
        let limit = e["data"]["limit"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("spawn refused by {limit}")),
            "clear refusal naming its limit: {e:#}"
        );
    }
    // Refusals reach the caller: the CLI exits non-zero and names the limit.
    assert!(log.contains("spawn rc=0"), "{log}");
    assert!(log.contains("spawn refused by"), "{log}");
    // The pool never passed its max.
    let events = api.events("nova.torch.agents.");
    let peak = peak_pool(&events);
    assert!(peak <= 5, "pool peaked at {peak} > pool-max 5");
    // Depth: no agent deeper than 2.
    for e in agent_events(&api, "agent.spawned") {
        assert!(e["data"]["depth"].as_u64().unwrap_or(0) <= 2, "{e:#}");
    }

    // The helpers end with their parent tasks: back to the one autoscaled agent.
    dir.wait_for("helpers cleaned up", secs(30), || {
        (managed(&api).len() == 1).then_some(())
    });
    let drained: Vec<Value> = agent_events(&api, "agent.draining");
    assert!(
        drained.iter().any(|e| e["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("parent task"))),
        "helpers drained because their parent task ended: {drained:#?}"
    );

    // Rate: the global bucket (7, barely refilling) is spent by now.
    let mut rate_refused = false;
    for _ in 0..8 {
        let r = api.post("/api/v1/agents/spawn", &json!({ "template": "cascader" }));
        if r.status == 429 && r.json()["limit"] == "global-rate" {
            rate_refused = true;
            break;
        }
        assert!(r.status == 201 || r.status == 429, "{}", r.text());
    }
    assert!(rate_refused, "the global spawn rate refuses eventually");
}

#[test]
fn killed_agent_is_replaced_and_its_task_completes_elsewhere() {
    let dir = TestDir::new("lifecycle-kill");
    dir.write(
        "torch.toml",
        &config(
            r#"
[templates.steady]
skills = ["steady"]
slots = 1
min = 2
max = 2
executor = { command = ["sh", "-c", "{prompt}"] }
"#,
        ),
    );
    let hub = Hub::start(
        &dir,
        &[
            ("TORCH_HUB__LEASE", "3s"),
            ("TORCH_HUB__HEARTBEAT", "500ms"),
        ],
    );
    let api = hub.api();
    dir.wait_for("two ready agents", secs(20), || {
        let l = live(&api, "steady");
        (l.len() == 2 && l.iter().all(|a| a["managed"]["pid"].is_u64())).then_some(())
    });
    let id = api.submit(vec![sh("long", "steady", "sleep 3")]).remove(0);
    let holder = dir.wait_for("the task to run", secs(20), || {
        let t = api.task(&id);
        (t["state"] == "running").then(|| t["lease"]["agent_id"].as_str().map(str::to_string))?
    });
    let victim = managed(&api)
        .into_iter()
        .find(|a| a["id"] == holder.as_str())
        .expect("the holder is managed");
    let pid = victim["managed"]["pid"].as_u64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the agent");

    let done = api.wait_state(&dir, &id, "succeeded", secs(60));
    assert_ne!(
        done["last_agent_id"],
        holder.as_str(),
        "finished elsewhere: {done:#}"
    );
    assert_eq!(
        api.task_events(&id, "task.succeeded").len(),
        1,
        "exactly one completion"
    );
    let exited = agent_events(&api, "agent.exited");
    assert!(
        exited.iter().any(|e| e["agent_id"] == holder.as_str()
            && e["data"]["signal"] == 9
            && e["data"]["requested"] == false),
        "the crash is an event: {exited:#?}"
    );
    dir.wait_for("a replacement", secs(20), || {
        let l = live(&api, "steady");
        (l.len() == 2 && !l.iter().any(|a| a["id"] == holder.as_str())).then_some(())
    });
    assert!(!pid_alive(pid), "the killed agent is gone");
}

#[test]
fn recycling_after_n_tasks_loses_nothing() {
    let dir = TestDir::new("lifecycle-recycle");
    dir.write(
        "torch.toml",
        &config(
            r#"
[templates.cycler]
skills = ["cycle"]
slots = 1
min = 1
max = 2
executor = { command = ["sh", "-c", "{prompt}"] }

[templates.cycler.recycle]
after-tasks = 3
"#,
        ),
    );
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    dir.wait_for("the first agent", secs(20), || {
        (!live(&api, "cycler").is_empty()).then_some(())
    });
    let ids = api.submit(
        (0..12)
            .map(|i| sh(&format!("r{i}"), "cycle", "sleep 0.1"))
            .collect(),
    );
    let mut ran_on = BTreeMap::new();
    for id in &ids {
        let t = api.wait_state(&dir, id, "succeeded", secs(90));
        assert_eq!(t["attempt"], 1, "no attempt lost to recycling: {t:#}");
        *ran_on
            .entry(t["last_agent_id"].as_str().unwrap_or_default().to_string())
            .or_insert(0u32) += 1;
    }
    assert!(
        ran_on.len() >= 3,
        "work spread over recycled agents: {ran_on:?}"
    );
    let drained = agent_events(&api, "agent.draining");
    assert!(
        drained.iter().any(|e| e["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("after-tasks"))),
        "recycling is an event with its rule: {drained:#?}"
    );
    let spawned = agent_events(&api, "agent.spawned");
    assert!(
        spawned.iter().any(|e| e["data"]["reason"] == "recycle"),
        "replacements are spawned: {spawned:#?}"
    );
}

#[test]
fn memory_is_inherited_within_policy_and_audited() {
    let dir = TestDir::new("lifecycle-memory");
    let seen = dir.join("seen.txt");
    let refused = dir.join("refused.txt");
    dir.write(
        "child.toml",
        &format!(
            "[[task]]\nname = \"reader\"\nprompt = \"torch memory get repo.url > {} && torch memory list >> {}\"\nskills = [\"helping\"]\n",
            seen.display(),
            seen.display()
        ),
    );
    let parent_script = format!(
        "torch memory put repo.url git://example/repo && torch memory put secret hunter2 && \
         torch delegate {} --helper helper --inherit 'repo.*' --wait && \
         (torch spawn --template helper --inherit secret > {} 2>&1; echo rc=$? >> {})",
        dir.join("child.toml").display(),
        refused.display(),
        refused.display()
    );
    dir.write(
        "torch.toml",
        &config(
            r#"
[templates.lead]
skills = ["leading"]
slots = 1
min = 1
max = 1
executor = { command = ["sh", "-c", "{prompt}"] }
sandbox = { write = ["@DIR@"] }

[templates.helper]
skills = ["helping"]
slots = 1
min = 0
max = 2
inherit = ["repo.*"]
executor = { command = ["sh", "-c", "{prompt}"] }
sandbox = { write = ["@DIR@"] }
"#,
        )
        .replace("@DIR@", &dir.path().display().to_string()),
    );
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    dir.wait_for("the lead agent", secs(20), || {
        (!live(&api, "lead").is_empty()).then_some(())
    });
    let id = api
        .submit(vec![json!({
            "name": "parent",
            "command": ["sh", "-c", parent_script],
            "skills": ["leading"],
        })])
        .remove(0);
    let parent = api.wait_state(&dir, &id, "succeeded", secs(90));
    let lead = parent["last_agent_id"]
        .as_str()
        .expect("lead agent")
        .to_string();

    // The child saw the inherited key, marked with its origin, and not the secret.
    let seen = std::fs::read_to_string(&seen).unwrap_or_default();
    assert!(seen.starts_with("git://example/repo"), "{seen}");
    assert!(seen.contains(&lead), "inherited from the lead: {seen}");
    assert!(!seen.contains("hunter2"), "the secret stayed: {seen}");
    // An --inherit outside the policy is refused with a clear message.
    let refused = std::fs::read_to_string(&refused).unwrap_or_default();
    assert!(refused.contains("inheritance policy"), "{refused}");
    assert!(!refused.contains("rc=0"), "{refused}");
    // The audit trail names both agents and the keys.
    let audit = agent_events(&api, "agent.memory_inherited");
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["data"]["from"], lead.as_str());
    assert_eq!(audit[0]["data"]["keys"], json!(["repo.url"]));
    let child = audit[0]["data"]["to"].as_str().expect("to");
    let mem = api.get(&format!("/api/v1/memory?agent={child}"));
    assert_eq!(mem["entries"][0]["key"], "repo.url", "{mem:#}");
    assert_eq!(
        mem["entries"][0]["inherited_from"],
        lead.as_str(),
        "{mem:#}"
    );
    // The delegated child was linked to its parent.
    let kids = api.get(&format!("/api/v1/tasks?parent={id}"));
    assert_eq!(kids["tasks"].as_array().map(Vec::len), Some(1), "{kids:#}");
}

/// A recorded ramp: tasks arriving per 250 ms step, rising to a plateau.
const RAMP: [usize; 24] = [
    1, 0, 1, 0, 1, 1, 1, 1, 2, 1, 2, 2, 2, 3, 2, 3, 3, 3, 4, 4, 4, 4, 4, 4,
];

/// Longest wait from submission to first assignment over `ids`, in ms.
fn peak_wait(api: &Api, ids: &[String]) -> u64 {
    let assigned: BTreeMap<String, u64> = api
        .events("nova.torch.tasks.active")
        .into_iter()
        .filter(|e| e["kind"] == "task.assigned")
        .filter_map(|e| Some((e["task_id"].as_str()?.to_string(), e["at_ms"].as_u64()?)))
        .fold(BTreeMap::new(), |mut m, (t, at)| {
            m.entry(t).or_insert(at);
            m
        });
    ids.iter()
        .map(|id| {
            let created = api.task(id)["created_ms"].as_u64().expect("created_ms");
            let at = assigned.get(id).copied().expect("every task was assigned");
            at.saturating_sub(created)
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn predictive_scaling_has_agents_ready_earlier_than_reactive_on_a_ramp() {
    let dir = TestDir::new("lifecycle-ramp");
    let template = |name: &str, skill: &str, predictive: bool| {
        format!(
            r#"
[templates.{name}]
skills = ["{skill}"]
slots = 1
min = 1
max = 30
idle-timeout = "1m"
executor = {{ command = ["sh", "-c", "{{prompt}}"] }}

[templates.{name}.scaling]
interval = "250ms"
horizon = "2s"
up-cooldown = "1500ms"
predictive = {predictive}
"#
        )
    };
    dir.write(
        "torch.toml",
        &config(&format!(
            "pool-max = 60\nglobal-rate = {{ burst = 60, per-sec = 100.0 }}\n{}{}",
            template("pred", "ramp-p", true),
            template("react", "ramp-r", false)
        ))
        .replace("tick = \"200ms\"", "tick = \"125ms\""),
    );
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    dir.wait_for("one agent per template", secs(20), || {
        (live(&api, "pred").len() == 1 && live(&api, "react").len() == 1).then_some(())
    });
    // Replay the trace to both templates at once: same arrivals, same run time.
    let (mut pred, mut react) = (Vec::new(), Vec::new());
    let start = std::time::Instant::now();
    for (step, n) in RAMP.iter().enumerate() {
        let due = std::time::Duration::from_millis(250 * step as u64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let batch = |skill: &str| {
            (0..*n)
                .map(|i| sh(&format!("{skill}-{step}-{i}"), skill, "sleep 1"))
                .collect::<Vec<Value>>()
        };
        if *n == 0 {
            continue;
        }
        let mut both = batch("ramp-p");
        both.extend(batch("ramp-r"));
        let ids = api.submit(both);
        pred.extend_from_slice(&ids[..*n]);
        react.extend_from_slice(&ids[*n..]);
    }
    for id in pred.iter().chain(&react) {
        api.wait_state(&dir, id, "succeeded", secs(120));
    }
    let (p, r) = (peak_wait(&api, &pred), peak_wait(&api, &react));
    if std::env::var("RAMP_DEBUG").is_ok() {
        let d = api.get("/api/v1/agents/scaling?limit=500");
        for x in d["decisions"].as_array().into_iter().flatten() {
            eprintln!(
                "{} {} {} {}",
                x["at_ms"], x["template"], x["action"], x["reason"]
            );
        }
    }
    eprintln!("ramp: peak queue wait predictive {p} ms, reactive {r} ms");
    assert!(
        p < r,
        "predictive + reactive ({p} ms) should wait less at the peak than reactive alone ({r} ms)"
    );
}

//! Many hubs on one Redis (a `redis-server` each test starts on a free port,
//! never the shared 6379): leader failover within the lease, and a bounded
//! chaos run (agents killed every second, the leader killed once, Redis
//! restarted once) that loses and doubles nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use torch_store_redis::testing::RedisServer;

use crate::harness::{Agent, Api, Hub, Rng, TestDir, secs};

/// Leader lease used by these tests.
const LEADER_LEASE: Duration = Duration::from_secs(2);

fn env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TORCH_STORE__URL", url.to_string()),
        ("TORCH_HUB__LEADER_LEASE", "2s".into()),
        ("TORCH_HUB__LEASE", "3s".into()),
        ("TORCH_HUB__HEARTBEAT", "500ms".into()),
    ]
}

/// Two hubs on `redis`: the first becomes the leader.
fn two_hubs(a: &TestDir, b: &TestDir, redis: &RedisServer) -> (Hub, Hub) {
    let e = env(&redis.url());
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = Hub::start_fixed_port(a, &e);
    a.wait_for("hub A to lead", secs(20), || {
        (role(&first.api()) == "leader").then_some(())
    });
    // The store already has an admin: hub B writes no token file; share A's.
    b.write("admin.token", &first.admin);
    let second = Hub::start_fixed_port(b, &e);
    b.wait_for("hub B to follow", secs(20), || {
        (role(&second.api()) == "follower").then_some(())
    });
    (first, second)
}

fn role(api: &Api) -> String {
    api.request("GET", "/api/v1/health", None)
        .ok()
        .map(|r| r.json()["role"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// One `task.succeeded` per task, and every task succeeded.
pub(crate) fn assert_exactly_once(api: &Api, ids: &[String]) {
    let mut done: BTreeMap<String, usize> = BTreeMap::new();
    for e in api.events("nova.torch.tasks.completed") {
        if e["kind"] == "task.succeeded" {
            *done
                .entry(e["task_id"].as_str().unwrap_or_default().into())
                .or_default() += 1;
        }
    }
    let lost: Vec<&String> = ids.iter().filter(|i| !done.contains_key(*i)).collect();
    let doubled: Vec<(&String, &usize)> = done.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        lost.is_empty(),
        "{} tasks never succeeded: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(doubled.is_empty(), "tasks completed twice: {doubled:?}");
}

#[test]
fn leader_failover_within_the_lease_and_nothing_lost_or_doubled() {
    let _machine = crate::machine_shared();
    let Some(redis) =
        RedisServer::start_or_skip(&["--appendonly", "yes", "--appendfsync", "always"])
    else {
        return;
    };
    let (da, db) = (TestDir::new("multihub-a"), TestDir::new("multihub-b"));
    let (mut a, b) = two_hubs(&da, &db, &redis);
    let (api_a, api_b) = (a.api(), b.api());
    // Agents and submissions go through the follower; agents are sent on to
    // the leader.
    let token = b.token(&db, "agent");
    let _agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start(&db, &b.url, &token, &format!("fa{i}"), "sh", 4))
        .collect();
    db.wait_for("3 agents at the leader", secs(20), || {
        let v = api_b.get("/api/v1/agents");
        (v["agents"].as_array().map_or(0, |a| {
            a.iter().filter(|x| x["state"] != "disconnected").count()
        }) == 3)
            .then_some(())
    });
    let specs: Vec<Value> = (0..120)
        .map(|i| json!({"name": format!("f{i}"), "command": ["sleep", "0.2"], "skills": ["sh"], "max_retries": 3}))
        .collect();
    let ids = api_b.submit(specs);
    db.wait_for("some progress", secs(30), || {
        (api_b.counts().get("succeeded").copied().unwrap_or(0) >= 20).then_some(())
    });

    let killed = Instant::now();
    a.kill9();
    let took = db.wait_for("hub B to take over", secs(20), || {
        (role(&api_b) == "leader").then(|| killed.elapsed())
    });
    eprintln!(
        "leader failover: {} ms (lease {} ms)",
        took.as_millis(),
        LEADER_LEASE.as_millis()
    );
    // A correctness bound: the lease, plus one election period (a third of
    // it), plus slack for this loaded 2-core machine.
    let bound = LEADER_LEASE + LEADER_LEASE / 3 + Duration::from_millis(1500);
    assert!(took <= bound, "failover took {took:?}, more than {bound:?}");

    for id in &ids {
        api_b.wait_state(&db, id, "succeeded", secs(90));
    }
    assert_exactly_once(&api_b, &ids);
    drop(api_a);
}

/// What a hub's log says went wrong (panics, errors, leadership changes),
/// and its last lines: for a chaos run that stopped making progress.
fn hub_trouble(dir: &TestDir) -> String {
    let log = std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let trouble: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            l.contains("panicked")
                || l.contains("ERROR")
                || l.contains("leader")
                || l.contains("stepping")
        })
        .collect();
    let from = trouble.len().saturating_sub(40);
    let last = lines.len().saturating_sub(30);
    format!(
        "{}\n-- last lines --\n{}",
        trouble[from..].join("\n"),
        lines[last..].join("\n")
    )
}

/// Appends `<task id> <attempt>` to `file`, then succeeds.
fn effect_spec(i: usize, file: &str) -> Value {
    json!({
        "name": format!("c{i}"),
        "command": ["sh", "-c", format!("echo \"$TORCH_TASK_ID $TORCH_ATTEMPT\" >> {file}")],
        "skills": ["sh"],
        "max_retries": 20,
        "backoff": {"initial": "100ms", "max": "1s", "multiplier": 2.0},
    })
}

/// An agent of the chaos run: its tasks may write the test dir's `out`, and
/// it runs them without the per-task cgroup (memory, pids and cpu layers
/// treated as missing). This test is about durability under `kill -9`; the
/// cgroup v1 join (about 16 ms a task here, see docs/security.md) would turn
/// 10,000 tasks into several minutes. The sandbox has its own tests.
fn chaos_agent(dir: &TestDir, hub: &str, token: &str, name: &str) -> Agent {
    let out = dir.subdir("out");
    let out = out.to_string_lossy().into_owned();
    Agent::start_args(
        dir,
        hub,
        token,
        name,
        "sh",
        2,
        &[
            "--sandbox-write",
            &out,
            "--sandbox-disable",
            "memory",
            "--sandbox-disable",
            "pids",
            "--sandbox-disable",
            "cpu",
        ],
    )
}

#[test]
fn chaos_agents_leader_and_redis_killed_nothing_lost_or_doubled() {
    let _machine = crate::machine_to_itself();
    let Some(mut redis) =
        RedisServer::start_or_skip(&["--appendonly", "yes", "--appendfsync", "always"])
    else {
        return;
    };
    let (da, db) = (TestDir::new("chaos-a"), TestDir::new("chaos-b"));
    let (mut a, b) = two_hubs(&da, &db, &redis);
    let api = b.api();
    let token = b.token(&db, "agent");
    let mut agents: Vec<Agent> = (0..50)
        .map(|i| chaos_agent(&db, &b.url, &token, &format!("c{i}")))
        .collect();
    // In `out`: the agents' tasks may write there (see `Agent::start`).
    let effects = db.subdir("out").join("effects.log");
    let file = effects.to_str().expect("utf-8 path").to_string();
    let total = 10_000;
    let mut ids = Vec::with_capacity(total);
    for chunk in (0..total).collect::<Vec<_>>().chunks(1000) {
        let specs = chunk.iter().map(|i| effect_spec(*i, &file)).collect();
        ids.extend(api.submit(specs));
    }
    let mut rng = Rng::new(7);
    let start = Instant::now();
    let (mut killed_agents, mut leader_killed, mut redis_restarted) = (0, false, false);
    // Not a speed check: the run fails when it stops making progress (no
    // task succeeded for `stall`), or in any case after `deadline`. On a
    // loaded machine (CI runs the cluster tests side by side) it is slower.
    let (stall, deadline) = (Duration::from_secs(120), Duration::from_secs(1200));
    let (mut best, mut progressed) = (0u64, Instant::now());
    loop {
        let c = match api.request("GET", "/api/v1/tasks?limit=1", None) {
            Ok(r) if r.status == 200 => r.json()["counts"].clone(),
            _ => Value::Null,
        };
        if c["succeeded"].as_u64() == Some(total as u64) {
            break;
        }
        if let Some(n) = c["succeeded"].as_u64().filter(|n| *n > best) {
            (best, progressed) = (n, Instant::now());
        }
        assert!(
            progressed.elapsed() < stall,
            "chaos run stalled: no task succeeded for {stall:?}: {c}\nhub A:\n{}\nhub B:\n{}",
            hub_trouble(&da),
            hub_trouble(&db)
        );
        assert!(
            start.elapsed() < deadline,
            "chaos run did not finish in {deadline:?}: {c}"
        );
        std::thread::sleep(Duration::from_secs(1));
        // Every second: kill -9 a random agent and start a replacement.
        let n = rng.below(agents.len() as u64) as usize;
        agents[n].kill9();
        agents[n] = chaos_agent(&db, &b.url, &token, &format!("c{n}r{killed_agents}"));
        killed_agents += 1;
        let done = c["succeeded"].as_u64().unwrap_or(0);
        if !leader_killed && done > (total / 4) as u64 {
            a.kill9();
            leader_killed = true;
        }
        if leader_killed && !redis_restarted && done > (total / 2) as u64 {
            redis.restart().expect("restart redis-server");
            redis_restarted = true;
        }
    }
    assert!(
        leader_killed && redis_restarted,
        "the run covered both faults"
    );
    assert_exactly_once(&api, &ids);
    // Each task's effect is in the file for the attempt that succeeded.
    let text = std::fs::read_to_string(&effects).unwrap_or_default();
    let lines: BTreeSet<&str> = text.lines().collect();
    let mut missing = 0;
    for id in &ids {
        let t = api.task(id);
        let line = format!("{id} {}", t["attempt"]);
        if !lines.contains(line.as_str()) {
            missing += 1;
        }
    }
    let appended = text.lines().count();
    eprintln!(
        "chaos: {total} tasks, {killed_agents} agents killed, leader killed, redis restarted, \
         {} s; 0 lost, 0 duplicate completions; {appended} effect lines ({} from attempts cut off by a kill)",
        start.elapsed().as_secs(),
        appended - total
    );
    assert_eq!(missing, 0, "every succeeded attempt left its effect");
}

#[test]
fn partitioned_agent_is_requeued_and_its_late_completion_refused_over_redis() {
    let _machine = crate::machine_shared();
    let Some(redis) = RedisServer::start_or_skip(&["--appendonly", "yes"]) else {
        return;
    };
    let dir = TestDir::new("redis-partition");
    let e = env(&redis.url());
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let hub = Hub::start(&dir, &e);
    let api = hub.api();
    dir.wait_for("the hub to lead", secs(20), || {
        (role(&api) == "leader").then_some(())
    });
    let token = hub.token(&dir, "agent");
    let a = Agent::start(&dir, &hub.url, &token, "a", "sh", 1);
    let a_id = api.agent_id(&dir, "a");
    // The first attempt outlives the lease; a retry ends at once.
    let script = r#"if [ "$TORCH_ATTEMPT" -ge 2 ]; then exit 0; fi; sleep 4"#;
    let id = api
        .submit(vec![json!({
            "name": "slow", "command": ["sh", "-c", script], "skills": ["sh"],
            "max_retries": 2, "backoff": {"initial": "100ms", "max": "1s", "multiplier": 2.0},
        })])
        .remove(0);
    api.wait_state(&dir, &id, "running", secs(20));
    // Partition: the agent is frozen past its lease (3 s).
    a.signal(nix::sys::signal::Signal::SIGSTOP);
    dir.wait_for("the frozen agent's lease to expire", secs(20), || {
        (!api.task_events(&id, "task.lease_expired").is_empty()).then_some(())
    });
    let _b = Agent::start(&dir, &hub.url, &token, "b", "sh", 1);
    let b_id = api.agent_id(&dir, "b");
    let done = api.wait_state(&dir, &id, "succeeded", secs(30));
    assert_eq!(done["last_agent_id"], b_id.as_str(), "{done:#}");
    a.signal(nix::sys::signal::Signal::SIGCONT);
    dir.wait_for("agent a's late report to be refused", secs(30), || {
        api.task_events(&id, "task.stale_report_refused")
            .into_iter()
            .find(|e| e["agent_id"] == a_id.as_str())
    });
    assert_eq!(
        api.task_events(&id, "task.succeeded").len(),
        1,
        "completed once"
    );
}

#[test]
fn the_leader_picks_up_tasks_written_to_the_store_behind_its_back() {
    let _machine = crate::machine_shared();
    let Some(redis) = RedisServer::start_or_skip(&["--appendonly", "yes"]) else {
        return;
    };
    let dir = TestDir::new("redis-reconcile");
    let mut e = env(&redis.url());
    e.push(("TORCH_HUB__RECONCILE_EVERY", "1s".into()));
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let hub = Hub::start(&dir, &e);
    let api = hub.api();
    dir.wait_for("the hub to lead", secs(20), || {
        (role(&api) == "leader").then_some(())
    });
    let token = hub.token(&dir, "agent");
    let _a = Agent::start(&dir, &hub.url, &token, "a", "sh", 2);
    api.agent_id(&dir, "a");
    // A task written straight into the store: the hub never heard of it
    // (as after a write whose answer was lost).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let id: torch_core::TaskId =
        format!("01900000-0000-7000-8000-{:012x}", nanos & 0xffff_ffff_ffff)
            .parse()
            .expect("task id");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use torch_store::TaskStore;
        let store = torch_store_redis::RedisStore::open(&redis.url(), Default::default())
            .await
            .expect("open the store");
        let spec = torch_core::TaskSpec {
            name: Some("behind".into()),
            command: Some(vec!["true".into()]),
            skills: vec!["sh".parse().expect("skill")],
            ..torch_core::TaskSpec::default()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        store
            .submit(
                vec![torch_store::NewTask {
                    id,
                    name: "behind".into(),
                    spec,
                    deps: Vec::new(),
                    routing: None,
                    analysis: None,
                    parent: None,
                }],
                now,
            )
            .await
            .expect("submit straight to the store");
    });
    api.wait_state(&dir, &id.to_string(), "succeeded", secs(30));
}

/// A team's task waits until its two subtasks ended; each subtask waits
/// for the file `$GATE`.
const TEAM_LEAD: &str = r#"
i=0
while [ $i -lt 1200 ]; do
  torch team status --json > "status-$$.json" 2>> lead.err && grep -q '"done": 2,' "status-$$.json" && exit 0
  sleep 0.1; i=$((i+1))
done
exit 9
"#;

#[test]
fn a_team_survives_the_leader_hub_dying_and_the_new_leader_finishes_it() {
    let _machine = crate::machine_shared();
    let Some(redis) = RedisServer::start_or_skip(&["--appendonly", "yes"]) else {
        return;
    };
    let (da, db) = (TestDir::new("team-hub-a"), TestDir::new("team-hub-b"));
    let (mut a, b) = two_hubs(&da, &db, &redis);
    let api = b.api();
    let token = b.token(&db, "agent");
    let _agents = [
        Agent::start(&db, &b.url, &token, "lead", "rust:0.9", 2),
        Agent::start(&db, &b.url, &token, "data", "sql:0.9", 1),
    ];
    db.wait_for("2 agents at the leader", secs(20), || {
        let v = api.get("/api/v1/agents");
        (v["agents"].as_array().map_or(0, |a| {
            a.iter().filter(|x| x["state"] != "disconnected").count()
        }) == 2)
            .then_some(())
    });
    let gate = db.join("out/gate").to_string_lossy().into_owned();
    let work = json!({"command": ["sh", "-c", "while [ ! -e \"$GATE\" ]; do sleep 0.1; done"],
        "env": {"GATE": gate}, "max_retries": 2, "timeout": "3m"});
    let spec = json!({
        "name": "team across a failover",
        "command": ["sh", "-c", TEAM_LEAD],
        "max_retries": 3,
        "timeout": "3m",
        "team": {"roles": [
            {"name": "backend", "skills": ["rust:0.5"], "task": work},
            {"name": "data", "skills": ["sql:0.5"], "task": work},
        ], "leader": "backend"},
    });
    let team = api.submit(vec![spec])[0].clone();
    db.wait_for("the team's task to run", secs(30), || {
        (api.task(&team)["state"] == "running").then_some(())
    });
    a.kill9();
    db.wait_for("hub B to take over", secs(20), || {
        (role(&api) == "leader").then_some(())
    });
    std::fs::write(&gate, "open").expect("open the gate");
    api.wait_state(&db, &team, "succeeded", secs(90));
    let view = db.wait_for("the team to disband", secs(30), || {
        let v = api.get(&format!("/api/v1/teams/{team}"));
        (v["state"] == "disbanded").then_some(v)
    });
    assert_eq!(view["done"], 2, "{view:#}");
    assert_eq!(
        view["members"].as_array().map(Vec::len),
        Some(2),
        "{view:#}"
    );
    let subtasks: Vec<String> = view["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    assert_exactly_once(&api, &subtasks);
    // The new leader hub rebuilt the team from the store's events.
    let kinds: Vec<String> = api
        .events("nova.torch.collaboration.team")
        .into_iter()
        .filter(|e| e["data"]["task"] == team.as_str())
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect();
    assert!(kinds.iter().any(|k| k == "team.formed"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "team.disbanded").count(),
        1,
        "{kinds:?}"
    );
}

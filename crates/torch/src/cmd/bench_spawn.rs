//! `torch bench spawn`: how fast agents start and how the autoscaler reacts.
//!
//! Runs a hub with its built-in node in this process, then:
//! 1. orders `--count` agents one after another through the spawn API and
//!    reads each one's spawn-to-ready time from its `agent.ready` event (the
//!    hub measures from the spawn order to the agent's registration, when it
//!    can take a task);
//! 2. reads every idle agent's RSS from the node's `/proc` samples, then
//!    drains them all;
//! 3. submits a step of tasks for a second template (min 0, max
//!    `--step-max`) and measures the time to the first scale-up decision,
//!    the first ready agent and the pool at its max; then, once the tasks are
//!    done, the time until the autoscaler is back at min.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use torch_api::rest::{
    AgentList, EventPage, SpawnRequest, SpawnResponse, SubmitRequest, SubmitResponse,
};
use torch_core::lifecycle::{ScaleAction, parse_templates};
use torch_core::{EventData, EventKind, TaskSpec};

use crate::cli::SpawnBenchArgs;
use crate::client::{Client, EventFollower};
use crate::cmd::submit::TASK_ENDS;
use crate::config::Config;
use crate::exit::{BAD_INPUT, ERROR, exit};
use crate::local::start_hub;
use crate::output;

/// The two templates: `spawnbench` for spawn latency, `stepbench` for scaling.
fn templates(count: u32, step_max: u32) -> String {
    format!(
        r#"
[templates.spawnbench]
skills = ["spawnbench"]
slots = 1
min = 0
max = {count}
idle-timeout = "1h"
executor = {{ command = ["sh", "-c", "{{prompt}}"] }}

[templates.stepbench]
skills = ["stepbench"]
slots = 1
min = 0
max = {step_max}
idle-timeout = "2s"
executor = {{ command = ["sh", "-c", "{{prompt}}"] }}

[templates.stepbench.scaling]
interval = "250ms"
horizon = "2s"
up-cooldown = "500ms"
down-cooldown = "1s"
"#
    )
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

pub(crate) async fn run(args: SpawnBenchArgs) -> Result<()> {
    if args.count == 0 || args.step_max == 0 || args.step_tasks == 0 {
        return Err(exit(
            BAD_INPUT,
            "--count, --step-max and --step-tasks must be positive",
        ));
    }
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("torch-bench-spawn-")
        .tempdir()?;
    let mut cfg = Config::default();
    cfg.lifecycle.local_node_max_agents = args.count + args.step_max + 8;
    let mut hub_cfg = cfg.hub.clone();
    hub_cfg.lifecycle.templates = parse_templates("bench", &templates(args.count, args.step_max))
        .map_err(|e| exit(ERROR, format!("bench templates: {e}")))?;
    hub_cfg.lifecycle.tick = Duration::from_millis(250);
    hub_cfg.lifecycle.terminate_grace = Duration::from_secs(2);
    let limits = &mut hub_cfg.lifecycle.spawn;
    limits.pool_max = args.count + args.step_max + 8;
    // Starting 100 processes keeps this 2-core machine busy: measure the
    // spawn path, not the headroom check.
    limits.node_cpu_max = 1.0;
    limits.global_rate.burst = args.count + args.step_max;
    limits.global_rate.per_sec = 1000.0;
    let hub = start_hub(&cfg, hub_cfg, "127.0.0.1:0", dir.path(), &["admin"]).await?;
    let client = Client::new(&hub.url, hub.token("admin").map(str::to_string))?;
    wait_node(&client).await?;

    // 1. Spawn to ready.
    say(&format!(
        "spawning {} agents one after another…",
        args.count
    ));
    let mut follower = EventFollower::of_kinds(0, &[EventKind::AgentReady], 2000, 10);
    let mut ready_ms: HashMap<String, u64> = HashMap::new();
    let mut ids = Vec::new();
    let t0 = Instant::now();
    for _ in 0..args.count {
        let resp: SpawnResponse = client
            .post(
                "/api/v1/agents/spawn",
                &SpawnRequest {
                    template: "spawnbench".into(),
                    ..SpawnRequest::default()
                },
            )
            .await?;
        let id = resp.agent_id.to_string();
        ids.push(id.clone());
        // Wait for this one before ordering the next: the latency of one spawn.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready_ms.contains_key(&id) {
            if Instant::now() > deadline {
                return Err(exit(
                    ERROR,
                    format!("agent {id} did not become ready in 30 s"),
                ));
            }
            collect_ready(&client, &mut follower, &mut ready_ms).await?;
        }
    }
    let spawn_all = t0.elapsed();
    let mut lat: Vec<u64> = ids
        .iter()
        .filter_map(|i| ready_ms.get(i).copied())
        .collect();
    lat.sort_unstable();
    let mean = lat.iter().sum::<u64>() as f64 / lat.len().max(1) as f64;

    // 2. Idle RSS, from the node's /proc samples (a heartbeat per second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let list: AgentList = client.get("/api/v1/agents").await?;
    let rss: Vec<u64> = list
        .agents
        .iter()
        .filter_map(|a| a.managed.as_ref())
        .filter(|m| m.template == "spawnbench")
        .filter_map(|m| m.rss_bytes)
        .collect();
    let rss_mean = rss.iter().sum::<u64>() as f64 / rss.len().max(1) as f64;
    let rss_max = rss.iter().copied().max().unwrap_or(0);
    say("draining them…");
    for id in &ids {
        let _: Value = client
            .post(
                &format!("/api/v1/agents/{id}/drain"),
                &json!({ "reason": "bench done" }),
            )
            .await?;
    }
    wait_template_count(&client, "spawnbench", |n| n == 0, Duration::from_secs(60)).await?;

    // 3. A step of load for the autoscaler.
    say(&format!(
        "step: {} tasks of {} ms for a template with max {}…",
        args.step_tasks, args.task_ms, args.step_max
    ));
    let after = client
        .get::<EventPage>("/api/v1/events?tail=true")
        .await?
        .last_id;
    let spec = TaskSpec {
        command: Some(vec![
            "sleep".into(),
            format!("{:.3}", args.task_ms as f64 / 1000.0),
        ]),
        skills: vec![
            "stepbench"
                .parse()
                .map_err(|e| exit(ERROR, format!("{e}")))?,
        ],
        ..TaskSpec::default()
    };
    let t_step = Instant::now();
    let resp: SubmitResponse = client
        .post(
            "/api/v1/tasks",
            &SubmitRequest {
                tasks: vec![spec; args.step_tasks as usize],
                source: None,
            },
        )
        .await?;
    let mut pending: std::collections::HashSet<_> = resp.tasks.iter().map(|t| t.id).collect();
    let followed = [
        [EventKind::ScalingDecision, EventKind::AgentReady].as_slice(),
        &TASK_ENDS,
    ]
    .concat();
    let mut follower = EventFollower::of_kinds(after, &followed, 2000, 10);
    let (mut first_up, mut first_ready, mut at_max, mut done) = (None, None, None, None);
    let mut ready_now = 0u32;
    let deadline = Instant::now() + Duration::from_secs(300);
    while done.is_none() || at_max.is_none() {
        if Instant::now() > deadline {
            return Err(exit(ERROR, "the step did not finish within 300 s"));
        }
        let page = follower.next(&client).await?;
        for e in page.events {
            match (e.kind.parse::<EventKind>(), e.data.known()) {
                (_, Some(EventData::ScalingDecision(d)))
                    if d.template == "stepbench" && matches!(d.action, ScaleAction::Up { .. }) =>
                {
                    first_up.get_or_insert(t_step.elapsed());
                }
                (_, Some(EventData::AgentReady(r))) if r.template == "stepbench" => {
                    first_ready.get_or_insert(t_step.elapsed());
                    ready_now += 1;
                    if ready_now >= args.step_max {
                        at_max.get_or_insert(t_step.elapsed());
                    }
                }
                (Ok(k), _) if TASK_ENDS.contains(&k) => {
                    if let Some(t) = e.task_id {
                        pending.remove(&t);
                    }
                    if pending.is_empty() {
                        done.get_or_insert(t_step.elapsed());
                    }
                }
                _ => {}
            }
        }
    }
    let t_idle = Instant::now();
    wait_template_count(&client, "stepbench", |n| n == 0, Duration::from_secs(120)).await?;
    let down = t_idle.elapsed();
    hub.stop().await?;

    let opt = |d: Option<Duration>| d.map(ms);
    let report = json!({
        "spawn_ms": {
            "count": lat.len(),
            "p50": percentile(&lat, 50.0),
            "p90": percentile(&lat, 90.0),
            "p99": percentile(&lat, 99.0),
            "max": lat.last().copied().unwrap_or(0),
            "mean": (mean * 10.0).round() / 10.0,
        },
        "spawn_all_s": (spawn_all.as_secs_f64() * 100.0).round() / 100.0,
        "idle_rss_bytes": { "mean": rss_mean.round(), "max": rss_max, "samples": rss.len() },
        "scale_up": {
            "tasks": args.step_tasks,
            "max": args.step_max,
            "first_decision_ms": opt(first_up),
            "first_ready_ms": opt(first_ready),
            "at_max_ms": opt(at_max),
            "tasks_done_ms": opt(done),
        },
        "scale_down": { "idle_timeout_ms": 2000, "to_min_ms": ms(down) },
    });
    if args.json {
        return output::json(&report);
    }
    output::line(serde_json::to_string_pretty(&report)?)
}

async fn wait_node(client: &Client) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: torch_api::rest::NodeList = client.get("/api/v1/nodes").await?;
        if v.nodes.iter().any(|n| n.connected) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(exit(ERROR, "the built-in node did not connect within 20 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn collect_ready(
    client: &Client,
    follower: &mut EventFollower,
    ready: &mut HashMap<String, u64>,
) -> Result<()> {
    let page = follower.next(client).await?;
    for e in page.events {
        if let (Some(a), Some(EventData::AgentReady(r))) = (e.agent_id, e.data.known()) {
            ready.insert(a.to_string(), r.spawn_ms);
        }
    }
    Ok(())
}

/// Waits until the number of managed agents of `template` satisfies `ok`.
async fn wait_template_count(
    client: &Client,
    template: &str,
    ok: impl Fn(usize) -> bool,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let list: AgentList = client.get("/api/v1/agents").await?;
        let n = list
            .agents
            .iter()
            .filter(|a| a.managed.as_ref().is_some_and(|m| m.template == template))
            .count();
        if ok(n) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(exit(
                ERROR,
                format!(
                    "{n} agent(s) of template {template} still up after {}s",
                    limit.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! `torch bench throughput`: agent processes connected to an in-process hub on
//! the embedded store. Phase 1 (burst) measures end-to-end tasks/s; phase 2
//! (steady rate) measures assignment latency (task ready → assignment written
//! to the agent's socket) under a realistic arrival rate.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::resource::{UsageWho, getrusage};
use serde::Serialize;
use serde_json::Value;
use torch_api::rest::{AgentList, SubmitRequest, SubmitResponse};
use torch_api::ws::NOOP_COMMAND;
use torch_core::TaskSpec;

use crate::cli::{ExecMode, ThroughputArgs};
use crate::client::Client;
use crate::config::Config;
use crate::exit::{BAD_INPUT, ERROR, exit};
use crate::local::{AgentSpawn, spawn_agent, start_hub, stop_agents, wait_agents};
use crate::output;

#[derive(Serialize)]
struct Report {
    tasks_per_sec: f64,
    tasks: u64,
    elapsed_s: f64,
    agents: u32,
    slots: u32,
    exec: &'static str,
    store: &'static str,
    /// Redis requests per task over the burst (networked store only).
    #[serde(skip_serializing_if = "Option::is_none")]
    store_round_trips_per_task: Option<f64>,
    /// Hubs sharing the store (agents connect through the last one).
    hubs: u32,
    assign_latency_ms: Value,
    burst_assign_latency_ms: Value,
    steady: Value,
    scale: Value,
    scoring: Value,
    cpu: Value,
}

/// Times routing decisions on a 1,000-agent fleet (the core scheduler alone).
fn scoring_cost() -> Value {
    let (mut s, tasks) = torch_core::routing::scale::scale_fixture(1000, 600, 7);
    let now = 100_000;
    let (single, batch) = tasks.split_at(400);
    let start = Instant::now();
    let mut feasible = 0u64;
    let mut placed_single = 0u64;
    for t in single {
        s.enqueue(t.clone());
        for p in s.schedule(now, 1) {
            feasible += u64::from(p.explanation.feasible);
            placed_single += 1;
            s.release_slot(p.agent);
        }
    }
    let single_us = start.elapsed().as_secs_f64() * 1e6 / placed_single.max(1) as f64;
    for t in batch {
        s.enqueue(t.clone());
    }
    let start = Instant::now();
    let placed = s.schedule(now, batch.len()).len();
    let batch_us = start.elapsed().as_secs_f64() * 1e6 / placed.max(1) as f64;
    serde_json::json!({
        "agents": 1000,
        "us_per_decision": single_us,
        "feasible_candidates_mean": feasible as f64 / placed_single.max(1) as f64,
        "us_per_decision_joint_batch": batch_us,
        "joint_batch_size": placed,
    })
}

/// Submits at `rate_per_min` for `secs` seconds, waits for completion, and
/// returns the assignment latency over that phase.
async fn steady_phase(
    client: &Client,
    exec: ExecMode,
    rate_per_min: u64,
    secs: u64,
) -> Result<Value> {
    let _: Value = client
        .post("/api/v1/stats/reset", &serde_json::json!({}))
        .await?;
    let before = stats(client).await?["finished"].as_u64().unwrap_or(0);
    let n = (rate_per_min * secs / 60).max(1);
    let gap = Duration::from_secs_f64(60.0 / rate_per_min.max(1) as f64);
    let mut tick = tokio::time::interval(gap);
    for _ in 0..n {
        tick.tick().await;
        let _: SubmitResponse = client
            .post(
                "/api/v1/tasks",
                &SubmitRequest {
                    tasks: vec![spec(exec)],
                    source: None,
                },
            )
            .await?;
    }
    wait_finished(client, before + n, Duration::from_secs(120)).await?;
    let s = stats(client).await?;
    Ok(
        serde_json::json!({"rate_per_min": rate_per_min, "tasks": n, "assign_latency_ms": s["assign_latency_ms"]}),
    )
}

fn cpu_secs(who: UsageWho) -> f64 {
    match getrusage(who) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => 0.0,
    }
}

fn spec(exec: ExecMode) -> TaskSpec {
    TaskSpec {
        command: Some(match exec {
            ExecMode::Noop => vec![NOOP_COMMAND.to_string()],
            ExecMode::Process => vec!["true".to_string()],
        }),
        skills: vec![bench_skill()],
        max_retries: Some(3),
        ..TaskSpec::default()
    }
}

fn bench_skill() -> torch_core::SkillReq {
    torch_core::SkillReq {
        name: "bench".into(),
        min: 0.0,
    }
}

async fn stats(client: &Client) -> Result<Value> {
    client.get("/api/v1/stats").await
}

/// Waits until the hub leads (at once on the embedded store).
async fn wait_leader(client: &Client) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h: Value = client.get("/api/v1/health").await?;
        if h["role"] == "leader" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(exit(
                crate::exit::ERROR,
                "the hub did not become the leader in 20 s",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_finished(client: &Client, target: u64, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let bar = crate::bars::bar(target, "finished");
    loop {
        let s = stats(client).await?;
        let done = s["finished"].as_u64().unwrap_or(0);
        bar.set_position(done.min(target));
        if done >= target {
            bar.finish_and_clear();
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(exit(
                ERROR,
                format!(
                    "benchmark stalled: {} of {target} tasks finished",
                    s["finished"]
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Times `GET /metrics` (sampling the services, exporting, rendering, and
/// the local HTTP round trip) 20 times, with the fleet connected.
async fn metrics_render(url: &str, token: &str) -> Result<Value> {
    let http = reqwest::Client::new();
    let mut ms = Vec::with_capacity(20);
    let mut bytes = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let resp = http
            .get(format!("{url}/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .context("GET /metrics")?;
        let body = resp.text().await.context("reading /metrics")?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
    }
    ms.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "p50": ms[ms.len() / 2],
        "max": ms[ms.len() - 1],
        "bytes": bytes,
    }))
}

pub(crate) async fn throughput(args: ThroughputArgs) -> Result<()> {
    if args.agents == 0 || args.slots == 0 || args.tasks == 0 {
        return Err(exit(
            BAD_INPUT,
            "--agents, --slots and --tasks must be positive",
        ));
    }
    let dir = tempfile::Builder::new().prefix("torch-bench-").tempdir()?;
    let mut cfg = Config::default();
    cfg.store.url = args.store.clone();
    let mut hub_cfg = cfg.hub.clone();
    hub_cfg.queue_high_water = u64::MAX;
    hub_cfg.max_body_bytes = 64 << 20;
    hub_cfg.audit.enabled = !args.no_audit;
    let hub = start_hub(
        &cfg,
        hub_cfg.clone(),
        "127.0.0.1:0",
        dir.path(),
        &["admin", "agent"],
    )
    .await?;
    let client = Client::new(&hub.url, hub.token("admin").map(str::to_string))?;
    let agent_token = hub.token("agent").unwrap_or_default().to_string();
    // More hubs on the same Redis: the first leads; agents connect through
    // the last one (and are sent on to the leader); submissions alternate.
    if args.hubs > 1 && args.store.is_none() {
        return Err(exit(BAD_INPUT, "--hubs needs --store redis://…"));
    }
    wait_leader(&client).await?;
    let mut more_hubs = Vec::new();
    for _ in 1..args.hubs.max(1) {
        more_hubs.push(start_hub(&cfg, hub_cfg.clone(), "127.0.0.1:0", dir.path(), &[]).await?);
    }
    let agent_hub = more_hubs.last().map_or(hub.url.clone(), |h| h.url.clone());
    let mut submit_clients = vec![client.clone()];
    for h in &more_hubs {
        submit_clients.push(Client::new(&h.url, hub.token("admin").map(str::to_string))?);
    }
    if !args.json {
        eprintln!(
            "starting {} agent processes ({} slots each)…",
            args.agents, args.slots
        );
    }
    let mut children = Vec::with_capacity(args.agents as usize);
    for i in 0..args.agents {
        children.push(spawn_agent(AgentSpawn {
            hub: &agent_hub,
            token: &agent_token,
            name: format!("bench-{i}"),
            skills: "bench",
            slots: args.slots,
            work_dir: dir.path().join("work"),
            log_file: None,
            config: None,
            extra: Vec::new(),
        })?);
    }
    wait_agents(&client, args.agents as usize, Duration::from_secs(60), "").await?;

    // Phase 1: burst.
    if !args.json {
        eprintln!("burst: {} {:?} tasks…", args.tasks, args.exec);
    }
    let _: Value = client
        .post("/api/v1/stats/reset", &serde_json::json!({}))
        .await?;
    let trips0 = stats(&client).await?["store_round_trips"].as_u64();
    let cpu0 = cpu_secs(UsageWho::RUSAGE_SELF);
    let t0 = Instant::now();
    let batch = 5000u64;
    let mut submitters = tokio::task::JoinSet::new();
    let mut left = args.tasks;
    let mut chunks = Vec::new();
    while left > 0 {
        let n = left.min(batch);
        chunks.push(n);
        left -= n;
    }
    // Two concurrent submitters keep the hub fed without starving it of CPU.
    let per = chunks.len().div_ceil(2);
    for (i, part) in chunks.chunks(per.max(1)).enumerate() {
        let part = part.to_vec();
        let c = submit_clients[i % submit_clients.len()].clone();
        let exec = args.exec;
        submitters.spawn(async move {
            for n in part {
                let tasks = (0..n).map(|_| spec(exec)).collect();
                let _: SubmitResponse = c
                    .post(
                        "/api/v1/tasks",
                        &SubmitRequest {
                            tasks,
                            source: None,
                        },
                    )
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = submitters.join_next().await {
        r.context("submitter panicked")??;
    }
    let submitted_s = t0.elapsed().as_secs_f64();
    wait_finished(&client, args.tasks, Duration::from_secs(600)).await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let hub_cpu = cpu_secs(UsageWho::RUSAGE_SELF) - cpu0;
    let burst = stats(&client).await?;
    let trips = match (trips0, burst["store_round_trips"].as_u64()) {
        (Some(a), Some(b)) => Some(((b - a) as f64 / args.tasks as f64 * 1000.0).round() / 1000.0),
        _ => None,
    };

    // Phase 2: steady rate.
    let mut steady = serde_json::json!(null);
    let mut steady_lat = serde_json::json!(null);
    if args.steady_rate > 0 && args.steady_secs > 0 {
        if !args.json {
            eprintln!(
                "steady: {} tasks/min for {} s…",
                args.steady_rate, args.steady_secs
            );
        }
        steady = steady_phase(&client, args.exec, args.steady_rate, args.steady_secs).await?;
        steady_lat = steady["assign_latency_ms"].clone();
    }

    // Phase 3: many lightweight agents connected at once.
    let mut scale = serde_json::json!(null);
    let light = tokio_util::sync::CancellationToken::new();
    let mut light_tasks = tokio::task::JoinSet::new();
    if args.scale_agents > 0 {
        if !args.json {
            eprintln!("scale: connecting {} in-process agents…", args.scale_agents);
        }
        for i in 0..args.scale_agents {
            let mut ac = torch_agent::AgentConfig::new(
                hub.url.clone(),
                agent_token.clone(),
                format!("light-{i}"),
            );
            ac.skills = vec![torch_core::Skill {
                name: "bench".into(),
                level: 1.0,
            }];
            ac.slots = 1;
            ac.work_root = dir.path().join("light");
            let sd = light.clone();
            light_tasks.spawn(async move { torch_agent::run(ac, sd).await });
        }
        let want = (args.agents + args.scale_agents) as usize;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list: AgentList = client.get("/api/v1/agents").await?;
            let connected = list
                .agents
                .iter()
                .filter(|a| a.state != "disconnected")
                .count();
            if connected >= want {
                break;
            }
            if Instant::now() > deadline {
                return Err(exit(
                    ERROR,
                    format!("only {connected} of {want} agents connected within 120 s"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let render = metrics_render(&hub.url, hub.token("admin").unwrap_or_default()).await?;
        let rate = args.steady_rate.max(1000);
        let secs = args.steady_secs.clamp(1, 20);
        let mut s = steady_phase(&client, args.exec, rate, secs).await?;
        s["connected_agents"] = serde_json::json!(want);
        s["metrics_render_ms"] = render;
        scale = s;
    }
    light.cancel();
    while light_tasks.join_next().await.is_some() {}
    let scoring = scoring_cost();

    stop_agents(&mut children, Duration::from_secs(10)).await;
    let agents_cpu = cpu_secs(UsageWho::RUSAGE_CHILDREN);
    for h in more_hubs {
        h.stop().await?;
    }
    hub.stop().await?;
    let report = Report {
        tasks_per_sec: args.tasks as f64 / elapsed,
        tasks: args.tasks,
        elapsed_s: elapsed,
        agents: args.agents,
        slots: args.slots,
        exec: match args.exec {
            ExecMode::Noop => "noop",
            ExecMode::Process => "process",
        },
        store: if args.store.is_some() {
            "redis"
        } else {
            "sqlite"
        },
        store_round_trips_per_task: trips,
        hubs: args.hubs.max(1),
        assign_latency_ms: if steady_lat.is_null() {
            burst["assign_latency_ms"].clone()
        } else {
            steady_lat
        },
        burst_assign_latency_ms: burst["assign_latency_ms"].clone(),
        steady,
        scale,
        scoring,
        cpu: serde_json::json!({
            "hub_and_client_s": hub_cpu,
            "agents_total_s": agents_cpu,
            "submit_phase_s": submitted_s,
        }),
    };
    if args.json {
        output::json(&report)
    } else {
        output::line(format!(
            "{:.0} tasks/s end to end ({} tasks, {} agents × {} slots, {}, {:.2}s)\nassignment latency p50 {} ms, p99 {} ms{}\nCPU: hub+client {:.1}s, agents {:.1}s",
            report.tasks_per_sec,
            report.tasks,
            report.agents,
            report.slots,
            report.exec,
            report.elapsed_s,
            report.assign_latency_ms["p50"],
            report.assign_latency_ms["p99"],
            if report.steady.is_null() {
                " (burst)".to_string()
            } else {
                format!(" (at {} tasks/min)", args.steady_rate)
            },
            hub_cpu,
            agents_cpu,
        ))
    }
}

//! Capacity planning (`GET /api/v1/capacity`, `torch capacity`): for each
//! pool, the measured arrival rate, service time, utilisation and p95
//! schedule-to-start over a window, the autoscaler's forecast, and the
//! number of agents that keeps the p95 under `alerting.capacity-target`
//! (M/M/c with Erlang C: `torch_core::capacity`); plus the headroom left
//! before the CPU 80 % and memory 70 % limits on the nodes.
//!
//! Pools: every template (its agents; the tasks they could run), and every
//! skill that tasks require (the agents not started from a template that
//! have it). The engine keeps the per-pool load (`engine::capacity`); the
//! lifecycle manager knows templates, managed agents, nodes and forecasts.

use std::collections::HashMap;
use std::time::Duration;

use torch_api::rest::{AgentView, CapacityPool, CapacityReport, Headroom, NodeView, PoolKey};
use torch_core::capacity::{recommended_agents, utilisation};
use torch_core::skill::Skill;
use torch_store::Store;

use crate::engine::{PoolWindow, Query};
use crate::hub::Shared;
use crate::lifecycle::LifeCmd;

/// The CPU limit of the seed (fraction of a node).
const CPU_LIMIT: f64 = 0.8;
/// The memory limit of the seed (fraction of a node).
const MEMORY_LIMIT: f64 = 0.7;

/// Builds the report over `window`; `None` when the hub is stopping.
pub(crate) async fn report<S: Store>(
    shared: &Shared<S>,
    window: Duration,
) -> Option<CapacityReport> {
    let window_ms = window.as_millis() as u64;
    let pools = shared
        .engine
        .ask(|reply| Query::Capacity { window_ms, reply })
        .await?;
    let agents = shared.engine.ask(Query::Agents).await?;
    let managed = shared.life.ask(LifeCmd::Managed).await.unwrap_or_default();
    let nodes = shared.life.ask(LifeCmd::Nodes).await.unwrap_or_default();
    let decisions = shared
        .life
        .ask(LifeCmd::Decisions)
        .await
        .unwrap_or_default();
    // Measure over what the hub has seen, not a window longer than its life.
    let span_s = (window.as_secs_f64()).min(shared.started.elapsed().as_secs_f64().max(1.0));
    let target = shared.cfg.observe.capacity_target;
    let mut forecasts: HashMap<&str, f64> = HashMap::new();
    for d in &decisions {
        if let Some(f) = d.forecast {
            forecasts.insert(d.template.as_str(), f);
        }
    }
    let templates = &shared.cfg.lifecycle.templates;
    let mut out = Vec::with_capacity(pools.len());
    for w in pools {
        let (n_agents, slots) = match &w.pool {
            PoolKey::Template(name) => {
                let n = managed
                    .values()
                    .filter(|m| m.template == *name && m.phase == "ready")
                    .count() as u32;
                let slots = templates
                    .iter()
                    .find(|t| t.name == *name)
                    .map_or(1, |t| t.slots);
                (n, slots)
            }
            PoolKey::Skill(skill) => {
                let capable: Vec<&AgentView> = agents
                    .iter()
                    .filter(|a| a.state != "disconnected" && !managed.contains_key(&a.id))
                    .filter(|a| skill == crate::engine::ANY_SKILL || has_skill(&a.skills, skill))
                    .collect();
                let slots = capable.iter().map(|a| a.slots).sum::<u32>();
                let n = capable.len() as u32;
                (n, if n == 0 { 1 } else { slots.div_ceil(n) })
            }
        };
        let interval_s = match &w.pool {
            PoolKey::Template(name) => templates
                .iter()
                .find(|t| t.name == *name)
                .map(|t| t.scaling.interval.as_secs_f64()),
            PoolKey::Skill(_) => None,
        };
        let forecast = match (&w.pool, interval_s) {
            (PoolKey::Template(name), Some(i)) if i > 0.0 => {
                forecasts.get(name.as_str()).map(|f| f / i)
            }
            _ => None,
        };
        out.push(pool_row(&w, span_s, n_agents, slots, forecast, target));
    }
    Some(CapacityReport {
        pools: out,
        headroom: headroom(&nodes, &managed),
        window_ms,
        target_ms: target.as_millis() as u64,
        model: "M/M/c (Erlang C): p95 wait = ln(C/0.05)/(c·μ−λ); at least λ·s busy slots (Little's law)".into(),
    })
}

fn has_skill(skills: &[Skill], name: &str) -> bool {
    skills.iter().any(|s| s.name == name)
}

/// One pool's row from its window.
fn pool_row(
    w: &PoolWindow,
    span_s: f64,
    agents: u32,
    slots: u32,
    forecast: Option<f64>,
    target: Duration,
) -> CapacityPool {
    let arrival_per_s = w.arrivals as f64 / span_s;
    let service_s = if w.served == 0 {
        0.0
    } else {
        w.busy_ms as f64 / w.served as f64 / 1000.0
    };
    // Plan for the larger of the measured and the forecast arrival rate.
    let lambda = forecast.map_or(arrival_per_s, |f| f.max(arrival_per_s));
    let recommended = if service_s > 0.0 {
        recommended_agents(lambda, service_s, slots, target.as_secs_f64())
    } else {
        // No attempt finished in the window: no service time to plan with.
        agents
    };
    CapacityPool {
        pool: w.pool.clone(),
        arrival_per_s,
        service_s,
        utilisation: utilisation(arrival_per_s, service_s, agents.saturating_mul(slots)),
        schedule_to_start_p95_ms: w.wait_p95_ms.unwrap_or(0.0),
        agents,
        slots_per_agent: slots,
        forecast,
        recommended_agents: recommended,
    }
}

/// Headroom before the limits, over the connected nodes.
fn headroom(
    nodes: &[NodeView],
    managed: &HashMap<torch_core::AgentId, torch_api::rest::ManagedView>,
) -> Headroom {
    let live: Vec<&NodeView> = nodes.iter().filter(|n| n.connected && n.cpus > 0).collect();
    if live.is_empty() {
        return Headroom::default();
    }
    let cpus: f64 = live.iter().map(|n| f64::from(n.cpus)).sum();
    let cpu_used: f64 = live
        .iter()
        .map(|n| n.cpu_used * f64::from(n.cpus))
        .sum::<f64>()
        / cpus;
    let mem: f64 = live.iter().map(|n| n.mem_total_bytes as f64).sum();
    let mem_used = if mem > 0.0 {
        live.iter()
            .map(|n| n.mem_used * n.mem_total_bytes as f64)
            .sum::<f64>()
            / mem
    } else {
        0.0
    };
    let cpu = CPU_LIMIT - cpu_used;
    let memory = MEMORY_LIMIT - mem_used;
    // Agents of the average measured size that still fit under both limits.
    let sized: Vec<(f64, f64)> = managed
        .values()
        .filter_map(|m| Some((m.cpu?, m.rss_bytes? as f64)))
        .collect();
    let agents = (!sized.is_empty()).then(|| {
        let n = sized.len() as f64;
        let avg_cpu = sized.iter().map(|s| s.0).sum::<f64>() / n;
        let avg_rss = sized.iter().map(|s| s.1).sum::<f64>() / n;
        let by_cpu = if avg_cpu > 0.0 {
            (cpu * cpus / avg_cpu).floor()
        } else {
            f64::INFINITY
        };
        let by_mem = if avg_rss > 0.0 {
            (memory * mem / avg_rss).floor()
        } else {
            f64::INFINITY
        };
        by_cpu.min(by_mem).clamp(0.0, f64::from(u32::MAX)) as u32
    });
    Headroom {
        cpu: Some(cpu),
        memory: Some(memory),
        agents,
    }
}

//! Multi-factor scoring (`find_optimal_agent`): the weights, the `[routing]`
//! config section, and the five factors, each in `0..=1`.
//!
//! | factor | what it measures |
//! |---|---|
//! | `skill` | proficiency on the required skills, plus coverage of preferred ones |
//! | `load` | free slots / slots |
//! | `performance` | success rate and speed on these skills relative to the fleet, shrunk toward a prior by sample count |
//! | `affinity` | warm context: same repository, overlapping paths, same parent, decaying with a half-life |
//! | `cost` | `1 - cost / most expensive agent` |
//!
//! The total is `Σ weight × factor`. Weights need not sum to 1; the defaults do.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::breaker::BreakerConfig;
use super::profile::{ContextKey, FleetStats, SkillPerf};
use super::taxonomy::Taxonomy;
use crate::scheduler::{AgentSlots, QueuedTask};

/// Number of factors a policy may report.
pub const MAX_FACTORS: usize = 5;

/// Factor weights; the `[routing.weights]` config section.
///
/// Defaults, and why (checked against the shipped simulation, `torch bench routing`):
/// - `performance` 0.30: measured success and speed on these skills is the
///   best predictor of completion time; shrunk toward the prior, so it is safe
///   to weigh heavily.
/// - `affinity` 0.25: a warm checkout or cache typically halves run time,
///   which is worth more than a small proficiency edge.
/// - `skill` 0.25: advertised proficiency is the only signal before history
///   exists, and it still breaks ties among equally proven agents.
/// - `load` 0.15: among fitting agents, spread work; a lightly loaded agent
///   starts sooner and runs with less contention.
/// - `cost` 0.05: a tie-breaker between otherwise similar agents; raise it
///   when agents have very different prices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Weights {
    /// Skill match.
    pub skill: f64,
    /// Availability (free slots).
    pub load: f64,
    /// Performance history on the task's skills.
    pub performance: f64,
    /// Warm-context affinity.
    pub affinity: f64,
    /// Cost (cheaper is better).
    pub cost: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            skill: 0.25,
            load: 0.15,
            performance: 0.30,
            affinity: 0.25,
            cost: 0.05,
        }
    }
}

/// The `[routing]` config section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Factor weights.
    pub weights: Weights,
    /// Pseudo-count of the performance prior: an agent with `n` outcomes on a
    /// skill is scored `(n × measured + prior × fleet average) / (n + prior)`.
    /// A new agent therefore starts as an average agent (explored, not
    /// starved) and earns or loses its place after a few tasks. Default 3.
    pub perf_prior: f64,
    /// Weight of the newest outcome in an agent's per-skill EWMAs. Default 0.3.
    pub perf_alpha: f64,
    /// Warm context halves in value every this long. Default 10 minutes.
    #[serde(with = "crate::spec::duration")]
    pub affinity_half_life: Duration,
    /// Assign many ready tasks jointly rather than one at a time. Default true.
    pub batch: bool,
    /// Most tasks optimised jointly in one batch. Default 64.
    pub batch_max: usize,
    /// The skill taxonomy used by task analysis.
    pub taxonomy: Taxonomy,
    /// Per-agent circuit breaker.
    pub breaker: BreakerConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            weights: Weights::default(),
            perf_prior: 3.0,
            perf_alpha: 0.3,
            affinity_half_life: Duration::from_secs(600),
            batch: true,
            batch_max: 64,
            taxonomy: Taxonomy::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// A policy's verdict on one agent for one task.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scored {
    /// Weighted total; higher is better.
    pub total: f64,
    /// Factor values in the order the policy names them.
    pub values: [f64; MAX_FACTORS],
}

/// A task prepared for scoring: context hashed and fleet references looked
/// up once per decision, not once per candidate.
#[derive(Clone, Debug)]
pub struct TaskView<'a> {
    /// The task.
    pub task: &'a QueuedTask,
    /// Decision time (unix ms).
    pub now: u64,
    /// Routing configuration.
    pub config: &'a RoutingConfig,
    /// The task's context, hashed.
    pub key: ContextKey,
    /// Skills performance is judged on, with the fleet reference for each.
    pub perf_skills: Vec<(&'a str, Option<SkillPerf>)>,
    /// Most expensive known agent's cost (for normalising cost).
    pub max_cost: f64,
}

impl<'a> TaskView<'a> {
    /// Prepares `task`. Performance is judged on required skills, else on
    /// preferred ones, else over all tasks.
    pub fn new(
        task: &'a QueuedTask,
        now: u64,
        config: &'a RoutingConfig,
        fleet: &FleetStats,
        max_cost: f64,
    ) -> Self {
        let names: Vec<&'a str> = if !task.skills.is_empty() {
            task.skills.iter().map(|s| s.name.as_str()).collect()
        } else {
            task.preferred.iter().map(|s| s.name.as_str()).collect()
        };
        let perf_skills = if names.is_empty() {
            vec![("", fleet.get(None).cloned())]
        } else {
            names
                .into_iter()
                .map(|n| (n, fleet.get(Some(n)).cloned()))
                .collect()
        };
        TaskView {
            task,
            now,
            config,
            key: ContextKey::of(task.context.as_ref()),
            perf_skills,
            max_cost,
        }
    }
}

fn level_of(agent: &AgentSlots, name: &str) -> Option<f64> {
    agent
        .skills
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.level)
}

/// Skill match: mean proficiency on required skills; with preferred skills,
/// 70 % that and 30 % the share of preferred skills held (weighted by level).
pub fn skill_factor(task: &QueuedTask, agent: &AgentSlots) -> f64 {
    let req = if task.skills.is_empty() {
        1.0
    } else {
        let sum: f64 = task
            .skills
            .iter()
            .map(|r| level_of(agent, &r.name).unwrap_or(0.0))
            .sum();
        sum / task.skills.len() as f64
    };
    if task.preferred.is_empty() {
        return req.clamp(0.0, 1.0);
    }
    let pref: f64 = task
        .preferred
        .iter()
        .map(|p| match level_of(agent, &p.name) {
            Some(l) if l + 1e-9 >= p.min => l,
            _ => 0.0,
        })
        .sum::<f64>()
        / task.preferred.len() as f64;
    let w = if task.skills.is_empty() { 0.0 } else { 0.7 };
    (w * req + (1.0 - w) * pref).clamp(0.0, 1.0)
}

/// Availability: free slots / slots.
pub fn load_factor(agent: &AgentSlots) -> f64 {
    if agent.slots == 0 {
        return 0.0;
    }
    agent.slots.saturating_sub(agent.used) as f64 / agent.slots as f64
}

/// Performance relative to the fleet, in `0..=1` with 0.5 for "average":
/// `e / (1 + e)` where `e` is relative throughput (success rate × speed, each
/// relative to the fleet's) shrunk toward 1 by `perf_prior` pseudo-samples.
pub fn performance_factor(view: &TaskView<'_>, agent: &AgentSlots) -> f64 {
    let k = view.config.perf_prior.max(0.0);
    let mut sum = 0.0;
    for (name, fleet) in &view.perf_skills {
        let mine = if name.is_empty() {
            Some(&agent.profile.overall)
        } else {
            agent.profile.perf.get(*name)
        };
        let e = match (mine, fleet) {
            (Some(m), Some(f)) if m.count > 0 => {
                let n = m.count as f64;
                let succ = m.success_ewma / f.success_ewma.max(0.05);
                let speed = f.duration_ewma_ms.max(1.0) / m.duration_ewma_ms.max(1.0);
                let shrink = |x: f64| (n * x + k) / (n + k).max(1e-9);
                shrink(succ) * shrink(speed)
            }
            _ => 1.0,
        };
        sum += e / (1.0 + e);
    }
    sum / view.perf_skills.len().max(1) as f64
}

/// Warm-context affinity; see [`super::profile::AgentProfile::affinity`].
pub fn affinity_factor(view: &TaskView<'_>, agent: &AgentSlots) -> f64 {
    let half = view.config.affinity_half_life.as_millis() as u64;
    agent.profile.affinity(&view.key, view.now, half)
}

/// Cost: `1 - cost / max_cost` (1 when nobody charges).
pub fn cost_factor(view: &TaskView<'_>, agent: &AgentSlots) -> f64 {
    if view.max_cost <= 0.0 {
        return 1.0;
    }
    (1.0 - agent.cost.max(0.0) / view.max_cost).clamp(0.0, 1.0)
}

/// All five factors and the weighted total, in the order of
/// [`TORCH_FACTORS`].
pub fn torch_score(view: &TaskView<'_>, agent: &AgentSlots) -> Scored {
    let w = &view.config.weights;
    let values = [
        skill_factor(view.task, agent),
        load_factor(agent),
        performance_factor(view, agent),
        if view.key.is_empty() {
            0.0
        } else {
            affinity_factor(view, agent)
        },
        cost_factor(view, agent),
    ];
    let weights = [w.skill, w.load, w.performance, w.affinity, w.cost];
    let total = values.iter().zip(weights).map(|(v, w)| v * w).sum();
    Scored { total, values }
}

/// Factor names of the multi-factor policy, in score order.
pub const TORCH_FACTORS: [&str; 5] = ["skill", "load", "performance", "affinity", "cost"];

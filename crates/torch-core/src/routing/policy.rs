//! Placement policies: the plug-in point of the scheduler.
//!
//! A policy scores each feasible agent for a task; the scheduler picks the top
//! total (ties: lower load, then lower agent id) and explains the choice with
//! the policy's factors. The hard filters (skills, labels, slots, draining,
//! breaker, avoid-list) are the scheduler's and apply to every policy.
//!
//! | policy | scoring |
//! |---|---|
//! | [`Torch`] (`torch`, default) | the multi-factor score of [`super::score`]; batch-optimised |
//! | [`LeastLoaded`] (`least_loaded`) | `1 - used/slots` |
//! | [`RoundRobin`] (`round_robin`) | the agent picked longest ago (never picked first) |
//! | [`Random`] (`random`) | a seeded random number per candidate |

use std::collections::HashMap;

use super::prng::SplitMix64;
use super::score::{RoutingConfig, Scored, TORCH_FACTORS, TaskView, load_factor, torch_score};
use crate::ids::AgentId;
use crate::scheduler::{AgentSlots, QueuedTask};

/// Scores agents for tasks. Implementations must be deterministic given
/// their own state and the order of calls.
pub trait Placer {
    /// Policy name, recorded in explanations.
    fn name(&self) -> &str;

    /// `(factor name, weight)` in the order of [`Scored::values`].
    fn factors(&self, cfg: &RoutingConfig) -> Vec<(&'static str, f64)>;

    /// Scores a feasible `agent` (it passed every hard filter) for the task.
    fn score(&mut self, view: &TaskView<'_>, agent: &AgentSlots) -> Scored;

    /// The weight of the load factor when the score is `base + weight ×
    /// (free/slots)` with `base` independent of load; `Some` lets the
    /// scheduler optimise a batch of placements jointly. `None` (the
    /// default) places one task at a time.
    fn joint_load_weight(&self, _cfg: &RoutingConfig) -> Option<f64> {
        None
    }

    /// Told after each placement (round-robin advances here).
    fn placed(&mut self, _task: &QueuedTask, _agent: AgentId) {}
}

impl<P: Placer + ?Sized> Placer for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn factors(&self, cfg: &RoutingConfig) -> Vec<(&'static str, f64)> {
        (**self).factors(cfg)
    }
    fn score(&mut self, view: &TaskView<'_>, agent: &AgentSlots) -> Scored {
        (**self).score(view, agent)
    }
    fn joint_load_weight(&self, cfg: &RoutingConfig) -> Option<f64> {
        (**self).joint_load_weight(cfg)
    }
    fn placed(&mut self, task: &QueuedTask, agent: AgentId) {
        (**self).placed(task, agent)
    }
}

/// The multi-factor policy (default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Torch;

impl Placer for Torch {
    fn name(&self) -> &str {
        "torch"
    }
    fn factors(&self, cfg: &RoutingConfig) -> Vec<(&'static str, f64)> {
        let w = &cfg.weights;
        let ws = [w.skill, w.load, w.performance, w.affinity, w.cost];
        TORCH_FACTORS.iter().copied().zip(ws).collect()
    }
    fn score(&mut self, view: &TaskView<'_>, agent: &AgentSlots) -> Scored {
        torch_score(view, agent)
    }
    fn joint_load_weight(&self, cfg: &RoutingConfig) -> Option<f64> {
        cfg.batch.then_some(cfg.weights.load)
    }
}

/// Lowest load ratio first; with the scheduler's tie-break (fewer running
/// tasks, then lower id) this is the classic least-loaded placer.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastLoaded;

impl Placer for LeastLoaded {
    fn name(&self) -> &str {
        "least_loaded"
    }
    fn factors(&self, _cfg: &RoutingConfig) -> Vec<(&'static str, f64)> {
        vec![("load", 1.0)]
    }
    fn score(&mut self, _view: &TaskView<'_>, agent: &AgentSlots) -> Scored {
        let l = load_factor(agent);
        Scored {
            total: l,
            values: [l, 0.0, 0.0, 0.0, 0.0],
        }
    }
}

/// Round-robin over the fitting agents: the one picked longest ago wins.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    last: HashMap<AgentId, u64>,
    tick: u64,
}

impl Placer for RoundRobin {
    fn name(&self) -> &str {
        "round_robin"
    }
    fn factors(&self, _cfg: &RoutingConfig) -> Vec<(&'static str, f64)> {
        vec![("rotation", 1.0)]
    }
    fn score(&mut self, _view: &TaskView<'_>, agent: &AgentSlots) -> Scored {
        let v = match self.last.get(&agent.id) {
            None => 1.0,
            Some(&t) => 1.0 / (2.0 + t as f64),
        };
        Scored {
            total: v,
            values: [v, 0.0, 0.0, 0.0, 0.0],
        }
    }
    fn placed(&mut self, _task: &QueuedTask, agent: AgentId) {
        self.tick += 1;
        self.last.insert(agent, self.tick);
    }
}

/// Uniformly random among fitting agents, from a seeded generator.
#[derive(Clone, Debug)]
pub struct Random {
    rng: SplitMix64,
}

impl Random {
    /// A random policy whose choices are fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Random {
            rng: SplitMix64::new(seed),
        }
    }
}

impl Placer for Random {
    fn name(&self) -> &str {
        "random"
    }
    fn factors(&self, _cfg: &RoutingConfig) -> Vec<(&'static str, f64)> {
        vec![("random", 1.0)]
    }
    fn score(&mut self, _view: &TaskView<'_>, _agent: &AgentSlots) -> Scored {
        let v = self.rng.next_f64();
        Scored {
            total: v,
            values: [v, 0.0, 0.0, 0.0, 0.0],
        }
    }
}

/// The policy called `name` (`torch`, `least_loaded`, `round_robin`, `random`).
pub fn policy_by_name(name: &str, seed: u64) -> Option<Box<dyn Placer + Send>> {
    Some(match name {
        "torch" => Box::new(Torch),
        "least_loaded" => Box::new(LeastLoaded),
        "round_robin" => Box::new(RoundRobin::default()),
        "random" => Box::new(Random::new(seed)),
        _ => return None,
    })
}

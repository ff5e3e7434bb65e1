//! What the lifecycle manager asks the engine: per-template demand (queued
//! tasks a template's agents could run, oldest wait, arrivals) and per-agent
//! load, in one snapshot; and draining agents before they are stopped.

use std::collections::BTreeMap;

use torch_core::scheduler::QueuedTask;
use torch_core::skill::covers;
use torch_core::{AgentId, Skill};

use torch_store::Store;

use super::Engine;

/// The skills and labels of one template, to count the tasks it could serve.
#[derive(Clone, Debug)]
pub(crate) struct TemplateMatcher {
    /// Template name.
    pub(crate) name: String,
    /// Its skills (normalised by the engine).
    pub(crate) skills: Vec<Skill>,
    /// Its labels.
    pub(crate) labels: BTreeMap<String, String>,
}

/// Demand for one template's agents.
#[derive(Clone, Debug, Default)]
pub(crate) struct TemplateDemand {
    /// Queued (ready or waiting to retry) tasks its agents could run.
    pub(crate) queued: u64,
    /// Longest wait of those that are ready, in ms.
    pub(crate) oldest_wait_ms: u64,
    /// Tasks that became ready for it since the hub started (a counter).
    pub(crate) arrivals_total: u64,
}

/// One agent's load.
#[derive(Clone, Debug)]
pub(crate) struct FleetAgent {
    pub(crate) id: AgentId,
    pub(crate) running: u32,
    pub(crate) completed: u64,
    /// Wall time of the attempts it finished, in ms.
    pub(crate) run_ms_total: u64,
}

/// Answer to [`super::Query::Fleet`].
#[derive(Clone, Debug, Default)]
pub(crate) struct FleetSnapshot {
    /// Per template, in the order of the last `SetTemplates`.
    pub(crate) demand: BTreeMap<String, TemplateDemand>,
    /// Every agent the engine knows.
    pub(crate) agents: Vec<FleetAgent>,
}

pub(super) fn serves(m: &TemplateMatcher, t: &QueuedTask) -> bool {
    covers(&m.skills, &t.skills)
        && t.agent_labels
            .iter()
            .all(|(k, v)| m.labels.get(k).is_some_and(|have| have == v))
}

impl<S: Store> Engine<S> {
    /// Replaces the template matchers (keeping arrival counters by name).
    pub(super) fn set_templates(&mut self, mut templates: Vec<TemplateMatcher>) {
        for t in &mut templates {
            t.skills = self.shared.analysis.taxonomy().normalize_skills(&t.skills);
        }
        let old = std::mem::take(&mut self.arrivals);
        self.arrivals = templates
            .iter()
            .map(|t| old.get(&t.name).copied().unwrap_or(0))
            .zip(templates.iter())
            .map(|(n, t)| (t.name.clone(), n))
            .collect();
        self.capacity
            .set_templates(templates.iter().map(|t| t.name.clone()));
        self.matchers = templates;
    }

    /// Counts `task` as an arrival for every template that could serve it;
    /// returns those templates as a bitmask of matcher indices (the first 64).
    pub(super) fn count_arrival(&mut self, task: &QueuedTask) -> u64 {
        let mut mask = 0u64;
        for (i, m) in self.matchers.iter().enumerate() {
            if serves(m, task) {
                if i < 64 {
                    mask |= 1 << i;
                }
                if let Some(n) = self.arrivals.get_mut(&m.name) {
                    *n += 1;
                }
            }
        }
        mask
    }

    pub(super) fn fleet(&self) -> FleetSnapshot {
        let mono = std::time::Instant::now();
        let mut demand: BTreeMap<String, TemplateDemand> = self
            .matchers
            .iter()
            .map(|m| {
                let d = TemplateDemand {
                    arrivals_total: self.arrivals.get(&m.name).copied().unwrap_or(0),
                    ..TemplateDemand::default()
                };
                (m.name.clone(), d)
            })
            .collect();
        if !self.matchers.is_empty() {
            for t in self.sched.queued_tasks() {
                let wait = self
                    .ready_at
                    .get(&t.id)
                    .map(|at| mono.saturating_duration_since(*at).as_millis() as u64)
                    .unwrap_or(0);
                for m in &self.matchers {
                    if serves(m, t)
                        && let Some(d) = demand.get_mut(&m.name)
                    {
                        d.queued += 1;
                        d.oldest_wait_ms = d.oldest_wait_ms.max(wait);
                    }
                }
            }
        }
        let agents = self
            .agents
            .iter()
            .map(|(id, a)| FleetAgent {
                id: *id,
                running: self.leases.used(*id),
                completed: a.completed,
                run_ms_total: a.run_ms_total,
            })
            .collect();
        FleetSnapshot { demand, agents }
    }
}

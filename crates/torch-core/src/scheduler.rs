//! The pure placement engine: which ready task goes to which agent, and why.
//!
//! Order: highest priority first; within a priority, tenants share capacity
//! by stride scheduling, FIFO (submission sequence) within a tenant. With one
//! tenant that is exactly priority-then-FIFO.
//!
//! A task is placed only on an agent that passes every hard filter: required
//! skills at their levels, the task's agent labels, a free slot, not
//! draining, circuit breaker not open (half-open admits one probe), and not
//! on the task's avoid-list unless only avoided agents are capable. Among
//! feasible agents a [`Placer`] scores; the top total wins (ties: fewer
//! running tasks, then lower agent id), and the [`Placement`] carries the
//! [`Explanation`].
//!
//! With the default multi-factor policy ([`Torch`]) a pass is computed in
//! batches: the queue order first decides *which* tasks are placed, then the
//! agents for that set are chosen jointly (see [`crate::routing::batch`] and
//! [`Scheduler::schedule`]).
//!
//! No I/O and no clock: `now` is passed in, and the caller persists placements.

mod agents;
mod eval;
mod learn;
mod pass;
#[cfg(test)]
mod proptests;
mod queue;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use crate::ids::{AgentId, TaskId};
use crate::routing::analysis::TaskAnalysis;
use crate::routing::profile::{AgentProfile, FleetStats};
use crate::routing::score::RoutingConfig;
use crate::skill::{Skill, SkillReq};
use crate::spec::{TaskContext, TaskSpec};

pub use crate::routing::explain::Explanation;
pub use crate::routing::policy::{LeastLoaded, Placer, Torch};

/// Tenant of tasks that name none.
pub const DEFAULT_TENANT: &str = "default";

/// A task waiting to be placed.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedTask {
    /// The task.
    pub id: TaskId,
    /// Higher first.
    pub priority: i32,
    /// Submission sequence: lower first within a priority and tenant.
    pub seq: u64,
    /// Required skills (canonical names; see `TaxonomyIndex::normalize`).
    pub skills: Vec<SkillReq>,
    /// Not placed before this time (unix ms); 0 for "now".
    pub not_before: u64,
    /// Skills that make an agent a better fit (explicit and inferred).
    pub preferred: Vec<SkillReq>,
    /// Labels an agent must carry, with these values (hard filter).
    pub agent_labels: BTreeMap<String, String>,
    /// Where the work lives, for context affinity.
    pub context: Option<TaskContext>,
    /// Agents that already failed this task: avoided while another capable
    /// agent exists (if only these are capable, they are used again).
    pub avoid: Vec<AgentId>,
    /// Owner for fair sharing; [`DEFAULT_TENANT`] when unnamed.
    pub tenant: String,
}

impl QueuedTask {
    /// A task with no preferences, labels, context or avoid-list, in the default tenant.
    pub fn new(id: TaskId, priority: i32, seq: u64, skills: Vec<SkillReq>) -> Self {
        QueuedTask {
            id,
            priority,
            seq,
            skills,
            not_before: 0,
            preferred: Vec::new(),
            agent_labels: BTreeMap::new(),
            context: None,
            avoid: Vec::new(),
            tenant: DEFAULT_TENANT.to_string(),
        }
    }

    /// Sets the earliest placement time (unix ms).
    pub fn with_not_before(mut self, not_before: u64) -> Self {
        self.not_before = not_before;
        self
    }

    /// Everything routing needs from a spec: skills, preferred skills,
    /// context, tenant, and agent labels from spec labels named `agent.KEY`
    /// (`"agent.gpu" = "a100"` requires an agent labelled `gpu=a100`).
    pub fn from_spec(id: TaskId, seq: u64, spec: &TaskSpec) -> Self {
        let agent_labels = spec
            .labels
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("agent.")?.to_string(), v.clone())))
            .collect();
        QueuedTask {
            preferred: spec.preferred_skills.clone(),
            agent_labels,
            context: spec.context.clone(),
            tenant: spec
                .tenant
                .clone()
                .unwrap_or_else(|| DEFAULT_TENANT.to_string()),
            ..QueuedTask::new(id, spec.priority, seq, spec.skills.clone())
        }
    }

    /// Uses an analysis' normalised required skills and its preferred
    /// (explicit and inferred) skills.
    pub fn with_analysis(mut self, analysis: &TaskAnalysis) -> Self {
        self.skills = analysis.required.clone();
        self.preferred = analysis.preferred.iter().map(|p| p.skill.clone()).collect();
        self
    }
}

/// An agent as the scheduler sees it: capacity, capabilities, and what the
/// scheduler has learned about it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSlots {
    /// The agent.
    pub id: AgentId,
    /// What it can do (canonical names).
    pub skills: Vec<Skill>,
    /// Concurrent tasks it accepts.
    pub slots: u32,
    /// Tasks it holds now.
    pub used: u32,
    /// Draining agents take no new tasks.
    pub draining: bool,
    /// Labels matched against a task's `agent_labels`.
    pub labels: BTreeMap<String, String>,
    /// Cost per task in any consistent unit; 0 when free or unknown.
    pub cost: f64,
    /// Learned performance, recent contexts and breaker; kept across
    /// re-registrations (see [`Scheduler::upsert_agent`]).
    pub profile: AgentProfile,
}

impl AgentSlots {
    /// An idle agent with no labels, no cost and nothing learned.
    pub fn new(id: AgentId, skills: Vec<Skill>, slots: u32) -> Self {
        AgentSlots {
            id,
            skills,
            slots,
            used: 0,
            draining: false,
            labels: BTreeMap::new(),
            cost: 0.0,
            profile: AgentProfile::default(),
        }
    }

    /// True when the agent can take one more task (ignoring its breaker).
    pub fn has_free_slot(&self) -> bool {
        !self.draining && self.used < self.slots
    }
}

/// One decision: run `task` on `agent`, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The task placed.
    pub task: TaskId,
    /// The agent chosen.
    pub agent: AgentId,
    /// Candidates, factor scores, rejections.
    pub explanation: Explanation,
}

/// Ready and delayed tasks plus the agent index; produces placements.
#[derive(Debug)]
pub struct Scheduler<P: Placer = Torch> {
    queue: queue::FairQueue,
    delayed: BinaryHeap<Reverse<(u64, TaskId)>>,
    tasks: HashMap<TaskId, QueuedTask>,
    agents: agents::AgentTable,
    fleet: FleetStats,
    config: RoutingConfig,
    placer: P,
}

impl Scheduler<Torch> {
    /// A scheduler with the multi-factor policy and default routing config.
    pub fn new() -> Self {
        Self::with_config(RoutingConfig::default())
    }

    /// A scheduler with the multi-factor policy and `config`.
    pub fn with_config(config: RoutingConfig) -> Self {
        Self::with_placer_and_config(Torch, config)
    }
}

impl Default for Scheduler<Torch> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Placer> Scheduler<P> {
    /// A scheduler that uses `placer` with the default routing config.
    pub fn with_placer(placer: P) -> Self {
        Self::with_placer_and_config(placer, RoutingConfig::default())
    }

    /// A scheduler with `placer` and `config`.
    pub fn with_placer_and_config(placer: P, config: RoutingConfig) -> Self {
        Scheduler {
            queue: queue::FairQueue::default(),
            delayed: BinaryHeap::new(),
            tasks: HashMap::new(),
            agents: agents::AgentTable::default(),
            fleet: FleetStats::default(),
            config,
            placer,
        }
    }

    /// The routing configuration in force.
    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// Replaces the routing configuration (weights take effect next pass).
    pub fn set_config(&mut self, config: RoutingConfig) {
        self.config = config;
    }

    /// Adds a task to the queue (replacing any earlier entry for it).
    pub fn enqueue(&mut self, task: QueuedTask) {
        self.remove_task(task.id);
        if task.not_before > 0 {
            self.delayed.push(Reverse((task.not_before, task.id)));
        } else {
            self.queue
                .insert(task.priority, &task.tenant, task.seq, task.id);
        }
        self.tasks.insert(task.id, task);
    }

    /// Every queued task (ready or waiting for its retry time), in no order.
    pub fn queued_tasks(&self) -> impl Iterator<Item = &QueuedTask> {
        self.tasks.values()
    }

    /// Removes a queued task (cancelled, say). Returns whether it was queued.
    pub fn remove_task(&mut self, id: TaskId) -> bool {
        match self.tasks.remove(&id) {
            Some(t) => {
                // Delayed entries are dropped lazily when they surface.
                self.queue.remove(t.priority, &t.tenant, t.seq, t.id);
                true
            }
            None => false,
        }
    }

    /// The queued task `id`, if it is waiting in this scheduler.
    pub fn queued(&self, id: TaskId) -> Option<&QueuedTask> {
        self.tasks.get(&id)
    }

    /// True when the task is waiting in this scheduler.
    pub fn is_queued(&self, id: TaskId) -> bool {
        self.tasks.contains_key(&id)
    }

    /// Number of tasks waiting (ready or delayed).
    pub fn queued_len(&self) -> usize {
        self.tasks.len()
    }

    /// Registers or replaces an agent. An agent seen before (still
    /// registered, or removed recently) keeps its learned profile —
    /// performance, warm contexts, breaker — unless `agent.profile` is
    /// non-empty (one the caller restored).
    pub fn upsert_agent(&mut self, agent: AgentSlots) {
        self.agents.upsert(agent);
    }

    /// Forgets an agent; its tasks are the caller's to requeue. Its learned
    /// profile is kept (bounded) in case it comes back.
    pub fn remove_agent(&mut self, id: AgentId) -> Option<AgentSlots> {
        self.agents.remove(id)
    }

    /// The agent's current state, if known.
    pub fn agent(&self, id: AgentId) -> Option<&AgentSlots> {
        self.agents.get(id)
    }

    /// All known agents, in id order.
    pub fn agents(&self) -> impl Iterator<Item = &AgentSlots> {
        self.agents.iter()
    }

    /// Marks an agent draining (or not).
    pub fn set_draining(&mut self, id: AgentId, draining: bool) {
        if let Some(i) = self.agents.idx(id) {
            if let Some(a) = self.agents.at_mut(i) {
                a.draining = draining;
            }
            self.agents.refresh(i);
        }
    }

    /// Sets how many slots `agent` uses. A caller that keeps a
    /// [`LeaseTable`](crate::lease::LeaseTable) copies its counts here
    /// (`LeaseTable::take_changed`) instead of counting by hand.
    pub fn set_used(&mut self, id: AgentId, used: u32) {
        if let Some(i) = self.agents.idx(id) {
            let now = self.agents.at(i).map_or(0, |a| a.used);
            self.agents.add_used(i, i64::from(used) - i64::from(now));
        }
    }

    /// Counts one more task held by `agent` (e.g. a lease re-attached after restart).
    pub fn take_slot(&mut self, id: AgentId) {
        if let Some(i) = self.agents.idx(id) {
            self.agents.add_used(i, 1);
        }
    }

    /// Frees one slot on `agent` when a task it held has ended.
    pub fn release_slot(&mut self, id: AgentId) {
        if let Some(i) = self.agents.idx(id) {
            self.agents.add_used(i, -1);
        }
    }

    /// Free slots across agents that are not draining.
    pub fn free_slots(&self) -> u64 {
        self.agents
            .iter()
            .filter(|a| !a.draining)
            .map(|a| a.slots.saturating_sub(a.used) as u64)
            .sum()
    }

    /// Earliest time a delayed task becomes ready, if any.
    pub fn next_wakeup(&self) -> Option<u64> {
        self.delayed
            .iter()
            .filter(|Reverse((_, id))| self.tasks.contains_key(id))
            .map(|Reverse((t, _))| *t)
            .min()
    }

    fn promote_due(&mut self, now: u64) {
        while let Some(&Reverse((t, id))) = self.delayed.peek() {
            if t > now {
                break;
            }
            self.delayed.pop();
            if let Some(task) = self.tasks.get_mut(&id)
                && task.not_before == t
            {
                task.not_before = 0;
                self.queue
                    .insert(task.priority, &task.tenant, task.seq, task.id);
            }
        }
    }
}

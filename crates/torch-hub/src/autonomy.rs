//! The sprint plan's autonomy metrics, kept by the hub that runs the engine
//! (the leader) as things happen, for `GET /api/v1/stats` (`"autonomy"`)
//! and `torch stats`.
//!
//! What feeds it: the events the hub writes itself ([`Autonomy::observe`]:
//! spawns, readiness, exits, scaling decisions), agent sessions (joined,
//! left), recorded task outcomes, and the operator actions that count as an
//! intervention (a retry or cancel with an operator's token, a drain). The
//! numbers cover this hub's uptime; a new leader starts from zero.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;
use torch_core::lifecycle::ScaleAction;
use torch_core::{AgentId, EventData, TaskId};

/// Tasks remembered as touched by an operator while they have not
/// succeeded; past this, the oldest half is forgotten (a task cancelled for
/// good never succeeds, so nothing else would remove it).
const MAX_TOUCHED: usize = 100_000;

/// The autonomy counters. Each method takes the lock briefly; nothing here
/// is on the per-task hot path except [`Autonomy::task_succeeded`], one
/// hash-set lookup.
pub(crate) struct Autonomy {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Helper spawns asked for from inside a task: ordered or refused.
    self_spawns: u64,
    /// Helpers that registered and took work.
    self_spawns_ready: u64,
    /// Helpers ordered and not ready yet.
    pending_helpers: HashSet<AgentId>,
    /// Tasks that succeeded.
    succeeded: u64,
    /// Of those, touched by an operator (retry, cancel, drain).
    succeeded_touched: u64,
    /// Tasks an operator touched, with when, until they succeed.
    touched: HashMap<TaskId, u64>,
    /// Agents an operator drained: their tasks count as touched.
    drained: HashSet<AgentId>,
    /// Connected agents and since when (unix ms).
    live_agents: HashMap<AgentId, u64>,
    /// Agent-milliseconds of sessions that have ended.
    closed_agent_ms: u64,
    /// Per template: ready managed agents.
    pools: HashMap<String, HashSet<AgentId>>,
    /// Template of each managed agent.
    template_of: HashMap<AgentId, String>,
    /// Per template: a change of target not reached yet (since, target).
    adapting: HashMap<String, (u64, u32)>,
    /// Seconds from a change of target to the pool reaching it.
    adapt_sum_s: f64,
    adapt_count: u64,
}

/// The `"autonomy"` object of `/api/v1/stats`. Rates are `0..=1`, `null`
/// until there is something to divide by; the team, message and help rates
/// stay `null` until the hub forms teams, relays messages and takes help
/// requests.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct AutonomyView {
    /// Helper spawns asked for from inside tasks (ordered or refused).
    self_spawn_events: u64,
    /// Share of those whose helper registered and could take work.
    self_spawn_success_rate: Option<f64>,
    /// Share of succeeded tasks (percent) that no operator retried,
    /// cancelled or drained the agent of.
    tasks_without_intervention_pct: Option<f64>,
    /// Tasks succeeded per hour of connected agent time.
    tasks_per_agent_hour: Option<f64>,
    /// Mean seconds from an autoscaler's change of target (the workload
    /// changed) to the pool reaching it.
    adapt_seconds: Option<f64>,
    /// How many adaptations `adapt_seconds` averages.
    adapt_samples: u64,
    /// Teams formed / formations tried.
    team_formation_success_rate: Option<f64>,
    /// Messages delivered / sent.
    messages_delivered_rate: Option<f64>,
    /// Help requests accepted / made.
    help_accept_rate: Option<f64>,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Autonomy {
    /// Nothing counted yet.
    pub(crate) fn new() -> Self {
        Autonomy {
            state: Mutex::new(State::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// An event the hub wrote (about `agent`, at `now` unix ms).
    pub(crate) fn observe(&self, agent: Option<AgentId>, data: &EventData, now: u64) {
        let wanted = matches!(
            data,
            EventData::AgentSpawned(_)
                | EventData::AgentSpawnRefused(_)
                | EventData::AgentSpawnFailed(_)
                | EventData::AgentReady(_)
                | EventData::AgentTerminated(_)
                | EventData::AgentExited(_)
                | EventData::ScalingDecision(_)
        );
        if !wanted {
            return;
        }
        self.with(|s| s.observe(agent, data, now));
    }

    /// An agent session began.
    pub(crate) fn agent_joined(&self, agent: AgentId, now: u64) {
        self.with(|s| {
            s.live_agents.entry(agent).or_insert(now);
        });
    }

    /// An agent session ended.
    pub(crate) fn agent_left(&self, agent: AgentId, now: u64) {
        self.with(|s| {
            if let Some(since) = s.live_agents.remove(&agent) {
                s.closed_agent_ms += now.saturating_sub(since);
            }
            s.drained.remove(&agent);
        });
    }

    /// An operator retried or cancelled `task`.
    pub(crate) fn touched(&self, task: TaskId, now: u64) {
        self.with(|s| {
            if s.touched.len() >= MAX_TOUCHED {
                let mut ages: Vec<u64> = s.touched.values().copied().collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                s.touched.retain(|_, at| *at > cut);
            }
            s.touched.insert(task, now);
        });
    }

    /// An operator drained `agent`.
    pub(crate) fn drained(&self, agent: AgentId) {
        self.with(|s| {
            s.drained.insert(agent);
        });
    }

    /// `task` succeeded on `agent`.
    pub(crate) fn task_succeeded(&self, task: TaskId, agent: AgentId) {
        self.with(|s| {
            s.succeeded += 1;
            let touched = s.touched.remove(&task).is_some() || s.drained.contains(&agent);
            if touched {
                s.succeeded_touched += 1;
            }
        });
    }

    /// The numbers as of `now`.
    pub(crate) fn view(&self, now: u64) -> Option<AutonomyView> {
        self.with(|s| {
            let live_ms: u64 = s
                .live_agents
                .values()
                .map(|since| now.saturating_sub(*since))
                .sum();
            let agent_hours = (s.closed_agent_ms + live_ms) as f64 / 3_600_000.0;
            AutonomyView {
                self_spawn_events: s.self_spawns,
                self_spawn_success_rate: ratio(s.self_spawns_ready, s.self_spawns),
                tasks_without_intervention_pct: ratio(
                    s.succeeded - s.succeeded_touched,
                    s.succeeded,
                )
                .map(|r| r * 100.0),
                tasks_per_agent_hour: (agent_hours > 0.0).then(|| s.succeeded as f64 / agent_hours),
                adapt_seconds: (s.adapt_count > 0).then(|| s.adapt_sum_s / s.adapt_count as f64),
                adapt_samples: s.adapt_count,
                team_formation_success_rate: None,
                messages_delivered_rate: None,
                help_accept_rate: None,
            }
        })
    }
}

impl State {
    fn observe(&mut self, agent: Option<AgentId>, data: &EventData, now: u64) {
        match data {
            EventData::AgentSpawned(d) => {
                if let Some(a) = agent {
                    self.template_of.insert(a, d.template.clone());
                    if d.parent_task.is_some() {
                        self.self_spawns += 1;
                        self.pending_helpers.insert(a);
                    }
                }
            }
            EventData::AgentSpawnRefused(d) if d.parent_task.is_some() => self.self_spawns += 1,
            EventData::AgentSpawnFailed(_) => {
                if let Some(a) = agent {
                    self.pending_helpers.remove(&a);
                    self.template_of.remove(&a);
                }
            }
            EventData::AgentReady(d) => {
                let Some(a) = agent else { return };
                if self.pending_helpers.remove(&a) {
                    self.self_spawns_ready += 1;
                }
                self.pools.entry(d.template.clone()).or_default().insert(a);
                self.check_adapted(&d.template, now);
            }
            EventData::AgentTerminated(_) | EventData::AgentExited(_) => {
                let Some(a) = agent else { return };
                self.pending_helpers.remove(&a);
                if let Some(t) = self.template_of.remove(&a) {
                    if let Some(pool) = self.pools.get_mut(&t) {
                        pool.remove(&a);
                    }
                    self.check_adapted(&t, now);
                }
            }
            EventData::ScalingDecision(d) => {
                if matches!(d.action, ScaleAction::Hold) {
                    return;
                }
                // The first change of target starts the clock; later changes
                // while adapting move the target, not the start.
                let since = self
                    .adapting
                    .get(&d.template)
                    .map_or(d.at_ms, |(since, _)| *since);
                self.adapting.insert(d.template.clone(), (since, d.desired));
                self.check_adapted(&d.template, now);
            }
            _ => {}
        }
    }

    /// Closes an adaptation once the pool of `template` is at its target.
    fn check_adapted(&mut self, template: &str, now: u64) {
        let Some((since, target)) = self.adapting.get(template).copied() else {
            return;
        };
        let size = self.pools.get(template).map_or(0, HashSet::len) as u32;
        if size == target {
            self.adapting.remove(template);
            self.adapt_sum_s += now.saturating_sub(since) as f64 / 1000.0;
            self.adapt_count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torch_core::events::payload::{AgentReady, AgentSpawned};

    fn agent(n: u64) -> AgentId {
        AgentId::from_uuid(uuid::Uuid::from_u128(u128::from(n) + 1))
    }

    fn task(n: u64) -> TaskId {
        TaskId::from_uuid(uuid::Uuid::from_u128(u128::from(n) + 1 + (1 << 64)))
    }

    fn spawned(template: &str, parent: Option<TaskId>) -> EventData {
        EventData::AgentSpawned(AgentSpawned {
            depth: u32::from(parent.is_some()),
            name: "a".into(),
            node: "n".into(),
            parent_agent: None,
            parent_task: parent,
            reason: "spawn".into(),
            template: template.into(),
            tenant: String::new(),
        })
    }

    fn ready(template: &str) -> EventData {
        EventData::AgentReady(AgentReady {
            node: "n".into(),
            reason: "spawn".into(),
            spawn_ms: 10,
            template: template.into(),
        })
    }

    #[test]
    fn a_helper_counts_as_a_self_spawn_and_succeeds_once_ready() {
        let a = Autonomy::new();
        let (h1, h2, scaled) = (agent(1), agent(2), agent(3));
        let parent = Some(task(9));
        a.observe(Some(h1), &spawned("rev", parent), 0);
        a.observe(Some(h2), &spawned("rev", parent), 0);
        a.observe(Some(scaled), &spawned("rev", None), 0);
        a.observe(Some(h1), &ready("rev"), 5);
        a.observe(Some(scaled), &ready("rev"), 5);
        let v = a.view(10).expect("a view");
        assert_eq!(
            v.self_spawn_events, 2,
            "the autoscaler's spawn is not a self-spawn"
        );
        assert_eq!(v.self_spawn_success_rate, Some(0.5));
    }

    #[test]
    fn an_operator_touch_or_drain_takes_a_task_out_of_the_autonomous_share() {
        let a = Autonomy::new();
        let (agent, drained) = (agent(1), agent(2));
        let tasks: Vec<TaskId> = (0..4).map(task).collect();
        a.agent_joined(agent, 0);
        a.touched(tasks[0], 0);
        a.drained(drained);
        a.task_succeeded(tasks[0], agent);
        a.task_succeeded(tasks[1], drained);
        a.task_succeeded(tasks[2], agent);
        a.task_succeeded(tasks[3], agent);
        a.agent_left(agent, 1_800_000);
        let v = a.view(3_600_000).expect("a view");
        assert_eq!(v.tasks_without_intervention_pct, Some(50.0));
        // 4 tasks over half an hour of agent time.
        assert_eq!(v.tasks_per_agent_hour, Some(8.0));
        assert_eq!(v.adapt_seconds, None);
    }

    #[test]
    fn adaptation_runs_from_the_change_of_target_to_the_pool_reaching_it() {
        use torch_core::lifecycle::{ScaleDecision, ScaleSummary};
        let a = Autonomy::new();
        let decision = |at_ms, desired| {
            EventData::ScalingDecision(ScaleDecision {
                template: "w".into(),
                at_ms,
                action: ScaleAction::Up { count: 1 },
                reason: String::new(),
                inputs: ScaleSummary::default(),
                forecast: None,
                demand: 0.0,
                desired,
            })
        };
        let agents: Vec<AgentId> = (0..2).map(agent).collect();
        a.observe(None, &decision(1_000, 1), 1_000);
        a.observe(None, &decision(1_500, 2), 1_500);
        for (i, ag) in agents.iter().enumerate() {
            a.observe(Some(*ag), &spawned("w", None), 1_600);
            a.observe(Some(*ag), &ready("w"), 3_000 + 1_000 * i as u64);
        }
        let v = a.view(5_000).expect("a view");
        assert_eq!(v.adapt_samples, 1, "one change, reached once");
        assert_eq!(
            v.adapt_seconds,
            Some(3.0),
            "from 1.0 s to the second agent at 4.0 s"
        );
    }
}

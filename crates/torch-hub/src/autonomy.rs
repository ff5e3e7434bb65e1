//! The sprint plan's autonomy metrics, kept by the hub that runs the engine
//! (the leader) as things happen, for `GET /api/v1/stats` (`"autonomy"`)
//! and `torch stats`.
//!
//! What feeds it: every event recorded through the hub's usual path
//! (`Shared::event`/`Shared::events` call [`Autonomy::observe`]): spawns,
//! readiness, exits and scaling decisions; the collaboration events agents
//! report (`message.*`) and the hub writes (`help.*`, `team.*`); agent
//! sessions (joined, left), recorded task outcomes, and the operator actions
//! that count as an intervention (a retry or cancel with an operator's
//! token, a drain). The numbers cover this hub's uptime; a new leader starts
//! from zero. `/metrics` exports the same view (`torch_autonomy_*`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use torch_api::msg::KIND_BOUNCE;
use torch_core::events::payload::MessageEvent;
use torch_core::lifecycle::ScaleAction;
use torch_core::{AgentId, EventData, TaskId};

/// Tasks remembered as touched by an operator while they have not
/// succeeded; past this, the oldest half is forgotten (a task cancelled for
/// good never succeeds, so nothing else would remove it).
const MAX_TOUCHED: usize = 100_000;

/// Message ids remembered as delivered, so that a delivery reported twice
/// counts once; past this the oldest is forgotten (a repeat report comes
/// within seconds, not a hundred thousand messages later).
const MAX_DELIVERED_IDS: usize = 100_000;

/// The autonomy counters. Each method takes the lock briefly; on the hot
/// paths are [`Autonomy::task_succeeded`] (one hash-set lookup per task) and
/// [`Autonomy::observe`] of message events (a counter, or one id looked up
/// and remembered per delivery).
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
    /// Agents an operator drained or started by hand: their tasks count as
    /// touched.
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
    /// `message.sent` events (bounces excluded).
    messages_sent: u64,
    /// Distinct messages reported `message.delivered` (bounces excluded).
    messages_delivered: u64,
    /// Ids counted in `messages_delivered`, oldest first (bounded).
    delivered_ids: HashSet<String>,
    delivered_order: VecDeque<String>,
    /// `help.requested` events.
    help_requested: u64,
    /// `help.accepted` events (the store lets one accept win per request).
    help_accepted: u64,
    /// `team.formed` events.
    teams_formed: u64,
    /// `team.formation_failed` events.
    team_formations_failed: u64,
}

/// The `"autonomy"` object of `/api/v1/stats` (and the `torch_autonomy_*`
/// series of `/metrics`). Rates are `0..=1`, `null` until there is something
/// to divide by.
#[derive(Clone, Debug, Default, Serialize, schemars::JsonSchema)]
pub(crate) struct AutonomyView {
    /// Helper spawns asked for from inside tasks (ordered or refused).
    pub(crate) self_spawn_events: u64,
    /// Share of those whose helper registered and could take work.
    pub(crate) self_spawn_success_rate: Option<f64>,
    /// Share of succeeded tasks (percent) that no operator retried,
    /// cancelled or drained the agent of.
    pub(crate) tasks_without_intervention_pct: Option<f64>,
    /// Tasks succeeded per hour of connected agent time.
    pub(crate) tasks_per_agent_hour: Option<f64>,
    /// Mean seconds from an autoscaler's change of target (the workload
    /// changed) to the pool reaching it.
    pub(crate) adapt_seconds: Option<f64>,
    /// How many adaptations `adapt_seconds` averages.
    pub(crate) adapt_samples: u64,
    /// `team.formed` / (`team.formed` + `team.formation_failed`).
    pub(crate) team_formation_success_rate: Option<f64>,
    /// Distinct messages delivered / messages sent (bounces excluded; at
    /// most 1: a recipient may report a delivery before its sender reports
    /// the send).
    pub(crate) messages_delivered_rate: Option<f64>,
    /// Help requests accepted by a peer / made (an escalated or expired
    /// request is not accepted).
    pub(crate) help_accept_rate: Option<f64>,
}

/// A bounce is the system's notice about a message, not a message between
/// collaborators: the hub's bounces have no `message.sent`, so counting
/// their deliveries would push the rate past what was sent.
fn is_bounce(m: &MessageEvent) -> bool {
    m.kind.as_deref() == Some(KIND_BOUNCE)
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

    /// An event the hub recorded (about `agent`, at `now` unix ms), its own
    /// or an agent's report. `Shared::event` and `Shared::events` call this
    /// for every event they append, so an event appended that way is
    /// counted; other kinds are ignored after one `match`.
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
                | EventData::MessageSent(_)
                | EventData::MessageDelivered(_)
                | EventData::HelpRequested(_)
                | EventData::HelpAccepted(_)
                | EventData::TeamFormed(_)
                | EventData::TeamFormationFailed(_)
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

    /// An operator started `agent` by hand (`torch spawn` with an admin
    /// token): what it runs counts as touched, like a drained agent's.
    pub(crate) fn spawned_by_operator(&self, agent: AgentId) {
        self.drained(agent);
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
                team_formation_success_rate: ratio(
                    s.teams_formed,
                    s.teams_formed + s.team_formations_failed,
                ),
                messages_delivered_rate: ratio(
                    s.messages_delivered.min(s.messages_sent),
                    s.messages_sent,
                ),
                help_accept_rate: ratio(s.help_accepted, s.help_requested),
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
            EventData::MessageSent(m) if !is_bounce(m) => self.messages_sent += 1,
            EventData::MessageDelivered(m) if !is_bounce(m) => self.delivered(m),
            EventData::HelpRequested(_) => self.help_requested += 1,
            EventData::HelpAccepted(_) => self.help_accepted += 1,
            EventData::TeamFormed(_) => self.teams_formed += 1,
            EventData::TeamFormationFailed(_) => self.team_formations_failed += 1,
            _ => {}
        }
    }

    /// Counts a delivery once per message id (an event without an id, which
    /// recipients never send for a stored message, counts as it comes).
    fn delivered(&mut self, m: &MessageEvent) {
        let Some(id) = &m.id else {
            self.messages_delivered += 1;
            return;
        };
        if self.delivered_ids.contains(id) {
            return;
        }
        if self.delivered_order.len() >= MAX_DELIVERED_IDS
            && let Some(old) = self.delivered_order.pop_front()
        {
            self.delivered_ids.remove(&old);
        }
        self.delivered_ids.insert(id.clone());
        self.delivered_order.push_back(id.clone());
        self.messages_delivered += 1;
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

    fn message(id: &str, kind: &str) -> MessageEvent {
        MessageEvent {
            delivery: Some("relayed".into()),
            from: Some(agent(1).to_string()),
            id: Some(id.into()),
            kind: Some(kind.into()),
            reason: None,
            to: Some(agent(2).to_string()),
            sent_ms: Some(0),
            at_ms: Some(1),
        }
    }

    #[test]
    fn a_message_delivered_counts_once_and_bounces_and_refusals_do_not() {
        let a = Autonomy::new();
        let ev = |d: EventData| a.observe(Some(agent(1)), &d, 0);
        assert_eq!(a.view(0).expect("a view").messages_delivered_rate, None);
        // m1 relayed, then delivered (reported twice): one delivery.
        ev(EventData::MessageSent(message("m1", "text")));
        ev(EventData::MessageRelayed(message("m1", "text")));
        ev(EventData::MessageDelivered(message("m1", "text")));
        ev(EventData::MessageDelivered(message("m1", "text")));
        // m2 direct and delivered.
        ev(EventData::MessageSent(message("m2", "text")));
        ev(EventData::MessageDelivered(message("m2", "text")));
        // m3 bounced (gone recipient), m4 refused by its recipient.
        ev(EventData::MessageSent(message("m3", "text")));
        ev(EventData::MessageBounced(message("m3", "text")));
        ev(EventData::MessageSent(message("m4", "text")));
        ev(EventData::MessageRefused(message("m4", "text")));
        // The hub's bounce of m3 reaches its sender: not a message sent.
        ev(EventData::MessageDelivered(message("b3", KIND_BOUNCE)));
        let v = a.view(0).expect("a view");
        assert_eq!(v.messages_delivered_rate, Some(0.5), "2 of 4 delivered");

        // A delivery reported before its send never lifts the rate past 1.
        let b = Autonomy::new();
        b.observe(None, &EventData::MessageDelivered(message("x", "t")), 0);
        assert_eq!(b.view(0).expect("a view").messages_delivered_rate, None);
        b.observe(None, &EventData::MessageDelivered(message("y", "t")), 0);
        b.observe(None, &EventData::MessageSent(message("x", "t")), 0);
        assert_eq!(
            b.view(0).expect("a view").messages_delivered_rate,
            Some(1.0)
        );
    }

    #[test]
    fn help_accept_rate_counts_accepts_over_requests() {
        use torch_core::events::coord::{HelpAccepted, HelpEscalated, HelpExpired, HelpRequested};
        use torch_core::waits::Node;
        let a = Autonomy::new();
        let requester = Node::Task(task(1));
        let requested = |id: &str| {
            EventData::HelpRequested(HelpRequested {
                id: id.into(),
                level: 0.5,
                offered: vec![agent(2)],
                requester: requester.clone(),
                skill: "rust".into(),
                timeout_ms: 1_000,
            })
        };
        for id in ["h1", "h2", "h3", "h4"] {
            a.observe(Some(agent(1)), &requested(id), 0);
        }
        a.observe(
            Some(agent(2)),
            &EventData::HelpAccepted(HelpAccepted {
                accepted_agent: Some(agent(2)),
                accepted_by: Node::Task(task(2)),
                id: "h1".into(),
                requester: requester.clone(),
            }),
            1,
        );
        a.observe(
            Some(agent(3)),
            &EventData::HelpEscalated(HelpEscalated {
                helper: agent(3),
                id: "h2".into(),
                requester: requester.clone(),
                skill: "rust".into(),
                template: "rust".into(),
            }),
            1,
        );
        a.observe(
            None,
            &EventData::HelpExpired(HelpExpired {
                id: "h3".into(),
                reason: "no template".into(),
                requester,
                skill: "rust".into(),
            }),
            1,
        );
        let v = a.view(2).expect("a view");
        assert_eq!(
            v.help_accept_rate,
            Some(0.25),
            "one of four accepted; escalated, expired and open ones are not"
        );
    }

    #[test]
    fn team_formation_success_rate_is_formed_over_tried() {
        use torch_core::events::team::{TeamFormationFailed, TeamFormed};
        let a = Autonomy::new();
        assert_eq!(a.view(0).expect("a view").team_formation_success_rate, None);
        let formed = |t| {
            EventData::TeamFormed(TeamFormed {
                integration_branch: None,
                leader: agent(1),
                leader_reason: "highest score".into(),
                members: Vec::new(),
                repository: None,
                explanation: serde_json::Value::Null,
                task: task(t),
                term: 1,
            })
        };
        for t in 0..3 {
            a.observe(None, &formed(t), 0);
        }
        a.observe(
            None,
            &EventData::TeamFormationFailed(TeamFormationFailed {
                reason: "no agent covers role db".into(),
                role: Some("db".into()),
                task: Some(task(9)),
            }),
            0,
        );
        let v = a.view(0).expect("a view");
        assert_eq!(v.team_formation_success_rate, Some(0.75));
    }
}

//! The engine's answer to the metrics query: queue depth by state and
//! priority band, agents with their state, slots and breaker, and leases
//! that look stuck. One pass over the queue, the leases and the agents.

use torch_core::AgentId;
use torch_core::routing::BreakerState;
use torch_store::Store;

use super::Engine;

/// Priority bands, in label order: `high` (> 0), `normal` (0), `low` (< 0).
pub(crate) const BANDS: [&str; 3] = ["high", "normal", "low"];

/// The band of a priority (an index into [`BANDS`]).
pub(crate) fn band(priority: i32) -> usize {
    match priority {
        p if p > 0 => 0,
        0 => 1,
        _ => 2,
    }
}

/// One agent, for the metrics.
#[derive(Clone, Debug)]
pub(crate) struct AgentGauge {
    pub(crate) id: AgentId,
    pub(crate) name: String,
    /// `idle`, `busy`, `draining`, `silent` or `disconnected`.
    pub(crate) state: &'static str,
    pub(crate) slots: u32,
    pub(crate) used: u32,
    /// `closed`, `open` or `half_open` (`None` when not scheduled).
    pub(crate) breaker: Option<&'static str>,
}

/// Answer to [`super::Query::Gauges`].
#[derive(Clone, Debug, Default)]
pub(crate) struct EngineGauges {
    /// Ready tasks by band.
    pub(crate) queued: [u64; 3],
    /// Tasks waiting out a retry backoff, by band.
    pub(crate) waiting: [u64; 3],
    /// Leased tasks by band.
    pub(crate) leased: [u64; 3],
    /// Every agent the engine knows.
    pub(crate) agents: Vec<AgentGauge>,
    /// Leases without a sign of life from the task for `stuck_after_ms`.
    pub(crate) stuck_no_progress: u64,
    /// Leases whose agent is silent or disconnected.
    pub(crate) stuck_no_heartbeat: u64,
}

impl<S: Store> Engine<S> {
    /// The gauges as of `now`; a lease counts as stuck without progress
    /// once the task gave no sign of life for `stuck_after_ms`.
    pub(super) fn gauges(&self, now: u64, stuck_after_ms: u64) -> EngineGauges {
        let mut g = EngineGauges::default();
        for t in self.sched.queued_tasks() {
            let b = band(t.priority);
            if t.not_before > now {
                g.waiting[b] += 1;
            } else {
                g.queued[b] += 1;
            }
        }
        for (task, lease) in self.leases.iter() {
            let p = self.info.get(&task).map_or(0, |i| i.priority);
            g.leased[band(p)] += 1;
            let agent_ok = self
                .agents
                .get(&lease.agent)
                .is_some_and(|a| a.tx.is_some() && !a.silent);
            if !agent_ok {
                g.stuck_no_heartbeat += 1;
            } else if now.saturating_sub(lease.active_ms) > stuck_after_ms {
                g.stuck_no_progress += 1;
            }
        }
        g.agents = self
            .agents
            .iter()
            .map(|(id, a)| {
                let used = self.leases.used(*id);
                let state = if a.tx.is_none() {
                    "disconnected"
                } else if a.silent {
                    "silent"
                } else if a.drain {
                    "draining"
                } else if used == 0 {
                    "idle"
                } else {
                    "busy"
                };
                let breaker = self.sched.breaker_state(*id, now).map(|b| match b {
                    BreakerState::Closed { .. } => "closed",
                    BreakerState::Open { .. } => "open",
                    BreakerState::HalfOpen { .. } => "half_open",
                });
                AgentGauge {
                    id: *id,
                    name: a.name.clone(),
                    state,
                    slots: a.slots,
                    used,
                    breaker,
                }
            })
            .collect();
        g
    }
}

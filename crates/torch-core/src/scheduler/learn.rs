//! What the hub reports back after placing and running tasks: warm-context
//! stamps, outcomes (performance, fleet reference, breaker), and the view of
//! an agent's learned state.

use super::{Placer, QueuedTask, Scheduler};
use crate::ids::AgentId;
use crate::routing::profile::AgentStateView;
use crate::skill::SkillReq;
use crate::spec::TaskContext;

impl<P: Placer> Scheduler<P> {
    /// Stamps warm context and the breaker probe for an assignment made
    /// outside [`Scheduler::schedule`] (which stamps its own placements),
    /// e.g. a lease re-attached after a hub restart.
    pub fn record_assigned(&mut self, agent: AgentId, task: &QueuedTask, now: u64) {
        if let Some(i) = self.agents.idx(agent)
            && let Some(a) = self.agents.at_mut(i)
        {
            a.profile.touch(task.context.as_ref(), now);
            a.profile.breaker.on_assigned(now);
        }
    }

    /// Folds a finished run into the agent's per-skill performance, the fleet
    /// reference and the agent's breaker; a success also refreshes warm
    /// context. Does not free the slot (see [`Scheduler::release_slot`]).
    pub fn record_outcome(
        &mut self,
        agent: AgentId,
        skills: &[SkillReq],
        context: Option<&TaskContext>,
        success: bool,
        duration_ms: u64,
        now: u64,
    ) {
        let names: Vec<&str> = skills.iter().map(|s| s.name.as_str()).collect();
        self.fleet.record(&names, success, duration_ms);
        let (alpha, breaker) = (self.config.perf_alpha, &self.config.breaker);
        if let Some(i) = self.agents.idx(agent)
            && let Some(a) = self.agents.at_mut(i)
        {
            a.profile
                .record(&names, success, duration_ms, alpha, now, breaker);
            if success {
                a.profile.touch(context, now);
            }
        }
    }

    /// An agent's circuit-breaker state as of `now` (cheap: for metrics).
    pub fn breaker_state(&self, agent: AgentId, now: u64) -> Option<crate::routing::BreakerState> {
        let a = self.agents.get(agent)?;
        Some(a.profile.breaker.state(now))
    }

    /// A view of what the scheduler knows about an agent, as of `now`.
    pub fn agent_state(&self, agent: AgentId, now: u64) -> Option<AgentStateView> {
        let a = self.agents.get(agent)?;
        Some(AgentStateView {
            breaker: a.profile.breaker.state(now),
            breaker_trips: a.profile.breaker.trips(),
            used: a.used,
            slots: a.slots,
            cost: a.cost,
            perf: a.profile.perf.clone(),
            overall: a.profile.overall.clone(),
            recent_repositories: a
                .profile
                .recent
                .iter()
                .filter_map(|r| r.repository.clone())
                .collect(),
        })
    }
}

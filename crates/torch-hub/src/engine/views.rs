//! Answers to the engine's queries that are views of its state.

use torch_api::rest::AgentView;
use torch_store::Store;

use super::Engine;

impl<S: Store> Engine<S> {
    /// Every agent the engine knows, connected ones first, by name.
    pub(super) fn agent_views(&self, now: u64) -> Vec<AgentView> {
        let mut v: Vec<AgentView> = self
            .agents
            .iter()
            .map(|(id, a)| {
                let running = self.leases.used(*id);
                let state = if a.tx.is_none() {
                    "disconnected"
                } else if a.silent {
                    "silent"
                } else if running == 0 {
                    "idle"
                } else {
                    "busy"
                };
                AgentView {
                    id: *id,
                    name: a.name.clone(),
                    skills: a.skills.clone(),
                    slots: a.slots,
                    running,
                    state: state.into(),
                    labels: a.labels.clone(),
                    connected_ms: a.connected_ms,
                    last_seen_ms: a.last_seen_ms,
                    completed: a.completed,
                    routing: self.sched.agent_state(*id, now),
                    managed: None,
                }
            })
            .collect();
        v.sort_by(|a, b| {
            (a.state == "disconnected", &a.name).cmp(&(b.state == "disconnected", &b.name))
        });
        v
    }

    /// Every agent with the tasks it holds leases on.
    pub(super) fn peer_views(&self, now: u64) -> Vec<(AgentView, Vec<torch_core::TaskId>)> {
        let mut tasks: std::collections::HashMap<torch_core::AgentId, Vec<torch_core::TaskId>> =
            std::collections::HashMap::new();
        for (task, lease) in self.leases.iter() {
            tasks.entry(lease.agent).or_default().push(task);
        }
        self.agent_views(now)
            .into_iter()
            .map(|v| {
                let mut held = tasks.remove(&v.id).unwrap_or_default();
                held.sort();
                (v, held)
            })
            .collect()
    }
}

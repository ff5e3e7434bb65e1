//! The engine's registry of agent sessions: who is connected, with which
//! skills and slots, when it was last heard from, whether it is drained or
//! silent.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use torch_api::ws::HeldTask;
use torch_core::lease::Renewal;
use torch_core::scheduler::AgentSlots;
use torch_core::{AgentId, Skill};
use torch_store::Store;
use tracing::{info, warn};

use super::{Engine, NOT_YOURS, Outbound, Registration, cancel};

/// Why the engine refused an agent session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JoinRefused {
    /// Another session of this agent id is connected and was heard from
    /// recently: it is not proven gone, so it is not displaced.
    #[error(
        "agent {agent} is connected on another session (last heard from {silent_ms} ms ago); \
         a new session is accepted once that one closes or stays silent for {needed_ms} ms"
    )]
    InUse {
        agent: AgentId,
        silent_ms: u64,
        needed_ms: u64,
    },
}

/// One agent the engine knows (connected, or disconnected with leases that
/// have not run out yet).
pub(super) struct AgentEntry {
    pub(super) name: String,
    pub(super) skills: Vec<Skill>,
    pub(super) slots: u32,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) cost: f64,
    pub(super) session: u64,
    /// Its session's outbox; `None` once the session closed.
    pub(super) tx: Option<mpsc::Sender<Outbound>>,
    /// Ends its session (when a newer session replaces it).
    pub(super) close: CancellationToken,
    pub(super) connected_ms: u64,
    pub(super) last_seen_ms: u64,
    pub(super) completed: u64,
    /// A lease of this agent expired without heartbeats: it gets no new work
    /// until it is heard from again.
    pub(super) silent: bool,
    /// The lifecycle manager is draining it (before stopping it).
    pub(super) drain: bool,
    /// Wall time of the attempts it finished (for the autoscaler's service time).
    pub(super) run_ms_total: u64,
}

impl<S: Store> Engine<S> {
    /// How long a connected session must have been silent before another
    /// session may take its agent id over: two heartbeats.
    fn takeover_after_ms(&self) -> u64 {
        2 * self.shared.cfg.heartbeat.as_millis() as u64
    }

    /// Registers an agent session. A live session of the same id (heard
    /// from within two heartbeats) is not displaced: it is probed (a dead
    /// connection then notices) and the new session refused; the agent
    /// retries.
    pub(super) fn join(&mut self, reg: Registration, now: u64) -> Result<(), JoinRefused> {
        let id = reg.id;
        let needed_ms = self.takeover_after_ms();
        if let Some(a) = self.agents.get(&id)
            && a.session != reg.session
            && let Some(old) = a.tx.as_ref().filter(|t| !t.is_closed())
        {
            let silent_ms = now.saturating_sub(a.last_seen_ms);
            if silent_ms < needed_ms {
                let _ = old.try_send(Outbound::Probe);
                warn!(agent_id = %id, silent_ms, "refused a second session for a connected agent");
                return Err(JoinRefused::InUse {
                    agent: id,
                    silent_ms,
                    needed_ms,
                });
            }
            warn!(agent_id = %id, silent_ms, "a silent session is replaced by a newer one");
            a.close.cancel();
        }
        // Re-attach what the agent still runs; tell it to drop what is no
        // longer its.
        for h in &reg.hello.running {
            if self.leases.renew(id, h.task_id, h.fence, now) == Renewal::NotYours {
                let _ = reg
                    .tx
                    .try_send(cancel(h.task_id, h.fence, NOT_YOURS).into());
            }
        }
        let hello = reg.hello;
        if self.agents.contains_key(&id) {
            self.shared.metrics.counters.reconnected();
        }
        let entry = self.agents.entry(id).or_insert_with(|| AgentEntry {
            name: String::new(),
            skills: Vec::new(),
            slots: 0,
            labels: BTreeMap::new(),
            cost: 0.0,
            session: reg.session,
            tx: None,
            close: CancellationToken::new(),
            connected_ms: now,
            last_seen_ms: now,
            completed: 0,
            silent: false,
            drain: false,
            run_ms_total: 0,
        });
        entry.name = hello.name;
        entry.skills = hello.skills;
        entry.slots = hello.slots;
        entry.labels = hello.labels;
        entry.cost = hello
            .cost
            .filter(|c| c.is_finite() && *c >= 0.0)
            .unwrap_or(0.0);
        entry.session = reg.session;
        entry.tx = Some(reg.tx);
        entry.close = reg.close;
        entry.connected_ms = now;
        entry.last_seen_ms = now;
        entry.silent = false;
        self.schedule_agent(id);
        Ok(())
    }

    /// (Re)registers a known agent with the scheduler and the lease table.
    pub(super) fn schedule_agent(&mut self, id: AgentId) {
        let Some(a) = self.agents.get(&id) else {
            return;
        };
        let skills = self.shared.analysis.taxonomy().normalize_skills(&a.skills);
        let mut slots = AgentSlots::new(id, skills, a.slots);
        slots.used = self.leases.register(id, a.slots);
        slots.labels = a.labels.clone();
        // Every agent carries its own id (whatever its Hello claimed), so a
        // task labelled `agent.torch.id` goes to that agent alone.
        slots
            .labels
            .insert(super::PIN_LABEL.to_string(), id.to_string());
        slots.cost = a.cost;
        let draining = a.drain || a.silent;
        self.sched.upsert_agent(slots);
        if draining {
            self.sched.set_draining(id, true);
        }
    }

    /// A session closed (if it is still the agent's current one): the agent
    /// gets no new work; its leases run until they expire.
    pub(super) fn leave(&mut self, agent: AgentId, session: u64) {
        if let Some(a) = self.agents.get_mut(&agent)
            && a.session == session
        {
            a.tx = None;
            self.sched.remove_agent(agent);
            self.leases.unregister(agent);
            info!(agent_id = %agent, "agent disconnected; its leases run until they expire");
        }
    }

    /// A heartbeat: the agent is alive; renew the leases it holds, and tell
    /// it to stop what is no longer its.
    pub(super) fn heartbeat(&mut self, agent: AgentId, running: Vec<HeldTask>, now: u64) {
        self.heard_from(agent, now);
        for h in running {
            if self.leases.renew(agent, h.task_id, h.fence, now) == Renewal::NotYours {
                self.send(agent, cancel(h.task_id, h.fence, NOT_YOURS));
            }
        }
    }

    /// Notes a sign of life; an agent held back as silent gets work again.
    pub(super) fn heard_from(&mut self, agent: AgentId, now: u64) {
        if let Some(a) = self.agents.get_mut(&agent) {
            a.last_seen_ms = now;
            if a.silent && a.tx.is_some() {
                a.silent = false;
                if !a.drain {
                    self.sched.set_draining(agent, false);
                }
                info!(agent_id = %agent, "agent is responsive again; it may take new tasks");
            }
        }
    }

    /// An agent missed its heartbeats (one of its leases ran out): no new
    /// work for it until it is heard from. Returns its name.
    pub(super) fn went_silent(&mut self, agent: AgentId) -> String {
        let Some(a) = self.agents.get_mut(&agent) else {
            return String::new();
        };
        if !a.silent {
            a.silent = true;
            self.sched.set_draining(agent, true);
            warn!(agent_id = %agent, name = %a.name, "agent missed its heartbeats; no new tasks for it until it is heard from");
        }
        a.name.clone()
    }

    /// Stops (or resumes) giving `agent` new work; its held tasks finish.
    pub(super) fn drain(&mut self, agent: AgentId, drain: bool) {
        if let Some(a) = self.agents.get_mut(&agent) {
            a.drain = drain;
            if drain || !a.silent {
                self.sched.set_draining(agent, drain);
            }
        }
    }

    /// Queues `msg` for `agent`'s session (dropped, with a warning, when the
    /// outbox is full or closed: lease expiry covers a lost message).
    pub(super) fn send(&self, agent: AgentId, msg: impl Into<Outbound>) {
        if let Some(tx) = self.agents.get(&agent).and_then(|a| a.tx.as_ref())
            && tx.try_send(msg.into()).is_err()
        {
            warn!(agent_id = %agent, "agent outbox full or closed; message dropped (lease expiry covers it)");
        }
    }

    /// The skills of every connected agent.
    pub(super) fn connected_skills(&self) -> Vec<Vec<Skill>> {
        self.agents
            .values()
            .filter(|a| a.tx.is_some())
            .map(|a| a.skills.clone())
            .collect()
    }
}

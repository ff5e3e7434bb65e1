//! Leases: which agent holds which task, under which fence, until when —
//! the pure state machine the hub's engine drives, and the slot accounting
//! that follows from it.
//!
//! A lease moves through these phases (see docs/ARCHITECTURE.md for the
//! diagram):
//!
//! ```text
//!   grant ──► Granting ──confirm──► Held ──end──► Finishing ──recorded──► (gone)
//!                │                   │  ▲            │
//!                │ cancel            │  └─record_failed
//!                ▼                   │ tick: lease ran out / stalled (requeue)
//!            Cancelled ◄──cancel─────┤
//!                │ end / tick        ▼
//!              (gone)            Expiring ──expired──► (gone)
//!                                    └──expiry_failed──► Held (due now)
//! ```
//!
//! The table owns the slot accounting: an agent's used slots are, by
//! construction, the number of its leases in a phase that holds a slot
//! (every phase but `Finishing`: the agent said the process ended, so the
//! slot is free while the store records the outcome). Every change of phase
//! goes through one function that keeps the counts, and the agents whose
//! count changed are reported by [`LeaseTable::take_changed`] so the
//! scheduler's copy is set, never incremented by hand.
//!
//! No clock: every event carries `now` (unix ms).

#[cfg(test)]
mod proptests;

use std::collections::{BTreeSet, HashMap};

use crate::ids::{AgentId, TaskId};

/// Where a lease stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Chosen by the scheduler; the store is writing it (fence unknown).
    Granting,
    /// The agent holds it.
    Held,
    /// The agent reported the attempt over; the store is recording it.
    Finishing,
    /// Cancelled; waiting for the agent to confirm the kill.
    Cancelled,
    /// The lease ran out (or the task stalled); the store is ending the attempt.
    Expiring,
}

impl Phase {
    /// Whether a lease in this phase occupies one of its agent's slots.
    pub fn holds_slot(self) -> bool {
        !matches!(self, Phase::Finishing)
    }
}

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The agent it is granted to.
    pub agent: AgentId,
    /// Its fence token; 0 while the store has not confirmed it.
    pub fence: u64,
    /// When it runs out unless renewed (unix ms).
    pub expires_ms: u64,
    /// Where it stands.
    pub phase: Phase,
    /// Last sign the task itself is alive (grant or a progress report).
    pub active_ms: u64,
    /// A stall was already reported for this lease.
    pub stalled: bool,
}

/// Timing rules of a [`LeaseTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRules {
    /// A lease's term: renewed by every heartbeat of its agent.
    pub lease_ms: u64,
    /// No progress report for this long is a stall (`None`: never).
    pub stall_ms: Option<u64>,
    /// A stalled task's attempt is ended (and the task retried) instead of
    /// only being reported.
    pub stall_requeue: bool,
}

/// Why a grant was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The task already has a lease.
    #[error("task {0} already has a lease")]
    Leased(TaskId),
    /// The agent is not registered (or is gone).
    #[error("agent {0} is not registered")]
    UnknownAgent(AgentId),
    /// Every slot of the agent is taken.
    #[error("agent {agent} has no free slot ({used} of {capacity} used)")]
    NoFreeSlot {
        /// The agent.
        agent: AgentId,
        /// Slots in use.
        used: u32,
        /// Its slots.
        capacity: u32,
    },
}

/// What to do after the store confirmed a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// Send the assignment to the agent.
    Deliver(AgentId),
    /// Cancelled while it was being written: the agent never hears of it
    /// (its slot is free again).
    Withdrawn(AgentId),
    /// Nothing to send (the lease moved on meanwhile, or is unknown).
    Ignore,
}

/// A heartbeat's (or re-attachment's) verdict on one task the agent holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The agent holds it: renewed (when held) or left as it is.
    Renewed,
    /// Granted to this agent, not yet confirmed: nothing to do.
    Pending,
    /// Not this agent's (expired, reassigned, unknown): tell it to stop.
    NotYours,
}

/// What an agent's end-of-attempt report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The first end report for this lease: its slot is free and the
    /// outcome is being recorded (learn from it now, once).
    Finishing,
    /// The agent confirmed the kill of a cancelled task: the lease is gone.
    Removed,
    /// A repeat, or not a lease this agent holds under that fence.
    Ignored,
}

/// Something [`LeaseTable::tick`] found due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// End the attempt in the store (the lease is `Expiring`); `stalled`
    /// when it is ended because the task stalled, not because its lease ran out.
    Expire {
        /// The task.
        task: TaskId,
        /// Its agent.
        agent: AgentId,
        /// The lease's fence.
        fence: u64,
        /// Ended for a stall (`stall-action = "requeue"`).
        stalled: bool,
    },
    /// The task made no progress for the stall period (reported once per lease).
    Stalled {
        /// The task.
        task: TaskId,
        /// Its agent.
        agent: AgentId,
        /// The lease's fence.
        fence: u64,
    },
    /// A cancelled lease whose agent never confirmed the kill: dropped.
    Dropped {
        /// The task.
        task: TaskId,
        /// Its agent.
        agent: AgentId,
    },
}

#[derive(Clone, Copy, Debug, Default)]
struct Slots {
    capacity: u32,
    used: u32,
    /// Registered (may receive grants).
    present: bool,
}

/// The leases of every task in flight, and the slots they occupy.
#[derive(Clone, Debug)]
pub struct LeaseTable {
    rules: LeaseRules,
    leases: HashMap<TaskId, Lease>,
    slots: HashMap<AgentId, Slots>,
    /// Agents whose used count changed since the last `take_changed`.
    changed: BTreeSet<AgentId>,
}

impl LeaseTable {
    /// An empty table.
    pub fn new(rules: LeaseRules) -> Self {
        LeaseTable {
            rules,
            leases: HashMap::new(),
            slots: HashMap::new(),
            changed: BTreeSet::new(),
        }
    }

    /// The timing rules.
    pub fn rules(&self) -> LeaseRules {
        self.rules
    }

    /// Forgets every lease (agents stay registered with no slot used).
    pub fn clear(&mut self) {
        let tasks: Vec<TaskId> = self.leases.keys().copied().collect();
        for t in tasks {
            self.remove(t);
        }
    }

    // ---- the only three functions that change a lease's slot state ----

    fn insert(&mut self, task: TaskId, lease: Lease) {
        debug_assert!(!self.leases.contains_key(&task));
        if lease.phase.holds_slot() {
            self.count(lease.agent, 1);
        }
        self.leases.insert(task, lease);
    }

    fn remove(&mut self, task: TaskId) -> Option<Lease> {
        let lease = self.leases.remove(&task)?;
        if lease.phase.holds_slot() {
            self.count(lease.agent, -1);
        }
        Some(lease)
    }

    fn set_phase(&mut self, task: TaskId, phase: Phase) {
        let Some(l) = self.leases.get_mut(&task) else {
            return;
        };
        let (was, agent) = (l.phase.holds_slot(), l.agent);
        l.phase = phase;
        match (was, phase.holds_slot()) {
            (false, true) => self.count(agent, 1),
            (true, false) => self.count(agent, -1),
            _ => {}
        }
    }

    fn count(&mut self, agent: AgentId, delta: i32) {
        let s = self.slots.entry(agent).or_default();
        s.used = s.used.saturating_add_signed(delta);
        self.changed.insert(agent);
    }

    // ---- agents ----

    /// An agent (re)registered with `capacity` slots; returns the slots its
    /// live leases already use (re-attached after a reconnect or restart).
    pub fn register(&mut self, agent: AgentId, capacity: u32) -> u32 {
        let s = self.slots.entry(agent).or_default();
        s.capacity = capacity;
        s.present = true;
        self.changed.insert(agent);
        s.used
    }

    /// An agent's session ended: it gets no new grant; its leases live on
    /// until they run out (or it comes back and renews them).
    pub fn unregister(&mut self, agent: AgentId) {
        if let Some(s) = self.slots.get_mut(&agent) {
            s.present = false;
            if s.used == 0 {
                self.slots.remove(&agent);
            }
        }
    }

    /// Slots `agent`'s live leases occupy.
    pub fn used(&self, agent: AgentId) -> u32 {
        self.slots.get(&agent).map_or(0, |s| s.used)
    }

    /// Agents whose used slots changed since the last call, with the count now.
    pub fn take_changed(&mut self) -> Vec<(AgentId, u32)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|a| (a, self.used(a)))
            .collect()
    }

    // ---- reads ----

    /// The lease of `task`, if any.
    pub fn get(&self, task: TaskId) -> Option<&Lease> {
        self.leases.get(&task)
    }

    /// Whether `task` has a lease in any phase.
    pub fn contains(&self, task: TaskId) -> bool {
        self.leases.contains_key(&task)
    }

    /// Every lease.
    pub fn iter(&self) -> impl Iterator<Item = (TaskId, &Lease)> {
        self.leases.iter().map(|(t, l)| (*t, l))
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// True when no task is leased.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    // ---- events ----

    /// The scheduler placed `task` on `agent`: the lease is `Granting`
    /// until the store confirms it, and takes one of the agent's slots.
    pub fn grant(&mut self, task: TaskId, agent: AgentId, now: u64) -> Result<(), GrantError> {
        if self.leases.contains_key(&task) {
            return Err(GrantError::Leased(task));
        }
        let s = match self.slots.get(&agent) {
            Some(s) if s.present => *s,
            _ => return Err(GrantError::UnknownAgent(agent)),
        };
        if s.used >= s.capacity {
            return Err(GrantError::NoFreeSlot {
                agent,
                used: s.used,
                capacity: s.capacity,
            });
        }
        self.insert(
            task,
            Lease {
                agent,
                fence: 0,
                expires_ms: now + self.rules.lease_ms,
                phase: Phase::Granting,
                active_ms: now,
                stalled: false,
            },
        );
        Ok(())
    }

    /// The store wrote the lease of `task` with `fence` at `now`: its term
    /// starts now, when the agent is told (however long the write took).
    pub fn confirm(&mut self, task: TaskId, fence: u64, now: u64) -> Confirm {
        let lease_ms = self.rules.lease_ms;
        let Some(l) = self.leases.get_mut(&task) else {
            return Confirm::Ignore;
        };
        match l.phase {
            Phase::Granting => {
                l.fence = fence;
                l.phase = Phase::Held;
                l.expires_ms = now + lease_ms;
                l.active_ms = now;
                Confirm::Deliver(l.agent)
            }
            Phase::Cancelled if l.fence == 0 => {
                let agent = l.agent;
                self.remove(task);
                Confirm::Withdrawn(agent)
            }
            _ => {
                if l.fence == 0 {
                    l.fence = fence;
                }
                Confirm::Ignore
            }
        }
    }

    /// The store refused (or failed) to write the lease of `task`: it is
    /// gone and its slot free. Returns the agent it was meant for.
    pub fn refuse(&mut self, task: TaskId) -> Option<AgentId> {
        match self.leases.get(&task) {
            Some(l) if l.fence == 0 => self.remove(task).map(|l| l.agent),
            _ => None,
        }
    }

    /// `agent` says it holds `task` under `fence` (a heartbeat, or the
    /// tasks it re-attaches when it reconnects).
    pub fn renew(&mut self, agent: AgentId, task: TaskId, fence: u64, now: u64) -> Renewal {
        let lease_ms = self.rules.lease_ms;
        match self.leases.get_mut(&task) {
            Some(l) if l.agent == agent && l.fence == fence => {
                if l.phase == Phase::Held {
                    l.expires_ms = now + lease_ms;
                }
                Renewal::Renewed
            }
            Some(l) if l.agent == agent && l.phase == Phase::Granting => Renewal::Pending,
            _ => Renewal::NotYours,
        }
    }

    /// The task reported progress: it is alive (not stalled).
    pub fn activity(&mut self, task: TaskId, now: u64) {
        if let Some(l) = self.leases.get_mut(&task) {
            l.active_ms = now;
            l.stalled = false;
        }
    }

    /// `agent` reported the attempt of `task` under `fence` over.
    pub fn end(&mut self, agent: AgentId, task: TaskId, fence: u64) -> Ended {
        let Some(l) = self.leases.get(&task) else {
            return Ended::Ignored;
        };
        if l.agent != agent || l.fence != fence {
            return Ended::Ignored;
        }
        match l.phase {
            Phase::Held => {
                self.set_phase(task, Phase::Finishing);
                Ended::Finishing
            }
            Phase::Cancelled => {
                self.remove(task);
                Ended::Removed
            }
            Phase::Granting | Phase::Finishing | Phase::Expiring => Ended::Ignored,
        }
    }

    /// The store recorded the end `agent` reported for `task` under `fence`:
    /// the lease is gone. Returns whether it was.
    pub fn recorded(&mut self, agent: AgentId, task: TaskId, fence: u64) -> bool {
        match self.leases.get(&task) {
            Some(l) if l.agent == agent && l.fence == fence && l.phase == Phase::Finishing => {
                self.remove(task);
                true
            }
            _ => false,
        }
    }

    /// The store could not record the end of `task`: the agent still holds
    /// it (and resends the report); the lease runs a fresh term.
    pub fn record_failed(&mut self, task: TaskId, now: u64) {
        let lease_ms = self.rules.lease_ms;
        if let Some(l) = self.leases.get_mut(&task)
            && l.phase == Phase::Finishing
        {
            l.expires_ms = now + lease_ms;
            self.set_phase(task, Phase::Held);
        }
    }

    /// `task` was cancelled: its lease (if any) waits one term for the
    /// agent to confirm the kill. Returns the lease's agent and fence.
    pub fn cancel(&mut self, task: TaskId, now: u64) -> Option<(AgentId, u64)> {
        let lease_ms = self.rules.lease_ms;
        let l = self.leases.get_mut(&task)?;
        l.expires_ms = now + lease_ms;
        let held = (l.agent, l.fence);
        self.set_phase(task, Phase::Cancelled);
        Some(held)
    }

    /// Finds what is due at `now`: leases that ran out (→ `Expiring`, or
    /// dropped when cancelled), stalls, and end reports the store never
    /// answered (after four more terms they expire too).
    pub fn tick(&mut self, now: u64) -> Vec<Due> {
        let LeaseRules {
            lease_ms,
            stall_ms,
            stall_requeue,
        } = self.rules;
        let mut due = Vec::new();
        for (task, l) in &mut self.leases {
            let expired = match l.phase {
                Phase::Held | Phase::Cancelled => l.expires_ms <= now,
                Phase::Finishing => l.expires_ms + lease_ms * 4 <= now,
                Phase::Granting | Phase::Expiring => false,
            };
            if expired {
                due.push(if l.phase == Phase::Cancelled {
                    Due::Dropped {
                        task: *task,
                        agent: l.agent,
                    }
                } else {
                    Due::Expire {
                        task: *task,
                        agent: l.agent,
                        fence: l.fence,
                        stalled: false,
                    }
                });
                continue;
            }
            if let Some(stall_ms) = stall_ms
                && l.phase == Phase::Held
                && !l.stalled
                && now.saturating_sub(l.active_ms) >= stall_ms
            {
                l.stalled = true;
                due.push(Due::Stalled {
                    task: *task,
                    agent: l.agent,
                    fence: l.fence,
                });
                if stall_requeue {
                    due.push(Due::Expire {
                        task: *task,
                        agent: l.agent,
                        fence: l.fence,
                        stalled: true,
                    });
                }
            }
        }
        for d in &due {
            match *d {
                Due::Expire { task, .. } => self.set_phase(task, Phase::Expiring),
                Due::Dropped { task, .. } => {
                    self.remove(task);
                }
                Due::Stalled { .. } => {}
            }
        }
        due
    }

    /// The store ended the attempt of an `Expiring` lease: it is gone.
    /// Returns whether it was.
    pub fn expired(&mut self, task: TaskId) -> bool {
        match self.leases.get(&task) {
            Some(l) if l.phase == Phase::Expiring => {
                self.remove(task);
                true
            }
            _ => false,
        }
    }

    /// The store could not end the attempt: the lease is held again and due
    /// at once, so the next tick tries again.
    pub fn expiry_failed(&mut self, task: TaskId, now: u64) {
        if let Some(l) = self.leases.get_mut(&task)
            && l.phase == Phase::Expiring
        {
            l.expires_ms = now;
            self.set_phase(task, Phase::Held);
        }
    }

    /// A lease the store holds that this table did not know (loaded at
    /// start, or written although its write reported an error): held for
    /// one term from `now`. Returns false when the task has a lease already.
    pub fn adopt(&mut self, task: TaskId, agent: AgentId, fence: u64, now: u64) -> bool {
        if self.leases.contains_key(&task) {
            return false;
        }
        self.insert(
            task,
            Lease {
                agent,
                fence,
                expires_ms: now + self.rules.lease_ms,
                phase: Phase::Held,
                active_ms: now,
                stalled: false,
            },
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u128) -> TaskId {
        TaskId::from_uuid(uuid::Uuid::from_u128(n))
    }
    fn a(n: u128) -> AgentId {
        AgentId::from_uuid(uuid::Uuid::from_u128(1000 + n))
    }
    const RULES: LeaseRules = LeaseRules {
        lease_ms: 100,
        stall_ms: Some(50),
        stall_requeue: false,
    };

    #[test]
    fn a_lease_takes_a_slot_until_the_agent_reports_the_end() {
        let mut lt = LeaseTable::new(RULES);
        assert_eq!(lt.register(a(1), 1), 0);
        lt.grant(t(1), a(1), 0).unwrap();
        assert_eq!(lt.used(a(1)), 1);
        assert_eq!(
            lt.grant(t(2), a(1), 0),
            Err(GrantError::NoFreeSlot {
                agent: a(1),
                used: 1,
                capacity: 1
            })
        );
        assert_eq!(lt.grant(t(1), a(1), 0), Err(GrantError::Leased(t(1))));
        assert_eq!(lt.confirm(t(1), 7, 0), Confirm::Deliver(a(1)));
        assert_eq!(lt.renew(a(1), t(1), 6, 10), Renewal::NotYours);
        assert_eq!(lt.renew(a(2), t(1), 7, 10), Renewal::NotYours);
        assert_eq!(lt.renew(a(1), t(1), 7, 10), Renewal::Renewed);
        assert_eq!(lt.get(t(1)).unwrap().expires_ms, 110);
        assert_eq!(lt.end(a(1), t(1), 7), Ended::Finishing);
        assert_eq!(lt.used(a(1)), 0);
        assert_eq!(lt.end(a(1), t(1), 7), Ended::Ignored);
        lt.record_failed(t(1), 20);
        assert_eq!(lt.used(a(1)), 1);
        assert_eq!(lt.end(a(1), t(1), 7), Ended::Finishing);
        assert!(!lt.recorded(a(1), t(1), 6));
        assert!(lt.recorded(a(1), t(1), 7));
        assert!(lt.is_empty());
        let changed = lt.take_changed();
        assert_eq!(changed, vec![(a(1), 0)]);
        assert!(lt.take_changed().is_empty());
    }

    #[test]
    fn a_grant_cancelled_while_written_is_withdrawn() {
        let mut lt = LeaseTable::new(RULES);
        lt.register(a(1), 2);
        lt.grant(t(1), a(1), 0).unwrap();
        assert_eq!(lt.cancel(t(1), 5), Some((a(1), 0)));
        assert_eq!(lt.used(a(1)), 1);
        assert_eq!(lt.confirm(t(1), 3, 0), Confirm::Withdrawn(a(1)));
        assert_eq!(lt.used(a(1)), 0);
        assert!(lt.is_empty());
    }

    #[test]
    fn expiry_stall_and_unconfirmed_cancel() {
        let mut lt = LeaseTable::new(RULES);
        lt.register(a(1), 3);
        for n in 1..=3 {
            lt.grant(t(n), a(1), 0).unwrap();
            lt.confirm(t(n), n as u64, 0);
        }
        assert_eq!(lt.cancel(t(3), 0), Some((a(1), 3)));
        lt.renew(a(1), t(2), 2, 60);
        // At 60: task 1 and 2 stalled (no progress since 0); none expired.
        let due = lt.tick(60);
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|d| matches!(d, Due::Stalled { .. })));
        assert!(lt.tick(61).is_empty(), "a stall is reported once");
        // At 100: task 1's lease ran out; the cancelled one is dropped.
        let mut due = lt.tick(100);
        due.sort_by_key(|d| format!("{d:?}"));
        assert_eq!(
            due,
            vec![
                Due::Dropped {
                    task: t(3),
                    agent: a(1)
                },
                Due::Expire {
                    task: t(1),
                    agent: a(1),
                    fence: 1,
                    stalled: false
                },
            ]
        );
        assert!(lt.tick(100).is_empty(), "an expiry is due once");
        assert_eq!(lt.used(a(1)), 2);
        lt.expiry_failed(t(1), 100);
        assert_eq!(lt.tick(100).len(), 1, "a failed expiry is due again");
        assert!(lt.expired(t(1)));
        assert!(!lt.expired(t(1)));
        assert_eq!(lt.used(a(1)), 1);
    }

    #[test]
    fn stall_requeue_ends_the_attempt() {
        let mut lt = LeaseTable::new(LeaseRules {
            stall_requeue: true,
            ..RULES
        });
        lt.register(a(1), 1);
        lt.grant(t(1), a(1), 0).unwrap();
        lt.confirm(t(1), 1, 0);
        lt.activity(t(1), 30);
        assert!(lt.tick(60).is_empty());
        let due = lt.tick(80);
        assert_eq!(due.len(), 2);
        assert_eq!(lt.get(t(1)).unwrap().phase, Phase::Expiring);
        assert_eq!(
            lt.used(a(1)),
            1,
            "the slot stays taken until the store answers"
        );
    }

    #[test]
    fn adopted_and_reattached_leases_count_on_registration() {
        let mut lt = LeaseTable::new(RULES);
        assert!(lt.adopt(t(1), a(1), 4, 0));
        assert!(!lt.adopt(t(1), a(1), 4, 0));
        assert_eq!(lt.grant(t(2), a(1), 0), Err(GrantError::UnknownAgent(a(1))));
        assert_eq!(lt.register(a(1), 2), 1);
        lt.unregister(a(1));
        assert_eq!(lt.used(a(1)), 1, "leases outlive the session");
        assert!(lt.grant(t(2), a(1), 0).is_err());
        lt.clear();
        assert_eq!(lt.used(a(1)), 0);
    }
}

//! The pure placement engine: which ready task goes to which agent.
//!
//! Order: highest priority first, FIFO (submission sequence) within a priority.
//! A task is placed only on an agent that covers its required skills, has a
//! free slot and is not draining. Among fitting agents a [`Placer`] chooses;
//! [`LeastLoaded`] is the default. The multi-factor scorer of the routing work
//! is another `Placer`, so the queue logic here does not change with it.
//!
//! No I/O and no clock: `now` is passed in, and the caller persists placements.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use crate::ids::{AgentId, TaskId};
use crate::skill::{Skill, SkillReq, covers};

/// A task waiting to be placed.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedTask {
    /// The task.
    pub id: TaskId,
    /// Higher first.
    pub priority: i32,
    /// Submission sequence: lower first within a priority.
    pub seq: u64,
    /// Required skills.
    pub skills: Vec<SkillReq>,
    /// Not placed before this time (unix ms); 0 for "now".
    pub not_before: u64,
}

/// An agent's capacity as the scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSlots {
    /// The agent.
    pub id: AgentId,
    /// What it can do.
    pub skills: Vec<Skill>,
    /// Concurrent tasks it accepts.
    pub slots: u32,
    /// Tasks it holds now.
    pub used: u32,
    /// Draining agents take no new tasks.
    pub draining: bool,
}

impl AgentSlots {
    /// True when the agent can take one more task.
    pub fn has_free_slot(&self) -> bool {
        !self.draining && self.used < self.slots
    }
}

/// One decision: run `task` on `agent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The task placed.
    pub task: TaskId,
    /// The agent chosen.
    pub agent: AgentId,
}

/// Chooses an agent for a task among those that fit (skills, free slot).
pub trait Placer {
    /// Picks one of `fitting` (never empty), or `None` to leave the task queued.
    fn choose(&mut self, task: &QueuedTask, fitting: &[&AgentSlots]) -> Option<AgentId>;
}

/// Picks the agent with the lowest load ratio; ties go to the fewest running
/// tasks, then to the lowest agent id (deterministic).
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastLoaded;

impl Placer for LeastLoaded {
    fn choose(&mut self, _task: &QueuedTask, fitting: &[&AgentSlots]) -> Option<AgentId> {
        fitting
            .iter()
            .min_by(|a, b| {
                let la = a.used as f64 / a.slots.max(1) as f64;
                let lb = b.used as f64 / b.slots.max(1) as f64;
                la.total_cmp(&lb)
                    .then(a.used.cmp(&b.used))
                    .then(a.id.cmp(&b.id))
            })
            .map(|a| a.id)
    }
}

type ReadyKey = (Reverse<i32>, u64, TaskId);

/// Ready and delayed tasks plus agent capacity; produces placements.
#[derive(Debug, Default)]
pub struct Scheduler<P: Placer = LeastLoaded> {
    ready: BTreeSet<ReadyKey>,
    delayed: BinaryHeap<Reverse<(u64, TaskId)>>,
    tasks: HashMap<TaskId, QueuedTask>,
    agents: BTreeMap<AgentId, AgentSlots>,
    placer: P,
}

impl Scheduler<LeastLoaded> {
    /// A scheduler with the least-loaded placer.
    pub fn new() -> Self {
        Self::with_placer(LeastLoaded)
    }
}

impl<P: Placer> Scheduler<P> {
    /// A scheduler that uses `placer` to choose among fitting agents.
    pub fn with_placer(placer: P) -> Self {
        Scheduler {
            ready: BTreeSet::new(),
            delayed: BinaryHeap::new(),
            tasks: HashMap::new(),
            agents: BTreeMap::new(),
            placer,
        }
    }

    /// Adds a task to the queue (replacing any earlier entry for it).
    pub fn enqueue(&mut self, task: QueuedTask) {
        self.remove_task(task.id);
        if task.not_before > 0 {
            self.delayed.push(Reverse((task.not_before, task.id)));
        } else {
            self.ready.insert((Reverse(task.priority), task.seq, task.id));
        }
        self.tasks.insert(task.id, task);
    }

    /// Removes a queued task (cancelled, say). Returns whether it was queued.
    pub fn remove_task(&mut self, id: TaskId) -> bool {
        match self.tasks.remove(&id) {
            Some(t) => {
                // Delayed entries are dropped lazily when they surface.
                self.ready.remove(&(Reverse(t.priority), t.seq, t.id));
                true
            }
            None => false,
        }
    }

    /// True when the task is waiting in this scheduler.
    pub fn is_queued(&self, id: TaskId) -> bool {
        self.tasks.contains_key(&id)
    }

    /// Number of tasks waiting (ready or delayed).
    pub fn queued_len(&self) -> usize {
        self.tasks.len()
    }

    /// Registers or replaces an agent.
    pub fn upsert_agent(&mut self, agent: AgentSlots) {
        self.agents.insert(agent.id, agent);
    }

    /// Forgets an agent; its tasks are the caller's to requeue.
    pub fn remove_agent(&mut self, id: AgentId) -> Option<AgentSlots> {
        self.agents.remove(&id)
    }

    /// The agent's current capacity, if known.
    pub fn agent(&self, id: AgentId) -> Option<&AgentSlots> {
        self.agents.get(&id)
    }

    /// All known agents.
    pub fn agents(&self) -> impl Iterator<Item = &AgentSlots> {
        self.agents.values()
    }

    /// Marks an agent draining (or not).
    pub fn set_draining(&mut self, id: AgentId, draining: bool) {
        if let Some(a) = self.agents.get_mut(&id) {
            a.draining = draining;
        }
    }

    /// Counts one more task held by `agent` (e.g. a lease re-attached after restart).
    pub fn take_slot(&mut self, id: AgentId) {
        if let Some(a) = self.agents.get_mut(&id) {
            a.used += 1;
        }
    }

    /// Frees one slot on `agent` when a task it held has ended.
    pub fn release_slot(&mut self, id: AgentId) {
        if let Some(a) = self.agents.get_mut(&id) {
            a.used = a.used.saturating_sub(1);
        }
    }

    /// Free slots across agents that are not draining.
    pub fn free_slots(&self) -> u64 {
        self.agents
            .values()
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
                && task.not_before == t {
                    task.not_before = 0;
                    self.ready.insert((Reverse(task.priority), task.seq, task.id));
                }
        }
    }

    /// Places as many ready tasks as capacity allows (at most `limit`), in
    /// priority then FIFO order, skipping tasks no current agent can take.
    pub fn schedule(&mut self, now: u64, limit: usize) -> Vec<Placement> {
        self.promote_due(now);
        let mut out = Vec::new();
        let mut free = self.free_slots();
        if free == 0 || self.ready.is_empty() {
            return out;
        }
        // Requirement sets already found unplaceable in this pass.
        let mut hopeless: HashSet<Vec<(String, u64)>> = HashSet::new();
        let mut placed: Vec<ReadyKey> = Vec::new();
        for key in self.ready.iter() {
            if free == 0 || out.len() >= limit {
                break;
            }
            let Some(task) = self.tasks.get(&key.2) else {
                continue;
            };
            let sig: Vec<(String, u64)> = task
                .skills
                .iter()
                .map(|s| (s.name.clone(), s.min.to_bits()))
                .collect();
            if hopeless.contains(&sig) {
                continue;
            }
            let fitting: Vec<&AgentSlots> = self
                .agents
                .values()
                .filter(|a| a.has_free_slot() && covers(&a.skills, &task.skills))
                .collect();
            if fitting.is_empty() {
                hopeless.insert(sig);
                continue;
            }
            let Some(agent) = self.placer.choose(task, &fitting) else {
                continue;
            };
            drop(fitting);
            if let Some(a) = self.agents.get_mut(&agent) {
                if !a.has_free_slot() || !covers(&a.skills, &task.skills) {
                    continue; // a placer must pick from `fitting`; ignore a bad pick
                }
                a.used += 1;
                free -= 1;
                out.push(Placement {
                    task: task.id,
                    agent,
                });
                placed.push(*key);
            }
        }
        for key in placed {
            self.ready.remove(&key);
            self.tasks.remove(&key.2);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn tid(n: u64) -> TaskId {
        TaskId::from_uuid(Uuid::from_u64_pair(1, n))
    }
    fn aid(n: u64) -> AgentId {
        AgentId::from_uuid(Uuid::from_u64_pair(2, n))
    }
    const SKILLS: [&str; 3] = ["rust", "python", "sh"];

    #[test]
    fn priority_then_fifo_and_skills() {
        let mut s = Scheduler::new();
        s.upsert_agent(AgentSlots {
            id: aid(1),
            skills: vec!["sh".parse().unwrap()],
            slots: 2,
            used: 0,
            draining: false,
        });
        let q = |n, p, skill: &str| QueuedTask {
            id: tid(n),
            priority: p,
            seq: n,
            skills: vec![skill.parse().unwrap()],
            not_before: 0,
        };
        s.enqueue(q(1, 0, "sh"));
        s.enqueue(q(2, 5, "sh"));
        s.enqueue(q(3, 9, "rust"));
        s.enqueue(q(4, 0, "sh"));
        let p = s.schedule(0, 100);
        assert_eq!(
            p.iter().map(|p| p.task).collect::<Vec<_>>(),
            vec![tid(2), tid(1)]
        );
        assert!(s.schedule(0, 100).is_empty(), "agent is full");
        s.release_slot(aid(1));
        assert_eq!(s.schedule(0, 100)[0].task, tid(4));
        assert!(s.is_queued(tid(3)), "rust task waits for a rust agent");
        let mut delayed = q(5, 100, "sh");
        delayed.not_before = 50;
        s.enqueue(delayed);
        s.release_slot(aid(1));
        assert!(s.schedule(10, 100).is_empty());
        assert_eq!(s.next_wakeup(), Some(50));
        assert_eq!(s.schedule(50, 100)[0].task, tid(5));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Task { prio: i32, skill: usize },
        Agent { skills: Vec<usize>, slots: u32 },
        Finish(usize),
        Schedule,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (-3i32..3, 0usize..3).prop_map(|(prio, skill)| Op::Task { prio, skill }),
            1 => (proptest::collection::vec(0usize..3, 0..3), 0u32..4)
                .prop_map(|(skills, slots)| Op::Agent { skills, slots }),
            2 => (0usize..1000).prop_map(Op::Finish),
            3 => Just(Op::Schedule),
        ]
    }

    proptest! {
        #[test]
        fn placements_respect_skills_slots_priority_and_uniqueness(ops in proptest::collection::vec(op(), 1..120)) {
            let mut s = Scheduler::new();
            let mut queued: HashMap<TaskId, (i32, u64, usize)> = HashMap::new();
            let mut agent_skills: HashMap<AgentId, Vec<usize>> = HashMap::new();
            let mut running: Vec<(TaskId, AgentId)> = Vec::new();
            let mut ever_placed: HashSet<TaskId> = HashSet::new();
            let mut n = 0u64;
            for op in ops {
                match op {
                    Op::Task { prio, skill } => {
                        n += 1;
                        s.enqueue(QueuedTask { id: tid(n), priority: prio, seq: n,
                            skills: vec![SKILLS[skill].parse().unwrap()], not_before: 0 });
                        queued.insert(tid(n), (prio, n, skill));
                    }
                    Op::Agent { skills, slots } => {
                        let id = aid(agent_skills.len() as u64);
                        s.upsert_agent(AgentSlots { id, skills: skills.iter().map(|&k| SKILLS[k].parse().unwrap()).collect(),
                            slots, used: 0, draining: false });
                        agent_skills.insert(id, skills);
                    }
                    Op::Finish(i) => {
                        if !running.is_empty() {
                            let (_, a) = running.remove(i % running.len());
                            s.release_slot(a);
                        }
                    }
                    Op::Schedule => {
                        let placements = s.schedule(0, usize::MAX);
                        for p in &placements {
                            let (prio, seq, skill) = queued.remove(&p.task).expect("placed task was queued");
                            prop_assert!(agent_skills[&p.agent].contains(&skill), "agent lacks skill");
                            prop_assert!(ever_placed.insert(p.task), "task placed twice");
                            // No still-queued task with the same skill outranks it.
                            for (_, &(op, oseq, osk)) in queued.iter() {
                                if osk == skill {
                                    prop_assert!((Reverse(prio), seq) < (Reverse(op), oseq), "a higher-ranked task was skipped");
                                }
                            }
                            running.push((p.task, p.agent));
                        }
                        for a in s.agents() {
                            let held = running.iter().filter(|(_, ag)| *ag == a.id).count() as u32;
                            prop_assert_eq!(held, a.used);
                            prop_assert!(a.used <= a.slots, "over slots");
                        }
                        // Work-conserving: nothing queued could have been placed.
                        for (_, &(_, _, skill)) in queued.iter() {
                            let placeable = s.agents().any(|a| a.has_free_slot() && agent_skills[&a.id].contains(&skill));
                            prop_assert!(!placeable, "a placeable task was left queued");
                        }
                    }
                }
            }
        }
    }
}

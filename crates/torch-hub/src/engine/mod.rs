//! The engine: the one owner of the scheduler, the agents' capacity and the
//! leases (on a shared store, only the leader's engine is active).
//!
//! # Layout
//! - [`handle`]: the typed handle the rest of the hub uses — commands and
//!   queries on separate bounded channels (back-pressure documented there).
//! - `agents`: the registry of agent sessions (join with the live-session
//!   check, leave, heartbeats, silence, drain).
//! - `leases`: lease events applied to the pure [`LeaseTable`] of
//!   `torch-core`, which owns the slot accounting; grants delivered to agents.
//! - `jobs`: the store writes the engine needs (assign, expire, re-reads),
//!   run as tracked tasks whose results come back on their own channel, so
//!   the loop never waits on the store.
//! - `views`: answers to queries.
//! - `fleet`: per-template demand for the lifecycle manager.
//!
//! The loop waits for a command, a query, a job result or its next timer,
//! applies everything that is waiting (up to 4096 items), copies the lease
//! table's slot counts into the scheduler, then places ready tasks in one
//! pass. Leases live in memory: heartbeats renew them without a store
//! write; after a restart or failover every loaded lease gets a fresh term.

mod agents;
mod capacity;
mod fleet;
mod gauges;
mod handle;
mod jobs;
mod leases;
#[cfg(test)]
mod tests;
mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use torch_api::ws::HubMessage;
use torch_core::lease::{LeaseRules, LeaseTable};
use torch_core::routing::TaskAnalysis;
use torch_core::scheduler::{QueuedTask, Scheduler};
use torch_core::{AgentId, SkillReq, TaskContext, TaskId};
use torch_store::{Effect, Snapshot, Store};
use tracing::debug;

use agents::AgentEntry;
pub(crate) use agents::JoinRefused;
pub(crate) use capacity::{ANY_SKILL, PoolWindow};
pub(crate) use fleet::{FleetSnapshot, TemplateMatcher};
#[cfg(test)]
pub(crate) use gauges::AgentGauge;
pub(crate) use gauges::{BANDS, EngineGauges, band};
pub(crate) use handle::{Command, EndReport, EngineHandle, Query, RecordedReport, Registration};
use jobs::{JobDone, Jobs};

use crate::config::StallAction;
use crate::hub::Shared;

/// Tasks placed in one scheduling pass, at most.
const PASS_LIMIT: usize = 8192;
/// Items applied per wake before scheduling.
const DRAIN_LIMIT: usize = 4096;
/// The agent label every agent has (its id): a task's `agent.torch.id`
/// label routes it to one agent.
pub(crate) const PIN_LABEL: &str = "torch.id";

/// Something for an agent's session to send.
// `Message` is by far the common case: boxing it would add an allocation per message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outbound {
    /// A message; `ready` is when an assigned task became ready, so the
    /// session can record assignment latency once the frame is sent.
    Message {
        msg: HubMessage,
        ready: Option<std::time::Instant>,
    },
    /// Check that the connection is alive (a WebSocket ping): another
    /// session claims this agent's id, and a dead connection should notice
    /// it is dead now rather than at its next read.
    Probe,
}

impl From<HubMessage> for Outbound {
    fn from(msg: HubMessage) -> Self {
        Outbound::Message { msg, ready: None }
    }
}

/// The `Cancel` message telling an agent to stop `task` (held under `fence`).
fn cancel(task: TaskId, fence: u64, reason: impl Into<String>) -> HubMessage {
    HubMessage::Cancel {
        task_id: task,
        fence,
        reason: reason.into(),
    }
}

/// Why an agent is told to stop a task it says it holds.
const NOT_YOURS: &str = "lease is no longer yours (expired or reassigned)";

/// What the engine remembers of a task between queueing and its end, to
/// teach the router when an attempt ends.
struct TaskInfo {
    skills: Vec<SkillReq>,
    /// Its priority (for the metrics' priority bands).
    priority: i32,
    /// The templates that could serve it (bit i: matcher i), for capacity.
    templates: u64,
    context: Option<TaskContext>,
}

/// A queued task as the scheduler needs it, rebuilt from its stored record
/// (its analysis, not-before time and the agents that failed it).
pub(crate) fn queued_of(rec: &torch_store::TaskRecord) -> QueuedTask {
    let mut q =
        QueuedTask::from_spec(rec.id, rec.seq, &rec.spec).with_not_before(rec.not_before_ms);
    if let Some(a) = rec
        .analysis
        .as_deref()
        .and_then(|a| serde_json::from_str::<TaskAnalysis>(a).ok())
    {
        q = q.with_analysis(&a);
    }
    q.avoid = rec.failed_agents.clone();
    q
}

/// The receiving ends an engine reads.
pub(crate) struct Inbox {
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) queries: mpsc::Receiver<Query>,
}

/// The scheduling engine; see the module docs.
pub(crate) struct Engine<S> {
    shared: Arc<Shared<S>>,
    inbox: Inbox,
    done: mpsc::Receiver<JobDone>,
    jobs: Jobs<S>,
    sched: Scheduler,
    leases: LeaseTable,
    agents: HashMap<AgentId, AgentEntry>,
    /// When each queued task became ready (monotonic), for latency stats.
    ready_at: HashMap<TaskId, std::time::Instant>,
    /// Routing facts of queued and leased tasks.
    info: HashMap<TaskId, TaskInfo>,
    /// Templates whose demand the lifecycle manager follows.
    matchers: Vec<TemplateMatcher>,
    /// Arrivals per template (tasks that became ready it could serve).
    arrivals: HashMap<String, u64>,
    /// Per-pool load for capacity planning.
    capacity: capacity::Capacity,
    /// Tasks routed to one agent whatever their spec says (see
    /// [`Command::Pin`]).
    pins: HashMap<TaskId, AgentId>,
}

impl<S: Store> Engine<S> {
    /// An engine over `shared`'s store, starting from `snapshot`.
    pub(crate) fn new(shared: Arc<Shared<S>>, inbox: Inbox, snapshot: Snapshot) -> Self {
        let (jobs, done) = Jobs::new(shared.store.clone(), shared.shutdown.clone());
        let cfg = &shared.cfg;
        let rules = LeaseRules {
            lease_ms: cfg.lease.as_millis() as u64,
            stall_ms: cfg.stall_after.map(|d| d.as_millis() as u64),
            stall_requeue: cfg.stall_action == StallAction::Requeue,
        };
        let mut e = Engine {
            sched: Scheduler::with_config(cfg.routing.clone()),
            leases: LeaseTable::new(rules),
            shared,
            inbox,
            done,
            jobs,
            agents: HashMap::new(),
            ready_at: HashMap::new(),
            info: HashMap::new(),
            matchers: Vec::new(),
            arrivals: HashMap::new(),
            capacity: capacity::Capacity::default(),
            pins: HashMap::new(),
        };
        let now = e.now();
        e.activate(snapshot, now);
        e
    }

    fn now(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    fn lease_ms(&self) -> u64 {
        self.leases.rules().lease_ms
    }

    /// Runs until `shutdown` fires (or every handle is gone), then waits
    /// for the store jobs in flight.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let tick = Duration::from_millis((self.lease_ms() / 4).clamp(20, 1000));
        let mut reap_at = tokio::time::Instant::now() + tick;
        loop {
            let wake = match self.sched.next_wakeup() {
                Some(t) => {
                    let d = Duration::from_millis(t.saturating_sub(self.now()));
                    (tokio::time::Instant::now() + d).min(reap_at)
                }
                None => reap_at,
            };
            tokio::select! {
                cmd = self.inbox.commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.command(cmd);
                }
                q = self.inbox.queries.recv() => {
                    let Some(q) = q else { break };
                    self.query(q);
                }
                Some(done) = self.done.recv() => self.job_done(done),
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.cancelled() => break,
            }
            self.drain_waiting();
            let now = self.now();
            if tokio::time::Instant::now() >= reap_at {
                self.reap(now);
                reap_at = tokio::time::Instant::now() + tick;
            }
            self.schedule(now);
        }
        self.jobs.close().await;
        debug!("engine stopped");
    }

    /// Applies what else is waiting (so one pass schedules for all of it).
    fn drain_waiting(&mut self) {
        for _ in 0..DRAIN_LIMIT {
            let mut any = false;
            if let Ok(d) = self.done.try_recv() {
                self.job_done(d);
                any = true;
            }
            if let Ok(c) = self.inbox.commands.try_recv() {
                self.command(c);
                any = true;
            }
            if let Ok(q) = self.inbox.queries.try_recv() {
                self.query(q);
                any = true;
            }
            if !any {
                break;
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Ready(tasks) => self.enqueue(tasks, now),
            Command::Pin { task, agent } => self.pin(task, agent),
            Command::Cancelled {
                tasks,
                revoked,
                reason,
            } => self.cancelled(tasks, revoked, reason, now),
            Command::Join { agent, reply } => {
                let _ = reply.send(self.join(agent, now));
            }
            Command::Leave { agent, session } => self.leave(agent, session),
            Command::Heartbeat { agent, running } => self.heartbeat(agent, running, now),
            Command::Ended { agent, reports } => self.ended(agent, reports, now),
            Command::Recorded { agent, results } => self.recorded(agent, results, now),
            Command::Progress { task } => self.leases.activity(task, now),
            Command::SetTemplates(t) => self.set_templates(t),
            Command::Drain { agent, drain } => self.drain(agent, drain),
            Command::Activate(snapshot) => self.activate(snapshot, now),
            Command::Deactivate => self.deactivate(),
            Command::Reconcile(snapshot) => self.reconcile(snapshot, now),
            Command::Handoff { tasks, reply } => {
                let new = self.unknown(tasks);
                let n = new.len();
                self.shared.add_backlog(n as i64);
                self.enqueue(new, now);
                let _ = reply.send(n);
            }
        }
    }

    fn query(&mut self, q: Query) {
        match q {
            Query::Agents(reply) => {
                let _ = reply.send(self.agent_views(self.now()));
            }
            Query::Fleet(reply) => {
                let _ = reply.send(self.fleet());
            }
            Query::Peers(reply) => {
                let _ = reply.send(self.peer_views(self.now()));
            }
            Query::AgentSkills(reply) => {
                let _ = reply.send(self.connected_skills());
            }
            Query::Capacity { window_ms, reply } => {
                let _ = reply.send(self.capacity.window(window_ms, self.now()));
            }
            Query::Gauges {
                stuck_after_ms,
                reply,
            } => {
                let _ = reply.send(self.gauges(self.now(), stuck_after_ms));
            }
        }
    }

    fn job_done(&mut self, done: JobDone) {
        let now = self.now();
        match done {
            JobDone::Granted { grants, results } => self.granted(grants, results, now),
            JobDone::Expired {
                task,
                agent,
                result,
            } => self.expired(task, agent, result, now),
            JobDone::Requeue(tasks) => self.enqueue(tasks, now),
            JobDone::Adopt(leases) => self.adopt(leases, now),
        }
    }

    /// Takes over as leader: the store's queued tasks and leases replace
    /// whatever this engine held (every lease gets a fresh term).
    fn activate(&mut self, snapshot: Snapshot, now: u64) {
        self.sched = Scheduler::with_config(self.shared.cfg.routing.clone());
        self.leases.clear();
        self.ready_at.clear();
        self.info.clear();
        // Connected agents stay (their sessions are live); the new scheduler
        // learns them again.
        self.agents.retain(|_, a| a.tx.is_some());
        for l in snapshot.leased {
            self.leases.adopt(l.task, l.agent, l.fence, now);
        }
        let ids: Vec<AgentId> = self.agents.keys().copied().collect();
        for id in ids {
            self.schedule_agent(id);
        }
        self.enqueue(snapshot.queued, now);
    }

    /// Stops acting as leader: agents are told to reconnect, state dropped.
    fn deactivate(&mut self) {
        for (id, a) in &self.agents {
            if let Some(tx) = &a.tx {
                let _ = tx.try_send(
                    HubMessage::Error {
                        code: "no_leader".into(),
                        message: "this hub is no longer the leader; reconnect".into(),
                    }
                    .into(),
                );
                debug!(agent_id = %id, "sent an agent away: no longer the leader");
            }
        }
        self.agents.clear();
        self.sched = Scheduler::with_config(self.shared.cfg.routing.clone());
        self.leases = LeaseTable::new(self.leases.rules());
        self.ready_at.clear();
        self.info.clear();
    }

    /// Of `tasks` (queued in the store), those this engine neither
    /// schedules nor leases.
    fn unknown(&self, tasks: Vec<QueuedTask>) -> Vec<QueuedTask> {
        tasks
            .into_iter()
            .filter(|t| !self.sched.is_queued(t.id) && !self.leases.contains(t.id))
            .collect()
    }

    /// The periodic safety net on a shared store: queued tasks this engine
    /// does not schedule are enqueued, leases it does not track are adopted.
    /// (A stale entry is harmless: the store refuses a claim of a task that
    /// is no longer queued, and an expiry under an old fence.)
    fn reconcile(&mut self, snapshot: Snapshot, now: u64) {
        let missing = self.unknown(snapshot.queued);
        if !missing.is_empty() {
            tracing::warn!(
                count = missing.len(),
                "reconcile: tasks queued in the store were not scheduled; enqueueing them"
            );
            self.enqueue(missing, now);
        }
        let untracked: Vec<(TaskId, AgentId, u64)> = snapshot
            .leased
            .into_iter()
            .filter(|l| !self.leases.contains(l.task))
            .map(|l| (l.task, l.agent, l.fence))
            .collect();
        self.adopt(untracked, now);
    }

    /// Sets or drops `task`'s pin; a queued task is placed under it from
    /// the next pass.
    fn pin(&mut self, task: TaskId, agent: Option<AgentId>) {
        match agent {
            Some(a) => self.pins.insert(task, a),
            None => self.pins.remove(&task),
        };
        let queued = self.sched.queued(task).cloned();
        if let Some(mut q) = queued {
            Self::apply_pin(&self.pins, &mut q);
            self.sched.enqueue(q);
        }
    }

    /// Routes `t` to its pinned agent, if it has one.
    fn apply_pin(pins: &HashMap<TaskId, AgentId>, t: &mut QueuedTask) {
        if let Some(a) = pins.get(&t.id) {
            t.agent_labels.insert(PIN_LABEL.into(), a.to_string());
        }
    }

    fn enqueue(&mut self, tasks: Vec<QueuedTask>, now: u64) {
        let mono = std::time::Instant::now();
        self.shared.metrics.counters.enqueued(tasks.len() as u64);
        for mut t in tasks {
            if !self.pins.is_empty() {
                Self::apply_pin(&self.pins, &mut t);
            }
            let templates = if self.matchers.is_empty() {
                0
            } else {
                self.count_arrival(&t)
            };
            let skills = t.skills.iter().map(|s| s.name.as_str());
            self.capacity.arrived(skills, templates, now);
            let delay = Duration::from_millis(t.not_before.saturating_sub(now));
            self.ready_at.insert(t.id, mono + delay);
            self.info.insert(
                t.id,
                TaskInfo {
                    skills: t.skills.clone(),
                    priority: t.priority,
                    templates,
                    context: t.context.clone(),
                },
            );
            self.sched.enqueue(t);
        }
    }

    /// Teaches the router (performance, breaker) and the analysis history
    /// how an attempt of `task` on `agent` went.
    fn learn(&mut self, agent: AgentId, task: TaskId, success: bool, duration_ms: u64, now: u64) {
        if let Some(info) = self.info.get(&task) {
            let skills = info.skills.iter().map(|s| s.name.as_str());
            self.capacity
                .served(skills, info.templates, duration_ms, now);
            self.sched.record_outcome(
                agent,
                &info.skills,
                info.context.as_ref(),
                success,
                duration_ms,
                now,
            );
        }
        self.shared.analysis.record(task, success, duration_ms);
    }

    /// Drops what the engine kept for tasks that will not run again.
    fn forget(&mut self, tasks: &[TaskId]) {
        for t in tasks {
            self.info.remove(t);
            self.pins.remove(t);
        }
        self.shared.analysis.forget(tasks);
    }

    /// Applies the store's account of an ended attempt: a terminal task is
    /// forgotten, dependents cancelled or released, a retry enqueued.
    fn apply(&mut self, effect: Effect, now: u64) {
        if effect.state.is_terminal() {
            self.shared.add_backlog(-1);
            self.forget(&[effect.task]);
        }
        self.forget(&effect.cancelled);
        self.shared.add_backlog(-(effect.cancelled.len() as i64));
        let metrics = &self.shared.metrics;
        metrics.counters.cancelled(effect.cancelled.len() as u64);
        for t in &effect.cancelled {
            self.sched.remove_task(*t);
            self.ready_at.remove(t);
        }
        let mut ready = effect.released;
        if let Some(r) = effect.requeued {
            ready.push(r);
        }
        self.enqueue(ready, now);
    }

    /// Places ready tasks: each placement becomes a `Granting` lease and
    /// one assign job writes them all.
    fn schedule(&mut self, now: u64) {
        self.sync_slots();
        let placements = self.sched.schedule(now, PASS_LIMIT);
        if placements.is_empty() {
            return;
        }
        let grants = self.grant(placements, now);
        self.sync_slots();
        if !grants.is_empty() {
            self.jobs.assign(grants, now);
        }
    }

    /// Copies the lease table's slot counts into the scheduler (the table
    /// owns them; the scheduler only reads them to place tasks).
    fn sync_slots(&mut self) {
        for (agent, used) in self.leases.take_changed() {
            self.sched.set_used(agent, used);
        }
    }
}

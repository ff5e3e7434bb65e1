//! The engine: the one owner of the scheduler, agent capacity and leases.
//!
//! Handlers and sessions send [`Cmd`]s; the engine applies them, then places
//! ready tasks in one pass. Store writes it needs (assign, expire) run as
//! tracked jobs whose results come back as commands, so the loop never waits
//! on the disk. Leases live here in memory: heartbeats renew them without a
//! store write; after a hub restart every loaded lease gets a fresh term.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use torch_api::rest::AgentView;
use torch_api::ws::{Assignment, HeldTask, Hello, HubMessage};
use torch_core::routing::{TaskAnalysis, TaxonomyIndex};
use torch_core::scheduler::{AgentSlots, QueuedTask, Scheduler};
use torch_core::{AgentId, Skill, SkillReq, TaskContext, TaskId, TaskState};
use torch_store::{
    ClaimRefused, Effect, FinishResult, Grant, Leased, NewEvent, Snapshot, Store, StoreError,
    TASKS_ACTIVE,
};
use tracing::{debug, info, warn};

mod fleet;

pub(crate) use fleet::{FleetSnapshot, TemplateMatcher};

use crate::clock::now_ms;
use crate::config::StallAction;
use crate::hub::Shared;

/// A message for an agent's session; `ready` is when an assigned task became
/// ready, so the session can record assignment latency once the frame is sent.
pub(crate) struct Outbound {
    pub(crate) msg: HubMessage,
    pub(crate) ready: Option<std::time::Instant>,
}

impl From<HubMessage> for Outbound {
    fn from(msg: HubMessage) -> Self {
        Outbound { msg, ready: None }
    }
}

/// One finished report and what the store made of it.
pub(crate) struct RecordedReport {
    pub(crate) held: HeldTask,
    /// The agent said the attempt succeeded.
    pub(crate) succeeded: bool,
    /// The outcome says something about the agent (success, failure, timeout);
    /// fatal specs, cancels and agent shutdowns do not, so they teach nothing.
    pub(crate) telling: bool,
    /// Wall time of the attempt.
    pub(crate) duration_ms: u64,
    pub(crate) result: Result<FinishResult, String>,
}

/// What the engine remembers of a task between queueing and its end, to
/// teach the router when the attempt ends.
struct TaskInfo {
    skills: Vec<SkillReq>,
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

/// Requests to the engine.
pub(crate) enum Cmd {
    /// Tasks that became ready (submitted, released, requeued, retried).
    Ready(Vec<QueuedTask>),
    /// Tasks cancelled: drop from the queue; revoke leases (task, agent, fence).
    Cancelled {
        tasks: Vec<TaskId>,
        revoked: Vec<(TaskId, AgentId, u64)>,
        reason: String,
    },
    /// An agent session opened.
    Join {
        hello: Hello,
        tx: mpsc::Sender<Outbound>,
        session: u64,
        reply: oneshot::Sender<AgentId>,
    },
    /// An agent session closed.
    Leave { agent: AgentId, session: u64 },
    /// Heartbeat: renew the leases the agent still holds.
    Heartbeat {
        agent: AgentId,
        running: Vec<HeldTask>,
    },
    /// Finished reports arrived (slots are free; recording is under way).
    Ended { agent: AgentId, held: Vec<HeldTask> },
    /// Finished reports were recorded (or failed to be).
    Recorded {
        agent: AgentId,
        results: Vec<RecordedReport>,
    },
    /// A progress report arrived for a task (it is alive).
    Progress { task: TaskId },
    /// The skills of every connected agent (for task analysis).
    AgentSkills(oneshot::Sender<Vec<Vec<Skill>>>),
    /// Results of an assign job, with the (task, agent) pairs it was for.
    Granted {
        grants: Vec<(TaskId, AgentId)>,
        results: Result<Vec<Result<Leased, ClaimRefused>>, StoreError>,
    },
    /// Result of a lease expiry.
    Expired {
        task: TaskId,
        agent: AgentId,
        result: Result<FinishResult, StoreError>,
    },
    /// List agents.
    Agents(oneshot::Sender<Vec<AgentView>>),
    /// Per-template demand and per-agent load, for the lifecycle manager.
    Fleet(oneshot::Sender<FleetSnapshot>),
    /// The templates whose demand `Fleet` reports.
    SetTemplates(Vec<TemplateMatcher>),
    /// Stop (or resume) giving an agent new work.
    Drain { agent: AgentId, drain: bool },
    /// This hub became the leader: replace all state with the store's.
    Activate(Snapshot),
    /// Leases found in the store that the engine does not track (an assign
    /// that reported an error but was written): (task, agent, fence).
    Adopt(Vec<(TaskId, AgentId, u64)>),
    /// The store's queued tasks and leases, to compare with memory (leader
    /// on a shared store, periodically).
    Reconcile(Snapshot),
    /// Queued tasks another hub handed off (it wrote them while it could
    /// not reach this leader): those not known yet are enqueued; the reply
    /// says how many.
    Handoff {
        tasks: Vec<QueuedTask>,
        reply: oneshot::Sender<usize>,
    },
    /// This hub is no longer the leader: drop all state and send the agents
    /// away (they reconnect and are redirected to the new leader).
    Deactivate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The store is writing the lease; fence unknown yet.
    Granting,
    /// The agent holds it.
    Held,
    /// The agent reported the end; the store is recording it.
    Finishing,
    /// Cancelled; waiting for the agent to confirm the kill.
    Cancelled,
    /// Lease ran out; the store is requeueing it.
    Expiring,
}

struct Lease {
    agent: AgentId,
    fence: u64,
    expires_ms: u64,
    phase: Phase,
    /// Last sign the task itself is alive (grant or progress report).
    active_ms: u64,
    /// A stall was already reported for this lease.
    stalled: bool,
}

impl Lease {
    /// A lease the agent holds (fence known) until `expires_ms`.
    fn held(agent: AgentId, fence: u64, expires_ms: u64, now: u64) -> Lease {
        Lease {
            agent,
            fence,
            expires_ms,
            phase: Phase::Held,
            active_ms: now,
            stalled: false,
        }
    }
}

struct AgentEntry {
    name: String,
    skills: Vec<Skill>,
    slots: u32,
    labels: BTreeMap<String, String>,
    session: u64,
    tx: Option<mpsc::Sender<Outbound>>,
    connected_ms: u64,
    last_seen_ms: u64,
    completed: u64,
    /// A lease of this agent expired without heartbeats: it gets no new work
    /// until it is heard from again.
    silent: bool,
    /// The lifecycle manager is draining it (before stopping it).
    drain: bool,
    /// Wall time of the attempts it finished (for the autoscaler's service time).
    run_ms_total: u64,
}

/// The scheduling engine; see the module docs.
pub(crate) struct Engine<S> {
    shared: Arc<Shared<S>>,
    rx: mpsc::Receiver<Cmd>,
    tx: mpsc::Sender<Cmd>,
    sched: Scheduler,
    agents: HashMap<AgentId, AgentEntry>,
    leases: HashMap<TaskId, Lease>,
    /// When each queued task became ready (monotonic), for latency stats.
    ready_at: HashMap<TaskId, std::time::Instant>,
    /// Routing facts of queued and leased tasks.
    info: HashMap<TaskId, TaskInfo>,
    /// Normalises advertised skill names (synonyms).
    taxonomy: TaxonomyIndex,
    jobs: TaskTracker,
    /// Templates whose demand the lifecycle manager follows.
    matchers: Vec<TemplateMatcher>,
    /// Arrivals per template (tasks that became ready it could serve).
    arrivals: HashMap<String, u64>,
}

impl<S: Store> Engine<S> {
    pub(crate) fn new(
        shared: Arc<Shared<S>>,
        rx: mpsc::Receiver<Cmd>,
        tx: mpsc::Sender<Cmd>,
        snapshot: Snapshot,
        now: u64,
    ) -> Self {
        let mut e = Engine {
            shared: shared.clone(),
            rx,
            tx,
            sched: Scheduler::with_config(shared.cfg.routing.clone()),
            agents: HashMap::new(),
            leases: HashMap::new(),
            ready_at: HashMap::new(),
            info: HashMap::new(),
            taxonomy: shared.cfg.routing.taxonomy.compile(),
            jobs: TaskTracker::new(),
            matchers: Vec::new(),
            arrivals: HashMap::new(),
        };
        e.activate(snapshot, now);
        e
    }

    /// Takes over as leader: the store's queued tasks and leases replace
    /// whatever this engine held (every lease gets a fresh term).
    fn activate(&mut self, snapshot: Snapshot, now: u64) {
        self.sched = Scheduler::with_config(self.shared.cfg.routing.clone());
        self.leases.clear();
        self.ready_at.clear();
        self.info.clear();
        // Agents re-register with this hub and re-attach their tasks.
        self.agents.retain(|_, a| a.tx.is_some());
        let term = now + self.lease_ms();
        for l in snapshot.leased {
            self.leases
                .insert(l.task, Lease::held(l.agent, l.fence, term, now));
        }
        self.enqueue(snapshot.queued, now);
    }

    /// Tracks leases the store holds that this engine does not: each expires
    /// (and its task is retried) unless its agent holds it.
    fn adopt(&mut self, leases: Vec<(TaskId, AgentId, u64)>, now: u64) {
        let term = now + self.lease_ms();
        for (task, agent, fence) in leases {
            if self.leases.contains_key(&task) {
                continue;
            }
            warn!(task_id = %task, agent_id = %agent, fence, "adopting a lease the store holds but this hub did not track");
            self.sched.take_slot(agent);
            self.leases
                .insert(task, Lease::held(agent, fence, term, now));
        }
    }

    /// Of `tasks` (queued in the store), those this engine neither
    /// schedules nor leases.
    fn unknown(&self, tasks: Vec<QueuedTask>) -> Vec<QueuedTask> {
        tasks
            .into_iter()
            .filter(|t| !self.sched.is_queued(t.id) && !self.leases.contains_key(&t.id))
            .collect()
    }

    /// The periodic safety net on a shared store: queued tasks this engine
    /// does not schedule are enqueued, leases it does not track are adopted.
    /// (A stale entry is harmless: the store refuses a claim of a task that
    /// is no longer queued, and an expiry under an old fence.)
    fn reconcile(&mut self, snapshot: Snapshot, now: u64) {
        let missing = self.unknown(snapshot.queued);
        if !missing.is_empty() {
            warn!(
                count = missing.len(),
                "reconcile: tasks queued in the store were not scheduled; enqueueing them"
            );
            self.enqueue(missing, now);
        }
        let untracked: Vec<(TaskId, AgentId, u64)> = snapshot
            .leased
            .into_iter()
            .filter(|l| !self.leases.contains_key(&l.task))
            .map(|l| (l.task, l.agent, l.fence))
            .collect();
        self.adopt(untracked, now);
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
        self.leases.clear();
        self.ready_at.clear();
        self.info.clear();
    }

    fn lease_ms(&self) -> u64 {
        self.shared.cfg.lease.as_millis() as u64
    }

    fn enqueue(&mut self, tasks: Vec<QueuedTask>, now: u64) {
        let mono = std::time::Instant::now();
        for t in tasks {
            if !self.matchers.is_empty() {
                self.count_arrival(&t);
            }
            let delay = Duration::from_millis(t.not_before.saturating_sub(now));
            self.ready_at.insert(t.id, mono + delay);
            self.info.insert(
                t.id,
                TaskInfo {
                    skills: t.skills.clone(),
                    context: t.context.clone(),
                },
            );
            self.sched.enqueue(t);
        }
    }

    /// Runs until `shutdown` fires.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let tick = Duration::from_millis((self.lease_ms() / 4).clamp(20, 1000));
        let mut reap_at = tokio::time::Instant::now() + tick;
        loop {
            let wake = match self.sched.next_wakeup() {
                Some(t) => {
                    let now = now_ms();
                    let d = Duration::from_millis(t.saturating_sub(now));
                    (tokio::time::Instant::now() + d).min(reap_at)
                }
                None => reap_at,
            };
            tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd);
                    // Drain what else is waiting, then schedule once.
                    for _ in 0..4096 {
                        match self.rx.try_recv() {
                            Ok(c) => self.handle(c),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.cancelled() => break,
            }
            let now = now_ms();
            if tokio::time::Instant::now() >= reap_at {
                self.reap(now);
                reap_at = tokio::time::Instant::now() + tick;
            }
            self.schedule(now);
        }
        self.jobs.close();
        self.jobs.wait().await;
        debug!("engine stopped");
    }

    fn handle(&mut self, cmd: Cmd) {
        let now = now_ms();
        match cmd {
            Cmd::Ready(tasks) => self.enqueue(tasks, now),
            Cmd::Handoff { tasks, reply } => {
                let new = self.unknown(tasks);
                let n = new.len();
                self.shared.add_backlog(n as i64);
                self.enqueue(new, now);
                let _ = reply.send(n);
            }
            Cmd::Cancelled {
                tasks,
                revoked,
                reason,
            } => {
                for t in &tasks {
                    self.sched.remove_task(*t);
                    self.ready_at.remove(t);
                }
                self.forget(&tasks);
                for (task, agent, fence) in revoked {
                    if let Some(l) = self.leases.get_mut(&task) {
                        l.phase = Phase::Cancelled;
                        l.expires_ms = now + self.shared.cfg.lease.as_millis() as u64;
                    }
                    self.send(
                        agent,
                        HubMessage::Cancel {
                            task_id: task,
                            fence,
                            reason: reason.clone(),
                        },
                    );
                }
            }
            Cmd::Join {
                hello,
                tx,
                session,
                reply,
            } => {
                let id = self.join(hello, tx, session, now);
                let _ = reply.send(id);
            }
            Cmd::Leave { agent, session } => {
                if let Some(a) = self.agents.get_mut(&agent)
                    && a.session == session
                {
                    a.tx = None;
                    self.sched.remove_agent(agent);
                    self.shared
                        .notify_life(crate::lifecycle::LifeCmd::AgentLeft { agent });
                    info!(agent_id = %agent, "agent disconnected; its leases run until they expire");
                }
            }
            Cmd::Heartbeat { agent, running } => self.heartbeat(agent, running, now),
            Cmd::Ended { agent, held } => {
                for h in held {
                    if let Some(l) = self.leases.get_mut(&h.task_id)
                        && l.agent == agent
                        && (l.fence == h.fence || l.fence == 0)
                    {
                        match l.phase {
                            Phase::Held | Phase::Granting => {
                                l.phase = Phase::Finishing;
                                self.sched.release_slot(agent);
                            }
                            Phase::Cancelled => {
                                self.leases.remove(&h.task_id);
                                self.sched.release_slot(agent);
                            }
                            Phase::Finishing | Phase::Expiring => {}
                        }
                    }
                }
                self.heard_from(agent, now);
            }
            Cmd::Recorded { agent, results } => {
                for rep in results {
                    let h = rep.held;
                    match rep.result {
                        Ok(res) => {
                            if let Some(l) = self.leases.get(&h.task_id)
                                && l.agent == agent
                                && l.fence == h.fence
                                && l.phase == Phase::Finishing
                            {
                                self.leases.remove(&h.task_id);
                            }
                            if let FinishResult::Recorded(effect) = res {
                                if let Some(a) = self.agents.get_mut(&agent) {
                                    a.completed += 1;
                                    a.run_ms_total += rep.duration_ms;
                                }
                                if rep.telling {
                                    self.learn(
                                        agent,
                                        h.task_id,
                                        rep.succeeded,
                                        rep.duration_ms,
                                        now,
                                    );
                                }
                                self.apply(effect, now);
                            }
                        }
                        Err(e) => {
                            warn!(task_id = %h.task_id, error = %e, "could not record a finished report; the lease stays until the agent resends or it expires");
                            if let Some(l) = self.leases.get_mut(&h.task_id)
                                && l.phase == Phase::Finishing
                            {
                                l.phase = Phase::Held;
                                l.expires_ms = now + self.shared.cfg.lease.as_millis() as u64;
                                self.sched.take_slot(agent);
                            }
                        }
                    }
                }
            }
            Cmd::Granted { grants, results } => self.granted(grants, results, now),
            Cmd::Expired {
                task,
                agent,
                result,
            } => match result {
                Ok(res) => {
                    if let Some(l) = self.leases.get(&task)
                        && l.phase == Phase::Expiring
                    {
                        self.leases.remove(&task);
                        self.sched.release_slot(agent);
                    }
                    if let FinishResult::Recorded(effect) = res {
                        let lease = self.lease_ms();
                        self.learn(agent, task, false, lease, now);
                        self.shared
                            .stats
                            .expired
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.apply(effect, now);
                    }
                }
                Err(e) => {
                    warn!(task_id = %task, error = %e, "lease expiry could not be recorded; will retry");
                    if let Some(l) = self.leases.get_mut(&task) {
                        l.phase = Phase::Held;
                        l.expires_ms = now;
                    }
                }
            },
            Cmd::Agents(reply) => {
                let _ = reply.send(self.agent_views(now));
            }
            Cmd::Fleet(reply) => {
                let _ = reply.send(self.fleet());
            }
            Cmd::SetTemplates(t) => self.set_templates(t),
            Cmd::Drain { agent, drain } => self.drain(agent, drain),
            Cmd::Activate(snapshot) => self.activate(snapshot, now),
            Cmd::Deactivate => self.deactivate(),
            Cmd::Adopt(leases) => self.adopt(leases, now),
            Cmd::Reconcile(snapshot) => self.reconcile(snapshot, now),
            Cmd::AgentSkills(reply) => {
                let skills = self
                    .agents
                    .values()
                    .filter(|a| a.tx.is_some())
                    .map(|a| a.skills.clone())
                    .collect();
                let _ = reply.send(skills);
            }
            Cmd::Progress { task } => {
                if let Some(l) = self.leases.get_mut(&task) {
                    l.active_ms = now;
                    l.stalled = false;
                }
            }
        }
    }

    /// Teaches the router (performance, breaker) and the analysis history
    /// how an attempt of `task` on `agent` went.
    fn learn(&mut self, agent: AgentId, task: TaskId, success: bool, duration_ms: u64, now: u64) {
        if let Some(info) = self.info.get(&task) {
            self.sched.record_outcome(
                agent,
                &info.skills,
                info.context.as_ref(),
                success,
                duration_ms,
                now,
            );
        }
        let key = match self.shared.history_keys.lock() {
            Ok(keys) => keys.get(&task).cloned(),
            Err(_) => None,
        };
        if let Some(key) = key
            && let Ok(mut h) = self.shared.history.lock()
        {
            h.record(&key, success, duration_ms);
        }
    }

    /// Drops what the engine kept for tasks that will not run again.
    fn forget(&mut self, tasks: &[TaskId]) {
        for t in tasks {
            self.info.remove(t);
        }
        if let Ok(mut keys) = self.shared.history_keys.lock() {
            for t in tasks {
                keys.remove(t);
            }
        }
    }

    fn apply(&mut self, effect: Effect, now: u64) {
        if effect.state.is_terminal() {
            self.shared.add_backlog(-1);
            self.forget(&[effect.task]);
        }
        self.forget(&effect.cancelled);
        self.shared.add_backlog(-(effect.cancelled.len() as i64));
        for t in &effect.cancelled {
            self.sched.remove_task(*t);
            self.ready_at.remove(t);
            self.info.remove(t);
        }
        let mut ready = effect.released;
        if let Some(r) = effect.requeued {
            ready.push(r);
        }
        self.enqueue(ready, now);
    }

    fn join(
        &mut self,
        hello: Hello,
        tx: mpsc::Sender<Outbound>,
        session: u64,
        now: u64,
    ) -> AgentId {
        let id = hello
            .agent_id
            .unwrap_or_else(|| AgentId::from_uuid(uuid::Uuid::now_v7()));
        let lease = self.lease_ms();
        // Re-attach what the agent still runs; tell it to drop what is no longer its.
        for h in &hello.running {
            match self.leases.get_mut(&h.task_id) {
                Some(l) if l.agent == id && l.fence == h.fence => {
                    if l.phase == Phase::Held {
                        l.expires_ms = now + lease;
                    }
                }
                _ => {
                    let _ = tx.try_send(
                        HubMessage::Cancel {
                            task_id: h.task_id,
                            fence: h.fence,
                            reason: "lease is no longer yours (expired or reassigned)".into(),
                        }
                        .into(),
                    );
                }
            }
        }
        let used = self
            .leases
            .values()
            .filter(|l| {
                l.agent == id
                    && matches!(
                        l.phase,
                        Phase::Held | Phase::Granting | Phase::Cancelled | Phase::Expiring
                    )
            })
            .count() as u32;
        let entry = self.agents.entry(id).or_insert_with(|| AgentEntry {
            name: String::new(),
            skills: Vec::new(),
            slots: 0,
            labels: BTreeMap::new(),
            session,
            tx: None,
            connected_ms: now,
            last_seen_ms: now,
            completed: 0,
            silent: false,
            drain: false,
            run_ms_total: 0,
        });
        entry.name = hello.name;
        entry.skills = hello.skills.clone();
        entry.slots = hello.slots;
        entry.labels = hello.labels.clone();
        entry.session = session;
        entry.tx = Some(tx);
        entry.connected_ms = now;
        entry.last_seen_ms = now;
        entry.silent = false;
        let skills = self.taxonomy.normalize_skills(&hello.skills);
        let mut slots = AgentSlots::new(id, skills, hello.slots);
        slots.used = used;
        slots.labels = hello.labels;
        slots.cost = hello
            .cost
            .filter(|c| c.is_finite() && *c >= 0.0)
            .unwrap_or(0.0);
        self.sched.upsert_agent(slots);
        if entry_drain(&self.agents, id) {
            self.sched.set_draining(id, true);
        }
        self.shared
            .notify_life(crate::lifecycle::LifeCmd::AgentJoined { agent: id });
        id
    }

    fn heartbeat(&mut self, agent: AgentId, running: Vec<HeldTask>, now: u64) {
        let lease = self.lease_ms();
        self.heard_from(agent, now);
        for h in running {
            match self.leases.get_mut(&h.task_id) {
                Some(l) if l.agent == agent && l.fence == h.fence => {
                    if l.phase == Phase::Held {
                        l.expires_ms = now + lease;
                    }
                }
                Some(l) if l.agent == agent && l.phase == Phase::Granting => {}
                _ => self.send(
                    agent,
                    HubMessage::Cancel {
                        task_id: h.task_id,
                        fence: h.fence,
                        reason: "lease is no longer yours (expired or reassigned)".into(),
                    },
                ),
            }
        }
    }

    /// Notes a sign of life; an agent held back as silent gets work again.
    fn heard_from(&mut self, agent: AgentId, now: u64) {
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

    fn send(&self, agent: AgentId, msg: impl Into<Outbound>) {
        if let Some(tx) = self.agents.get(&agent).and_then(|a| a.tx.as_ref())
            && tx.try_send(msg.into()).is_err()
        {
            warn!(agent_id = %agent, "agent outbox full or closed; message dropped (lease expiry covers it)");
        }
    }

    fn schedule(&mut self, now: u64) {
        let placements = self.sched.schedule(now, 8192);
        if placements.is_empty() {
            return;
        }
        let expires_ms = now + self.lease_ms();
        let grants: Vec<Grant> = placements
            .iter()
            .map(|p| Grant {
                task: p.task,
                agent: p.agent,
                expires_ms,
                explanation: serde_json::to_string(&p.explanation).ok(),
            })
            .collect();
        for g in &grants {
            self.leases.insert(
                g.task,
                Lease {
                    agent: g.agent,
                    fence: 0,
                    expires_ms,
                    phase: Phase::Granting,
                    active_ms: now,
                    stalled: false,
                },
            );
        }
        let store = self.shared.store.clone();
        let tx = self.tx.clone();
        let pairs: Vec<(TaskId, AgentId)> = grants.iter().map(|g| (g.task, g.agent)).collect();
        self.jobs.spawn(async move {
            let results = store.assign(grants, now).await;
            let _ = tx
                .send(Cmd::Granted {
                    grants: pairs,
                    results,
                })
                .await;
        });
    }

    fn granted(
        &mut self,
        grants: Vec<(TaskId, AgentId)>,
        results: Result<Vec<Result<Leased, ClaimRefused>>, StoreError>,
        now: u64,
    ) {
        self.shared.bump();
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, count = grants.len(), "assign failed; tasks go back to the queue");
                // Nothing was written: the tasks are still queued in the store.
                let mut back = Vec::new();
                for (task, agent) in grants {
                    if self.leases.remove(&task).is_some() {
                        self.sched.release_slot(agent);
                    }
                    back.push(task);
                }
                self.requeue_from_store(back);
                return;
            }
        };
        let mut by_agent: HashMap<AgentId, Vec<Outbound>> = HashMap::new();
        for r in results {
            match r {
                Ok(leased) => {
                    let Some(l) = self.leases.get_mut(&leased.task) else {
                        continue;
                    };
                    l.fence = leased.fence;
                    if l.phase == Phase::Cancelled {
                        // Cancelled while the grant was being written: the agent
                        // never hears of it, so its slot is free again.
                        let agent = l.agent;
                        self.leases.remove(&leased.task);
                        self.sched.release_slot(agent);
                        self.ready_at.remove(&leased.task);
                        continue;
                    }
                    if l.phase == Phase::Granting {
                        l.phase = Phase::Held;
                    }
                    let ready = self.ready_at.remove(&leased.task);
                    let token = self.shared.task_tokens.mint(leased.task, leased.fence);
                    let spec = leased.spec;
                    let msg = HubMessage::Assign(Assignment {
                        task_id: leased.task,
                        fence: leased.fence,
                        attempt: leased.attempt,
                        name: leased.name,
                        success: spec.success(),
                        timeout_ms: spec.timeout.map(|d| d.as_millis() as u64),
                        command: spec.command,
                        prompt: spec.prompt,
                        env: spec.env,
                        task_token: token,
                    });
                    by_agent
                        .entry(leased.agent)
                        .or_default()
                        .push(Outbound { msg, ready });
                }
                Err(refused) => {
                    debug!(task_id = %refused.task, state = ?refused.state, "grant refused");
                    if let Some(l) = self.leases.remove(&refused.task) {
                        self.sched.release_slot(l.agent);
                    }
                    self.ready_at.remove(&refused.task);
                    if refused.state == Some(TaskState::Queued) {
                        self.requeue_from_store(vec![refused.task]);
                    }
                }
            }
        }
        for (agent, msgs) in by_agent {
            for m in msgs {
                self.send(agent, m);
            }
        }
        let _ = now;
    }

    /// Reloads tasks that are queued in the store but not in memory.
    fn requeue_from_store(&self, tasks: Vec<TaskId>) {
        let store = self.shared.store.clone();
        let tx = self.tx.clone();
        let shutdown = self.shared.shutdown.clone();
        self.jobs.spawn(async move {
            let mut ready = Vec::new();
            let mut adopt = Vec::new();
            for t in tasks {
                // The store may be briefly unavailable (a Redis restart):
                // keep asking, or the task would stay queued in the store but
                // unknown to the scheduler.
                let mut found = store.get_task(t).await;
                while let Err(e) = &found {
                    warn!(task_id = %t, error = %e, "cannot re-read a task to requeue it; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    found = store.get_task(t).await;
                }
                if let Ok(Some(rec)) = &found
                    && matches!(rec.state, TaskState::Assigned | TaskState::Running)
                    && let Some(agent) = rec.agent
                {
                    // The write went through although we saw an error: the
                    // store holds a lease nobody here tracks. Adopt it so it
                    // expires (and the task is retried) unless the agent
                    // holds it.
                    adopt.push((rec.id, agent, rec.fence));
                    continue;
                }
                if let Ok(Some(rec)) = found
                    && rec.state == TaskState::Queued
                {
                    ready.push(queued_of(&rec));
                }
            }
            if !ready.is_empty() {
                let _ = tx.send(Cmd::Ready(ready)).await;
            }
            if !adopt.is_empty() {
                let _ = tx.send(Cmd::Adopt(adopt)).await;
            }
        });
    }

    fn reap(&mut self, now: u64) {
        let lease = self.lease_ms();
        let mut expired = Vec::new();
        let mut dropped = Vec::new();
        let mut stalls = Vec::new();
        let stall_ms = self.shared.cfg.stall_after.map(|d| d.as_millis() as u64);
        for (task, l) in self.leases.iter_mut() {
            if let Some(stall_ms) = stall_ms
                && l.phase == Phase::Held
                && !l.stalled
                && now.saturating_sub(l.active_ms) >= stall_ms
            {
                l.stalled = true;
                stalls.push((*task, l.agent, l.fence));
            }
            if l.expires_ms > now {
                continue;
            }
            match l.phase {
                Phase::Held => {
                    l.phase = Phase::Expiring;
                    expired.push((*task, l.agent, l.fence));
                }
                Phase::Cancelled => dropped.push((*task, l.agent)),
                Phase::Finishing if l.expires_ms + lease * 4 <= now => {
                    // The recording never came back: let the store decide.
                    l.phase = Phase::Expiring;
                    expired.push((*task, l.agent, l.fence));
                }
                _ => {}
            }
        }
        for (task, agent) in dropped {
            self.leases.remove(&task);
            self.sched.release_slot(agent);
        }
        for (task, agent, fence) in stalls {
            self.stalled(task, agent, fence, stall_ms.unwrap_or(0), now);
        }
        for (task, agent, fence) in expired {
            let mut name = String::new();
            if let Some(a) = self.agents.get_mut(&agent) {
                name = a.name.clone();
                if !a.silent {
                    a.silent = true;
                    self.sched.set_draining(agent, true);
                    warn!(agent_id = %agent, name = %a.name, "agent missed its heartbeats; no new tasks for it until it is heard from");
                }
            }
            warn!(task_id = %task, agent_id = %agent, fence, "lease expired; requeueing");
            let reason = format!(
                "lease expired: agent {name} ({agent}) sent no heartbeat for {} ms",
                lease
            );
            let store = self.shared.store.clone();
            let tx = self.tx.clone();
            self.jobs.spawn(expire_and_report(
                store, tx, task, agent, fence, reason, now,
            ));
        }
    }

    /// Reports a stalled task; with `stall-action = "requeue"` also ends its attempt.
    fn stalled(&mut self, task: TaskId, agent: AgentId, fence: u64, stall_ms: u64, now: u64) {
        let requeue = self.shared.cfg.stall_action == StallAction::Requeue;
        warn!(task_id = %task, agent_id = %agent, fence, requeue, "task stalled: no progress for {stall_ms} ms");
        let reason = format!("stalled: no progress report for {stall_ms} ms");
        if requeue && let Some(l) = self.leases.get_mut(&task) {
            l.phase = Phase::Expiring;
            self.send(
                agent,
                HubMessage::Cancel {
                    task_id: task,
                    fence,
                    reason: reason.clone(),
                },
            );
        }
        let store = self.shared.store.clone();
        let tx = self.tx.clone();
        self.jobs.spawn(async move {
            let ev = NewEvent {
                stream: TASKS_ACTIVE,
                kind: "task.stalled".into(),
                task: Some(task),
                agent: Some(agent),
                data: serde_json::json!({"fence": fence, "stall_ms": stall_ms, "requeue": requeue})
                    .to_string(),
            };
            if let Err(e) = store.append_event(ev, now).await {
                debug!(error = %e, "could not record a stall event");
            }
            if requeue {
                expire_and_report(store, tx, task, agent, fence, reason, now).await;
            }
        });
    }

    fn agent_views(&self, now: u64) -> Vec<AgentView> {
        let mut v: Vec<AgentView> = self
            .agents
            .iter()
            .map(|(id, a)| {
                let running = self
                    .leases
                    .values()
                    .filter(|l| l.agent == *id && l.phase != Phase::Finishing)
                    .count() as u32;
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
                    routing: self
                        .sched
                        .agent_state(*id, now)
                        .and_then(|v| serde_json::to_value(v).ok()),
                    managed: None,
                }
            })
            .collect();
        v.sort_by(|a, b| {
            (a.state == "disconnected", &a.name).cmp(&(b.state == "disconnected", &b.name))
        });
        v
    }
}

/// Sends the engine a request made by `make` and waits for the answer;
/// `None` when the engine is gone (the hub is stopping).
pub(crate) async fn ask<T>(
    engine: &mpsc::Sender<Cmd>,
    make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    engine.send(make(tx)).await.ok()?;
    rx.await.ok()
}

/// Whether the lifecycle manager drains `id`.
fn entry_drain(agents: &HashMap<AgentId, AgentEntry>, id: AgentId) -> bool {
    agents.get(&id).is_some_and(|a| a.drain)
}

/// Ends an attempt whose lease is gone (no heartbeat, or stalled) in the store
/// and hands the result back to the engine.
async fn expire_and_report<S: Store>(
    store: Arc<S>,
    tx: mpsc::Sender<Cmd>,
    task: TaskId,
    agent: AgentId,
    fence: u64,
    reason: String,
    now: u64,
) {
    let result = store.expire(task, fence, reason, now).await;
    let _ = tx
        .send(Cmd::Expired {
            task,
            agent,
            result,
        })
        .await;
}

//! The lifecycle manager: agent templates, nodes, spawning (with the spawn
//! policy), auto-scaling, recycling, and cleaning up helpers and delegated
//! tasks when their parent task ends.
//!
//! It is one actor task (like the engine) fed by [`LifeCmd`]s from node
//! sessions, the engine (agents joining and leaving) and API handlers, plus a
//! tick (`lifecycle.tick`, 1 s by default). Each tick it takes one
//! [`FleetSnapshot`](crate::engine::FleetSnapshot) from the engine and:
//! - fails spawns that did not register within `spawn-timeout`;
//! - stops drained agents once they hold no task (SIGTERM, then SIGKILL);
//! - recycles agents past their template's recycle rules;
//! - drains helpers and cancels delegated tasks whose parent task ended;
//! - runs each template's autoscaler and carries out its decision.
//!
//! Every spawn, refusal, drain and termination is an event on
//! `nova.torch.agents.spawning` / `nova.torch.agents.terminating`, and every
//! scaling decision that changes something (or whose reason changes) on
//! `nova.torch.agents.scaling`.

mod node_session;
mod registry;
mod spawn;
mod tick;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use torch_api::node::{HubToNode, NodeHello, NodeMessage};
use torch_api::rest::{ManagedView, NodeView, SpawnRequest, SpawnResponse};
use torch_core::events::payload::{AgentDraining, AgentExit, AgentReady, AgentSpawnFailed};
use torch_core::lifecycle::{AgentTemplate, Autoscaler, ScaleDecision, SpawnPolicy, SpawnRefusal};
use torch_core::{AgentId, EventData, TaskId};
use torch_store::{Store, StoreError};
use tracing::{debug, info, warn};

pub(crate) use node_session::run as node_session;
use registry::{Managed, NodeEntry, Phase};

use crate::engine::{Command, Query, TemplateMatcher};
use crate::hub::Shared;

/// Most scaling decisions kept for `GET /api/v1/agents/scaling`.
const DECISIONS_KEPT: usize = 500;

/// Who asks for a spawn.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    /// An operator (admin token): no parent.
    Operator,
    /// A task (task token): the helper's parent is the task's agent.
    Task {
        task: TaskId,
        agent: AgentId,
        tenant: String,
    },
    /// The team formed for `task`: the member is stopped when the task
    /// ends (like a helper of it).
    Team { task: TaskId, tenant: String },
}

/// Why a spawn did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    #[error("no template named {0:?}")]
    UnknownTemplate(String),
    #[error("{0}")]
    Refused(SpawnRefusal),
    #[error("no node can start an agent now: {0}")]
    NoNode(String),
    #[error("{0}")]
    InheritRefused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Requests to the lifecycle manager.
pub(crate) enum LifeCmd {
    /// An agent session was accepted.
    AgentJoined { agent: AgentId },
    /// An agent session closed.
    AgentLeft { agent: AgentId },
    /// A node session opened; the reply is its name or why it is refused.
    NodeJoined {
        hello: NodeHello,
        tx: mpsc::Sender<HubToNode>,
        session: u64,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// A node session closed.
    NodeLeft { node: String, session: u64 },
    /// A message from a node.
    NodeMsg { node: String, msg: NodeMessage },
    /// Start an agent from a template.
    Spawn {
        req: SpawnRequest,
        origin: Origin,
        reply: oneshot::Sender<Result<SpawnResponse, SpawnError>>,
    },
    /// Stop an agent: drain it, then (if a node runs it) terminate it.
    /// Answers whether a node runs it, or `None` for an unknown agent.
    Drain {
        agent: AgentId,
        reason: String,
        reply: oneshot::Sender<Option<bool>>,
    },
    /// A task delegated children: clean them up when it ends.
    Parent { task: TaskId },
    /// Recent scaling decisions, oldest first.
    Decisions(oneshot::Sender<Vec<ScaleDecision>>),
    /// Nodes.
    Nodes(oneshot::Sender<Vec<NodeView>>),
    /// What is known of managed agents.
    Managed(oneshot::Sender<HashMap<AgentId, ManagedView>>),
}

/// Requests waiting for the lifecycle manager, at most. Senders (node
/// sessions, handlers, the hand-off reader) wait while it is full.
const INBOX: usize = 4096;

/// The lifecycle manager's address. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LifeHandle {
    tx: mpsc::Sender<LifeCmd>,
}

impl LifeHandle {
    /// A handle and the receiving end the manager reads.
    pub(crate) fn channel() -> (LifeHandle, mpsc::Receiver<LifeCmd>) {
        let (tx, rx) = mpsc::channel(INBOX);
        (LifeHandle { tx }, rx)
    }

    /// Tells the manager something, waiting while its inbox is full; false
    /// when it is gone (the hub is stopping).
    pub(crate) async fn send(&self, cmd: LifeCmd) -> bool {
        self.tx.send(cmd).await.is_ok()
    }

    /// Asks the manager something and waits for the answer; `None` when it
    /// is gone.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> LifeCmd,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// The lifecycle actor; see the module docs.
pub(crate) struct Lifecycle<S> {
    shared: Arc<Shared<S>>,
    rx: mpsc::Receiver<LifeCmd>,
    templates: BTreeMap<String, AgentTemplate>,
    policy: SpawnPolicy,
    scalers: BTreeMap<String, Autoscaler>,
    nodes: BTreeMap<String, NodeEntry>,
    agents: HashMap<AgentId, Managed>,
    decisions: VecDeque<ScaleDecision>,
    /// Last recorded decision key (action and desired size) per template:
    /// holds are recorded only when that changes.
    last_reason: HashMap<String, String>,
    /// Arrival counters at the last autoscaler run, per template.
    last_arrivals: HashMap<String, u64>,
    /// When each template's autoscaler last ran (unix ms).
    last_scaled: HashMap<String, u64>,
    /// Tasks whose helpers or delegated children are cleaned up when they end.
    parents: HashSet<TaskId>,
}

impl<S: Store> Lifecycle<S> {
    pub(crate) fn new(shared: Arc<Shared<S>>, rx: mpsc::Receiver<LifeCmd>) -> Self {
        let cfg = &shared.cfg.lifecycle;
        let templates: BTreeMap<String, AgentTemplate> = cfg
            .templates
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        let scalers = templates
            .values()
            .map(|t| {
                (
                    t.name.clone(),
                    Autoscaler::new(
                        &t.name,
                        t.min,
                        t.max,
                        t.slots,
                        t.idle_timeout,
                        t.scaling.clone(),
                    ),
                )
            })
            .collect();
        Lifecycle {
            policy: SpawnPolicy::new(cfg.spawn.clone()),
            shared,
            rx,
            templates,
            scalers,
            nodes: BTreeMap::new(),
            agents: HashMap::new(),
            decisions: VecDeque::new(),
            last_reason: HashMap::new(),
            last_arrivals: HashMap::new(),
            last_scaled: HashMap::new(),
            parents: HashSet::new(),
        }
    }

    /// Runs until `shutdown` fires.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        if !self.templates.is_empty() {
            let matchers = self
                .templates
                .values()
                .map(|t| TemplateMatcher {
                    name: t.name.clone(),
                    skills: t.parsed_skills(),
                    labels: t.labels.clone(),
                })
                .collect();
            self.shared
                .engine
                .send(Command::SetTemplates(matchers))
                .await;
        }
        let period = self.shared.cfg.lifecycle.tick;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd).await;
                }
                _ = ticker.tick() => self.tick().await,
                _ = shutdown.cancelled() => break,
            }
        }
        debug!("lifecycle manager stopped");
    }

    async fn handle(&mut self, cmd: LifeCmd) {
        let now = self.shared.now_ms();
        match cmd {
            LifeCmd::AgentJoined { agent } => self.agent_joined(agent, now).await,
            LifeCmd::AgentLeft { agent } => {
                if let Some(m) = self.agents.get(&agent) {
                    debug!(agent_id = %agent, template = %m.template, "managed agent disconnected");
                }
            }
            LifeCmd::NodeJoined {
                hello,
                tx,
                session,
                reply,
            } => {
                let r = self.node_joined(hello, tx, session, now);
                let _ = reply.send(r);
            }
            LifeCmd::NodeLeft { node, session } => {
                if let Some(n) = self.nodes.get_mut(&node)
                    && n.session == session
                {
                    n.tx = None;
                    info!(node = %node, "node disconnected; its agents keep running");
                }
            }
            LifeCmd::NodeMsg { node, msg } => self.node_msg(&node, msg, now).await,
            LifeCmd::Spawn { req, origin, reply } => {
                let r = self.spawn_requested(req, origin, now).await;
                let _ = reply.send(r);
            }
            LifeCmd::Drain {
                agent,
                reason,
                reply,
            } => {
                let managed = self.agents.contains_key(&agent);
                let known = managed
                    || self
                        .shared
                        .engine
                        .ask(Query::Agents)
                        .await
                        .is_some_and(|v| v.iter().any(|a| a.id == agent));
                if managed {
                    self.drain(agent, &reason).await;
                } else if known {
                    // Not ours to stop: only take it out of scheduling.
                    self.shared
                        .engine
                        .send(Command::Drain { agent, drain: true })
                        .await;
                    let data = EventData::AgentDraining(AgentDraining {
                        managed: Some(false),
                        node: None,
                        reason: reason.clone(),
                        template: None,
                    });
                    self.shared.event(Some(agent), None, data).await;
                }
                let _ = reply.send(known.then_some(managed));
            }
            LifeCmd::Parent { task } => {
                self.parents.insert(task);
            }
            LifeCmd::Decisions(reply) => {
                let _ = reply.send(self.decisions.iter().cloned().collect());
            }
            LifeCmd::Nodes(reply) => {
                let _ = reply.send(self.node_views());
            }
            LifeCmd::Managed(reply) => {
                let _ = reply.send(self.managed_views());
            }
        }
    }

    async fn agent_joined(&mut self, agent: AgentId, now: u64) {
        let Some(m) = self.agents.get_mut(&agent) else {
            return;
        };
        if m.phase != Phase::Starting {
            return;
        }
        m.phase = Phase::Ready;
        let spawn_ms = now.saturating_sub(m.spawned_ms);
        m.ready_ms = Some(spawn_ms);
        m.idle_since_ms = Some(now);
        let data = EventData::AgentReady(AgentReady {
            node: m.node.clone(),
            reason: m.reason.clone(),
            spawn_ms,
            template: m.template.clone(),
        });
        info!(agent_id = %agent, template = %m.template, spawn_ms, "spawned agent is ready");
        self.shared.metrics.spawn_ready(&m.template, spawn_ms);
        let drain_now = m.draining_on_ready;
        self.shared.event(Some(agent), None, data).await;
        if drain_now {
            self.drain(agent, "parent task ended before the helper was ready")
                .await;
        }
    }

    fn node_joined(
        &mut self,
        hello: NodeHello,
        tx: mpsc::Sender<HubToNode>,
        session: u64,
        now: u64,
    ) -> Result<String, String> {
        let name = hello.name.clone();
        if let Some(n) = self.nodes.get(&name)
            && n.tx.as_ref().is_some_and(|t| !t.is_closed())
            && n.session != session
        {
            return Err(format!("a node named {name:?} is already connected"));
        }
        // Agents still running from before a reconnect.
        for a in &hello.status.agents {
            if let Some(m) = self.agents.get_mut(&a.agent_id) {
                m.pid = Some(a.pid);
                m.node = name.clone();
            }
        }
        let entry = self.nodes.entry(name.clone()).or_insert_with(|| NodeEntry {
            name: name.clone(),
            tx: None,
            session,
            max_agents: hello.max_agents,
            status: hello.status.clone(),
            last_seen_ms: now,
        });
        entry.tx = Some(tx);
        entry.session = session;
        entry.max_agents = hello.max_agents;
        entry.status = hello.status;
        entry.last_seen_ms = now;
        info!(node = %name, max_agents = hello.max_agents, "node connected");
        Ok(name)
    }

    async fn node_msg(&mut self, node: &str, msg: NodeMessage, now: u64) {
        match msg {
            NodeMessage::Hello(_) | NodeMessage::Unknown => {}
            NodeMessage::Heartbeat(status) => {
                for a in &status.agents {
                    if let Some(m) = self.agents.get_mut(&a.agent_id) {
                        m.pid = Some(a.pid);
                        m.cpu = Some(a.cpu);
                        m.rss_bytes = Some(a.rss_bytes);
                        if m.phase == Phase::Ready && m.rss_start.is_none() && a.rss_bytes > 0 {
                            m.rss_start = Some(a.rss_bytes);
                        }
                    }
                }
                if let Some(n) = self.nodes.get_mut(node) {
                    n.status = status;
                    n.last_seen_ms = now;
                }
            }
            NodeMessage::Spawned { agent_id, pid } => {
                if let Some(m) = self.agents.get_mut(&agent_id) {
                    m.pid = Some(pid);
                }
            }
            NodeMessage::SpawnFailed { agent_id, error } => {
                warn!(agent_id = %agent_id, node, error = %error, "node could not start an agent");
                if let Some(m) = self.agents.remove(&agent_id) {
                    let data = EventData::AgentSpawnFailed(AgentSpawnFailed {
                        error,
                        node: node.to_string(),
                        template: m.template,
                    });
                    self.shared.event(Some(agent_id), None, data).await;
                }
            }
            NodeMessage::Exited {
                agent_id,
                pid,
                code,
                signal,
                requested,
            } => {
                let Some(m) = self.agents.remove(&agent_id) else {
                    return;
                };
                let reason = if requested {
                    m.stop_reason.clone().unwrap_or_else(|| "terminated".into())
                } else {
                    match (code, signal) {
                        (_, Some(sig)) => format!("agent process killed by signal {sig}"),
                        (Some(c), None) => format!("agent process exited with code {c}"),
                        (None, None) => "agent process ended".into(),
                    }
                };
                let kind = if requested {
                    EventData::AgentTerminated
                } else {
                    EventData::AgentExited
                };
                if requested {
                    info!(agent_id = %agent_id, template = %m.template, reason = %reason, "agent stopped");
                } else {
                    self.shared.metrics.agent_exited(&m.template);
                    warn!(agent_id = %agent_id, template = %m.template, reason = %reason, "agent process ended unexpectedly; the autoscaler replaces it if needed");
                }
                let data = kind(AgentExit {
                    code,
                    node: node.to_string(),
                    pid,
                    reason,
                    requested,
                    signal,
                    template: m.template,
                });
                self.shared.event(Some(agent_id), None, data).await;
            }
        }
    }

    /// Drains `agent`: no new work; stopped once it holds no task.
    async fn drain(&mut self, agent: AgentId, reason: &str) {
        let Some(m) = self.agents.get_mut(&agent) else {
            return;
        };
        if matches!(m.phase, Phase::Draining | Phase::Terminating { .. }) {
            return;
        }
        if m.phase == Phase::Starting {
            // Not registered yet: drain it as soon as it is.
            m.draining_on_ready = true;
            m.stop_reason = Some(reason.to_string());
            return;
        }
        m.phase = Phase::Draining;
        m.stop_reason = Some(reason.to_string());
        let data = EventData::AgentDraining(AgentDraining {
            managed: None,
            node: Some(m.node.clone()),
            reason: reason.to_string(),
            template: Some(m.template.clone()),
        });
        self.shared
            .engine
            .send(Command::Drain { agent, drain: true })
            .await;
        info!(agent_id = %agent, reason, "draining agent");
        self.shared.event(Some(agent), None, data).await;
    }

    fn record_decision(
        &mut self,
        template: &str,
        decision: ScaleDecision,
        reason: &str,
        change: bool,
    ) -> bool {
        let same = self.last_reason.get(template).is_some_and(|r| r == reason);
        if !change && same {
            return false;
        }
        self.last_reason
            .insert(template.to_string(), reason.to_string());
        if self.decisions.len() >= DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        self.decisions.push_back(decision);
        true
    }
}

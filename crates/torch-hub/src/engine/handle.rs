//! How the rest of the hub talks to the engine: a typed handle over two
//! bounded channels, one for commands (they change the engine's state) and
//! one for queries (they read it and answer on a oneshot).
//!
//! Back-pressure: both channels are bounded. A full command channel makes
//! the sender wait (an agent session then stops reading its socket, which
//! slows the agent down through TCP); a full query channel makes the HTTP
//! handler wait. The engine itself never waits on a channel it reads: the
//! results of its store jobs come back on a third bounded channel that only
//! the jobs send on.

use tokio::sync::{mpsc, oneshot};
use torch_api::rest::AgentView;
use torch_api::ws::{HeldTask, Hello};
use torch_core::scheduler::QueuedTask;
use torch_core::{AgentId, Skill, TaskId};
use torch_store::{FinishResult, Snapshot};

use super::fleet::{FleetSnapshot, TemplateMatcher};
use super::gauges::EngineGauges;
use super::{JoinRefused, Outbound};

/// Commands waiting for the engine, at most.
pub(crate) const COMMANDS: usize = 8192;
/// Queries waiting for the engine, at most.
pub(crate) const QUERIES: usize = 256;

/// One end-of-attempt report as an agent sent it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EndReport {
    /// The task and fence.
    pub(crate) held: HeldTask,
    /// The agent said the attempt succeeded.
    pub(crate) succeeded: bool,
    /// The outcome says something about the agent (success, failure,
    /// timeout); fatal specs, cancels and agent shutdowns do not, so they
    /// teach the router nothing.
    pub(crate) telling: bool,
    /// Wall time of the attempt.
    pub(crate) duration_ms: u64,
}

/// One end report and what the store made of it.
pub(crate) struct RecordedReport {
    /// The task and fence.
    pub(crate) held: HeldTask,
    /// The store's verdict, or why it could not record the report.
    pub(crate) result: Result<FinishResult, String>,
    /// Wall time of the attempt.
    pub(crate) duration_ms: u64,
}

/// Who an agent session is, as the session established it.
#[derive(Clone, Debug)]
pub(crate) struct Registration {
    /// The agent's Hello.
    pub(crate) hello: Hello,
    /// Its id (claimed in the Hello, or minted for a new agent), already
    /// bound to the token that opened the session.
    pub(crate) id: AgentId,
    /// Where its messages go.
    pub(crate) tx: mpsc::Sender<Outbound>,
    /// The session's number (a later session of the same agent replaces it).
    pub(crate) session: u64,
    /// Ends the session when a newer one replaces it.
    pub(crate) close: tokio_util::sync::CancellationToken,
}

/// Changes to the engine's state.
pub(crate) enum Command {
    /// Tasks that became ready (submitted, released, requeued, retried).
    Ready(Vec<QueuedTask>),
    /// Route `task` only to `agent` from now on, overriding its spec's
    /// `agent.torch.id` label (a team's task follows its leader), or drop
    /// the override (`None`). Held in memory: the team manager sends it
    /// again after a restart or a change of leader hub.
    Pin {
        task: TaskId,
        agent: Option<AgentId>,
    },
    /// Tasks cancelled in the store: drop them from the queue and revoke
    /// their leases (task, agent, fence).
    Cancelled {
        tasks: Vec<TaskId>,
        revoked: Vec<(TaskId, AgentId, u64)>,
        reason: String,
    },
    /// An agent session opened; the reply refuses it when its id is held
    /// by a live session.
    Join {
        agent: Registration,
        reply: oneshot::Sender<Result<(), JoinRefused>>,
    },
    /// An agent session closed.
    Leave { agent: AgentId, session: u64 },
    /// Heartbeat: renew the leases the agent still holds.
    Heartbeat {
        agent: AgentId,
        running: Vec<HeldTask>,
    },
    /// End reports arrived (their slots are free; recording is under way).
    Ended {
        agent: AgentId,
        reports: Vec<EndReport>,
    },
    /// End reports were recorded (or failed to be).
    Recorded {
        agent: AgentId,
        results: Vec<RecordedReport>,
    },
    /// A progress report arrived for a task (it is alive).
    Progress { task: TaskId },
    /// The templates whose demand the fleet query reports.
    SetTemplates(Vec<TemplateMatcher>),
    /// Stop (or resume) giving an agent new work.
    Drain { agent: AgentId, drain: bool },
    /// This hub became the leader: replace all state with the store's.
    Activate(Snapshot),
    /// This hub is no longer the leader: drop all state and send the agents
    /// away (they reconnect and are redirected to the new leader).
    Deactivate,
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
}

/// Reads of the engine's state.
pub(crate) enum Query {
    /// The agents it knows.
    Agents(oneshot::Sender<Vec<AgentView>>),
    /// Per-template demand and per-agent load, for the lifecycle manager.
    Fleet(oneshot::Sender<FleetSnapshot>),
    /// The skills of every connected agent (for task analysis).
    AgentSkills(oneshot::Sender<Vec<Vec<Skill>>>),
    /// The agents it knows, each with the tasks it holds leases on (peer cards).
    Peers(oneshot::Sender<Vec<(AgentView, Vec<torch_core::TaskId>)>>),
    /// Per-pool load over the last `window_ms`, for capacity planning.
    Capacity {
        window_ms: u64,
        reply: oneshot::Sender<Vec<super::PoolWindow>>,
    },
    /// Queue depth, agents and stuck leases, for the metrics; a lease
    /// counts as stuck without progress after `stuck_after_ms`.
    Gauges {
        stuck_after_ms: u64,
        reply: oneshot::Sender<EngineGauges>,
    },
}

/// The engine's address. Cheap to clone.
#[derive(Clone)]
pub(crate) struct EngineHandle {
    commands: mpsc::Sender<Command>,
    queries: mpsc::Sender<Query>,
}

impl EngineHandle {
    /// A handle and the receiving ends the engine reads.
    pub(crate) fn channel() -> (EngineHandle, mpsc::Receiver<Command>, mpsc::Receiver<Query>) {
        let (commands, crx) = mpsc::channel(COMMANDS);
        let (queries, qrx) = mpsc::channel(QUERIES);
        (EngineHandle { commands, queries }, crx, qrx)
    }

    /// Sends a command, waiting while the channel is full; false when the
    /// engine is gone (the hub is stopping).
    pub(crate) async fn send(&self, cmd: Command) -> bool {
        self.commands.send(cmd).await.is_ok()
    }

    /// Asks a query made by `make` and waits for the answer; `None` when the
    /// engine is gone.
    pub(crate) async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Query) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.queries.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Sends a command that answers on a oneshot, and waits for the answer.
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.ok()?;
        rx.await.ok()
    }
}

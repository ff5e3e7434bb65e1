//! What every part of the hub holds: handles to the services, the store,
//! the configuration, and a few shared counters. No service's state lives
//! here; each is reached through its handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use torch_core::{AgentId, EventData, TaskId};
use torch_store::{NewEvent, Store, StoreError};

use crate::analysis::Analyzer;
use crate::auth::Auth;
use crate::autonomy::Autonomy;
use crate::clock::Clock;
use crate::config::HubConfig;
use crate::coord::CoordHandle;
use crate::engine::{Command, EngineHandle};
use crate::leader::Cluster;
use crate::lifecycle::LifeHandle;
use crate::stats::Stats;

/// Handles shared by every handler, session and service (see the module docs).
pub(crate) struct Shared<S> {
    /// The durable store.
    pub(crate) store: Arc<S>,
    /// The hub's configuration (read-only).
    pub(crate) cfg: HubConfig,
    /// Where "now" comes from.
    pub(crate) clock: Clock,
    /// The engine: queue, scheduler, leases.
    pub(crate) engine: EngineHandle,
    /// The lifecycle manager: templates, nodes, autoscaling.
    pub(crate) life: LifeHandle,
    /// Coordination: locks and the wait-for graph.
    pub(crate) coord: CoordHandle,
    /// Task analysis and its history.
    pub(crate) analysis: Analyzer,
    /// API tokens (cached) and task-scoped tokens.
    pub(crate) auth: Auth,
    /// Wakes event followers after writes.
    pub(crate) events: EventBus,
    /// Counters and latency for `/stats` and benchmarks.
    pub(crate) stats: Stats,
    /// The autonomy metrics (`/stats` under `"autonomy"`).
    pub(crate) autonomy: Autonomy,
    /// The Prometheus recorder and the hot path's counters and histograms.
    pub(crate) metrics: crate::metrics::Metrics,
    /// The alert evaluator.
    pub(crate) alerts: crate::alerts::AlertsHandle,
    /// Leader or follower, this hub's id, and forwarding to the leader.
    pub(crate) cluster: Cluster,
    /// Group commit of agents' reports for a networked store.
    pub(crate) batcher: Option<crate::batch::Batcher>,
    /// Unfinished tasks (blocked, queued, leased), for load shedding: a
    /// gauge kept by whoever changes the count (submit, cancel, retry, the
    /// engine when tasks end, a follower's refresh from the store).
    pub(crate) backlog: AtomicI64,
    /// Numbers agent and node sessions.
    pub(crate) session_seq: AtomicU64,
    /// When the hub started (uptime).
    pub(crate) started: Instant,
    /// Direct messages: the directory of endpoints and keys, relaying.
    pub(crate) msg: crate::messaging::Messaging,
    /// Records audit entries (see `audit`).
    pub(crate) audit: crate::audit::Audit,
    /// Usage reported from inside running tasks, until their finish.
    pub(crate) usage: crate::usage::UsageBook,
    /// Teams, folded from the team events.
    pub(crate) teams: crate::teams::TeamBook,
    /// The teams' merge queue (git).
    pub(crate) merges: crate::merge::MergeQueue,
    /// Fires when the hub stops: sessions, long polls and services end.
    pub(crate) shutdown: CancellationToken,
}

/// Tells event followers (long polls) that the store has new events.
pub(crate) struct EventBus {
    generation: watch::Sender<u64>,
}

impl EventBus {
    /// A bus nobody follows yet.
    pub(crate) fn new() -> Self {
        EventBus {
            generation: watch::channel(0).0,
        }
    }

    /// Wakes followers after a write.
    pub(crate) fn bump(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Follows writes from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

impl<S> Shared<S> {
    /// Wakes event followers after a write.
    pub(crate) fn bump(&self) {
        self.events.bump();
    }

    /// Adjusts the unfinished-task count.
    pub(crate) fn add_backlog(&self, delta: i64) {
        self.backlog.fetch_add(delta, Ordering::Relaxed);
    }

    /// Unfinished tasks now (never negative).
    pub(crate) fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed).max(0) as u64
    }

    /// Whether this hub runs the engine now.
    pub(crate) fn is_leader(&self) -> bool {
        self.cluster.is_leader()
    }

    /// Milliseconds since the unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

impl<S: Store> Shared<S> {
    /// Cancels `task` and its dependents in the store and tells the engine
    /// (dequeue, revoke leases).
    pub(crate) async fn cancel_task(
        &self,
        task: TaskId,
        reason: String,
    ) -> Result<Vec<TaskId>, StoreError> {
        let res = self
            .store
            .cancel(task, reason.clone(), self.now_ms())
            .await?;
        self.bump();
        for t in &res.tasks {
            self.audit.hub(
                self.now_ms(),
                "task.cancelled",
                t.to_string(),
                String::new(),
            );
        }
        self.add_backlog(-(res.tasks.len() as i64));
        self.metrics.counters.cancelled(res.tasks.len() as u64);
        self.engine
            .send(Command::Cancelled {
                tasks: res.tasks.clone(),
                revoked: res.revoked,
                reason,
            })
            .await;
        Ok(res.tasks)
    }

    /// Appends events of one agent in one store write and wakes followers
    /// once; a failure is logged, not returned.
    pub(crate) async fn events(&self, agent: Option<AgentId>, data: Vec<EventData>) {
        let now = self.now_ms();
        let mut batch = Vec::with_capacity(data.len());
        for d in &data {
            self.autonomy.observe(agent, d, now);
            match NewEvent::of(d, None, agent) {
                Ok(ev) => batch.push(ev),
                Err(e) => {
                    tracing::warn!(error = %e, kind = %d.kind(), "could not encode an event")
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        match self.store.append_events(batch, now).await {
            Ok(()) => self.bump(),
            Err(e) => {
                self.metrics
                    .counters
                    .store_error(crate::metrics::StoreOp::Event);
                tracing::warn!(error = %e, events = n, "could not record events")
            }
        }
    }

    /// Appends an event (of `data`'s kind, on its stream) and wakes
    /// followers; a failure is logged, not returned.
    pub(crate) async fn event(
        &self,
        agent: Option<AgentId>,
        task: Option<TaskId>,
        data: EventData,
    ) {
        self.autonomy.observe(agent, &data, self.now_ms());
        let appended = match NewEvent::of(&data, task, agent) {
            Ok(ev) => self.store.append_event(ev, self.now_ms()).await,
            Err(e) => Err(e),
        };
        match appended {
            Ok(()) => self.bump(),
            Err(e) => {
                self.metrics
                    .counters
                    .store_error(crate::metrics::StoreOp::Event);
                tracing::warn!(error = %e, kind = %data.kind(), "could not record an event")
            }
        }
    }
}

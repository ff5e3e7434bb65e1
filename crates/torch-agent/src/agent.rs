//! The agent's state across sessions: which tasks run, which reports the hub
//! has not acknowledged yet, and how hub messages change that.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use torch_api::ws::{
    AckStatus, AgentMessage, Assignment, FinishReport, HeldTask, Hello, NOOP_COMMAND,
};
use torch_core::{AgentId, Evidence, Outcome, OutcomeKind, TaskId};

use crate::config::AgentConfig;
use crate::confine::hubsock::{hub_addrs, socket_dir};
use crate::confine::plan::Machine;
use crate::identity::Identity;
use crate::msg::Messenger;
use crate::runner::{RunnerCtx, RunnerEvent, StopReason, run_task};
use crate::sandbox::Sandbox;
use crate::writer::Outq;

/// Reason given for an assignment with neither a command nor a prompt.
pub(crate) const NOTHING_TO_RUN: &str = "task has neither a command nor a prompt";

type Key = (TaskId, u64);

struct Running {
    /// Taken when a stop has been requested.
    stop: Option<oneshot::Sender<StopReason>>,
    /// Its task token (which the agent's local routes accept while it runs).
    token: String,
}

struct Unacked {
    report: FinishReport,
    workdir: Option<PathBuf>,
}

/// Session-independent agent state; owned by the session loop.
pub(crate) struct Agent {
    pub(crate) cfg: AgentConfig,
    ctx: Arc<RunnerCtx>,
    /// The id from the last Welcome (at first the one the hub chose when it
    /// ordered this agent, if any), sent back when reconnecting.
    pub(crate) agent_id: Option<AgentId>,
    running: HashMap<Key, Running>,
    /// Finished reports not acknowledged yet; resent after every Welcome.
    outbox: HashMap<Key, Unacked>,
    pub(crate) tracker: TaskTracker,
    events: mpsc::Sender<RunnerEvent>,
    stopping: bool,
    /// Direct messages: endpoint, inbox, signing.
    pub(crate) messenger: Arc<Messenger>,
    /// The key pair and the remembered id.
    pub(crate) identity: Identity,
    /// Where peers reach this agent, advertised in Hello.
    endpoint: Option<String>,
}

impl Agent {
    /// `cfg.work_root` must already be absolute and exist.
    pub(crate) fn new(
        cfg: AgentConfig,
        events: mpsc::Sender<RunnerEvent>,
        identity: Identity,
        messenger: Arc<Messenger>,
        endpoint: Option<String>,
    ) -> Self {
        let ctx = RunnerCtx {
            sandbox: Sandbox::new(&cfg, endpoint.clone()),
            work_root: cfg.work_root.clone(),
            kill_grace: cfg.kill_grace,
            max_log_bytes: cfg.max_log_bytes,
            supervised: cfg.supervisor.is_some(),
            executor: cfg.executor.clone(),
            wall_time: cfg.limits.wall_time,
            machine: Machine::detect(&cfg.sandbox_disabled),
            policy: cfg.sandbox.clone(),
            limits: cfg.limits.clone(),
            hubs: Arc::new(hub_addrs(&cfg.hub_url)),
            endpoint_addrs: Arc::new(endpoint.as_deref().map(hub_addrs).unwrap_or_default()),
            socket_dir: socket_dir(&cfg.work_root),
        };
        let slots = usize::try_from(cfg.slots).unwrap_or(usize::MAX);
        Agent {
            agent_id: cfg.agent_id.or(identity.agent_id),
            cfg,
            ctx: Arc::new(ctx),
            running: HashMap::with_capacity(slots),
            outbox: HashMap::new(),
            tracker: TaskTracker::new(),
            events,
            stopping: false,
            messenger,
            identity,
            endpoint,
        }
    }

    /// The session's opening message.
    pub(crate) fn hello(&self) -> AgentMessage {
        AgentMessage::Hello(Hello {
            name: self.cfg.name.clone(),
            agent_id: self.agent_id,
            skills: self.cfg.skills.clone(),
            slots: self.cfg.slots,
            labels: self.cfg.labels.clone(),
            cost: self.cfg.cost,
            version: env!("CARGO_PKG_VERSION").to_string(),
            running: self.held(),
            sandbox: Some(Box::new(self.ctx.machine.probe.clone())),
            public_key: Some(self.identity.public_hex()),
            endpoint: self.endpoint.clone(),
        })
    }

    /// Tasks running now, for Hello and heartbeats.
    pub(crate) fn held(&self) -> Vec<HeldTask> {
        self.running
            .keys()
            .map(|&(task_id, fence)| HeldTask { task_id, fence })
            .collect()
    }

    /// Queues every unacknowledged report again (after a Welcome).
    pub(crate) fn resend_unacked(&self, q: &Outq) {
        if !self.outbox.is_empty() {
            info!(
                reports = self.outbox.len(),
                "resending unacknowledged reports"
            );
        }
        for u in self.outbox.values() {
            q.push(AgentMessage::Finished(u.report.clone()));
        }
    }

    /// Records a runner's news; sends it when a session is up (`q`).
    pub(crate) fn on_event(&mut self, ev: RunnerEvent, q: Option<&Outq>) {
        match ev {
            RunnerEvent::Started(held) => {
                if let Some(q) = q {
                    q.push(AgentMessage::Started(held));
                }
            }
            RunnerEvent::Progress(p) => {
                // Only while connected: a later report supersedes it anyway.
                if let Some(q) = q {
                    q.push(AgentMessage::Progress(p));
                }
            }
            RunnerEvent::Finished { report, workdir } => {
                if let Some(r) = self.running.remove(&(report.task_id, report.fence)) {
                    self.messenger.task_ended(&r.token);
                }
                self.report(*report, workdir, q);
            }
        }
    }

    fn report(&mut self, report: FinishReport, workdir: Option<PathBuf>, q: Option<&Outq>) {
        if let Some(q) = q {
            q.push(AgentMessage::Finished(report.clone()));
        }
        self.outbox
            .insert((report.task_id, report.fence), Unacked { report, workdir });
    }

    fn report_now(&mut self, a: &Assignment, outcome: Outcome, q: &Outq) {
        let report = FinishReport {
            task_id: a.task_id,
            fence: a.fence,
            attempt: a.attempt,
            outcome,
            logs: None,
        };
        self.report(report, None, Some(q));
    }

    /// Starts (or immediately answers) an assignment.
    pub(crate) fn on_assign(&mut self, a: Assignment, q: &Outq) {
        let key = (a.task_id, a.fence);
        if self.running.contains_key(&key) || self.outbox.contains_key(&key) {
            debug!(task_id = %a.task_id, attempt = a.attempt, "duplicate assignment ignored");
            return;
        }
        let refuse =
            |reason: &str| Outcome::failed(OutcomeKind::Failed, reason, Evidence::default());
        if self.stopping {
            return self.report_now(&a, refuse("agent shutting down"), q);
        }
        match a.command.as_deref() {
            Some([only]) if only == NOOP_COMMAND => {
                return self.report_now(&a, Outcome::succeeded(Evidence::default()), q);
            }
            None | Some([]) => {
                let reason = match (&a.prompt, &self.cfg.executor) {
                    (None, _) => Some(NOTHING_TO_RUN.to_string()),
                    (Some(_), None) => Some(format!(
                        "agent {} has no executor for prompt tasks; start it from a template with [executor]",
                        self.cfg.name
                    )),
                    (Some(_), Some(_)) => None,
                };
                if let Some(reason) = reason {
                    let fatal = Outcome::failed(OutcomeKind::Fatal, reason, Evidence::default());
                    return self.report_now(&a, fatal, q);
                }
            }
            Some(_) => {}
        }
        if self.running.len() >= usize::try_from(self.cfg.slots).unwrap_or(usize::MAX) {
            warn!(task_id = %a.task_id, attempt = a.attempt, "assignment over capacity refused");
            return self.report_now(&a, refuse("agent at capacity"), q);
        }
        info!(task_id = %a.task_id, attempt = a.attempt, name = %a.name, "task assigned");
        let (stop_tx, stop_rx) = oneshot::channel();
        self.messenger.task_started(&a.task_token, a.task_id);
        self.running.insert(
            key,
            Running {
                stop: Some(stop_tx),
                token: a.task_token.clone(),
            },
        );
        self.tracker
            .spawn(run_task(self.ctx.clone(), a, stop_rx, self.events.clone()));
    }

    /// Stops a running task at the hub's request.
    pub(crate) fn on_cancel(&mut self, task_id: TaskId, fence: u64, reason: String) {
        match self
            .running
            .get_mut(&(task_id, fence))
            .and_then(|r| r.stop.take())
        {
            Some(stop) => {
                info!(%task_id, fence, reason = %reason, "task cancelled by the hub");
                let _ = stop.send(StopReason::Cancelled(reason));
            }
            None => {
                debug!(%task_id, fence, "cancel for a task not running here (or already stopping)")
            }
        }
    }

    /// Forgets an acknowledged report and removes its work dir.
    pub(crate) fn on_ack(&mut self, task_id: TaskId, fence: u64, status: AckStatus) {
        let Some(done) = self.outbox.remove(&(task_id, fence)) else {
            debug!(%task_id, fence, "ack for an unknown report");
            return;
        };
        match status {
            AckStatus::Recorded | AckStatus::Duplicate => {
                debug!(%task_id, fence, ?status, "report acknowledged");
            }
            AckStatus::Stale | AckStatus::Unknown => {
                warn!(%task_id, fence, ?status, "the hub did not take the report");
            }
        }
        if let Some(dir) = done.workdir.filter(|_| !self.cfg.keep_workdirs) {
            self.tracker.spawn(async move {
                if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!(%task_id, error = %e, dir = %dir.display(), "cannot remove work dir");
                }
            });
        }
    }

    /// Refuses new work and asks every running task to stop.
    pub(crate) fn begin_shutdown(&mut self) {
        self.stopping = true;
        for r in self.running.values_mut() {
            if let Some(stop) = r.stop.take() {
                let _ = stop.send(StopReason::Shutdown);
            }
        }
    }

    /// Shutting down: new work is refused and running tasks are stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// No task is running.
    pub(crate) fn idle(&self) -> bool {
        self.running.is_empty()
    }

    /// No task is running and every report was acknowledged.
    pub(crate) fn drained(&self) -> bool {
        self.running.is_empty() && self.outbox.is_empty()
    }

    /// How long stopping running tasks may take.
    pub(crate) fn drain_time(&self) -> Duration {
        self.cfg.kill_grace + Duration::from_secs(5)
    }
}

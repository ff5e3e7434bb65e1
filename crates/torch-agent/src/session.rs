//! The agent's main loop: startup, then the shared reconnect loop
//! ([`crate::reconnect`]) with the agent's part of it: its Hello and
//! heartbeats, hub messages (assign, cancel, ack), runner events, and
//! stopping running tasks at shutdown.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use torch_api::ws::{AgentMessage, HubMessage};

use crate::agent::Agent;
use crate::config::{AgentConfig, LABEL_AGENT_ID};
use crate::connect::{Dialer, request};
use crate::error::AgentError;
use crate::link::{Conn, End};
use crate::reconnect::{self, Overdue, Role, Stopping, absolute, create_dir};
use crate::runner::RunnerEvent;
use crate::writer::Outq;

/// Runs an agent until `shutdown` is cancelled (then returns `Ok`) or the hub
/// refuses its token ([`AgentError::Auth`]).
///
/// An unreachable hub is retried forever with backoff (100 ms to 5 s, with
/// jitter). Running tasks survive reconnects; reports that finished while the
/// hub was away are resent, with their fence, after the next Welcome. On
/// shutdown running tasks are killed (SIGTERM, grace, SIGKILL to their process
/// group), reported as failed ("agent shutting down") when connected, and the
/// socket is closed.
pub async fn run(cfg: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let urls = cfg.validate()?;
    for url in &urls {
        request(url, &cfg.token)?;
    }
    let mut cfg = cfg;
    if let Some(id) = cfg.agent_id {
        cfg.labels
            .insert(LABEL_AGENT_ID.to_string(), id.to_string());
    }
    // Tasks run in their work dir: relative paths would resolve from there.
    cfg.work_root = absolute(&cfg.work_root, "resolve work root")?;
    if let Some(sup) = &cfg.supervisor {
        cfg.supervisor = Some(absolute(sup, "resolve supervisor path")?);
    }
    create_dir(&cfg.work_root, "create work root").await?;
    // Each runner sends at most two events and at most `slots` run at once,
    // so runners never wait on this channel.
    let capacity = usize::try_from(cfg.slots)
        .unwrap_or(usize::MAX)
        .saturating_mul(2)
        .saturating_add(8);
    let (events_tx, mut events) = mpsc::channel(capacity);
    let mut agent = Agent::new(cfg, events_tx);
    info!(name = %agent.cfg.name, slots = agent.cfg.slots, hubs = %urls.join(","), "agent starting");

    let token = agent.cfg.token.clone();
    let tls = crate::config::tls(agent.cfg.ca_file.as_deref())?;
    let dialer = Dialer::new(urls, "agent/ws", tls);
    let result = reconnect::run(&mut agent, &mut events, dialer, &token, &shutdown).await;
    match &result {
        Ok(()) => info!("agent stopped"),
        Err(e) => warn!(error = %e, "agent stopped"),
    }
    result
}

impl Role for Agent {
    type FromHub = HubMessage;
    type ToHub = AgentMessage;
    type Event = RunnerEvent;

    async fn hello(&mut self) -> AgentMessage {
        Agent::hello(self)
    }

    async fn heartbeat(&mut self) -> AgentMessage {
        AgentMessage::Heartbeat {
            running: self.held(),
        }
    }

    fn on_message(&mut self, msg: HubMessage, conn: &mut Conn<AgentMessage>) -> Result<(), End> {
        match msg {
            HubMessage::Welcome {
                agent_id,
                heartbeat_ms,
                lease_ms,
            } => {
                if self.agent_id.is_some_and(|ours| ours != agent_id) {
                    warn!(%agent_id, "the hub gave this agent another id than it asked for");
                }
                if conn.welcome(heartbeat_ms, Duration::from_millis(lease_ms)) {
                    info!(%agent_id, heartbeat_ms, lease_ms, "session established");
                    self.agent_id = Some(agent_id);
                    self.resend_unacked(conn.q());
                }
            }
            HubMessage::Assign(a) => self.on_assign(a, conn.q()),
            HubMessage::Cancel {
                task_id,
                fence,
                reason,
            } => self.on_cancel(task_id, fence, reason),
            HubMessage::Ack {
                task_id,
                fence,
                status,
            } => self.on_ack(task_id, fence, status),
            HubMessage::Error { code, message } => return Err(conn.hub_error(&code, message)),
            HubMessage::Unknown => debug!("unknown hub message ignored"),
        }
        Ok(())
    }

    fn on_event(&mut self, ev: RunnerEvent, q: Option<&Outq>) {
        Agent::on_event(self, ev, q);
    }

    fn on_shutdown(&mut self) {
        info!("shutting down: stopping running tasks");
        self.begin_shutdown();
    }

    fn begin_stop(&mut self) {
        self.begin_shutdown();
    }

    fn stop_time(&self) -> Duration {
        self.drain_time()
    }

    fn stopping(&self) -> Option<Stopping> {
        if !self.is_stopping() {
            None
        } else if self.drained() {
            Some(Stopping::Done)
        } else if self.idle() {
            Some(Stopping::Unacked)
        } else {
            Some(Stopping::Busy)
        }
    }

    fn overdue(&self, at: Overdue) {
        match at {
            Overdue::Session if self.idle() => {
                debug!("shutdown: some reports were not acknowledged");
            }
            Overdue::Session => {
                warn!(
                    tasks = self.held().len(),
                    "shutdown deadline passed with tasks still stopping"
                );
            }
            Overdue::Remaining => warn!(tasks = self.held().len(), "tasks did not stop in time"),
        }
    }

    fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }
}

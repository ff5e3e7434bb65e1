//! The agent's main loop: startup, then the shared reconnect loop
//! ([`crate::reconnect`]) with the agent's part of it: its Hello and
//! heartbeats, hub messages (assign, cancel, ack), runner events, and
//! stopping running tasks at shutdown.

use std::time::Duration;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use torch_api::msg::{Delivery, sign_challenge};
use torch_api::ws::{AgentMessage, HubMessage};

use crate::agent::Agent;
use crate::config::{AgentConfig, LABEL_AGENT_ID, Listen};
use crate::connect::{Dialer, request};
use crate::error::AgentError;
use crate::identity::Identity;
use crate::link::{Conn, End};
use crate::msg::Messenger;
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
    // The build's one TLS crypto provider (ring), for every HTTP client made
    // with reqwest's `rustls-no-provider`; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Not dumpable: a task of the same user cannot read the agent's memory
    // or environment (its token) through /proc without CAP_SYS_PTRACE.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        warn!(error = %e, "cannot make the agent non-dumpable");
    }
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
    let identity = match &cfg.data_dir {
        Some(dir) => Identity::load_or_create(&absolute(dir, "resolve data dir")?)?,
        None => Identity::ephemeral(),
    };
    let messenger = Messenger::new(
        &cfg,
        identity.key.clone(),
        cfg.agent_id.or(identity.agent_id),
    )
    .map_err(|source| AgentError::Io {
        action: "open the inbox in",
        path: cfg.data_dir.clone().unwrap_or_default(),
        source,
    })?;
    let messenger = Arc::new(messenger);
    let endpoint_stop = shutdown.child_token();
    let mut endpoint = None;
    let mut server = None;
    if let Some(listener) = listen(&cfg, &urls).await? {
        endpoint = listener.local_addr().ok().map(|a| format!("http://{a}"));
        server = Some(tokio::spawn(crate::msg::server::serve(
            listener,
            messenger.clone(),
            endpoint_stop.clone(),
        )));
    }
    let mut agent = Agent::new(cfg, events_tx, identity, messenger, endpoint.clone());
    info!(name = %agent.cfg.name, slots = agent.cfg.slots, hubs = %urls.join(","), endpoint = endpoint.as_deref().unwrap_or("-"), "agent starting");

    let token = agent.cfg.token.clone();
    let tls = crate::config::tls(agent.cfg.ca_file.as_deref())?;
    let dialer = Dialer::new(urls, "agent/ws", tls);
    let result = reconnect::run(&mut agent, &mut events, dialer, &token, &shutdown).await;
    endpoint_stop.cancel();
    if let Some(server) = server
        && let Err(e) = server.await
    {
        warn!(error = %e, "the message endpoint failed");
    }
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
                challenge,
                hub_key,
            } => {
                if self.agent_id.is_some_and(|ours| ours != agent_id) {
                    warn!(%agent_id, "the hub gave this agent another id than it asked for");
                }
                if conn.welcome(heartbeat_ms, Duration::from_millis(lease_ms)) {
                    info!(%agent_id, heartbeat_ms, lease_ms, "session established");
                    if let Some(c) = challenge {
                        // Proof of the key comes first: the hub reads it
                        // before anything else of this session.
                        let signature = sign_challenge(&self.identity.key, agent_id, &c);
                        conn.q().push(AgentMessage::Proof { signature });
                    }
                    self.agent_id = Some(agent_id);
                    self.identity.remember(agent_id);
                    self.messenger
                        .attach(agent_id, conn.q_arc(), hub_key.as_deref());
                    self.resend_unacked(conn.q());
                }
            }
            HubMessage::Deliver { messages } => {
                let m = self.messenger.clone();
                let q = conn.q_arc();
                self.tracker.spawn(async move {
                    let mut ids = Vec::with_capacity(messages.len());
                    for env in messages {
                        let id = env.envelope.id;
                        match m.receive(env, Delivery::Relayed).await {
                            Ok(_) => ids.push(id),
                            Err(e) => debug!(%id, error = %e, "relayed message refused"),
                        }
                    }
                    if !ids.is_empty() {
                        q.push(AgentMessage::Delivered { ids });
                    }
                });
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

/// Binds the message endpoint: the configured address, or an ephemeral
/// port on the address this machine reaches the (first) hub from.
async fn listen(
    cfg: &AgentConfig,
    hub_ws_urls: &[String],
) -> Result<Option<TcpListener>, AgentError> {
    let addr = match cfg.listen {
        Listen::Off => return Ok(None),
        Listen::Addr(a) => a,
        Listen::Auto => SocketAddr::new(local_ip_towards(hub_ws_urls).await, 0),
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| AgentError::Io {
            action: "listen for messages on",
            path: addr.to_string().into(),
            source,
        })
}

/// The local address used to reach the hub (loopback when unknown).
async fn local_ip_towards(hub_ws_urls: &[String]) -> std::net::IpAddr {
    let fallback = std::net::IpAddr::from([127, 0, 0, 1]);
    let Some(url) = hub_ws_urls.first() else {
        return fallback;
    };
    let host_port = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let Ok(mut addrs) = tokio::net::lookup_host(host_port).await else {
        return fallback;
    };
    let Some(hub) = addrs.next() else {
        return fallback;
    };
    let bind: SocketAddr = if hub.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    match tokio::net::UdpSocket::bind(bind).await {
        Ok(s) if s.connect(hub).await.is_ok() => s.local_addr().map_or(fallback, |a| a.ip()),
        _ => fallback,
    }
}

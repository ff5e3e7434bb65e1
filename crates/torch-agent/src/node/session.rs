//! The node's main loop: startup, then the shared reconnect loop
//! ([`crate::reconnect`]) with the node's part of it: Hello and heartbeats
//! with `/proc` samples, spawn and terminate orders, exits, and stopping
//! every agent at shutdown.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use torch_api::node::{HubToNode, NodeHello, NodeMessage, NodeStatus};

use super::config::NodeConfig;
use super::procfs::{self, Sampler};
use super::procs::{ProcExit, Procs};
use crate::connect::{Dialer, request};
use crate::error::AgentError;
use crate::link::{Conn, End};
use crate::reconnect::{self, Overdue, Role, Stopping, absolute, create_dir};
use crate::writer::Outq;

/// Silence from the hub (no frame, no pong) that always means a dead link.
const MIN_DEAD_AFTER: Duration = Duration::from_secs(5);
/// Time between SIGTERM and SIGKILL for every agent at node shutdown.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);
/// Extra time after the grace for killed agents to be reaped and reported.
const REAP_WAIT: Duration = Duration::from_secs(2);

type NodeQ = Outq<NodeMessage>;

/// Runs a node until `shutdown` is cancelled (then returns `Ok`) or the hub
/// refuses its token ([`AgentError::Auth`]).
///
/// The node connects to `{hub_url}/api/v1/node/ws`, retrying an unreachable
/// hub forever with backoff (100 ms to 5 s, with jitter), and carries out the
/// hub's orders: [`HubToNode::Spawn`] starts
/// `<torch_exe> agent --hub URL --name NAME --work-dir <work_root>/<id>`
/// (token, agent id and template in its environment) and
/// [`HubToNode::Terminate`] sends SIGTERM, then SIGKILL after the grace.
/// Every agent that ends is reported ([`NodeMessage::Exited`]); heartbeats
/// carry the machine's headroom and each agent's CPU and RSS summed over its
/// process tree.
///
/// Agents keep running while the hub is away; the next Hello lists them, and
/// exits seen meanwhile are sent after the next Welcome. At shutdown every
/// agent gets SIGTERM, then SIGKILL after 5 s; exits are reported when
/// connected and the socket is closed. The node holds no `PR_SET_PDEATHSIG`
/// (no `unsafe`): a node killed with SIGKILL leaves its agents running.
#[instrument(skip_all, fields(node = %cfg.name))]
pub async fn run_node(cfg: NodeConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    // The build's one TLS crypto provider (ring), for every HTTP client made
    // with reqwest's `rustls-no-provider`; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let urls = cfg.validate()?;
    for url in &urls {
        request(url, &cfg.token)?;
    }
    let mut cfg = cfg;
    // Agents run in their own work dirs: relative paths would break there.
    cfg.work_root = absolute(&cfg.work_root, "resolve work root")?;
    cfg.torch_exe = absolute(&cfg.torch_exe, "resolve torch binary path")?;
    create_dir(&cfg.work_root, "create work root").await?;
    if let Some(dir) = &cfg.log_dir {
        let dir = absolute(dir, "resolve log dir")?;
        create_dir(&dir, "create log dir").await?;
        cfg.log_dir = Some(dir);
    }
    // Each watcher sends exactly one exit, at most `max_agents` run at once.
    let capacity = usize::try_from(cfg.max_agents)
        .unwrap_or(usize::MAX)
        .saturating_add(8);
    let (exits_tx, mut exits) = mpsc::channel(capacity);
    info!(name = %cfg.name, max_agents = cfg.max_agents, hubs = %urls.join(","), "node starting");
    let token = cfg.token.clone();
    let tls = crate::config::tls(cfg.ca_file.as_deref())?;
    let mut node = Node {
        name: cfg.name.clone(),
        max_agents: cfg.max_agents,
        procs: Procs::new(cfg, exits_tx),
        sampler: Sampler::new(procfs::clock_ticks(), procfs::page_size()),
        unsent: Vec::new(),
        stopping: false,
        sandbox: crate::confine::probe_machine(),
    };

    let dialer = Dialer::new(urls, "node/ws", tls);
    let result = reconnect::run(&mut node, &mut exits, dialer, &token, &shutdown).await;
    match &result {
        Ok(()) => info!("node stopped"),
        Err(e) => warn!(error = %e, "node stopped"),
    }
    result
}

/// Session-independent node state; owned by the main loop.
struct Node {
    name: String,
    max_agents: u32,
    procs: Procs,
    sampler: Sampler,
    /// Exits seen while no session was up; sent after the next Welcome.
    unsent: Vec<NodeMessage>,
    /// Shutting down: agents are being stopped and no spawn is accepted.
    stopping: bool,
    /// The sandbox layers this machine offers, probed at start.
    sandbox: torch_core::sandbox::SandboxProbe,
}

impl Node {
    /// Samples `/proc` for the machine and every agent's process tree.
    async fn status(&mut self) -> NodeStatus {
        let pids = self.procs.pids();
        match tokio::task::spawn_blocking(procfs::read_snapshot).await {
            Ok(snap) => {
                let (m, usage) = self.sampler.sample(&snap, &pids);
                NodeStatus {
                    cpus: m.cpus,
                    cpu_used: m.cpu_used,
                    mem_total_bytes: m.mem_total_bytes,
                    mem_used: m.mem_used,
                    agents: self.procs.describe(&usage),
                }
            }
            Err(e) => {
                warn!(error = %e, "sampling /proc failed");
                NodeStatus {
                    agents: self.procs.describe(&HashMap::new()),
                    ..NodeStatus::default()
                }
            }
        }
    }
}

impl Role for Node {
    type FromHub = HubToNode;
    type ToHub = NodeMessage;
    type Event = ProcExit;

    async fn hello(&mut self) -> NodeMessage {
        let status = self.status().await;
        NodeMessage::Hello(NodeHello {
            name: self.name.clone(),
            max_agents: self.max_agents,
            version: env!("CARGO_PKG_VERSION").to_string(),
            status,
            sandbox: Some(self.sandbox.clone()),
        })
    }

    async fn heartbeat(&mut self) -> NodeMessage {
        NodeMessage::Heartbeat(self.status().await)
    }

    fn on_message(&mut self, msg: HubToNode, conn: &mut Conn<NodeMessage>) -> Result<(), End> {
        match msg {
            HubToNode::Welcome {
                node: id,
                heartbeat_ms,
            } => {
                if conn.welcome(heartbeat_ms, MIN_DEAD_AFTER) {
                    info!(node = %id, heartbeat_ms, agents = self.procs.len(), "session established");
                    for msg in self.unsent.drain(..) {
                        conn.q().push(msg);
                    }
                }
            }
            HubToNode::Spawn(order) => {
                let answer = if self.stopping {
                    NodeMessage::SpawnFailed {
                        agent_id: order.agent_id,
                        error: format!("node {} is shutting down", self.name),
                    }
                } else {
                    self.procs.spawn(&order)
                };
                conn.q().push(answer);
            }
            HubToNode::Terminate {
                agent_id,
                grace_ms,
                reason,
            } => {
                self.procs
                    .terminate(agent_id, Duration::from_millis(grace_ms), &reason);
            }
            HubToNode::Error { code, message } => return Err(conn.hub_error(&code, message)),
            HubToNode::Unknown => debug!("unknown hub message ignored"),
        }
        Ok(())
    }

    fn on_event(&mut self, ev: ProcExit, q: Option<&NodeQ>) {
        let msg = self.procs.on_exit(ev);
        match q {
            Some(q) => q.push(msg),
            None => self.unsent.push(msg),
        }
    }

    fn on_shutdown(&mut self) {
        info!("shutting down: stopping every agent");
        self.begin_stop();
    }

    fn begin_stop(&mut self) {
        if !self.stopping {
            info!(agents = self.procs.len(), "stopping every agent");
        }
        self.stopping = true;
        self.procs.terminate_all(STOP_GRACE);
    }

    fn stop_time(&self) -> Duration {
        STOP_GRACE + REAP_WAIT
    }

    fn stopping(&self) -> Option<Stopping> {
        match (self.stopping, self.procs.len()) {
            (false, _) => None,
            (true, 0) => Some(Stopping::Done),
            (true, _) => Some(Stopping::Busy),
        }
    }

    fn overdue(&self, at: Overdue) {
        let agents = self.procs.len();
        match at {
            Overdue::Session => {
                warn!(
                    agents,
                    "shutdown deadline passed with agents still stopping"
                );
            }
            Overdue::Remaining => warn!(agents, "agents did not stop in time"),
        }
    }

    fn tracker(&self) -> &TaskTracker {
        &self.procs.tracker
    }
}

//! The node's main loop: connect, Hello/Welcome, carry out spawn and
//! terminate orders, report exits and heartbeats, reconnect with backoff,
//! stop every agent at shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval, interval_at};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use torch_api::node::{HubToNode, NodeHello, NodeMessage, NodeStatus};

use super::config::NodeConfig;
use super::procfs::{self, Sampler};
use super::procs::{ProcExit, Procs};
use crate::connect::{ConnectError, Dialer, connect, request};
use crate::error::AgentError;
use crate::session::{AUTH_ERROR_CODES, absolute};
use crate::writer::{Outq, Ws, write_loop};

/// How long the hub may take to answer Hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Liveness check period until the hub says how often to heartbeat.
const HANDSHAKE_TICK: Duration = Duration::from_secs(1);
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);
/// Silence from the hub (no frame, no pong) that always means a dead link.
const MIN_DEAD_AFTER: Duration = Duration::from_secs(5);
/// Time between SIGTERM and SIGKILL for every agent at node shutdown.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);
/// Extra time after the grace for killed agents to be reaped and reported.
const REAP_WAIT: Duration = Duration::from_secs(2);
/// How long the writer may take to flush and close at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

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
    let mut node = Node {
        name: cfg.name.clone(),
        max_agents: cfg.max_agents,
        procs: Procs::new(cfg, exits_tx),
        sampler: Sampler::new(procfs::clock_ticks(), procfs::page_size()),
        unsent: Vec::new(),
        stopping: false,
    };

    let mut dialer = Dialer::new(urls, "node/ws");
    let result = loop {
        if shutdown.is_cancelled() {
            break Ok(());
        }
        let this = dialer.target();
        let attempt = async {
            tokio::select! {
                r = connect(&this, &token) => Some(r),
                () = shutdown.cancelled() => None,
            }
        };
        match offline(&mut node, &mut exits, attempt).await {
            None => break Ok(()),
            Some(Ok(ws)) => {
                info!("connected to the hub");
                match session(&mut node, ws, &shutdown, &mut exits).await {
                    End::Shutdown => break Ok(()),
                    End::Refused(e) => break Err(e),
                    End::Lost { welcomed } => {
                        if welcomed {
                            dialer.welcomed();
                        }
                    }
                    End::Redirect(leader) => {
                        if dialer.redirect(&leader) {
                            continue;
                        }
                    }
                }
            }
            Some(Err(ConnectError::Fatal(e))) => break Err(e),
            Some(Err(ConnectError::Retry(why))) => {
                warn!(hub = %this, error = %why, "cannot reach the hub");
                dialer.unreachable();
            }
        }
        let delay = dialer.next_delay();
        debug!(
            delay_ms = delay.as_millis() as u64,
            "reconnecting after a pause"
        );
        let pause = async {
            tokio::select! {
                () = tokio::time::sleep(delay) => false,
                () = shutdown.cancelled() => true,
            }
        };
        if offline(&mut node, &mut exits, pause).await {
            break Ok(());
        }
    };
    stop_remaining(&mut node, &mut exits).await;
    match &result {
        Ok(()) => info!("node stopped"),
        Err(e) => warn!(error = %e, "node stopped"),
    }
    result
}

async fn create_dir(dir: &std::path::Path, action: &'static str) -> Result<(), AgentError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| AgentError::Io {
            action,
            path: dir.to_path_buf(),
            source,
        })
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

    /// Records an agent's exit; sends it when a session is up (`q`).
    fn on_exit(&mut self, ev: ProcExit, q: Option<&NodeQ>) {
        let msg = self.procs.on_exit(ev);
        match q {
            Some(q) => q.push(msg),
            None => self.unsent.push(msg),
        }
    }

    /// Refuses new agents and asks every running one to stop.
    fn begin_stop(&mut self) {
        if !self.stopping {
            info!(agents = self.procs.len(), "stopping every agent");
        }
        self.stopping = true;
        self.procs.terminate_all(STOP_GRACE);
    }
}

/// Drives `fut` while recording exits (no session to send them on).
async fn offline<F: Future>(
    node: &mut Node,
    exits: &mut mpsc::Receiver<ProcExit>,
    fut: F,
) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            Some(ev) = exits.recv() => node.on_exit(ev, None),
        }
    }
}

/// Stops whatever still runs and waits (bounded) for the exits and cleanups.
async fn stop_remaining(node: &mut Node, exits: &mut mpsc::Receiver<ProcExit>) {
    node.begin_stop();
    let deadline = Instant::now() + STOP_GRACE + REAP_WAIT;
    while node.procs.len() > 0 {
        tokio::select! {
            Some(ev) = exits.recv() => node.on_exit(ev, None),
            () = tokio::time::sleep_until(deadline) => {
                warn!(agents = node.procs.len(), "agents did not stop in time");
                break;
            }
        }
    }
    node.procs.tracker.close();
    if tokio::time::timeout_at(deadline, node.procs.tracker.wait())
        .await
        .is_err()
    {
        warn!("background work did not finish in time");
    }
}

/// How a session ended.
enum End {
    /// Shut down as asked (every agent stopped or the deadline passed).
    Shutdown,
    /// The hub is a follower; the leader is at this URL.
    Redirect(String),
    /// Connection lost or broken; reconnect.
    Lost { welcomed: bool },
    /// The hub refused the node; give up.
    Refused(AgentError),
}

/// Per-connection state.
struct Conn {
    q: Arc<NodeQ>,
    welcomed: bool,
    last_rx: Instant,
    /// Silence from the hub longer than this means the connection is dead.
    dead_after: Duration,
    tick: Interval,
}

async fn session(
    node: &mut Node,
    ws: Ws,
    shutdown: &CancellationToken,
    exits: &mut mpsc::Receiver<ProcExit>,
) -> End {
    let (sink, mut stream) = ws.split();
    let q: Arc<NodeQ> = Arc::new(Outq::default());
    let mut writer: JoinHandle<Result<(), tungstenite::Error>> = {
        let q = q.clone();
        tokio::spawn(async move { write_loop(&q, sink).await })
    };
    let status = node.status().await;
    q.push(NodeMessage::Hello(NodeHello {
        name: node.name.clone(),
        max_agents: node.max_agents,
        version: env!("CARGO_PKG_VERSION").to_string(),
        status,
    }));
    let mut conn = Conn {
        q,
        welcomed: false,
        last_rx: Instant::now(),
        dead_after: HANDSHAKE_TIMEOUT,
        tick: interval(HANDSHAKE_TICK),
    };
    let stop_deadline = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(stop_deadline);
    if node.stopping {
        stop_deadline
            .as_mut()
            .reset(Instant::now() + STOP_GRACE + REAP_WAIT);
    }

    let end = loop {
        tokio::select! {
            () = shutdown.cancelled(), if !node.stopping => {
                info!("shutting down: stopping every agent");
                node.begin_stop();
                stop_deadline.as_mut().reset(Instant::now() + STOP_GRACE + REAP_WAIT);
            }
            frame = stream.next() => {
                conn.last_rx = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(end) = on_frame(node, &mut conn, &text) {
                            break end;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        info!(?frame, "the hub closed the connection");
                        break End::Lost { welcomed: conn.welcomed };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        warn!(error = %e, "hub connection failed");
                        break End::Lost { welcomed: conn.welcomed };
                    }
                    None => {
                        warn!("hub connection ended");
                        break End::Lost { welcomed: conn.welcomed };
                    }
                }
            }
            Some(ev) = exits.recv() => {
                let q = conn.welcomed.then_some(&*conn.q);
                node.on_exit(ev, q);
            }
            _ = conn.tick.tick() => {
                if conn.last_rx.elapsed() > conn.dead_after {
                    warn!(silent_ms = conn.last_rx.elapsed().as_millis() as u64, "no word from the hub; reconnecting");
                    break End::Lost { welcomed: conn.welcomed };
                }
                if conn.welcomed {
                    let status = node.status().await;
                    conn.q.push(NodeMessage::Heartbeat(status));
                    conn.q.ping();
                }
            }
            res = &mut writer => {
                match res {
                    Ok(Ok(())) => warn!("the writer stopped"),
                    Ok(Err(e)) => warn!(error = %e, "writing to the hub failed"),
                    Err(e) => warn!(error = %e, "the writer task failed"),
                }
                break End::Lost { welcomed: conn.welcomed };
            }
            () = &mut stop_deadline, if node.stopping => {
                warn!(agents = node.procs.len(), "shutdown deadline passed with agents still stopping");
                break End::Shutdown;
            }
        }
        if node.stopping && node.procs.len() == 0 {
            break End::Shutdown;
        }
    };
    if matches!(end, End::Shutdown) && !writer.is_finished() {
        conn.q.close();
        match tokio::time::timeout(CLOSE_TIMEOUT, &mut writer).await {
            Ok(Ok(Ok(()))) => debug!("connection closed"),
            Ok(Ok(Err(e))) => debug!(error = %e, "closing the connection failed"),
            Ok(Err(e)) => warn!(error = %e, "the writer task failed"),
            Err(_) => warn!("closing the connection timed out"),
        }
    }
    writer.abort();
    end
}

/// Handles one text frame (a JSON array of hub messages, or a single one).
fn on_frame(node: &mut Node, conn: &mut Conn, text: &str) -> Result<(), End> {
    let msgs: Vec<HubToNode> = match serde_json::from_str(text) {
        Ok(msgs) => msgs,
        Err(e) => match serde_json::from_str::<HubToNode>(text) {
            Ok(one) => vec![one],
            Err(_) => {
                warn!(error = %e, bytes = text.len(), "undecodable frame from the hub ignored");
                return Ok(());
            }
        },
    };
    for msg in msgs {
        match msg {
            HubToNode::Welcome {
                node: id,
                heartbeat_ms,
            } => {
                let period = Duration::from_millis(heartbeat_ms).max(MIN_HEARTBEAT);
                conn.tick = interval_at(Instant::now() + period, period);
                conn.tick
                    .set_missed_tick_behavior(MissedTickBehavior::Delay);
                conn.dead_after = (period * 3).max(MIN_DEAD_AFTER);
                if !conn.welcomed {
                    info!(node = %id, heartbeat_ms, agents = node.procs.len(), "session established");
                    conn.welcomed = true;
                    for msg in node.unsent.drain(..) {
                        conn.q.push(msg);
                    }
                }
            }
            HubToNode::Spawn(order) => {
                let answer = if node.stopping {
                    NodeMessage::SpawnFailed {
                        agent_id: order.agent_id,
                        error: format!("node {} is shutting down", node.name),
                    }
                } else {
                    node.procs.spawn(&order)
                };
                conn.q.push(answer);
            }
            HubToNode::Terminate {
                agent_id,
                grace_ms,
                reason,
            } => {
                node.procs
                    .terminate(agent_id, Duration::from_millis(grace_ms), &reason);
            }
            HubToNode::Error { code, message } => {
                if code == torch_api::ws::NOT_LEADER {
                    return Err(End::Redirect(message));
                }
                if AUTH_ERROR_CODES.contains(&code.as_str()) {
                    return Err(End::Refused(AgentError::Auth {
                        detail: format!("{code}: {message}"),
                    }));
                }
                warn!(%code, %message, "the hub reported an error; reconnecting");
                return Err(End::Lost {
                    welcomed: conn.welcomed,
                });
            }
            HubToNode::Unknown => debug!("unknown hub message ignored"),
        }
    }
    Ok(())
}

//! The agent's main loop: connect, Hello/Welcome, serve hub messages and
//! runner events, heartbeat, reconnect with backoff, shut down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval, interval_at};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use torch_api::ws::{AgentMessage, HubMessage};

use crate::agent::Agent;
use crate::config::{AgentConfig, LABEL_AGENT_ID};
use crate::connect::{ConnectError, Dialer, connect, request};
use crate::error::AgentError;
use crate::runner::RunnerEvent;
use crate::writer::{Outq, Ws, write_loop};

/// How long the hub may take to answer Hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Liveness check period until the hub says how often to heartbeat.
const HANDSHAKE_TICK: Duration = Duration::from_secs(1);
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);
/// How long shutdown waits for the hub to ack the last reports.
const ACK_WAIT: Duration = Duration::from_secs(1);
/// How long the writer may take to flush and close at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Hub error code of a follower hub; the message is the leader's URL.
pub(crate) const NOT_LEADER: &str = torch_api::ws::NOT_LEADER;
/// Hub error codes that mean the token is not accepted.
pub(crate) const AUTH_ERROR_CODES: &[&str] = &["unauthorized", "forbidden"];

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
    tokio::fs::create_dir_all(&cfg.work_root)
        .await
        .map_err(|source| AgentError::Io {
            action: "create work root",
            path: cfg.work_root.clone(),
            source,
        })?;
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
    let mut dialer = Dialer::new(urls, "agent/ws");
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
        match offline(&mut agent, &mut events, attempt).await {
            None => break Ok(()),
            Some(Ok(ws)) => {
                info!("connected to the hub");
                match session(&mut agent, ws, &shutdown, &mut events).await {
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
        if offline(&mut agent, &mut events, pause).await {
            break Ok(());
        }
    };
    stop_remaining(&mut agent, &mut events).await;
    match &result {
        Ok(()) => info!("agent stopped"),
        Err(e) => warn!(error = %e, "agent stopped"),
    }
    result
}

pub(crate) fn absolute(path: &Path, action: &'static str) -> Result<PathBuf, AgentError> {
    std::path::absolute(path).map_err(|source| AgentError::Io {
        action,
        path: path.to_path_buf(),
        source,
    })
}

/// Drives `fut` while recording runner events (no session to send them on).
async fn offline<F: Future>(
    agent: &mut Agent,
    events: &mut mpsc::Receiver<RunnerEvent>,
    fut: F,
) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            Some(ev) = events.recv() => agent.on_event(ev, None),
        }
    }
}

/// Kills whatever still runs and waits (bounded) for runners and cleanups.
async fn stop_remaining(agent: &mut Agent, events: &mut mpsc::Receiver<RunnerEvent>) {
    agent.begin_shutdown();
    let deadline = Instant::now() + agent.drain_time();
    while !agent.idle() {
        tokio::select! {
            Some(ev) = events.recv() => agent.on_event(ev, None),
            () = tokio::time::sleep_until(deadline) => {
                warn!(tasks = agent.held().len(), "tasks did not stop in time");
                break;
            }
        }
    }
    agent.tracker.close();
    if tokio::time::timeout_at(deadline, agent.tracker.wait())
        .await
        .is_err()
    {
        warn!("background work did not finish in time");
    }
}

/// How a session ended.
enum End {
    /// Shut down as asked.
    Shutdown,
    /// The hub is a follower; the leader is at this URL.
    Redirect(String),
    /// Connection lost or broken; reconnect.
    Lost { welcomed: bool },
    /// The hub refused the agent; give up.
    Refused(AgentError),
}

/// Per-connection state.
struct Conn {
    q: Arc<Outq>,
    welcomed: bool,
    last_rx: Instant,
    /// Silence from the hub longer than this means the connection is dead.
    dead_after: Duration,
    tick: Interval,
}

async fn session(
    agent: &mut Agent,
    ws: Ws,
    shutdown: &CancellationToken,
    events: &mut mpsc::Receiver<RunnerEvent>,
) -> End {
    let (sink, mut stream) = ws.split();
    let q = Arc::new(Outq::default());
    let mut writer: JoinHandle<Result<(), tungstenite::Error>> = {
        let q = q.clone();
        tokio::spawn(async move { write_loop(&q, sink).await })
    };
    q.push(agent.hello());
    let mut conn = Conn {
        q,
        welcomed: false,
        last_rx: Instant::now(),
        dead_after: HANDSHAKE_TIMEOUT,
        tick: interval(HANDSHAKE_TICK),
    };
    let mut draining = false;
    let mut waiting_for_acks = false;
    let drain_deadline = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(drain_deadline);

    let end = loop {
        tokio::select! {
            () = shutdown.cancelled(), if !draining => {
                info!("shutting down: stopping running tasks");
                agent.begin_shutdown();
                draining = true;
                drain_deadline.as_mut().reset(Instant::now() + agent.drain_time());
            }
            frame = stream.next() => {
                conn.last_rx = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(end) = on_frame(agent, &mut conn, &text) {
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
            Some(ev) = events.recv() => {
                let q = conn.welcomed.then_some(&*conn.q);
                agent.on_event(ev, q);
            }
            _ = conn.tick.tick() => {
                if conn.last_rx.elapsed() > conn.dead_after {
                    warn!(silent_ms = conn.last_rx.elapsed().as_millis() as u64, "no word from the hub; reconnecting");
                    break End::Lost { welcomed: conn.welcomed };
                }
                if conn.welcomed {
                    conn.q.push(AgentMessage::Heartbeat { running: agent.held() });
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
            () = &mut drain_deadline, if draining => {
                if !agent.idle() {
                    warn!(tasks = agent.held().len(), "shutdown deadline passed with tasks still stopping");
                } else {
                    debug!("shutdown: some reports were not acknowledged");
                }
                break End::Shutdown;
            }
        }
        if draining {
            if agent.drained() {
                break End::Shutdown;
            }
            if agent.idle() && !waiting_for_acks {
                // Every task reported: give the hub a moment to ack, no more.
                waiting_for_acks = true;
                let by = (Instant::now() + ACK_WAIT).min(drain_deadline.deadline());
                drain_deadline.as_mut().reset(by);
            }
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

/// Handles one text frame (a JSON array of hub messages).
fn on_frame(agent: &mut Agent, conn: &mut Conn, text: &str) -> Result<(), End> {
    let msgs: Vec<HubMessage> = match serde_json::from_str(text) {
        Ok(msgs) => msgs,
        Err(e) => match serde_json::from_str::<HubMessage>(text) {
            Ok(one) => vec![one],
            Err(_) => {
                warn!(error = %e, bytes = text.len(), "undecodable frame from the hub ignored");
                return Ok(());
            }
        },
    };
    for msg in msgs {
        match msg {
            HubMessage::Welcome {
                agent_id,
                heartbeat_ms,
                lease_ms,
            } => {
                let period = Duration::from_millis(heartbeat_ms).max(MIN_HEARTBEAT);
                conn.tick = interval_at(Instant::now() + period, period);
                conn.tick
                    .set_missed_tick_behavior(MissedTickBehavior::Delay);
                conn.dead_after = (period * 3).max(Duration::from_millis(lease_ms));
                if agent.agent_id.is_some_and(|ours| ours != agent_id) {
                    warn!(%agent_id, "the hub gave this agent another id than it asked for");
                }
                if !conn.welcomed {
                    info!(%agent_id, heartbeat_ms, lease_ms, "session established");
                    conn.welcomed = true;
                    agent.agent_id = Some(agent_id);
                    agent.resend_unacked(&conn.q);
                }
            }
            HubMessage::Assign(a) => agent.on_assign(a, &conn.q),
            HubMessage::Cancel {
                task_id,
                fence,
                reason,
            } => agent.on_cancel(task_id, fence, reason),
            HubMessage::Ack {
                task_id,
                fence,
                status,
            } => agent.on_ack(task_id, fence, status),
            HubMessage::Error { code, message } => {
                if code == NOT_LEADER {
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
            HubMessage::Unknown => debug!("unknown hub message ignored"),
        }
    }
    Ok(())
}

//! One connected session with the hub, shared by the agent and the node:
//! Hello/Welcome, hub messages and local events, heartbeats and liveness,
//! redirects and refusals, and the drain at shutdown. The [`Role`] supplies
//! what differs.

use std::mem;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval, interval_at};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::AgentError;
use crate::reconnect::{Overdue, Role, Stopping};
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
/// Hub error codes that mean the token is not accepted.
const AUTH_ERROR_CODES: &[&str] = &["unauthorized", "forbidden", "identity_refused"];

/// How a session ended.
pub(crate) enum End {
    /// Shut down as asked (everything stopped, or the deadline passed).
    Shutdown,
    /// The hub is a follower; the leader is at this URL.
    Redirect(String),
    /// Connection lost or broken; reconnect.
    Lost {
        /// A Welcome came first (the backoff starts again from the bottom).
        welcomed: bool,
    },
    /// The hub refused us; give up.
    Refused(AgentError),
}

/// Per-connection state.
pub(crate) struct Conn<M> {
    q: Arc<Outq<M>>,
    welcomed: bool,
    last_rx: Instant,
    /// Silence from the hub longer than this means the connection is dead.
    dead_after: Duration,
    tick: Interval,
}

impl<M> Conn<M> {
    /// A connection that has sent Hello and waits for Welcome.
    fn new(q: Arc<Outq<M>>) -> Self {
        Conn {
            q,
            welcomed: false,
            last_rx: Instant::now(),
            dead_after: HANDSHAKE_TIMEOUT,
            tick: interval(HANDSHAKE_TICK),
        }
    }

    /// The queue to the hub.
    pub(crate) fn q(&self) -> &Outq<M> {
        &self.q
    }

    /// The queue to the hub, shared (for whoever sends on its own).
    pub(crate) fn q_arc(&self) -> Arc<Outq<M>> {
        self.q.clone()
    }

    /// Applies a Welcome: heartbeat every `heartbeat_ms` (not faster than
    /// 50 ms); silence for three periods or `dead_floor`, whichever is longer,
    /// means the connection is dead. True for the session's first Welcome.
    pub(crate) fn welcome(&mut self, heartbeat_ms: u64, dead_floor: Duration) -> bool {
        let period = Duration::from_millis(heartbeat_ms).max(MIN_HEARTBEAT);
        self.tick = interval_at(Instant::now() + period, period);
        self.tick
            .set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.dead_after = (period * 3).max(dead_floor);
        !mem::replace(&mut self.welcomed, true)
    }

    /// How an error from the hub ends the session: a follower's redirect, a
    /// refused token, or anything else (logged) as a lost connection.
    pub(crate) fn hub_error(&self, code: &str, message: String) -> End {
        if code == torch_api::ws::NOT_LEADER {
            return End::Redirect(message);
        }
        if AUTH_ERROR_CODES.contains(&code) {
            return End::Refused(AgentError::Auth {
                detail: format!("{code}: {message}"),
            });
        }
        warn!(%code, %message, "the hub reported an error; reconnecting");
        End::Lost {
            welcomed: self.welcomed,
        }
    }

    fn lost(&self) -> End {
        End::Lost {
            welcomed: self.welcomed,
        }
    }
}

/// Serves one connection until it ends.
pub(crate) async fn session<R: Role>(
    role: &mut R,
    ws: Ws,
    shutdown: &CancellationToken,
    events: &mut mpsc::Receiver<R::Event>,
) -> End {
    let (sink, mut stream) = ws.split();
    let q: Arc<Outq<R::ToHub>> = Arc::new(Outq::default());
    let mut writer: JoinHandle<Result<(), tungstenite::Error>> = {
        let q = q.clone();
        tokio::spawn(async move { write_loop(&q, sink).await })
    };
    q.push(role.hello().await);
    let mut conn = Conn::new(q);
    let mut waiting_for_acks = false;
    let stop_deadline = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(stop_deadline);
    if role.stopping().is_some() {
        stop_deadline
            .as_mut()
            .reset(Instant::now() + role.stop_time());
    }

    let end = loop {
        let stopping = role.stopping().is_some();
        tokio::select! {
            () = shutdown.cancelled(), if !stopping => {
                role.on_shutdown();
                stop_deadline.as_mut().reset(Instant::now() + role.stop_time());
            }
            frame = stream.next() => {
                conn.last_rx = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(end) = on_frame(role, &mut conn, &text) {
                            break end;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        info!(?frame, "the hub closed the connection");
                        break conn.lost();
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        warn!(error = %e, "hub connection failed");
                        break conn.lost();
                    }
                    None => {
                        warn!("hub connection ended");
                        break conn.lost();
                    }
                }
            }
            Some(ev) = events.recv() => {
                let q = conn.welcomed.then_some(&*conn.q);
                role.on_event(ev, q);
            }
            _ = conn.tick.tick() => {
                if conn.last_rx.elapsed() > conn.dead_after {
                    warn!(silent_ms = conn.last_rx.elapsed().as_millis() as u64, "no word from the hub; reconnecting");
                    break conn.lost();
                }
                if conn.welcomed {
                    let beat = role.heartbeat().await;
                    conn.q.push(beat);
                    conn.q.ping();
                }
            }
            res = &mut writer => {
                match res {
                    Ok(Ok(())) => warn!("the writer stopped"),
                    Ok(Err(e)) => warn!(error = %e, "writing to the hub failed"),
                    Err(e) => warn!(error = %e, "the writer task failed"),
                }
                break conn.lost();
            }
            () = &mut stop_deadline, if stopping => {
                role.overdue(Overdue::Session);
                break End::Shutdown;
            }
        }
        match role.stopping() {
            None | Some(Stopping::Busy) => {}
            Some(Stopping::Done) => break End::Shutdown,
            Some(Stopping::Unacked) => {
                if !waiting_for_acks {
                    // Everything reported: give the hub a moment to ack, no more.
                    waiting_for_acks = true;
                    let by = (Instant::now() + ACK_WAIT).min(stop_deadline.deadline());
                    stop_deadline.as_mut().reset(by);
                }
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
    // Whoever still holds the queue (the messenger) sees the session is over.
    conn.q.close();
    writer.abort();
    end
}

/// Handles one text frame (a JSON array of hub messages, or a single one).
fn on_frame<R: Role>(role: &mut R, conn: &mut Conn<R::ToHub>, text: &str) -> Result<(), End> {
    let msgs: Vec<R::FromHub> = match serde_json::from_str(text) {
        Ok(msgs) => msgs,
        Err(e) => match serde_json::from_str::<R::FromHub>(text) {
            Ok(one) => vec![one],
            Err(_) => {
                warn!(error = %e, bytes = text.len(), "undecodable frame from the hub ignored");
                return Ok(());
            }
        },
    };
    for msg in msgs {
        role.on_message(msg, conn)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn welcome_sets_the_pace_and_hub_errors_end_the_session() {
        let mut conn: Conn<()> = Conn::new(Arc::new(Outq::default()));
        assert!(matches!(
            conn.hub_error("internal", "oops".into()),
            End::Lost { welcomed: false }
        ));
        assert!(
            conn.welcome(10, Duration::from_secs(5)),
            "the first Welcome"
        );
        assert_eq!(conn.tick.period(), MIN_HEARTBEAT, "heartbeats are capped");
        assert_eq!(conn.dead_after, Duration::from_secs(5), "the floor wins");
        assert!(!conn.welcome(1_000, Duration::from_millis(10)));
        assert_eq!(conn.dead_after, Duration::from_secs(3), "three periods win");

        assert!(matches!(
            conn.hub_error(torch_api::ws::NOT_LEADER, "http://leader:1".into()),
            End::Redirect(url) if url == "http://leader:1"
        ));
        for code in AUTH_ERROR_CODES {
            assert!(matches!(
                conn.hub_error(code, "no".into()),
                End::Refused(AgentError::Auth { detail }) if detail == format!("{code}: no")
            ));
        }
        assert!(matches!(
            conn.hub_error("internal", "oops".into()),
            End::Lost { welcomed: true }
        ));
    }
}

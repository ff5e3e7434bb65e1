//! The reconnect loop shared by the agent and the node: dial the hub through
//! the [`Dialer`], keep local work going while offline, follow redirects, back
//! off between failures, and at shutdown stop what remains.
//!
//! What differs between an agent and a node plugs in through [`Role`]: the
//! messages each side speaks, the Hello and heartbeats it sends, what it does
//! with a hub message or a local event, and how it stops. One connected
//! session is [`crate::link`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::connect::{ConnectError, Dialer, connect};
use crate::error::AgentError;
use crate::link::{Conn, End, session};
use crate::writer::Outq;

/// What the shared loop needs from an agent or a node. The role owns its
/// session-independent state; the loop owns the connection.
pub(crate) trait Role {
    /// Messages from the hub (a JSON array of them per frame).
    type FromHub: DeserializeOwned;
    /// Messages to the hub.
    type ToHub: Serialize + Send + 'static;
    /// Local news (a runner's report, an agent process's exit), recorded
    /// whether or not a session is up.
    type Event;

    /// The session's opening message.
    async fn hello(&mut self) -> Self::ToHub;

    /// A heartbeat, sent each period once welcomed.
    async fn heartbeat(&mut self) -> Self::ToHub;

    /// Handles one hub message. Welcome goes through [`Conn::welcome`] and an
    /// error through [`Conn::hub_error`]; `Err` ends the session.
    fn on_message(&mut self, msg: Self::FromHub, conn: &mut Conn<Self::ToHub>) -> Result<(), End>;

    /// Records local news; sends it when a session is up and welcomed (`q`).
    fn on_event(&mut self, ev: Self::Event, q: Option<&Outq<Self::ToHub>>);

    /// Shutdown was asked during a session: says so and begins stopping.
    fn on_shutdown(&mut self);

    /// Refuses new work and asks everything running to stop.
    fn begin_stop(&mut self);

    /// How long stopping may take, from [`Role::begin_stop`].
    fn stop_time(&self) -> Duration;

    /// Where stopping stands; `None` until [`Role::begin_stop`].
    fn stopping(&self) -> Option<Stopping>;

    /// Logs that the stop deadline passed (`at` says where).
    fn overdue(&self, at: Overdue);

    /// Background work (runners, watchers, cleanups) awaited at the end.
    fn tracker(&self) -> &TaskTracker;
}

/// Where stopping stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stopping {
    /// Work is still running.
    Busy,
    /// Nothing runs; some reports wait for the hub's ack.
    Unacked,
    /// Nothing runs and nothing waits: a session may end.
    Done,
}

/// Which stop deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overdue {
    /// During a session (the socket is closed next).
    Session,
    /// After the loop, stopping what remains.
    Remaining,
}

/// Runs `role` against the hubs `dialer` names until `shutdown` is cancelled
/// (then `Ok`) or a hub refuses it, then stops what remains (bounded).
pub(crate) async fn run<R: Role>(
    role: &mut R,
    events: &mut mpsc::Receiver<R::Event>,
    mut dialer: Dialer,
    token: &str,
    shutdown: &CancellationToken,
) -> Result<(), AgentError> {
    let result = loop {
        if shutdown.is_cancelled() {
            break Ok(());
        }
        let this = dialer.target();
        let tls = dialer.tls();
        let attempt = async {
            tokio::select! {
                r = connect(&this, token, tls) => Some(r),
                () = shutdown.cancelled() => None,
            }
        };
        match offline(role, events, attempt).await {
            None => break Ok(()),
            Some(Ok(ws)) => {
                info!("connected to the hub");
                match session(role, ws, shutdown, events).await {
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
        if offline(role, events, pause).await {
            break Ok(());
        }
    };
    stop_remaining(role, events).await;
    result
}

/// Drives `fut` while recording local events (no session to send them on).
async fn offline<R: Role, F: Future>(
    role: &mut R,
    events: &mut mpsc::Receiver<R::Event>,
    fut: F,
) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            Some(ev) = events.recv() => role.on_event(ev, None),
        }
    }
}

/// Stops whatever still runs and waits (bounded) for it and for cleanups.
async fn stop_remaining<R: Role>(role: &mut R, events: &mut mpsc::Receiver<R::Event>) {
    role.begin_stop();
    let deadline = Instant::now() + role.stop_time();
    while role.stopping() == Some(Stopping::Busy) {
        tokio::select! {
            Some(ev) = events.recv() => role.on_event(ev, None),
            () = tokio::time::sleep_until(deadline) => {
                role.overdue(Overdue::Remaining);
                break;
            }
        }
    }
    role.tracker().close();
    if tokio::time::timeout_at(deadline, role.tracker().wait())
        .await
        .is_err()
    {
        warn!("background work did not finish in time");
    }
}

/// `path` made absolute (from the current directory), before anything runs
/// in another directory.
pub(crate) fn absolute(path: &Path, action: &'static str) -> Result<PathBuf, AgentError> {
    std::path::absolute(path).map_err(|source| AgentError::Io {
        action,
        path: path.to_path_buf(),
        source,
    })
}

/// Creates `dir` and its parents.
pub(crate) async fn create_dir(dir: &Path, action: &'static str) -> Result<(), AgentError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| AgentError::Io {
            action,
            path: dir.to_path_buf(),
            source,
        })
}

//! The batching writer: every message for the hub is queued here, and one
//! writer task per connection sends everything queued as ONE frame (a JSON
//! array) per wakeup. Under load many reports share a frame; when idle a
//! message goes out alone, immediately.
//!
//! The queue is bounded by what its side generates. An agent: at most two
//! messages per task slot in flight (Started, Finished), one heartbeat per
//! period and the resent reports after a reconnect. A node: one answer per
//! spawn order, one exit per agent, one heartbeat per period and the exits
//! held back while offline.

use std::mem;
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{error, trace};

use serde::Serialize;

use torch_api::ws::{AgentMessage, PeerEvent};

/// The agent's side of a hub connection.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Pending<M> {
    msgs: Vec<M>,
    /// Peer events among `msgs` (see [`Outq::push_peer_event`]).
    events: usize,
    ping: bool,
    close: bool,
}

/// Messages waiting for the writer: agent messages by default, node messages
/// for a node session.
pub(crate) struct Outq<M = AgentMessage> {
    pending: Mutex<Pending<M>>,
    wake: Notify,
}

impl<M> Default for Outq<M> {
    fn default() -> Self {
        Outq {
            pending: Mutex::new(Pending {
                msgs: Vec::new(),
                events: 0,
                ping: false,
                close: false,
            }),
            wake: Notify::new(),
        }
    }
}

impl<M> Outq<M> {
    fn lock(&self) -> MutexGuard<'_, Pending<M>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a message for the next frame.
    pub(crate) fn push(&self, msg: M) {
        self.lock().msgs.push(msg);
        self.wake.notify_one();
    }

    /// Asks for a WebSocket ping after the next frame (liveness probe).
    pub(crate) fn ping(&self) {
        self.lock().ping = true;
        self.wake.notify_one();
    }

    /// True once [`Outq::close`] was called (the session is over).
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().close
    }

    /// Asks the writer to send what is queued, close the socket and stop.
    pub(crate) fn close(&self) {
        self.lock().close = true;
        self.wake.notify_one();
    }
}

impl Outq<AgentMessage> {
    /// Queues a peer event, in the `PeerEvents` message already waiting for
    /// the next frame when there is one (one message, one store write on
    /// the hub for many events). Past `cap` events waiting (a hub that
    /// stopped reading), the event is dropped.
    pub(crate) fn push_peer_event(&self, ev: PeerEvent, cap: usize) {
        let mut p = self.lock();
        if p.events >= cap {
            return;
        }
        p.events += 1;
        match p.msgs.last_mut() {
            Some(AgentMessage::PeerEvents { events }) => events.push(ev),
            _ => p.msgs.push(AgentMessage::PeerEvents { events: vec![ev] }),
        }
        drop(p);
        self.wake.notify_one();
    }
}

/// Sends queued messages until the socket fails or [`Outq::close`] is called.
pub(crate) async fn write_loop<M: Serialize>(
    q: &Outq<M>,
    mut sink: SplitSink<Ws, Message>,
) -> Result<(), tungstenite::Error> {
    let mut batch: Vec<M> = Vec::new();
    loop {
        q.wake.notified().await;
        let (ping, close) = {
            let mut p = q.lock();
            mem::swap(&mut p.msgs, &mut batch);
            p.events = 0;
            (mem::take(&mut p.ping), p.close)
        };
        if !batch.is_empty() {
            match serde_json::to_string(&batch) {
                Ok(text) => {
                    trace!(messages = batch.len(), bytes = text.len(), "sending frame");
                    sink.feed(Message::text(text)).await?;
                }
                Err(e) => {
                    error!(error = %e, "cannot encode messages for the hub; dropping them");
                    debug_assert!(false, "wire messages always serialize");
                }
            }
            // Keep the allocation for the next round.
            batch.clear();
        }
        if ping {
            sink.feed(Message::Ping(Bytes::new())).await?;
        }
        sink.flush().await?;
        if close {
            return sink.close().await;
        }
    }
}

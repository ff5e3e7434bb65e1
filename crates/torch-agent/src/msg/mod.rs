//! Direct messages between agents, the agent's side: its endpoint
//! (`server`), verifying and storing what peers send (`receive`), sending
//! for its tasks (`send`), the on-disk inbox (`inbox`), the cache of the
//! hub's peer registry (`peers`) and per-sender rate limits (`bucket`).
//!
//! The [`Messenger`] is shared by the endpoint's handlers and the hub
//! session: the session gives it the agent's id and the hub's key at
//! `Welcome`, hands it relayed messages, and carries its events (metadata
//! only) to the hub.

mod bucket;
mod inbox;
mod peers;
mod receive;
mod send;
pub(crate) mod server;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use ed25519_dalek::SigningKey;
use tracing::warn;

use torch_api::ws::{AgentMessage, PeerEvent};
use torch_core::{AgentId, TaskId};

use crate::config::{AgentConfig, MessageLimits};
use crate::writer::Outq;

pub(crate) use inbox::Inbox;
pub(crate) use peers::{HubClient, PeerCache};

/// Events kept at most while the hub is away; older ones are dropped.
const MAX_PENDING_EVENTS: usize = 20_000;

/// The agent's messaging state.
pub(crate) struct Messenger {
    key: SigningKey,
    limits: MessageLimits,
    hub: HubClient,
    peers: PeerCache,
    inbox: Inbox,
    /// For POSTs to peers (keeps connections alive).
    http: reqwest::Client,
    /// Senders' buckets (messages coming in) and ours (messages going out).
    buckets: Mutex<bucket::Buckets>,
    me: Mutex<Option<AgentId>>,
    /// Task tokens of the running tasks → their task; the local token.
    tasks: Mutex<HashMap<String, Option<TaskId>>>,
    link: Mutex<Link>,
}

#[derive(Default)]
struct Link {
    q: Option<Arc<Outq>>,
    events: VecDeque<PeerEvent>,
}

/// Milliseconds since the unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Messenger {
    /// The messenger of an agent with `key` and `cfg`, its inbox opened.
    pub(crate) fn new(
        cfg: &AgentConfig,
        key: SigningKey,
        agent_id: Option<AgentId>,
    ) -> std::io::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_millis(500))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(16)
            .build()
            .map_err(std::io::Error::other)?;
        let mut tasks = HashMap::new();
        if let Some(t) = &cfg.local_token {
            tasks.insert(t.clone(), None);
        }
        Ok(Messenger {
            key,
            limits: cfg.messages.clone(),
            hub: HubClient::new(&cfg.hub_url, cfg.token.clone(), http.clone()),
            peers: PeerCache::default(),
            inbox: Inbox::open(cfg.data_dir.as_deref(), cfg.messages.inbox_cap)?,
            http,
            buckets: Mutex::new(bucket::Buckets::default()),
            me: Mutex::new(agent_id),
            tasks: Mutex::new(tasks),
            link: Mutex::new(Link::default()),
        })
    }

    /// This agent's id, once the hub gave one.
    pub(crate) fn me(&self) -> Option<AgentId> {
        *lock(&self.me)
    }

    /// A session is up: events flow to the hub through `q`.
    pub(crate) fn attach(&self, me: AgentId, q: Arc<Outq>, hub_key: Option<&str>) {
        *lock(&self.me) = Some(me);
        if let Some(k) = hub_key.and_then(|k| torch_api::msg::parse_public_key(k).ok()) {
            self.peers.set_hub_key(k);
        }
        let mut link = lock(&self.link);
        if !link.events.is_empty() {
            q.push(AgentMessage::PeerEvents {
                events: link.events.drain(..).collect(),
            });
        }
        link.q = Some(q);
    }

    /// Reports an event to the hub (now, or when a session is up).
    pub(crate) fn event(&self, ev: PeerEvent) {
        let mut link = lock(&self.link);
        if let Some(q) = &link.q
            && !q.is_closed()
        {
            // A hub that stopped reading (paused) must not grow the queue
            // without end: past the cap, events are dropped.
            // Events share one `PeerEvents` message per frame.
            q.push_peer_event(ev, MAX_PENDING_EVENTS);
            return;
        }
        link.q = None;
        if link.events.len() >= MAX_PENDING_EVENTS {
            link.events.pop_front();
        }
        link.events.push_back(ev);
    }

    /// A task started: its token may call the local routes.
    pub(crate) fn task_started(&self, token: &str, task: TaskId) {
        lock(&self.tasks).insert(token.to_string(), Some(task));
    }

    /// A task ended: its token no longer works here.
    pub(crate) fn task_ended(&self, token: &str) {
        let mut tasks = lock(&self.tasks);
        if tasks.get(token).is_some_and(Option::is_some) {
            tasks.remove(token);
        }
    }

    /// Who a bearer token is: `Some(task)` for a task, `Some(None)` for the
    /// local token, `None` for nobody.
    pub(crate) fn caller(&self, token: &str) -> Option<Option<TaskId>> {
        lock(&self.tasks).get(token).copied()
    }

    /// The inbox.
    pub(crate) fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

/// A `PeerEvent` of `kind` about an envelope.
pub(crate) fn event_of(
    kind: &str,
    env: Option<&torch_api::msg::Envelope>,
    delivery: Option<torch_api::msg::Delivery>,
    reason: Option<String>,
) -> PeerEvent {
    PeerEvent {
        kind: kind.to_string(),
        id: env.map(|e| e.id),
        from: env.map(|e| e.from.clone()),
        to: env.map(|e| e.to.to_string()),
        msg_kind: env.map(|e| e.kind.clone()),
        delivery: delivery.map(|d| d.as_str().to_string()),
        reason,
        sent_ms: env.map(|e| e.sent_ms),
        at_ms: now_ms(),
    }
}

/// Logs an inbox write failure (the message is then refused).
pub(crate) fn inbox_failed(e: &std::io::Error) {
    warn!(error = %e, "could not write the inbox");
}

//! Direct messages, the hub's part: the directory of connected agents'
//! endpoints and keys (for peer cards), relayed messages (kept in the
//! store for recipients their senders could not reach, pushed to them over
//! their session, forgotten when they say `Delivered`), bounces (signed
//! with the hub's key) and operators' messages. The hub is never on the
//! direct path; see `docs/collaboration.md`.
//!
//! The directory has one owner, this module, behind a short lock never held
//! across `.await` (like the analyzer's history).

mod relay;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use rand::RngExt;
use tokio::sync::mpsc;

use torch_core::AgentId;
use torch_store::{Store, StoreError};

use crate::engine::Outbound;

pub(crate) use relay::{RelayError, sweep};

/// Limits of the hub's part of messaging (`[collaboration]`).
#[derive(Clone, Debug, PartialEq)]
pub struct MessagingConfig {
    /// Messages the hub keeps for one recipient at most.
    pub relay_cap: usize,
    /// Messages per second one sender may relay or an operator may send.
    pub rate: f64,
    /// Burst of the same bucket.
    pub burst: u32,
    /// Time to live of an operator's message.
    pub default_ttl: Duration,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            relay_cap: 10_000,
            rate: 2_000.0,
            burst: 4_000,
            default_ttl: Duration::from_secs(3_600),
        }
    }
}

/// A connected agent's messaging facts.
struct Entry {
    session: u64,
    endpoint: Option<String>,
    public_key: Option<String>,
    tx: mpsc::Sender<Outbound>,
}

/// The hub's messaging state.
pub(crate) struct Messaging {
    hub_key: SigningKey,
    cfg: MessagingConfig,
    directory: Mutex<HashMap<AgentId, Entry>>,
    buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
    /// Agents that were pushed relayed messages they have not all confirmed:
    /// the sweeper pushes what is still kept again (recipients drop
    /// duplicates), so a push lost or refused (e.g. while the recipient
    /// could not check a key yet) is not stuck until the next hello.
    owed: Mutex<std::collections::HashSet<AgentId>>,
    /// For operators' messages sent straight to an agent.
    http: reqwest::Client,
}

/// The meta key holding the hub's messaging key (shared by hubs on one store).
const HUB_KEY_META: &str = "hub_msg_key";

impl Messaging {
    /// Loads (or makes, once per store) the hub's key.
    pub(crate) async fn start<S: Store>(
        store: &S,
        cfg: MessagingConfig,
    ) -> Result<Self, StoreError> {
        let seed: [u8; 32] = rand::rng().random();
        let stored = store
            .init_meta(HUB_KEY_META.into(), hex::encode(seed))
            .await?;
        let bytes: [u8; 32] = hex::decode(&stored)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("meta {HUB_KEY_META} is not a key")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("http client: {e}")))?;
        Ok(Messaging {
            hub_key: SigningKey::from_bytes(&bytes),
            cfg,
            directory: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            owed: Mutex::new(std::collections::HashSet::new()),
            http,
        })
    }

    fn dir(&self) -> MutexGuard<'_, HashMap<AgentId, Entry>> {
        self.directory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The hub's public key, hex.
    pub(crate) fn hub_key_hex(&self) -> String {
        torch_api::msg::public_key_hex(&self.hub_key.verifying_key())
    }

    /// An agent's session was accepted.
    pub(crate) fn joined(
        &self,
        agent: AgentId,
        session: u64,
        endpoint: Option<String>,
        public_key: Option<String>,
        tx: mpsc::Sender<Outbound>,
    ) {
        self.dir().insert(
            agent,
            Entry {
                session,
                endpoint,
                public_key,
                tx,
            },
        );
    }

    /// An agent's session ended (a newer one of the same agent stays).
    pub(crate) fn left(&self, agent: AgentId, session: u64) {
        let mut d = self.dir();
        if d.get(&agent).is_some_and(|e| e.session == session) {
            d.remove(&agent);
        }
    }

    /// A connected agent's endpoint and public key.
    pub(crate) fn contact(&self, agent: AgentId) -> Option<(Option<String>, Option<String>)> {
        self.dir()
            .get(&agent)
            .map(|e| (e.endpoint.clone(), e.public_key.clone()))
    }

    /// Marks `agent` as owing confirmations (or not).
    fn owe(&self, agent: AgentId, owes: bool) {
        let mut o = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
        if owes {
            o.insert(agent);
        } else {
            o.remove(&agent);
        }
    }

    /// Connected agents that owe confirmations.
    fn owing(&self) -> Vec<AgentId> {
        let owed: Vec<AgentId> = self
            .owed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        let d = self.dir();
        owed.into_iter().filter(|a| d.contains_key(a)).collect()
    }

    fn session_tx(&self, agent: AgentId) -> Option<mpsc::Sender<Outbound>> {
        self.dir().get(&agent).map(|e| e.tx.clone())
    }

    /// Takes a token from `sender`'s bucket, or says when to retry.
    pub(crate) fn take_token(&self, sender: &str) -> Result<(), Duration> {
        let now = std::time::Instant::now();
        let (rate, burst) = (self.cfg.rate, f64::from(self.cfg.burst));
        let mut b = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if b.len() > 65_536 {
            b.clear();
        }
        let (tokens, at) = b.entry(sender.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = if rate > 0.0 {
                (1.0 - *tokens) / rate
            } else {
                60.0
            };
            Err(Duration::from_secs_f64(wait.clamp(0.001, 3_600.0)))
        }
    }
}

/// Records what an agent reported about messages as `message.*` events (in
/// one go: the store commits them together).
pub(crate) async fn record_events<S: Store>(
    shared: &std::sync::Arc<crate::hub::Shared<S>>,
    agent: AgentId,
    events: Vec<torch_api::ws::PeerEvent>,
) {
    use torch_core::EventData;
    use torch_core::events::payload::MessageEvent;
    let data = events.into_iter().filter_map(|e| {
        let data = MessageEvent {
            delivery: e.delivery,
            from: e.from,
            id: e.id.map(|i| i.to_string()),
            kind: e.msg_kind,
            reason: e.reason,
            to: e.to,
            sent_ms: e.sent_ms,
            at_ms: Some(e.at_ms),
        };
        let data = match e.kind.as_str() {
            "message.sent" => EventData::MessageSent(data),
            "message.delivered" => EventData::MessageDelivered(data),
            "message.refused" => EventData::MessageRefused(data),
            "message.bounced" => EventData::MessageBounced(data),
            _ => return None,
        };
        Some(data)
    });
    shared.events(Some(agent), data.collect()).await;
}

//! The agent's view of the hub's peer registry: keys and endpoints of other
//! agents (and the hub's key), fetched from `GET /api/v1/peers` and cached,
//! so verifying and sending need no hub while it is cached. A sender the
//! cache does not know triggers a refresh, at most one per
//! [`MIN_REFRESH`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use torch_api::msg::{HUB_SENDER, PeerCard, PeerList, parse_public_key};

/// Shortest time between two refreshes of the cache.
const MIN_REFRESH: Duration = Duration::from_millis(250);
/// How long a hub request may take.
const HUB_TIMEOUT: Duration = Duration::from_secs(3);

/// What we know of a peer.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) key: Option<VerifyingKey>,
    pub(crate) endpoint: Option<String>,
    pub(crate) name: String,
}

/// Why a hub request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HubError {
    /// Could not connect or no answer in time.
    #[error("hub unreachable: {0}")]
    Unreachable(String),
    /// The hub answered with an error.
    #[error("hub answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Its body.
        body: String,
    },
}

/// Calls the hub's REST API with the agent's token.
pub(crate) struct HubClient {
    bases: Vec<String>,
    token: String,
    http: reqwest::Client,
}

impl HubClient {
    /// A client for the comma-separated `hub_url`s.
    pub(crate) fn new(hub_url: &str, token: String, http: reqwest::Client) -> Self {
        let bases = hub_url
            .split(',')
            .map(|h| {
                h.trim()
                    .trim_end_matches('/')
                    .replacen("ws://", "http://", 1)
            })
            .filter(|h| !h.is_empty())
            .collect();
        HubClient { bases, token, http }
    }

    /// GET or POST (`body`) `path` on the first hub that answers.
    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, HubError> {
        let mut last = HubError::Unreachable("no hub URL".into());
        for base in &self.bases {
            let url = format!("{base}{path}");
            let req = match body {
                Some(b) => self.http.post(&url).json(b),
                None => self.http.get(&url),
            };
            let resp = match req
                .bearer_auth(&self.token)
                .timeout(HUB_TIMEOUT)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    last = HubError::Unreachable(e.to_string());
                    continue;
                }
            };
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| HubError::Unreachable(e.to_string()))?;
            if !status.is_success() {
                return Err(HubError::Status {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
            return serde_json::from_slice(&bytes).map_err(|e| HubError::Status {
                status: status.as_u16(),
                body: format!("unexpected answer: {e}"),
            });
        }
        Err(last)
    }
}

#[derive(Default)]
struct Cache {
    peers: HashMap<String, Peer>,
    hub_key: Option<VerifyingKey>,
    refreshed: Option<Instant>,
}

/// Peers by id, from the hub.
#[derive(Default)]
pub(crate) struct PeerCache {
    cache: Mutex<Cache>,
    /// One refresh at a time: lookups that miss wait for the refresh in
    /// flight instead of giving up while it runs.
    refreshing: tokio::sync::Mutex<()>,
}

impl PeerCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A cached peer (`hub` is the hub, with its key).
    pub(crate) fn get(&self, id: &str) -> Option<Peer> {
        let c = self.lock();
        if id == HUB_SENDER {
            return c.hub_key.map(|k| Peer {
                key: Some(k),
                endpoint: None,
                name: HUB_SENDER.into(),
            });
        }
        c.peers.get(id).cloned()
    }

    /// The peer, refreshing the cache from the hub when it is unknown (or
    /// when `stale`, e.g. its endpoint stopped answering).
    pub(crate) async fn lookup(&self, hub: &HubClient, id: &str, stale: bool) -> Option<Peer> {
        if !stale && let Some(p) = self.get(id) {
            return Some(p);
        }
        let asked = Instant::now();
        let _one = self.refreshing.lock().await;
        let last = self.lock().refreshed;
        // A refresh that started after we asked already answers us.
        if last.is_some_and(|t| t >= asked) {
            return self.get(id);
        }
        let due = last.is_none_or(|t| t.elapsed() >= MIN_REFRESH);
        if due && let Err(e) = self.load(hub).await {
            debug!(error = %e, "could not refresh the peer cache");
        }
        self.get(id)
    }

    /// Reloads every peer from the hub.
    pub(crate) async fn refresh(&self, hub: &HubClient) -> Result<Vec<PeerCard>, HubError> {
        let _one = self.refreshing.lock().await;
        self.load(hub).await
    }

    async fn load(&self, hub: &HubClient) -> Result<Vec<PeerCard>, HubError> {
        self.lock().refreshed = Some(Instant::now());
        let list: PeerList = hub.call::<(), _>("/api/v1/peers", None).await?;
        let mut c = self.lock();
        if let Some(k) = list
            .hub_key
            .as_deref()
            .and_then(|k| parse_public_key(k).ok())
        {
            c.hub_key = Some(k);
        }
        for p in &list.peers {
            c.peers.insert(
                p.agent_id.to_string(),
                Peer {
                    key: p
                        .public_key
                        .as_deref()
                        .and_then(|k| parse_public_key(k).ok()),
                    endpoint: p.endpoint.clone(),
                    name: p.name.clone(),
                },
            );
        }
        Ok(list.peers)
    }

    /// Sets the hub's key (from `Welcome`).
    pub(crate) fn set_hub_key(&self, key: VerifyingKey) {
        self.lock().hub_key = Some(key);
    }
}

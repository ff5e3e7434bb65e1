//! Opening the WebSocket to the hub, and the reconnect backoff.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::{Connector, connect_async_tls_with_config};

use crate::error::AgentError;
use crate::writer::Ws;

/// Limit on TCP connect plus WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a connection attempt failed.
pub(crate) enum ConnectError {
    /// Retrying cannot help (bad token or config).
    Fatal(AgentError),
    /// Try again later.
    Retry(String),
}

/// Builds the upgrade request; fails only for a token that cannot be a header.
pub(crate) fn request(url: &str, token: &str) -> Result<Request, AgentError> {
    let mut req = url.into_client_request().map_err(|e| AgentError::Config {
        field: "hub_url",
        problem: e.to_string(),
    })?;
    let value =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| AgentError::Config {
            field: "token",
            problem: "contains characters not allowed in an HTTP header".into(),
        })?;
    req.headers_mut().insert(header::AUTHORIZATION, value);
    Ok(req)
}

/// Connects once; a `wss://` hub is verified with `tls`.
pub(crate) async fn connect(
    url: &str,
    token: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Ws, ConnectError> {
    let req = request(url, token).map_err(ConnectError::Fatal)?;
    let connecting = connect_async_tls_with_config(req, None, true, Some(Connector::Rustls(tls)));
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => Err(ConnectError::Retry(format!(
            "no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(WsError::Http(resp)))
            if resp.status() == StatusCode::UNAUTHORIZED
                || resp.status() == StatusCode::FORBIDDEN =>
        {
            Err(ConnectError::Fatal(AgentError::Auth {
                detail: format!("HTTP {}", resp.status()),
            }))
        }
        Ok(Err(WsError::Http(resp))) => Err(ConnectError::Retry(format!("HTTP {}", resp.status()))),
        Ok(Err(e)) => match torch_tls::explain(&e) {
            Some(detail) => Err(ConnectError::Fatal(AgentError::Tls { detail })),
            None => Err(ConnectError::Retry(e.to_string())),
        },
    }
}

/// Exponential backoff from 100 ms to 5 s with jitter (each delay is drawn
/// from the upper half of its step, so agents do not reconnect in lockstep).
pub(crate) struct Backoff {
    step: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        // Seeded from std's per-process random hash keys.
        let seed = RandomState::new().build_hasher().finish() | 1;
        Backoff {
            step: BACKOFF_MIN,
            rng: seed,
        }
    }

    /// Back to the shortest delay (after a session was established).
    pub(crate) fn reset(&mut self) {
        self.step = BACKOFF_MIN;
    }

    /// The next delay.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(BACKOFF_MAX);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        step.mul_f64(0.5 + 0.5 * frac)
    }
}

/// Redirects followed in a row before pausing.
const MAX_REDIRECTS: u32 = 3;

/// Where the next connection goes, and how long to wait before it: the
/// configured hubs in turn (the next one after a hub cannot be reached), or
/// (for one attempt) the leader a follower hub named; backoff between
/// failures. Shared by the agent and the node loops.
pub(crate) struct Dialer {
    urls: Vec<String>,
    /// How `wss://` hubs are verified.
    tls: Arc<rustls::ClientConfig>,
    /// The configured hub in use.
    at: usize,
    endpoint: &'static str,
    next: Option<String>,
    /// The current attempt goes to a leader named by a redirect.
    redirected: bool,
    redirects: u32,
    backoff: Backoff,
}

impl Dialer {
    /// Dials `urls` (WebSocket URLs of the configured hubs, at least one)
    /// in turn, verifying `wss://` ones with `tls`; redirects go to
    /// `<leader>/api/v1/<endpoint>`.
    pub(crate) fn new(
        urls: Vec<String>,
        endpoint: &'static str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        Dialer {
            urls,
            tls,
            at: 0,
            endpoint,
            next: None,
            redirected: false,
            redirects: 0,
            backoff: Backoff::new(),
        }
    }

    /// How `wss://` hubs are verified.
    pub(crate) fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// The URL to connect to now.
    pub(crate) fn target(&mut self) -> String {
        match self.next.take() {
            Some(leader) => {
                self.redirected = true;
                leader
            }
            None => {
                self.redirected = false;
                self.urls.get(self.at).cloned().unwrap_or_default()
            }
        }
    }

    /// The attempt could not reach its hub: a configured hub is skipped for
    /// the next one (a redirect's leader is not a configured hub: the next
    /// attempt goes back to the hub that named it).
    pub(crate) fn unreachable(&mut self) {
        if !self.redirected && !self.urls.is_empty() {
            self.at = (self.at + 1) % self.urls.len();
        }
    }

    /// A session was established: failures start again from the shortest delay.
    pub(crate) fn welcomed(&mut self) {
        self.backoff.reset();
        self.redirects = 0;
    }

    /// A follower named `leader`: true when the next attempt should go there
    /// at once; false (logged) to pause and retry the configured hub.
    pub(crate) fn redirect(&mut self, leader: &str) -> bool {
        match crate::config::endpoint_url(leader, self.endpoint) {
            Ok(to) if self.redirects < MAX_REDIRECTS => {
                self.redirects += 1;
                tracing::info!(leader = %leader, "this hub is a follower; connecting to the leader");
                self.next = Some(to);
                true
            }
            Ok(_) => {
                tracing::warn!("too many redirects between hubs; pausing");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "the hub named an unusable leader url");
                false
            }
        }
    }

    /// The pause before the next attempt after a failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.backoff.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_jitters_and_resets() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN);
        let later: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= BACKOFF_MAX));
        assert!(later[9] >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);

        let tls = torch_tls::client_config(None).unwrap();
        let mut d = Dialer::new(vec!["ws://a".into(), "ws://b".into()], "agent/ws", tls);
        assert_eq!(d.target(), "ws://a");
        d.unreachable();
        assert_eq!(d.target(), "ws://b", "an unreachable hub is skipped");
        assert!(d.redirect("http://leader:1"));
        assert_eq!(d.target(), "ws://leader:1/api/v1/agent/ws");
        d.unreachable();
        assert_eq!(d.target(), "ws://b", "back to the hub that redirected");
        d.unreachable();
        assert_eq!(d.target(), "ws://a", "round and round");

        let req = request("ws://127.0.0.1:1/api/v1/agent/ws", "tok").unwrap();
        assert_eq!(req.headers()[header::AUTHORIZATION], "Bearer tok");
        assert!(matches!(
            request("ws://127.0.0.1:1/x", "bad\ntoken"),
            Err(AgentError::Config { field: "token", .. })
        ));
    }
}

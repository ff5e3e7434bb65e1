//! Opening the WebSocket to the hub, and the reconnect backoff.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio_tungstenite::connect_async_with_config;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};

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

/// Connects once.
pub(crate) async fn connect(url: &str, token: &str) -> Result<Ws, ConnectError> {
    let req = request(url, token).map_err(ConnectError::Fatal)?;
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_async_with_config(req, None, true)).await {
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
        Ok(Err(e)) => Err(ConnectError::Retry(e.to_string())),
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

        let req = request("ws://127.0.0.1:1/api/v1/agent/ws", "tok").unwrap();
        assert_eq!(req.headers()[header::AUTHORIZATION], "Bearer tok");
        assert!(matches!(
            request("ws://127.0.0.1:1/x", "bad\ntoken"),
            Err(AgentError::Config { field: "token", .. })
        ));
    }
}

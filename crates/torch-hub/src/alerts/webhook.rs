//! Webhook delivery of alert changes: each body is POSTed to the configured
//! URL with its HMAC-SHA256 signature, retried with backoff, by a task of
//! its own. The evaluator only queues (a bounded queue; when it is full the
//! change is dropped with a warning), so a slow or dead receiver never
//! holds the hub up.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::auth::hmac_sha256;

/// Changes waiting for delivery, at most.
const QUEUE: usize = 256;
/// Attempts per change (the first and four retries).
const ATTEMPTS: u32 = 5;
/// Wait before the first retry; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait for one POST.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Header holding `sha256=<hex HMAC-SHA256 of the body>`.
pub(crate) const SIGNATURE_HEADER: &str = "x-torch-signature";
/// Header holding the event kind (`alert.firing`, `alert.resolved`).
pub(crate) const EVENT_HEADER: &str = "x-torch-event";

/// The signature header's value for `body` under `secret`.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

/// Queues changes for the delivery task.
pub(super) struct Webhook {
    tx: mpsc::Sender<(&'static str, Vec<u8>)>,
}

impl Webhook {
    /// Queues `body` (a JSON alert change of `kind`); never waits.
    pub(super) fn send(&self, kind: &'static str, body: Vec<u8>) {
        if self.tx.try_send((kind, body)).is_err() {
            warn!(
                kind,
                "alert webhook queue full or closed; change not delivered"
            );
        }
    }
}

/// A webhook sender and the task that delivers (run it until `shutdown`).
pub(super) fn start(
    url: String,
    secret: Option<String>,
    shutdown: CancellationToken,
) -> (Webhook, impl Future<Output = ()> + Send) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Webhook { tx }, deliver(url, secret, rx, shutdown))
}

async fn deliver(
    url: String,
    secret: Option<String>,
    mut rx: mpsc::Receiver<(&'static str, Vec<u8>)>,
    shutdown: CancellationToken,
) {
    let http = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build the alert webhook client; webhooks are off");
            return;
        }
    };
    loop {
        let (kind, body) = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = shutdown.cancelled() => return,
        };
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let mut req = http
                .post(&url)
                .header("content-type", "application/json")
                .header(EVENT_HEADER, kind)
                .body(body.clone());
            if let Some(s) = &secret {
                req = req.header(SIGNATURE_HEADER, signature(s, &body));
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    debug!(kind, attempt, "alert webhook delivered");
                    break;
                }
                Ok(r) => warn!(kind, attempt, status = %r.status(), "alert webhook refused"),
                Err(e) => warn!(kind, attempt, error = %e, "alert webhook failed"),
            }
            if attempt == ATTEMPTS {
                warn!(kind, "alert webhook given up after {ATTEMPTS} attempts");
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff *= 2;
        }
    }
}

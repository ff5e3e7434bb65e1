//! A small typed client for the hub's REST API.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Result;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use torch_api::rest::ErrorBody;
use torch_core::EventKind;

use crate::exit::{BAD_INPUT, DEADLOCK, ERROR, UNREACHABLE, WAIT_TIMEOUT, exit};

/// How every client of this process verifies `https://` hubs: set once
/// from `--ca-file` before any command runs.
static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Reads `--ca-file` (the system's roots without one) for every client.
pub(crate) fn set_ca_file(ca_file: Option<PathBuf>) -> Result<()> {
    if TLS.get().is_some() {
        return Ok(());
    }
    let cfg = torch_tls::client_config(ca_file.as_deref())
        .map_err(|e| exit(BAD_INPUT, format!("--ca-file: {e}")))?;
    let _ = TLS.set(cfg);
    Ok(())
}

/// The TLS configuration clients use (the system's roots if unset).
fn tls() -> Result<rustls::ClientConfig> {
    if TLS.get().is_none() {
        set_ca_file(None)?;
    }
    TLS.get()
        .map(|c| rustls::ClientConfig::clone(c))
        .ok_or_else(|| exit(ERROR, "no TLS configuration"))
}

/// Talks to a hub with one token. Given several hubs (comma-separated, hubs
/// sharing a store), a request that cannot connect to one goes to the next;
/// the one that answered is used first from then on.
#[derive(Clone)]
pub(crate) struct Client {
    bases: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(hub: &str, token: Option<String>) -> Result<Client> {
        Client::with_timeout(hub, token, Duration::from_secs(120))
    }

    /// A client whose requests may take up to `timeout` (long waits).
    pub(crate) fn with_timeout(
        hub: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Client> {
        Client::build(hub, token, timeout, torch_api::ENV_HUB_SOCKET)
    }

    /// A client for the task's own agent runtime at `url` (inside a task):
    /// through the agent's per-task socket when the task's network is `hub`.
    pub(crate) fn for_agent(url: &str, token: Option<String>, timeout: Duration) -> Result<Client> {
        Client::build(url, token, timeout, torch_api::msg::ENV_AGENT_SOCKET)
    }

    /// A client whose connections go through the Unix socket named by the
    /// environment variable `socket_env`, when it is set.
    fn build(
        hub: &str,
        token: Option<String>,
        timeout: Duration,
        socket_env: &str,
    ) -> Result<Client> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls()?)
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .pool_max_idle_per_host(64);
        // Inside a task whose network is `hub`: the agent's per-task sockets
        // are the only way out.
        if let Some(sock) = std::env::var_os(socket_env).filter(|s| !s.is_empty()) {
            builder = builder.unix_socket(std::path::PathBuf::from(sock));
        }
        let http = builder
            .build()
            .map_err(|e| exit(ERROR, format!("building HTTP client: {e}")))?;
        let bases: Vec<String> = hub
            .split(',')
            .map(|h| h.trim().trim_end_matches('/').to_string())
            .filter(|h| !h.is_empty())
            .collect();
        if bases.is_empty() {
            return Err(exit(BAD_INPUT, "no hub URL given (--hub or TORCH_HUB)"));
        }
        Ok(Client {
            bases: Arc::new(bases),
            current: Arc::new(AtomicUsize::new(0)),
            token,
            http,
        })
    }

    /// The hubs, as given.
    fn hubs(&self) -> String {
        self.bases.join(",")
    }

    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        // A request that could not connect was not sent: the next hub may
        // take it, whatever the method.
        let n = self.bases.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut attempt = 0;
        let (url, resp) = loop {
            let at = (first + attempt) % n;
            let url = format!("{}{}", self.bases[at], path);
            let mut req = self.http.request(method.clone(), &url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    self.current.store(at, Ordering::Relaxed);
                    break (url, resp);
                }
                Err(e) if let Some(why) = torch_tls::explain(&e) => {
                    return Err(exit(ERROR, format!("cannot trust the hub at {url}: {why}")));
                }
                Err(e) if e.is_connect() && attempt + 1 < n => attempt += 1,
                Err(e) if e.is_connect() || e.is_timeout() => {
                    return Err(exit(
                        UNREACHABLE,
                        format!(
                            "hub unreachable at {}: {e} (is `torch serve` or `torch up` running? set --hub or TORCH_HUB)",
                            self.hubs()
                        ),
                    ));
                }
                Err(e) => return Err(exit(UNREACHABLE, format!("request to {url} failed: {e}"))),
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| exit(UNREACHABLE, format!("reading response from {url}: {e}")))?;
        if status.is_success() {
            if bytes.is_empty() {
                return serde_json::from_slice(b"null").map_err(|e| {
                    exit(ERROR, format!("unexpected empty response from {url}: {e}"))
                });
            }
            return serde_json::from_slice(&bytes)
                .map_err(|e| exit(ERROR, format!("unexpected response from {url}: {e}")));
        }
        let (code, mut message, details, limit) = match serde_json::from_slice::<ErrorBody>(&bytes)
        {
            Ok(b) => (b.code, b.message, b.details, b.limit),
            Err(_) => (
                status.as_str().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
                Vec::new(),
                None,
            ),
        };
        // A refusal by a limit names it, and when to retry.
        if let Some(limit) = &limit
            && !message.contains(limit.as_str())
        {
            message.push_str(&format!(" (limit: {limit})"));
        }
        if let Some(after) = &retry_after {
            message.push_str(&format!(" (Retry-After: {after} s)"));
        }
        let exit_code = match (status, code.as_str()) {
            (_, "deadlock") => DEADLOCK,
            (_, "wait_timeout") => WAIT_TIMEOUT,
            (StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE, _) => BAD_INPUT,
            _ => ERROR,
        };
        let mut msg = format!("hub answered {} ({code}): {message}", status.as_u16());
        if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
            msg.push_str(" — pass --token or set TORCH_TOKEN");
        }
        if details.len() > 1 {
            msg = format!(
                "hub answered {} ({code}):\n  {}",
                status.as_u16(),
                details.join("\n  ")
            );
        }
        Err(exit(exit_code, msg))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send::<(), T>(Method::GET, path, None).await
    }

    pub(crate) async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send(Method::PUT, path, Some(body)).await
    }
}

/// Follows the event log with long polls, riding out a hub restart: a failed
/// poll is retried every second, up to `max_failures` in a row.
pub(crate) struct EventFollower {
    pub(crate) after: u64,
    streams: String,
    wait_ms: u64,
    max_failures: u32,
    failures: u32,
}

impl EventFollower {
    pub(crate) fn new(after: u64, streams: &str, wait_ms: u64, max_failures: u32) -> Self {
        EventFollower {
            after,
            streams: streams.to_string(),
            wait_ms,
            max_failures,
            failures: 0,
        }
    }

    /// Follows the streams that `kinds` are written on.
    pub(crate) fn of_kinds(
        after: u64,
        kinds: &[EventKind],
        wait_ms: u64,
        max_failures: u32,
    ) -> Self {
        let mut streams: Vec<&str> = kinds.iter().map(|k| k.stream()).collect();
        streams.sort_unstable();
        streams.dedup();
        EventFollower::new(after, &streams.join(","), wait_ms, max_failures)
    }

    /// The next page of events (possibly empty after a quiet long poll).
    pub(crate) async fn next(&mut self, client: &Client) -> Result<torch_api::rest::EventPage> {
        loop {
            let path = format!(
                "/api/v1/events?after={}&stream={}&wait_ms={}&limit=1000",
                self.after, self.streams, self.wait_ms
            );
            match client.get::<torch_api::rest::EventPage>(&path).await {
                Ok(page) => {
                    self.failures = 0;
                    self.after = page.last_id;
                    return Ok(page);
                }
                Err(e) => {
                    self.failures += 1;
                    if self.failures > self.max_failures {
                        return Err(e);
                    }
                    tracing::warn!("{e:#}; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }
}

//! A small typed client for the hub's REST API.

use std::time::Duration;

use anyhow::Result;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use torch_api::rest::ErrorBody;

use crate::exit::{BAD_INPUT, ERROR, UNREACHABLE, exit};

/// Talks to one hub with one token.
#[derive(Clone)]
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(hub: &str, token: Option<String>) -> Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| exit(ERROR, format!("building HTTP client: {e}")))?;
        Ok(Client {
            base: hub.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                exit(
                    UNREACHABLE,
                    format!("hub unreachable at {}: {e} (is `torch serve` or `torch up` running? set --hub or TORCH_HUB)", self.base),
                )
            } else {
                exit(UNREACHABLE, format!("request to {url} failed: {e}"))
            }
        })?;
        let status = resp.status();
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
        let (code, message, details) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.code, b.message, b.details),
            Err(_) => (
                status.as_str().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
                Vec::new(),
            ),
        };
        let exit_code = match status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => BAD_INPUT,
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
}

//! `ApiError`: status code plus a JSON body `{code, message}` with a stable `code`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use torch_api::rest::ErrorBody;
use torch_store::StoreError;
use tracing::error;

/// `Retry-After` of a write refused because the store is full: freeing
/// memory takes an operator or draining, so clients should not hammer it.
const STORE_FULL_RETRY_AFTER_SECS: u32 = 5;

/// An error answer of the API.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) details: Vec<String>,
    pub(crate) retry_after: Option<u32>,
    /// For a refused spawn: the limit that refused it.
    pub(crate) limit: Option<String>,
    /// For a submission shed by priority: the floor it was below.
    pub(crate) floor: Option<i32>,
    /// For a refused wait: the cycle it would have closed (boxed: errors
    /// stay small).
    pub(crate) cycle: Option<Box<torch_core::waits::Deadlock>>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            limit: None,
            floor: None,
            cycle: None,
        }
    }
    pub(crate) fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub(crate) fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub(crate) fn bad_request(code: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, m)
    }
    pub(crate) fn not_found(code: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, m)
    }
    pub(crate) fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => {
                ApiError::not_found("task_not_found", format!("task {id} not found"))
            }
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            StoreError::Invalid(m) => ApiError::bad_request("invalid_request", m),
            StoreError::LimitExceeded(m) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "limit_exceeded", m)
            }
            StoreError::Unavailable(m) => {
                error!(error = %m, "store unavailable");
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable; retry later",
                );
                err.retry_after = Some(1);
                err
            }
            StoreError::Full(m) => {
                error!(error = %m, "store full (maxmemory); write refused, nothing was written");
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_full",
                    "the store is full (Redis maxmemory reached); nothing was written; \
                     retry later or raise maxmemory",
                );
                err.retry_after = Some(STORE_FULL_RETRY_AFTER_SECS);
                err
            }
            StoreError::Corrupt(m) => {
                error!(error = %m, "store data corrupt");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (see the hub log)",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let why = crate::audit::api::Refusal(format!("{}: {}", self.code, self.message));
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
            details: self.details,
            limit: self.limit,
            floor: self.floor,
            cycle: self.cycle.map(|d| d.cycle).unwrap_or_default(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        resp.extensions_mut().insert(why);
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Largest plain-text error body [`json_errors`] reads to rewrite.
const MAX_PLAIN_ERROR: usize = 64 * 1024;

/// Gives every error answer the error body: the rejections of axum's own
/// extractors (a bad query string, a body that is not JSON, a missing
/// WebSocket upgrade) answer in plain text; this layer rewrites them as
/// `{code, message}` with the same status and headers.
pub(crate) async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_string();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message
    };
    let mut out = ApiError::new(status, code, message).into_response();
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in parts.headers.drain().filter_map(|(n, v)| Some((n?, v))) {
        out.headers_mut().entry(name).or_insert(value);
    }
    out
}

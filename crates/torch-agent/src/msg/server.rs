//! The agent's own HTTP endpoint: peers POST envelopes to
//! [`PEER_MESSAGES_PATH`] (the signature is the credential); the agent's
//! tasks call [`LOCAL_PREFIX`]`/msg/{send,inbox,ack}` with their task token
//! (`TORCH_TASK_TOKEN`), which only a task running on this agent holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use torch_api::msg::{
    AckRequest, AckResult, Delivery, Inbox, LOCAL_PREFIX, PEER_MESSAGES_PATH, PeerAck, SendRequest,
    SendResult, SignedEnvelope,
};
use torch_api::rest::ErrorBody;

use super::Messenger;
use super::receive::{Refused, Taken};
use super::send::SendError;

/// Largest request body: a full message plus its envelope.
const MAX_REQUEST: usize = 96 * 1024;
/// Longest inbox wait.
const MAX_WAIT: Duration = Duration::from_secs(300);

type St = State<Arc<Messenger>>;

/// The routes.
pub(crate) fn router(m: Arc<Messenger>) -> Router {
    Router::new()
        .route(PEER_MESSAGES_PATH, post(peer_message))
        .route(&format!("{LOCAL_PREFIX}/msg/send"), post(send))
        .route(&format!("{LOCAL_PREFIX}/msg/inbox"), get(inbox))
        .route(&format!("{LOCAL_PREFIX}/msg/ack"), post(ack))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(m)
}

/// Serves the endpoint on `listener` until `shutdown`.
pub(crate) async fn serve(listener: TcpListener, m: Arc<Messenger>, shutdown: CancellationToken) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let app = router(m);
    // Answers are small: no Nagle delay behind a peer's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, ?addr, "the agent's message endpoint stopped");
    }
}

/// An error answer: status, `{code, message, limit}`, maybe `Retry-After`.
struct Fail {
    status: StatusCode,
    code: &'static str,
    message: String,
    limit: Option<String>,
    retry_after: Option<Duration>,
}

impl Fail {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Fail {
            status,
            code,
            message: message.into(),
            limit: None,
            retry_after: None,
        }
    }

    fn limited(limit: String, retry_after: Duration, message: String) -> Self {
        Fail {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            message,
            limit: Some(limit),
            retry_after: Some(retry_after),
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.into(),
            message: self.message,
            details: Vec::new(),
            limit: self.limit,
            floor: None,
            cycle: Vec::new(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

async fn peer_message(State(m): St, body: Bytes) -> Result<Json<PeerAck>, Fail> {
    let signed: SignedEnvelope = serde_json::from_slice(&body).map_err(|e| {
        m.event(super::event_of(
            "message.refused",
            None,
            Some(Delivery::Direct),
            Some(format!("malformed: {e}")),
        ));
        Fail::new(StatusCode::BAD_REQUEST, "malformed", e.to_string())
    })?;
    let id = signed.envelope.id;
    match m.receive(signed, Delivery::Direct).await {
        Ok(Taken::Stored) => Ok(Json(PeerAck {
            id,
            status: "stored".into(),
        })),
        Ok(Taken::Duplicate) => Ok(Json(PeerAck {
            id,
            status: "duplicate".into(),
        })),
        Err(e) => Err(refusal(e)),
    }
}

fn refusal(e: Refused) -> Fail {
    let msg = e.to_string();
    match e {
        Refused::RateLimited { retry_after, .. } => {
            Fail::limited("recipient_sender".into(), retry_after, msg)
        }
        Refused::InboxFull => Fail::limited("inbox".into(), Duration::from_secs(1), msg),
        Refused::WrongRecipient(_) => {
            Fail::new(StatusCode::MISDIRECTED_REQUEST, "wrong_recipient", msg)
        }
        Refused::Replay(_) => Fail::new(StatusCode::CONFLICT, "replay", msg),
        Refused::Expired => Fail::new(StatusCode::GONE, "expired", msg),
        Refused::UnknownSender(_) => Fail::new(StatusCode::FORBIDDEN, "unknown_sender", msg),
        Refused::BadSignature => Fail::new(StatusCode::FORBIDDEN, "bad_signature", msg),
        Refused::Malformed(_) => Fail::new(StatusCode::BAD_REQUEST, "malformed", msg),
        Refused::Unavailable | Refused::NotReady => {
            Fail::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg)
        }
    }
}

/// The caller's task token must belong to a task running here.
fn authorize(m: &Messenger, headers: &HeaderMap) -> Result<(), Fail> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token.and_then(|t| m.caller(t)) {
        Some(_) => Ok(()),
        None => Err(Fail::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a task token of a task running on this agent is required",
        )),
    }
}

async fn send(
    State(m): St,
    headers: HeaderMap,
    Json(req): Json<SendRequest>,
) -> Result<Json<SendResult>, Fail> {
    authorize(&m, &headers)?;
    m.send(req).await.map(Json).map_err(|e| {
        let msg = e.to_string();
        match e {
            SendError::RateLimited { limit, retry_after } => Fail::limited(limit, retry_after, msg),
            SendError::BadRequest(_) => Fail::new(StatusCode::BAD_REQUEST, "bad_request", msg),
            SendError::NotFound(_) => Fail::new(StatusCode::NOT_FOUND, "recipient_not_found", msg),
            SendError::Gone(_) => Fail::new(StatusCode::GONE, "recipient_gone", msg),
            SendError::Refused(_) => Fail::new(StatusCode::FORBIDDEN, "refused", msg),
            SendError::Unreachable(_) | SendError::NotReady => {
                Fail::new(StatusCode::SERVICE_UNAVAILABLE, "undeliverable", msg)
            }
        }
    })
}

/// Query of the inbox.
#[derive(Debug, Deserialize)]
struct InboxQuery {
    thread: Option<String>,
    wait_ms: Option<u64>,
    limit: Option<usize>,
}

async fn inbox(
    State(m): St,
    headers: HeaderMap,
    Query(q): Query<InboxQuery>,
) -> Result<Json<Inbox>, Fail> {
    authorize(&m, &headers)?;
    let limit = q.limit.unwrap_or(1_000).clamp(1, 10_000);
    let mut changes = m.inbox().subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    loop {
        changes.borrow_and_update();
        let messages = m.inbox().list(q.thread.as_deref(), limit);
        if !messages.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(Inbox { messages }));
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Ok(Json(Inbox::default()));
        }
    }
}

async fn ack(
    State(m): St,
    headers: HeaderMap,
    Json(req): Json<AckRequest>,
) -> Result<Json<AckResult>, Fail> {
    authorize(&m, &headers)?;
    let acked = m.inbox().ack(&req.ids).map_err(|e| {
        super::inbox_failed(&e);
        Fail::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "inbox unavailable",
        )
    })?;
    Ok(Json(AckResult { acked }))
}

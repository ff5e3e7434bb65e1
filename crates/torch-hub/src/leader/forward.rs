//! Forwarding to the leader. Each route declares, where it is registered
//! (`api::routes`), whether it needs the leader ([`Leader`]); on a
//! follower, this middleware relays those to the leader. A submission that
//! cannot reach the leader (none elected yet, or its address refuses
//! connections) is accepted here and handed off through the store (see
//! `handoff`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use torch_store::Store;
use tracing::warn;

use crate::api::ApiError;
use crate::hub::Shared;

/// Whether a route must reach the leader's engine when a follower gets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Leader {
    /// Served by any hub, from the store.
    Any,
    /// Relayed to the leader: it needs the engine or the lifecycle manager.
    Forward,
    /// A submission: relayed to the leader; accepted here and handed off
    /// through the store when the leader cannot be reached.
    Submit,
    /// A WebSocket session: a follower redirects the client to the leader
    /// inside the protocol (`not_leader` with the leader's URL).
    Redirect,
}

impl Leader {
    /// Whether the forwarding middleware wraps routes with this decision.
    pub(crate) fn forwards(self) -> bool {
        matches!(self, Leader::Forward | Leader::Submit)
    }
}

/// Middleware on the routes that declare [`Leader::Forward`] or
/// [`Leader::Submit`]: on the leader it does nothing; on a follower it
/// relays the request to the leader (see the module docs).
pub(crate) async fn forward<S: Store>(
    State((shared, decision)): State<(Arc<Shared<S>>, Leader)>,
    req: Request,
    next: Next,
) -> Response {
    let Some(leader) = shared.cluster.follower_of() else {
        return next.run(req).await;
    };
    // The body is read once: a submission may be relayed and then, if the
    // leader could not be reached, handled here.
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, shared.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("reading the request: {e} (hub.max-body-bytes is the limit)"),
            )
            .into_response();
        }
    };
    if decision == Leader::Submit {
        return submit_via_leader(&shared, leader, parts, body, next).await;
    }
    let Some(base) = leader else {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            "no hub is the leader right now (an election is under way); retry shortly",
        );
        e.retry_after = Some(1);
        return e.into_response();
    };
    relay(&shared, &base, &parts, body)
        .await
        .unwrap_or_else(|u| leader_unreachable(u.message))
}

/// `502 leader_unreachable` with `Retry-After: 1`.
fn leader_unreachable(message: String) -> Response {
    let mut e = ApiError::new(StatusCode::BAD_GATEWAY, "leader_unreachable", message);
    e.retry_after = Some(1);
    e.into_response()
}

/// A submission on a follower: to the leader when it answers; accepted
/// here (a hand-off) when there is no leader or the request never reached
/// it. When it may have reached the leader (the answer was lost), it is not
/// written again here: the client gets 502 and retries, which idempotency
/// keys make safe.
async fn submit_via_leader<S: Store>(
    shared: &Arc<Shared<S>>,
    leader: Option<String>,
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
    next: Next,
) -> Response {
    let why = match leader {
        None => "no hub is the leader right now".to_owned(),
        Some(base) => match relay(shared, &base, &parts, body.clone()).await {
            Ok(r) => return r,
            Err(Unrelayed {
                sent: false,
                message,
            }) => message,
            Err(Unrelayed { message, .. }) => return leader_unreachable(message),
        },
    };
    warn!(reason = %why, "accepting a submission on this follower and handing it off to the leader");
    let mut r = next.run(Request::from_parts(parts, Body::from(body))).await;
    if r.status().is_success() {
        r.headers_mut()
            .insert("x-torch-handed-off", HeaderValue::from_static("1"));
    }
    r
}

/// Why a request was not relayed; `sent` when it may have reached the
/// leader (the connection was made).
struct Unrelayed {
    sent: bool,
    message: String,
}

async fn relay<S: Store>(
    shared: &Shared<S>,
    base: &str,
    parts: &axum::http::request::Parts,
    body: axum::body::Bytes,
) -> Result<Response, Unrelayed> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut out = shared
        .cluster
        .proxy
        .request(parts.method.clone(), &url)
        .body(body);
    for h in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = parts.headers.get(&h) {
            out = out.header(h, v);
        }
    }
    let resp = out.send().await.map_err(|e| Unrelayed {
        sent: !e.is_connect(),
        message: format!("the leader at {base} did not answer: {e}"),
    })?;
    let status = resp.status();
    let mut headers = Vec::new();
    for h in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(v) = resp.headers().get(&h) {
            headers.push((h, v.clone()));
        }
    }
    let bytes = resp.bytes().await.map_err(|e| Unrelayed {
        sent: true,
        message: format!("reading the leader's answer: {e}"),
    })?;
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    for (h, v) in headers {
        r.headers_mut().insert(h, v);
    }
    r.headers_mut().insert(
        "x-torch-forwarded-to",
        HeaderValue::from_str(base).unwrap_or(HeaderValue::from_static("leader")),
    );
    Ok(r)
}

//! The audit log's API side: the middleware that records every API call
//! (who, what, on what, allowed or refused and why) and the admin routes
//! `/api/v1/audit`, `/api/v1/audit/verify` and `/api/v1/audit/checkpoint`.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use torch_store::audit::{AuditReport, verify_store};
use torch_store::{AuditCheckpoint, AuditEntry, AuditStore, NewAudit, Store, token_id};

use crate::api::{ApiError, Need, authorize};
use crate::auth::{Caller, bearer, hash_token};
use crate::hub::Shared;

tokio::task_local! {
    /// The caller `authorize` found for the request being served.
    static CALLER: Arc<Mutex<Option<Caller>>>;
}

/// Why a request was refused or failed: set on error responses by
/// `ApiError`, read by the middleware.
#[derive(Clone, Debug)]
pub(crate) struct Refusal(pub(crate) String);

/// Remembers who is calling, for the audit entry of this request.
pub(crate) fn note_caller(caller: &Caller) {
    let _ = CALLER.try_with(|slot| {
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(caller.clone());
    });
}

/// The action name of a route: a name for the acts the issue lists, else
/// `api.<method> <route>`.
fn action(method: &Method, route: &str) -> String {
    let named = match (method.as_str(), route) {
        ("POST", "/api/v1/tasks") => "task.submit",
        ("POST", "/api/v1/tasks/{id}/cancel") => "task.cancel",
        ("POST", "/api/v1/tasks/{id}/retry") => "task.retry",
        ("POST", "/api/v1/tokens") => "token.create",
        ("POST", "/api/v1/tokens/{id}/revoke") => "token.revoke",
        ("POST", "/api/v1/agents/spawn") => "agent.spawn",
        ("POST", "/api/v1/agents/{id}/drain") => "agent.drain",
        ("POST", "/api/v1/messages") => "message.send",
        ("POST", "/api/v1/messages/relay") => "message.relay",
        ("POST", "/api/v1/locks") => "lock.acquire",
        ("POST", "/api/v1/locks/release") => "lock.release",
        ("POST", "/api/v1/help") => "help.ask",
        ("POST", "/api/v1/help/{id}/accept") => "help.accept",
        ("PUT", "/api/v1/memory/{key}") => "memory.put",
        _ => return format!("api.{} {route}", method.as_str().to_ascii_lowercase()),
    };
    named.to_owned()
}

/// Routes not recorded: the dashboard's static files and the health probe.
fn unrecorded(route: &str) -> bool {
    matches!(route, "/" | "/ui/{file}" | "/api/v1/health")
}

/// The middleware on every route: serves the request, then records it
/// (before answering, for every method but `GET`).
pub(crate) async fn record<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if !shared.audit.enabled() || unrecorded(&route) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let target = req.uri().path().to_owned();
    let token = bearer(req.headers()).map(str::to_owned);
    let slot = Arc::new(Mutex::new(None));
    let res = CALLER.scope(slot.clone(), next.run(req)).await;
    let caller = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    let status = res.status();
    let (outcome, reason) = match status.as_u16() {
        401 | 403 | 429 => ("refused", refusal(&res)),
        s if s < 400 => ("allowed", String::new()),
        _ => ("failed", refusal(&res)),
    };
    let mut entry = NewAudit {
        at_ms: shared.now_ms(),
        action: action(&method, &route),
        target,
        outcome: outcome.into(),
        reason,
        detail: format!("{{\"status\":{}}}", status.as_u16()),
        ..NewAudit::default()
    };
    match caller {
        Some(Caller::Token {
            role, hash, tenant, ..
        }) => {
            entry.actor = format!("token:{}", token_id(&hash));
            entry.role = role.as_str().into();
            entry.tenant = tenant.unwrap_or_default();
        }
        Some(Caller::Task { task, fence }) => {
            entry.actor = format!("task:{task}");
            entry.role = "task".into();
            entry.detail = format!("{{\"status\":{},\"fence\":{fence}}}", status.as_u16());
        }
        None => {
            entry.actor = match token {
                Some(t) if !t.starts_with("tt1.") => {
                    format!("token:{}", token_id(&hash_token(&t)))
                }
                Some(_) => "task:invalid".into(),
                None => "anonymous".into(),
            };
        }
    }
    // A call that may have changed something is answered only once its
    // entry is stored (see the module docs of `audit`).
    if method == axum::http::Method::GET {
        shared.audit.record(entry);
    } else if !shared.audit.record_durable(entry).await {
        tracing::warn!(route, "answering a call whose audit entry was not stored");
    }
    res
}

fn refusal(res: &Response) -> String {
    res.extensions()
        .get::<Refusal>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| res.status().to_string())
}

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub(crate) struct ListQuery {
    /// Entries whose actor is or starts with this.
    pub(crate) actor: Option<String>,
    /// Entries whose action is or starts with this.
    pub(crate) action: Option<String>,
    /// Entries at or after this time (unix ms).
    pub(crate) since: Option<u64>,
    /// Entries after this seq.
    pub(crate) after: Option<u64>,
    /// Entries returned at most (default 100, at most 10,000).
    pub(crate) limit: Option<usize>,
}

/// The answer of `GET /api/v1/audit`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct AuditList {
    /// Matching entries, oldest first.
    pub(crate) entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent at the end.
    pub(crate) next_after: Option<u64>,
}

/// Whether `e` passes the filters of `q`.
pub(crate) fn matches(e: &AuditEntry, q: &ListQuery) -> bool {
    q.actor
        .as_deref()
        .is_none_or(|a| e.entry.actor.starts_with(a))
        && q.action
            .as_deref()
            .is_none_or(|a| e.entry.action.starts_with(a))
        && q.since.is_none_or(|s| e.entry.at_ms >= s)
}

/// Pages through the log from `q.after` for up to `q.limit` matches.
pub(crate) async fn list_entries<S: AuditStore>(
    store: &S,
    q: &ListQuery,
) -> Result<AuditList, torch_store::StoreError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let mut after = q.after.unwrap_or(0);
    let mut entries = Vec::new();
    loop {
        let page = store.audit_range(after, 5_000).await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            return Ok(AuditList {
                entries,
                next_after: None,
            });
        };
        for e in page {
            let seq = e.seq;
            if matches(&e, q) {
                entries.push(e);
                if entries.len() == limit {
                    return Ok(AuditList {
                        entries,
                        next_after: Some(seq),
                    });
                }
            }
        }
        after = last;
    }
}

/// `GET /api/v1/audit` (admin).
pub(crate) async fn list<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<AuditList>, ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    Ok(Json(list_entries(&*shared.store, &q).await?))
}

/// The body of `POST /api/v1/audit/verify`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub(crate) struct VerifyRequest {
    /// An exported checkpoint to check the log against (truncation).
    pub(crate) checkpoint: Option<AuditCheckpoint>,
}

/// `POST /api/v1/audit/verify` (admin): walks the whole chain.
pub(crate) async fn verify<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: axum::http::HeaderMap,
    body: Result<Json<VerifyRequest>, JsonRejection>,
) -> Result<Json<AuditReport>, ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    let req = match body {
        Ok(Json(r)) => r,
        Err(JsonRejection::MissingJsonContentType(_)) => VerifyRequest::default(),
        Err(e) => return Err(ApiError::new(e.status(), "bad_body", e.body_text())),
    };
    Ok(Json(
        verify_store(&*shared.store, req.checkpoint.as_ref()).await?,
    ))
}

/// `GET /api/v1/audit/checkpoint` (admin): the latest signed checkpoint.
pub(crate) async fn checkpoint<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<AuditCheckpoint>, ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    match shared.store.audit_checkpoints().await?.pop() {
        Some(cp) => Ok(Json(cp)),
        None => Err(ApiError::not_found(
            "no_checkpoint",
            "no audit checkpoint has been signed yet",
        )),
    }
}

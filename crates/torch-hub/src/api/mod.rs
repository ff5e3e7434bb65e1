//! REST API under `/api/v1`: router, authentication and the error type.

mod error;
mod help;
mod lifecycle;
mod locks;
mod messages;
mod misc;
mod observe;
pub(crate) mod openapi;
pub(crate) mod routes;
mod tasks;
mod teams;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tokens;
mod tokens;
mod ui;
mod usage;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use torch_api::rest::Role;
use torch_store::Store;

pub(crate) use error::ApiError;

use crate::auth::{Caller, bearer, hash_token};
use crate::hub::Shared;

/// Builds the router (see [`routes`]).
pub(crate) fn router<S: Store>(shared: Arc<Shared<S>>) -> Router {
    routes::build(shared).0
}

/// What a route requires.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need {
    /// admin or submitter
    Submit,
    /// admin only
    Admin,
    /// admin, agent, or node (the agents a node starts carry its token)
    Agent,
    /// admin or node; agent tokens too, as nodes used them before the node
    /// role existed
    Node,
    /// a task-scoped token
    Task,
    /// admin or submitter, or a task-scoped token (from inside a task)
    SubmitOrTask,
    /// Any token: admin, submitter, agent or a task's.
    Peer,
}

/// Authenticates the caller and checks the role: 401 without a valid token, 403 for the wrong role.
pub(crate) async fn authorize<S: Store>(
    shared: &Shared<S>,
    headers: &HeaderMap,
    need: Need,
) -> Result<Caller, ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>` (torch: --token or TORCH_TOKEN)",
        ));
    };
    let caller = if token.starts_with("tt1.") {
        match shared.auth.task_tokens.verify(token) {
            Some((task, fence)) => Caller::Task { task, fence },
            None => return Err(ApiError::unauthorized("invalid task token")),
        }
    } else {
        api_token(shared, token).await?
    };
    crate::audit::api::note_caller(&caller);
    let allowed = matches!(
        (&caller, need),
        (
            Caller::Token {
                role: Role::Admin,
                ..
            },
            Need::Submit | Need::Admin | Need::Agent | Need::Node | Need::SubmitOrTask | Need::Peer
        ) | (
            Caller::Token {
                role: Role::Submitter,
                ..
            },
            Need::Submit | Need::SubmitOrTask | Need::Peer
        ) | (
            Caller::Token {
                role: Role::Agent | Role::Node,
                ..
            },
            Need::Agent | Need::Node | Need::Peer
        ) | (
            Caller::Task { .. },
            Need::Task | Need::SubmitOrTask | Need::Peer
        )
    );
    if allowed {
        Ok(caller)
    } else {
        let role = match &caller {
            Caller::Token { role, .. } => role.as_str(),
            Caller::Task { .. } => "task",
        };
        let want = match need {
            Need::Submit => "admin or submitter",
            Need::Admin => "admin",
            Need::Agent => "admin, agent or node",
            Need::Node => "admin or node (or agent)",
            Need::Task => "a task-scoped token (TORCH_TASK_TOKEN inside a task)",
            Need::SubmitOrTask => "admin, submitter or a task-scoped token",
            Need::Peer => "any valid token",
        };
        let article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        Err(ApiError::forbidden(format!(
            "{article} {role} token cannot do this; it needs {want}"
        )))
    }
}

/// Authenticates an API token: known, not revoked, not expired, within
/// its rate; records its use about once a minute.
async fn api_token<S: Store>(shared: &Shared<S>, token: &str) -> Result<Caller, ApiError> {
    let hash = hash_token(token);
    let Some(known) = shared.auth.tokens.lookup(&*shared.store, &hash).await? else {
        return Err(ApiError::unauthorized("unknown token"));
    };
    let now = shared.now_ms();
    if known.revoked_ms.is_some() {
        return Err(ApiError::unauthorized(format!(
            "token {} ({}) was revoked; ask an admin for a new one",
            torch_store::token_id(&hash),
            known.name
        )));
    }
    if known.expires_ms.is_some_and(|e| now >= e) {
        return Err(ApiError::unauthorized(format!(
            "token {} ({}) has expired; ask an admin for a new one",
            torch_store::token_id(&hash),
            known.name
        )));
    }
    if let Err(wait) = shared.auth.rates.check(&hash) {
        let mut e = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this token is over its request rate ({}/s, bursts of {}); retry after {} ms",
                shared.cfg.token_rate_limit,
                shared.cfg.token_rate_burst.max(shared.cfg.token_rate_limit),
                wait.as_millis()
            ),
        );
        e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u32);
        return Err(e);
    }
    if shared.auth.tokens.due_touch(&hash, now)
        && let Err(e) = shared.store.touch_token(hash.clone(), now).await
    {
        tracing::debug!(error = %e, "could not record a token's use");
    }
    Ok(Caller::Token {
        role: known.role,
        name: known.name,
        hash,
        tenant: known.tenant,
        expires_ms: known.expires_ms,
    })
}

/// Asks the engine something and waits for the answer; 503 when it is gone.
pub(crate) async fn ask_engine<S: Store, T>(
    shared: &Shared<S>,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> crate::engine::Query,
) -> Result<T, ApiError> {
    shared.engine.ask(make).await.ok_or_else(stopping)
}

/// 503 while the hub shuts down.
pub(crate) fn stopping() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "hub_stopping",
        "the hub is shutting down",
    )
}

/// The task as a view, or 404.
pub(crate) async fn task_or_404<S: Store>(
    shared: &Shared<S>,
    id: torch_core::TaskId,
) -> Result<axum::Json<torch_api::rest::TaskView>, ApiError> {
    match shared.store.get_task(id).await? {
        Some(r) => Ok(axum::Json(views::task_view(r))),
        None => Err(ApiError::not_found(
            "task_not_found",
            format!("task {id} not found"),
        )),
    }
}

/// The agent holding `task` under `fence` (the caller's task token), or 403
/// when the lease has moved on (the token is stale).
pub(crate) async fn task_agent<S: Store>(
    shared: &Shared<S>,
    task: torch_core::TaskId,
    fence: u64,
) -> Result<torch_core::AgentId, ApiError> {
    match shared.store.lease_holder(task).await? {
        Some((agent, f)) if f == fence => Ok(agent),
        _ => Err(ApiError::forbidden(format!(
            "the task token of task {task} is stale: that attempt no longer holds the task"
        ))),
    }
}

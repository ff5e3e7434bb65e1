//! `/api/v1/tokens`: create, list and revoke API tokens (admin).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use torch_api::rest::{
    CreateTokenRequest, CreateTokenResponse, Role, TokenList, TokenState, TokenView,
};
use torch_store::{Store, TokenRecord};
use tracing::info;

use super::{ApiError, Need, authorize};
use crate::auth::{generate_token, hash_token};
use crate::hub::Shared;

type St<S> = State<Arc<Shared<S>>>;

/// Longest tenant name accepted.
const MAX_TENANT: usize = 128;

/// `POST /api/v1/tokens` (admin).
pub(crate) async fn create<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    body: Result<Json<CreateTokenRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CreateTokenResponse>), ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    let Json(req) = body.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    if let Some(t) = &req.tenant {
        if req.role == Role::Admin {
            return Err(ApiError::bad_request(
                "invalid_token",
                "an admin token sees every tenant: give --tenant only to other roles",
            ));
        }
        if t.is_empty() || t.len() > MAX_TENANT || t.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_token",
                format!("tenant must be 1..={MAX_TENANT} printable characters"),
            ));
        }
    }
    if req.expires_in_ms == Some(0) {
        return Err(ApiError::bad_request(
            "invalid_token",
            "expires must be longer than zero",
        ));
    }
    let now = shared.now_ms();
    let token = generate_token();
    let name = req
        .name
        .unwrap_or_else(|| format!("{} token", req.role.as_str()));
    let record = TokenRecord {
        hash: hash_token(&token),
        role: req.role.as_str().into(),
        name,
        created_ms: now,
        tenant: req.tenant,
        expires_ms: req.expires_in_ms.map(|d| now.saturating_add(d)),
        ..TokenRecord::default()
    };
    shared.store.put_token(record.clone()).await?;
    info!(token = %record.id(), role = %record.role, "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreateTokenResponse {
            token,
            id: record.id().to_owned(),
            role: req.role,
            name: record.name,
            tenant: record.tenant,
            expires_ms: record.expires_ms,
        }),
    ))
}

/// The listing of one token at `now`.
fn view(t: TokenRecord, now: u64) -> TokenView {
    let state = if t.revoked_ms.is_some() {
        TokenState::Revoked
    } else if t.is_live(now) {
        TokenState::Active
    } else {
        TokenState::Expired
    };
    TokenView {
        id: t.id().to_owned(),
        name: t.name,
        role: t.role,
        tenant: t.tenant,
        created_ms: t.created_ms,
        last_used_ms: t.last_used_ms,
        expires_ms: t.expires_ms,
        revoked_ms: t.revoked_ms,
        state,
    }
}

/// `GET /api/v1/tokens` (admin): every token, never a secret.
pub(crate) async fn list<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
) -> Result<Json<TokenList>, ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    let now = shared.now_ms();
    let tokens = shared.store.list_tokens().await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(|t| view(t, now)).collect(),
    }))
}

/// `POST /api/v1/tokens/{id}/revoke` (admin): the token stops working at
/// once, and the agent and node sessions opened with it are closed.
pub(crate) async fn revoke<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    let now = shared.now_ms();
    let Some(t) = shared.store.revoke_token(id.clone(), now).await? else {
        return Err(ApiError::not_found(
            "token_not_found",
            format!("no token with id {id:?} (see `torch token list`)"),
        ));
    };
    shared.auth.revoked(&t.hash);
    info!(token = %t.id(), role = %t.role, "token revoked");
    Ok(Json(view(t, now)))
}

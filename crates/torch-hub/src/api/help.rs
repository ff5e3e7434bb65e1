//! `/api/v1/help`: ask capable peers for help, list requests, accept one
//! (the first accept wins, in the store).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use torch_api::coord::{HelpAsk, HelpList, HelpView};
use torch_core::EventData;
use torch_core::events::coord::{HelpAccepted, HelpRequested};
use torch_core::waits::{Node, WaitEdge, WaitOn};
use torch_store::{HelpAccept, HelpRecord, Store, help_state};

use super::locks::{json, register_wait, wait_timeout, who};
use super::{ApiError, Need, ask_engine, authorize, stopping};
use crate::coord::help::offer;
use crate::coord::task_of;
use crate::hub::Shared;

type St<S> = State<Arc<Shared<S>>>;

/// How long a request stays open when the asker does not say.
const DEFAULT_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// The longest a request may stay open.
const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// After its expiry, how long a waiting asker gives the sweep to expire or
/// escalate the request before answering with it still open.
const SWEEP_GRACE_MS: u64 = 5_000;
/// Longest request text.
const MAX_TEXT: usize = 16 * 1024;

fn view(h: HelpRecord) -> HelpView {
    HelpView {
        id: h.id,
        state: h.state,
        requester: h.requester,
        requester_agent: h.requester_agent,
        skill: h.skill,
        level: h.level,
        text: h.text,
        offered_to: h.offered,
        created_ms: h.created_ms,
        expires_ms: h.expires_ms,
        accepted_by: h.accepted_by,
        accepted_agent: h.accepted_agent,
        helper: h.helper,
        closed_ms: h.closed_ms,
    }
}

fn help_not_found(id: &str) -> ApiError {
    ApiError::not_found("help_not_found", format!("help request {id} not found"))
}

/// `SKILL` or `SKILL:LEVEL` as the CLI sends it, or the parts apart.
fn skill_level(req: &HelpAsk) -> Result<(String, f64), ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_help", m);
    let (name, level) = match req.skill.split_once(':') {
        Some((n, l)) => {
            let l: f64 = l
                .parse()
                .map_err(|_| bad(format!("level {l:?} is not a number")))?;
            (n, Some(l))
        }
        None => (req.skill.as_str(), None),
    };
    let level = req.level.or(level).unwrap_or(0.0);
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name.len() > 64 {
        return Err(bad("a skill name is 1 to 64 bytes".into()));
    }
    if !(0.0..=1.0).contains(&level) {
        return Err(bad(format!("level {level} is outside 0..1")));
    }
    Ok((name, level))
}

/// `POST /api/v1/help`: offer a request to capable peers (idle first);
/// with `wait`, answer once it is accepted, escalated or expired.
pub(crate) async fn ask<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<HelpView>), ApiError> {
    let who = who(&shared, &headers).await?;
    let req: HelpAsk = json(body, "help")?;
    let (skill, level) = skill_level(&req)?;
    if req.text.len() > MAX_TEXT {
        return Err(ApiError::bad_request(
            "invalid_help",
            format!("text is longer than {MAX_TEXT} bytes"),
        ));
    }
    let timeout_ms = req.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(ApiError::bad_request(
            "invalid_help",
            "timeout_ms must be above 0 and at most a day",
        ));
    }
    let agents = ask_engine(&shared, crate::engine::Query::Agents).await?;
    let offered = offer(&agents, &skill, level, who.agent);
    let now = shared.now_ms();
    let id = uuid::Uuid::now_v7().to_string();
    let rec = HelpRecord {
        id: id.clone(),
        requester: who.node.to_string(),
        requester_agent: who.agent,
        skill: skill.clone(),
        level,
        text: req.text,
        offered: offered.clone(),
        created_ms: now,
        expires_ms: now + timeout_ms,
        state: help_state::OPEN.into(),
        accepted_by: None,
        accepted_agent: None,
        closed_ms: None,
        helper: None,
    };
    // Register the wait first: a request that would close a cycle of
    // waits is never made.
    let guard = if req.wait {
        let edge = WaitEdge {
            from: who.node.clone(),
            to: Node::Help(id.clone()),
            on: WaitOn::Help,
        };
        Some(register_wait(&shared, vec![edge]).await?)
    } else {
        None
    };
    shared.store.help_put(rec.clone()).await?;
    shared
        .event(
            who.agent,
            task_of(&who.node),
            EventData::HelpRequested(HelpRequested {
                id: id.clone(),
                level,
                offered,
                requester: who.node.clone(),
                skill,
                timeout_ms,
            }),
        )
        .await;
    if guard.is_none() {
        return Ok((StatusCode::CREATED, Json(view(rec))));
    }
    let mut bus = shared.events.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms + SWEEP_GRACE_MS);
    loop {
        if let Some(h) = shared.store.help_get(id.clone()).await?
            && h.state != help_state::OPEN
        {
            return if h.state == help_state::EXPIRED {
                Err(wait_timeout(format!(
                    "help request {id} expired: nobody with {} accepted it in {timeout_ms} ms",
                    h.skill
                )))
            } else {
                Ok((StatusCode::OK, Json(view(h))))
            };
        }
        tokio::select! {
            _ = bus.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(wait_timeout(format!("help request {id} not answered in {timeout_ms} ms")));
            }
            _ = shared.shutdown.cancelled() => return Err(stopping()),
        }
    }
}

/// Query of `GET /api/v1/help`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct ListQuery {
    /// Every request (the newest `limit`), not only open ones.
    #[serde(default)]
    all: bool,
    limit: Option<usize>,
}

/// `GET /api/v1/help`: open requests (or all with `all=true`), oldest first.
pub(crate) async fn list<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<HelpList>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
    let requests = shared.store.help_list(!q.all, limit).await?;
    Ok(Json(HelpList {
        requests: requests.into_iter().map(view).collect(),
    }))
}

/// `GET /api/v1/help/{id}`.
pub(crate) async fn get<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<HelpView>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    match shared.store.help_get(id.clone()).await? {
        Some(h) => Ok(Json(view(h))),
        None => Err(help_not_found(&id)),
    }
}

/// `POST /api/v1/help/{id}/accept`: the first accept wins; the others get
/// `409 already_accepted`.
pub(crate) async fn accept<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<HelpView>, ApiError> {
    let who = who(&shared, &headers).await?;
    let Some(h) = shared.store.help_get(id.clone()).await? else {
        return Err(help_not_found(&id));
    };
    if h.requester == who.node.to_string() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own_request",
            "a requester cannot accept its own help request",
        ));
    }
    let by = who.node.to_string();
    match shared
        .store
        .help_accept(id.clone(), by, who.agent, shared.now_ms())
        .await?
    {
        HelpAccept::Accepted(h) => {
            let requester: Node = h
                .requester
                .parse()
                .unwrap_or_else(|_| Node::Operator(h.requester.clone()));
            shared
                .event(
                    who.agent,
                    task_of(&requester),
                    EventData::HelpAccepted(HelpAccepted {
                        accepted_agent: who.agent,
                        accepted_by: who.node.clone(),
                        id: h.id.clone(),
                        requester,
                    }),
                )
                .await;
            Ok(Json(view(h)))
        }
        HelpAccept::Closed(h) if h.state == help_state::ACCEPTED => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_accepted",
            format!(
                "help request {id} was already accepted by {}",
                h.accepted_by.as_deref().unwrap_or("someone")
            ),
        )),
        HelpAccept::Closed(h) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "help_closed",
            format!("help request {id} is {}", h.state),
        )),
        HelpAccept::TooLate(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "help_closed",
            format!("help request {id} expired"),
        )),
        HelpAccept::NotFound => Err(help_not_found(&id)),
    }
}

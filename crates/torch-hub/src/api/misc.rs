//! Health, stats, agents, events and the agent WebSocket upgrade.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use torch_api::rest::{AgentList, EventPage, EventPayload, EventView, Health};
use torch_store::Store;

use super::{ApiError, Need, ask_engine, authorize};
use crate::auth::Caller;

use crate::hub::Shared;
use crate::stats::StatsView;

/// Read buffer of an agent's WebSocket session (bytes).
const SESSION_READ_BUFFER: usize = 16 * 1024;

type St<S> = State<Arc<Shared<S>>>;

/// `GET /api/v1/health` (no auth).
pub(crate) async fn health<S: Store>(State(shared): St<S>) -> Json<Health> {
    let (role, leader) = match shared.cluster.follower_of() {
        None => ("leader", None),
        Some(leader) => ("follower", leader),
    };
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        store: shared.store.kind().into(),
        uptime_ms: shared.started.elapsed().as_millis() as u64,
        role: role.into(),
        leader,
        hub_id: shared.cluster.hub_id.get().cloned(),
    })
}

/// `GET /api/v1/stats`.
pub(crate) async fn stats<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
) -> Result<Json<StatsView>, ApiError> {
    authorize(&shared, &headers, Need::Submit).await?;
    Ok(Json(shared.stats.view(
        shared.store.kind(),
        shared.store.round_trips(),
        shared.autonomy.view(shared.now_ms()),
        crate::shed::ShedPolicy::of(&shared.cfg).view(shared.backlog()),
    )))
}

/// `POST /api/v1/stats/reset` (admin): clears the latency histogram.
pub(crate) async fn reset_stats<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    shared.stats.reset();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/agents`.
pub(crate) async fn agents<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
) -> Result<Json<AgentList>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let mut agents = ask_engine(&shared, crate::engine::Query::Agents).await?;
    let mut managed = super::lifecycle::managed(&shared).await?;
    for a in &mut agents {
        a.managed = managed.remove(&a.id);
    }
    Ok(Json(AgentList { agents }))
}

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    after: u64,
    /// Comma-separated stream names or prefixes ending in `.`.
    stream: Option<String>,
    limit: Option<usize>,
    /// Long-poll: wait up to this long for new events.
    wait_ms: Option<u64>,
    /// Return no events, only the newest id as `last_id` (to follow from now on).
    #[serde(default)]
    tail: bool,
}

/// `GET /api/v1/events`.
pub(crate) async fn events<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let streams = stream_list(q.stream.as_deref());
    if q.tail {
        let last_id = shared.store.last_event_id().await?;
        return Ok(Json(EventPage {
            events: Vec::new(),
            last_id,
        }));
    }
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.unwrap_or(0).min(30_000));
    let mut gen_rx = shared.events.subscribe();
    loop {
        gen_rx.borrow_and_update();
        let events = shared.store.events(q.after, streams.clone(), limit).await?;
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            let last_id = events.last().map_or(q.after, |e| e.id);
            let events = events.into_iter().map(event_view).collect();
            return Ok(Json(EventPage { events, last_id }));
        }
        tokio::select! {
            _ = gen_rx.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shared.shutdown.cancelled() => {}
        }
    }
}

/// A stored event as the API shows it, its data typed by kind.
pub(crate) fn event_view(e: torch_store::EventRecord) -> EventView {
    let data = serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null);
    EventView {
        data: EventPayload::read(&e.kind, data),
        id: e.id,
        stream: e.stream,
        kind: e.kind,
        task_id: e.task,
        agent_id: e.agent,
        at_ms: e.at_ms,
    }
}

/// The `stream` parameter of the event routes: comma-separated stream names
/// or prefixes ending in `.`.
pub(crate) fn stream_list(param: Option<&str>) -> Vec<String> {
    param
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `GET /api/v1/agent/ws`: upgrade to the agent protocol (agent, node or
/// admin token). The session ends when the token is revoked or expires.
pub(crate) async fn agent_ws<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Caller::Token {
        hash, expires_ms, ..
    } = authorize(&shared, &headers, Need::Agent).await?
    else {
        return Err(ApiError::forbidden(
            "an agent session needs an agent, node or admin token",
        ));
    };
    let watch = shared.auth.watch(hash.clone(), expires_ms, shared.now_ms());
    Ok(ws
        .max_message_size(64 << 20)
        // tungstenite zeroes this much before every socket read; sessions
        // mostly carry small frames (the 128 KiB default cost ~4 % of the
        // hub's CPU in `torch bench collab`). Larger frames still fit.
        .read_buffer_size(SESSION_READ_BUFFER)
        .on_upgrade(move |socket| crate::session::run(shared, socket, hash, watch)))
}

/// A known route called with the wrong method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method; see docs/api.md",
    )
}

/// Unknown routes.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no_such_route", "no such API route; see docs/api.md")
}

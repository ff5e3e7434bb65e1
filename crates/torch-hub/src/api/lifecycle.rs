//! Agent lifecycle routes: spawn, scaling decisions, nodes, the node
//! WebSocket, and per-agent memory.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use torch_api::rest::{
    MemoryEntryView, MemoryList, MemoryPut, NodeList, ScalingList, SpawnRequest, SpawnResponse,
};
use torch_core::AgentId;
use torch_store::{MemoryEntry, Store};

use super::{ApiError, Need, authorize, stopping, task_agent};
use crate::auth::Caller;
use crate::hub::Shared;
use crate::lifecycle::{LifeCmd, Origin, SpawnError};

type St<S> = State<Arc<Shared<S>>>;

/// Asks the lifecycle manager and waits for the answer.
async fn ask_life<S: Store, T>(
    shared: &Shared<S>,
    make: impl FnOnce(oneshot::Sender<T>) -> LifeCmd,
) -> Result<T, ApiError> {
    shared.life.ask(make).await.ok_or_else(stopping)
}

fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &'static str,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("{what} body: {e}")))
}

impl From<SpawnError> for ApiError {
    fn from(e: SpawnError) -> Self {
        match e {
            SpawnError::UnknownTemplate(_) => {
                ApiError::not_found("unknown_template", e.to_string())
            }
            SpawnError::Refused(r) => {
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "spawn_refused",
                    r.to_string(),
                );
                err.limit = Some(r.limit.as_str().to_string());
                err
            }
            SpawnError::NoNode(m) => {
                let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_node", m);
                err.limit = Some("no-node".into());
                err
            }
            SpawnError::InheritRefused(m) => {
                let mut err = ApiError::forbidden(m);
                err.code = "inherit_refused";
                err.limit = Some("inherit-policy".into());
                err
            }
            SpawnError::Store(s) => s.into(),
        }
    }
}

/// `POST /api/v1/agents/spawn`: admin token, or a task token (a helper of the task's agent).
pub(crate) async fn spawn<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SpawnResponse>), ApiError> {
    let caller = authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let origin = match caller {
        Caller::Task { task, fence } => {
            let agent = task_agent(&shared, task, fence).await?;
            let tenant = shared
                .store
                .get_task(task)
                .await?
                .and_then(|t| t.spec.tenant)
                .unwrap_or_else(|| "default".into());
            Origin::Task {
                task,
                agent,
                tenant,
            }
        }
        Caller::Token {
            role: torch_api::rest::Role::Admin,
            ..
        } => Origin::Operator,
        Caller::Token { .. } => {
            return Err(ApiError::forbidden(
                "spawning needs an admin token or a task token",
            ));
        }
    };
    let req: SpawnRequest = json_body(body, "spawn")?;
    let manual = matches!(origin, Origin::Operator);
    let resp = ask_life(&shared, |reply| LifeCmd::Spawn { req, origin, reply }).await??;
    if manual {
        shared.autonomy.spawned_by_operator(resp.agent_id);
    }
    Ok((StatusCode::CREATED, Json(resp)))
}

/// Query of `GET /api/v1/agents/scaling`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct ScalingQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    template: Option<String>,
}

/// `GET /api/v1/agents/scaling`: recent decisions, oldest first.
pub(crate) async fn scaling<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<ScalingQuery>,
) -> Result<Json<ScalingList>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let mut decisions = ask_life(&shared, LifeCmd::Decisions).await?;
    if let Some(t) = &q.template {
        decisions.retain(|d| d.template == *t);
    }
    let limit = q.limit.unwrap_or(50).min(500);
    let skip = decisions.len().saturating_sub(limit);
    Ok(Json(ScalingList {
        decisions: decisions.split_off(skip),
    }))
}

/// `GET /api/v1/nodes`.
pub(crate) async fn nodes<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
) -> Result<Json<NodeList>, ApiError> {
    authorize(&shared, &headers, Need::Submit).await?;
    let nodes = ask_life(&shared, LifeCmd::Nodes).await?;
    Ok(Json(NodeList { nodes }))
}

/// `GET /api/v1/node/ws`: a node's session (agent or admin token).
pub(crate) async fn node_ws<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Caller::Token {
        hash,
        role,
        expires_ms,
        ..
    } = authorize(&shared, &headers, Need::Node).await?
    else {
        return Err(ApiError::forbidden(
            "a node session needs a node or admin token",
        ));
    };
    if role == torch_api::rest::Role::Agent {
        tracing::warn!(
            token = %torch_store::token_id(&hash),
            "a node connected with an agent token; create a node token (`torch token create --role node`)"
        );
    }
    let watch = shared.auth.watch(hash, expires_ms, shared.now_ms());
    Ok(ws
        .max_message_size(16 << 20)
        .on_upgrade(move |socket| crate::lifecycle::node_session(shared, socket, watch)))
}

/// The managed-agent facts for `GET /api/v1/agents`.
pub(crate) async fn managed<S: Store>(
    shared: &Shared<S>,
) -> Result<std::collections::HashMap<AgentId, torch_api::rest::ManagedView>, ApiError> {
    ask_life(shared, LifeCmd::Managed).await
}

/// Query naming whose memory (`?agent=ID`; implied inside a task).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct MemoryQuery {
    #[serde(default)]
    agent: Option<String>,
}

/// Whose memory the caller means: the task's agent for a task token (an
/// `agent` parameter must then name it), the `agent` parameter for an admin.
async fn memory_owner<S: Store>(
    shared: &Shared<S>,
    headers: &HeaderMap,
    q: &MemoryQuery,
    write: bool,
) -> Result<AgentId, ApiError> {
    let need = if write {
        Need::Task
    } else {
        Need::SubmitOrTask
    };
    let caller = match authorize(shared, headers, need).await {
        Ok(c) => c,
        // Admins may write any agent's memory too.
        Err(e) if write => match authorize(shared, headers, Need::Admin).await {
            Ok(c) => c,
            Err(_) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let named = match &q.agent {
        Some(a) => Some(a.parse::<AgentId>().map_err(|_| {
            ApiError::bad_request("invalid_agent_id", format!("{a:?} is not an agent id"))
        })?),
        None => None,
    };
    match caller {
        Caller::Task { task, fence } => {
            let agent = task_agent(shared, task, fence).await?;
            match named {
                Some(n) if n != agent => Err(ApiError::forbidden(format!(
                    "a task token reaches only its own agent's memory ({agent})"
                ))),
                _ => Ok(agent),
            }
        }
        Caller::Token { .. } => named.ok_or_else(|| {
            ApiError::bad_request(
                "missing_agent",
                "name the agent: ?agent=ID (inside a task it is implied)",
            )
        }),
    }
}

fn entry_view(e: MemoryEntry) -> MemoryEntryView {
    MemoryEntryView {
        key: e.key,
        value: e.value,
        updated_ms: e.updated_ms,
        inherited_from: e.inherited_from,
    }
}

/// `GET /api/v1/memory`.
pub(crate) async fn memory_list<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<MemoryQuery>,
) -> Result<Json<MemoryList>, ApiError> {
    let agent = memory_owner(&shared, &headers, &q, false).await?;
    let entries = shared.store.memory_list(agent).await?;
    Ok(Json(MemoryList {
        agent_id: agent,
        entries: entries.into_iter().map(entry_view).collect(),
    }))
}

/// `GET /api/v1/memory/{key}`.
pub(crate) async fn memory_get<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<MemoryQuery>,
) -> Result<Json<MemoryEntryView>, ApiError> {
    let agent = memory_owner(&shared, &headers, &q, false).await?;
    match shared.store.memory_get(agent, key.clone()).await? {
        Some(e) => Ok(Json(entry_view(e))),
        None => Err(ApiError::not_found(
            "memory_key_not_found",
            format!("agent {agent} has no memory key {key:?}"),
        )),
    }
}

/// `PUT /api/v1/memory/{key}`.
pub(crate) async fn memory_put<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<MemoryQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let agent = memory_owner(&shared, &headers, &q, true).await?;
    let req: MemoryPut = json_body(body, "memory")?;
    let limits = shared.cfg.lifecycle.memory;
    shared
        .store
        .memory_put(agent, key, req.value, limits, shared.now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/v1/agents/{id}/drain`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DrainRequest {
    #[serde(default)]
    reason: Option<String>,
}

/// Answer of `POST /api/v1/agents/{id}/drain`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct DrainResponse {
    /// The agent.
    agent_id: AgentId,
    /// Always `true`: it takes no new work.
    draining: bool,
    /// Whether the hub will stop it once its tasks finish (an agent a node
    /// runs); `false` for one started by hand.
    terminates: bool,
}

/// `POST /api/v1/agents/{id}/drain` (admin): no new work; once its tasks
/// finish, a node-run agent gets SIGTERM (then SIGKILL after the grace).
pub(crate) async fn drain<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DrainResponse>, ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    let agent: AgentId = id.parse().map_err(|_| {
        ApiError::bad_request("invalid_agent_id", format!("{id:?} is not an agent id"))
    })?;
    let raw = body.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    let req: DrainRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        DrainRequest::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request("invalid_body", format!("drain body: {e}")))?
    };
    let reason = req
        .reason
        .unwrap_or_else(|| "drained by an operator".into());
    shared.autonomy.drained(agent);
    let managed = ask_life(&shared, |reply| LifeCmd::Drain {
        agent,
        reason,
        reply,
    })
    .await?
    .ok_or_else(|| ApiError::not_found("agent_not_found", format!("agent {agent} is not known")))?;
    Ok(Json(DrainResponse {
        agent_id: agent,
        draining: true,
        terminates: managed,
    }))
}

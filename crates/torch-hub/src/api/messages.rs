//! Peers and messages: `GET /api/v1/peers`, `POST /api/v1/messages`
//! (operators), `GET /api/v1/messages?agent=A` (what the hub keeps for an
//! agent, metadata only) and `POST /api/v1/messages/relay` (an agent hands
//! over envelopes it could not deliver).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use torch_api::msg::{
    Envelope, HUB_SENDER, KIND_TEXT, MessageList, MessageMeta, PeerCard, PeerList, RelayRequest,
    RelayResult, SendRequest, SendResult, SentOne, SignedEnvelope,
};
use torch_api::rest::Role;
use torch_core::AgentId;
use torch_store::Store;

use super::{ApiError, Need, ask_engine, authorize};
use crate::auth::Caller;
use crate::hub::Shared;
use crate::messaging::RelayError;

type St<S> = State<Arc<Shared<S>>>;

/// Query of `GET /api/v1/peers`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub(crate) struct PeersQuery {
    skill: Option<String>,
    team: Option<String>,
    state: Option<String>,
}

/// Every peer card, filtered.
async fn cards<S: Store>(shared: &Shared<S>, q: &PeersQuery) -> Result<Vec<PeerCard>, ApiError> {
    let views = ask_engine(shared, crate::engine::Query::Peers).await?;
    // A member of a formed team is on that team's channel (the team's id);
    // others on the team their `team` label names.
    let formed = crate::teams::team_of_agent(shared).await;
    let mut out = Vec::new();
    for (v, task_ids) in views {
        let (endpoint, public_key) = shared.msg.contact(v.id).unwrap_or((None, None));
        let card = PeerCard {
            agent_id: v.id,
            team: formed
                .get(&v.id)
                .map(|t| t.to_string())
                .or_else(|| v.labels.get("team").cloned()),
            name: v.name,
            skills: v.skills,
            labels: v.labels,
            state: v.state,
            endpoint,
            public_key,
            task_ids,
        };
        let skill_ok = q
            .skill
            .as_deref()
            .is_none_or(|s| card.skills.iter().any(|k| k.name == s));
        let team_ok = q
            .team
            .as_deref()
            .is_none_or(|t| card.team.as_deref() == Some(t));
        let state_ok = q.state.as_deref().is_none_or(|s| card.state == s);
        if skill_ok && team_ok && state_ok {
            out.push(card);
        }
    }
    Ok(out)
}

/// `GET /api/v1/peers` (any token, a task's too).
pub(crate) async fn peers<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<PeersQuery>,
) -> Result<Json<PeerList>, ApiError> {
    let caller = authorize(&shared, &headers, Need::Peer).await?;
    let mut peers = cards(&shared, &q).await?;
    // A task sees the peers of its own tenant: agents labelled `tenant` with
    // it, and agents with no tenant label (shared by every tenant).
    if let Caller::Task { task, .. } = caller {
        let tenant = shared
            .store
            .get_task(task)
            .await?
            .and_then(|t| t.spec.tenant)
            .unwrap_or_else(|| "default".to_string());
        peers.retain(|p| p.labels.get("tenant").is_none_or(|t| *t == tenant));
    }
    Ok(Json(PeerList {
        peers,
        hub_key: Some(shared.msg.hub_key_hex()),
    }))
}

fn relay_error(e: RelayError) -> ApiError {
    match e {
        RelayError::Forbidden(m) => ApiError::forbidden(m),
        RelayError::BadRequest(m) => ApiError::bad_request("bad_message", m),
        RelayError::Limited { limit, retry_after } => {
            let mut err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("refused by the {limit} limit; retry later"),
            );
            err.limit = Some(limit.to_string());
            err.retry_after = Some(retry_after.as_secs_f64().ceil().max(1.0) as u32);
            err
        }
        RelayError::Store(e) => e.into(),
    }
}

/// `POST /api/v1/messages/relay` (an agent token bound to the sender).
pub(crate) async fn relay<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Json(req): Json<RelayRequest>,
) -> Result<Json<RelayResult>, ApiError> {
    let caller = authorize(&shared, &headers, Need::Agent).await?;
    let Some(first) = req.messages.first() else {
        return Ok(Json(RelayResult::default()));
    };
    let sender: AgentId = first.envelope.from.parse().map_err(|_| {
        ApiError::forbidden(format!("{:?} is not an agent id", first.envelope.from))
    })?;
    if let Caller::Token { role, hash, .. } = &caller
        && *role == Role::Agent
    {
        let bound = shared
            .store
            .get_meta(format!("agent_token:{sender}"))
            .await?;
        if bound.as_deref() != Some(hash.as_str()) {
            return Err(ApiError::forbidden(format!(
                "agent {sender} is not registered to this token"
            )));
        }
    }
    let results = shared
        .msg
        .relay(&shared, sender, req.messages)
        .await
        .map_err(relay_error)?;
    Ok(Json(RelayResult { results }))
}

/// `POST /api/v1/messages` (admin): a message from the hub to an agent, a
/// task's current agent or a team.
pub(crate) async fn send<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Json(req): Json<SendRequest>,
) -> Result<Json<SendResult>, ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    let r = &req.recipient;
    let to: Vec<AgentId> = match (r.to, r.task, &r.team) {
        (Some(a), None, None) => vec![a],
        (None, Some(task), None) => {
            let all = cards(&shared, &PeersQuery::default()).await?;
            let found = all.iter().find(|c| c.task_ids.contains(&task));
            vec![found.map(|c| c.agent_id).ok_or_else(|| {
                ApiError::not_found(
                    "recipient_not_found",
                    format!("task {task} has no current agent"),
                )
            })?]
        }
        (None, None, Some(team)) => {
            let q = PeersQuery {
                team: Some(team.clone()),
                ..PeersQuery::default()
            };
            let members: Vec<AgentId> = cards(&shared, &q)
                .await?
                .iter()
                .map(|c| c.agent_id)
                .collect();
            if members.is_empty() {
                return Err(ApiError::not_found(
                    "recipient_not_found",
                    format!("team {team} has no member"),
                ));
            }
            members
        }
        _ => {
            return Err(ApiError::bad_request(
                "bad_recipient",
                "give exactly one of to, task, team",
            ));
        }
    };
    let mut sent = Vec::new();
    for agent in to {
        let env = Envelope {
            id: Uuid::now_v7(),
            from: HUB_SENDER.into(),
            to: agent,
            thread: req.thread.clone(),
            reply_to: req.reply_to,
            kind: req.kind.clone().unwrap_or_else(|| KIND_TEXT.into()),
            body: req.body.clone(),
            sent_ms: shared.now_ms(),
            ttl_ms: req
                .ttl_ms
                .unwrap_or(shared.cfg.messages.default_ttl.as_millis() as u64),
        };
        let id = env.id;
        let delivery = shared
            .msg
            .send_from_hub(&shared, env)
            .await
            .map_err(relay_error)?;
        sent.push(SentOne {
            id,
            to: agent,
            delivery,
        });
    }
    let first = sent[0].clone();
    Ok(Json(SendResult {
        id: first.id,
        delivery: first.delivery,
        sent: if sent.len() > 1 { sent } else { Vec::new() },
    }))
}

/// Query of `GET /api/v1/messages`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct ListQuery {
    agent: AgentId,
    limit: Option<usize>,
}

/// `GET /api/v1/messages?agent=A` (admin): what the hub keeps for `A`.
pub(crate) async fn list<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<MessageList>, ApiError> {
    authorize(&shared, &headers, Need::Admin).await?;
    let kept = shared
        .store
        .relay_pending(q.agent, q.limit.unwrap_or(1_000).clamp(1, 10_000))
        .await?;
    let messages = kept
        .into_iter()
        .filter_map(|m| {
            let bytes = m.envelope.len();
            let s: SignedEnvelope = serde_json::from_str(&m.envelope).ok()?;
            let e = s.envelope;
            Some(MessageMeta {
                id: e.id,
                from: e.from,
                to: e.to,
                kind: e.kind,
                thread: e.thread,
                sent_ms: e.sent_ms,
                expires_ms: m.expires_ms,
                bytes,
            })
        })
        .collect();
    Ok(Json(MessageList { messages }))
}

//! `/api/v1/tasks`: submit, list, get, cancel, retry, logs, progress.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use torch_api::rest::{
    AnalyzeResponse, CancelRequest, CancelResponse, LogsView, ProgressRequest, SubmitRequest,
    SubmitResponse, SubmittedTask, TaskList, TaskView,
};
use torch_core::scheduler::QueuedTask;
use torch_core::validate::{ValidTask, validate_batch};
use torch_core::{Skill, TaskId, TaskState};
use torch_store::{FenceCheck, NewTask, Routing, SharedStore, Store, TaskFilter};
use tracing::debug;

use super::views::task_view;
use super::{ApiError, Need, ask_engine, authorize, task_or_404};
use crate::auth::Caller;
use crate::engine::Command;
use crate::hub::Shared;
use crate::lifecycle::LifeCmd;
use crate::metrics::Shed;
use crate::shed::{Admission, ShedPolicy};

type St<S> = State<Arc<Shared<S>>>;

fn body_error(e: BytesRejection) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "payload_too_large",
            "request body is larger than hub.max-body-bytes; split the submission",
        )
    } else {
        ApiError::new(status, "bad_body", e.body_text())
    }
}

pub(super) fn parse_id(id: &str) -> Result<TaskId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request("invalid_task_id", format!("{id:?} is not a task id")))
}

/// The warning on a task a follower accepted (see `leader::forward`).
const HANDED_OFF: &str = "accepted by a hub that is not the leader (the leader could not be \
    reached) and handed off to it; analysed without the fleet's agents and history";

/// `POST /api/v1/tasks`.
pub(crate) async fn submit<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let caller = authorize(&shared, &headers, Need::SubmitOrTask).await?;
    // From inside a task (`torch delegate`), the new tasks are its children.
    let parent = match &caller {
        Caller::Task { task, fence } => {
            super::task_agent(&shared, *task, *fence).await?;
            Some(*task)
        }
        Caller::Token { .. } => None,
    };
    let body = body.map_err(body_error)?;
    let valid = parse_specs(&body)?;
    admit(&shared, &valid)?;
    let ids: Vec<TaskId> = valid
        .iter()
        .map(|_| TaskId::from_uuid(uuid::Uuid::now_v7()))
        .collect();
    let agents = agent_skills(&shared).await?;
    let analyses = shared
        .analysis
        .analyze(valid.iter().map(|v| &v.spec), &agents);
    let needs_team: Vec<bool> = analyses.iter().map(|a| a.needs_team).collect();
    let mut warnings = Vec::with_capacity(valid.len());
    let mut keys = Vec::with_capacity(valid.len());
    let mut batch: Vec<NewTask> = valid
        .into_iter()
        .zip(analyses)
        .enumerate()
        .map(|(i, (v, analysis))| {
            let mut deps: Vec<TaskId> = v.local_deps.iter().map(|&k| ids[k]).collect();
            deps.extend(v.external_deps);
            let queued = QueuedTask::from_spec(ids[i], 0, &v.spec).with_analysis(&analysis);
            warnings.push(analysis.warnings.clone());
            keys.push((ids[i], analysis.history_key.clone()));
            NewTask {
                id: ids[i],
                name: v.spec.display_name(),
                spec: v.spec,
                deps,
                routing: Some(Routing::of(&queued)),
                analysis: serde_json::to_string(&analysis).ok(),
                parent,
            }
        })
        .collect();
    // Teams are formed now: a team task is pinned to its leader and its
    // members' subtasks join the batch.
    let formed = crate::teams::form::form_teams(&shared, &mut batch, &needs_team, parent.is_none())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "team_unformable",
                e.to_string(),
            )
        })?;
    warnings.extend((0..formed.subtasks).map(|_| Vec::new()));
    // A follower gets here only when the leader could not be reached (see
    // `leader::forward`): the store hands the tasks off to the leader.
    let handoff = (!shared.is_leader())
        .then(|| shared.cluster.hub_id.get().cloned())
        .flatten();
    let now = shared.now_ms();
    let results = match (&handoff, shared.store.shared()) {
        (Some(hub), Some(store)) => store.submit_handoff(batch, now, hub.clone()).await?,
        _ => shared.store.submit(batch, now).await?,
    };
    shared.bump();
    if let Some(task) = parent {
        shared.life.send(LifeCmd::Parent { task }).await;
    }
    for task in formed.teams {
        shared.life.send(LifeCmd::Parent { task }).await;
    }
    shared.analysis.track(
        keys.into_iter()
            .zip(&results)
            .filter(|(_, r)| !r.duplicate)
            .map(|(k, _)| k),
    );
    if shared.audit.enabled() {
        let actor = crate::audit::actor_of(&caller);
        let fresh: Vec<serde_json::Value> = results
            .iter()
            .filter(|r| !r.duplicate)
            .map(|r| serde_json::json!({ "task": r.id }))
            .collect();
        let entry = actor.entry(now, "task.submitted", String::new(), String::new());
        crate::audit::batch(&shared.audit, entry, fresh);
    }
    let fresh = results.iter().filter(|r| !r.duplicate).count();
    shared.add_backlog(fresh as i64);
    shared.metrics.counters.submitted(fresh as u64);
    let ready: Vec<_> = results.iter().filter_map(|r| r.ready.clone()).collect();
    if !ready.is_empty() && handoff.is_none() {
        shared.engine.send(Command::Ready(ready)).await;
    }
    let tasks = results
        .into_iter()
        .zip(warnings)
        .map(|(r, mut warnings)| {
            if handoff.is_some() && !r.duplicate {
                warnings.push(HANDED_OFF.to_owned());
            }
            SubmittedTask {
                id: r.id,
                name: r.name,
                state: r.state,
                duplicate: r.duplicate,
                warnings,
            }
        })
        .collect();
    Ok((StatusCode::CREATED, Json(SubmitResponse { tasks })))
}

/// Load shedding (see `crate::shed`): refuses the whole submission with
/// `429 queue_full` at the hard limit, or `429 shed` (naming the floor) when
/// its least important task is below the priority floor. A batch is judged
/// by its lowest priority and accepted or refused as a whole.
fn admit<S: Store>(shared: &Shared<S>, valid: &[ValidTask]) -> Result<(), ApiError> {
    let policy = ShedPolicy::of(&shared.cfg);
    let backlog = shared.backlog();
    let lowest = valid
        .iter()
        .map(|v| v.spec.priority)
        .min()
        .unwrap_or(policy.highest);
    let n = valid.len() as u64;
    let mut e = match policy.admit(backlog, lowest) {
        Admission::Accept => return Ok(()),
        Admission::Full => {
            shared.metrics.counters.shed(Shed::Limit, lowest, n);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!(
                    "{backlog} unfinished tasks is past the high-water mark ({}); retry later",
                    policy.limit
                ),
            )
        }
        Admission::Shed { floor } => {
            shared.metrics.counters.shed(Shed::Floor, lowest, n);
            debug!(
                backlog,
                floor,
                priority = lowest,
                tasks = n,
                "submission shed"
            );
            let what = if n > 1 {
                format!("the lowest priority of this batch of {n} tasks ({lowest})")
            } else {
                format!("priority {lowest}")
            };
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "shed",
                format!(
                    "load shedding: {what} is below the priority floor {floor} \
                     ({backlog} unfinished tasks, shedding from {} up to the limit {}); \
                     nothing was stored; retry later or submit at priority {floor} or above",
                    policy.from, policy.limit
                ),
            );
            e.floor = Some(floor);
            e
        }
    };
    e.retry_after = Some(u32::try_from(shared.cfg.retry_after_secs).unwrap_or(u32::MAX));
    Err(e)
}

/// The skills of the connected agents, from the engine.
async fn agent_skills<S: Store>(shared: &Shared<S>) -> Result<Vec<Vec<Skill>>, ApiError> {
    ask_engine(shared, crate::engine::Query::AgentSkills).await
}

/// Parses a `SubmitRequest` body and validates its tasks as one batch; errors
/// name the JSON path (with line and column) or the task and field.
fn parse_specs(body: &[u8]) -> Result<Vec<ValidTask>, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let req: SubmitRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ApiError::bad_request(
            "invalid_spec",
            format!(
                "request body at {path} (line {}, column {}): {inner}",
                inner.line(),
                inner.column()
            ),
        )
    })?;
    let source = req.source.unwrap_or_else(|| "request".into());
    validate_batch(&source, req.tasks).map_err(|errs| {
        let details: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        ApiError::bad_request("invalid_spec", details.join("; ")).with_details(details)
    })
}

/// `POST /api/v1/analyze`: the analysis of each spec, without submitting.
pub(crate) async fn analyze_specs<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AnalyzeResponse>, ApiError> {
    authorize(&shared, &headers, Need::Submit).await?;
    let body = body.map_err(body_error)?;
    let valid = parse_specs(&body)?;
    let agents = agent_skills(&shared).await?;
    let analyses = shared
        .analysis
        .analyze(valid.iter().map(|v| &v.spec), &agents);
    Ok(Json(AnalyzeResponse { analyses }))
}

/// Query of `GET /api/v1/tasks`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct ListQuery {
    /// Comma-separated states.
    state: Option<String>,
    /// `key=value`.
    label: Option<String>,
    limit: Option<usize>,
    /// Page before this sequence number.
    before: Option<u64>,
    /// Only tasks delegated by this task.
    parent: Option<String>,
}

/// `GET /api/v1/tasks`.
pub(crate) async fn list<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<TaskList>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let mut states = Vec::new();
    for s in q
        .state
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        states.push(
            s.parse::<TaskState>()
                .map_err(|e| ApiError::bad_request("invalid_state", e.to_string()))?,
        );
    }
    let label = match q.label {
        Some(l) => match l.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => {
                return Err(ApiError::bad_request(
                    "invalid_label",
                    format!("label filter {l:?} must be key=value"),
                ));
            }
        },
        None => None,
    };
    let page = shared
        .store
        .list_tasks(TaskFilter {
            states,
            label,
            before_seq: q.before,
            parent: q.parent.as_deref().map(parse_id).transpose()?,
            limit: q.limit.unwrap_or(100).min(1000),
        })
        .await?;
    let counts: BTreeMap<String, u64> = page
        .counts
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Ok(Json(TaskList {
        tasks: page.tasks.into_iter().map(task_view).collect(),
        counts,
    }))
}

/// `GET /api/v1/tasks/{id}`.
pub(crate) async fn get<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let id = parse_id(&id)?;
    let Json(mut view) = task_or_404(&shared, id).await?;
    if view.state == TaskState::Running
        && let Some(lease) = &view.lease
        && let Some(live) = shared.usage.get(id, lease.fence)
    {
        view.usage = Some(live);
    }
    if view.labels.contains_key(crate::teams::form::TEAM_LABEL)
        && let Some(team) = crate::teams::team_view(&shared, id).await?
    {
        let role = if team.id == id {
            Some("team".to_string())
        } else {
            team.subtasks
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| s.role.clone())
        };
        view.team = Some(torch_api::rest::TaskTeam {
            id: team.id,
            role,
            state: team.state,
            leader: team.leader,
            term: team.term,
            members: team.members.len() as u32,
            progress: team.progress,
            done: team.done,
            total: team.total,
        });
    }
    Ok(Json(view))
}

/// `POST /api/v1/tasks/{id}/cancel`.
pub(crate) async fn cancel<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CancelResponse>, ApiError> {
    let caller = authorize(&shared, &headers, Need::Submit).await?;
    let id = parse_id(&id)?;
    let who = match caller {
        Caller::Token { name, .. } => {
            crate::teams::touched(&shared, id).await;
            name
        }
        Caller::Task { task, .. } => format!("task {task}"),
    };
    let body = body.map_err(body_error)?;
    let req: CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_body", format!("cancel body: {e}")))?
    };
    let reason = req.reason.unwrap_or_else(|| format!("cancelled by {who}"));
    let cancelled = shared.cancel_task(id, reason).await?;
    Ok(Json(CancelResponse { cancelled }))
}

/// `POST /api/v1/tasks/{id}/retry`.
pub(crate) async fn retry<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let caller = authorize(&shared, &headers, Need::Submit).await?;
    let id = parse_id(&id)?;
    let res = shared.store.retry(id, shared.now_ms()).await?;
    if matches!(caller, Caller::Token { .. }) {
        crate::teams::touched(&shared, id).await;
    }
    shared.bump();
    shared.add_backlog(1);
    if let Some(r) = res.ready {
        shared.engine.send(Command::Ready(vec![r])).await;
    }
    task_or_404(&shared, id).await
}

/// `GET /api/v1/tasks/{id}/logs`.
pub(crate) async fn logs<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<LogsView>, ApiError> {
    authorize(&shared, &headers, Need::Submit).await?;
    let id = parse_id(&id)?;
    match shared.store.task_logs(id).await? {
        Some(l) => Ok(Json(LogsView {
            task_id: l.task,
            attempt: l.attempt,
            stdout: l.stdout,
            stderr: l.stderr,
            truncated: l.truncated,
        })),
        None => match shared.store.get_task(id).await? {
            Some(_) => Err(ApiError::not_found(
                "no_logs",
                format!(
                    "task {id} has no captured output yet (it has not finished an attempt, or printed nothing)"
                ),
            )),
            None => Err(ApiError::not_found(
                "task_not_found",
                format!("task {id} not found"),
            )),
        },
    }
}

/// `POST /api/v1/tasks/{id}/progress` with the task-scoped token.
pub(crate) async fn progress<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let caller = authorize(&shared, &headers, Need::Task).await?;
    let id = parse_id(&id)?;
    let Caller::Task { task, fence } = caller else {
        return Err(ApiError::forbidden("progress needs a task-scoped token"));
    };
    if task != id {
        return Err(ApiError::forbidden(format!(
            "this task token belongs to task {task}, not {id}"
        )));
    }
    let body = body.map_err(body_error)?;
    let req: ProgressRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_progress", e.to_string()))?;
    if !(0.0..=100.0).contains(&req.percent) {
        return Err(ApiError::bad_request(
            "invalid_progress",
            format!("percent {} is outside 0..=100", req.percent),
        ));
    }
    if req.message.as_ref().is_some_and(|m| m.len() > 1024) {
        return Err(ApiError::bad_request(
            "invalid_progress",
            "message is longer than 1024 bytes",
        ));
    }
    match shared
        .store
        .progress(id, fence, req.percent, req.message, shared.now_ms())
        .await?
    {
        FenceCheck::Ok => {
            shared.bump();
            shared.engine.send(Command::Progress { task: id }).await;
            Ok(StatusCode::NO_CONTENT)
        }
        FenceCheck::Stale {
            current_fence,
            state,
        } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale_fence",
            format!("lease fence {fence} is stale (task is {state} with fence {current_fence})"),
        )),
        FenceCheck::NotFound => Err(ApiError::not_found(
            "task_not_found",
            format!("task {id} not found"),
        )),
    }
}

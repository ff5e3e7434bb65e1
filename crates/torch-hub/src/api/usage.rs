//! `/api/v1/tasks/{id}/usage` (report from inside a task) and
//! `/api/v1/usage` (usage stored with attempts, totalled).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use torch_api::rest::{UsageGroup, UsageReport, UsageReported, UsageSummary, UsageTotals};
use torch_core::{TaskState, Usage};
use torch_store::{Store, TaskFilter};

use super::tasks::parse_id;
use super::{ApiError, Need, authorize, task_or_404};
use crate::auth::Caller;
use crate::hub::Shared;
use crate::usage::{REPORTED, enforce};

type St<S> = State<Arc<Shared<S>>>;

/// `POST /api/v1/tasks/{id}/usage` with the task-scoped token: adds to the
/// running attempt's usage; on reaching the spec's `resources` limits the
/// hub stops the attempt, which then ends `budget_exceeded`.
pub(crate) async fn report<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UsageReported>, ApiError> {
    let caller = authorize(&shared, &headers, Need::Task).await?;
    let id = parse_id(&id)?;
    let Caller::Task { task, fence } = caller else {
        return Err(ApiError::forbidden(
            "usage reports need a task-scoped token",
        ));
    };
    if task != id {
        return Err(ApiError::forbidden(format!(
            "this task token belongs to task {task}, not {id}"
        )));
    }
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    let req: UsageReport = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_usage", e.to_string()))?;
    if !(req.cost_usd.is_finite() && req.cost_usd >= 0.0) {
        return Err(ApiError::bad_request(
            "invalid_usage",
            format!("cost_usd {} must be a non-negative number", req.cost_usd),
        ));
    }
    let Json(view) = task_or_404(&shared, id).await?;
    let lease = match &view.lease {
        Some(l) if l.fence == fence && view.state == TaskState::Running => l.clone(),
        _ => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "stale_fence",
                format!(
                    "lease fence {fence} is not the running attempt's (task is {})",
                    view.state
                ),
            ));
        }
    };
    let delta = Usage {
        tokens_in: req.tokens_in,
        tokens_out: req.tokens_out,
        cost_usd: Some(req.cost_usd),
        source: REPORTED.into(),
        ..Usage::default()
    };
    let mut usage = shared.usage.add(id, fence, &delta);
    // The agent CLI's stream tokens so far count against max_tokens too.
    let stream = view.activity.as_ref().map_or(0, |a| a.tokens_so_far);
    let held = (id, fence, lease.agent_id);
    let exceeded = enforce(&shared, held, view.spec.resources.as_ref(), &usage, stream).await;
    if stream > 0 {
        usage.source = format!("{} + agent stream ({stream} tokens)", usage.source);
    }
    Ok(Json(UsageReported {
        usage,
        budget_exceeded: exceeded,
    }))
}

/// Query of `GET /api/v1/usage`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct UsageQuery {
    /// Only tasks created at or after this unix time in milliseconds.
    since_ms: Option<u64>,
}

/// How many tasks one store page holds while totalling.
const PAGE: usize = 1000;

/// `GET /api/v1/usage`: the usage stored with the tasks' last attempts
/// (running attempts add what they reported so far), totalled and grouped
/// by tenant and by template.
pub(crate) async fn summary<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<UsageQuery>,
) -> Result<Json<UsageSummary>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let templates: HashMap<_, _> = super::lifecycle::managed(&shared)
        .await?
        .into_iter()
        .map(|(id, m)| (id, m.template))
        .collect();
    let since = q.since_ms.unwrap_or(0);
    let mut totals = UsageTotals::default();
    let mut by_tenant: BTreeMap<String, UsageTotals> = BTreeMap::new();
    let mut by_template: BTreeMap<String, UsageTotals> = BTreeMap::new();
    let mut before = None;
    'pages: loop {
        let page = shared
            .store
            .list_tasks(TaskFilter {
                before_seq: before,
                limit: PAGE,
                ..TaskFilter::default()
            })
            .await?;
        let Some(last) = page.tasks.last() else {
            break;
        };
        before = Some(last.seq);
        let full = page.tasks.len() >= PAGE;
        for t in page.tasks {
            if t.created_ms < since {
                // Newest first: everything after is older.
                break 'pages;
            }
            let mut usage = t.outcome.and_then(|o| o.evidence.usage);
            if t.state == TaskState::Running
                && let Some(live) = shared.usage.get(t.id, t.fence)
            {
                usage.get_or_insert_with(Usage::default).add(&live);
            }
            let Some(u) = usage else { continue };
            let tenant = t.spec.tenant.clone().unwrap_or_else(|| "default".into());
            let template = t
                .agent
                .as_ref()
                .or(t.last_agent.as_ref())
                .and_then(|a| templates.get(a).cloned())
                .unwrap_or_else(|| "default".into());
            for acc in [
                &mut totals,
                by_tenant.entry(tenant).or_default(),
                by_template.entry(template).or_default(),
            ] {
                acc.tokens_in += u.tokens_in;
                acc.tokens_out += u.tokens_out;
                acc.cost_usd += u.cost_usd.unwrap_or(0.0);
                acc.tasks += 1;
            }
        }
        if !full {
            break;
        }
    }
    let groups = |m: BTreeMap<String, UsageTotals>| {
        m.into_iter()
            .map(|(name, totals)| UsageGroup { name, totals })
            .collect()
    };
    Ok(Json(UsageSummary {
        totals,
        by_tenant: groups(by_tenant),
        by_template: groups(by_template),
    }))
}

//! `GET /api/v1/teams` and `GET /api/v1/teams/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use torch_api::rest::{TeamList, TeamView};
use torch_store::Store;

use super::tasks::parse_id;
use super::{ApiError, Need, authorize};
use crate::auth::Caller;
use crate::hub::Shared;

type St<S> = State<Arc<Shared<S>>>;

/// `GET /api/v1/teams`: active teams, then recently disbanded ones. A
/// task token sees only its own team.
pub(crate) async fn list<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
) -> Result<Json<TeamList>, ApiError> {
    let caller = authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let teams = match caller {
        Caller::Task { task, .. } => crate::teams::team_view(&shared, task)
            .await?
            .into_iter()
            .collect(),
        Caller::Token { .. } => crate::teams::teams_view(&shared).await?,
    };
    Ok(Json(TeamList { teams }))
}

/// `GET /api/v1/teams/{id}`: the team of task `id`, or the team whose
/// subtask `id` is. A task token reads only its own team.
pub(crate) async fn get<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TeamView>, ApiError> {
    let caller = authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let id = parse_id(&id)?;
    let view = crate::teams::team_view(&shared, id).await?;
    let Some(view) = view else {
        return Err(ApiError::not_found(
            "team_not_found",
            format!("no team for task {id} (not a team's task nor one of its subtasks)"),
        ));
    };
    if let Caller::Task { task, .. } = caller
        && task != view.id
        && !view.subtasks.iter().any(|s| s.id == task)
    {
        return Err(ApiError::forbidden(format!(
            "this task token belongs to task {task}, which is not in team {}",
            view.id
        )));
    }
    Ok(Json(view))
}

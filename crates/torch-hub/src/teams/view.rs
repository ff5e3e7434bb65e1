//! Teams as the API shows them (`GET /api/v1/teams[/{id}]`).

use std::collections::HashMap;

use torch_api::rest::{AgentView, TeamMemberView, TeamSubtaskView, TeamView};
use torch_core::{AgentId, TaskId};
use torch_store::{Store, StoreError, TaskFilter, TaskRecord};

use super::book::Team;
use super::form::ROLE_LABEL;
use super::run::{aggregate, progress_of, weight};
use crate::engine::Query;
use crate::hub::Shared;
use crate::lifecycle::LifeCmd;

/// Teams listed, at most.
const LISTED: usize = 200;

/// The team `id` names: the team of that task, or the team a subtask of
/// which it is. `None` when there is none.
pub(crate) async fn team_view<S: Store>(
    shared: &Shared<S>,
    id: TaskId,
) -> Result<Option<TeamView>, StoreError> {
    let team = find(shared, id).await?;
    let Some(team) = team else { return Ok(None) };
    let states = agent_states(shared).await;
    Ok(Some(view(shared, &team, &states).await?))
}

/// Every team: active ones first, then disbanded, newest first.
pub(crate) async fn teams_view<S: Store>(shared: &Shared<S>) -> Result<Vec<TeamView>, StoreError> {
    let mut teams = shared
        .teams
        .read(&*shared.store, |t| {
            t.values().cloned().collect::<Vec<Team>>()
        })
        .await?;
    teams.sort_by_key(|t| (t.disbanded.is_some(), std::cmp::Reverse(t.formed_ms)));
    teams.truncate(LISTED);
    let states = agent_states(shared).await;
    let mut out = Vec::with_capacity(teams.len());
    for t in &teams {
        out.push(view(shared, t, &states).await?);
    }
    Ok(out)
}

/// The team of `id` (its task), or of the task `id` is a subtask of.
pub(crate) async fn find<S: Store>(
    shared: &Shared<S>,
    id: TaskId,
) -> Result<Option<Team>, StoreError> {
    let direct = shared
        .teams
        .read(&*shared.store, |t| t.get(&id).cloned())
        .await?;
    if direct.is_some() {
        return Ok(direct);
    }
    let Some(parent) = shared.store.get_task(id).await?.and_then(|r| r.parent) else {
        return Ok(None);
    };
    shared
        .teams
        .read(&*shared.store, |t| t.get(&parent).cloned())
        .await
}

/// Each member of an active team, with its team (the newest when it is in
/// several). Read from the book as of at most 250 ms ago: peer cards may
/// lag a team's formation by that much.
pub(crate) async fn team_of_agent<S: Store>(shared: &Shared<S>) -> HashMap<AgentId, TaskId> {
    shared
        .teams
        .read_within(&*shared.store, std::time::Duration::from_millis(250), |t| {
            let mut out = HashMap::new();
            let mut active: Vec<&Team> = t.values().filter(|t| t.disbanded.is_none()).collect();
            active.sort_by_key(|t| t.formed_ms);
            for team in active {
                for m in &team.members {
                    out.insert(m.agent_id, team.task);
                }
            }
            out
        })
        .await
        .unwrap_or_default()
}

/// Each agent's state: the engine's, else `starting` for one being spawned.
async fn agent_states<S: Store>(shared: &Shared<S>) -> HashMap<AgentId, String> {
    let agents: Vec<AgentView> = shared.engine.ask(Query::Agents).await.unwrap_or_default();
    let mut out: HashMap<AgentId, String> = agents.into_iter().map(|a| (a.id, a.state)).collect();
    if let Some(managed) = shared.life.ask(LifeCmd::Managed).await {
        for (id, m) in managed {
            out.entry(id).or_insert(m.phase);
        }
    }
    out
}

async fn view<S: Store>(
    shared: &Shared<S>,
    team: &Team,
    states: &HashMap<AgentId, String>,
) -> Result<TeamView, StoreError> {
    let rec = shared.store.get_task(team.task).await?;
    let subtasks = shared
        .store
        .list_tasks(TaskFilter {
            parent: Some(team.task),
            limit: 1000,
            ..TaskFilter::default()
        })
        .await?
        .tasks
        .into_iter()
        .filter(|t| !team.replaced.contains(&t.id))
        .collect::<Vec<_>>();
    let (progress, done, total) = if team.disbanded.is_some() && subtasks.is_empty() {
        (team.progress, team.done, team.total)
    } else {
        aggregate(&subtasks)
    };
    let members = team
        .members
        .iter()
        .map(|m| TeamMemberView {
            agent_id: m.agent_id,
            name: m.name.clone(),
            role: m.role.clone(),
            leader: m.agent_id == team.leader,
            state: states
                .get(&m.agent_id)
                .cloned()
                .unwrap_or_else(|| "disconnected".into()),
            cost: m.cost,
            template: m.template.clone(),
            subtask: m.subtask,
        })
        .collect();
    Ok(TeamView {
        id: team.task,
        name: rec.as_ref().map_or_else(String::new, |r| r.name.clone()),
        state: if team.disbanded.is_some() {
            "disbanded".into()
        } else {
            "active".into()
        },
        task_state: rec
            .as_ref()
            .map_or_else(|| "missing".into(), |r| r.state.to_string()),
        term: team.term,
        leader: team.leader,
        leader_reason: team.leader_reason.clone(),
        members,
        progress,
        done,
        total,
        subtasks: subtasks.iter().map(|t| subtask_view(team, t)).collect(),
        repository: team.repository.clone(),
        integration_branch: team.integration_branch.clone(),
        merges: team.merges.clone(),
        explanation: team.explanation.clone(),
        formed_ms: team.formed_ms,
        disbanded_ms: team.disbanded.as_ref().map(|(at, _)| *at),
        history: team.history.clone(),
    })
}

fn subtask_view(team: &Team, t: &TaskRecord) -> TeamSubtaskView {
    TeamSubtaskView {
        id: t.id,
        name: t.name.clone(),
        state: t.state.to_string(),
        role: t
            .spec
            .labels
            .get(ROLE_LABEL)
            .cloned()
            .or_else(|| team.role_of_subtask(t.id).map(str::to_string)),
        agent: t.agent.or(t.last_agent),
        progress: progress_of(t),
        weight: weight(t),
    }
}

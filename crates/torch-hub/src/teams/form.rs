//! Forming teams when tasks are submitted: the candidates (connected
//! agents with a free slot, templates the spawn limits allow), the exact
//! formation of `torch_core::team`, members spawned from templates, the
//! team's task pinned to its leader and one subtask per member whose role
//! has one.
//!
//! A team is formed by the hub that accepts the submission (the leader; a
//! follower that could not reach it has no fleet and refuses team tasks).
//! The `team.formed` event is appended before the tasks are stored: a crash
//! in between leaves a team whose task does not exist, which the manager
//! disbands at once; never a team task without its team.

use std::collections::BTreeMap;

use serde_json::json;
use torch_api::rest::{AgentView, SpawnRequest};
use torch_core::events::team::{TeamFormationFailed, TeamFormed, TeamMember};
use torch_core::routing::TaskAnalysis;
use torch_core::scheduler::QueuedTask;
use torch_core::team::{
    Candidate, CandidateId, Formation, FormationError, FormationWeights, TeamSpec,
};
use torch_core::{AgentId, EventData, TaskId};
use torch_store::{NewTask, Routing, Store};

use crate::engine::PIN_LABEL;
use crate::hub::Shared;
use crate::lifecycle::{LifeCmd, Origin};

/// The spec label naming a task's team (its team task's id).
pub(crate) const TEAM_LABEL: &str = "torch.team";
/// The spec label naming the role a team subtask was given to.
pub(crate) const ROLE_LABEL: &str = "torch.role";
/// In a team's task and its members' subtasks: the team's id (for
/// `torch msg send --team "$TORCH_TEAM"`).
pub(crate) const ENV_TEAM: &str = "TORCH_TEAM";
/// In a member's subtask: its role.
pub(crate) const ENV_ROLE: &str = "TORCH_TEAM_ROLE";

/// Why a submission's team could not be formed.
#[derive(Debug, thiserror::Error)]
#[error("task {index} ({name}): team cannot be formed: {reason}")]
pub(crate) struct Unformable {
    /// The task's index in the submission.
    pub(crate) index: usize,
    /// Its name.
    pub(crate) name: String,
    /// Why (naming the role).
    pub(crate) reason: String,
}

/// What forming the teams of a submission produced.
#[derive(Default)]
pub(crate) struct Formed {
    /// The team tasks (their ids).
    pub(crate) teams: Vec<TaskId>,
    /// Subtasks added to the batch.
    pub(crate) subtasks: usize,
}

/// The integration branch of the team of `task`.
pub(crate) fn integration_branch(task: TaskId) -> String {
    format!("torch/team/{task}")
}

/// Forms a team for every task of `batch` that asks for one (a `team`
/// spec, or — `needs_team[i]`, its analysis' verdict — a top-level task no
/// single agent covers), in
/// place: the team task is pinned to its leader and its subtasks appended
/// to `batch`. All or nothing for the submission: the first team that
/// cannot be formed refuses it (recorded as `team.formation_failed`).
pub(crate) async fn form_teams<S: Store>(
    shared: &Shared<S>,
    batch: &mut Vec<NewTask>,
    needs_team: &[bool],
    top_level: bool,
) -> Result<Formed, Unformable> {
    let wanted: Vec<(usize, TeamSpec)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            if let Some(team) = &t.spec.team {
                return Some((i, team.clone()));
            }
            if !(top_level && needs_team.get(i).copied().unwrap_or(false)) {
                return None;
            }
            let analysis: TaskAnalysis = serde_json::from_str(t.analysis.as_deref()?).ok()?;
            Some((i, TeamSpec::from_required(&analysis.required)))
        })
        .collect();
    let mut formed = Formed::default();
    if wanted.is_empty() {
        return Ok(formed);
    }
    if !shared.is_leader() {
        let (index, _) = &wanted[0];
        return Err(Unformable {
            index: *index,
            name: batch[*index].name.clone(),
            reason: "teams are formed by the leader hub, which this hub could not reach; \
                     retry when it is back"
                .into(),
        });
    }
    let agents = shared
        .engine
        .ask(crate::engine::Query::Agents)
        .await
        .unwrap_or_default();
    let mut busy: Vec<AgentId> = Vec::new();
    for (index, spec) in wanted {
        let name = batch[index].name.clone();
        let refuse = |reason: String| Unformable {
            index,
            name: name.clone(),
            reason,
        };
        let candidates = candidates(shared, &agents, &busy).await;
        let spec = normalized(shared, spec);
        let formation =
            match torch_core::team::form(&spec, &candidates, &FormationWeights::default()) {
                Ok(f) => f,
                Err(e) => {
                    let role = match &e {
                        FormationError::Uncoverable { role, .. } => Some(role.clone()),
                        _ => None,
                    };
                    failed(shared, role, e.to_string()).await;
                    return Err(refuse(e.to_string()));
                }
            };
        let task = batch[index].id;
        let tenant = batch[index]
            .spec
            .tenant
            .clone()
            .unwrap_or_else(|| torch_core::scheduler::DEFAULT_TENANT.to_string());
        let members = match members_of(shared, &formation, task, &tenant).await {
            Ok(m) => m,
            Err(reason) => {
                failed(shared, None, reason.clone()).await;
                return Err(refuse(reason));
            }
        };
        busy.extend(members.iter().map(|m| m.agent_id));
        let leader = members[formation.leader].agent_id;
        let repository = batch[index]
            .spec
            .context
            .as_ref()
            .and_then(|c| c.git_repository().map(str::to_string));
        let branch = repository.as_ref().map(|_| integration_branch(task));
        if let (Some(repo), Some(into)) = (&repository, &branch) {
            let base = batch[index]
                .spec
                .context
                .as_ref()
                .and_then(|c| c.branch.clone());
            if let Err(e) = shared
                .merges
                .ensure_branch(repo, into, base.as_deref())
                .await
            {
                let reason = format!("its integration branch could not be made: {e}");
                failed(shared, None, reason.clone()).await;
                return Err(refuse(reason));
            }
        }
        let (subtasks, members) =
            subtasks_of(shared, &batch[index], &spec, members, branch.as_deref());
        pin_team_task(&mut batch[index], spec.clone(), leader);
        let event = TeamFormed {
            integration_branch: branch,
            leader,
            leader_reason: formation.leader_reason.clone(),
            members,
            repository,
            explanation: explanation(&formation),
            task,
            term: 1,
        };
        shared
            .event(Some(leader), Some(task), EventData::TeamFormed(event))
            .await;
        formed.subtasks += subtasks.len();
        formed.teams.push(task);
        batch.extend(subtasks);
    }
    // Peer cards read the book with a little lag: bring it up to date now,
    // so members find each other on the team channel from their first step.
    if let Err(e) = shared.teams.read(&*shared.store, |_| ()).await {
        tracing::warn!(error = %e, "teams: could not read the team events back");
    }
    Ok(formed)
}

/// `spec` with its roles' skills under their canonical names (as
/// candidates' skills are).
pub(crate) fn normalized<S>(shared: &Shared<S>, mut spec: TeamSpec) -> TeamSpec {
    let tax = shared.analysis.taxonomy();
    for r in &mut spec.roles {
        for s in &mut r.skills {
            s.name = tax.normalize(&s.name);
        }
    }
    spec
}

/// Records a formation that failed.
async fn failed<S: Store>(shared: &Shared<S>, role: Option<String>, reason: String) {
    let data = EventData::TeamFormationFailed(TeamFormationFailed {
        reason,
        role,
        task: None,
    });
    shared.event(None, None, data).await;
}

/// The candidates for a team: connected agents with a free slot (not
/// already given to a team of this submission), and every template with
/// room under its `max`.
pub(crate) async fn candidates<S: Store>(
    shared: &Shared<S>,
    agents: &[AgentView],
    exclude: &[AgentId],
) -> Vec<Candidate> {
    let tax = shared.analysis.taxonomy();
    let mut out: Vec<Candidate> = agents
        .iter()
        .filter(|a| !exclude.contains(&a.id))
        .map(|a| {
            let free = matches!(a.state.as_str(), "idle" | "busy") && a.running < a.slots;
            let (cost, success) = a.routing.as_ref().map_or((0.0, 0.5), |r| {
                let s = if r.overall.count > 0 {
                    r.overall.success_ewma
                } else {
                    0.5
                };
                (r.cost, s)
            });
            Candidate {
                id: CandidateId::Agent(a.id),
                name: a.name.clone(),
                skills: tax.normalize_skills(&a.skills),
                cost,
                success,
                capacity: u32::from(free),
            }
        })
        .collect();
    let templates = &shared.cfg.lifecycle.templates;
    if templates.is_empty() {
        return out;
    }
    let managed = shared.life.ask(LifeCmd::Managed).await.unwrap_or_default();
    for t in templates {
        let live = managed.values().filter(|m| m.template == t.name).count() as u32;
        out.push(Candidate {
            id: CandidateId::Template(t.name.clone()),
            name: format!("template {}", t.name),
            skills: tax.normalize_skills(&t.parsed_skills()),
            cost: 0.0,
            success: 0.5,
            capacity: t.max.saturating_sub(live),
        });
    }
    out
}

/// The members of `formation` as agents: templates' members are spawned
/// now (their agent ids are known at once; they register shortly).
pub(crate) async fn members_of<S: Store>(
    shared: &Shared<S>,
    formation: &Formation,
    task: TaskId,
    tenant: &str,
) -> Result<Vec<TeamMember>, String> {
    let mut out = Vec::with_capacity(formation.members.len());
    for m in &formation.members {
        let (agent_id, name, template) = match &m.candidate {
            CandidateId::Agent(a) => (*a, m.name.clone(), None),
            CandidateId::Template(t) => {
                let req = SpawnRequest {
                    template: t.clone(),
                    inherit: None,
                    outlive_parent: None,
                };
                let origin = Origin::Team {
                    task,
                    tenant: tenant.to_string(),
                };
                let spawned = shared
                    .life
                    .ask(|reply| LifeCmd::Spawn { req, origin, reply })
                    .await
                    .ok_or_else(|| "the hub is stopping".to_string())?
                    .map_err(|e| {
                        format!(
                            "role {:?}: could not spawn from template {t:?}: {e}",
                            m.role
                        )
                    })?;
                (spawned.agent_id, spawned.name, Some(t.clone()))
            }
        };
        out.push(TeamMember {
            agent_id,
            cost: m.cost,
            name,
            role: m.role.clone(),
            subtask: None,
            template,
        });
    }
    Ok(out)
}

/// The subtask of each member whose role has one, routed to that member,
/// and the members with their subtask ids.
fn subtasks_of<S: Store>(
    shared: &Shared<S>,
    team_task: &NewTask,
    spec: &TeamSpec,
    mut members: Vec<TeamMember>,
    branch: Option<&str>,
) -> (Vec<NewTask>, Vec<TeamMember>) {
    let mut out = Vec::new();
    for m in &mut members {
        let Some(role) = spec.roles.iter().find(|r| r.name == m.role) else {
            continue;
        };
        let Some(task) = &role.task else { continue };
        let new = member_subtask(shared, team_task.id, &team_task.spec, m, task, branch);
        m.subtask = Some(new.id);
        out.push(new);
    }
    (out, members)
}

/// A subtask of the team of `team` for member `m`: `spec` routed to it,
/// labelled with the team and role, a child of the team's task, in its
/// tenant and repository (starting from the integration branch).
pub(crate) fn member_subtask<S: Store>(
    shared: &Shared<S>,
    team: TaskId,
    team_spec: &torch_core::TaskSpec,
    m: &TeamMember,
    spec: &torch_core::TaskSpec,
    branch: Option<&str>,
) -> NewTask {
    let id = TaskId::from_uuid(uuid::Uuid::now_v7());
    let mut spec = spec.clone();
    spec.labels
        .insert(format!("agent.{PIN_LABEL}"), m.agent_id.to_string());
    spec.labels.insert(TEAM_LABEL.into(), team.to_string());
    spec.labels.insert(ROLE_LABEL.into(), m.role.clone());
    spec.env.insert(ENV_TEAM.into(), team.to_string());
    spec.env.insert(ENV_ROLE.into(), m.role.clone());
    if spec.tenant.is_none() {
        spec.tenant = team_spec.tenant.clone();
    }
    let mut ctx = spec.context.take().unwrap_or_default();
    ctx.parent = Some(team.to_string());
    if ctx.repository.is_none() {
        ctx.repository = team_spec
            .context
            .as_ref()
            .and_then(|c| c.repository.clone());
    }
    if ctx.branch.is_none() && ctx.repository.is_some() {
        ctx.branch = branch.map(str::to_string);
    }
    spec.context = Some(ctx);
    if spec.name.is_none() {
        spec.name = Some(format!("{} ({})", team_spec.display_name(), m.role));
    }
    // Routed by its pin alone: the member was chosen for the role's skills.
    let analysis = shared.analysis.analyze(std::iter::once(&spec), &[]).pop();
    let mut queued = QueuedTask::from_spec(id, 0, &spec);
    queued.skills.clear();
    let analysis = analysis.map(|mut a| {
        a.required.clear();
        a.needs_team = false;
        a
    });
    NewTask {
        id,
        name: spec.display_name(),
        spec,
        deps: Vec::new(),
        routing: Some(Routing::of(&queued)),
        analysis: analysis.and_then(|a| serde_json::to_string(&a).ok()),
        parent: Some(team),
    }
}

/// Routes the team task to its leader: its own skills are the team's (kept
/// in `team`), so it carries none, and its stored analysis requires none.
fn pin_team_task(t: &mut NewTask, spec: TeamSpec, leader: AgentId) {
    t.spec.team = Some(spec);
    t.spec.skills.clear();
    t.spec
        .labels
        .insert(format!("agent.{PIN_LABEL}"), leader.to_string());
    t.spec.labels.insert(TEAM_LABEL.into(), t.id.to_string());
    t.spec.env.insert(ENV_TEAM.into(), t.id.to_string());
    if let Some(a) = t
        .analysis
        .as_deref()
        .and_then(|a| serde_json::from_str::<TaskAnalysis>(a).ok())
    {
        let mut a = a;
        a.required.clear();
        a.needs_team = false;
        t.analysis = serde_json::to_string(&a).ok();
    }
    let mut queued = QueuedTask::from_spec(t.id, 0, &t.spec);
    queued.skills.clear();
    queued.preferred.clear();
    t.routing = Some(Routing::of(&queued));
}

/// The formation's explanation, as stored with the team.
fn explanation(f: &Formation) -> serde_json::Value {
    let roles: BTreeMap<&str, serde_json::Value> = f
        .roles
        .iter()
        .map(|r| {
            (
                r.role.as_str(),
                json!({
                    "candidates": r.candidates.iter().map(|(n, c)| json!({"name": n, "cost": c})).collect::<Vec<_>>(),
                    "rejected": r.rejected.iter().map(|(n, why)| json!({"name": n, "why": why})).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    json!({
        "total_cost": f.total_cost,
        "leader_reason": f.leader_reason,
        "roles": roles,
        "weights": FormationWeights::default(),
    })
}

//! The team manager: on the leader, every [`TICK`], for each active team —
//! keeps its task pinned to its leader, aggregates its subtasks' progress
//! (`team.progress`), replaces members that left (`team.member_replaced`,
//! or `team.member_lost`), hands leadership on when the leader left
//! (`team.leader_changed`, a new term), feeds finished branches to the
//! merge queue, and disbands the team when its task ends
//! (`team.disbanded`; the lifecycle manager stops the members started for
//! it and cancels the subtasks left).
//!
//! A member has left when its agent has been disconnected (or, for a
//! member spawned for the team, never registered and no longer starting)
//! for longer than the grace period — half the hub's lease, so the member's
//! subtask is moved while its lease still holds (a member that reconnects
//! within it keeps its place). The replaced member's unfinished
//! subtask is cancelled (its lease revoked, so a late report of it is
//! refused) before its copy goes to the new member: no subtask runs twice
//! at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use torch_api::rest::AgentView;
use torch_core::events::team::{
    TeamDisbanded, TeamLeaderChanged, TeamMember, TeamMemberLost, TeamMemberReplaced, TeamProgress,
};
use torch_core::routing::TaskAnalysis;
use torch_core::team::{FormationWeights, TeamSpec};
use torch_core::{AgentId, EventData, TaskId, TaskState};
use torch_store::{Store, TaskFilter, TaskRecord};
use tracing::{info, warn};

use super::book::Team;
use super::form::{ROLE_LABEL, TEAM_LABEL, candidates, member_subtask, members_of};
use crate::engine::{Command, PIN_LABEL, Query};
use crate::hub::Shared;
use crate::lifecycle::LifeCmd;

/// How often the manager looks at the teams.
const TICK: Duration = Duration::from_millis(250);
/// Subtasks of one team looked at, at most.
const SUBTASKS: usize = 1000;
/// Progress changes smaller than this are not recorded.
const PROGRESS_STEP: f64 = 0.01;

/// What the manager remembers between ticks (in memory: a new leader
/// starts afresh and sends the pins again).
#[derive(Default)]
pub(super) struct Manager {
    /// Members seen gone, since when (unix ms).
    gone_since: HashMap<AgentId, u64>,
    /// The pin last sent for each team task.
    pinned: HashMap<TaskId, AgentId>,
}

/// Runs the manager until `stop`.
pub(crate) async fn run<S: Store>(shared: Arc<Shared<S>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut m = Manager::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                if !shared.is_leader() {
                    m = Manager::default();
                    continue;
                }
                m.tick(&shared).await;
            }
        }
    }
}

impl Manager {
    async fn tick<S: Store>(&mut self, shared: &Arc<Shared<S>>) {
        let active = match shared
            .teams
            .read(&*shared.store, |t| {
                t.values()
                    .filter(|t| t.disbanded.is_none())
                    .cloned()
                    .collect::<Vec<Team>>()
            })
            .await
        {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "teams: could not read the team events");
                return;
            }
        };
        if active.is_empty() {
            return;
        }
        let agents = shared.engine.ask(Query::Agents).await.unwrap_or_default();
        let managed = shared.life.ask(LifeCmd::Managed).await.unwrap_or_default();
        let now = shared.now_ms();
        for team in active {
            let rec = match shared.store.get_task(team.task).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(task_id = %team.task, error = %e, "teams: could not read a team's task");
                    continue;
                }
            };
            let mut subtasks = subtasks(shared, team.task).await;
            subtasks.retain(|t| !team.replaced.contains(&t.id));
            let ended = match &rec {
                Some(r) if !r.state.is_terminal() => None,
                Some(r) => Some(r.state.to_string()),
                None => Some("missing".to_string()),
            };
            let (Some(rec), None) = (rec, ended.as_ref()) else {
                let state = ended.unwrap_or_default();
                // Work that finished just before the task ended still lands,
                // and the final progress is recorded.
                self.progress(shared, &team, &subtasks).await;
                self.merge_finished(shared, &team, &subtasks, true).await;
                self.disband(shared, &team, state).await;
                continue;
            };
            if self.pinned.get(&team.task) != Some(&team.leader) {
                shared
                    .engine
                    .send(Command::Pin {
                        task: team.task,
                        agent: Some(team.leader),
                    })
                    .await;
                self.pinned.insert(team.task, team.leader);
            }
            self.progress(shared, &team, &subtasks).await;
            let gone: Vec<TeamMember> = team
                .members
                .iter()
                .filter(|m| self.gone(m, &agents, &managed, now, shared.cfg.lease / 2))
                .cloned()
                .collect();
            if !gone.is_empty() {
                self.replace(shared, &team, &rec, &gone, &agents, &subtasks)
                    .await;
            }
            self.merge_finished(shared, &team, &subtasks, false).await;
        }
    }

    /// Whether member `m` has left (see the module docs).
    fn gone(
        &mut self,
        m: &TeamMember,
        agents: &[AgentView],
        managed: &HashMap<AgentId, torch_api::rest::ManagedView>,
        now: u64,
        grace: Duration,
    ) -> bool {
        let here = agents
            .iter()
            .find(|a| a.id == m.agent_id)
            .is_some_and(|a| a.state != "disconnected");
        let starting = managed
            .get(&m.agent_id)
            .is_some_and(|v| v.phase == "starting");
        if here || starting {
            self.gone_since.remove(&m.agent_id);
            return false;
        }
        let since = *self.gone_since.entry(m.agent_id).or_insert(now);
        now.saturating_sub(since) > grace.as_millis() as u64
    }

    /// Records the team's progress when it moved.
    async fn progress<S: Store>(&self, shared: &Shared<S>, team: &Team, subtasks: &[TaskRecord]) {
        let (progress, done, total) = aggregate(subtasks);
        if done == team.done
            && total == team.total
            && (progress - team.progress).abs() < PROGRESS_STEP
        {
            return;
        }
        let data = EventData::TeamProgress(TeamProgress {
            done,
            progress,
            task: team.task,
            total,
        });
        shared.event(None, Some(team.task), data).await;
    }

    /// Hands leadership on (when the leader left) and forms the roles of
    /// members that left again.
    async fn replace<S: Store>(
        &mut self,
        shared: &Arc<Shared<S>>,
        team: &Team,
        rec: &TaskRecord,
        gone: &[TeamMember],
        agents: &[AgentView],
        subtasks: &[TaskRecord],
    ) {
        let gone_ids: Vec<AgentId> = gone.iter().map(|m| m.agent_id).collect();
        let mut exclude: Vec<AgentId> = team.members.iter().map(|m| m.agent_id).collect();
        let spec = rec.spec.team.clone().unwrap_or_default();
        let tenant = rec
            .spec
            .tenant
            .clone()
            .unwrap_or_else(|| torch_core::scheduler::DEFAULT_TENANT.to_string());
        let mut fresh: Vec<TeamMember> = Vec::new();
        for old in gone {
            self.gone_since.remove(&old.agent_id);
            let why = format!("member {} ({}) left", old.name, old.role);
            let Some(role) = spec.roles.iter().find(|r| r.name == old.role) else {
                continue;
            };
            let one = super::form::normalized(
                shared,
                TeamSpec {
                    roles: vec![torch_core::team::RoleSpec {
                        count: 1,
                        ..role.clone()
                    }],
                    leader: None,
                    max_size: None,
                },
            );
            let cands = candidates(shared, agents, &exclude).await;
            let formed = torch_core::team::form(&one, &cands, &FormationWeights::default())
                .map_err(|e| e.to_string());
            let member = match formed {
                Ok(f) => members_of(shared, &f, team.task, &tenant).await,
                Err(e) => Err(e),
            };
            // The unfinished subtask of the member that left (or one that
            // died with it: its lease expired with no retry left).
            let open = subtasks.iter().find(|t| {
                !matches!(t.state, TaskState::Succeeded | TaskState::Cancelled)
                    && t.spec.labels.get(&format!("agent.{PIN_LABEL}"))
                        == Some(&old.agent_id.to_string())
            });
            match member {
                Ok(mut members) if !members.is_empty() => {
                    let mut member = members.remove(0);
                    exclude.push(member.agent_id);
                    let mut replaced = None;
                    if let Some(open) = open {
                        replaced = Some(open.id);
                        if let Some(copy) =
                            self.move_subtask(shared, team, rec, open, &member).await
                        {
                            member.subtask = Some(copy);
                        }
                    }
                    info!(task_id = %team.task, old = %old.agent_id, new = %member.agent_id, role = %old.role, "teams: member replaced");
                    fresh.push(member.clone());
                    let data = EventData::TeamMemberReplaced(TeamMemberReplaced {
                        member,
                        previous: old.agent_id,
                        reason: why,
                        replaced_subtask: replaced,
                        task: team.task,
                    });
                    shared.event(None, Some(team.task), data).await;
                }
                Ok(_) | Err(_) => {
                    let reason = match member {
                        Err(e) => e,
                        Ok(_) => "no member formed".into(),
                    };
                    warn!(task_id = %team.task, role = %old.role, reason = %reason, "teams: a member left and nobody can take its role");
                    let data = EventData::TeamMemberLost(TeamMemberLost {
                        agent_id: old.agent_id,
                        reason: format!("{why}; {reason}"),
                        role: old.role.clone(),
                        task: team.task,
                    });
                    shared.event(None, Some(team.task), data).await;
                }
            }
        }
        if gone_ids.contains(&team.leader) {
            self.hand_on(shared, team, &gone_ids, &fresh).await;
        }
    }

    /// Cancels `open` (the subtask of a member that left) and submits its
    /// copy for `member`; returns the copy's id.
    async fn move_subtask<S: Store>(
        &self,
        shared: &Arc<Shared<S>>,
        team: &Team,
        rec: &TaskRecord,
        open: &TaskRecord,
        member: &TeamMember,
    ) -> Option<TaskId> {
        let reason = format!(
            "team {}: its member left; moved to {}",
            team.task, member.name
        );
        if !open.state.is_terminal()
            && let Err(e) = shared.cancel_task(open.id, reason).await
        {
            warn!(task_id = %open.id, error = %e, "teams: could not cancel a departed member's subtask");
            return None;
        }
        let mut spec = open.spec.clone();
        spec.labels.remove(&format!("agent.{PIN_LABEL}"));
        spec.labels.remove(TEAM_LABEL);
        spec.labels.remove(ROLE_LABEL);
        spec.env.remove(super::form::ENV_TEAM);
        spec.env.remove(super::form::ENV_ROLE);
        let copy = member_subtask(
            shared,
            team.task,
            &rec.spec,
            member,
            &spec,
            team.integration_branch.as_deref(),
        );
        super::submit_internal(shared, vec![copy]).await.pop()
    }

    /// The leader left: the next member leads under a new term.
    async fn hand_on<S: Store>(
        &mut self,
        shared: &Shared<S>,
        team: &Team,
        gone: &[AgentId],
        fresh: &[TeamMember],
    ) {
        // The next member after the leader, in role order, that is still
        // here; else a member formed just now.
        let next = team
            .members
            .iter()
            .filter(|m| !gone.contains(&m.agent_id))
            .chain(fresh.iter())
            .next()
            .cloned();
        let Some(next) = next else {
            let reason = format!("team {}: every member left", team.task);
            warn!(task_id = %team.task, "teams: no member left to lead; cancelling the team's task");
            if let Err(e) = shared.cancel_task(team.task, reason).await {
                warn!(task_id = %team.task, error = %e, "teams: could not cancel");
            }
            return;
        };
        let term = team.term + 1;
        info!(task_id = %team.task, leader = %next.agent_id, term, "teams: new leader");
        shared
            .engine
            .send(Command::Pin {
                task: team.task,
                agent: Some(next.agent_id),
            })
            .await;
        self.pinned.insert(team.task, next.agent_id);
        let data = EventData::TeamLeaderChanged(TeamLeaderChanged {
            leader: next.agent_id,
            previous: team.leader,
            reason: format!(
                "the leader left; {} ({}) is the next member",
                next.name, next.role
            ),
            task: team.task,
            term,
        });
        shared
            .event(Some(next.agent_id), Some(team.task), data)
            .await;
    }

    /// The team's task ended: the team disbands.
    async fn disband<S: Store>(&mut self, shared: &Shared<S>, team: &Team, state: String) {
        self.pinned.remove(&team.task);
        shared
            .engine
            .send(Command::Pin {
                task: team.task,
                agent: None,
            })
            .await;
        // Stops the members started for it and cancels its open subtasks.
        shared.life.send(LifeCmd::Parent { task: team.task }).await;
        info!(task_id = %team.task, state = %state, "teams: disbanded");
        let data = EventData::TeamDisbanded(TeamDisbanded {
            state,
            stopped: team.spawned.clone(),
            task: team.task,
        });
        shared.event(None, Some(team.task), data).await;
    }
}

/// The subtasks of the team of `task`: the tasks it delegated.
async fn subtasks<S: Store>(shared: &Shared<S>, task: TaskId) -> Vec<TaskRecord> {
    let filter = TaskFilter {
        parent: Some(task),
        limit: SUBTASKS,
        ..TaskFilter::default()
    };
    match shared.store.list_tasks(filter).await {
        Ok(p) => p.tasks,
        Err(e) => {
            warn!(task_id = %task, error = %e, "teams: could not list subtasks");
            Vec::new()
        }
    }
}

/// A subtask's weight: its estimate (the analysis' complexity score, at
/// least 0.05), 1 when it has none.
pub(crate) fn weight(t: &TaskRecord) -> f64 {
    t.analysis
        .as_deref()
        .and_then(|a| serde_json::from_str::<TaskAnalysis>(a).ok())
        .map_or(1.0, |a| a.complexity.score.max(0.05))
}

/// A subtask's progress: 1 once it ended, else its last report.
pub(crate) fn progress_of(t: &TaskRecord) -> f64 {
    if t.state.is_terminal() {
        1.0
    } else if t.state == TaskState::Blocked {
        0.0
    } else {
        t.progress
            .as_ref()
            .map_or(0.0, |p| (p.0 / 100.0).clamp(0.0, 1.0))
    }
}

/// The team's progress (weighted), subtasks ended, subtasks in all.
pub(crate) fn aggregate(subtasks: &[TaskRecord]) -> (f64, u32, u32) {
    let total_w: f64 = subtasks.iter().map(weight).sum();
    let progress = if total_w > 0.0 {
        subtasks
            .iter()
            .map(|t| weight(t) * progress_of(t))
            .sum::<f64>()
            / total_w
    } else {
        0.0
    };
    let done = subtasks.iter().filter(|t| t.state.is_terminal()).count() as u32;
    (
        (progress * 1000.0).round() / 1000.0,
        done,
        subtasks.len() as u32,
    )
}

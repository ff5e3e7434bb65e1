//! Feeding a team's finished branches to the merge queue
//! ([`crate::merge::MergeQueue`]): each subtask that succeeded in the
//! team's repository left its work on `torch/<task>/<attempt>`; the branch
//! is queued (`merge.queued`), checked for conflicts and merged onto the
//! team's integration branch (`merge.landed`), or — on a conflict — given
//! back to the member that produced it as a follow-up task naming the
//! conflicting paths (`merge.conflict`). The follow-up is a subtask of the
//! team like any other: its own branch goes through the queue in turn.
//!
//! Merges run in the manager's tick, one at a time per repository (the
//! queue serialises them). A merge the hub did not finish (it stopped
//! after `merge.queued`) is merged again by the next tick or the next
//! leader: merging a branch that already landed is a no-op. Branches of
//! subtasks that succeeded just before the team's task ended are merged
//! before the team disbands (a conflict then gets no follow-up).

use torch_core::events::team::{MergeEvent, TeamMember};
use torch_core::{EventData, TaskState};
use torch_store::{Store, TaskRecord};
use tracing::{info, warn};

use super::book::Team;
use super::form::{ROLE_LABEL, member_subtask};
use super::run::Manager;
use crate::engine::PIN_LABEL;
use crate::hub::Shared;
use crate::merge::MergeOutcome;

/// The branch an attempt's work is on (as the agent names it).
pub(crate) fn attempt_branch(t: &TaskRecord) -> String {
    format!("torch/{}/{}", t.id, t.attempt)
}

impl Manager {
    /// Merges the branch of each subtask that succeeded and whose merge has
    /// not ended yet. The last pass (`ending`: the team's task ended)
    /// records conflicts without follow-ups: nobody would run them.
    pub(super) async fn merge_finished<S: Store>(
        &mut self,
        shared: &std::sync::Arc<Shared<S>>,
        team: &Team,
        subtasks: &[TaskRecord],
        ending: bool,
    ) {
        let (Some(repo), Some(into)) = (&team.repository, &team.integration_branch) else {
            return;
        };
        for t in subtasks.iter().filter(|t| t.state == TaskState::Succeeded) {
            let branch = attempt_branch(t);
            let state = team
                .merges
                .iter()
                .find(|m| m.subtask == t.id && m.branch == branch)
                .map(|m| m.state.as_str());
            if matches!(state, Some("landed" | "conflict")) {
                continue;
            }
            let mut ev = MergeEvent {
                branch: branch.clone(),
                commit: None,
                follow_up: None,
                into: into.clone(),
                paths: Vec::new(),
                subtask: t.id,
                task: team.task,
            };
            if state.is_none() {
                let queued = EventData::MergeQueued(ev.clone());
                shared.event(None, Some(team.task), queued).await;
            }
            match shared.merges.merge(repo, &branch, into).await {
                Ok(MergeOutcome::Landed { commit } | MergeOutcome::UpToDate { commit }) => {
                    info!(task_id = %team.task, branch = %branch, commit = %commit, "teams: merged");
                    ev.commit = Some(commit);
                    shared
                        .event(None, Some(team.task), EventData::MergeLanded(ev))
                        .await;
                }
                Ok(MergeOutcome::Conflict { paths }) => {
                    info!(task_id = %team.task, branch = %branch, paths = ?paths, "teams: merge conflict");
                    if !ending {
                        ev.follow_up = self.follow_up(shared, team, t, &paths, into).await;
                    }
                    ev.paths = paths;
                    shared
                        .event(None, Some(team.task), EventData::MergeConflict(ev))
                        .await;
                }
                Err(e) => {
                    // Left queued: the next tick tries again.
                    warn!(task_id = %team.task, branch = %branch, error = %e, "teams: merge failed");
                }
            }
        }
    }

    /// A follow-up of subtask `t` for the member that produced it: the same
    /// work again from the integration branch, told which paths conflicted.
    async fn follow_up<S: Store>(
        &self,
        shared: &Shared<S>,
        team: &Team,
        t: &TaskRecord,
        paths: &[String],
        into: &str,
    ) -> Option<torch_core::TaskId> {
        let team_rec = shared.store.get_task(team.task).await.ok().flatten()?;
        let agent = t.last_agent.or(t.agent)?;
        let role = t.spec.labels.get(ROLE_LABEL).cloned().unwrap_or_default();
        let member = team
            .members
            .iter()
            .find(|m| m.agent_id == agent)
            .cloned()
            .unwrap_or(TeamMember {
                agent_id: agent,
                cost: 0.0,
                name: agent.to_string(),
                role,
                subtask: None,
                template: None,
            });
        let mut spec = t.spec.clone();
        spec.labels.remove(&format!("agent.{PIN_LABEL}"));
        let note = format!(
            "Your change from task {} (branch {}) conflicts with the team's integration \
             branch {into} in: {}. Redo it on top of {into} (this attempt starts from it) \
             so that it merges cleanly.",
            t.id,
            attempt_branch(t),
            paths.join(", ")
        );
        spec.prompt = Some(match spec.prompt.take() {
            Some(p) => format!("{note}\n\n{p}"),
            None => note,
        });
        spec.env
            .insert("TORCH_MERGE_CONFLICT".into(), paths.join("\n"));
        spec.name = Some(format!("{} (merge follow-up)", t.name));
        spec.idempotency_key = None;
        if let Some(ctx) = spec.context.as_mut() {
            ctx.branch = Some(into.to_string());
        }
        let new = member_subtask(
            shared,
            team.task,
            &team_rec.spec,
            &member,
            &spec,
            Some(into),
        );
        super::submit_internal(shared, vec![new]).await.pop()
    }
}

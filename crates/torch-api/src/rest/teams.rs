//! Teams: `GET /api/v1/teams` and `GET /api/v1/teams/{id}`.

use serde::{Deserialize, Serialize};
use torch_core::{AgentId, TaskId};

/// A team as the hub sees it. A team is named by the id of the task it
/// was formed for.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TeamView {
    /// The team's id: the id of its task.
    pub id: TaskId,
    /// Its task's name.
    pub name: String,
    /// `active`, or `disbanded` once its task ended.
    pub state: String,
    /// The state of the team's task.
    pub task_state: String,
    /// The leader's term: 1 at formation, one more at each new leader.
    pub term: u64,
    /// The leading member.
    pub leader: AgentId,
    /// Why it leads (formation, or the change of leader).
    pub leader_reason: String,
    /// The members (current ones; a replaced member is in `history`).
    pub members: Vec<TeamMemberView>,
    /// Progress in `0..=1`: the subtasks' progress weighted by their
    /// estimates (analysis complexity).
    pub progress: f64,
    /// Subtasks that ended, and in all.
    pub done: u32,
    /// Subtasks in all.
    pub total: u32,
    /// The team's subtasks (tasks delegated by its task).
    pub subtasks: Vec<TeamSubtaskView>,
    /// The repository the team works on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The git branch merged work lands on, with a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_branch: Option<String>,
    /// The merge queue: finished branches, in the order they entered it.
    pub merges: Vec<MergeView>,
    /// Why these members: per role, the candidates and their cost, those
    /// rejected with why, and the total cost.
    pub explanation: serde_json::Value,
    /// When it was formed (unix ms).
    pub formed_ms: u64,
    /// When it disbanded (unix ms), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disbanded_ms: Option<u64>,
    /// What happened to it since formation, oldest first (`team.*` and
    /// `merge.*` event kinds with a line of text).
    pub history: Vec<TeamHistoryItem>,
}

/// One member of a team.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TeamMemberView {
    /// Its agent.
    pub agent_id: AgentId,
    /// Display name.
    pub name: String,
    /// The role it fills.
    pub role: String,
    /// Whether it leads.
    pub leader: bool,
    /// Its agent's state (`idle`, `busy`, …, `disconnected`, or `starting`
    /// for a member being spawned).
    pub state: String,
    /// Its cost in its role at formation.
    pub cost: f64,
    /// The template it was spawned from for the team, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The subtask it was given at formation or replacement, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask: Option<TaskId>,
}

/// One subtask of a team.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TeamSubtaskView {
    /// The task.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: String,
    /// The role it was given to, if it was routed to a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The agent running it or that ran it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
    /// Its progress in `0..=1` (1 once it ended).
    pub progress: f64,
    /// Its weight in the team's progress.
    pub weight: f64,
}

/// A finished branch in a team's merge queue.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MergeView {
    /// The subtask whose attempt produced the branch.
    pub subtask: TaskId,
    /// The branch.
    pub branch: String,
    /// `queued`, `landed` or `conflict`.
    pub state: String,
    /// The merge commit on the integration branch, once landed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The conflicting paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The follow-up task for a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<TaskId>,
}

/// One thing that happened to a team.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TeamHistoryItem {
    /// When (unix ms).
    pub at_ms: u64,
    /// The event kind (`team.formed`, `team.leader_changed`, …).
    pub kind: String,
    /// What happened, in a line.
    pub text: String,
}

/// A task's team, as `GET /api/v1/tasks/{id}` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskTeam {
    /// The team's id (its task's id).
    pub id: TaskId,
    /// This task's role: `team` for the team's own task, else the role of
    /// the member it was given to (if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `active` or `disbanded`.
    pub state: String,
    /// The leading member and the leader's term.
    pub leader: AgentId,
    /// The leader's term.
    pub term: u64,
    /// Members in all.
    pub members: u32,
    /// The team's progress in `0..=1`, subtasks ended, subtasks in all.
    pub progress: f64,
    /// Subtasks that ended.
    pub done: u32,
    /// Subtasks in all.
    pub total: u32,
}

/// `GET /api/v1/teams`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TeamList {
    /// Teams, newest first: active ones and recently disbanded ones.
    pub teams: Vec<TeamView>,
}

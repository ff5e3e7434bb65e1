//! What the team and merge-queue events carry (fields in alphabetical
//! order, as stored). A team is named by the id of the task it was formed
//! for; its record is the `team.formed` event with the changes after it.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, TaskId};

/// One member of a team, as the team events record it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamMember {
    /// The member's agent (ordered from a template when `template` is set).
    pub agent_id: AgentId,
    /// Its cost in its role at formation.
    pub cost: f64,
    /// Display name.
    pub name: String,
    /// The role it fills.
    pub role: String,
    /// The subtask it was given at formation, if its role has one.
    pub subtask: Option<TaskId>,
    /// The template it was spawned from for this team, if any (it is
    /// stopped when the team disbands).
    pub template: Option<String>,
}

/// `team.formed`: a team was formed for a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamFormed {
    /// The git branch merged work lands on, when the task names a repository.
    pub integration_branch: Option<String>,
    /// The leading member.
    pub leader: AgentId,
    /// Why that member leads.
    pub leader_reason: String,
    /// The members, in role order.
    pub members: Vec<TeamMember>,
    /// The repository the team works on, if any.
    pub repository: Option<String>,
    /// The formation's explanation: per role, the candidates considered
    /// with their cost and those rejected with why; the total cost.
    pub explanation: serde_json::Value,
    /// The task the team works on (also the team's id).
    pub task: TaskId,
    /// The leader's term: 1 at formation, one more at each new leader.
    pub term: u64,
}

/// `team.formation_failed`: a team could not be formed for a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamFormationFailed {
    /// Why, naming the role that could not be covered.
    pub reason: String,
    /// The role, when one role is to blame.
    pub role: Option<String>,
    /// The task (absent when it was refused at submission and has no id).
    pub task: Option<TaskId>,
}

/// `team.leader_changed`: the leader left and another member leads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamLeaderChanged {
    /// The new leader.
    pub leader: AgentId,
    /// The leader before.
    pub previous: AgentId,
    /// Why.
    pub reason: String,
    /// The team's task.
    pub task: TaskId,
    /// The new term.
    pub term: u64,
}

/// `team.member_replaced`: a member left and its role was formed again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamMemberReplaced {
    /// The new member.
    pub member: TeamMember,
    /// The member that left.
    pub previous: AgentId,
    /// Why.
    pub reason: String,
    /// The subtask the member that left had not finished (cancelled; the
    /// new member's subtask is its copy).
    pub replaced_subtask: Option<TaskId>,
    /// The team's task.
    pub task: TaskId,
}

/// `team.member_lost`: a member left and its role could not be formed again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamMemberLost {
    /// The member that left.
    pub agent_id: AgentId,
    /// Why no replacement was found.
    pub reason: String,
    /// Its role.
    pub role: String,
    /// The team's task.
    pub task: TaskId,
}

/// `team.progress`: the team's progress changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamProgress {
    /// Subtasks that ended.
    pub done: u32,
    /// Progress in `0..=1`: the subtasks' progress weighted by their
    /// estimated durations.
    pub progress: f64,
    /// The team's task.
    pub task: TaskId,
    /// Subtasks in all.
    pub total: u32,
}

/// `team.disbanded`: the team's task ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamDisbanded {
    /// The task's final state.
    pub state: String,
    /// Members started for the team that were stopped.
    pub stopped: Vec<AgentId>,
    /// The team's task.
    pub task: TaskId,
}

/// `merge.queued`, `merge.landed` and `merge.conflict`: a finished branch
/// in a team's merge queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeEvent {
    /// The branch to merge.
    pub branch: String,
    /// The merge commit on the integration branch (`merge.landed`).
    pub commit: Option<String>,
    /// The follow-up task given to the member (`merge.conflict`).
    pub follow_up: Option<TaskId>,
    /// The integration branch.
    pub into: String,
    /// The conflicting paths (`merge.conflict`).
    pub paths: Vec<String>,
    /// The subtask whose attempt produced the branch.
    pub subtask: TaskId,
    /// The team's task.
    pub task: TaskId,
}

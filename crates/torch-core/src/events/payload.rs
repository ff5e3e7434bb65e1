//! What each kind of event carries (its `data`), field for field as the
//! writers write it.
//!
//! Fields are declared in alphabetical order, the order of the stored JSON
//! (the store's writers build it with sorted keys); an `Option` without
//! `skip_serializing_if` is written as `null`, one with it is left out.
//! [`EventKind`](super::EventKind) says which kind carries which payload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, TaskId};
use crate::routing::Explanation;
use crate::skill::Skill;
use crate::state::TaskState;

/// `task.submitted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSubmitted {
    /// Display name.
    pub name: String,
    /// Priority (higher first).
    pub priority: i32,
    /// `queued`, or `blocked` on dependencies.
    pub state: TaskState,
}

/// `task.ready`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskReady {
    /// The dependency whose success released the task.
    pub released_by: TaskId,
}

/// `task.retried`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRetried {
    /// Where the task went: `queued`, or `blocked` on dependencies.
    pub state: TaskState,
    /// Where it was: `dead` or `cancelled`.
    pub was: TaskState,
}

/// `task.assigned`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskAssigned {
    /// The agent that holds the lease.
    pub agent: AgentId,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// The lease's fence token.
    pub fence: u64,
    /// Why the task went to this agent, when the scheduler explained it.
    /// Last, not in alphabetical order: the store appends it to the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Box<Explanation>>,
}

/// `task.started`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStarted {
    /// The lease's fence token.
    pub fence: u64,
}

/// `task.progress`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskProgress {
    /// The lease's fence token.
    pub fence: u64,
    /// The report's message (`null` when none).
    pub message: Option<String>,
    /// 0 to 100.
    pub percent: f64,
    /// The agent CLI's activity, when the report came from its stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<crate::liveness::Activity>,
    /// What the agent CLI waits on, if it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<crate::liveness::Waiting>,
}

/// `task.stalled`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStalled {
    /// The lease's fence token.
    pub fence: u64,
    /// True when the attempt is ended and the task requeued.
    pub requeue: bool,
    /// The stall limit that was passed, ms.
    pub stall_ms: u64,
}

/// `task.succeeded`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSucceeded {
    /// The agent that ran the attempt (`null` when unknown).
    pub agent: Option<AgentId>,
    /// Attempt number.
    pub attempt: u32,
    /// The lease's fence token.
    pub fence: u64,
}

/// `task.failed` and `task.lease_expired`: an attempt ended and the task
/// will be tried again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptFailed {
    /// Attempt number.
    pub attempt: u32,
    /// The lease's fence token.
    pub fence: u64,
    /// Why the attempt failed.
    pub reason: String,
    /// Earliest start of the next attempt (unix ms).
    pub retry_at_ms: u64,
    /// Always true: a failure without a retry is `task.dead`.
    pub will_retry: bool,
}

/// `task.dead`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDead {
    /// The last attempt's number.
    pub attempt: u32,
    /// The last attempt's outcome kind (`failed`, `fatal`, `timed_out`,
    /// `lease_expired`, …).
    pub cause: String,
    /// Every agent on which an attempt failed.
    pub failed_agents: Vec<AgentId>,
    /// The last lease's fence token.
    pub fence: u64,
    /// Why, with on how many agents it failed.
    pub reason: String,
}

/// `task.cancelled`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCancelled {
    /// Why.
    pub reason: String,
    /// The state it was cancelled in.
    pub was: TaskState,
}

/// `task.stale_report_refused`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaleReportRefused {
    /// The task's current fence token (0 when the task is unknown).
    pub current_fence: u64,
    /// The fence the report carried.
    pub fence: u64,
    /// The task's state, or `unknown`.
    pub state: String,
}

/// `agent.joined`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentJoined {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its name.
    pub name: String,
    /// Its skills.
    pub skills: Vec<Skill>,
    /// Its task slots.
    pub slots: u32,
}

/// `agent.left`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentLeft {
    /// Why the session ended.
    pub reason: String,
}

/// `agent.spawned`. The event's agent is the new one; its task is the
/// parent task, if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSpawned {
    /// Spawn depth (0 for the autoscaler's agents).
    pub depth: u32,
    /// The new agent's name.
    pub name: String,
    /// The node ordered to start it.
    pub node: String,
    /// The agent that asked for it (`null` for the autoscaler's).
    pub parent_agent: Option<AgentId>,
    /// The task it works for (`null` when none).
    pub parent_task: Option<TaskId>,
    /// Why (`autoscale`, `spawn`, `recycle`, …).
    pub reason: String,
    /// Its template.
    pub template: String,
    /// The tenant charged for it.
    pub tenant: String,
}

/// `agent.spawn_refused`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSpawnRefused {
    /// The depth the agent would have had.
    pub depth: u32,
    /// Which limit refused it (`pool-max`, `children`, …).
    pub limit: String,
    /// The refusal, for people.
    pub message: String,
    /// The agent that asked (`null` for the autoscaler).
    pub parent_agent: Option<AgentId>,
    /// The task it asked from (`null` when none).
    pub parent_task: Option<TaskId>,
    /// Why the spawn was wanted.
    pub reason: String,
    /// The template.
    pub template: String,
}

/// `agent.spawn_failed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSpawnFailed {
    /// What went wrong.
    pub error: String,
    /// The node ordered to start it.
    pub node: String,
    /// Its template.
    pub template: String,
}

/// `agent.ready`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentReady {
    /// The node that runs it.
    pub node: String,
    /// Why it was spawned.
    pub reason: String,
    /// Spawn order to registration, ms.
    pub spawn_ms: u64,
    /// Its template.
    pub template: String,
}

/// `agent.memory_inherited`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryInherited {
    /// The parent agent.
    pub from: AgentId,
    /// The keys copied.
    pub keys: Vec<String>,
    /// The helper that received them.
    pub to: AgentId,
}

/// `agent.draining`: a managed agent (with its template and node), or an
/// agent the hub did not start (`managed: false`), which only stops
/// getting work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentDraining {
    /// `false` for an agent the hub did not start; absent for a managed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
    /// A managed agent's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why.
    pub reason: String,
    /// A managed agent's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// `agent.terminated` (the hub stopped it) and `agent.exited` (it ended on
/// its own): a managed agent's process ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentExit {
    /// Exit code, when it exited (`null` otherwise).
    pub code: Option<i32>,
    /// The node that ran it.
    pub node: String,
    /// Its process id.
    pub pid: u32,
    /// Why, for people.
    pub reason: String,
    /// True when the hub ordered the stop.
    pub requested: bool,
    /// The signal that killed it, if one did (`null` otherwise).
    pub signal: Option<i32>,
    /// Its template.
    pub template: String,
}

/// `tasks.handed_off`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TasksHandedOff {
    /// The follower hub that accepted the submissions.
    pub hub: String,
    /// The tasks it wrote.
    pub tasks: Vec<TaskId>,
}

/// `message.sent`, `message.delivered`, `message.relayed`,
/// `message.bounced` and `message.refused`: what happened to one direct
/// message, never its body. The event's agent is the one reporting it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageEvent {
    /// `direct` or `relayed`, when known.
    pub delivery: Option<String>,
    /// Sender (as claimed, for a refusal): an agent id or `hub`.
    pub from: Option<String>,
    /// The message's id, when it could be read.
    pub id: Option<String>,
    /// The message's kind.
    pub kind: Option<String>,
    /// Why it was bounced or refused.
    pub reason: Option<String>,
    /// Recipient agent.
    pub to: Option<String>,
    /// The envelope's `sent_ms` (the sender's clock when it signed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<u64>,
    /// When the reporting agent saw it happen (its clock, unix ms); the
    /// event's own time is when the hub recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

/// `identity.refused`: a session that claimed an agent id it could not
/// prove (another token, another key, or a wrong answer to the challenge).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentityRefused {
    /// The id claimed.
    pub claimed: String,
    /// Why it was refused.
    pub reason: String,
}

/// `alert.firing` and `alert.resolved`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertChange {
    /// The rule's name.
    pub alert: String,
    /// When it fired (unix ms); for `alert.firing`, now.
    pub fired_ms: u64,
    /// `critical`, `warning`, `info`.
    pub severity: String,
    /// The signal it watches (e.g. `node_cpu_ratio`).
    pub signal: String,
    /// What it means.
    pub summary: String,
    /// The firing threshold.
    pub threshold: f64,
    /// The value that fired or resolved it.
    pub value: f64,
}

//! Records passed into and out of the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use torch_core::scheduler::QueuedTask;
use torch_core::{
    AgentId, EventData, EventKind, Outcome, Skill, SkillReq, TaskContext, TaskId, TaskSpec,
    TaskState,
};

use crate::StoreError;

/// A validated task ready to insert. The hub mints `id`.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// The new task's id.
    pub id: TaskId,
    /// Display name (the spec's name or one derived from the command).
    pub name: String,
    /// The spec as submitted (normalised).
    pub spec: TaskSpec,
    /// Dependencies: ids of tasks in the same batch or already stored.
    pub deps: Vec<TaskId>,
    /// What routing needs (normalised skills, preferences, context, tenant).
    /// `None`: derived from the spec with [`QueuedTask::from_spec`].
    pub routing: Option<Routing>,
    /// The task analysis (JSON), stored with the task and returned by `get_task`.
    pub analysis: Option<String>,
    /// The task that delegated this one (`torch delegate`), if any.
    pub parent: Option<TaskId>,
}

/// The routing view of a task, stored with it so that every `QueuedTask` the
/// store hands back (ready, requeued, released, loaded) routes the same way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    /// Required skills, normalised by the taxonomy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<SkillReq>,
    /// Preferred skills (explicit and inferred).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred: Vec<SkillReq>,
    /// Labels an agent must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_labels: BTreeMap<String, String>,
    /// Where the work lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<TaskContext>,
    /// Owner for fair sharing.
    #[serde(default)]
    pub tenant: String,
}

impl Routing {
    /// Captures the routing fields of a queued task.
    pub fn of(task: &QueuedTask) -> Routing {
        Routing {
            skills: task.skills.clone(),
            preferred: task.preferred.clone(),
            agent_labels: task.agent_labels.clone(),
            context: task.context.clone(),
            tenant: task.tenant.clone(),
        }
    }

    /// Rebuilds the queued task: these fields plus the row's identity,
    /// `not_before` and the agents that already failed it (`avoid`).
    pub fn queued(
        &self,
        id: TaskId,
        priority: i32,
        seq: u64,
        not_before: u64,
        avoid: Vec<AgentId>,
    ) -> QueuedTask {
        let mut q =
            QueuedTask::new(id, priority, seq, self.skills.clone()).with_not_before(not_before);
        q.preferred = self.preferred.clone();
        q.agent_labels = self.agent_labels.clone();
        q.context = self.context.clone();
        if !self.tenant.is_empty() {
            q.tenant = self.tenant.clone();
        }
        q.avoid = avoid;
        q
    }
}

/// Result of inserting one task.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    /// The task (the existing one when `duplicate`).
    pub id: TaskId,
    /// Its display name.
    pub name: String,
    /// Its state now.
    pub state: TaskState,
    /// True when an idempotency key matched an existing task.
    pub duplicate: bool,
    /// Set when the task is queued now: what the scheduler needs.
    pub ready: Option<QueuedTask>,
}

/// One lease to grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The task, which must be queued.
    pub task: TaskId,
    /// The agent taking it.
    pub agent: AgentId,
    /// Lease expiry (unix ms).
    pub expires_ms: u64,
    /// Why this agent (JSON explanation), stored with the task and put in the
    /// `task.assigned` event as `explanation`.
    pub explanation: Option<String>,
}

/// A granted lease, with what the agent needs to run the task.
#[derive(Clone, Debug, PartialEq)]
pub struct Leased {
    /// The task.
    pub task: TaskId,
    /// The agent.
    pub agent: AgentId,
    /// The new fence token.
    pub fence: u64,
    /// The attempt number now running (1-based).
    pub attempt: u32,
    /// Display name.
    pub name: String,
    /// The spec.
    pub spec: TaskSpec,
}

/// Why one grant was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimRefused {
    /// The task.
    pub task: TaskId,
    /// Its state when refused (`None` if it does not exist).
    pub state: Option<TaskState>,
}

/// Whether a fenced report was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceCheck {
    /// Accepted.
    Ok,
    /// The task's current fence or state no longer matches.
    Stale {
        /// The task's current fence.
        current_fence: u64,
        /// Its current state.
        state: TaskState,
    },
    /// No such task.
    NotFound,
}

/// A finished attempt as reported by an agent.
#[derive(Clone, Debug)]
pub struct Finish {
    /// The task.
    pub task: TaskId,
    /// Fence the attempt ran under.
    pub fence: u64,
    /// The reporting agent.
    pub agent: AgentId,
    /// How it ended.
    pub outcome: Outcome,
    /// Captured output, if any: (stdout tail, stderr tail, truncated).
    pub logs: Option<(String, String, bool)>,
}

/// What recording a finished (or expired) attempt did.
// `Recorded` is by far the common case, so boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum FinishResult {
    /// Recorded now.
    Recorded(Effect),
    /// Already recorded with this fence; nothing changed.
    Duplicate,
    /// The fence is stale; nothing changed.
    Stale {
        /// The task's current fence.
        current_fence: u64,
        /// Its current state.
        state: TaskState,
    },
    /// No such task.
    NotFound,
}

/// The consequences of one recorded attempt end.
#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    /// The task.
    pub task: TaskId,
    /// Its new state: `succeeded`, `queued` (retry), `dead`, or `cancelled`.
    pub state: TaskState,
    /// Set when the task itself was requeued for another attempt.
    pub requeued: Option<QueuedTask>,
    /// Dependents that became ready.
    pub released: Vec<QueuedTask>,
    /// Dependents cancelled because this task can no longer succeed.
    pub cancelled: Vec<TaskId>,
}

/// What a cancel did.
#[derive(Clone, Debug, PartialEq)]
pub struct Cancelled {
    /// Every task cancelled (the target first, then dependents).
    pub tasks: Vec<TaskId>,
    /// Leases revoked: (task, agent, fence), so the hub can tell the agents.
    pub revoked: Vec<(TaskId, AgentId, u64)>,
}

/// What a manual retry did.
#[derive(Clone, Debug, PartialEq)]
pub struct Requeued {
    /// The task.
    pub task: TaskId,
    /// `queued`, or `blocked` if its dependencies are not done yet.
    pub state: TaskState,
    /// Set when queued.
    pub ready: Option<QueuedTask>,
}

/// A lease held at load time.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseRecord {
    /// The task.
    pub task: TaskId,
    /// Holder.
    pub agent: AgentId,
    /// Fence.
    pub fence: u64,
    /// Attempt.
    pub attempt: u32,
}

/// State the hub rebuilds its memory from at start.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Tasks in state `queued` (including those waiting out a backoff).
    pub queued: Vec<QueuedTask>,
    /// Tasks in state `assigned` or `running`.
    pub leased: Vec<LeaseRecord>,
    /// Number of non-terminal tasks (blocked, queued, assigned, running).
    pub backlog: u64,
}

/// A stored task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    /// Id.
    pub id: TaskId,
    /// Submission sequence (global, increasing).
    pub seq: u64,
    /// Display name.
    pub name: String,
    /// State.
    pub state: TaskState,
    /// The spec.
    pub spec: TaskSpec,
    /// Dependencies.
    pub deps: Vec<TaskId>,
    /// Current or last attempt number (0 before the first assignment).
    pub attempt: u32,
    /// Fence of the current or last lease (0 before the first).
    pub fence: u64,
    /// Lease holder while assigned or running.
    pub agent: Option<AgentId>,
    /// Agent of the last finished attempt.
    pub last_agent: Option<AgentId>,
    /// Earliest next attempt (unix ms), 0 when none pending.
    pub not_before_ms: u64,
    /// Last progress: (percent, message, at).
    pub progress: Option<(f64, Option<String>, u64)>,
    /// The agent CLI's activity and waiting from the last progress report
    /// that carried them.
    pub liveness: Option<torch_core::Liveness>,
    /// Last finished attempt's outcome.
    pub outcome: Option<Outcome>,
    /// Why dead or cancelled.
    pub reason: Option<String>,
    /// Submission time.
    pub created_ms: u64,
    /// Last change.
    pub updated_ms: u64,
    /// The analysis stored at submission (JSON), if any.
    pub analysis: Option<String>,
    /// The explanation of the current or last assignment (JSON), if any.
    pub explanation: Option<String>,
    /// Agents whose attempts at this task failed (distinct, in order).
    pub failed_agents: Vec<AgentId>,
    /// The task that delegated this one, if any.
    pub parent: Option<TaskId>,
}

/// Which tasks to list.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Only these states (all when empty).
    pub states: Vec<TaskState>,
    /// Only tasks with this label key and value.
    pub label: Option<(String, String)>,
    /// Only tasks with `seq` below this (paging backwards).
    pub before_seq: Option<u64>,
    /// Only tasks delegated by this parent task.
    pub parent: Option<TaskId>,
    /// At most this many (the store may cap it).
    pub limit: usize,
}

/// A page of tasks.
#[derive(Clone, Debug, Default)]
pub struct TaskPage {
    /// Newest first.
    pub tasks: Vec<TaskRecord>,
    /// Counts per state over the whole store.
    pub counts: BTreeMap<TaskState, u64>,
}

/// Captured output of one attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    /// The task.
    pub task: TaskId,
    /// Attempt the output is from.
    pub attempt: u32,
    /// Stdout tail.
    pub stdout: String,
    /// Stderr tail.
    pub stderr: String,
    /// Only the tail was kept.
    pub truncated: bool,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// Increasing id.
    pub id: u64,
    /// Stream name.
    pub stream: String,
    /// Kind, e.g. `task.succeeded`.
    pub kind: String,
    /// Task concerned.
    pub task: Option<TaskId>,
    /// Agent concerned.
    pub agent: Option<AgentId>,
    /// When.
    pub at_ms: u64,
    /// Details (JSON text).
    pub data: String,
}

/// Tasks a hub that is not the leader submitted while it could not reach
/// the leader, recorded with them for the leader (see
/// [`crate::SharedStore::submit_handoff`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// Its id (the event id of its entry on [`crate::HUBS_HANDOFF`]).
    pub id: u64,
    /// The hub that accepted the submission.
    pub hub: String,
    /// The tasks it wrote (new ones only, not duplicates).
    pub tasks: Vec<TaskId>,
}

/// An event to append. It is written on its kind's stream
/// ([`EventKind::stream`]).
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Kind.
    pub kind: EventKind,
    /// Task concerned.
    pub task: Option<TaskId>,
    /// Agent concerned.
    pub agent: Option<AgentId>,
    /// Details (JSON text): the kind's payload (see [`NewEvent::of`]).
    pub data: String,
}

impl NewEvent {
    /// The event carrying `data`, of `data`'s kind.
    pub fn of(
        data: &EventData,
        task: Option<TaskId>,
        agent: Option<AgentId>,
    ) -> Result<NewEvent, StoreError> {
        Ok(NewEvent {
            kind: data.kind(),
            task,
            agent,
            data: crate::codec::event_data(data)?,
        })
    }

    /// The stream it is written on.
    pub fn stream(&self) -> &'static str {
        self.kind.stream()
    }
}

/// An agent session starting or ending.
#[derive(Clone, Debug)]
pub enum AgentEvent {
    /// Registered (or re-registered after a reconnect).
    Joined {
        /// Id.
        id: AgentId,
        /// Name.
        name: String,
        /// Skills.
        skills: Vec<Skill>,
        /// Slots.
        slots: u32,
        /// Labels.
        labels: BTreeMap<String, String>,
    },
    /// Disconnected or declared gone.
    Left {
        /// Id.
        id: AgentId,
        /// Why.
        reason: String,
    },
}

/// A stored API token (hash only).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TokenRecord {
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// `admin`, `submitter`, `agent` or `node`.
    pub role: String,
    /// Label.
    pub name: String,
    /// When created.
    pub created_ms: u64,
    /// The tenant a submitter token belongs to (none: every tenant).
    pub tenant: Option<String>,
    /// When it stops working (unix ms); never when unset.
    pub expires_ms: Option<u64>,
    /// When it was revoked (unix ms); the first revocation is kept.
    pub revoked_ms: Option<u64>,
    /// Last authenticated use (unix ms), recorded at most about once a
    /// minute per token.
    pub last_used_ms: Option<u64>,
}

/// Hex digits of the hash that make a token's public id.
pub const TOKEN_ID_LEN: usize = 16;

/// A token's public id from its hash: the first [`TOKEN_ID_LEN`] hex
/// digits (the secret cannot be recovered from it).
pub fn token_id(hash: &str) -> &str {
    hash.get(..TOKEN_ID_LEN).unwrap_or(hash)
}

impl TokenRecord {
    /// The token's public id ([`token_id`] of its hash).
    pub fn id(&self) -> &str {
        token_id(&self.hash)
    }

    /// Whether it authenticates at `now`: not revoked, not expired (an
    /// expiry is exclusive: at `expires_ms` it no longer works).
    pub fn is_live(&self, now: u64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|e| now < e)
    }
}

/// One entry of an agent's key/value memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Last write (unix ms).
    pub updated_ms: u64,
    /// The agent this entry was copied from, when it was inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherited_from: Option<AgentId>,
}

/// Size limits on one agent's memory, enforced by the store on every write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most keys per agent.
    pub max_keys: usize,
    /// Most bytes (keys plus values) per agent.
    pub max_total_bytes: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            max_key_bytes: 256,
            max_value_bytes: 64 * 1024,
            max_keys: 1024,
            max_total_bytes: 1024 * 1024,
        }
    }
}

impl MemoryLimits {
    /// Checks one entry against the per-entry limits.
    pub fn check_entry(&self, key: &str, value: &str) -> Result<(), String> {
        if key.is_empty() {
            return Err("memory key is empty".into());
        }
        if key.len() > self.max_key_bytes {
            return Err(format!(
                "memory key is {} bytes; the limit is {}",
                key.len(),
                self.max_key_bytes
            ));
        }
        if value.len() > self.max_value_bytes {
            return Err(format!(
                "memory value for {key:?} is {} bytes; the limit is {}",
                value.len(),
                self.max_value_bytes
            ));
        }
        Ok(())
    }

    /// Checks an agent's totals after a write.
    pub fn check_totals(&self, keys: usize, bytes: usize) -> Result<(), String> {
        if keys > self.max_keys {
            return Err(format!(
                "agent memory would hold {keys} keys; the limit is {}",
                self.max_keys
            ));
        }
        if bytes > self.max_total_bytes {
            return Err(format!(
                "agent memory would hold {bytes} bytes; the limit is {}",
                self.max_total_bytes
            ));
        }
        Ok(())
    }
}

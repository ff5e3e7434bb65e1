//! REST request and response bodies.
//!
//! Fields that carry a core type (an analysis, an explanation, a routing
//! state, a scaling decision) are serialised with sorted keys, as they were
//! when they were untyped JSON values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use torch_core::lifecycle::ScaleDecision;
use torch_core::routing::{AgentStateView, Explanation, TaskAnalysis};
use torch_core::{AgentId, Outcome, Skill, TaskId, TaskSpec, TaskState};

use crate::json::sorted;

mod events;
mod observe;
mod teams;

pub use events::{EventPage, EventPayload, EventView};
pub use observe::{AlertList, AlertView, CapacityPool, CapacityReport, Headroom, PoolKey};
pub use teams::{
    MergeView, TaskTeam, TeamHistoryItem, TeamList, TeamMemberView, TeamSubtaskView, TeamView,
};

/// Error body of every non-2xx response. `code` is stable; `message` is for people.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `task_not_found`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
    /// Located problems, for spec validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// For a refused spawn: which limit refused it (`pool-max`, `children`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// For `shed`: the priority floor now (the lowest priority accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<i32>,
    /// For `deadlock`: every edge of the cycle the refused wait would have
    /// closed, the refused wait's own first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cycle: Vec<torch_core::waits::WaitEdge>,
}

/// `GET /api/v1/health`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Health {
    /// `ok` when the hub serves requests.
    pub status: String,
    /// Hub version.
    pub version: String,
    /// Store kind, e.g. `sqlite`.
    pub store: String,
    /// Milliseconds since the hub started.
    pub uptime_ms: u64,
    /// `leader` (runs the scheduler; always, on an embedded store) or
    /// `follower` (hubs sharing a Redis store).
    #[serde(default)]
    pub role: String,
    /// A follower's leader URL, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// This hub's id among hubs sharing a store (`<url>#<unique suffix>`),
    /// as named in leader leases and hand-offs; absent on an embedded store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_id: Option<String>,
}

/// `POST /api/v1/tasks`: one or many specs, accepted all-or-nothing.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The tasks; `depends_on` may name other tasks in this list.
    pub tasks: Vec<TaskSpec>,
    /// Where the specs came from (file name), used in error messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One accepted task.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubmittedTask {
    /// Its id.
    pub id: TaskId,
    /// Its display name.
    pub name: String,
    /// Its state right after submission (`queued` or `blocked`).
    pub state: TaskState,
    /// True when an idempotency key matched an existing task, which is returned instead.
    pub duplicate: bool,
    /// Analysis warnings (unknown skills, skills no agent has, truncated prompt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Response to a submission, in request order.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubmitResponse {
    /// The accepted tasks.
    pub tasks: Vec<SubmittedTask>,
}

/// The current lease on a task.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LeaseView {
    /// Agent holding the task.
    pub agent_id: AgentId,
    /// Fence token of this lease; reports with an older one are refused.
    pub fence: u64,
}

/// Last progress report from inside a task.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProgressView {
    /// 0 to 100.
    pub percent: f64,
    /// Optional message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was reported (unix ms).
    pub updated_ms: u64,
}

/// A task with its state, as `GET /api/v1/tasks/{id}` returns it.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskView {
    /// Its id.
    pub id: TaskId,
    /// Submission sequence number; page with `GET /api/v1/tasks?before=<seq>`.
    #[serde(default)]
    pub seq: u64,
    /// Display name.
    pub name: String,
    /// Current state.
    pub state: TaskState,
    /// Priority (higher first).
    pub priority: i32,
    /// Current or last attempt (1-based; 0 before the first assignment).
    pub attempt: u32,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<TaskId>,
    /// Current lease, while assigned or running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseView>,
    /// Earliest time of the next attempt (unix ms), while waiting out a backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// Last progress report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressView>,
    /// The agent CLI's activity (last tool, turns, tokens so far), from its
    /// own event stream. Since v0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<torch_core::Activity>,
    /// What the agent CLI waits on (`rate_limited`, `permission`,
    /// `api_retry`) and until when, while the task is leased. Since v0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<torch_core::Waiting>,
    /// Outcome of the last finished attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Tokens and cost: the running attempt's so far (reported from inside
    /// it), else the last attempt's as stored with its outcome. Since v0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<torch_core::Usage>,
    /// The team this task is the task of, or a subtask of (in `GET
    /// /api/v1/tasks/{id}` only): its progress, leader and term live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TaskTeam>,
    /// Why the task is dead or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Agent that ran the last finished attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_agent_id: Option<AgentId>,
    /// Submission time (unix ms).
    pub created_ms: u64,
    /// Last change (unix ms).
    pub updated_ms: u64,
    /// Labels from the spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The spec as submitted.
    pub spec: TaskSpec,
    /// Task analysis made at submission (skills, complexity, team need).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "sorted"
    )]
    pub analysis: Option<TaskAnalysis>,
    /// Why the current or last assignment went where it went (the compact
    /// form; the older form is still read, and written back compact).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "sorted"
    )]
    pub explanation: Option<Explanation>,
    /// Agents on which an attempt of this task failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_agents: Vec<AgentId>,
    /// The task that delegated this one (`torch delegate`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TaskId>,
}

/// `POST /api/v1/analyze`: analyse specs without submitting them.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnalyzeResponse {
    /// One analysis per spec, in request order.
    #[serde(serialize_with = "sorted")]
    pub analyses: Vec<TaskAnalysis>,
}

/// `GET /api/v1/tasks`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskList {
    /// Newest first.
    pub tasks: Vec<TaskView>,
    /// Counts per state over all tasks (not just this page).
    pub counts: BTreeMap<String, u64>,
}

/// Captured output of a task's last finished attempt.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogsView {
    /// The task.
    pub task_id: TaskId,
    /// Which attempt the output is from.
    pub attempt: u32,
    /// Tail of stdout (bounded).
    pub stdout: String,
    /// Tail of stderr (bounded).
    pub stderr: String,
    /// True when the agent kept only the tail of a longer output.
    pub truncated: bool,
}

/// `POST /api/v1/tasks/{id}/progress` from inside a task (task-scoped token).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    /// 0 to 100.
    pub percent: f64,
    /// Optional message (at most 1 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `POST /api/v1/tasks/{id}/usage` from inside a task (task-scoped
/// token): usage to add to the running attempt's. Since v0.3.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// Input tokens used since the last report.
    #[serde(default)]
    pub tokens_in: u64,
    /// Output tokens used since the last report.
    #[serde(default)]
    pub tokens_out: u64,
    /// US dollars spent since the last report.
    #[serde(default)]
    pub cost_usd: f64,
}

/// The answer to a [`UsageReport`]: the attempt's usage so far and whether
/// it reached its budget (the hub then stops it). Since v0.3.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageReported {
    /// The attempt's usage so far (reported from inside the task, plus the
    /// agent CLI's stream tokens when it has them).
    pub usage: torch_core::Usage,
    /// The limit reached, naming it and the usage; `null` while within.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_exceeded: Option<String>,
}

/// Totals of one group in a [`UsageSummary`]. Since v0.3.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageTotals {
    /// Input tokens.
    pub tokens_in: u64,
    /// Output tokens.
    pub tokens_out: u64,
    /// US dollars.
    pub cost_usd: f64,
    /// Tasks counted.
    pub tasks: u64,
}

/// One group of a [`UsageSummary`]: a tenant or a template. Since v0.3.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageGroup {
    /// The tenant or template (`default` when the task names none).
    pub name: String,
    /// Its totals.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// `GET /api/v1/usage`: usage stored with attempts, totalled. Since v0.3.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageSummary {
    /// Over every task counted.
    pub totals: UsageTotals,
    /// By the spec's `tenant` (`default` when none; tenants are not built
    /// yet).
    pub by_tenant: Vec<UsageGroup>,
    /// By the agent template that ran the task's last attempt (`default`
    /// when its agent came from none).
    pub by_template: Vec<UsageGroup>,
}

/// `POST /api/v1/tasks/{id}/cancel` body (optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CancelRequest {
    /// Why, recorded with the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Result of a cancel.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CancelResponse {
    /// Every task cancelled: the target and dependents that can no longer run.
    pub cancelled: Vec<TaskId>,
}

/// An agent as the hub sees it.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentView {
    /// Its id.
    pub id: AgentId,
    /// Its name.
    pub name: String,
    /// Advertised skills.
    pub skills: Vec<Skill>,
    /// Concurrent task slots.
    pub slots: u32,
    /// Tasks held now.
    pub running: u32,
    /// `idle`, `busy`, `silent` (missed heartbeats; gets no new work) or `disconnected`.
    pub state: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When it registered (unix ms).
    pub connected_ms: u64,
    /// Last message from it (unix ms).
    pub last_seen_ms: u64,
    /// Tasks it has finished in this session.
    pub completed: u64,
    /// What the router has learned: breaker, performance per skill, warm repositories.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "sorted"
    )]
    pub routing: Option<AgentStateView>,
    /// Lifecycle facts, for agents started by a node from a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedView>,
}

/// What the hub knows of an agent it started from a template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ManagedView {
    /// Template it was started from.
    pub template: String,
    /// Node that runs it.
    pub node: String,
    /// `starting`, `ready`, `draining` or `terminating`.
    pub phase: String,
    /// Why it was started (`autoscale`, `spawn`, `recycle`, `replace`…).
    pub reason: String,
    /// Process id on its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// CPU use of the agent and its tasks, in cores (from the node's `/proc` samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Resident memory of the agent and its tasks, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// The agent that asked for this helper, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_agent: Option<AgentId>,
    /// The task this helper works for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_task: Option<TaskId>,
    /// Spawn depth (0 for the autoscaler's agents).
    pub depth: u32,
    /// When it was ordered (unix ms).
    pub spawned_ms: u64,
    /// Spawn order to registration, when registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<u64>,
}

/// `POST /api/v1/agents/spawn`: start an agent from a template. From inside a
/// task (task token) the new agent is a helper of that task's agent.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnRequest {
    /// Template name.
    pub template: String,
    /// Memory keys (glob) to copy from the parent agent; must be within the
    /// template's inheritance policy. Default: what the policy allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit: Option<String>,
    /// Keep the helper after the parent task ends (default: the template's
    /// `outlive-parent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlive_parent: Option<bool>,
}

/// Answer to a spawn: the agent is ordered; it is ready once it registers.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpawnResponse {
    /// The new agent's id.
    pub agent_id: AgentId,
    /// Its name.
    pub name: String,
    /// Template.
    pub template: String,
    /// Node that starts it.
    pub node: String,
    /// Spawn depth.
    pub depth: u32,
    /// The agent that asked, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_agent: Option<AgentId>,
    /// The task it works for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_task: Option<TaskId>,
    /// Memory keys copied from the parent.
    #[serde(default)]
    pub inherited: Vec<String>,
}

/// `GET /api/v1/agents/scaling`: recent auto-scaling decisions, newest last.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScalingList {
    /// Decisions with their inputs.
    #[serde(serialize_with = "sorted")]
    pub decisions: Vec<ScaleDecision>,
}

/// One node.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeView {
    /// Name.
    pub name: String,
    /// Connected now.
    pub connected: bool,
    /// Logical CPUs.
    pub cpus: u32,
    /// Machine CPU use, 0..1.
    pub cpu_used: f64,
    /// Memory in bytes.
    pub mem_total_bytes: u64,
    /// Memory use, 0..1.
    pub mem_used: f64,
    /// Most agents it runs.
    pub max_agents: u32,
    /// Agent processes it runs now.
    pub agents: u32,
    /// Last heartbeat (unix ms).
    pub last_seen_ms: u64,
}

/// `GET /api/v1/nodes`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeList {
    /// Nodes.
    pub nodes: Vec<NodeView>,
}

/// `PUT /api/v1/memory/{key}`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryPut {
    /// The value.
    pub value: String,
}

/// One memory entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryEntryView {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Last write (unix ms).
    pub updated_ms: u64,
    /// The agent it was inherited from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherited_from: Option<AgentId>,
}

/// `GET /api/v1/memory`: an agent's memory.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryList {
    /// Whose.
    pub agent_id: AgentId,
    /// Entries by key.
    pub entries: Vec<MemoryEntryView>,
}

/// `GET /api/v1/agents`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentList {
    /// Agents, connected first.
    pub agents: Vec<AgentView>,
}

/// Token roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Submit, read, cancel and retry tasks (of its tenant when it has one).
    Submitter,
    /// Connect as an agent.
    Agent,
    /// Connect as a node (`torch node`), and as the agents a node starts.
    Node,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Submitter => "submitter",
            Role::Agent => "agent",
            Role::Node => "node",
        }
    }

    /// The role of a lowercase name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "submitter" => Some(Role::Submitter),
            "agent" => Some(Role::Agent),
            "node" => Some(Role::Node),
            _ => None,
        }
    }
}

/// `POST /api/v1/tokens` (admin only).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Role of the new token.
    pub role: Role,
    /// Label for people and the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tenant the token belongs to (not for admin tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Lifetime from now, in ms; unset: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

/// A newly created token. The secret is shown once and stored only hashed.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CreateTokenResponse {
    /// The bearer token.
    pub token: String,
    /// Its public id (for `torch token list` and `revoke`).
    #[serde(default)]
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Its label.
    pub name: String,
    /// Its tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// When it stops working (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// Whether a token works now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    /// It authenticates.
    Active,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
    /// A state this client does not know (from a newer hub).
    #[serde(other)]
    Unknown,
}

/// One token as `GET /api/v1/tokens` lists it; never the secret.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenView {
    /// Public id: the first 16 hex digits of the token's SHA-256.
    pub id: String,
    /// Label.
    pub name: String,
    /// Role (as stored; a role this client does not know is kept as text).
    pub role: String,
    /// Tenant, for a tenant's token.
    pub tenant: Option<String>,
    /// When created (unix ms).
    pub created_ms: u64,
    /// Last authenticated use (unix ms), recorded about once a minute.
    pub last_used_ms: Option<u64>,
    /// When it stops working (unix ms).
    pub expires_ms: Option<u64>,
    /// When it was revoked (unix ms).
    pub revoked_ms: Option<u64>,
    /// Whether it works now.
    pub state: TokenState,
}

/// `GET /api/v1/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenList {
    /// Every token, oldest first.
    pub tokens: Vec<TokenView>,
}

//! Locks, waits and help requests (`/api/v1/locks`, `/api/v1/waits`,
//! `/api/v1/help`): the bodies both the hub and the CLI use.

use serde::{Deserialize, Serialize};
use torch_core::waits::WaitEdge;
use torch_core::{AgentId, TaskId, TaskState};

/// `POST /api/v1/locks`: acquire a named lock or a path reservation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockAcquire {
    /// The lock's name (or give `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A path reservation: a glob such as `src/api/**` (or give `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Shared instead of exclusive.
    #[serde(default)]
    pub shared: bool,
    /// How long the grant lasts unless renewed (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Wait up to this long for the lock (default: do not wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// A lock held: the answer to an acquire or a renew.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockGrantView {
    /// The lock's name (for a path reservation, its glob).
    pub name: String,
    /// The grant's fence: give it to renew and release, and pass it to
    /// whatever the lock protects so it can refuse older holders.
    pub fence: u64,
    /// `exclusive` or `shared`.
    pub mode: String,
    /// When it lapses unless renewed (unix ms).
    pub expires_ms: u64,
    /// A path reservation.
    #[serde(default)]
    pub path: bool,
    /// Who holds it (`task:ID` or `operator:NAME`).
    pub holder: String,
}

/// `POST /api/v1/locks/renew` and `POST /api/v1/locks/release`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockFence {
    /// The lock's name (or glob).
    pub name: String,
    /// The fence of the grant.
    pub fence: u64,
    /// Renew only: the new TTL from now (default: the lock's default TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// The answer to a release.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockReleased {
    /// The lock.
    pub name: String,
    /// The fence released.
    pub fence: u64,
    /// Always true: a release that does not release is an error.
    pub released: bool,
}

/// One holder in `GET /api/v1/locks`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockHolderView {
    /// Who.
    pub holder: String,
    /// `exclusive` or `shared`.
    pub mode: String,
    /// Its fence.
    pub fence: u64,
    /// When granted (unix ms).
    pub granted_ms: u64,
    /// When it lapses (unix ms).
    pub expires_ms: u64,
}

/// One waiter in `GET /api/v1/locks`, in queue order.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockWaiterView {
    /// Who.
    pub waiter: String,
    /// For which mode.
    pub mode: String,
    /// Its priority (ties of the same millisecond).
    pub priority: i32,
    /// Waiting since (unix ms).
    pub since_ms: u64,
}

/// One lock in `GET /api/v1/locks`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockView {
    /// The name, or the glob of a path reservation.
    pub name: String,
    /// A path reservation.
    pub path: bool,
    /// Its holders.
    pub holders: Vec<LockHolderView>,
    /// Its waiters, in the order they will be granted.
    pub waiters: Vec<LockWaiterView>,
}

/// `GET /api/v1/locks`: every lock held or waited for, and the whole
/// wait-for graph (lock waits, task waits, help waits).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockList {
    /// Locks, by name.
    pub locks: Vec<LockView>,
    /// Every edge of the wait-for graph now.
    pub waits: Vec<WaitEdge>,
}

/// `POST /api/v1/waits`: wait for tasks to end (`torch wait`,
/// `torch delegate --wait`), as one edge per task in the wait-for graph.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitRequest {
    /// The tasks.
    pub tasks: Vec<TaskId>,
    /// Give up after this long (required: every wait has a timeout).
    pub timeout_ms: u64,
}

/// One task at the end of a wait.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WaitedTask {
    /// The task.
    pub id: TaskId,
    /// Its state (terminal).
    pub state: TaskState,
}

/// The answer of `POST /api/v1/waits`: every task ended.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WaitDone {
    /// The tasks, in the order asked.
    pub tasks: Vec<WaitedTask>,
}

/// `POST /api/v1/help`: ask capable peers for help.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HelpAsk {
    /// The skill wanted.
    pub skill: String,
    /// Its minimum level, 0..1 (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<f64>,
    /// What is wanted.
    pub text: String,
    /// How long the request stays open (default 5 min).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Answer only once it is accepted, escalated or expired.
    #[serde(default)]
    pub wait: bool,
}

/// A help request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HelpView {
    /// Its id.
    pub id: String,
    /// `open`, `accepted`, `expired` or `escalated`.
    pub state: String,
    /// Who asked (`task:ID` or `operator:NAME`).
    pub requester: String,
    /// The asking task's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_agent: Option<AgentId>,
    /// The skill wanted.
    pub skill: String,
    /// Its minimum level.
    pub level: f64,
    /// What is wanted.
    pub text: String,
    /// The peers it was offered to, idle ones first.
    pub offered_to: Vec<AgentId>,
    /// When it was made (unix ms).
    pub created_ms: u64,
    /// When it expires unless accepted (unix ms).
    pub expires_ms: u64,
    /// Who accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
    /// The accepting task's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_agent: Option<AgentId>,
    /// The helper agent spawned for it (`escalated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper: Option<String>,
    /// When it left `open` (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_ms: Option<u64>,
}

/// `GET /api/v1/help`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HelpList {
    /// Requests, oldest first.
    pub requests: Vec<HelpView>,
}

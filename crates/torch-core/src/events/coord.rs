//! What the lock, wait and help events carry (fields in alphabetical
//! order, as stored).

use serde::{Deserialize, Serialize};

use crate::ids::AgentId;
use crate::locks::LockMode;
use crate::waits::{Node, WaitEdge};

/// `lock.acquired`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockAcquired {
    /// The grant's fence.
    pub fence: u64,
    /// Who holds it.
    pub holder: Node,
    /// The lock's name (a path reservation's glob).
    pub lock: String,
    /// Exclusive or shared.
    pub mode: LockMode,
    /// A path reservation.
    pub path: bool,
}

/// `lock.released`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockReleased {
    /// The grant's fence.
    pub fence: u64,
    /// Who held it.
    pub holder: Node,
    /// The lock's name (a path reservation's glob).
    pub lock: String,
    /// A path reservation.
    pub path: bool,
    /// `released` (by its holder or an operator), `expired` (TTL),
    /// `attempt_ended` (its task's attempt ended or lost its lease) or
    /// `undelivered` (granted to a waiter that had gone).
    pub reason: String,
}

/// `wait.deadlock`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitDeadlock {
    /// Every edge of the cycle, the refused wait's first.
    pub cycle: Vec<WaitEdge>,
    /// Who was refused.
    pub refused: Node,
}

/// `help.requested`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelpRequested {
    /// The request.
    pub id: String,
    /// The minimum level.
    pub level: f64,
    /// The peers it was offered to, idle ones first.
    pub offered: Vec<AgentId>,
    /// Who asked.
    pub requester: Node,
    /// The skill wanted.
    pub skill: String,
    /// How long it stays open.
    pub timeout_ms: u64,
}

/// `help.accepted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelpAccepted {
    /// The accepting task's agent.
    pub accepted_agent: Option<AgentId>,
    /// Who accepted.
    pub accepted_by: Node,
    /// The request.
    pub id: String,
    /// Who asked.
    pub requester: Node,
}

/// `help.expired`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelpExpired {
    /// The request.
    pub id: String,
    /// Why no helper was spawned.
    pub reason: String,
    /// Who asked.
    pub requester: Node,
    /// The skill wanted.
    pub skill: String,
}

/// `help.escalated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelpEscalated {
    /// The helper agent spawned for it.
    pub helper: AgentId,
    /// The request.
    pub id: String,
    /// Who asked.
    pub requester: Node,
    /// The skill wanted.
    pub skill: String,
    /// The template the helper was spawned from.
    pub template: String,
}

//! The agent WebSocket protocol (`GET /api/v1/agent/ws`).
//!
//! Every text frame is a JSON array of messages, so either side can batch.
//! The agent opens with [`AgentMessage::Hello`]; the hub answers
//! [`HubMessage::Welcome`]. Every report about a task carries the fence token
//! of its lease; the hub refuses reports with a stale fence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use torch_core::{AgentId, Outcome, Skill, SuccessCriteria, TaskId};

/// A task the agent holds, with the fence of its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldTask {
    /// The task.
    pub task_id: TaskId,
    /// The lease's fence token.
    pub fence: u64,
}

/// First message of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Agent name (unique per hub among connected agents is recommended).
    pub name: String,
    /// The id from an earlier session, when reconnecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// Skills with proficiency.
    pub skills: Vec<Skill>,
    /// Concurrent task slots.
    pub slots: u32,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Cost of one task on this agent, in any unit consistent across the
    /// fleet (e.g. cents); routing prefers cheaper agents by the cost weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Agent version.
    pub version: String,
    /// Tasks still running from before a reconnect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running: Vec<HeldTask>,
    /// The sandbox layers this agent's machine offers. Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Box<torch_core::sandbox::SandboxProbe>>,
    /// The agent's ed25519 public key (hex). The hub binds it to the id and
    /// asks for proof of possession in `Welcome`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Where the agent takes direct messages from peers (`http://HOST:PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Captured output sent with a finished report (bounded by the agent).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskLogs {
    /// Tail of stdout.
    pub stdout: String,
    /// Tail of stderr.
    pub stderr: String,
    /// True when only the tail was kept.
    pub truncated: bool,
}

/// An attempt ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinishReport {
    /// The task.
    pub task_id: TaskId,
    /// Fence of the lease the attempt ran under.
    pub fence: u64,
    /// Attempt number the agent was given.
    pub attempt: u32,
    /// How it ended, with evidence.
    pub outcome: Outcome,
    /// Captured output, when there was any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<TaskLogs>,
}

/// A progress report the agent makes for a task it runs, from the task's
/// own output (an agent CLI's event stream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    /// The task.
    pub task_id: TaskId,
    /// Fence of the lease the attempt runs under.
    pub fence: u64,
    /// 0 to 100.
    pub percent: f64,
    /// What it is doing, e.g. `activity: turn 3, last tool Write, 3000
    /// tokens` or `waiting: rate_limited until 2026-12-07T15:03:10Z`.
    pub message: String,
    /// The same as fields: the CLI's activity and what it waits on. Since v0.3.
    #[serde(default, skip_serializing_if = "torch_core::Liveness::is_empty")]
    pub live: torch_core::Liveness,
}

/// Agent → hub.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// Opens (or resumes) a session.
    Hello(Hello),
    /// Liveness plus the tasks held; renews their leases.
    Heartbeat {
        /// Tasks held now.
        running: Vec<HeldTask>,
    },
    /// The task's process started.
    Started(HeldTask),
    /// The attempt ended.
    Finished(FinishReport),
    /// What the task's agent CLI is doing, read from its own output stream
    /// (recorded like a progress report from inside the task). Since v0.2.
    Progress(ProgressReport),
    /// Answer to `Welcome`'s challenge: the agent's signature over it
    /// ([`crate::msg::sign_challenge`]). The first message after `Welcome`.
    Proof {
        /// Hex ed25519 signature.
        signature: String,
    },
    /// Relayed messages the agent stored in its inbox: the hub forgets them.
    Delivered {
        /// Their ids.
        ids: Vec<uuid::Uuid>,
    },
    /// What happened to messages at the agent (metadata only), for the
    /// `nova.torch.collaboration.peer` stream.
    PeerEvents {
        /// In the order they happened.
        events: Vec<PeerEvent>,
    },
    /// Anything newer than this agent understands.
    #[serde(other)]
    Unknown,
}

/// A task handed to an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The task.
    pub task_id: TaskId,
    /// Fence of this lease; every report must carry it.
    pub fence: u64,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Display name.
    pub name: String,
    /// Program and arguments; `["@noop"]` is the built-in empty task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Prompt, for executors that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Extra environment from the spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit in milliseconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// How to judge success.
    pub success: SuccessCriteria,
    /// Token that lets the task's process report progress for this task only.
    pub task_token: String,
    /// The spec's `sandbox` field: isolation the task asks for on top of
    /// its agent's. Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<torch_core::sandbox::TaskSandbox>,
    /// The spec's `context.repository` (and `context.branch`): the attempt
    /// runs in its own git checkout of it. Since v0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<Checkout>,
}

/// The git repository an attempt works in: the agent gives the attempt its
/// own worktree (a local path) or clone (a URL) on the branch
/// `torch/<task-id>/<attempt>`. Since v0.3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// A local path (bare or not) or anything `git clone` takes.
    pub repository: String,
    /// The branch or commit the attempt starts from; the repository's
    /// `HEAD` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// How the hub took a finished report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Recorded now.
    Recorded,
    /// Already recorded earlier with the same fence (a resend); nothing changed.
    Duplicate,
    /// Refused: the lease is no longer this agent's (the fence is stale).
    Stale,
    /// Anything newer than this agent understands.
    #[serde(other)]
    Unknown,
}

/// Hub → agent.
// Messages live only between decode and dispatch; boxing `Assign` would cost an
// allocation per task on the hottest path for no memory win.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubMessage {
    /// Session accepted.
    Welcome {
        /// The agent's id (kept across reconnects).
        agent_id: AgentId,
        /// How often to send heartbeats.
        heartbeat_ms: u64,
        /// Lease length; a task not renewed within it is requeued.
        lease_ms: u64,
        /// Random challenge (hex) the agent signs with the key it registered
        /// and sends back as `Proof`; set when the Hello carried a key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        challenge: Option<String>,
        /// The hub's public key (hex), which signs bounces and operators'
        /// messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hub_key: Option<String>,
    },
    /// Messages the hub kept for this agent (relayed); the agent answers
    /// `Delivered` once they are in its inbox.
    Deliver {
        /// Signed envelopes, urgent first.
        messages: Vec<crate::msg::SignedEnvelope>,
    },
    /// Run these tasks.
    Assign(Assignment),
    /// Stop this task now and kill its processes.
    Cancel {
        /// The task.
        task_id: TaskId,
        /// Fence of the lease being cancelled.
        fence: u64,
        /// Why.
        reason: String,
    },
    /// Answer to a finished report; the agent may forget it once acked.
    Ack {
        /// The task.
        task_id: TaskId,
        /// Fence the report carried.
        fence: u64,
        /// How the hub took it.
        status: AckStatus,
    },
    /// The session is refused or broken; the agent should log it and reconnect.
    Error {
        /// Stable code.
        code: String,
        /// What went wrong.
        message: String,
    },
    /// Anything newer than this agent understands.
    #[serde(other)]
    Unknown,
}

/// Something that happened to a message at an agent, reported to the hub
/// for the event stream (never the body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerEvent {
    /// `message.sent`, `message.delivered`, `message.refused` or `message.bounced`.
    pub kind: String,
    /// The message's id, when it could be read.
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    /// Sender (as claimed, for a refusal).
    #[serde(default)]
    pub from: Option<String>,
    /// Recipient.
    #[serde(default)]
    pub to: Option<String>,
    /// The message's kind.
    #[serde(default)]
    pub msg_kind: Option<String>,
    /// `direct` or `relayed`.
    #[serde(default)]
    pub delivery: Option<String>,
    /// Why it was refused or bounced.
    #[serde(default)]
    pub reason: Option<String>,
    /// The envelope's `sent_ms`, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<u64>,
    /// When (unix ms).
    pub at_ms: u64,
}

/// `Error` code a follower hub answers a Hello with (many hubs on one
/// store): the message is the leader's URL; connect there.
pub const NOT_LEADER: &str = "not_leader";

/// Name of the built-in no-op executor used by benchmarks.
pub const NOOP_COMMAND: &str = "@noop";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_messages_are_tolerated() {
        let msgs: Vec<HubMessage> =
            serde_json::from_str(r#"[{"type":"brand_new","x":1},{"type":"ack","task_id":"01890000-0000-7000-8000-000000000000","fence":3,"status":"recorded"}]"#)
                .unwrap();
        assert_eq!(msgs[0], HubMessage::Unknown);
        assert!(matches!(
            msgs[1],
            HubMessage::Ack {
                fence: 3,
                status: AckStatus::Recorded,
                ..
            }
        ));
    }
}

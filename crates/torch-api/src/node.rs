//! The node WebSocket protocol (`GET /api/v1/node/ws`).
//!
//! A node is a process (`torch node`, or the hub's built-in local node) that
//! starts and stops `torch agent` processes on its machine when the hub asks.
//! Like the agent protocol, every text frame is a JSON array of messages.
//!
//! The node opens with [`NodeMessage::Hello`]; the hub answers
//! [`HubToNode::Welcome`]. The hub then sends [`HubToNode::Spawn`] and
//! [`HubToNode::Terminate`] orders; the node answers each spawn with
//! [`NodeMessage::Spawned`] or [`NodeMessage::SpawnFailed`], reports every
//! agent process that ends with [`NodeMessage::Exited`], and sends
//! [`NodeMessage::Heartbeat`] with its headroom and each agent's pid, CPU and
//! RSS (read from `/proc`).

use serde::{Deserialize, Serialize};
use torch_core::lifecycle::AgentTemplate;
use torch_core::{AgentId, TaskId};

use crate::json::sorted;

/// One agent process on a node, as sampled from `/proc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeAgent {
    /// The agent's id (chosen by the hub at spawn).
    pub agent_id: AgentId,
    /// Its process id.
    pub pid: u32,
    /// Template it was started from.
    pub template: String,
    /// CPU use over the last sampling interval, in cores (1.0 = one core busy).
    #[serde(default)]
    pub cpu: f64,
    /// Resident set size in bytes.
    #[serde(default)]
    pub rss_bytes: u64,
    /// When the process started (unix ms).
    #[serde(default)]
    pub started_ms: u64,
}

/// A node's resources now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Logical CPUs.
    pub cpus: u32,
    /// Machine CPU use over the last interval, 0.0..=1.0.
    pub cpu_used: f64,
    /// Total memory in bytes.
    pub mem_total_bytes: u64,
    /// Memory in use (total minus available), 0.0..=1.0.
    pub mem_used: f64,
    /// The agent processes this node runs.
    #[serde(default)]
    pub agents: Vec<NodeAgent>,
}

/// First message of a node session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeHello {
    /// Node name (host name by default); unique among connected nodes.
    pub name: String,
    /// Most agent processes this node will run.
    pub max_agents: u32,
    /// Node version.
    pub version: String,
    /// Resources now, including agents still running from before a reconnect.
    pub status: NodeStatus,
    /// The sandbox layers this machine offers its agents' tasks. Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<torch_core::sandbox::SandboxProbe>,
}

/// Node → hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeMessage {
    /// Opens (or resumes) a session.
    Hello(NodeHello),
    /// Periodic resources and agent samples.
    Heartbeat(NodeStatus),
    /// A spawn order's process started.
    Spawned {
        /// The agent id from the order.
        agent_id: AgentId,
        /// Its process id.
        pid: u32,
    },
    /// A spawn order could not be carried out.
    SpawnFailed {
        /// The agent id from the order.
        agent_id: AgentId,
        /// Why.
        error: String,
    },
    /// An agent process ended.
    Exited {
        /// The agent.
        agent_id: AgentId,
        /// Its process id.
        pid: u32,
        /// Exit code, when it exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// Signal, when one killed it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// True when it ended because the hub ordered a termination.
        requested: bool,
    },
    /// Anything newer than this hub understands.
    #[serde(other)]
    Unknown,
}

/// What a node needs to start one agent process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpawnOrder {
    /// The new agent's id; the agent says it in its Hello.
    pub agent_id: AgentId,
    /// Its display name.
    pub name: String,
    /// The template's name.
    pub template: String,
    /// The whole template (as in `torch.toml`, without its name), handed
    /// to the agent process. Keys sorted, as before it was typed.
    #[serde(serialize_with = "sorted")]
    pub template_spec: AgentTemplate,
    /// The agent that asked for this helper (self-spawn), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_agent: Option<AgentId>,
    /// The task from which the helper was asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_task: Option<TaskId>,
    /// Spawn depth: 0 for the autoscaler's agents, parent's depth + 1 for helpers.
    pub depth: u32,
}

/// Hub → node.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubToNode {
    /// Session accepted.
    Welcome {
        /// The node's id (its name).
        node: String,
        /// How often to send heartbeats.
        heartbeat_ms: u64,
    },
    /// Start an agent process.
    Spawn(SpawnOrder),
    /// Stop an agent process: SIGTERM, then SIGKILL after `grace_ms`. The hub
    /// drains the agent first, so it holds no task by then.
    Terminate {
        /// The agent.
        agent_id: AgentId,
        /// Time between SIGTERM and SIGKILL.
        grace_ms: u64,
        /// Why (for the node's log).
        reason: String,
    },
    /// The session is refused or broken.
    Error {
        /// Stable code.
        code: String,
        /// What went wrong.
        message: String,
    },
    /// Anything newer than this node understands.
    #[serde(other)]
    Unknown,
}

/// Environment variable carrying a [`SpawnOrder`]'s template (JSON) to the agent process.
pub const ENV_AGENT_TEMPLATE: &str = "TORCH_AGENT_TEMPLATE";
/// Environment variable carrying the pid of the node that started the agent:
/// the agent stops when that process is gone (no orphans after a node crash).
pub const ENV_NODE_PID: &str = "TORCH_NODE_PID";
/// Environment variable carrying the agent id chosen by the hub.
pub const ENV_AGENT_ID: &str = "TORCH_AGENT_ID";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_unknown() {
        let id: AgentId = "01890000-0000-7000-8000-000000000001".parse().unwrap();
        let msgs = vec![
            NodeMessage::Spawned {
                agent_id: id,
                pid: 42,
            },
            NodeMessage::Exited {
                agent_id: id,
                pid: 42,
                code: None,
                signal: Some(9),
                requested: false,
            },
        ];
        let text = serde_json::to_string(&msgs).unwrap();
        let back: Vec<NodeMessage> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, msgs);
        let odd: Vec<HubToNode> = serde_json::from_str(r#"[{"type":"later","x":1}]"#).unwrap();
        assert_eq!(odd, vec![HubToNode::Unknown]);
    }
}

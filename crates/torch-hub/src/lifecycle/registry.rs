//! What the lifecycle manager remembers of nodes and the agents it started.

use std::collections::HashMap;

use tokio::sync::mpsc;
use torch_api::node::{HubToNode, NodeStatus};
use torch_api::rest::{ManagedView, NodeView};
use torch_core::{AgentId, TaskId};
use torch_store::Store;

use super::Lifecycle;

/// Where a managed agent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Ordered from a node; not registered yet.
    Starting,
    /// Registered; takes work.
    Ready,
    /// Takes no new work; stopped once it holds no task.
    Draining,
    /// SIGTERM sent (at this time, unix ms); waiting for the node to report the exit.
    Terminating { since_ms: u64 },
}

impl Phase {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Draining => "draining",
            Phase::Terminating { .. } => "terminating",
        }
    }
}

/// An agent the hub ordered a node to start.
#[derive(Clone, Debug)]
pub(super) struct Managed {
    pub(super) template: String,
    pub(super) node: String,
    pub(super) phase: Phase,
    /// Why it was started.
    pub(super) reason: String,
    pub(super) parent_agent: Option<AgentId>,
    pub(super) parent_task: Option<TaskId>,
    pub(super) depth: u32,
    pub(super) tenant: String,
    pub(super) outlive_parent: bool,
    pub(super) spawned_ms: u64,
    /// Spawn order to registration.
    pub(super) ready_ms: Option<u64>,
    pub(super) pid: Option<u32>,
    pub(super) cpu: Option<f64>,
    pub(super) rss_bytes: Option<u64>,
    /// RSS at the first sample after it was ready (for the growth rule).
    pub(super) rss_start: Option<u64>,
    /// Since when it holds no task (None while busy).
    pub(super) idle_since_ms: Option<u64>,
    /// Tasks it finished (from the engine).
    pub(super) completed: u64,
    /// Tasks held now (from the engine).
    pub(super) running: u32,
    /// Wall time of the tasks it finished (from the engine).
    pub(super) run_ms_total: u64,
    /// Why it is being stopped.
    pub(super) stop_reason: Option<String>,
    /// Drain it as soon as it registers.
    pub(super) draining_on_ready: bool,
}

/// A connected (or once connected) node.
pub(super) struct NodeEntry {
    pub(super) name: String,
    pub(super) tx: Option<mpsc::Sender<HubToNode>>,
    pub(super) session: u64,
    pub(super) max_agents: u32,
    pub(super) status: NodeStatus,
    pub(super) last_seen_ms: u64,
}

impl<S: Store> Lifecycle<S> {
    pub(super) fn node_views(&self) -> Vec<NodeView> {
        self.nodes
            .values()
            .map(|n| NodeView {
                name: n.name.clone(),
                connected: n.tx.as_ref().is_some_and(|t| !t.is_closed()),
                cpus: n.status.cpus,
                cpu_used: n.status.cpu_used,
                mem_total_bytes: n.status.mem_total_bytes,
                mem_used: n.status.mem_used,
                max_agents: n.max_agents,
                agents: self.agents.values().filter(|a| a.node == n.name).count() as u32,
                last_seen_ms: n.last_seen_ms,
            })
            .collect()
    }

    pub(super) fn managed_views(&self) -> HashMap<AgentId, ManagedView> {
        self.agents
            .iter()
            .map(|(id, m)| {
                let v = ManagedView {
                    template: m.template.clone(),
                    node: m.node.clone(),
                    phase: m.phase.as_str().into(),
                    reason: m.reason.clone(),
                    pid: m.pid,
                    cpu: m.cpu,
                    rss_bytes: m.rss_bytes,
                    parent_agent: m.parent_agent,
                    parent_task: m.parent_task,
                    depth: m.depth,
                    spawned_ms: m.spawned_ms,
                    ready_ms: m.ready_ms,
                };
                (*id, v)
            })
            .collect()
    }
}

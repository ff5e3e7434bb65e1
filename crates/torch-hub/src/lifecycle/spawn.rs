//! Starting agents: the spawn policy, choosing a node, the spawn order and
//! memory inheritance from the parent agent.

use std::collections::BTreeMap;

use torch_api::node::{HubToNode, SpawnOrder};
use torch_api::rest::{SpawnRequest, SpawnResponse};
use torch_core::events::payload::{AgentSpawnRefused, AgentSpawned};
use torch_core::lifecycle::{NodeHeadroom, PoolView, SpawnRequest as PolicyRequest, glob_match};
use torch_core::{AgentId, EventData, TaskId};
use torch_store::Store;
use tracing::{info, warn};

use super::registry::{Managed, Phase};
use super::{Lifecycle, Origin, SpawnError};

/// Default tenant of operator and autoscaler spawns.
const SYSTEM_TENANT: &str = "default";

/// Everything about one spawn besides the template.
pub(super) struct SpawnWhy {
    pub(super) reason: String,
    pub(super) parent_agent: Option<AgentId>,
    pub(super) parent_task: Option<TaskId>,
    pub(super) depth: u32,
    pub(super) tenant: String,
    pub(super) inherit: Option<String>,
    pub(super) outlive_parent: Option<bool>,
    pub(super) autoscale: bool,
}

impl SpawnWhy {
    /// A spawn by the autoscaler or the recycler.
    pub(super) fn system(reason: &str) -> Self {
        SpawnWhy {
            reason: reason.to_string(),
            parent_agent: None,
            parent_task: None,
            depth: 0,
            tenant: SYSTEM_TENANT.into(),
            inherit: None,
            outlive_parent: None,
            autoscale: true,
        }
    }
}

impl<S: Store> Lifecycle<S> {
    /// A spawn asked for through the API.
    pub(super) async fn spawn_requested(
        &mut self,
        req: SpawnRequest,
        origin: Origin,
        now: u64,
    ) -> Result<SpawnResponse, SpawnError> {
        let why = match origin {
            Origin::Operator => SpawnWhy {
                reason: "spawn".into(),
                parent_agent: None,
                parent_task: None,
                depth: 0,
                tenant: SYSTEM_TENANT.into(),
                inherit: req.inherit,
                outlive_parent: req.outlive_parent,
                autoscale: false,
            },
            Origin::Task {
                task,
                agent,
                tenant,
            } => {
                let parent_depth = self.agents.get(&agent).map_or(0, |m| m.depth);
                SpawnWhy {
                    reason: "spawn".into(),
                    parent_agent: Some(agent),
                    parent_task: Some(task),
                    depth: parent_depth + 1,
                    tenant,
                    inherit: req.inherit,
                    outlive_parent: req.outlive_parent,
                    autoscale: false,
                }
            }
            Origin::Team { task, tenant } => SpawnWhy {
                reason: format!("team member for task {task}"),
                parent_agent: None,
                parent_task: Some(task),
                depth: 1,
                tenant,
                inherit: None,
                outlive_parent: None,
                autoscale: false,
            },
        };
        self.spawn_one(&req.template, why, now).await
    }

    /// Checks the policy, orders a node to start the agent, copies inherited
    /// memory, and records the spawn (or the refusal) as an event.
    pub(super) async fn spawn_one(
        &mut self,
        template: &str,
        why: SpawnWhy,
        now: u64,
    ) -> Result<SpawnResponse, SpawnError> {
        let Some(t) = self.templates.get(template).cloned() else {
            return Err(SpawnError::UnknownTemplate(template.to_string()));
        };
        if let Some(p) = &why.inherit
            && !t.inherit.permits_request(p)
        {
            let allowed = t.inherit.patterns();
            let policy = if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            };
            let msg = format!(
                "--inherit {p:?} is outside template {template:?}'s inheritance policy ({policy})"
            );
            self.refusal_event(template, &why, "inherit-policy", &msg)
                .await;
            return Err(SpawnError::InheritRefused(msg));
        }
        // No node, no spawn: checked first so a refusal costs no rate token.
        let node = match self.choose_node() {
            Ok(n) => n,
            Err(msg) => {
                // The autoscaler retries every tick (and nodes may still be
                // connecting at start-up): only explicit spawns are events.
                if !why.autoscale {
                    self.refusal_event(template, &why, "no-node", &msg).await;
                }
                return Err(SpawnError::NoNode(msg));
            }
        };
        let headroom = self
            .nodes
            .get(&node)
            .map_or(NodeHeadroom::default(), |e| NodeHeadroom {
                cpu_used: e.status.cpu_used,
                mem_used: e.status.mem_used,
            });
        let preq = PolicyRequest {
            template: template.to_string(),
            template_max: t.max,
            parent: why.parent_agent.map(|a| a.to_string()),
            depth: why.depth,
            tenant: why.tenant.clone(),
            node: headroom,
            is_autoscale: why.autoscale,
        };
        let pool = self.pool_view(why.parent_agent);
        if let Err(refusal) = self.policy.can_spawn_agent(&preq, &pool, now) {
            self.refusal_event(template, &why, refusal.limit.as_str(), &refusal.to_string())
                .await;
            return Err(SpawnError::Refused(refusal));
        }
        let id = AgentId::from_uuid(uuid::Uuid::now_v7());
        let short = id.to_string();
        let name = format!("{template}-{}", &short[short.len().saturating_sub(6)..]);
        let order = SpawnOrder {
            agent_id: id,
            name: name.clone(),
            template: template.to_string(),
            template_spec: t.clone(),
            parent_agent: why.parent_agent,
            parent_task: why.parent_task,
            depth: why.depth,
        };
        let sent = match self.nodes.get(&node).and_then(|n| n.tx.clone()) {
            Some(tx) => tx.send(HubToNode::Spawn(order)).await.is_ok(),
            None => false,
        };
        if !sent {
            return Err(SpawnError::NoNode(format!("node {node:?} disconnected")));
        }
        self.agents.insert(
            id,
            Managed {
                template: template.to_string(),
                node: node.clone(),
                phase: Phase::Starting,
                reason: why.reason.clone(),
                parent_agent: why.parent_agent,
                parent_task: why.parent_task,
                depth: why.depth,
                tenant: why.tenant.clone(),
                outlive_parent: why.outlive_parent.unwrap_or(t.outlive_parent),
                spawned_ms: now,
                ready_ms: None,
                pid: None,
                cpu: None,
                rss_bytes: None,
                rss_start: None,
                idle_since_ms: None,
                completed: 0,
                running: 0,
                run_ms_total: 0,
                stop_reason: None,
                draining_on_ready: false,
            },
        );
        if let Some(task) = why.parent_task {
            self.parents.insert(task);
        }
        info!(agent_id = %id, template, node = %node, reason = %why.reason, depth = why.depth, "spawning agent");
        let data = EventData::AgentSpawned(AgentSpawned {
            depth: why.depth,
            name: name.clone(),
            node: node.clone(),
            parent_agent: why.parent_agent,
            parent_task: why.parent_task,
            reason: why.reason.clone(),
            template: template.to_string(),
            tenant: why.tenant.clone(),
        });
        self.shared.event(Some(id), why.parent_task, data).await;
        let inherited = match why.parent_agent {
            Some(parent) => self.inherit(parent, id, &t, why.inherit.as_deref()).await,
            None => Vec::new(),
        };
        Ok(SpawnResponse {
            agent_id: id,
            name,
            template: template.to_string(),
            node,
            depth: why.depth,
            parent_agent: why.parent_agent,
            parent_task: why.parent_task,
            inherited,
        })
    }

    /// Copies the parent's memory keys allowed by the template's policy (and
    /// matching `pattern`, when given) to the new agent.
    async fn inherit(
        &self,
        parent: AgentId,
        child: AgentId,
        t: &torch_core::lifecycle::AgentTemplate,
        pattern: Option<&str>,
    ) -> Vec<String> {
        let store = &self.shared.store;
        let entries = match store.memory_list(parent).await {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "could not read the parent's memory; the helper starts empty");
                return Vec::new();
            }
        };
        let keys: Vec<String> = entries
            .into_iter()
            .map(|e| e.key)
            .filter(|k| t.inherit.allows(k) && pattern.is_none_or(|p| glob_match(p, k)))
            .collect();
        if keys.is_empty() {
            return keys;
        }
        let limits = self.shared.cfg.lifecycle.memory;
        match store
            .memory_inherit(parent, child, keys, limits, self.shared.now_ms())
            .await
        {
            Ok(copied) => {
                self.shared.bump();
                copied
            }
            Err(e) => {
                warn!(error = %e, "could not copy the parent's memory; the helper starts empty");
                Vec::new()
            }
        }
    }

    async fn refusal_event(&self, template: &str, why: &SpawnWhy, limit: &str, message: &str) {
        warn!(template, limit, message, "spawn refused");
        let data = EventData::AgentSpawnRefused(AgentSpawnRefused {
            depth: why.depth,
            limit: limit.to_string(),
            message: message.to_string(),
            parent_agent: why.parent_agent,
            parent_task: why.parent_task,
            reason: why.reason.clone(),
            template: template.to_string(),
        });
        self.shared
            .event(why.parent_agent, why.parent_task, data)
            .await;
    }

    /// The connected node with room and the most headroom.
    fn choose_node(&self) -> Result<String, String> {
        let mut best: Option<(f64, &str)> = None;
        let mut why = String::from(
            "no node is connected (start `torch node` or enable the hub's local node)",
        );
        for n in self.nodes.values() {
            if n.tx.as_ref().is_none_or(|t| t.is_closed()) {
                continue;
            }
            let here = self.agents.values().filter(|a| a.node == n.name).count() as u32;
            if here >= n.max_agents {
                why = format!(
                    "node {:?} runs its maximum of {} agents",
                    n.name, n.max_agents
                );
                continue;
            }
            let load = n.status.cpu_used.max(n.status.mem_used);
            if best.is_none_or(|(l, _)| load < l) {
                best = Some((load, &n.name));
            }
        }
        best.map(|(_, n)| n.to_string()).ok_or(why)
    }

    /// Counts for the spawn policy (stopping agents do not count).
    fn pool_view(&self, parent: Option<AgentId>) -> PoolView {
        let mut pool = PoolView {
            total: 0,
            per_template: BTreeMap::new(),
            children_of_parent: 0,
            per_tenant: BTreeMap::new(),
        };
        for m in self.agents.values() {
            if matches!(m.phase, Phase::Terminating { .. }) {
                continue;
            }
            pool.total += 1;
            // A draining agent is on its way out: its replacement (recycling)
            // may take its place under the template's max.
            if m.phase != Phase::Draining {
                *pool.per_template.entry(m.template.clone()).or_default() += 1;
            }
            *pool.per_tenant.entry(m.tenant.clone()).or_default() += 1;
            if parent.is_some() && m.parent_agent == parent {
                pool.children_of_parent += 1;
            }
        }
        pool
    }
}

//! The periodic pass: spawn timeouts, stopping drained agents, recycling,
//! parent cleanup and auto-scaling.

use std::collections::HashMap;

use torch_api::node::HubToNode;
use torch_core::events::payload::AgentSpawnFailed;
use torch_core::lifecycle::{IdleAgent, ScaleAction, ScaleInputs};
use torch_core::{AgentId, EventData, TaskId};
use torch_store::{Store, TaskFilter};
use tracing::{info, warn};

use super::Lifecycle;
use super::registry::Phase;
use super::spawn::SpawnWhy;
use crate::engine::{FleetSnapshot, Query};

/// Extra time after the SIGKILL grace before a silent node's agent is forgotten.
const EXIT_REPORT_SLACK_MS: u64 = 10_000;

impl<S: Store> Lifecycle<S> {
    pub(super) async fn tick(&mut self) {
        if !self.shared.is_leader() {
            return;
        }
        if self.agents.is_empty() && self.templates.is_empty() && self.parents.is_empty() {
            return;
        }
        let Some(snap) = self.shared.engine.ask(Query::Fleet).await else {
            return;
        };
        let now = self.shared.now_ms();
        self.update_from(&snap, now);
        self.expire_starting(now).await;
        self.stop_drained(now).await;
        self.recycle(now).await;
        self.clean_up_parents().await;
        self.autoscale(&snap, now).await;
    }

    fn update_from(&mut self, snap: &FleetSnapshot, now: u64) {
        // Service time per template, for the autoscaler's forecast.
        let mut runs: HashMap<String, (u64, u64)> = HashMap::new();
        for a in &snap.agents {
            if let Some(m) = self.agents.get_mut(&a.id) {
                let done = a.completed.saturating_sub(m.completed);
                let ms = a.run_ms_total.saturating_sub(m.run_ms_total);
                if done > 0 {
                    let e = runs.entry(m.template.clone()).or_default();
                    e.0 += done;
                    e.1 += ms;
                }
                m.run_ms_total = a.run_ms_total;
                m.completed = a.completed;
                m.running = a.running;
                if a.running > 0 {
                    m.idle_since_ms = None;
                } else if m.idle_since_ms.is_none() {
                    m.idle_since_ms = Some(now);
                }
            }
        }
        for (template, (done, ms)) in runs {
            if let Some(s) = self.scalers.get_mut(&template) {
                s.observe_run_time(ms / done);
            }
        }
    }

    async fn expire_starting(&mut self, now: u64) {
        let timeout = self.shared.cfg.lifecycle.spawn_timeout.as_millis() as u64;
        let late: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, m)| {
                m.phase == Phase::Starting && now.saturating_sub(m.spawned_ms) > timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let Some(m) = self.agents.remove(&id) else {
                continue;
            };
            warn!(agent_id = %id, template = %m.template, "spawned agent did not register in time; stopping it");
            self.order_terminate(&m.node, id, "did not register in time")
                .await;
            let data = EventData::AgentSpawnFailed(AgentSpawnFailed {
                error: format!("did not register within {} ms", timeout),
                node: m.node,
                template: m.template,
            });
            self.shared.event(Some(id), None, data).await;
        }
    }

    /// Drained agents that hold nothing get SIGTERM; agents whose exit was
    /// never reported (their node is gone) are forgotten after a while.
    async fn stop_drained(&mut self, now: u64) {
        let grace = self.shared.cfg.lifecycle.terminate_grace.as_millis() as u64;
        let mut stop = Vec::new();
        let mut forget = Vec::new();
        for (id, m) in &self.agents {
            match m.phase {
                Phase::Draining if m.running == 0 => stop.push((*id, m.node.clone())),
                Phase::Terminating { since_ms }
                    if now.saturating_sub(since_ms) > grace + EXIT_REPORT_SLACK_MS =>
                {
                    forget.push(*id)
                }
                _ => {}
            }
        }
        for (id, node) in stop {
            let reason = self
                .agents
                .get(&id)
                .and_then(|m| m.stop_reason.clone())
                .unwrap_or_else(|| "drained".into());
            self.order_terminate(&node, id, &reason).await;
            if let Some(m) = self.agents.get_mut(&id) {
                m.phase = Phase::Terminating { since_ms: now };
            }
        }
        for id in forget {
            if let Some(m) = self.agents.remove(&id) {
                warn!(agent_id = %id, node = %m.node, "no exit report for a terminated agent; forgetting it");
            }
        }
    }

    pub(super) async fn order_terminate(&self, node: &str, agent: AgentId, reason: &str) {
        let grace_ms = self.shared.cfg.lifecycle.terminate_grace.as_millis() as u64;
        let msg = HubToNode::Terminate {
            agent_id: agent,
            grace_ms,
            reason: reason.to_string(),
        };
        let sent = match self.nodes.get(node).and_then(|n| n.tx.clone()) {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        };
        if !sent {
            warn!(agent_id = %agent, node, "cannot reach the agent's node to stop it");
        }
    }

    /// Drains agents past their template's recycle rules and starts replacements.
    async fn recycle(&mut self, now: u64) {
        let mut due = Vec::new();
        for (id, m) in &self.agents {
            if m.phase != Phase::Ready {
                continue;
            }
            let Some(t) = self.templates.get(&m.template) else {
                continue;
            };
            let age = now.saturating_sub(m.spawned_ms);
            let rss_now = m.rss_bytes.unwrap_or(0);
            let rss_start = m.rss_start.unwrap_or(rss_now);
            if let Some(why) = t.recycle.check(m.completed, age, rss_start, rss_now) {
                due.push((*id, m.template.clone(), why.to_string(), why.as_str()));
            }
        }
        for (id, template, detail, rule) in due {
            info!(agent_id = %id, template = %template, rule, detail = %detail, "recycling agent");
            self.drain(id, &format!("recycle ({rule}): {detail}")).await;
            let why = SpawnWhy::system("recycle");
            if let Err(e) = self.spawn_one(&template, why, now).await {
                warn!(template = %template, error = %e, "could not start a replacement for a recycled agent; the autoscaler will retry");
            }
        }
    }

    /// For parent tasks that ended: drain their helpers (unless they outlive
    /// it) and cancel delegated tasks that have not ended.
    async fn clean_up_parents(&mut self) {
        if self.parents.is_empty() {
            return;
        }
        let parents: Vec<TaskId> = self.parents.iter().copied().collect();
        for task in parents {
            let ended = match self.shared.store.get_task(task).await {
                Ok(Some(t)) => t.state.is_terminal(),
                Ok(None) => true,
                Err(_) => false,
            };
            if !ended {
                continue;
            }
            self.parents.remove(&task);
            let helpers: Vec<AgentId> = self
                .agents
                .iter()
                .filter(|(_, m)| m.parent_task == Some(task) && !m.outlive_parent)
                .map(|(id, _)| *id)
                .collect();
            for h in helpers {
                self.drain(h, &format!("parent task {task} ended")).await;
            }
            self.cancel_children(task).await;
        }
    }

    async fn cancel_children(&self, parent: TaskId) {
        let filter = TaskFilter {
            parent: Some(parent),
            limit: 1000,
            ..TaskFilter::default()
        };
        let page = match self.shared.store.list_tasks(filter).await {
            Ok(p) => p,
            Err(e) => {
                warn!(task_id = %parent, error = %e, "could not list delegated tasks");
                return;
            }
        };
        for child in page.tasks.into_iter().filter(|t| !t.state.is_terminal()) {
            let reason = format!("parent task {parent} ended");
            match self.shared.cancel_task(child.id, reason).await {
                Ok(_) => {
                    info!(task_id = %child.id, parent = %parent, "cancelled a delegated task whose parent ended")
                }
                Err(e) => {
                    warn!(task_id = %child.id, error = %e, "could not cancel a delegated task")
                }
            }
        }
    }

    async fn autoscale(&mut self, snap: &FleetSnapshot, now: u64) {
        let names: Vec<String> = self.scalers.keys().cloned().collect();
        let half_tick = self.shared.cfg.lifecycle.tick.as_millis() as u64 / 2;
        for name in names {
            let Some(demand) = snap.demand.get(&name) else {
                continue;
            };
            // Each template's autoscaler runs once per its own interval
            // (its forecast counts arrivals per interval).
            let interval = self
                .templates
                .get(&name)
                .map_or(0, |t| t.scaling.interval.as_millis() as u64);
            if let Some(last) = self.last_scaled.get(&name)
                && now.saturating_sub(*last) + half_tick < interval
            {
                continue;
            }
            self.last_scaled.insert(name.clone(), now);
            let last = self
                .last_arrivals
                .insert(name.clone(), demand.arrivals_total);
            let arrivals = demand
                .arrivals_total
                .saturating_sub(last.unwrap_or(demand.arrivals_total));
            let Some(t) = self.templates.get(&name) else {
                continue;
            };
            let slots = t.slots;
            let (mut running, mut starting, mut busy, mut total) = (0u32, 0u32, 0u32, 0u32);
            let mut idle = Vec::new();
            for (id, m) in self.agents.iter().filter(|(_, m)| m.template == name) {
                match m.phase {
                    Phase::Starting => starting += 1,
                    Phase::Ready => {
                        running += 1;
                        total += slots;
                        busy += m.running.min(slots);
                        idle.push(IdleAgent {
                            agent: id.to_string(),
                            idle_since_ms: m.idle_since_ms.unwrap_or(now),
                            busy: m.running > 0 || m.idle_since_ms.is_none(),
                        });
                    }
                    Phase::Draining | Phase::Terminating { .. } => {}
                }
            }
            let inputs = ScaleInputs {
                now_ms: now,
                queue_depth: demand.queued,
                oldest_wait_ms: demand.oldest_wait_ms,
                arrivals,
                busy_slots: busy,
                total_slots: total,
                running,
                starting,
                idle,
            };
            let Some(scaler) = self.scalers.get_mut(&name) else {
                continue;
            };
            let decision = scaler.tick(&inputs);
            let change = decision.is_change();
            // Holds are recorded when what they hold at changes, not every tick.
            let action = match decision.action {
                ScaleAction::Hold => "hold",
                ScaleAction::Up { .. } => "up",
                ScaleAction::Down { .. } => "down",
            };
            self.shared.metrics.scaling(&name, action);
            let key = format!("{action}:{}", decision.desired);
            if self.record_decision(&name, decision.clone(), &key, change) {
                let data = EventData::ScalingDecision(decision.clone());
                self.shared.event(None, None, data).await;
            }
            match decision.action {
                ScaleAction::Hold => {}
                ScaleAction::Up { count } => {
                    for _ in 0..count {
                        if let Err(e) = self
                            .spawn_one(&name, SpawnWhy::system("autoscale"), now)
                            .await
                        {
                            warn!(template = %name, error = %e, "autoscaler could not spawn");
                            break;
                        }
                    }
                }
                ScaleAction::Down { agents } => {
                    let ids: HashMap<String, AgentId> =
                        self.agents.keys().map(|id| (id.to_string(), *id)).collect();
                    for a in agents {
                        if let Some(id) = ids.get(&a) {
                            // The engine may have handed it a task since the
                            // snapshot: draining lets that task finish first.
                            self.drain(*id, "scale-down: idle").await;
                        }
                    }
                }
            }
        }
    }
}

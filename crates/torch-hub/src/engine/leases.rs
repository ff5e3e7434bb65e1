//! Lease events, applied to the core [`LeaseTable`](torch_core::lease::LeaseTable):
//! grants and their store results, end reports and their recording,
//! expiries and stalls, cancels and adoptions. The table decides; this
//! module does the I/O its decisions call for (messages to agents, store
//! jobs).

use std::collections::HashMap;

use torch_api::ws::{Assignment, Checkout, HubMessage};
use torch_core::lease::{Confirm, Due, Ended};
use torch_core::scheduler::Placement;
use torch_core::{AgentId, TaskId, TaskState};
use torch_store::{ClaimRefused, FinishResult, Grant, Leased, Store, StoreError};
use tracing::{debug, error, warn};

use super::{EndReport, Engine, Outbound, RecordedReport, cancel};
use crate::metrics::{Failure, StoreOp};

impl<S: Store> Engine<S> {
    /// Turns placements into `Granting` leases; returns what the assign job
    /// writes.
    pub(super) fn grant(&mut self, placements: Vec<Placement>, now: u64) -> Vec<Grant> {
        let expires_ms = now + self.lease_ms();
        let mut grants = Vec::with_capacity(placements.len());
        let mut lost = Vec::new();
        for p in placements {
            if let Err(e) = self.leases.grant(p.task, p.agent, now) {
                // The scheduler and the lease table disagree: a bug. The
                // task is queued in the store; read it back.
                error!(task_id = %p.task, agent_id = %p.agent, error = %e, "placement refused by the lease table");
                debug_assert!(false, "placement refused by the lease table: {e}");
                lost.push(p.task);
                continue;
            }
            grants.push(Grant {
                task: p.task,
                agent: p.agent,
                expires_ms,
                explanation: serde_json::to_string(&p.explanation).ok(),
            });
        }
        if !lost.is_empty() {
            self.jobs.requeue(lost);
        }
        grants
    }

    /// The assign job's results: confirmed leases are delivered to their
    /// agents; refused ones are gone (and re-read when still queued).
    pub(super) fn granted(
        &mut self,
        grants: Vec<(TaskId, AgentId)>,
        results: Result<Vec<Result<Leased, ClaimRefused>>, StoreError>,
        now: u64,
    ) {
        self.shared.bump();
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                self.shared.metrics.counters.store_error(StoreOp::Assign);
                warn!(error = %e, count = grants.len(), "assign failed; tasks go back to the queue");
                // Nothing was written: the tasks are still queued in the store.
                let back: Vec<TaskId> = grants.into_iter().map(|(t, _)| t).collect();
                for t in &back {
                    self.leases.refuse(*t);
                }
                self.jobs.requeue(back);
                return;
            }
        };
        let mut by_agent: HashMap<AgentId, Vec<Outbound>> = HashMap::new();
        if self.shared.audit.enabled() {
            let leased: Vec<serde_json::Value> = results
                .iter()
                .flatten()
                .map(|l| serde_json::json!({ "task": l.task, "agent": l.agent, "fence": l.fence }))
                .collect();
            let entry = torch_store::NewAudit {
                at_ms: now,
                actor: "hub".into(),
                role: "hub".into(),
                action: "task.assigned".into(),
                outcome: "allowed".into(),
                ..Default::default()
            };
            crate::audit::batch(&self.shared.audit, entry, leased);
        }
        for r in results {
            match r {
                Ok(leased) => match self.leases.confirm(leased.task, leased.fence, now) {
                    Confirm::Deliver(agent) => {
                        let ready = self.ready_at.remove(&leased.task);
                        if let (Some(r), Some(info)) = (ready, self.info.get(&leased.task)) {
                            let wait_ms = r.elapsed().as_millis() as u64;
                            let skills = info.skills.iter().map(|s| s.name.as_str());
                            self.capacity.waited(skills, info.templates, wait_ms, now);
                        }
                        let msg = self.assignment(leased);
                        by_agent
                            .entry(agent)
                            .or_default()
                            .push(Outbound::Message { msg, ready });
                    }
                    Confirm::Withdrawn(_) => {
                        self.ready_at.remove(&leased.task);
                    }
                    Confirm::Ignore => {}
                },
                Err(refused) => {
                    debug!(task_id = %refused.task, state = ?refused.state, "grant refused");
                    self.leases.refuse(refused.task);
                    self.ready_at.remove(&refused.task);
                    if refused.state == Some(TaskState::Queued) {
                        self.jobs.requeue(vec![refused.task]);
                    }
                }
            }
        }
        for (agent, msgs) in by_agent {
            for m in msgs {
                self.send(agent, m);
            }
        }
    }

    /// The `Assign` message for a confirmed lease, with its task token.
    fn assignment(&self, leased: Leased) -> HubMessage {
        let token = self.shared.auth.task_tokens.mint(leased.task, leased.fence);
        let spec = leased.spec;
        HubMessage::Assign(Assignment {
            task_id: leased.task,
            fence: leased.fence,
            attempt: leased.attempt,
            name: leased.name,
            success: spec.success(),
            timeout_ms: spec.timeout.map(|d| d.as_millis() as u64),
            command: spec.command,
            prompt: spec.prompt,
            env: spec.env,
            task_token: token,
            sandbox: spec.sandbox,
            checkout: spec.context.and_then(|c| {
                c.git_repository().map(|repository| Checkout {
                    repository: repository.to_string(),
                    base: c.branch.clone(),
                })
            }),
        })
    }

    /// An agent reported attempts over: their slots are free at once, and
    /// the router learns from each (the first report per lease) now — in the
    /// same step, so no scheduling pass sees the free slot without the
    /// failure the breaker must count.
    pub(super) fn ended(&mut self, agent: AgentId, reports: Vec<EndReport>, now: u64) {
        for r in reports {
            let task = r.held.task_id;
            if self.leases.end(agent, task, r.held.fence) == Ended::Finishing && r.telling {
                self.learn(agent, task, r.succeeded, r.duration_ms, now);
            }
        }
        self.heard_from(agent, now);
    }

    /// The store recorded (or failed to record) end reports.
    pub(super) fn recorded(&mut self, agent: AgentId, results: Vec<RecordedReport>, now: u64) {
        for rep in results {
            let h = rep.held;
            match rep.result {
                Ok(res) => {
                    self.leases.recorded(agent, h.task_id, h.fence);
                    if let FinishResult::Recorded(effect) = res {
                        if let Some(a) = self.agents.get_mut(&agent) {
                            a.completed += 1;
                            a.run_ms_total += rep.duration_ms;
                        }
                        self.apply(effect, now);
                    }
                }
                Err(e) => {
                    warn!(task_id = %h.task_id, error = %e, "could not record a finished report; the lease stays until the agent resends or it expires");
                    self.leases.record_failed(h.task_id, now);
                }
            }
        }
    }

    /// Tasks cancelled in the store: out of the queue; their leases wait
    /// for the agents to confirm the kill.
    pub(super) fn cancelled(
        &mut self,
        tasks: Vec<TaskId>,
        revoked: Vec<(TaskId, AgentId, u64)>,
        reason: String,
        now: u64,
    ) {
        for t in &tasks {
            self.sched.remove_task(*t);
            self.ready_at.remove(t);
        }
        self.forget(&tasks);
        for (task, agent, fence) in revoked {
            self.leases.cancel(task, now);
            self.send(agent, cancel(task, fence, reason.clone()));
        }
    }

    /// What the lease table finds due: expiries and stalls become store
    /// jobs; unconfirmed cancels were dropped by the table.
    pub(super) fn reap(&mut self, now: u64) {
        let lease_ms = self.lease_ms();
        let rules = self.leases.rules();
        for due in self.leases.tick(now) {
            match due {
                Due::Expire {
                    task,
                    agent,
                    fence,
                    stalled: false,
                } => {
                    let name = self.went_silent(agent);
                    warn!(task_id = %task, agent_id = %agent, fence, "lease expired; requeueing");
                    let reason = format!(
                        "lease expired: agent {name} ({agent}) sent no heartbeat for {lease_ms} ms"
                    );
                    self.jobs.expire(task, agent, fence, reason, now);
                }
                Due::Expire {
                    task,
                    agent,
                    fence,
                    stalled: true,
                } => {
                    let stall_ms = rules.stall_ms.unwrap_or(0);
                    let reason = format!("stalled: no progress report for {stall_ms} ms");
                    self.send(agent, cancel(task, fence, reason.clone()));
                    self.jobs
                        .stalled(task, agent, fence, stall_ms, Some(reason), now);
                }
                Due::Stalled { task, agent, fence } => {
                    let stall_ms = rules.stall_ms.unwrap_or(0);
                    warn!(task_id = %task, agent_id = %agent, fence, requeue = rules.stall_requeue, "task stalled: no progress for {stall_ms} ms");
                    if !rules.stall_requeue {
                        self.jobs.stalled(task, agent, fence, stall_ms, None, now);
                    }
                }
                Due::Dropped { task, agent } => {
                    debug!(task_id = %task, agent_id = %agent, "cancelled lease dropped: the agent never confirmed the kill");
                }
            }
        }
    }

    /// The expire job's result.
    pub(super) fn expired(
        &mut self,
        task: TaskId,
        agent: AgentId,
        result: Result<FinishResult, StoreError>,
        now: u64,
    ) {
        match result {
            Ok(res) => {
                self.leases.expired(task);
                if let FinishResult::Recorded(effect) = res {
                    self.shared.audit.hub(
                        now,
                        "task.expired",
                        task.to_string(),
                        format!("{{\"agent\":\"{agent}\",\"state\":\"{}\"}}", effect.state),
                    );
                    self.shared.metrics.counters.failed(
                        Failure::LeaseExpired,
                        effect.state == TaskState::Queued,
                        effect.state == TaskState::Dead,
                    );
                    let lease_ms = self.lease_ms();
                    self.learn(agent, task, false, lease_ms, now);
                    self.shared
                        .stats
                        .expired
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.apply(effect, now);
                }
            }
            Err(e) => {
                self.shared.metrics.counters.store_error(StoreOp::Expire);
                warn!(task_id = %task, error = %e, "lease expiry could not be recorded; will retry");
                self.leases.expiry_failed(task, now);
            }
        }
    }

    /// Tracks leases the store holds that this engine does not: each expires
    /// (and its task is retried) unless its agent holds it.
    pub(super) fn adopt(&mut self, leases: Vec<(TaskId, AgentId, u64)>, now: u64) {
        for (task, agent, fence) in leases {
            // Queued here means this engine saw the lease end after the
            // store was read (it expired and was requeued): the read is
            // stale, and adopting it would lease a task the scheduler may
            // place again.
            if self.sched.is_queued(task) {
                continue;
            }
            if self.leases.adopt(task, agent, fence, now) {
                warn!(task_id = %task, agent_id = %agent, fence, "adopting a lease the store holds but this hub did not track");
            }
        }
    }
}

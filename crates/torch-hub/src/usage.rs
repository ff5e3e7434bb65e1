//! Usage reported from inside running tasks (`torch usage report`), kept
//! per attempt until the attempt's finish report, which carries it into
//! the stored outcome; and whether the attempt was stopped on its budget.

use std::collections::HashMap;
use std::sync::Mutex;

use torch_core::budget::Resources;
use torch_core::{AgentId, Outcome, OutcomeKind, TaskId, Usage};
use torch_store::Store;
use tracing::{info, warn};

use crate::engine::Command;
use crate::hub::Shared;

/// What the source of reported usage is called in `evidence.usage.source`.
pub(crate) const REPORTED: &str = "torch usage report";

/// One running attempt's reported usage.
#[derive(Debug, Default)]
struct Running {
    fence: u64,
    usage: Usage,
    /// Why the hub stopped it, once it reached its budget.
    exceeded: Option<String>,
}

/// Reported usage of running attempts, by task.
#[derive(Debug, Default)]
pub(crate) struct UsageBook {
    running: Mutex<HashMap<TaskId, Running>>,
}

impl UsageBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `delta` to the attempt `(task, fence)`; a newer fence starts
    /// over. Returns the attempt's reported usage so far.
    pub(crate) fn add(&self, task: TaskId, fence: u64, delta: &Usage) -> Usage {
        let mut map = self.lock();
        let r = map.entry(task).or_default();
        if r.fence != fence {
            *r = Running {
                fence,
                ..Running::default()
            };
        }
        r.usage.add(delta);
        r.usage.clone()
    }

    /// The attempt's reported usage so far, if any.
    pub(crate) fn get(&self, task: TaskId, fence: u64) -> Option<Usage> {
        self.lock()
            .get(&task)
            .filter(|r| r.fence == fence)
            .map(|r| r.usage.clone())
    }

    /// At the attempt's finish: adds its reported usage to the outcome's
    /// (the agent CLI's own numbers) and, when the hub stopped it on its
    /// budget, makes the outcome `budget_exceeded`.
    pub(crate) fn settle(&self, task: TaskId, fence: u64, outcome: &mut Outcome) {
        let Some(r) = self.lock().remove(&task) else {
            return;
        };
        if r.fence != fence {
            return;
        }
        // Nothing reported (a stop on the CLI's stream tokens alone): the
        // outcome keeps the CLI's own numbers, if it gave any.
        if !r.usage.source.is_empty() {
            match &mut outcome.evidence.usage {
                Some(u) => u.add(&r.usage),
                None => outcome.evidence.usage = Some(r.usage),
            }
        }
        if let Some(why) = r.exceeded
            && outcome.kind != OutcomeKind::Succeeded
        {
            outcome.kind = OutcomeKind::BudgetExceeded;
            outcome.reason = Some(format!("budget exceeded: {why}"));
        }
    }
}

/// Checks the attempt's `usage` plus `stream` tokens (the agent CLI's
/// output so far) against the spec's `resources`. On reaching a limit the
/// first time, marks the attempt and tells `agent` to stop it. Returns the
/// limit reached, if any.
pub(crate) async fn enforce<S: Store>(
    shared: &Shared<S>,
    held: (TaskId, u64, AgentId),
    resources: Option<&Resources>,
    usage: &Usage,
    stream: u64,
) -> Option<String> {
    let (task, fence, agent) = held;
    let mut check = usage.clone();
    check.tokens_out = check.tokens_out.saturating_add(stream);
    let why = resources?.exceeded(&check)?;
    let first = {
        let mut map = shared.usage.lock();
        let r = map.entry(task).or_default();
        if r.fence != fence {
            *r = Running {
                fence,
                ..Running::default()
            };
        }
        r.exceeded.replace(why.clone()).is_none()
    };
    if first {
        info!(task_id = %task, fence, why = %why, "task reached its budget: stopping it");
        shared
            .engine
            .send(Command::Cancelled {
                tasks: Vec::new(),
                revoked: vec![(task, agent, fence)],
                reason: format!("budget_exceeded: {why}"),
            })
            .await;
    }
    Some(why)
}

/// After an agent's progress report carrying `stream` tokens of its CLI's
/// output: stops the attempt if they (plus what was reported) reach the
/// spec's `resources.max_tokens`.
pub(crate) async fn enforce_stream<S: Store>(
    shared: &Shared<S>,
    held: (TaskId, u64, AgentId),
    stream: u64,
) {
    let (task, fence, _) = held;
    if stream == 0 {
        return;
    }
    let spec = match shared.store.get_task(task).await {
        Ok(Some(r)) => r.spec,
        Ok(None) => return,
        Err(e) => {
            warn!(task_id = %task, error = %e, "cannot read the task to check its budget");
            return;
        }
    };
    if spec.resources.is_none() {
        return;
    }
    let usage = shared.usage.get(task, fence).unwrap_or_default();
    enforce(shared, held, spec.resources.as_ref(), &usage, stream).await;
}

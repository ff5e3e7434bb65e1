//! Usage reported from inside running tasks (`torch usage report`), kept
//! per attempt until the attempt's finish report, which carries it into
//! the stored outcome; and whether the attempt was stopped on its budget.

use std::collections::HashMap;
use std::sync::Mutex;

use torch_core::{Outcome, OutcomeKind, TaskId, Usage};

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

/// What adding a report found.
pub(crate) struct Added {
    /// The attempt's reported usage so far.
    pub(crate) total: Usage,
    /// Whether the attempt was already marked as over its budget.
    pub(crate) already_exceeded: bool,
}

impl UsageBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `delta` to the attempt `(task, fence)`; a newer fence starts
    /// over.
    pub(crate) fn add(&self, task: TaskId, fence: u64, delta: &Usage) -> Added {
        let mut map = self.lock();
        let r = map.entry(task).or_default();
        if r.fence != fence {
            *r = Running {
                fence,
                ..Running::default()
            };
        }
        r.usage.add(delta);
        Added {
            total: r.usage.clone(),
            already_exceeded: r.exceeded.is_some(),
        }
    }

    /// Marks the attempt as stopped on its budget, with why.
    pub(crate) fn exceed(&self, task: TaskId, fence: u64, why: String) {
        if let Some(r) = self.lock().get_mut(&task)
            && r.fence == fence
        {
            r.exceeded = Some(why);
        }
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
        match &mut outcome.evidence.usage {
            Some(u) => u.add(&r.usage),
            None => outcome.evidence.usage = Some(r.usage),
        }
        if let Some(why) = r.exceeded
            && outcome.kind != OutcomeKind::Succeeded
        {
            outcome.kind = OutcomeKind::BudgetExceeded;
            outcome.reason = Some(format!("budget exceeded: {why}"));
        }
    }
}

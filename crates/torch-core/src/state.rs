//! The task state machine.
//!
//! ```text
//! blocked ──deps succeeded──▶ queued ──assign──▶ assigned ──start──▶ running
//!                                ▲                   │                  │
//!                                └── retry (attempt+1, backoff) ◀── failed / lease lost
//! running ──▶ succeeded | dead (retries exhausted) | cancelled
//! ```
//! `succeeded`, `dead` and `cancelled` are terminal. A failure with retries
//! left goes straight back to `queued` with a not-before time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a task is in its life.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting for dependencies to succeed.
    Blocked,
    /// Ready to run (possibly after a backoff delay).
    Queued,
    /// Leased to an agent, not yet started.
    Assigned,
    /// The agent started the process.
    Running,
    /// Finished and met its success criteria.
    Succeeded,
    /// Failed on every allowed attempt (or failed fatally).
    Dead,
    /// Cancelled by a user or because a dependency can never succeed.
    Cancelled,
}

impl TaskState {
    /// All states, in lifecycle order.
    pub const ALL: [TaskState; 7] = [
        TaskState::Blocked,
        TaskState::Queued,
        TaskState::Assigned,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    /// True for states a task never leaves (except by an explicit retry).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled
        )
    }

    /// True while an agent holds a lease on the task.
    pub fn is_leased(self) -> bool {
        matches!(self, TaskState::Assigned | TaskState::Running)
    }

    /// The lowercase name used in the store, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Blocked => "blocked",
            TaskState::Queued => "queued",
            TaskState::Assigned => "assigned",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown task state name.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown task state {0:?}: expected one of blocked, queued, assigned, running, succeeded, dead, cancelled"
)]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// What happens after an attempt fails: try again after `delay_ms`, or give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Requeue as attempt `attempt`, not before `not_before` (unix ms).
    Retry {
        /// The next attempt number (1-based).
        attempt: u32,
        /// Earliest time the next attempt may be assigned.
        not_before: u64,
    },
    /// No attempts left: the task is dead.
    Dead,
}

/// Decides whether attempt `attempt` (1-based, the one that just failed) is retried.
pub fn retry_decision(
    attempt: u32,
    max_retries: u32,
    backoff: &crate::spec::Backoff,
    fatal: bool,
    now: u64,
) -> RetryDecision {
    if fatal || attempt > max_retries {
        return RetryDecision::Dead;
    }
    let next = attempt + 1;
    let delay = backoff.delay(next).as_millis() as u64;
    RetryDecision::Retry {
        attempt: next,
        not_before: now.saturating_add(delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Backoff;

    #[test]
    fn retries_until_budget_then_dead() {
        let b = Backoff::default();
        assert_eq!(
            retry_decision(1, 2, &b, false, 1000),
            RetryDecision::Retry {
                attempt: 2,
                not_before: 2000
            }
        );
        assert_eq!(
            retry_decision(2, 2, &b, false, 0),
            RetryDecision::Retry {
                attempt: 3,
                not_before: 2000
            }
        );
        assert_eq!(retry_decision(3, 2, &b, false, 0), RetryDecision::Dead);
        assert_eq!(retry_decision(1, 5, &b, true, 0), RetryDecision::Dead);
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        assert!(TaskState::Dead.is_terminal() && !TaskState::Running.is_terminal());
    }
}

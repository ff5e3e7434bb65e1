//! Store errors, with retry meaning.

use torch_core::{TaskId, TaskState};

/// Why a store operation failed as a whole.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The task does not exist.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// The operation conflicts with the task's state (e.g. cancel of a finished task).
    #[error("task {task} is {state}: {message}")]
    Conflict {
        /// The task.
        task: TaskId,
        /// Its current state.
        state: TaskState,
        /// What could not be done.
        message: String,
    },
    /// The submission is invalid against what is stored (missing or dead dependency).
    #[error("{0}")]
    Invalid(String),
    /// A size limit would be passed (agent memory); nothing was written.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The store cannot be reached or is overloaded; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused a write because it is out of space (Redis
    /// `maxmemory`); nothing was written; retry after freeing memory.
    #[error("store full: {0}")]
    Full(String),
    /// Stored data could not be read back (schema mismatch, bad JSON).
    #[error("store data corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Full(_))
    }
}

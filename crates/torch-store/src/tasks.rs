//! Tasks and their leases: submission, leasing, attempt ends, cancel and
//! retry, and the reads of stored tasks.

use std::future::Future;

use torch_core::{AgentId, Liveness, TaskId};

use crate::{
    Cancelled, ClaimRefused, FenceCheck, Finish, FinishResult, Grant, Leased, LogRecord, NewTask,
    Requeued, Snapshot, StoreError, Submitted, TaskFilter, TaskPage, TaskRecord,
};

/// Tasks and leases: every write that moves a task through its states, and
/// the reads of stored tasks. See the crate docs for the guarantees.
///
/// Times are unix milliseconds passed in by the caller.
pub trait TaskStore: Send + Sync {
    /// Everything the hub needs in memory after a (re)start: queued tasks,
    /// leased tasks, and the number of non-terminal tasks.
    fn load(&self) -> impl Future<Output = Result<Snapshot, StoreError>> + Send;

    /// Inserts a validated batch all-or-nothing. A task whose idempotency key
    /// (per tenant) exists returns the existing task with `duplicate = true`.
    /// External dependencies must exist and must not be dead or cancelled.
    fn submit(
        &self,
        batch: Vec<NewTask>,
        now: u64,
    ) -> impl Future<Output = Result<Vec<Submitted>, StoreError>> + Send;

    /// One task, if it exists.
    fn get_task(
        &self,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<TaskRecord>, StoreError>> + Send;

    /// Several tasks at once (those that exist), in the order asked.
    fn get_tasks(
        &self,
        ids: Vec<TaskId>,
    ) -> impl Future<Output = Result<Vec<TaskRecord>, StoreError>> + Send {
        async move {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(t) = self.get_task(id).await? {
                    out.push(t);
                }
            }
            Ok(out)
        }
    }

    /// Tasks matching `filter`, newest first, plus counts per state.
    fn list_tasks(
        &self,
        filter: TaskFilter,
    ) -> impl Future<Output = Result<TaskPage, StoreError>> + Send;

    /// Captured output of a task's last finished attempt that had any.
    fn task_logs(
        &self,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<LogRecord>, StoreError>> + Send;

    /// Leases queued tasks to agents. Each grant gets the next fence token
    /// (strictly increasing across the store's life) and `attempt + 1`.
    /// A grant for a task that is no longer queued is refused individually.
    fn assign(
        &self,
        grants: Vec<Grant>,
        now: u64,
    ) -> impl Future<Output = Result<Vec<Result<Leased, ClaimRefused>>, StoreError>> + Send;

    /// Marks leased tasks running. Stale fences are refused individually.
    fn start(
        &self,
        held: Vec<(TaskId, u64)>,
        now: u64,
    ) -> impl Future<Output = Result<Vec<FenceCheck>, StoreError>> + Send;

    /// Records finished attempts (each exactly once per fence): success,
    /// retry with backoff, dead after `max_retries`, dependents released or
    /// cancelled. A resend with the same fence is `Duplicate`; any other
    /// mismatch is `Stale` and changes nothing.
    fn finish(
        &self,
        reports: Vec<Finish>,
        now: u64,
    ) -> impl Future<Output = Result<Vec<FinishResult>, StoreError>> + Send;

    /// A lease ran out: the attempt counts as failed with `reason` (retry or
    /// dead, as for a failed report). Stale if the fence moved on meanwhile.
    fn expire(
        &self,
        task: TaskId,
        fence: u64,
        reason: String,
        now: u64,
    ) -> impl Future<Output = Result<FinishResult, StoreError>> + Send;

    /// Cancels a non-terminal task and, transitively, its non-terminal
    /// dependents. Returns what was cancelled and which leases to revoke.
    fn cancel(
        &self,
        task: TaskId,
        reason: String,
        now: u64,
    ) -> impl Future<Output = Result<Cancelled, StoreError>> + Send;

    /// Requeues a dead or cancelled task with a fresh retry budget.
    /// Its dependencies must not be dead or cancelled.
    fn retry(
        &self,
        task: TaskId,
        now: u64,
    ) -> impl Future<Output = Result<Requeued, StoreError>> + Send;

    /// Records a progress report from inside a task, if the fence is current.
    fn progress(
        &self,
        task: TaskId,
        fence: u64,
        percent: f64,
        message: Option<String>,
        now: u64,
    ) -> impl Future<Output = Result<FenceCheck, StoreError>> + Send {
        self.progress_live(task, fence, percent, message, None, now)
    }

    /// [`TaskStore::progress`] with the agent CLI's activity and waiting,
    /// kept on the task (replacing the last ones; `None` clears them) and
    /// carried by the `task.progress` event.
    fn progress_live(
        &self,
        task: TaskId,
        fence: u64,
        percent: f64,
        message: Option<String>,
        live: Option<Liveness>,
        now: u64,
    ) -> impl Future<Output = Result<FenceCheck, StoreError>> + Send;

    /// Which agent currently holds `task`, if any (used to route a cancel).
    fn lease_holder(
        &self,
        task: TaskId,
    ) -> impl Future<Output = Result<Option<(AgentId, u64)>, StoreError>> + Send;
}

//! Nova Torch durable store.
//!
//! The [`Store`] trait is every durable operation the hub performs. Each
//! mutating operation is atomic, checks fence tokens itself (the store, not the
//! hub's memory, is the authority on who owns a task), appends its events on
//! the seed's stream names, and returns only once durable.
//!
//! Implementations:
//! - [`sqlite::SqliteStore`]: the embedded default. One file in the data dir,
//!   WAL, one writer thread with group commit, versioned migrations.
//! - [`redis::RedisStore`]: Redis (Valkey, Dragonfly) for many hubs on many
//!   machines: Lua scripts for atomic, fenced batches, the event streams as
//!   real Redis streams, consumer groups and a leader lease.
//!
//! The conformance suite in `tests/suite` is written against the trait;
//! `tests/conformance.rs` runs it on SQLite and `tests/conformance_redis.rs`
//! on Redis, so both pass the same cases.

mod error;
mod model;
pub mod redis;
pub mod sqlite;
mod streams;

use std::future::Future;

use torch_core::{AgentId, TaskId};

pub use error::StoreError;
pub use model::*;
pub use streams::*;

/// Every durable operation of the hub. See the crate docs for the guarantees.
///
/// Times are unix milliseconds passed in by the caller.
pub trait Store: Send + Sync + 'static {
    /// Short name for health output, e.g. `sqlite`.
    fn kind(&self) -> &'static str;

    /// Requests sent to a networked store so far (each one round trip), for
    /// benchmarks; `None` for an embedded store.
    fn round_trips(&self) -> Option<u64> {
        None
    }

    /// Whether several hubs may share this store; then one of them, the
    /// leader, runs the scheduler, autoscaler and reaper (see the leadership
    /// methods). An embedded store has one hub, always the leader.
    fn is_shared(&self) -> bool {
        false
    }

    /// Takes (or, for its holder, extends) the leader lease for `hub` for
    /// `ttl_ms`; returns the leader fence while `hub` holds it. The fence
    /// grows with every change of leader.
    fn acquire_leadership(
        &self,
        hub: String,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        let _ = (hub, ttl_ms);
        async { Ok(Some(1)) }
    }

    /// Extends the lease held by `hub` under `fence`; false once it is lost.
    fn renew_leadership(
        &self,
        hub: String,
        fence: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (hub, fence, ttl_ms);
        async { Ok(true) }
    }

    /// Gives the lease up (a hub stopping cleanly), so another hub can take
    /// over at once instead of after the term.
    fn release_leadership(
        &self,
        hub: String,
        fence: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (hub, fence);
        async { Ok(()) }
    }

    /// The current leader (its hub id, e.g. its URL) and fence, if any.
    fn current_leader(
        &self,
    ) -> impl Future<Output = Result<Option<(String, u64)>, StoreError>> + Send {
        async { Ok(None) }
    }

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

    /// As [`Store::submit`], for a hub that is not the leader and could not
    /// reach it (hubs sharing a store): with the tasks, the store records a
    /// hand-off naming `hub` and the new tasks, which the leader reads with
    /// [`Store::handoffs`] and schedules at once. An embedded store has one
    /// hub, so this is `submit`.
    fn submit_handoff(
        &self,
        batch: Vec<NewTask>,
        now: u64,
        hub: String,
    ) -> impl Future<Output = Result<Vec<Submitted>, StoreError>> + Send {
        let _ = hub;
        self.submit(batch, now)
    }

    /// For the leader `hub`: hand-offs other hubs recorded that no leader
    /// has acknowledged yet, delivered to `hub` until it acknowledges them
    /// ([`Store::ack_handoffs`]). With `reclaim`, first those delivered to
    /// an earlier leader that never acknowledged them (it died). Waits up
    /// to `wait` for one when there are none. Always empty on a store that
    /// is not shared.
    fn handoffs(
        &self,
        hub: String,
        reclaim: bool,
        wait: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<Handoff>, StoreError>> + Send {
        let _ = (hub, reclaim, wait);
        async { Ok(Vec::new()) }
    }

    /// Acknowledges hand-offs (by id) the leader `hub` has handled.
    fn ack_handoffs(
        &self,
        hub: String,
        ids: Vec<u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (hub, ids);
        async { Ok(()) }
    }

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

    /// Retention: deletes up to `limit` finished tasks (succeeded, dead or
    /// cancelled) last updated before `before_ms`, oldest submissions first,
    /// with what only they use (captured output, label and parent index
    /// entries, their idempotency key, which becomes free again). Events
    /// older than `before_ms` go too where the store keeps them all (SQLite;
    /// Redis streams are trimmed by length). Unfinished tasks are never
    /// touched. Returns how many tasks were deleted.
    fn purge_finished(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

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
    ) -> impl Future<Output = Result<FenceCheck, StoreError>> + Send;

    /// Records an agent session starting (`joined`) or ending.
    fn agent_event(
        &self,
        event: AgentEvent,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Appends a free-form event (e.g. a refused stale report) on a stream.
    fn append_event(
        &self,
        event: NewEvent,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One task, if it exists.
    fn get_task(
        &self,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<TaskRecord>, StoreError>> + Send;

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

    /// Events with id greater than `after`, oldest first, optionally limited
    /// to some streams (exact names or prefixes ending in `.`).
    fn events(
        &self,
        after: u64,
        streams: Vec<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventRecord>, StoreError>> + Send;

    /// Id of the newest event (0 when none).
    fn last_event_id(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores a token (only its hash).
    fn put_token(&self, token: TokenRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Looks a token up by its hash.
    fn find_token(
        &self,
        hash: String,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Number of tokens with the given role (e.g. to know whether an admin exists).
    fn count_tokens(&self, role: String) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Reads a metadata value (e.g. the hub's signing secret).
    fn get_meta(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Sets a metadata value only if it is absent; returns the value now stored.
    fn init_meta(
        &self,
        key: String,
        value: String,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Which agent currently holds `task`, if any (used to route a cancel).
    fn lease_holder(
        &self,
        task: TaskId,
    ) -> impl Future<Output = Result<Option<(AgentId, u64)>, StoreError>> + Send;

    /// Writes one key of an agent's memory, refusing (with
    /// [`StoreError::LimitExceeded`]) a write past `limits`.
    fn memory_put(
        &self,
        owner: AgentId,
        key: String,
        value: String,
        limits: MemoryLimits,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads one key of an agent's memory.
    fn memory_get(
        &self,
        owner: AgentId,
        key: String,
    ) -> impl Future<Output = Result<Option<MemoryEntry>, StoreError>> + Send;

    /// An agent's whole memory, by key.
    fn memory_list(
        &self,
        owner: AgentId,
    ) -> impl Future<Output = Result<Vec<MemoryEntry>, StoreError>> + Send;

    /// Copies `keys` (those that exist) of `from`'s memory into `to`'s, marked
    /// as inherited from `from`, within `limits`, and appends an
    /// `agent.memory_inherited` event on [`AGENTS_SPAWNING`] naming both agents
    /// and the keys copied. Returns the keys copied. All or nothing.
    fn memory_inherit(
        &self,
        from: AgentId,
        to: AgentId,
        keys: Vec<String>,
        limits: MemoryLimits,
        now: u64,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

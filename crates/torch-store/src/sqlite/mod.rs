//! The embedded SQLite store: one file, WAL, one writer thread with group
//! commit, and a small pool of read-only connections.
//!
//! # Layout
//! - `schema`: connection setup and versioned migrations (`PRAGMA user_version`).
//! - `writer`: the writer thread; batches operations into one transaction,
//!   one savepoint per operation, and replies only after `COMMIT`.
//! - `submit`: submission (idempotency, dependency checks, inserts).
//! - `ops`: leasing, start, progress and the small writes.
//! - `finish`: attempt ends (finish, expire), releasing dependents.
//! - `cancel`: cancel and retry, and the cascade to dependents.
//! - `coord`: lock grants and help requests.
//! - `read`: queries on the read pool.
//! - `rows`: value conversions and error mapping.
//!
//! # Durability
//! An operation's future resolves only after the transaction holding it has
//! committed. With the default `synchronous=NORMAL` a commit is in the WAL
//! file before the reply, so it survives the process being killed; with
//! [`SqliteOptions::synchronous_full`] each commit is also fsynced and
//! survives power loss. One commit covers a whole batch, so the fsync cost is
//! shared by up to [`SqliteOptions::max_batch`] operations.
//!
//! # Limits
//! `list_tasks` returns at most 1000 tasks (100 when the filter's limit is 0);
//! `events` returns at most 10,000 events (1000 when `limit` is 0).

mod audit;
mod cancel;
mod coord;
mod finish;
mod ops;
mod read;
mod relay;
pub(crate) mod rows;
mod schema;
mod submit;
mod tokens;
mod writer;

use std::path::Path;
use std::sync::Arc;

use torch_core::{AgentId, Liveness, TaskId};
use tracing::info;

use crate::{
    AgentEvent, Cancelled, ClaimRefused, EventRecord, FenceCheck, Finish, FinishResult, Grant,
    Leased, LogRecord, MemoryEntry, MemoryLimits, NewEvent, NewTask, Requeued, Snapshot, Store,
    StoreError, Submitted, TaskFilter, TaskPage, TaskRecord, TokenRecord,
};
use crate::{EventLog, MemoryStore, MetaStore, NotShared, Retention, TaskStore, TokenStore};
use read::Readers;
use writer::Writer;

/// Tuning for [`SqliteStore::open`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// `synchronous=FULL`: fsync every commit, so acknowledged writes also
    /// survive power loss. Off (`NORMAL`), they survive the process being
    /// killed but the last commits may be lost if the machine loses power.
    pub synchronous_full: bool,
    /// Most operations committed together in one transaction (at least 1).
    /// Larger batches raise throughput under load; a lone operation never
    /// waits for company.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous_full: false,
            max_batch: 512,
        }
    }
}

/// The embedded [`Store`]: a single SQLite file in WAL mode.
///
/// Open it once per file: two stores (or processes) writing the same file
/// stay correct (fences are read inside each write transaction) but contend
/// for the write lock. Dropping the store finishes queued writes and closes
/// the file.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
}

impl SqliteStore {
    /// Opens (creating if needed, with its directory) and migrates the store
    /// at `path`, then starts its writer thread.
    ///
    /// Fails with [`StoreError::Corrupt`] when the file is not a database or
    /// was written by a newer version of the schema, and with
    /// [`StoreError::Unavailable`] when it cannot be opened or locked.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let conn = schema::open_writer(path, opts.synchronous_full)?;
        let writer = Writer::spawn(conn, opts.max_batch)?;
        info!(path = %path.display(), synchronous_full = opts.synchronous_full, "store opened");
        Ok(SqliteStore {
            writer,
            readers: Readers::new(path.to_path_buf()),
        })
    }
}

/// The schema migration scripts, oldest first: script `i` takes a database
/// from version `i` to `i + 1`. For upgrade tests only.
#[doc(hidden)]
pub fn migration_scripts() -> &'static [&'static str] {
    schema::MIGRATIONS
}

impl TaskStore for SqliteStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.readers.run(read::load).await
    }

    async fn submit(&self, batch: Vec<NewTask>, now: u64) -> Result<Vec<Submitted>, StoreError> {
        self.writer
            .call(move |tx| submit::submit(tx, batch, now))
            .await
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.readers.run(move |c| read::get_task(c, id)).await
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<TaskPage, StoreError> {
        self.readers.run(move |c| read::list_tasks(c, filter)).await
    }

    async fn task_logs(&self, id: TaskId) -> Result<Option<LogRecord>, StoreError> {
        self.readers.run(move |c| read::task_logs(c, id)).await
    }

    async fn assign(
        &self,
        grants: Vec<Grant>,
        now: u64,
    ) -> Result<Vec<Result<Leased, ClaimRefused>>, StoreError> {
        self.writer
            .call(move |tx| ops::assign(tx, grants, now))
            .await
    }

    async fn start(
        &self,
        held: Vec<(TaskId, u64)>,
        now: u64,
    ) -> Result<Vec<FenceCheck>, StoreError> {
        self.writer.call(move |tx| ops::start(tx, held, now)).await
    }

    async fn finish(
        &self,
        reports: Vec<Finish>,
        now: u64,
    ) -> Result<Vec<FinishResult>, StoreError> {
        self.writer
            .call(move |tx| finish::finish(tx, reports, now))
            .await
    }

    async fn expire(
        &self,
        task: TaskId,
        fence: u64,
        reason: String,
        now: u64,
    ) -> Result<FinishResult, StoreError> {
        self.writer
            .call(move |tx| finish::expire(tx, task, fence, reason, now))
            .await
    }

    async fn cancel(
        &self,
        task: TaskId,
        reason: String,
        now: u64,
    ) -> Result<Cancelled, StoreError> {
        self.writer
            .call(move |tx| cancel::cancel(tx, task, reason, now))
            .await
    }

    async fn retry(&self, task: TaskId, now: u64) -> Result<Requeued, StoreError> {
        self.writer
            .call(move |tx| cancel::retry(tx, task, now))
            .await
    }

    async fn progress_live(
        &self,
        task: TaskId,
        fence: u64,
        percent: f64,
        message: Option<String>,
        live: Option<Liveness>,
        now: u64,
    ) -> Result<FenceCheck, StoreError> {
        self.writer
            .call(move |tx| ops::progress(tx, task, fence, percent, message, live, now))
            .await
    }

    async fn lease_holder(&self, task: TaskId) -> Result<Option<(AgentId, u64)>, StoreError> {
        self.readers.run(move |c| read::lease_holder(c, task)).await
    }
}

impl EventLog for SqliteStore {
    async fn append_event(&self, event: NewEvent, now: u64) -> Result<(), StoreError> {
        self.writer
            .call(move |tx| ops::append_event(tx, event, now))
            .await
    }

    async fn append_events(&self, events: Vec<NewEvent>, now: u64) -> Result<(), StoreError> {
        self.writer
            .call(move |tx| {
                for event in events {
                    ops::append_event(tx, event, now)?;
                }
                Ok(())
            })
            .await
    }

    async fn agent_event(&self, event: AgentEvent, now: u64) -> Result<(), StoreError> {
        self.writer
            .call(move |tx| ops::agent_event(tx, event, now))
            .await
    }

    async fn events(
        &self,
        after: u64,
        streams: Vec<String>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.readers
            .run(move |c| read::events(c, after, streams, limit))
            .await
    }

    async fn last_event_id(&self) -> Result<u64, StoreError> {
        self.readers.run(read::last_event_id).await
    }
}

impl TokenStore for SqliteStore {
    async fn put_token(&self, token: TokenRecord) -> Result<(), StoreError> {
        self.writer
            .call(move |tx| tokens::put_token(tx, token))
            .await
    }

    async fn find_token(&self, hash: String) -> Result<Option<TokenRecord>, StoreError> {
        self.readers.run(move |c| tokens::find_token(c, hash)).await
    }

    async fn count_tokens(&self, role: String) -> Result<u64, StoreError> {
        self.readers
            .run(move |c| tokens::count_tokens(c, role))
            .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.readers.run(tokens::list_tokens).await
    }

    async fn revoke_token(&self, id: String, now: u64) -> Result<Option<TokenRecord>, StoreError> {
        self.writer
            .call(move |tx| tokens::revoke_token(tx, id, now))
            .await
    }

    async fn touch_token(&self, hash: String, now: u64) -> Result<(), StoreError> {
        self.writer
            .call(move |tx| tokens::touch_token(tx, hash, now))
            .await
    }
}

impl MetaStore for SqliteStore {
    async fn get_meta(&self, key: String) -> Result<Option<String>, StoreError> {
        self.readers.run(move |c| read::get_meta(c, key)).await
    }

    async fn init_meta(&self, key: String, value: String) -> Result<String, StoreError> {
        self.writer
            .call(move |tx| ops::init_meta(tx, key, value))
            .await
    }
}

impl MemoryStore for SqliteStore {
    async fn memory_put(
        &self,
        owner: AgentId,
        key: String,
        value: String,
        limits: MemoryLimits,
        now: u64,
    ) -> Result<(), StoreError> {
        self.writer
            .call(move |tx| ops::memory_put(tx, owner, key, value, limits, now))
            .await
    }

    async fn memory_get(
        &self,
        owner: AgentId,
        key: String,
    ) -> Result<Option<MemoryEntry>, StoreError> {
        self.readers
            .run(move |c| read::memory_get(c, owner, key))
            .await
    }

    async fn memory_list(&self, owner: AgentId) -> Result<Vec<MemoryEntry>, StoreError> {
        self.readers.run(move |c| read::memory_list(c, owner)).await
    }

    async fn memory_inherit(
        &self,
        from: AgentId,
        to: AgentId,
        keys: Vec<String>,
        limits: MemoryLimits,
        now: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.writer
            .call(move |tx| ops::memory_inherit(tx, from, to, keys, limits, now))
            .await
    }
}

impl Retention for SqliteStore {
    async fn purge_finished(&self, before_ms: u64, limit: usize) -> Result<u64, StoreError> {
        self.writer
            .call(move |tx| ops::purge_finished(tx, before_ms, limit))
            .await
    }
}

impl Store for SqliteStore {
    type Shared = NotShared;

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn shared(&self) -> Option<&NotShared> {
        None
    }
}

impl crate::RelayStore for SqliteStore {
    async fn relay_put(
        &self,
        msg: crate::RelayedMessage,
        cap: usize,
    ) -> Result<crate::RelayPut, StoreError> {
        self.writer.call(move |tx| relay::put(tx, msg, cap)).await
    }

    async fn relay_pending(
        &self,
        to: AgentId,
        limit: usize,
    ) -> Result<Vec<crate::RelayedMessage>, StoreError> {
        self.readers
            .run(move |c| relay::pending(c, to, limit))
            .await
    }

    async fn relay_remove(&self, to: AgentId, ids: Vec<String>) -> Result<usize, StoreError> {
        self.writer.call(move |tx| relay::remove(tx, to, ids)).await
    }

    async fn relay_take_expired(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<crate::RelayedMessage>, StoreError> {
        self.writer
            .call(move |tx| relay::take_expired(tx, now, limit))
            .await
    }
}

//! The capability traits of `torch-store`, over the operations in `read`,
//! `write`, `leader` and `handoff`.

use std::time::Duration;

use torch_core::{AgentId, Liveness, TaskId};
use torch_store::{
    AgentEvent, Cancelled, ClaimRefused, EventLog, EventRecord, FenceCheck, Finish, FinishResult,
    Grant, Handoff, Leased, LogRecord, MemoryEntry, MemoryLimits, MemoryStore, MetaStore, NewEvent,
    NewTask, Requeued, Retention, SharedStore, Snapshot, Store, StoreError, Submitted, TaskFilter,
    TaskPage, TaskRecord, TaskStore, TokenRecord, TokenStore,
};

use crate::RedisStore;
use crate::{read, tokens, write};

impl TaskStore for RedisStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        read::load(self).await
    }

    async fn submit(&self, batch: Vec<NewTask>, now: u64) -> Result<Vec<Submitted>, StoreError> {
        write::submit(self, batch, now, None).await
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        read::get_task(self, id).await
    }

    async fn get_tasks(&self, ids: Vec<TaskId>) -> Result<Vec<TaskRecord>, StoreError> {
        read::get_tasks(self, ids).await
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<TaskPage, StoreError> {
        read::list_tasks(self, filter).await
    }

    async fn task_logs(&self, id: TaskId) -> Result<Option<LogRecord>, StoreError> {
        read::task_logs(self, id).await
    }

    async fn assign(
        &self,
        grants: Vec<Grant>,
        now: u64,
    ) -> Result<Vec<Result<Leased, ClaimRefused>>, StoreError> {
        write::assign(self, grants, now).await
    }

    async fn start(
        &self,
        held: Vec<(TaskId, u64)>,
        now: u64,
    ) -> Result<Vec<FenceCheck>, StoreError> {
        write::start(self, held, now).await
    }

    async fn finish(
        &self,
        reports: Vec<Finish>,
        now: u64,
    ) -> Result<Vec<FinishResult>, StoreError> {
        write::finish(self, reports, now).await
    }

    async fn expire(
        &self,
        task: TaskId,
        fence: u64,
        reason: String,
        now: u64,
    ) -> Result<FinishResult, StoreError> {
        write::expire(self, task, fence, reason, now).await
    }

    async fn cancel(
        &self,
        task: TaskId,
        reason: String,
        now: u64,
    ) -> Result<Cancelled, StoreError> {
        write::cancel(self, task, reason, now).await
    }

    async fn retry(&self, task: TaskId, now: u64) -> Result<Requeued, StoreError> {
        write::retry(self, task, now).await
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
        write::progress(self, task, fence, percent, message, live, now).await
    }

    async fn lease_holder(&self, task: TaskId) -> Result<Option<(AgentId, u64)>, StoreError> {
        read::lease_holder(self, task).await
    }
}

impl EventLog for RedisStore {
    async fn append_event(&self, event: NewEvent, now: u64) -> Result<(), StoreError> {
        write::append_event(self, event, now).await
    }

    async fn agent_event(&self, event: AgentEvent, now: u64) -> Result<(), StoreError> {
        write::agent_event(self, event, now).await
    }

    async fn events(
        &self,
        after: u64,
        streams: Vec<String>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        read::events(self, after, streams, limit).await
    }

    async fn last_event_id(&self) -> Result<u64, StoreError> {
        read::last_event_id(self).await
    }
}

impl TokenStore for RedisStore {
    async fn put_token(&self, token: TokenRecord) -> Result<(), StoreError> {
        tokens::put_token(self, token).await
    }

    async fn find_token(&self, hash: String) -> Result<Option<TokenRecord>, StoreError> {
        tokens::find_token(self, hash).await
    }

    async fn count_tokens(&self, role: String) -> Result<u64, StoreError> {
        tokens::count_tokens(self, role).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        tokens::list_tokens(self).await
    }

    async fn revoke_token(&self, id: String, now: u64) -> Result<Option<TokenRecord>, StoreError> {
        tokens::revoke_token(self, id, now).await
    }

    async fn touch_token(&self, hash: String, now: u64) -> Result<(), StoreError> {
        tokens::touch_token(self, hash, now).await
    }
}

impl MetaStore for RedisStore {
    async fn get_meta(&self, key: String) -> Result<Option<String>, StoreError> {
        read::get_meta(self, key).await
    }

    async fn init_meta(&self, key: String, value: String) -> Result<String, StoreError> {
        write::init_meta(self, key, value).await
    }
}

impl MemoryStore for RedisStore {
    async fn memory_put(
        &self,
        owner: AgentId,
        key: String,
        value: String,
        limits: MemoryLimits,
        now: u64,
    ) -> Result<(), StoreError> {
        write::memory_put(self, owner, key, value, limits, now).await
    }

    async fn memory_get(
        &self,
        owner: AgentId,
        key: String,
    ) -> Result<Option<MemoryEntry>, StoreError> {
        read::memory_get(self, owner, key).await
    }

    async fn memory_list(&self, owner: AgentId) -> Result<Vec<MemoryEntry>, StoreError> {
        read::memory_list(self, owner).await
    }

    async fn memory_inherit(
        &self,
        from: AgentId,
        to: AgentId,
        keys: Vec<String>,
        limits: MemoryLimits,
        now: u64,
    ) -> Result<Vec<String>, StoreError> {
        write::memory_inherit(self, from, to, keys, limits, now).await
    }
}

impl Retention for RedisStore {
    async fn purge_finished(&self, before_ms: u64, limit: usize) -> Result<u64, StoreError> {
        // The scripts take the caller's clock; the cutoff is all that matters here.
        write::purge_finished(self, before_ms, limit, before_ms).await
    }
}

impl SharedStore for RedisStore {
    async fn acquire_leadership(
        &self,
        hub: String,
        ttl_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        RedisStore::leader_acquire(self, &hub, ttl_ms).await
    }

    async fn renew_leadership(
        &self,
        hub: String,
        fence: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        RedisStore::leader_renew(self, &hub, fence, ttl_ms).await
    }

    async fn release_leadership(&self, hub: String, fence: u64) -> Result<(), StoreError> {
        RedisStore::leader_release(self, &hub, fence)
            .await
            .map(|_| ())
    }

    async fn current_leader(&self) -> Result<Option<(String, u64)>, StoreError> {
        RedisStore::leader_current(self).await
    }

    async fn submit_handoff(
        &self,
        batch: Vec<NewTask>,
        now: u64,
        hub: String,
    ) -> Result<Vec<Submitted>, StoreError> {
        if hub.is_empty() {
            return Err(StoreError::Invalid("a hand-off needs the hub's id".into()));
        }
        write::submit(self, batch, now, Some(&hub)).await
    }

    async fn handoffs(
        &self,
        hub: String,
        reclaim: bool,
        wait: Duration,
    ) -> Result<Vec<Handoff>, StoreError> {
        self.read_handoffs(&hub, reclaim, wait).await
    }

    async fn ack_handoffs(&self, hub: String, ids: Vec<u64>) -> Result<(), StoreError> {
        self.ack_handoff_ids(&hub, &ids).await
    }
}

impl Store for RedisStore {
    type Shared = RedisStore;

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn round_trips(&self) -> Option<u64> {
        Some(RedisStore::round_trips(self))
    }

    fn shared(&self) -> Option<&RedisStore> {
        Some(self)
    }
}

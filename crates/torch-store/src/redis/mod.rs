//! The Redis store: every durable operation of the hub over Redis (or a
//! server speaking its commands: Valkey, Dragonfly), for many hubs on many
//! machines sharing one store.
//!
//! # Atomicity and fencing
//! Every mutating operation is one Lua script (`EVALSHA`, loaded at
//! [`RedisStore::open`] and reloaded by the client after a Redis restart
//! empties the script cache). A script runs alone on the server, so a claim,
//! a fence check and everything they imply (indexes, dependents, events)
//! happen at once. Batches travel whole: one `submit`, `assign`, `start` or
//! `finish` call is one script call, i.e. **one round trip for the whole
//! batch** (see [`RedisStore::round_trips`]).
//!
//! Scripts are declared with a shebang (`#!lua`), which needs Redis 7.0 or
//! newer (Valkey 7.2+; Dragonfly with `--default_lua_flags=allow-undeclared-keys`,
//! as the scripts touch keys they find on the way, such as dependents).
//! Every script checks everything that can make it refuse *before* its first
//! write, so a refusal writes nothing.
//!
//! The per-state sorted sets (`{torch}:state:*`) are written once per script
//! call: a script collects its tasks' moves and ends with one `ZREM` and one
//! `ZADD` per set for the whole batch (in chunks of at most 4000 values),
//! not two commands per task.
//!
//! # Out of memory
//! Run Redis with `maxmemory-policy noeviction`: an evicting policy would
//! silently drop tasks (opening warns about it). When used memory is above
//! `maxmemory`, Redis refuses a writing script *before it starts* (that is
//! what the shebang without `no-writes` declares), so the batch fails as a
//! whole with [`StoreError::Full`] ("redis is out of memory
//! (maxmemory reached)") and nothing of it is written; a script that has
//! started always runs to its end, even if it crosses the limit on the way.
//! Reads keep working. The one exception is the leader lease script
//! (`allow-oom`): it writes a few bytes, and a full Redis must not also take
//! the hubs' leader away.
//!
//! # Persistence
//! Acknowledged writes survive a Redis restart only as far as the server
//! persists them: run it with `appendonly yes` and `appendfsync always` (or
//! `everysec`, losing up to a second on a crash of the machine); opening
//! warns when the append-only file is off. A server that comes back
//! *without* the store's data (no persistence, or flushed) is detected by
//! every writing script (the layout marker `{torch}:version` is gone) and
//! refused with [`StoreError::Corrupt`], instead of silently starting
//! fences and event ids over under a running hub; opening the store again
//! starts an empty one on purpose.
//!
//! # Key layout
//! Every key starts with the hash tag `{<prefix>}` (default `{torch}`), so
//! they all live in one cluster slot and scripts may touch any of them.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{torch}:version` | string | layout version (`2`) |
//! | `{torch}:seq` / `:fence` / `:eid` | string (INCR) | task seq, fence, global event id counters |
//! | `{torch}:t:<task>` | hash | one task (fields below) |
//! | `{torch}:state:<state>` | zset | tasks in that state, score = seq, for `blocked`, `queued`, `succeeded`, `dead`, `cancelled` (listing, counts, the queued set for `load`) |
//! | `{torch}:state:leased` | zset | assigned and running tasks together, score = seq (a start moves nothing) |
//! | `{torch}:running` | string (INCRBY) | how many of the leased tasks are running (assigned = the rest) |
//! | `{torch}:rdeps:<task>` | list | tasks depending on `<task>`, in submission order |
//! | `{torch}:idem` | hash | `<len(tenant)>:<tenant><key>` → task: idempotency keys per tenant |
//! | `{torch}:label:<len(k)>:<k>=<v>` | zset | tasks with label `k=v`, score = seq |
//! | `{torch}:children:<task>` | zset | tasks delegated by `<task>`, score = seq |
//! | `{torch}:log:<task>` | hash | `attempt`, `stdout`, `stderr`, `truncated` |
//! | `{torch}:meta` | hash | metadata |
//! | `{torch}:token:<hash>` / `:tokens:<role>` | hash / set | tokens, and their hashes per role |
//! | `{torch}:agent:<agent>` | hash | agent sessions (`name`, `skills`, `slots`, `labels`, `state`, `joined_ms`, `left_ms`, `reason`) |
//! | `{torch}:mem:<agent>` / `:memmeta:<agent>` | hash / hash | agent memory: key → value; key → `<ms>` or `<ms>:<from agent>` |
//! | `{torch}:streams` | set | names of the streams written so far |
//! | `{torch}:stream:<name>` | stream | the events of stream `<name>`, e.g. `{torch}:stream:nova.torch.tasks.queue` |
//! | `{torch}:stream:nova.torch.hubs.handoff` | stream | hand-offs from followers to the leader: one `tasks.handed_off` entry per submission a follower wrote itself; read by the consumer group `leader` (see [Hand-offs](#hand-offs)) |
//! | `{torch}:leader` / `:leader:fence` | string (PX) / string | the hubs' leader lease `<fence>:<hub id>` (hub id `<url>#<unique suffix>`) and its fence counter |
//!
//! Task hash fields: `seq name st pri ten idem spec sk rt an par deps mr bo`
//! (spec and routing data; `sk` skills JSON, `rt` routing JSON, `an`
//! analysis, `par` parent, `deps` comma-separated, `mr` max retries, `bo`
//! the retry delays in ms), `att ret f ff ag la nb dp` (attempt, retries
//! used, fence, fence of the last recorded attempt end, agent holding the
//! lease, last agent, not-before, pending dependencies; a missing count or
//! fence is zero, so a new task is written without them; the lease expiry
//! is the hub's and is not stored), `pp pm pt` (progress),
//! `out why fa` (outcome JSON, reason, failed agents JSON), `c u` (created,
//! updated), `hd` (set once another task depends on this one) and `xe` (id
//! of the `task.assigned` event holding the current explanation: it is
//! written once, there, as in the SQLite store).
//!
//! `ag` and `why` are not deleted when a task moves on (a finish writes no
//! `HDEL`): readers show the holder only while the task is assigned or
//! running, and the reason only while it is dead or cancelled, exactly as
//! the SQLite store does. A manual retry deletes both.
//!
//! The `finish` script takes five values per report for a plain success
//! (more for a failure or for logs) and answers such a report with the
//! single word `succeeded`.
//!
//! Memory: a finished no-op task costs about 3.6 KB including its stream
//! entries (the hub benchmark's data set, 50,000 tasks, routing on): the
//! task hash about 1.3 KB (spec, routing and analysis JSON), the
//! `task.assigned` entry with its explanation about 1 KB, the other stream
//! entries and set members the rest. The hash is not a
//! listpack, because its spec JSON is longer than Redis's default
//! `hash-max-listpack-value` of 64 bytes. With
//! `hash-max-listpack-value 1024` in the server config the hash stays a
//! listpack and takes less memory, but the scripts get slower (measured
//! with `examples/store_cycles.rs`). One JSON string per task would be
//! about as small as the listpack hash but would make every script decode
//! and re-encode it.
//!
//! # Events and streams
//! Each event gets the next global id from `{torch}:eid` (`INCR`) and is
//! `XADD`ed to `{torch}:stream:<stream name>` with the explicit entry id
//! `0-<global id>`; each stream a script wrote is trimmed once when it ends
//! (`XTRIM … MAXLEN ~ maxlen`, cheaper than trimming on every `XADD`).
//! Entry fields: `kind`, `at` (unix
//! ms), `data` (JSON text), and `task` / `agent` when set; a
//! `task.assigned` entry with an explanation carries it in its own field,
//! `explanation` (JSON), which [`Store::events`] puts back into `data` as
//! `"explanation"`, so API readers see the same data as on SQLite (entries
//! written before that field existed have it inside `data` already). Entry ids thus
//! increase across all streams alike, and [`Store::events`] merges the
//! streams by id. An outside reader follows a stream with
//! `XREAD BLOCK 0 STREAMS {torch}:stream:nova.torch.tasks.completed $`
//! (or from `0-<last id seen>`), or with a consumer group (`XREADGROUP`);
//! [`RedisStore::consumer`] wraps the latter with reclaiming. Only torch
//! may write to these streams: an entry with a larger id added by someone
//! else would make torch's next `XADD` there fail. The group name `leader`
//! on `nova.torch.hubs.handoff` belongs to the hubs: an outside reader must
//! not use it there.
//!
//! Streams are bounded (approximately) by [`RedisOptions::maxlen`], so
//! unlike SQLite old events go away: [`Store::events`] returns what is still
//! kept, and an explanation whose `task.assigned` event was trimmed from
//! `nova.torch.tasks.active` is no longer returned by `get_task`.
//!
//! # Hand-offs
//! A follower that cannot reach the leader (none elected, or the
//! connection to its URL fails) writes a submission itself with
//! [`Store::submit_handoff`]. The submit script then appends, atomically
//! with the tasks, one entry to `nova.torch.hubs.handoff`: `kind`
//! `tasks.handed_off`, `data`
//! `{"hub": "<follower hub id>", "tasks": ["<id>", ...]}`, listing only new
//! tasks (duplicates by idempotency key are not handed off; a batch of
//! duplicates writes no entry). The stream is listed in `{torch}:streams`
//! like any other, so [`Store::events`] returns its entries too.
//!
//! The leader reads the stream through the consumer group `leader`, as the
//! consumer named by its hub id (`XREADGROUP`, blocking up to the wait it
//! is given; the hub uses 500 ms), reads the listed tasks in one script
//! call, enqueues them, and only then `XACK`s the entry. The group is made
//! from the start of the stream the first time (an existing group keeps
//! its position). A hub that becomes leader first claims every entry an
//! earlier leader received and never acknowledged (`XAUTOCLAIM`, no
//! minimum idle time: that leader is gone), then removes the group's other
//! consumers that hold nothing (`XGROUP DELCONSUMER`). See `handoff.rs`.
//!
//! The leader does not read `nova.torch.tasks.queue` to find these tasks:
//! it learns of its own submissions directly, and reading every entry of
//! the busiest stream to find the rare follower-written ones would add
//! Redis work to every task.
//!
//! # Retention
//! Finished tasks stay until [`Store::purge_finished`] deletes them
//! (`scripts/purge.lua`, run by the leader under `[store] retention`): it
//! walks the `succeeded`, `dead` and `cancelled` sets from their oldest
//! submissions, looking at no more than four times its limit per call, and
//! deletes each task older than the cutoff with its log, its `rdeps` list,
//! its label and parent index entries and its idempotency key. A purged
//! parent's `children:<id>` set stays until its children go, so children
//! are still listed under the parent's id, as in SQLite.
//!
//! # Limits
//! As in SQLite: `list_tasks` returns at most 1000 tasks (100 when the
//! filter's limit is 0); `events` at most 10,000 (1000 when `limit` is 0).
//! `load` reads every queued and leased task in one script call, and
//! `get_tasks` any number of tasks in one call.
//!
//! # Connections
//! One auto-reconnecting multiplexed connection ([`redis::aio::ConnectionManager`])
//! with a response timeout of [`RedisOptions::response_timeout`] (10 s by
//! default, not the client's 500 ms, so that large batches are not cut
//! off). A call that fails because Redis went away returns
//! [`StoreError::Unavailable`] and the connection is re-established in the
//! background; later calls work again once Redis is back, without reopening
//! the store. Stream consumers get their own connection (a blocking read
//! would hold up everything else on a shared one).
//!
//! As with any remote store, a write that fails with
//! [`StoreError::Unavailable`] *after* it was sent (connection lost or
//! response timeout) may or may not have been applied; the script ran
//! entirely or not at all. Resending is safe for `finish` and `expire`
//! (`Duplicate`), `start` (`Ok`), `progress`, `cancel` (`Conflict` once
//! cancelled) and for submissions with idempotency keys; a resent `submit`
//! without keys whose first try did apply is refused as invalid (its ids
//! exist), and a resent `assign` is refused (the task is already assigned,
//! its lease runs out and the task is retried).

mod consumer;
mod handoff;
mod keys;
mod leader;
mod read;
mod scripts;
#[cfg(feature = "testing")]
pub mod testing;
mod value;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, Value};
use torch_core::{AgentId, TaskId};
use tracing::{info, warn};

use crate::{
    AgentEvent, Cancelled, ClaimRefused, EventRecord, FenceCheck, Finish, FinishResult, Grant,
    Handoff, Leased, LogRecord, MemoryEntry, MemoryLimits, NewEvent, NewTask, Requeued, Snapshot,
    Store, StoreError, Submitted, TaskFilter, TaskPage, TaskRecord, TokenRecord,
};
use crate::{EventLog, MemoryStore, MetaStore, Retention, SharedStore, TaskStore, TokenStore};
pub use consumer::{StartFrom, StreamConsumer};
use keys::Keys;
use value::map_err;

/// Version of the key layout this build writes (`{prefix}:version`).
const LAYOUT_VERSION: &str = "2";

/// Tuning for [`RedisStore::open`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Approximate bound on each event stream (`XTRIM … MAXLEN ~ maxlen`
    /// after each writing script).
    pub maxlen: u64,
    /// Key prefix; every key is `{<prefix>}:…` (one hash slot). Two stores
    /// with different prefixes share a server without seeing each other.
    pub key_prefix: String,
    /// How long one command may take before it fails as unavailable.
    pub response_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// For `rediss://`: PEM certificate(s) of the CA to trust instead of
    /// the system's roots (e.g. a self-signed dev CA).
    pub tls_root_ca_pem: Option<Vec<u8>>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            maxlen: 100_000,
            key_prefix: "torch".into(),
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            tls_root_ca_pem: None,
        }
    }
}

/// The Redis [`Store`]. See the module docs for the layout and guarantees.
///
/// Cheap to share behind an `Arc`; any number of stores (in one process or
/// on many machines) may use the same server and prefix at once.
pub struct RedisStore {
    client: Client,
    conn: ConnectionManager,
    keys: Keys,
    opts: RedisOptions,
    /// The server, without credentials, for messages.
    target: String,
    trips: AtomicU64,
    /// The leader's consumer of the hand-off stream (see `handoff.rs`).
    handoff: tokio::sync::Mutex<Option<StreamConsumer>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.opts.key_prefix)
            .finish()
    }
}

/// `url` without its password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Makes sure rustls has a process-wide crypto provider (ring, the one this
/// crate builds) unless the program installed one already.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, `rediss://…` for TLS,
    /// with `user:password@` if needed), checks the server (Redis 7 or
    /// newer) and the key layout version, and loads the scripts.
    ///
    /// Fails with [`StoreError::Unavailable`] when the server cannot be
    /// reached, [`StoreError::Invalid`] for a bad URL or options, and
    /// [`StoreError::Corrupt`] when the prefix holds data of a newer layout.
    pub async fn open(url: &str, opts: RedisOptions) -> Result<RedisStore, StoreError> {
        let target = redact(url);
        if opts.key_prefix.is_empty() || opts.key_prefix.contains(['{', '}']) {
            return Err(StoreError::Invalid(format!(
                "redis key prefix {:?} must be non-empty and without braces",
                opts.key_prefix
            )));
        }
        if opts.maxlen == 0 {
            return Err(StoreError::Invalid(
                "redis stream maxlen must be at least 1".into(),
            ));
        }
        let tls = url.starts_with("rediss://") || url.starts_with("valkeys://");
        if tls {
            ensure_crypto_provider();
        }
        let client = match (&opts.tls_root_ca_pem, tls) {
            (Some(ca), true) => Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            _ => Client::open(url),
        }
        .map_err(|e| StoreError::Invalid(format!("bad redis URL {target}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(opts.response_timeout))
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_number_of_retries(4)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {target}: {e}")))?;
        let store = RedisStore {
            client,
            conn,
            keys: Keys::new(&opts.key_prefix),
            opts,
            target,
            trips: AtomicU64::new(0),
            handoff: tokio::sync::Mutex::new(None),
        };
        store.check_server().await?;
        info!(target = %store.target, prefix = %store.opts.key_prefix, "redis store opened");
        Ok(store)
    }

    /// Version and layout checks, warnings about settings that lose data,
    /// and script loading: one pipelined round trip (plus one for the
    /// eviction policy, which managed services may refuse to tell).
    async fn check_server(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("INFO").arg("server");
        pipe.cmd("INFO").arg("persistence");
        pipe.cmd("SET")
            .arg(self.keys.version())
            .arg(LAYOUT_VERSION)
            .arg("NX")
            .ignore();
        pipe.cmd("GET").arg(self.keys.version());
        for src in scripts::sources() {
            pipe.cmd("SCRIPT").arg("LOAD").arg(src).ignore();
        }
        let mut conn = self.conn.clone();
        let (server, persistence, version): (String, String, Option<String>) = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("checking the server", e))?;
        let field = |info: &str, name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        let server_version = field(&server, "redis_version").unwrap_or_default();
        let major: u32 = server_version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(StoreError::Unavailable(format!(
                "{} runs redis {server_version:?}; the store needs 7.0 or newer (script flags)",
                self.target
            )));
        }
        match version.as_deref() {
            Some(LAYOUT_VERSION) => {}
            other => {
                return Err(StoreError::Corrupt(format!(
                    "keys under {{{}}} on {} have layout version {other:?}; this build \
                     reads version {LAYOUT_VERSION}",
                    self.opts.key_prefix, self.target
                )));
            }
        }
        if field(&persistence, "aof_enabled").as_deref() == Some("0") {
            warn!(
                target = %self.target,
                "redis has no append-only file: acknowledged writes are lost if redis restarts \
                 (use appendonly yes, appendfsync always or everysec)"
            );
        }
        let policy: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        if let Ok(policy) = policy
            && let Some(p) = policy.get(1)
            && p != "noeviction"
        {
            warn!(
                target = %self.target,
                policy = %p,
                "redis may evict keys when full, which would lose tasks; \
                 use maxmemory-policy noeviction"
            );
        }
        Ok(())
    }

    fn unavailable(&self, doing: &str, e: redis::RedisError) -> StoreError {
        match map_err(e) {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("{doing} on {}: {m}", self.target))
            }
            other => other,
        }
    }

    /// Requests sent to Redis so far (script calls, commands and pipelines,
    /// each one round trip), for measuring.
    pub fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// The connection for one request.
    fn conn(&self) -> ConnectionManager {
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.conn.clone()
    }

    /// Runs a writing script with the common arguments (prefix, `now`,
    /// maxlen) followed by `args`.
    async fn eval(&self, script: &Script, now: u64, args: &[String]) -> Result<Value, StoreError> {
        let mut inv = script.key(self.keys.fence());
        inv.arg(&self.keys.tag).arg(now).arg(self.opts.maxlen);
        for a in args {
            inv.arg(a.as_str());
        }
        let mut conn = self.conn();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("writing", e))
    }

    /// Runs the read-only script (`read.lua`): operation `op` with `args`.
    async fn read_script(&self, op: &str, args: &[String]) -> Result<Value, StoreError> {
        let mut inv = scripts::SCRIPTS.read.key(self.keys.fence());
        inv.arg(&self.keys.tag).arg(op);
        for a in args {
            inv.arg(a.as_str());
        }
        let mut conn = self.conn();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("reading", e))
    }

    /// Sends one command.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn();
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("reading", e))
    }
}

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

    async fn progress(
        &self,
        task: TaskId,
        fence: u64,
        percent: f64,
        message: Option<String>,
        now: u64,
    ) -> Result<FenceCheck, StoreError> {
        write::progress(self, task, fence, percent, message, now).await
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
        write::put_token(self, token).await
    }

    async fn find_token(&self, hash: String) -> Result<Option<TokenRecord>, StoreError> {
        read::find_token(self, hash).await
    }

    async fn count_tokens(&self, role: String) -> Result<u64, StoreError> {
        read::count_tokens(self, role).await
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

//! Nova Torch's Redis store: [`RedisStore`], every durable operation of the
//! hub over Redis (or a server speaking its commands: Valkey, Dragonfly), for
//! many hubs on many machines sharing one store.
//!
//! It implements every capability trait of `torch-store`, including
//! [`SharedStore`] (the leader lease and hand-offs between hubs), which the
//! embedded store does not have. Values stored in it are encoded and parsed
//! with [`torch_store::codec`], as in the embedded store. Beyond the traits
//! it offers consumer groups over the event streams
//! ([`RedisStore::consumer`]) and, with the `testing` feature, a throwaway
//! `redis-server` for tests (`testing`).
//!
//! # Layout
//! - `store`: [`RedisOptions`], [`RedisStore::open`] (server and layout
//!   checks, script loading) and the connection every request uses.
//! - `impls`: the `torch-store` traits, over the operations below.
//! - `write` / `read`: arguments for the scripts and decoding of their
//!   replies; `value`: reply decoding and error mapping.
//! - `scripts` and `scripts/*.lua`: the Lua scripts.
//! - `leader`, `handoff`, `consumer`: the leader lease, hand-offs and
//!   consumer groups; `keys`: key names.
//!
//! The conformance suite of `torch-store` (feature `conformance`) runs on
//! this store in `tests/conformance.rs`, with the Redis-only cases in
//! `tests/redis_only`.
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
//! | `{torch}:token:<hash>` | hash | a token: `role`, `name`, `created`, and when set `tenant`, `expires`, `revoked`, `used` (ms) |
//! | `{torch}:tokens` / `:tokens:<role>` | set / set | the hashes of every token, and of the tokens of each role |
//! | `{torch}:agent:<agent>` | hash | agent sessions (`name`, `skills`, `slots`, `labels`, `state`, `joined_ms`, `left_ms`, `reason`) |
//! | `{torch}:mem:<agent>` / `:memmeta:<agent>` | hash / hash | agent memory: key → value; key → `<ms>` or `<ms>:<from agent>` |
//! | `{torch}:relay:m` / `:relay:meta` | hash / hash | relayed messages: id → signed envelope; id → to, from, urgent, expiry (tab-separated) |
//! | `{torch}:relay:to:<agent>` / `:relay:exp` / `:relay:seq` | zset / zset / string | a recipient's relayed ids, urgent first then in order; every id by expiry; the order counter |
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
//! is the hub's and is not stored), `pp pm pt` (progress), `pl` (the agent CLI's activity and waiting, JSON),
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
//! `explanation` (JSON), which [`EventLog::events`] puts back into `data` as
//! `"explanation"`, so API readers see the same data as on SQLite (entries
//! written before that field existed have it inside `data` already). Entry ids thus
//! increase across all streams alike, and [`EventLog::events`] merges the
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
//! unlike SQLite old events go away: [`EventLog::events`] returns what is still
//! kept, and an explanation whose `task.assigned` event was trimmed from
//! `nova.torch.tasks.active` is no longer returned by `get_task`.
//!
//! # Hand-offs
//! A follower that cannot reach the leader (none elected, or the
//! connection to its URL fails) writes a submission itself with
//! [`SharedStore::submit_handoff`]. The submit script then appends, atomically
//! with the tasks, one entry to `nova.torch.hubs.handoff`: `kind`
//! `tasks.handed_off`, `data`
//! `{"hub": "<follower hub id>", "tasks": ["<id>", ...]}`, listing only new
//! tasks (duplicates by idempotency key are not handed off; a batch of
//! duplicates writes no entry). The stream is listed in `{torch}:streams`
//! like any other, so [`EventLog::events`] returns its entries too.
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
//! Finished tasks stay until [`Retention::purge_finished`] deletes them
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
//!
//! [`SharedStore`]: torch_store::SharedStore
//! [`StoreError::Full`]: torch_store::StoreError::Full
//! [`StoreError::Corrupt`]: torch_store::StoreError::Corrupt
//! [`EventLog::events`]: torch_store::EventLog::events
//! [`SharedStore::submit_handoff`]: torch_store::SharedStore::submit_handoff
//! [`Retention::purge_finished`]: torch_store::Retention::purge_finished
//! [`StoreError::Unavailable`]: torch_store::StoreError::Unavailable

mod audit;
mod consumer;
mod coord;
mod handoff;
mod impls;
mod keys;
mod leader;
mod read;
mod relay;
mod scripts;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod value;
mod write;

pub use consumer::{StartFrom, StreamConsumer};
pub use store::{RedisOptions, RedisStore};

//! Consumer groups over the event streams, for hub-internal consumers that
//! must see every event at least once even if a consumer dies: each event
//! is delivered to one consumer of the group, stays pending until acked,
//! and a pending event whose consumer went quiet is reclaimed by another
//! (`XAUTOCLAIM`).
//!
//! ```no_run
//! # async fn demo(store: &torch_store_redis::RedisStore) -> Result<(), torch_store::StoreError> {
//! use std::time::Duration;
//! use torch_store_redis::StartFrom;
//! let mut c = store
//!     .consumer("alerts", "hub-1", &[torch_store::TASKS_FAILED], StartFrom::New)
//!     .await?;
//! loop {
//!     // First whatever a dead consumer left pending for 30 s, then new events.
//!     let mut events = c.reclaim(Duration::from_secs(30), 100).await?;
//!     events.extend(c.read(100, Some(Duration::from_secs(5))).await?);
//!     for e in &events { /* handle e */ }
//!     c.ack(&events).await?;
//! }
//! # }
//! ```

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use torch_store::{EventRecord, StoreError};

use crate::RedisStore;
use crate::keys::Keys;
use crate::read::event;
use crate::value::{array, map_err, text, tuple, uint};

/// Where a consumer group that does not exist yet starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// With the oldest event still kept in each stream.
    Beginning,
    /// With the next event appended.
    New,
}

/// One consumer of a consumer group over some event streams, on its own
/// connection (blocking reads would hold up a shared one). Reconnects on
/// the next call after a connection error.
pub struct StreamConsumer {
    client: Client,
    conn: Option<MultiplexedConnection>,
    keys: Keys,
    group: String,
    name: String,
    /// Stream names (not keys).
    streams: Vec<String>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for StreamConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConsumer")
            .field("group", &self.group)
            .field("name", &self.name)
            .field("streams", &self.streams)
            .finish()
    }
}

impl RedisStore {
    /// A consumer named `consumer` in group `group` over `streams` (stream
    /// names such as [`torch_store::TASKS_COMPLETED`]). Creates the group on each
    /// stream if needed (starting as `start` says; an existing group keeps
    /// its position). Consumers of one group share the work; each group
    /// sees every event.
    pub async fn consumer(
        &self,
        group: &str,
        consumer: &str,
        streams: &[&str],
        start: StartFrom,
    ) -> Result<StreamConsumer, StoreError> {
        if group.is_empty() || consumer.is_empty() || streams.is_empty() {
            return Err(StoreError::Invalid(
                "a stream consumer needs a group, a name and at least one stream".into(),
            ));
        }
        let mut c = StreamConsumer {
            client: self.client.clone(),
            conn: None,
            keys: self.keys.clone(),
            group: group.to_owned(),
            name: consumer.to_owned(),
            streams: streams.iter().map(|s| (*s).to_owned()).collect(),
            connect_timeout: self.opts.connect_timeout,
        };
        let from = match start {
            StartFrom::Beginning => "0",
            StartFrom::New => "$",
        };
        for stream in &c.streams.clone() {
            let mut cmd = redis::cmd("XGROUP");
            cmd.arg("CREATE")
                .arg(c.keys.stream(stream))
                .arg(group)
                .arg(from)
                .arg("MKSTREAM");
            match c.send::<Value>(&cmd).await {
                Ok(_) => {}
                Err(StoreError::Unavailable(m) | StoreError::Corrupt(m))
                    if m.contains("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }
}

impl StreamConsumer {
    /// Sends a command on this consumer's connection.
    pub(crate) async fn send<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                // No response timeout: reads block as long as asked.
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(None);
                let c = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(map_err)?;
                self.conn.insert(c)
            }
        };
        match cmd.query_async(conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_unrecoverable_error() {
                    self.conn = None;
                }
                Err(map_err(e))
            }
        }
    }

    /// This consumer's name in its group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream name of key `key`.
    fn name_of(&self, key: &str) -> Result<String, StoreError> {
        self.keys
            .stream_name(key)
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Corrupt(format!("reply names unknown stream key {key}")))
    }

    /// Up to `count` new events per stream for this consumer, waiting up to
    /// `block` for the first (`None`: do not wait). They stay pending for
    /// this consumer until [`StreamConsumer::ack`]ed.
    pub async fn read(
        &mut self,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(count.max(1));
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS");
        for s in &self.streams {
            cmd.arg(self.keys.stream(s));
        }
        for _ in &self.streams {
            cmd.arg(">");
        }
        let reply: Value = self.send(&cmd).await?;
        let mut out = Vec::new();
        for per_stream in array("XREADGROUP", reply)? {
            let [key, entries] = tuple("XREADGROUP stream", per_stream)?;
            let name = self.name_of(&text("stream key", key)?)?;
            for e in array("entries", entries)? {
                out.push(event(&name, e)?);
            }
        }
        out.sort_unstable_by_key(|e| e.id);
        Ok(out)
    }

    /// Marks events handled by id, on the consumer's only stream (for a
    /// consumer of one stream). Returns how many were pending.
    pub async fn ack_ids(&mut self, ids: &[u64]) -> Result<u64, StoreError> {
        let [stream] = self.streams.as_slice() else {
            return Err(StoreError::Invalid(
                "acknowledging by id needs a consumer of exactly one stream".into(),
            ));
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(self.keys.stream(stream)).arg(&self.group);
        for id in ids {
            cmd.arg(format!("0-{id}"));
        }
        self.send(&cmd).await
    }

    /// Marks events handled (each removed from the group's pending list).
    /// Returns how many were pending.
    pub async fn ack(&mut self, events: &[EventRecord]) -> Result<u64, StoreError> {
        let mut acked = 0;
        for stream in self.streams.clone() {
            let ids: Vec<String> = events
                .iter()
                .filter(|e| e.stream == stream)
                .map(|e| format!("0-{}", e.id))
                .collect();
            if ids.is_empty() {
                continue;
            }
            let mut cmd = redis::cmd("XACK");
            cmd.arg(self.keys.stream(&stream)).arg(&self.group).arg(ids);
            acked += self.send::<u64>(&cmd).await?;
        }
        Ok(acked)
    }

    /// Takes over up to `count` events (per stream) that some consumer of
    /// the group received but has not acked for at least `min_idle`: a
    /// consumer that died. They become pending for this consumer. Events
    /// trimmed from the stream meanwhile are dropped from the pending list.
    pub async fn reclaim(
        &mut self,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut out = Vec::new();
        for stream in self.streams.clone() {
            let key = self.keys.stream(&stream);
            let mut cursor = "0-0".to_owned();
            let mut taken = 0;
            loop {
                let mut cmd = redis::cmd("XAUTOCLAIM");
                cmd.arg(&key)
                    .arg(&self.group)
                    .arg(&self.name)
                    .arg(min_idle.as_millis() as u64)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg((count - taken).max(1));
                let reply: Value = self.send(&cmd).await?;
                let [next, entries, _deleted] = tuple("XAUTOCLAIM", reply)?;
                for e in array("entries", entries)? {
                    // Entries deleted meanwhile come back without fields.
                    if let Value::Array(parts) = &e
                        && parts.get(1).is_none_or(|f| matches!(f, Value::Nil))
                    {
                        continue;
                    }
                    out.push(event(&stream, e)?);
                    taken += 1;
                }
                cursor = text("cursor", next)?;
                if cursor == "0-0" || taken >= count {
                    break;
                }
            }
        }
        out.sort_unstable_by_key(|e| e.id);
        Ok(out)
    }

    /// Number of events delivered to the group's consumers and not acked yet.
    pub async fn pending(&mut self) -> Result<u64, StoreError> {
        let mut total = 0;
        for stream in self.streams.clone() {
            let mut cmd = redis::cmd("XPENDING");
            cmd.arg(self.keys.stream(&stream)).arg(&self.group);
            let reply: Value = self.send(&cmd).await?;
            let [n, _, _, _] = tuple("XPENDING", reply)?;
            total += uint("pending", n)?;
        }
        Ok(total)
    }
}

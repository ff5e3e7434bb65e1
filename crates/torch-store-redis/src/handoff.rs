//! Hand-offs from followers to the leader, read through a consumer group.
//!
//! A follower that cannot reach the leader writes a submission itself
//! (`SharedStore::submit_handoff`); the submit script then appends one
//! `tasks.handed_off` entry to `nova.torch.hubs.handoff` with the new task
//! ids, atomically with the tasks. The leader reads that stream as consumer
//! `<its hub id>` of the group `leader`: an entry stays pending until the
//! leader has enqueued its tasks and acknowledges it. A new leader first
//! claims (`XAUTOCLAIM`, no minimum idle time: the old leader is gone)
//! whatever its predecessors left pending, and removes their consumers once
//! they hold nothing.
//!
//! The leader does not read `nova.torch.tasks.queue` itself: it learns of
//! its own submissions directly, and reading every entry of the busiest
//! stream to find the rare follower-written ones would cost Redis work on
//! every task.

use std::time::Duration;

use redis::Value;
use torch_core::events::payload::TasksHandedOff;
use torch_store::{EventRecord, HUBS_HANDOFF, Handoff, StoreError};
use tracing::{info, warn};

use crate::RedisStore;
use crate::consumer::{StartFrom, StreamConsumer};
use crate::value::{array, text, tuple, uint};

/// The consumer group of the leaders on [`HUBS_HANDOFF`].
pub(crate) const GROUP: &str = "leader";

/// Most hand-offs read at once.
const BATCH: usize = 64;

fn handoff(e: &EventRecord) -> Result<Handoff, StoreError> {
    let d: TasksHandedOff = serde_json::from_str(&e.data)
        .map_err(|err| StoreError::Corrupt(format!("hand-off {} has bad data: {err}", e.id)))?;
    Ok(Handoff {
        id: e.id,
        hub: d.hub,
        tasks: d.tasks,
    })
}

impl RedisStore {
    /// This hub's consumer of the hand-off stream (made on first use, or
    /// again when `hub` changes).
    async fn handoff_consumer<'a>(
        &self,
        slot: &'a mut Option<StreamConsumer>,
        hub: &str,
    ) -> Result<&'a mut StreamConsumer, StoreError> {
        if slot.as_ref().is_some_and(|c| c.name() != hub) {
            *slot = None;
        }
        if slot.is_none() {
            // From the beginning the first time the group is made: entries
            // written before any leader read them are still handled.
            let c = self
                .consumer(GROUP, hub, &[HUBS_HANDOFF], StartFrom::Beginning)
                .await?;
            *slot = Some(c);
        }
        slot.as_mut()
            .ok_or_else(|| StoreError::Unavailable("hand-off consumer not ready".into()))
    }

    /// See [`SharedStore::handoffs`](torch_store::SharedStore::handoffs).
    pub(super) async fn read_handoffs(
        &self,
        hub: &str,
        reclaim: bool,
        wait: Duration,
    ) -> Result<Vec<Handoff>, StoreError> {
        let mut slot = self.handoff.lock().await;
        let c = self.handoff_consumer(&mut slot, hub).await?;
        let mut events = Vec::new();
        if reclaim {
            events = c.reclaim(Duration::ZERO, BATCH).await?;
            if !events.is_empty() {
                info!(
                    count = events.len(),
                    "claimed hand-offs an earlier leader left unacknowledged"
                );
            }
            if let Err(e) = forget_idle_leaders(c, &self.keys.stream(HUBS_HANDOFF)).await {
                warn!(error = %e, "could not remove earlier leaders from the hand-off group");
            }
        }
        if events.is_empty() {
            let block = (!wait.is_zero()).then_some(wait);
            events = c.read(BATCH, block).await?;
        }
        let mut out = Vec::with_capacity(events.len());
        for e in &events {
            match handoff(e) {
                Ok(h) => out.push(h),
                Err(err) => {
                    // Not ours to act on: acknowledge it so it is not
                    // delivered forever, and say so.
                    warn!(error = %err, "skipping a malformed hand-off");
                    c.ack(std::slice::from_ref(e)).await?;
                }
            }
        }
        Ok(out)
    }

    /// See [`SharedStore::ack_handoffs`](torch_store::SharedStore::ack_handoffs).
    pub(super) async fn ack_handoff_ids(&self, hub: &str, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut slot = self.handoff.lock().await;
        let c = self.handoff_consumer(&mut slot, hub).await?;
        c.ack_ids(ids).await?;
        Ok(())
    }
}

/// Removes the group's other consumers that hold nothing pending (earlier
/// leaders, after their entries were claimed), so the group does not
/// collect one consumer per hub start.
async fn forget_idle_leaders(c: &mut StreamConsumer, key: &str) -> Result<(), StoreError> {
    let mut cmd = redis::cmd("XINFO");
    cmd.arg("CONSUMERS").arg(key).arg(GROUP);
    let reply: Value = c.send(&cmd).await?;
    for consumer in array("XINFO CONSUMERS", reply)? {
        let [_, name, _, pending] = tuple("consumer", consumer)?;
        let name = text("consumer name", name)?;
        if name != c.name() && uint("pending", pending)? == 0 {
            let mut del = redis::cmd("XGROUP");
            del.arg("DELCONSUMER").arg(key).arg(GROUP).arg(&name);
            let _: Value = c.send(&del).await?;
        }
    }
    Ok(())
}

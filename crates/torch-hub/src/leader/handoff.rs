//! Hand-offs: submissions a follower wrote itself while it could not reach
//! the leader, read by the leader through the store's consumer group.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use torch_store::{SharedStore, Store};
use tracing::{info, warn};

use crate::engine::Command;
use crate::hub::Shared;

/// How long one read of the hand-off stream waits for an entry.
const HANDOFF_WAIT: Duration = Duration::from_millis(500);

/// While this hub leads: schedules the tasks other hubs hand off (they
/// wrote a submission themselves because they could not reach this hub),
/// reading them through the store's consumer group. Each hand-off is
/// acknowledged only once its tasks are in the engine, so one that a
/// leader received and did not finish handling (it died) is claimed by the
/// next leader when it takes over.
pub(super) async fn run<S: Store>(
    shared: Arc<Shared<S>>,
    hub: String,
    shutdown: CancellationToken,
) {
    let Some(store) = shared.store.shared() else {
        return;
    };
    let mut role = shared.cluster.role.subscribe();
    loop {
        // Wait to lead.
        while !shared.is_leader() {
            tokio::select! {
                r = role.changed() => if r.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
        }
        let mut reclaim = true;
        while shared.is_leader() && !shutdown.is_cancelled() {
            let read = tokio::select! {
                r = store.handoffs(hub.clone(), reclaim, HANDOFF_WAIT) => r,
                _ = shutdown.cancelled() => return,
            };
            let batch = match read {
                Ok(b) => {
                    reclaim = false;
                    b
                }
                Err(e) => {
                    warn!(error = %e, "cannot read hand-offs from other hubs; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = take_handoffs(&shared, store, &hub, batch).await {
                warn!(error = %e, "hand-offs not handled yet; retrying");
                reclaim = true;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Enqueues the queued tasks of `batch` (blocked ones are released by
/// their dependencies as usual) and acknowledges the hand-offs.
async fn take_handoffs<S: Store>(
    shared: &Shared<S>,
    store: &S::Shared,
    hub: &str,
    batch: Vec<torch_store::Handoff>,
) -> Result<(), torch_store::StoreError> {
    let ids: Vec<torch_core::TaskId> = batch.iter().flat_map(|h| h.tasks.iter().copied()).collect();
    let records = shared.store.get_tasks(ids).await?;
    // Delegated tasks (from inside a running task): their parent's end
    // cleans them up here too, as for a delegation made through this hub.
    for parent in records.iter().filter_map(|r| r.parent) {
        shared
            .life
            .send(crate::lifecycle::LifeCmd::Parent { task: parent })
            .await;
    }
    let queued: Vec<torch_core::scheduler::QueuedTask> = records
        .iter()
        .filter(|r| r.state == torch_core::TaskState::Queued)
        .map(crate::engine::queued_of)
        .collect();
    let taken = shared
        .engine
        .call(|reply| Command::Handoff {
            tasks: queued,
            reply,
        })
        .await;
    let Some(taken) = taken else {
        return Err(torch_store::StoreError::Unavailable(
            "the engine stopped".into(),
        ));
    };
    for h in &batch {
        info!(from = %h.hub, tasks = h.tasks.len(), handoff = h.id, "tasks handed off by another hub");
    }
    if taken > 0 {
        shared.bump();
    }
    let acked: Vec<u64> = batch.iter().map(|h| h.id).collect();
    store.ack_handoffs(hub.to_owned(), acked).await
}

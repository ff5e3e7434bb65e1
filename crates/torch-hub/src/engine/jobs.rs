//! The store writes the engine needs, run as tracked tasks so the engine's
//! loop never waits on the store. Each job sends its result back on the
//! engine's job channel (bounded: a job waits for room; the engine never
//! sends on it). Jobs are joined when the engine stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use torch_core::events::payload::TaskStalled;
use torch_core::scheduler::QueuedTask;
use torch_core::{AgentId, EventData, TaskId, TaskState};
use torch_store::{ClaimRefused, FinishResult, Grant, Leased, NewEvent, Store, StoreError};
use tracing::{debug, warn};

use super::queued_of;

/// Job results waiting for the engine, at most.
const RESULTS: usize = 1024;

/// A store job's result, for the engine.
// Results are moved once through a channel; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
pub(super) enum JobDone {
    /// An assign job: the (task, agent) pairs it was for, and the store's answer.
    Granted {
        grants: Vec<(TaskId, AgentId)>,
        results: Result<Vec<Result<Leased, ClaimRefused>>, StoreError>,
    },
    /// An expire job.
    Expired {
        task: TaskId,
        agent: AgentId,
        result: Result<FinishResult, StoreError>,
    },
    /// Tasks re-read from the store that are queued there.
    Requeue(Vec<QueuedTask>),
    /// Leases re-read from the store that the engine should track:
    /// (task, agent, fence).
    Adopt(Vec<(TaskId, AgentId, u64)>),
}

/// Starts store jobs for the engine (see the module docs).
pub(super) struct Jobs<S> {
    store: Arc<S>,
    done: mpsc::Sender<JobDone>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl<S: Store> Jobs<S> {
    /// Jobs over `store`, and the receiving end of their results.
    pub(super) fn new(
        store: Arc<S>,
        shutdown: CancellationToken,
    ) -> (Jobs<S>, mpsc::Receiver<JobDone>) {
        let (done, rx) = mpsc::channel(RESULTS);
        let jobs = Jobs {
            store,
            done,
            tracker: TaskTracker::new(),
            shutdown,
        };
        (jobs, rx)
    }

    /// Waits for the jobs in flight.
    pub(super) async fn close(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Writes `grants` (one store call).
    pub(super) fn assign(&self, grants: Vec<Grant>, now: u64) {
        let (store, done) = (self.store.clone(), self.done.clone());
        let pairs: Vec<(TaskId, AgentId)> = grants.iter().map(|g| (g.task, g.agent)).collect();
        self.tracker.spawn(async move {
            let results = store.assign(grants, now).await;
            let _ = done
                .send(JobDone::Granted {
                    grants: pairs,
                    results,
                })
                .await;
        });
    }

    /// Ends an attempt whose lease ran out.
    pub(super) fn expire(
        &self,
        task: TaskId,
        agent: AgentId,
        fence: u64,
        reason: String,
        now: u64,
    ) {
        let (store, done) = (self.store.clone(), self.done.clone());
        self.tracker
            .spawn(expire(store, done, task, agent, fence, reason, now));
    }

    /// Records a `task.stalled` event; with `requeue` (a reason) also ends
    /// the attempt.
    pub(super) fn stalled(
        &self,
        task: TaskId,
        agent: AgentId,
        fence: u64,
        stall_ms: u64,
        requeue: Option<String>,
        now: u64,
    ) {
        let (store, done) = (self.store.clone(), self.done.clone());
        self.tracker.spawn(async move {
            let stalled = EventData::TaskStalled(TaskStalled {
                fence,
                requeue: requeue.is_some(),
                stall_ms,
            });
            let appended = match NewEvent::of(&stalled, Some(task), Some(agent)) {
                Ok(ev) => store.append_event(ev, now).await,
                Err(e) => Err(e),
            };
            if let Err(e) = appended {
                debug!(error = %e, "could not record a stall event");
            }
            if let Some(reason) = requeue {
                expire(store, done, task, agent, fence, reason, now).await;
            }
        });
    }

    /// Re-reads tasks that are queued in the store but not in the engine's
    /// memory (a grant that failed): queued ones are enqueued again; one
    /// found leased (the write went through although an error was seen) is
    /// adopted, so it expires unless its agent holds it.
    pub(super) fn requeue(&self, tasks: Vec<TaskId>) {
        let (store, done, shutdown) =
            (self.store.clone(), self.done.clone(), self.shutdown.clone());
        self.tracker.spawn(async move {
            let mut ready = Vec::new();
            let mut adopt = Vec::new();
            for t in tasks {
                // The store may be briefly unavailable (a Redis restart):
                // keep asking, or the task would stay queued in the store but
                // unknown to the scheduler.
                let mut found = store.get_task(t).await;
                while let Err(e) = &found {
                    warn!(task_id = %t, error = %e, "cannot re-read a task to requeue it; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    found = store.get_task(t).await;
                }
                match found {
                    Ok(Some(rec))
                        if matches!(rec.state, TaskState::Assigned | TaskState::Running) =>
                    {
                        if let Some(agent) = rec.agent {
                            adopt.push((rec.id, agent, rec.fence));
                        }
                    }
                    Ok(Some(rec)) if rec.state == TaskState::Queued => ready.push(queued_of(&rec)),
                    _ => {}
                }
            }
            if !ready.is_empty() {
                let _ = done.send(JobDone::Requeue(ready)).await;
            }
            if !adopt.is_empty() {
                let _ = done.send(JobDone::Adopt(adopt)).await;
            }
        });
    }
}

/// Ends an attempt whose lease is gone (no heartbeat, or stalled) in the
/// store and hands the result back to the engine.
async fn expire<S: Store>(
    store: Arc<S>,
    done: mpsc::Sender<JobDone>,
    task: TaskId,
    agent: AgentId,
    fence: u64,
    reason: String,
    now: u64,
) {
    let result = store.expire(task, fence, reason, now).await;
    let _ = done
        .send(JobDone::Expired {
            task,
            agent,
            result,
        })
        .await;
}

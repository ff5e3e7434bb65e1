//! Group commit for a networked store: start and finish reports from every
//! agent session are merged into one store call while the previous call is
//! in flight, so Redis runs one script for many agents' reports instead of
//! one per session. (The embedded store's writer thread already does this,
//! so sessions call it directly.)

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use torch_core::TaskId;
use torch_store::{FenceCheck, Finish, FinishResult, Store, StoreError};

/// Most reports merged into one store call.
const MAX_BATCH: usize = 4096;
/// Callers waiting to be merged, at most, per kind of call; a session's
/// recorder waits while it is full (its agent's acks wait with it).
const WAITING: usize = 1024;

type Reply<T> = oneshot::Sender<Result<Vec<T>, StoreError>>;
/// One caller's items, its clock, and where its results go.
type Request<I, T> = (Vec<I>, u64, Reply<T>);

type Starts = mpsc::Receiver<Request<(TaskId, u64), FenceCheck>>;
type Finishes = mpsc::Receiver<Request<Finish, FinishResult>>;

/// Handles to the two batching tasks.
pub(crate) struct Batcher {
    starts: mpsc::Sender<Request<(TaskId, u64), FenceCheck>>,
    finishes: mpsc::Sender<Request<Finish, FinishResult>>,
}

/// The batching tasks, not started yet (the hub starts them when it serves).
pub(crate) struct BatchRunner<S> {
    store: Arc<S>,
    starts: Starts,
    finishes: Finishes,
}

impl<S: Store> BatchRunner<S> {
    /// Starts the batching tasks in `tracker`; they stop at `stop` (calls
    /// waiting then fail as unavailable, and agents resend).
    pub(crate) fn spawn_into(self, tracker: &TaskTracker, stop: CancellationToken) {
        let BatchRunner {
            store,
            starts,
            finishes,
        } = self;
        let s = store.clone();
        tracker.spawn(run(starts, stop.clone(), move |items, now| {
            let s = s.clone();
            async move { s.start(items, now).await }
        }));
        tracker.spawn(run(finishes, stop, move |items, now| {
            let s = store.clone();
            async move { s.finish(items, now).await }
        }));
    }
}

impl Batcher {
    /// A batcher over `store`, and its tasks (to start with
    /// [`BatchRunner::spawn_into`]).
    pub(crate) fn new<S: Store>(store: Arc<S>) -> (Batcher, BatchRunner<S>) {
        let (starts, srx) = mpsc::channel(WAITING);
        let (finishes, frx) = mpsc::channel(WAITING);
        (
            Batcher { starts, finishes },
            BatchRunner {
                store,
                starts: srx,
                finishes: frx,
            },
        )
    }

    /// `Store::start`, merged with other sessions' calls.
    pub(crate) async fn start(
        &self,
        held: Vec<(TaskId, u64)>,
        now: u64,
    ) -> Result<Vec<FenceCheck>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.starts
            .send((held, now, tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// `Store::finish`, merged with other sessions' calls.
    pub(crate) async fn finish(
        &self,
        reports: Vec<Finish>,
        now: u64,
    ) -> Result<Vec<FinishResult>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.finishes
            .send((reports, now, tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the hub is stopping".into())
}

/// Serves one kind of call: takes what queued up, makes one store call,
/// hands each caller its slice of the results (or the error).
async fn run<I, T, F, Fut>(mut rx: mpsc::Receiver<Request<I, T>>, stop: CancellationToken, call: F)
where
    F: Fn(Vec<I>, u64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r {
                Some(first) => first,
                None => return,
            },
            _ = stop.cancelled() => return,
        };
        let mut pending = vec![first];
        let mut n = pending[0].0.len();
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => {
                    n += more.0.len();
                    pending.push(more);
                }
                Err(_) => break,
            }
        }
        let now = pending.iter().map(|p| p.1).max().unwrap_or(0);
        let mut items = Vec::with_capacity(n);
        let mut shapes = Vec::with_capacity(pending.len());
        for (batch, _, reply) in pending {
            shapes.push((batch.len(), reply));
            items.extend(batch);
        }
        match call(items, now).await {
            Ok(results) => {
                let mut results = results.into_iter();
                for (len, reply) in shapes {
                    let mine: Vec<T> = results.by_ref().take(len).collect();
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for (_, reply) in shapes {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

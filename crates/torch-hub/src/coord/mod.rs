//! The coordination service: locks and path reservations, and the one
//! wait-for graph over every kind of wait (lock waits, task waits, help
//! waits).
//!
//! One task owns the lock table (`torch_core::locks::LockTable`) and the
//! registered task and help waits; handlers reach it through
//! [`CoordHandle`] (bounded). Every wait is checked against the graph at
//! its start and refused at once with the cycle it would close. Grants,
//! renewals and releases are written to the store ([`torch_store::LockStore`],
//! fenced) before anyone hears of them, so a restart or a new leader loses
//! none; a follower hub keeps nothing and reloads when it becomes leader.
//!
//! A lock a task holds goes when its attempt ends or its lease expires
//! (checked every [`LIVENESS_EVERY`] against the store's lease), and every
//! lock goes at its TTL. Help requests live in the store; `help` sweeps
//! the expired ones (expire or escalate to a spawned helper).

pub(crate) mod help;
mod locks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use torch_core::locks::{Holder, LockError, LockKey, LockMode, LockTable, LockView};
use torch_core::waits::{Deadlock, Node, WaitEdge, WaitGraph};
use torch_core::{EventData, TaskId};
use torch_store::{Store, StoreError};
use tracing::{debug, info, warn};

use crate::hub::Shared;

/// Commands waiting for the service, at most; senders wait when it is full.
const INBOX: usize = 4096;
/// How often lock expiries and gone waiters are looked at.
const TICK: Duration = Duration::from_millis(100);
/// How often the holders' tasks are checked for a live attempt.
const LIVENESS_EVERY: Duration = Duration::from_millis(500);

/// Why a coordination request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CoordError {
    /// The wait would close a cycle.
    #[error(transparent)]
    Deadlock(#[from] Deadlock),
    /// A renew, release or acquire the lock table refused.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Held by others and the caller would not wait.
    #[error("lock {name:?} is held by {}", .holders.join(", "))]
    Busy { name: String, holders: Vec<String> },
    /// This hub does not lead (a shared store's follower).
    #[error("this hub is not the leader")]
    NotLeader,
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an acquire asks for.
pub(crate) struct AcquireReq {
    pub(crate) key: LockKey,
    pub(crate) node: Node,
    /// The caller's task attempt (its lease fence), for a task.
    pub(crate) attempt: Option<u64>,
    pub(crate) mode: LockMode,
    pub(crate) ttl_ms: u64,
    /// Wait at all (the caller times the wait itself).
    pub(crate) wait: bool,
    pub(crate) priority: i32,
}

/// What an acquire got at once.
pub(crate) enum Acquired {
    /// Held now.
    Now(Holder),
    /// Queued as wait `id`; the grant arrives on `grant`.
    Queued {
        id: u64,
        grant: oneshot::Receiver<Result<Holder, CoordError>>,
    },
}

/// Requests to the service.
pub(crate) enum CoordCmd {
    Acquire {
        req: AcquireReq,
        reply: oneshot::Sender<Result<Acquired, CoordError>>,
    },
    /// Stop waiting (timed out or gone); answers whether it still waited.
    CancelWait {
        id: u64,
        reply: Option<oneshot::Sender<bool>>,
    },
    Renew {
        name: String,
        fence: u64,
        caller: Option<Node>,
        ttl_ms: u64,
        reply: oneshot::Sender<Result<(LockKey, Holder), CoordError>>,
    },
    Release {
        name: String,
        fence: u64,
        caller: Option<Node>,
        reply: oneshot::Sender<Result<(LockKey, Holder), CoordError>>,
    },
    /// Registers a wait (task or help) as edges from one waiter.
    AddWait {
        edges: Vec<WaitEdge>,
        reply: oneshot::Sender<Result<u64, CoordError>>,
    },
    RemoveWait {
        id: u64,
    },
    /// Every lock and every edge of the graph.
    List {
        reply: oneshot::Sender<(Vec<LockView>, Vec<WaitEdge>)>,
    },
}

/// The service's address. Cheap to clone.
#[derive(Clone)]
pub(crate) struct CoordHandle {
    tx: mpsc::Sender<CoordCmd>,
}

impl CoordHandle {
    /// A handle and the receiving end the service reads.
    pub(crate) fn channel() -> (CoordHandle, mpsc::Receiver<CoordCmd>) {
        let (tx, rx) = mpsc::channel(INBOX);
        (CoordHandle { tx }, rx)
    }

    /// Sends a request and waits for its answer; `None` when the service is gone.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> CoordCmd,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Sends without waiting for room or an answer (from a drop guard).
    pub(crate) fn tell(&self, cmd: CoordCmd) {
        if self.tx.try_send(cmd).is_err() {
            debug!("coordination inbox full or closed; a gone waiter is dropped by the tick");
        }
    }
}

/// A lock waiter's way back to its caller.
struct Pending {
    tx: oneshot::Sender<Result<Holder, CoordError>>,
    attempt: Option<u64>,
}

/// The service (see the module docs).
pub(crate) struct Coord<S> {
    shared: Arc<Shared<S>>,
    rx: mpsc::Receiver<CoordCmd>,
    table: LockTable,
    /// Waiting lock acquires by wait id.
    pending: HashMap<u64, Pending>,
    /// Registered task and help waits by id.
    waits: HashMap<u64, Vec<WaitEdge>>,
    /// The lease fence of the attempt of each task that holds a lock.
    attempts: HashMap<TaskId, u64>,
    next_id: u64,
    /// Whether the table is loaded (this hub leads).
    loaded: bool,
}

impl<S: Store> Coord<S> {
    /// The service over `shared`, reading `rx`.
    pub(crate) fn new(shared: Arc<Shared<S>>, rx: mpsc::Receiver<CoordCmd>) -> Self {
        Coord {
            shared,
            rx,
            table: LockTable::new(0),
            pending: HashMap::new(),
            waits: HashMap::new(),
            attempts: HashMap::new(),
            next_id: 1,
            loaded: false,
        }
    }

    /// Runs until `shutdown`.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_liveness = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => break,
                },
                _ = tick.tick() => {
                    self.follow_leadership().await;
                    if self.loaded {
                        self.expire().await;
                        if last_liveness.elapsed() >= LIVENESS_EVERY {
                            last_liveness = tokio::time::Instant::now();
                            self.check_attempts().await;
                        }
                        self.drop_gone_waiters().await;
                    }
                }
            }
        }
        info!("coordination service stopped");
    }

    /// Loads the table when this hub leads, forgets it when it stops leading.
    async fn follow_leadership(&mut self) {
        let leader = self.shared.is_leader();
        if leader && !self.loaded {
            match self.load().await {
                Ok(n) => {
                    self.loaded = true;
                    info!(locks = n, "locks loaded");
                }
                Err(e) => warn!(error = %e, "could not load locks; retrying"),
            }
        } else if !leader && self.loaded {
            self.loaded = false;
            self.table = LockTable::new(0);
            self.pending.clear();
            self.waits.clear();
            self.attempts.clear();
        }
    }

    async fn load(&mut self) -> Result<usize, StoreError> {
        let snap = self.shared.store.lock_load().await?;
        let mut table = LockTable::new(snap.last_fence);
        let mut attempts = HashMap::new();
        let n = snap.holders.len();
        for rec in snap.holders {
            let (Ok(node), Some(mode)) = (rec.holder.parse::<Node>(), LockMode::parse(&rec.mode))
            else {
                warn!(lock = %rec.name, holder = %rec.holder, "unreadable lock holder dropped");
                continue;
            };
            // A task's lock belongs to the attempt that holds the task now;
            // the liveness check releases it if none does.
            if let Node::Task(t) = &node
                && let Ok(Some((_, fence))) = self.shared.store.lease_holder(*t).await
            {
                attempts.insert(*t, fence);
            }
            let key = LockKey {
                name: rec.name,
                path: rec.path,
            };
            table.restore(
                key,
                Holder {
                    node,
                    mode,
                    fence: rec.fence,
                    granted_ms: rec.granted_ms,
                    expires_ms: rec.expires_ms,
                },
            );
        }
        self.table = table;
        self.attempts = attempts;
        Ok(n)
    }

    async fn command(&mut self, cmd: CoordCmd) {
        if !self.loaded {
            self.follow_leadership().await;
        }
        match cmd {
            CoordCmd::List { reply } => {
                let _ = reply.send((self.table.views(), self.graph().edges().cloned().collect()));
            }
            _ if !self.loaded => refuse(cmd),
            CoordCmd::Acquire { req, reply } => {
                let r = self.acquire(req).await;
                let _ = reply.send(r);
            }
            CoordCmd::CancelWait { id, reply } => {
                let was = self.cancel_wait(id).await;
                if let Some(r) = reply {
                    let _ = r.send(was);
                }
            }
            CoordCmd::Renew {
                name,
                fence,
                caller,
                ttl_ms,
                reply,
            } => {
                let r = self.renew(name, fence, caller, ttl_ms).await;
                let _ = reply.send(r);
            }
            CoordCmd::Release {
                name,
                fence,
                caller,
                reply,
            } => {
                let r = self.release(name, fence, caller).await;
                let _ = reply.send(r);
            }
            CoordCmd::AddWait { edges, reply } => {
                let r = self.add_wait(edges).await;
                let _ = reply.send(r);
            }
            CoordCmd::RemoveWait { id } => {
                self.waits.remove(&id);
            }
        }
    }

    /// The whole wait-for graph now.
    fn graph(&self) -> WaitGraph {
        let mut g = WaitGraph::of(self.table.wait_edges());
        for edges in self.waits.values() {
            for e in edges {
                g.add(e.clone());
            }
        }
        g
    }

    /// Refuses `edges` with the cycle they would close, recording it.
    async fn check_cycle(&self, edges: &[WaitEdge]) -> Result<(), CoordError> {
        let Some(cycle) = self.graph().would_close(edges) else {
            return Ok(());
        };
        let refused = cycle[0].from.clone();
        info!(refused = %refused, edges = cycle.len(), "wait refused: deadlock");
        self.shared
            .event(
                None,
                task_of(&refused),
                EventData::WaitDeadlock(torch_core::events::coord::WaitDeadlock {
                    cycle: cycle.clone(),
                    refused,
                }),
            )
            .await;
        Err(Deadlock { cycle }.into())
    }

    async fn add_wait(&mut self, edges: Vec<WaitEdge>) -> Result<u64, CoordError> {
        self.check_cycle(&edges).await?;
        let id = self.next_id();
        self.waits.insert(id, edges);
        Ok(id)
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// The task a node names, if it is one.
pub(crate) fn task_of(node: &Node) -> Option<TaskId> {
    match node {
        Node::Task(t) => Some(*t),
        _ => None,
    }
}

/// Answers a request on a follower.
fn refuse(cmd: CoordCmd) {
    match cmd {
        CoordCmd::Acquire { reply, .. } => drop(reply.send(Err(CoordError::NotLeader))),
        CoordCmd::Renew { reply, .. } | CoordCmd::Release { reply, .. } => {
            drop(reply.send(Err(CoordError::NotLeader)))
        }
        CoordCmd::AddWait { reply, .. } => drop(reply.send(Err(CoordError::NotLeader))),
        CoordCmd::CancelWait { reply, .. } => {
            if let Some(r) = reply {
                let _ = r.send(false);
            }
        }
        CoordCmd::RemoveWait { .. } | CoordCmd::List { .. } => {}
    }
}

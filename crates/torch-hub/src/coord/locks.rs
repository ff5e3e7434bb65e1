//! The lock side of the coordination service: acquire (now, or queued
//! after the deadlock check), renew, release, and the sweeps (TTL expiry,
//! ended attempts, waiters that went away). Every grant is written to the
//! store before its holder hears of it.

use torch_core::EventData;
use torch_core::events::coord::{LockAcquired, LockReleased};
use torch_core::locks::{Acquire, Grant, Holder, LockKey, Waiter};
use torch_core::waits::Node;
use torch_store::{LockRecord, Store, StoreError};
use tracing::warn;

use super::{AcquireReq, Acquired, Coord, CoordError, Pending, task_of};

impl<S: Store> Coord<S> {
    pub(super) async fn acquire(&mut self, req: AcquireReq) -> Result<Acquired, CoordError> {
        let now = self.shared.now_ms();
        match self
            .table
            .try_acquire(&req.key, &req.node, req.mode, req.ttl_ms, now)?
        {
            Acquire::Granted(g) => {
                self.note_attempt(&req.node, req.attempt);
                self.persist(&g).await?;
                Ok(Acquired::Now(g.holder))
            }
            Acquire::Blocked(edges) => {
                if !req.wait {
                    let holders = self
                        .table
                        .views()
                        .into_iter()
                        .filter(|v| v.key == req.key)
                        .flat_map(|v| v.holders.into_iter().map(|h| h.node.to_string()))
                        .collect::<Vec<_>>();
                    let holders = if holders.is_empty() {
                        edges.iter().map(|e| e.to.to_string()).collect()
                    } else {
                        holders
                    };
                    return Err(CoordError::Busy {
                        name: req.key.name,
                        holders,
                    });
                }
                self.check_cycle(&edges).await?;
                let id = self.next_id();
                let (tx, grant) = tokio::sync::oneshot::channel();
                self.pending.insert(
                    id,
                    Pending {
                        tx,
                        attempt: req.attempt,
                    },
                );
                let waiter = Waiter {
                    id,
                    node: req.node,
                    mode: req.mode,
                    priority: req.priority,
                    since_ms: now,
                    ttl_ms: req.ttl_ms,
                };
                let grants = self.table.enqueue(&req.key, waiter, now);
                self.deliver(grants).await;
                Ok(Acquired::Queued { id, grant })
            }
        }
    }

    fn note_attempt(&mut self, node: &Node, attempt: Option<u64>) {
        if let (Node::Task(t), Some(f)) = (node, attempt) {
            self.attempts.insert(*t, f);
        }
    }

    /// Writes a grant (fenced); on refusal or failure it is undone in the
    /// table and the error returned.
    async fn persist(&mut self, g: &Grant) -> Result<(), CoordError> {
        let rec = LockRecord {
            name: g.key.name.clone(),
            path: g.key.path,
            holder: g.holder.node.to_string(),
            mode: g.holder.mode.as_str().to_string(),
            fence: g.holder.fence,
            granted_ms: g.holder.granted_ms,
            expires_ms: g.holder.expires_ms,
        };
        let err = match self.shared.store.lock_grant(rec).await {
            Ok(true) => {
                self.shared
                    .event(
                        None,
                        task_of(&g.holder.node),
                        EventData::LockAcquired(LockAcquired {
                            fence: g.holder.fence,
                            holder: g.holder.node.clone(),
                            lock: g.key.name.clone(),
                            mode: g.holder.mode,
                            path: g.key.path,
                        }),
                    )
                    .await;
                return Ok(());
            }
            Ok(false) => StoreError::Unavailable(format!(
                "lock fence {} refused by the store: another hub granted a newer one",
                g.holder.fence
            )),
            Err(e) => e,
        };
        warn!(lock = %g.key.name, error = %err, "lock grant not stored; undone");
        let now = self.shared.now_ms();
        if let Ok((_, _, grants)) = self.table.release(&g.key.name, g.holder.fence, None, now) {
            Box::pin(self.deliver(grants)).await;
        }
        Err(err.into())
    }

    /// Stores and hands out grants to waiters; a grant whose waiter went
    /// away is released again (and what that lets through is delivered).
    pub(super) async fn deliver(&mut self, mut grants: Vec<Grant>) {
        while let Some(g) = grants.pop() {
            let Some(id) = g.waiter else { continue };
            let Some(p) = self.pending.remove(&id) else {
                grants.extend(self.undo(&g).await);
                continue;
            };
            if p.tx.is_closed() {
                grants.extend(self.undo(&g).await);
                continue;
            }
            if let Err(e) = self.persist(&g).await {
                let _ = p.tx.send(Err(e));
                continue;
            }
            self.note_attempt(&g.holder.node, p.attempt);
            if let Err(Ok(h)) = p.tx.send(Ok(g.holder.clone())) {
                // The waiter left between the check and the send.
                let undone = self.release_stored(&g.key, h, "undelivered").await;
                grants.extend(undone);
            }
        }
    }

    /// Releases a grant nobody received (not yet stored).
    async fn undo(&mut self, g: &Grant) -> Vec<Grant> {
        let now = self.shared.now_ms();
        match self.table.release(&g.key.name, g.holder.fence, None, now) {
            Ok((_, _, more)) => more,
            Err(_) => Vec::new(),
        }
    }

    /// Releases a stored holder (table, store, event); returns what follows.
    async fn release_stored(&mut self, key: &LockKey, h: Holder, reason: &str) -> Vec<Grant> {
        let now = self.shared.now_ms();
        let more = match self.table.release(&key.name, h.fence, None, now) {
            Ok((_, _, more)) => more,
            Err(_) => Vec::new(),
        };
        self.forget_stored(key, &h, reason).await;
        more
    }

    /// Removes a holder already gone from the table from the store, and
    /// records it.
    async fn forget_stored(&mut self, key: &LockKey, h: &Holder, reason: &str) {
        if let Err(e) = self
            .shared
            .store
            .lock_release(key.name.clone(), h.fence)
            .await
        {
            warn!(lock = %key.name, fence = h.fence, error = %e, "could not remove a released lock from the store");
        }
        self.shared
            .event(
                None,
                task_of(&h.node),
                EventData::LockReleased(LockReleased {
                    fence: h.fence,
                    holder: h.node.clone(),
                    lock: key.name.clone(),
                    path: key.path,
                    reason: reason.to_string(),
                }),
            )
            .await;
    }

    pub(super) async fn cancel_wait(&mut self, id: u64) -> bool {
        self.pending.remove(&id);
        let now = self.shared.now_ms();
        let (was, grants) = self.table.cancel_wait(id, now);
        self.deliver(grants).await;
        was
    }

    pub(super) async fn renew(
        &mut self,
        name: String,
        fence: u64,
        caller: Option<Node>,
        ttl_ms: u64,
    ) -> Result<(LockKey, Holder), CoordError> {
        let now = self.shared.now_ms();
        let (key, h) = self
            .table
            .renew(&name, fence, caller.as_ref(), ttl_ms, now)?;
        if !self
            .shared
            .store
            .lock_renew(name.clone(), fence, h.expires_ms)
            .await?
        {
            warn!(lock = %name, fence, "renewed lock missing from the store");
        }
        Ok((key, h))
    }

    pub(super) async fn release(
        &mut self,
        name: String,
        fence: u64,
        caller: Option<Node>,
    ) -> Result<(LockKey, Holder), CoordError> {
        let now = self.shared.now_ms();
        let (key, h, grants) = self.table.release(&name, fence, caller.as_ref(), now)?;
        self.forget_stored(&key, &h, "released").await;
        self.deliver(grants).await;
        Ok((key, h))
    }

    /// Releases holders past their TTL.
    pub(super) async fn expire(&mut self) {
        let now = self.shared.now_ms();
        if self.table.next_expiry().is_none_or(|t| t > now) {
            return;
        }
        let (gone, grants) = self.table.expire(now);
        for (key, h) in &gone {
            self.forget_stored(key, h, "expired").await;
        }
        self.deliver(grants).await;
    }

    /// Releases the locks of tasks whose attempt no longer holds the task
    /// (it ended, or its lease expired and it was requeued).
    pub(super) async fn check_attempts(&mut self) {
        let mut tasks: Vec<_> = self
            .table
            .holders()
            .filter_map(|(_, h)| task_of(&h.node))
            .collect();
        tasks.sort_unstable();
        tasks.dedup();
        let mut ended = Vec::new();
        for t in tasks {
            let live = match self.shared.store.lease_holder(t).await {
                Ok(Some((_, fence))) => self.attempts.get(&t).is_none_or(|f| *f == fence),
                Ok(None) => false,
                Err(e) => {
                    warn!(task_id = %t, error = %e, "could not check a lock holder's lease");
                    true
                }
            };
            if !live {
                ended.push(t);
            }
        }
        if ended.is_empty() {
            return;
        }
        let now = self.shared.now_ms();
        let (gone, grants) = self.table.release_where(now, |_, h| {
            task_of(&h.node).is_some_and(|t| ended.contains(&t))
        });
        for t in &ended {
            self.attempts.remove(t);
        }
        for (key, h) in &gone {
            self.forget_stored(key, h, "attempt_ended").await;
        }
        self.deliver(grants).await;
    }

    /// Drops lock waiters whose caller went away without cancelling.
    pub(super) async fn drop_gone_waiters(&mut self) {
        let gone: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.tx.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.cancel_wait(id).await;
        }
    }
}

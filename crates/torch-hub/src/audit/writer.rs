//! The audit writer task: batches appends, signs checkpoints, cuts for
//! retention (see the module docs of `audit`).

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use torch_store::audit::chain::sign_checkpoint;
use torch_store::{AuditCheckpoint, Store, StoreError};
use tracing::{debug, error, warn};

use super::Queued;
use crate::shared::Shared;

/// Entries appended in one store write, at most.
const MAX_BATCH: usize = 4096;

/// Entries examined per retention round, at most.
const CUT_SCAN: usize = 10_000;

/// The writer's state (see [`Writer::run`]).
pub(crate) struct Writer<S> {
    shared: Arc<Shared<S>>,
    rx: mpsc::UnboundedReceiver<Queued>,
    key: SigningKey,
    /// Entries appended since the last checkpoint this hub signed.
    since_checkpoint: u64,
    /// The size of the last checkpoint this hub signed.
    signed_size: u64,
}

impl<S: Store> Writer<S> {
    /// A writer appending what `rx` receives, signing with `key`.
    pub(crate) fn new(
        shared: Arc<Shared<S>>,
        rx: mpsc::UnboundedReceiver<Queued>,
        key: SigningKey,
    ) -> Self {
        Writer {
            shared,
            rx,
            key,
            since_checkpoint: 0,
            signed_size: 0,
        }
    }

    /// Appends until `stop` fires, then appends what is queued, signs a
    /// last checkpoint and returns.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let every = self
            .shared
            .cfg
            .audit
            .checkpoint_interval
            .max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                got = self.rx.recv() => {
                    let Some(first) = got else { break };
                    self.append(first).await;
                    if self.since_checkpoint >= self.shared.cfg.audit.checkpoint_every.max(1) {
                        self.checkpoint().await;
                    }
                }
                _ = tick.tick() => {
                    self.checkpoint().await;
                    self.cut().await;
                }
                _ = stop.cancelled() => break,
            }
        }
        while let Ok(first) = self.rx.try_recv() {
            self.append(first).await;
        }
        self.checkpoint().await;
    }

    async fn append(&mut self, first: Queued) {
        let (entry, done) = first;
        let mut batch = vec![entry];
        let mut waiting: Vec<oneshot::Sender<bool>> = done.into_iter().collect();
        while batch.len() < MAX_BATCH
            && let Ok((entry, done)) = self.rx.try_recv()
        {
            batch.push(entry);
            waiting.extend(done);
        }
        let n = batch.len() as u64;
        let mut wait = Duration::from_millis(50);
        let tell = |waiting: Vec<oneshot::Sender<bool>>, stored: bool| {
            for w in waiting {
                let _ = w.send(stored);
            }
        };
        for attempt in 1..=5 {
            match self.shared.store.audit_append(batch.clone()).await {
                Ok(_) => {
                    self.since_checkpoint += n;
                    tell(waiting, true);
                    return;
                }
                Err(e) if attempt < 5 => {
                    warn!(error = %e, entries = n, "audit append failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    error!(error = %e, entries = n, "audit entries lost: the store refused them");
                    tell(waiting, false);
                    return;
                }
            }
        }
    }

    /// Signs a checkpoint of the current head when this hub leads and the
    /// log grew since the last one.
    async fn checkpoint(&mut self) {
        if !self.shared.is_leader() {
            return;
        }
        match self.shared.store.audit_head().await {
            Ok(head) if head.size > self.signed_size => {
                let cp = sign_checkpoint(&self.key, head.size, &head.hash, self.shared.now_ms());
                match self.shared.store.audit_put_checkpoint(cp).await {
                    Ok(()) => {
                        debug!(size = head.size, "audit checkpoint signed");
                        self.signed_size = head.size;
                        self.since_checkpoint = 0;
                    }
                    Err(e) => warn!(error = %e, "could not store an audit checkpoint"),
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not read the audit head"),
        }
    }

    /// Retention: cuts entries older than the configured age, keeping a
    /// signed checkpoint at the cut.
    async fn cut(&mut self) {
        let Some(keep) = self.shared.cfg.audit.retention else {
            return;
        };
        if !self.shared.is_leader() {
            return;
        }
        let cutoff = self.shared.now_ms().saturating_sub(keep.as_millis() as u64);
        if let Err(e) = self.try_cut(cutoff).await {
            warn!(error = %e, "audit retention cut failed");
        }
    }

    async fn try_cut(&mut self, cutoff: u64) -> Result<(), StoreError> {
        let store = &self.shared.store;
        let head = store.audit_head().await?;
        let old = store.audit_range(0, CUT_SCAN).await?;
        let Some(last) = old
            .iter()
            .take_while(|e| e.entry.at_ms < cutoff && e.seq < head.size)
            .last()
        else {
            return Ok(());
        };
        let cp: AuditCheckpoint =
            sign_checkpoint(&self.key, last.seq, &last.hash, self.shared.now_ms());
        let n = store.audit_cut(cp).await?;
        tracing::info!(cut_at = last.seq, deleted = n, "audit retention cut");
        Ok(())
    }
}

//! Retention: deleting finished tasks after a while.

use std::future::Future;

use crate::StoreError;

/// Deletes what is old enough to go.
pub trait Retention: Send + Sync {
    /// Retention: deletes up to `limit` finished tasks (succeeded, dead or
    /// cancelled) last updated before `before_ms`, oldest submissions first,
    /// with what only they use (captured output, label and parent index
    /// entries, their idempotency key, which becomes free again). Events
    /// older than `before_ms` go too where the store keeps them all (SQLite;
    /// Redis streams are trimmed by length). Unfinished tasks are never
    /// touched. Returns how many tasks were deleted.
    fn purge_finished(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

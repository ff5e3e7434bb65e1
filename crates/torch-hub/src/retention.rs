//! Retention (`[store] retention`): the leader deletes finished tasks last
//! updated longer ago than the retention period, in small batches, so the
//! store (above all Redis's memory) does not grow with every task ever run.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use torch_store::Store;
use tracing::{info, warn};

use crate::hub::Shared;

/// Tasks deleted per store call.
const BATCH: usize = 1000;
/// Store calls per round at most (the rest waits for the next round).
const MAX_CALLS: usize = 20;

/// How often a round runs: a tenth of the period, between 1 s and 1 min.
fn every(keep: Duration) -> Duration {
    (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Runs rounds until `shutdown`, on the leader only.
pub(crate) async fn run<S: Store>(
    shared: Arc<Shared<S>>,
    keep: Duration,
    shutdown: CancellationToken,
) {
    let keep_ms = keep.as_millis() as u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every(keep)) => {}
            _ = shutdown.cancelled() => return,
        }
        if !shared.is_leader() {
            continue;
        }
        let cutoff = shared.now_ms().saturating_sub(keep_ms);
        let mut deleted = 0;
        for _ in 0..MAX_CALLS {
            match shared.store.purge_finished(cutoff, BATCH).await {
                Ok(n) => {
                    deleted += n;
                    if n < BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "retention: cannot delete finished tasks; will retry");
                    break;
                }
            }
        }
        if deleted > 0 {
            shared
                .stats
                .purged
                .fetch_add(deleted, std::sync::atomic::Ordering::Relaxed);
            info!(deleted, retention = ?keep, "retention: deleted finished tasks");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_a_tenth_of_the_period_within_bounds() {
        assert_eq!(every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(every(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(
            every(Duration::from_secs(7 * 86_400)),
            Duration::from_secs(60)
        );
    }
}

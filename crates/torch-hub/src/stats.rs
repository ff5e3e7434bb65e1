//! In-process statistics: assignment latency and counters, for `torch bench`
//! and `GET /api/v1/stats`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::autonomy::AutonomyView;
use crate::shed::ShedView;

/// Latency and throughput counters shared by the engine and the API.
pub(crate) struct Stats {
    /// Task ready → assignment handed to the agent's socket, in microseconds.
    assign_latency_us: Mutex<Histogram<u64>>,
    pub(crate) assigned: AtomicU64,
    pub(crate) finished: AtomicU64,
    pub(crate) stale_refused: AtomicU64,
    pub(crate) expired: AtomicU64,
    /// Finished tasks deleted by retention.
    pub(crate) purged: AtomicU64,
}

/// Snapshot returned by the stats endpoint.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct StatsView {
    assign_latency_ms: Percentiles,
    assigned: u64,
    finished: u64,
    stale_refused: u64,
    leases_expired: u64,
    /// Finished tasks this hub deleted under `[store] retention`.
    tasks_purged: u64,
    /// Store kind (`sqlite`, `redis`).
    store: &'static str,
    /// Requests sent to a networked store since the hub started.
    #[serde(skip_serializing_if = "Option::is_none")]
    store_round_trips: Option<u64>,
    /// The sprint plan's autonomy metrics.
    autonomy: Option<AutonomyView>,
    /// Load shedding now: the backlog, where shedding starts, the hard
    /// limit and the current priority floor.
    shed: ShedView,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Percentiles {
    count: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            assign_latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3)
                    .expect("static histogram bounds are valid"),
            ),
            assigned: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            stale_refused: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            purged: AtomicU64::new(0),
        }
    }

    /// Records latencies (microseconds) of a batch of assignments.
    pub(crate) fn record_assign(&self, latencies_us: &[u64]) {
        if let Ok(mut h) = self.assign_latency_us.lock() {
            for &l in latencies_us {
                h.saturating_record(l.max(1));
            }
        }
        self.assigned
            .fetch_add(latencies_us.len() as u64, Ordering::Relaxed);
    }

    /// Clears the latency histogram (the bench does this after warm-up).
    pub(crate) fn reset(&self) {
        if let Ok(mut h) = self.assign_latency_us.lock() {
            h.reset();
        }
    }

    pub(crate) fn view(
        &self,
        store: &'static str,
        store_round_trips: Option<u64>,
        autonomy: Option<AutonomyView>,
        shed: ShedView,
    ) -> StatsView {
        let p = match self.assign_latency_us.lock() {
            Ok(h) => Percentiles {
                count: h.len(),
                p50: h.value_at_quantile(0.5) as f64 / 1000.0,
                p90: h.value_at_quantile(0.9) as f64 / 1000.0,
                p99: h.value_at_quantile(0.99) as f64 / 1000.0,
                max: h.max() as f64 / 1000.0,
                mean: h.mean() / 1000.0,
            },
            Err(_) => Percentiles {
                count: 0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
                mean: 0.0,
            },
        };
        StatsView {
            assign_latency_ms: p,
            assigned: self.assigned.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            stale_refused: self.stale_refused.load(Ordering::Relaxed),
            leases_expired: self.expired.load(Ordering::Relaxed),
            tasks_purged: self.purged.load(Ordering::Relaxed),
            store,
            store_round_trips,
            autonomy,
            shed,
        }
    }
}

//! The hub's event counters as plain atomics: the hot path (sessions, the
//! engine, handlers) adds to them with one relaxed add; the exporter copies
//! them into the Prometheus recorder when it samples, and the alert
//! evaluator reads them as a [`CounterSnapshot`] to compute rates.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why an attempt failed (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The task ran and failed (exit code or a success criterion).
    Failed,
    /// It hit its timeout.
    TimedOut,
    /// It could never succeed as specified.
    Fatal,
    /// Its agent stopped sending heartbeats.
    LeaseExpired,
}

impl Failure {
    /// Every reason, in label order.
    pub(crate) const ALL: [Failure; 4] = [
        Failure::Failed,
        Failure::TimedOut,
        Failure::Fatal,
        Failure::LeaseExpired,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::Failed => "failed",
            Failure::TimedOut => "timed_out",
            Failure::Fatal => "fatal",
            Failure::LeaseExpired => "lease_expired",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which store call failed (the `op` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreOp {
    /// Writing leases.
    Assign,
    /// Recording starts.
    Start,
    /// Recording finished attempts.
    Finish,
    /// Ending an attempt whose lease ran out.
    Expire,
    /// Appending an event.
    Event,
}

impl StoreOp {
    /// Every op, in label order.
    pub(crate) const ALL: [StoreOp; 5] = [
        StoreOp::Assign,
        StoreOp::Start,
        StoreOp::Finish,
        StoreOp::Expire,
        StoreOp::Event,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StoreOp::Assign => "assign",
            StoreOp::Start => "start",
            StoreOp::Finish => "finish",
            StoreOp::Expire => "expire",
            StoreOp::Event => "event",
        }
    }
}

/// Why a submission was refused by load shedding (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shed {
    /// Its priority was below the floor (`429 shed`).
    Floor,
    /// The backlog was at `hub.queue-high-water` (`429 queue_full`).
    Limit,
}

impl Shed {
    /// Every reason, in label order.
    pub(crate) const ALL: [Shed; 2] = [Shed::Floor, Shed::Limit];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Shed::Floor => "floor",
            Shed::Limit => "limit",
        }
    }
}

/// The counters (see the module docs). Assignments, lease expiries and
/// stale reports are counted by [`crate::stats::Stats`] already and read
/// from there.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    submitted: AtomicU64,
    enqueued: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    reconnects: AtomicU64,
    exits: AtomicU64,
    failures: [AtomicU64; 4],
    retries: [AtomicU64; 4],
    dead: [AtomicU64; 4],
    store_errors: [AtomicU64; 5],
    /// Tasks refused by shedding, by reason then priority band.
    shed: [[AtomicU64; 3]; 2],
}

/// The counters' values at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CounterSnapshot {
    pub(crate) submitted: u64,
    pub(crate) enqueued: u64,
    pub(crate) assigned: u64,
    pub(crate) completed: u64,
    pub(crate) cancelled: u64,
    pub(crate) reconnects: u64,
    pub(crate) exits: u64,
    pub(crate) failures: [u64; 4],
    pub(crate) retries: [u64; 4],
    pub(crate) dead: [u64; 4],
    pub(crate) store_errors: [u64; 5],
    /// Tasks refused by shedding, by [`Shed`] then priority band
    /// (`crate::engine::BANDS`).
    pub(crate) shed: [[u64; 3]; 2],
    pub(crate) leases_expired: u64,
    pub(crate) stale_refused: u64,
}

impl CounterSnapshot {
    /// Failed attempts, every reason.
    pub(crate) fn failures_total(&self) -> u64 {
        self.failures.iter().sum()
    }
}

fn load<const N: usize>(a: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| a[i].load(Relaxed))
}

impl Counters {
    /// `n` tasks accepted.
    pub(crate) fn submitted(&self, n: u64) {
        self.submitted.fetch_add(n, Relaxed);
    }

    /// `n` tasks became ready.
    pub(crate) fn enqueued(&self, n: u64) {
        self.enqueued.fetch_add(n, Relaxed);
    }

    /// A task succeeded.
    pub(crate) fn completed(&self) {
        self.completed.fetch_add(1, Relaxed);
    }

    /// `n` tasks were cancelled.
    pub(crate) fn cancelled(&self, n: u64) {
        self.cancelled.fetch_add(n, Relaxed);
    }

    /// An agent registered again.
    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    /// A managed agent's process ended on its own.
    pub(crate) fn exited(&self) {
        self.exits.fetch_add(1, Relaxed);
    }

    /// An attempt failed for `why`; `retried` when another attempt follows,
    /// `dead` when the task failed for good.
    pub(crate) fn failed(&self, why: Failure, retried: bool, dead: bool) {
        self.failures[why.index()].fetch_add(1, Relaxed);
        if retried {
            self.retries[why.index()].fetch_add(1, Relaxed);
        }
        if dead {
            self.dead[why.index()].fetch_add(1, Relaxed);
        }
    }

    /// A store call failed.
    pub(crate) fn store_error(&self, op: StoreOp) {
        self.store_errors[op as usize].fetch_add(1, Relaxed);
    }

    /// `n` tasks of a submission whose lowest priority is `priority` were
    /// refused for `why`.
    pub(crate) fn shed(&self, why: Shed, priority: i32, n: u64) {
        self.shed[why as usize][crate::engine::band(priority)].fetch_add(n, Relaxed);
    }

    /// The values now; `stats` supplies the counts it keeps.
    pub(crate) fn snapshot(&self, stats: &crate::stats::Stats) -> CounterSnapshot {
        CounterSnapshot {
            submitted: self.submitted.load(Relaxed),
            enqueued: self.enqueued.load(Relaxed),
            assigned: stats.assigned.load(Relaxed),
            completed: self.completed.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            exits: self.exits.load(Relaxed),
            failures: load(&self.failures),
            retries: load(&self.retries),
            dead: load(&self.dead),
            store_errors: load(&self.store_errors),
            shed: [load(&self.shed[0]), load(&self.shed[1])],
            leases_expired: stats.expired.load(Relaxed),
            stale_refused: stats.stale_refused.load(Relaxed),
        }
    }
}

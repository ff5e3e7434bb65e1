//! Time in unix milliseconds: the one place the hub reads the clock.
//!
//! Production reads the system's wall clock. Tests that run under
//! `tokio::time::pause` use a clock anchored to tokio's (virtual) time, so
//! leases, stalls and timers all move together when the test advances time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where the hub's "now" comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    /// `(unix ms, tokio instant)` at the anchor, for a clock that follows
    /// tokio's time; `None` for the wall clock.
    anchor: Option<(u64, tokio::time::Instant)>,
}

impl Clock {
    /// The system's wall clock.
    pub(crate) fn system() -> Self {
        Clock { anchor: None }
    }

    /// A clock that reads `base_ms` now and then follows tokio's time (which
    /// a test may pause and advance).
    #[cfg(test)]
    pub(crate) fn tokio(base_ms: u64) -> Self {
        Clock {
            anchor: Some((base_ms, tokio::time::Instant::now())),
        }
    }

    /// Milliseconds since the unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        match self.anchor {
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Some((base_ms, at)) => base_ms + at.elapsed().as_millis() as u64,
        }
    }
}

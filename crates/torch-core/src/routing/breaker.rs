//! Per-agent circuit breaker, as a pure state machine.
//!
//! ```text
//! closed ──N consecutive failures──▶ open(until now+cooldown)
//!   ▲                                   │ now >= until
//!   │ probe succeeds                    ▼
//!   └──────────────────────────── half-open: admits exactly one probe task
//!                                       │ probe fails
//!                                       └──▶ open(until now+cooldown)
//! ```
//! The open → half-open step happens lazily when `now` passes the deadline; no
//! timer is needed. A probe whose outcome never arrives (cancelled, refused by
//! the store) stops blocking after one more cool-down, so a lost probe cannot
//! wedge an agent out of routing for ever.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Breaker tuning; the `[routing.breaker]` config section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (default 3: one failure can
    /// be the task's fault, three in a row are the agent's).
    pub failure_threshold: u32,
    /// How long an open breaker keeps the agent out of routing (default 30s).
    #[serde(with = "crate::spec::duration")]
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

impl BreakerConfig {
    fn cooldown_ms(&self) -> u64 {
        self.cooldown.as_millis() as u64
    }
}

/// Where a breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum BreakerState {
    /// Routing normally; counts consecutive failures.
    Closed {
        /// Failures in a row so far.
        failures: u32,
    },
    /// Excluded from routing until `until` (unix ms).
    Open {
        /// End of the cool-down.
        until: u64,
    },
    /// One probe allowed; `probe_since` is when it was admitted, if it was.
    HalfOpen {
        /// When the probe task was assigned; `None` while none is out.
        probe_since: Option<u64>,
    },
}

/// The breaker of one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    state: BreakerState,
    /// How many times it has opened, for views and metrics.
    trips: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: BreakerState::Closed { failures: 0 },
            trips: 0,
        }
    }
}

/// Why a breaker refuses a task right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerRefusal {
    /// Open until this time.
    Open(u64),
    /// Half-open and its one probe is out.
    Probing,
}

impl Breaker {
    /// The state as of `now` (an expired open breaker reads as half-open).
    pub fn state(&self, now: u64) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if now >= until => {
                BreakerState::HalfOpen { probe_since: None }
            }
            s => s,
        }
    }

    /// Times the breaker has opened.
    pub fn trips(&self) -> u64 {
        self.trips
    }

    /// Whether a new task may be routed to the agent at `now`.
    pub fn admits(&self, now: u64, cfg: &BreakerConfig) -> Result<(), BreakerRefusal> {
        match self.state(now) {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } => Err(BreakerRefusal::Open(until)),
            BreakerState::HalfOpen { probe_since: None } => Ok(()),
            BreakerState::HalfOpen {
                probe_since: Some(t),
            } => {
                if now >= t.saturating_add(cfg.cooldown_ms()) {
                    Ok(()) // the probe's outcome never came; allow another
                } else {
                    Err(BreakerRefusal::Probing)
                }
            }
        }
    }

    /// A task was assigned at `now`: in half-open this is the probe.
    pub fn on_assigned(&mut self, now: u64) {
        if let BreakerState::HalfOpen { .. } = self.state(now) {
            self.state = BreakerState::HalfOpen {
                probe_since: Some(now),
            };
        }
    }

    /// A task ended. In half-open any outcome decides (the probe is the only
    /// task admitted since the breaker opened, bar stragglers started before).
    pub fn on_outcome(&mut self, success: bool, now: u64, cfg: &BreakerConfig) {
        let open = |trips: &mut u64| {
            *trips += 1;
            BreakerState::Open {
                until: now.saturating_add(cfg.cooldown_ms()),
            }
        };
        self.state = match (self.state(now), success) {
            (BreakerState::Closed { .. }, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= cfg.failure_threshold.max(1) {
                    open(&mut self.trips)
                } else {
                    BreakerState::Closed { failures }
                }
            }
            // A straggler finishing while open changes nothing: the probe decides.
            (s @ BreakerState::Open { .. }, _) => s,
            (BreakerState::HalfOpen { .. }, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::HalfOpen { .. }, false) => open(&mut self.trips),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_open_half_open_closed_and_reopen() {
        let cfg = BreakerConfig::default();
        let mut b = Breaker::default();
        assert_eq!(b.admits(0, &cfg), Ok(()));
        b.on_outcome(false, 10, &cfg);
        b.on_outcome(false, 20, &cfg);
        b.on_outcome(true, 30, &cfg);
        assert_eq!(
            b.state(30),
            BreakerState::Closed { failures: 0 },
            "success resets"
        );
        for t in [40, 50, 60] {
            b.on_outcome(false, t, &cfg);
        }
        assert_eq!(b.state(60), BreakerState::Open { until: 30_060 });
        assert_eq!(b.admits(30_059, &cfg), Err(BreakerRefusal::Open(30_060)));
        assert_eq!(b.trips(), 1);
        // Cool-down over: exactly one probe.
        assert_eq!(b.admits(30_060, &cfg), Ok(()));
        b.on_assigned(30_060);
        assert_eq!(b.admits(30_061, &cfg), Err(BreakerRefusal::Probing));
        // The probe fails: open again for a full cool-down.
        b.on_outcome(false, 31_000, &cfg);
        assert_eq!(b.state(31_000), BreakerState::Open { until: 61_000 });
        assert_eq!(b.trips(), 2);
        b.on_assigned(61_000);
        b.on_outcome(true, 61_500, &cfg);
        assert_eq!(b.state(61_500), BreakerState::Closed { failures: 0 });
        // A lost probe stops blocking after one more cool-down.
        let mut lost = Breaker {
            state: BreakerState::HalfOpen {
                probe_since: Some(100),
            },
            trips: 1,
        };
        assert_eq!(
            lost.admits(100 + 29_999, &cfg),
            Err(BreakerRefusal::Probing)
        );
        assert_eq!(lost.admits(100 + 30_000, &cfg), Ok(()));
        lost.on_outcome(true, 40_000, &cfg);
        assert_eq!(lost.state(40_000), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn config_parses_humantime() {
        let c: BreakerConfig = toml::from_str("failure-threshold = 5\ncooldown = \"1m\"").unwrap();
        assert_eq!(c.failure_threshold, 5);
        assert_eq!(c.cooldown, Duration::from_secs(60));
        assert!(toml::from_str::<BreakerConfig>("bogus = 1").is_err());
    }
}

//! Per-token request rate limits (GCRA, through `governor`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Requests per second per token, with a burst; off when not configured.
pub(crate) struct TokenRates {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl TokenRates {
    /// `per_second` requests a second per token, bursts of `burst`
    /// (at least `per_second`); 0 turns limiting off.
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        TokenRates {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when the token with this hash may make a request now; else how
    /// long until it may.
    pub(crate) fn check(&self, hash: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        match limiter.check_key(&hash.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_per_token() {
        let r = TokenRates::new(1, 3);
        for _ in 0..3 {
            assert_eq!(r.check("a"), Ok(()));
        }
        let wait = r.check("a").expect_err("past the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert_eq!(r.check("b"), Ok(()), "another token has its own budget");
        let off = TokenRates::new(0, 0);
        assert!((0..10_000).all(|_| off.check("a").is_ok()));
    }
}

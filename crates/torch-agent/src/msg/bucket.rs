//! Token buckets: per-sender message rate limits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, rate: f64, burst: u32, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = if rate > 0.0 {
            (1.0 - self.tokens) / rate
        } else {
            60.0
        };
        Err(Duration::from_secs_f64(wait.clamp(0.001, 3_600.0)))
    }
}

/// Buckets by sender, bounded: idle full buckets are forgotten first.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    by_sender: HashMap<String, Bucket>,
}

/// Senders tracked at most; past it, buckets that refilled are dropped.
const MAX_SENDERS: usize = 65_536;

impl Buckets {
    /// Takes a token from `sender`'s bucket.
    pub(crate) fn take(
        &mut self,
        sender: &str,
        rate: f64,
        burst: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        if self.by_sender.len() >= MAX_SENDERS && !self.by_sender.contains_key(sender) {
            let full_after = Duration::from_secs_f64(f64::from(burst) / rate.max(0.001));
            self.by_sender
                .retain(|_, b| now.saturating_duration_since(b.at) < full_after);
            if self.by_sender.len() >= MAX_SENDERS {
                self.by_sender.clear();
            }
        }
        self.by_sender
            .entry(sender.to_string())
            .or_insert_with(|| Bucket::full(burst, now))
            .take(rate, burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_sender() {
        let t0 = Instant::now();
        let mut b = Buckets::default();
        for _ in 0..3 {
            b.take("a", 10.0, 3, t0).unwrap();
        }
        let wait = b.take("a", 10.0, 3, t0).unwrap_err();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100));
        b.take("b", 10.0, 3, t0).unwrap();
        b.take("a", 10.0, 3, t0 + Duration::from_millis(100))
            .unwrap();
        assert!(
            b.take("a", 10.0, 3, t0 + Duration::from_millis(100))
                .is_err()
        );
    }
}

//! The hub's configuration section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of `torch serve` (section `[hub]` of `torch.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HubConfig {
    /// Address `torch serve` listens on.
    pub listen: String,
    /// Lease length: a task whose agent sends no heartbeat for this long is requeued.
    #[serde(with = "torch_core::spec::duration")]
    pub lease: Duration,
    /// How often agents send heartbeats (should be well under `lease`).
    #[serde(with = "torch_core::spec::duration")]
    pub heartbeat: Duration,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Past this many unfinished tasks, submissions get 429 with Retry-After.
    pub queue_high_water: u64,
    /// Seconds suggested in Retry-After when shedding load.
    pub retry_after_secs: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            listen: "127.0.0.1:7700".into(),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            max_body_bytes: 8 << 20,
            queue_high_water: 1_000_000,
            retry_after_secs: 5,
        }
    }
}

impl HubConfig {
    /// Checks relations between settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease < Duration::from_millis(200) {
            return Err("hub.lease must be at least 200ms".into());
        }
        if self.heartbeat.is_zero() || self.heartbeat * 2 > self.lease {
            return Err(format!(
                "hub.heartbeat ({:?}) must be non-zero and at most half of hub.lease ({:?})",
                self.heartbeat, self.lease
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err("hub.max-body-bytes must be at least 1024".into());
        }
        Ok(())
    }
}

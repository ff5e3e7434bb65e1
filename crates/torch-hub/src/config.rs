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
    /// Load shedding starts at this fraction of `queue-high-water`: from
    /// there a priority floor rises linearly from `shed-lowest` to
    /// `shed-highest` (at the high-water mark), and submissions below it get
    /// 429 `shed` (1 turns shedding off). Since v0.1.
    pub shed_from: f64,
    /// The priority floor where shedding starts. Since v0.1.
    pub shed_lowest: i32,
    /// The priority floor as the backlog reaches `queue-high-water`. Since v0.1.
    pub shed_highest: i32,
    /// Seconds suggested in Retry-After when shedding load.
    pub retry_after_secs: u64,
    /// Requests a second each API token may make (0: no limit); past it a
    /// request gets 429 `rate_limited` with Retry-After. Since v0.1.
    pub token_rate_limit: u32,
    /// Requests a token may make at once above its rate (at least
    /// `token-rate-limit`). Since v0.1.
    pub token_rate_burst: u32,
    /// A running task with no progress report for this long is stalled (off when unset).
    #[serde(
        default,
        with = "torch_core::spec::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub stall_after: Option<Duration>,
    /// What a stall does: `event` (raise `task.stalled`) or `requeue` (also end the attempt).
    pub stall_action: StallAction,
    /// With a shared store (Redis): the leader's lease term (default 3 s). A
    /// dead leader is replaced within it plus a third of it (4 s by default).
    #[serde(with = "torch_core::spec::duration")]
    pub leader_lease: Duration,
    /// With a shared store: how often the leader compares the store's queued
    /// tasks and leases with its memory and adopts what it does not know
    /// (default 30 s).
    #[serde(with = "torch_core::spec::duration")]
    pub reconcile_every: Duration,
    /// The URL other hubs and agents reach this hub at (default:
    /// `http://` + the bound address). Set it when listening on 0.0.0.0.
    pub advertise_url: Option<String>,
    /// How this hub verifies other hubs' `https://` URLs when it forwards
    /// to the leader (set by the binary; `None`: the system's roots).
    #[serde(skip)]
    pub tls_client: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Routing (the `[routing]` section of `torch.toml`, set by the binary).
    #[serde(skip)]
    pub routing: torch_core::routing::RoutingConfig,
    /// Templates, spawn limits and lifecycle timings (set by the binary from
    /// the `[templates.*]`, `[spawn]` and `[lifecycle]` sections).
    #[serde(skip)]
    pub lifecycle: LifecycleConfig,
    /// Retention (`[store] retention`, set by the binary): finished tasks
    /// last updated longer ago than this are deleted by the leader, in the
    /// background; unset keeps every task.
    #[serde(skip)]
    pub retention: Option<Duration>,
    /// Limits on relayed and operators' messages (the binary sets them from
    /// `[collaboration]`).
    #[serde(skip)]
    pub messages: crate::messaging::MessagingConfig,
    /// Metrics, alert rules and capacity planning (set by the binary from
    /// the `[metrics]`, `[alerting]` and `[[alerts]]` sections).
    #[serde(skip)]
    pub observe: ObserveConfig,
    /// The audit log: checkpoints, retention, the signing key (set by the
    /// binary from `[audit]`).
    #[serde(skip)]
    pub audit: crate::audit::AuditConfig,
    /// Where the hub keeps files besides the store (the merge queue's
    /// mirrors of remote repositories); set by the binary to its data dir.
    /// `None`: a `torch-hub` dir under the system's temporary dir.
    #[serde(skip)]
    pub data_dir: Option<std::path::PathBuf>,
}

/// Metrics, alerting and capacity settings.
#[derive(Clone, Debug)]
pub struct ObserveConfig {
    /// Serve `GET /metrics` without a token (default: any API token is needed).
    pub metrics_public: bool,
    /// How often the alert rules are evaluated (and the gauges sampled).
    pub interval: Duration,
    /// The alert rules: the defaults merged with `[[alerts]]`.
    pub rules: Vec<torch_core::alerts::AlertRule>,
    /// A leased task that gave no sign of life (start, progress) for this
    /// long counts as stuck (`hub.stall-after` wins when set).
    pub stuck_after: Duration,
    /// Where firing and resolved alerts are POSTed, if anywhere.
    pub webhook: Option<String>,
    /// Key of the HMAC-SHA256 signature of webhook bodies.
    pub webhook_secret: Option<String>,
    /// Capacity planning: the p95 schedule-to-start a pool should keep.
    pub capacity_target: Duration,
    /// Capacity planning: the default measurement window.
    pub capacity_window: Duration,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        ObserveConfig {
            metrics_public: false,
            interval: Duration::from_secs(5),
            rules: torch_core::alerts::default_rules(),
            stuck_after: Duration::from_secs(600),
            webhook: None,
            webhook_secret: None,
            capacity_target: Duration::from_secs(1),
            capacity_window: Duration::from_secs(900),
        }
    }
}

/// What the hub does when a running task stalls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StallAction {
    /// Raise a `task.stalled` event on `nova.torch.tasks.active`.
    #[default]
    Event,
    /// Raise the event and end the attempt (retry rules apply).
    Requeue,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            listen: "127.0.0.1:7700".into(),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            max_body_bytes: 8 << 20,
            queue_high_water: 1_000_000,
            shed_from: 0.8,
            shed_lowest: -1000,
            shed_highest: 1000,
            retry_after_secs: 5,
            token_rate_limit: 2_000,
            token_rate_burst: 10_000,
            stall_after: None,
            stall_action: StallAction::Event,
            leader_lease: Duration::from_secs(3),
            reconcile_every: Duration::from_secs(30),
            advertise_url: None,
            tls_client: None,
            routing: torch_core::routing::RoutingConfig::default(),
            lifecycle: LifecycleConfig::default(),
            retention: None,
            messages: Default::default(),
            observe: ObserveConfig::default(),
            audit: crate::audit::AuditConfig::default(),
            data_dir: None,
        }
    }
}

impl HubConfig {
    /// Checks relations between settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.retention.is_some_and(|r| r < Duration::from_secs(1)) {
            return Err("store.retention must be at least 1s".into());
        }
        if self.lease < Duration::from_millis(200) {
            return Err("hub.lease must be at least 200ms".into());
        }
        if self.leader_lease < Duration::from_millis(300) {
            return Err("hub.leader-lease must be at least 300ms".into());
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
        if self.stall_after.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err("hub.stall-after must be at least 1s".into());
        }
        if let Some((field, m)) = crate::shed::problems(self).into_iter().next() {
            return Err(format!("hub.{field}: {m}"));
        }
        let w = &self.routing.weights;
        let weights = [w.skill, w.load, w.performance, w.affinity, w.cost];
        if weights.iter().any(|x| !x.is_finite() || *x < 0.0) || weights.iter().sum::<f64>() <= 0.0
        {
            return Err("routing.weights must be non-negative and not all zero".into());
        }
        let r = &self.routing;
        if !(r.perf_alpha > 0.0 && r.perf_alpha <= 1.0) {
            return Err(format!(
                "routing.perf-alpha must be in (0, 1], got {}",
                r.perf_alpha
            ));
        }
        if !(r.perf_prior.is_finite() && r.perf_prior >= 0.0) {
            return Err(format!(
                "routing.perf-prior must be >= 0, got {}",
                r.perf_prior
            ));
        }
        if r.batch_max == 0 {
            return Err("routing.batch-max must be at least 1".into());
        }
        let o = &self.observe;
        if o.interval < Duration::from_millis(100) {
            return Err("alerting.interval must be at least 100ms".into());
        }
        torch_core::alerts::validate_rules(&o.rules)?;
        if let Some(url) = &o.webhook
            && !url.starts_with("http://")
        {
            return Err(format!(
                "alerting.webhook must be an http:// URL (this build has no TLS client; \
                 relay to https through a local proxy), got {url:?}"
            ));
        }
        self.routing
            .taxonomy
            .validate()
            .map_err(|e| format!("routing.taxonomy: {e}"))?;
        Ok(())
    }
}

/// Agent lifecycle settings: templates, spawn limits, timings, memory limits.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// Agent templates by name.
    pub templates: Vec<torch_core::lifecycle::AgentTemplate>,
    /// Limits every spawn is checked against.
    pub spawn: torch_core::lifecycle::SpawnLimits,
    /// Time between SIGTERM and SIGKILL when an agent is stopped.
    pub terminate_grace: Duration,
    /// How long a spawned agent may take to register before it counts as failed.
    pub spawn_timeout: Duration,
    /// How often the autoscaler, reaper and recycler run.
    pub tick: Duration,
    /// Size limits of each agent's memory.
    pub memory: torch_store::MemoryLimits,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            templates: Vec::new(),
            spawn: torch_core::lifecycle::SpawnLimits::default(),
            terminate_grace: Duration::from_secs(10),
            spawn_timeout: Duration::from_secs(30),
            tick: Duration::from_secs(1),
            memory: torch_store::MemoryLimits::default(),
        }
    }
}

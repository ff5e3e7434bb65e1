//! The typed configuration: defaults, then `torch.toml`, then `TORCH_SECTION__KEY`
//! environment variables, then command-line flags (applied by each command).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use torch_hub::HubConfig;

use crate::exit::{BAD_INPUT, exit};

/// Everything `torch.toml` can set.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Config {
    /// `[hub]`: the server.
    pub(crate) hub: HubConfig,
    /// `[store]`: where state lives.
    pub(crate) store: StoreConfig,
    /// `[agent]`: defaults for agents started by `torch up`.
    pub(crate) agent: AgentConfig,
    /// `[up]`: the one-command local setup.
    pub(crate) up: UpConfig,
    /// `[routing]`: scoring weights, taxonomy, breaker, batching.
    pub(crate) routing: torch_core::routing::RoutingConfig,
    /// `[templates.NAME]`: agent templates. Read again from the file itself
    /// so errors carry line and column (see [`load`]).
    pub(crate) templates: std::collections::BTreeMap<String, toml::Value>,
    /// `[spawn]`: limits every spawn is checked against.
    pub(crate) spawn: torch_core::lifecycle::SpawnLimits,
    /// `[lifecycle]`: timings, the templates directory, the local node, memory limits.
    pub(crate) lifecycle: LifecycleSection,
    /// `[collaboration]`: direct messages' rate limits, inbox caps, TTL.
    pub(crate) collaboration: CollaborationSection,
    /// `[metrics]`: the Prometheus endpoint.
    pub(crate) metrics: MetricsSection,
    /// `[alerting]`: evaluation, webhook, stuck tasks, capacity planning.
    pub(crate) alerting: AlertingSection,
    /// `[[alerts]]`: alert rules, added to the defaults (a rule named like a
    /// default replaces it).
    pub(crate) alerts: Vec<torch_core::alerts::AlertRule>,
    /// `[audit]`: the audit log's checkpoints and retention.
    pub(crate) audit: torch_hub::AuditConfig,
    /// TLS of `torch serve` (from its flags, never from the file).
    #[serde(skip)]
    pub(crate) tls: ServeTls,
}

/// `[collaboration]`: limits on direct messages between agents. The hub
/// reads `relay-cap`, `message-rate`, `message-burst` and `message-ttl`; an
/// agent reads the rest and the rate, burst and TTL too.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct CollaborationSection {
    /// Messages per second one sender may send (its token bucket's refill),
    /// enforced by the sending agent, the recipient and the hub's relay.
    pub(crate) message_rate: f64,
    /// Messages a sender may send at once (the bucket's size).
    pub(crate) message_burst: u32,
    /// Messages an agent's inbox keeps; past it the oldest non-urgent one is
    /// dropped with a bounce to its sender.
    pub(crate) inbox_cap: usize,
    /// Messages the hub keeps for one unreachable recipient.
    pub(crate) relay_cap: usize,
    /// A direct message whose send time is further than this from the
    /// recipient's clock is refused as a replay.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) replay_window: Duration,
    /// Time to live of a message that names none.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) message_ttl: Duration,
}

impl Default for CollaborationSection {
    fn default() -> Self {
        let a = torch_agent::MessageLimits::default();
        let h = torch_hub::MessagingConfig::default();
        CollaborationSection {
            message_rate: a.rate,
            message_burst: a.burst,
            inbox_cap: a.inbox_cap,
            relay_cap: h.relay_cap,
            replay_window: a.replay_window,
            message_ttl: a.default_ttl,
        }
    }
}

impl CollaborationSection {
    /// The agent's message limits.
    pub(crate) fn agent_limits(&self) -> torch_agent::MessageLimits {
        torch_agent::MessageLimits {
            rate: self.message_rate,
            burst: self.message_burst,
            inbox_cap: self.inbox_cap,
            replay_window: self.replay_window,
            default_ttl: self.message_ttl,
        }
    }

    /// The hub's message limits.
    pub(crate) fn hub_limits(&self) -> torch_hub::MessagingConfig {
        torch_hub::MessagingConfig {
            relay_cap: self.relay_cap,
            rate: self.message_rate,
            burst: self.message_burst,
            default_ttl: self.message_ttl,
        }
    }
}

/// `[metrics]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct MetricsSection {
    /// Serve `GET /metrics` without a token (default: an admin or
    /// submitter token is needed, e.g. Prometheus' `authorization`).
    pub(crate) public: bool,
}

/// `[alerting]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AlertingSection {
    /// How often the rules are evaluated.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) interval: Duration,
    /// Evaluate the default rules (`false`: only `[[alerts]]`).
    pub(crate) defaults: bool,
    /// POST firing and resolved alerts here (`http://…`).
    pub(crate) webhook: Option<String>,
    /// Signs webhook bodies (HMAC-SHA256, header `X-Torch-Signature`).
    /// Env: TORCH_ALERTING__WEBHOOK_SECRET.
    pub(crate) webhook_secret: Option<String>,
    /// A leased task with no sign of life for this long counts as stuck.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) stuck_after: Duration,
    /// `torch capacity`: the p95 schedule-to-start a pool should keep.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) capacity_target: Duration,
    /// `torch capacity`: the default window.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) capacity_window: Duration,
}

impl Default for AlertingSection {
    fn default() -> Self {
        let d = torch_hub::ObserveConfig::default();
        AlertingSection {
            interval: d.interval,
            defaults: true,
            webhook: None,
            webhook_secret: None,
            stuck_after: d.stuck_after,
            capacity_target: d.capacity_target,
            capacity_window: d.capacity_window,
        }
    }
}

/// How `torch serve` speaks TLS (`--tls-cert`/`--tls-key` or `--tls-self-signed`).
#[derive(Clone, Debug, Default)]
pub(crate) struct ServeTls {
    /// The server configuration; `None` serves plain HTTP.
    pub(crate) server: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The CA the hub's own node and its forwarding to other hubs trust.
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

/// `[lifecycle]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct LifecycleSection {
    /// How often the autoscaler, recycler and reaper run.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) tick: Duration,
    /// SIGTERM → SIGKILL grace when an agent is stopped.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) terminate_grace: Duration,
    /// How long a spawned agent may take to register.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) spawn_timeout: Duration,
    /// Directory of `NAME.toml` template files (default `templates`, when it exists).
    pub(crate) templates_dir: Option<PathBuf>,
    /// Run a node inside the hub process (`torch serve`, `torch up`).
    pub(crate) local_node: bool,
    /// Most agents the local node runs.
    pub(crate) local_node_max_agents: u32,
    /// Largest value in an agent's memory, in bytes.
    pub(crate) memory_max_value_bytes: usize,
    /// Most keys in an agent's memory.
    pub(crate) memory_max_keys: usize,
    /// Most bytes (keys plus values) in an agent's memory.
    pub(crate) memory_max_total_bytes: usize,
}

impl Default for LifecycleSection {
    fn default() -> Self {
        let d = torch_hub::LifecycleConfig::default();
        LifecycleSection {
            tick: d.tick,
            terminate_grace: d.terminate_grace,
            spawn_timeout: d.spawn_timeout,
            templates_dir: None,
            local_node: true,
            local_node_max_agents: 64,
            memory_max_value_bytes: d.memory.max_value_bytes,
            memory_max_keys: d.memory.max_keys,
            memory_max_total_bytes: d.memory.max_total_bytes,
        }
    }
}

/// `[store]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct StoreConfig {
    /// A shared store for many hubs: `redis://host:port/db` or `rediss://…`
    /// (TLS). Unset: the embedded store in `data-dir`.
    pub(crate) url: Option<String>,
    /// Approximate length each Redis stream is trimmed to (`MAXLEN ~`).
    pub(crate) redis_maxlen: u64,
    /// PEM file of a private CA that signed the Redis server's certificate
    /// (`rediss://`); unset: the system's roots.
    pub(crate) redis_ca_file: Option<PathBuf>,
    /// Directory holding `torch.db`.
    pub(crate) data_dir: PathBuf,
    /// `normal` survives a crash of any process (kill -9); `full` also survives
    /// power loss, at the cost of an fsync per group commit.
    pub(crate) sync: SyncMode,
    /// Finished tasks (succeeded, dead, cancelled) last updated longer ago
    /// than this are deleted, with their output (e.g. `7d`); unset keeps
    /// every task. On Redis, memory grows by about 3.6 KB per task without it.
    #[serde(
        default,
        with = "torch_core::spec::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) retention: Option<std::time::Duration>,
}

/// SQLite durability level.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SyncMode {
    /// WAL + synchronous=NORMAL.
    Normal,
    /// WAL + synchronous=FULL.
    Full,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            redis_maxlen: 100_000,
            redis_ca_file: None,
            data_dir: PathBuf::from(".torch"),
            sync: SyncMode::Normal,
            retention: None,
        }
    }
}

/// `[agent]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AgentConfig {
    /// SIGTERM → SIGKILL grace when a task times out or is cancelled.
    #[serde(with = "torch_core::spec::duration")]
    pub(crate) kill_grace: Duration,
    /// Environment variables passed through to tasks.
    pub(crate) env_allowlist: Vec<String>,
    /// Bytes of each output stream written to the task's log file.
    pub(crate) max_log_bytes: u64,
    /// `[agent.sandbox]`: the task sandbox policy (require, files, network,
    /// read, write, cpus). Since v0.2.
    pub(crate) sandbox: torch_core::sandbox::SandboxPolicy,
    /// Sandbox layers to treat as missing on this machine (`files`,
    /// `network`, `memory`, `pids`, `cpu`, `syscalls`), like
    /// `torch agent --sandbox-disable`. Since v0.2.
    pub(crate) sandbox_disable: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        let d = torch_agent::AgentConfig::new(String::new(), String::new(), String::new());
        AgentConfig {
            kill_grace: d.kill_grace,
            env_allowlist: d.env_allowlist,
            max_log_bytes: d.max_log_bytes,
            sandbox: d.sandbox,
            sandbox_disable: d.sandbox_disabled,
        }
    }
}

/// `[up]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct UpConfig {
    /// Local agents to start.
    pub(crate) agents: u32,
    /// Slots per agent.
    pub(crate) slots: u32,
    /// Skills of the local agents.
    pub(crate) skills: String,
}

impl Default for UpConfig {
    fn default() -> Self {
        UpConfig {
            agents: 2,
            slots: 4,
            skills: "sh".into(),
        }
    }
}

/// Loads the layered configuration. A file named explicitly must exist.
pub(crate) fn load(explicit: Option<&Path>) -> Result<Config> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    let mut file: Option<PathBuf> = None;
    match explicit {
        Some(p) => {
            if !p.exists() {
                return Err(exit(
                    BAD_INPUT,
                    format!("config file {} does not exist", p.display()),
                ));
            }
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config file {}", p.display()))?;
            // Parse once ourselves for a located syntax error.
            toml::from_str::<toml::Table>(&text)
                .map_err(|e| exit(BAD_INPUT, format!("{}: {}", p.display(), e)))?;
            fig = fig.merge(Toml::file(p));
            file = Some(p.to_path_buf());
        }
        None => {
            if Path::new("torch.toml").exists() {
                fig = fig.merge(Toml::file("torch.toml"));
                file = Some(PathBuf::from("torch.toml"));
            }
        }
    }
    fig = fig.merge(
        Env::prefixed("TORCH_")
            .filter_map(|k| {
                k.as_str()
                    .contains("__")
                    .then(|| k.as_str().replace("__", ".").replace('_', "-").into())
            })
            .lowercase(true),
    );
    let cfg: Config = fig
        .extract()
        .map_err(|e| exit(BAD_INPUT, format!("invalid configuration: {e}")))?;
    let mut cfg = cfg;
    cfg.hub.routing = cfg.routing.clone();
    cfg.hub.retention = cfg.store.retention;
    cfg.hub.audit = cfg.audit.clone();
    cfg.hub.messages = cfg.collaboration.hub_limits();
    cfg.hub.lifecycle = lifecycle(&cfg, file.as_deref())?;
    cfg.hub.observe = observe(&cfg);
    cfg.hub
        .validate()
        .map_err(|e| exit(BAD_INPUT, format!("invalid configuration: {e}")))?;
    Ok(cfg)
}

/// The hub's metrics and alerting settings: the default rules (unless
/// turned off) merged with `[[alerts]]`.
fn observe(cfg: &Config) -> torch_hub::ObserveConfig {
    let a = &cfg.alerting;
    let defaults = if a.defaults {
        torch_core::alerts::default_rules()
    } else {
        Vec::new()
    };
    torch_hub::ObserveConfig {
        metrics_public: cfg.metrics.public,
        interval: a.interval,
        rules: torch_core::alerts::merge_rules(defaults, &cfg.alerts),
        stuck_after: a.stuck_after,
        webhook: a.webhook.clone(),
        webhook_secret: a.webhook_secret.clone(),
        capacity_target: a.capacity_target,
        capacity_window: a.capacity_window,
    }
}

/// The hub's lifecycle settings: templates from the config file (located
/// errors) and the templates directory, plus the `[spawn]` and `[lifecycle]` sections.
fn lifecycle(cfg: &Config, file: Option<&Path>) -> Result<torch_hub::LifecycleConfig> {
    use torch_core::lifecycle::{parse_template_file, parse_templates};
    let bad = |e: String| exit(BAD_INPUT, format!("invalid template:\n{e}"));
    let mut templates = Vec::new();
    if let Some(p) = file
        && !cfg.templates.is_empty()
    {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading config file {}", p.display()))?;
        templates =
            parse_templates(&p.display().to_string(), &text).map_err(|e| bad(e.to_string()))?;
    }
    let dir = match &cfg.lifecycle.templates_dir {
        Some(d) => {
            if !d.is_dir() {
                return Err(exit(
                    BAD_INPUT,
                    format!("lifecycle.templates-dir {} is not a directory", d.display()),
                ));
            }
            Some(d.clone())
        }
        None => Some(PathBuf::from("templates")).filter(|d| d.is_dir()),
    };
    if let Some(dir) = dir {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading templates dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading template {}", path.display()))?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let t = parse_template_file(&path.display().to_string(), &name, &text)
                .map_err(|e| bad(e.to_string()))?;
            if templates
                .iter()
                .any(|x: &torch_core::lifecycle::AgentTemplate| x.name == t.name)
            {
                return Err(bad(format!(
                    "{}: template {:?} is also defined in the config file",
                    path.display(),
                    t.name
                )));
            }
            templates.push(t);
        }
    }
    let l = &cfg.lifecycle;
    let mut problems: Vec<String> = cfg
        .spawn
        .problems()
        .into_iter()
        .map(|(f, m)| format!("spawn.{f}: {m}"))
        .collect();
    if l.tick < Duration::from_millis(10) {
        problems.push("lifecycle.tick: must be at least 10ms".into());
    }
    if !problems.is_empty() {
        return Err(exit(
            BAD_INPUT,
            format!("invalid configuration: {}", problems.join("; ")),
        ));
    }
    let memory = torch_store::MemoryLimits {
        max_value_bytes: l.memory_max_value_bytes,
        max_keys: l.memory_max_keys,
        max_total_bytes: l.memory_max_total_bytes,
        ..torch_store::MemoryLimits::default()
    };
    Ok(torch_hub::LifecycleConfig {
        templates,
        spawn: cfg.spawn.clone(),
        terminate_grace: l.terminate_grace,
        spawn_timeout: l.spawn_timeout,
        tick: l.tick,
        memory,
    })
}

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
}

/// `[store]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct StoreConfig {
    /// Directory holding `torch.db`.
    pub(crate) data_dir: PathBuf,
    /// `normal` survives a crash of any process (kill -9); `full` also survives
    /// power loss, at the cost of an fsync per group commit.
    pub(crate) sync: SyncMode,
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
            data_dir: PathBuf::from(".torch"),
            sync: SyncMode::Normal,
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
}

impl Default for AgentConfig {
    fn default() -> Self {
        let d = torch_agent::AgentConfig::new(String::new(), String::new(), String::new());
        AgentConfig {
            kill_grace: d.kill_grace,
            env_allowlist: d.env_allowlist,
            max_log_bytes: d.max_log_bytes,
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
        }
        None => {
            if Path::new("torch.toml").exists() {
                fig = fig.merge(Toml::file("torch.toml"));
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
    cfg.hub
        .validate()
        .map_err(|e| exit(BAD_INPUT, format!("invalid configuration: {e}")))?;
    Ok(cfg)
}

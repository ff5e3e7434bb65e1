//! Node configuration: what `torch node` hands to [`super::run_node`].

use std::fmt;
use std::path::PathBuf;

use crate::config::{config_err, endpoint_urls};
use crate::error::AgentError;

/// Default cap on agent processes per node.
pub const DEFAULT_MAX_AGENTS: u32 = 8;

/// Everything a node needs to join a hub and start agents.
///
/// `Debug` redacts the token.
#[derive(Clone)]
pub struct NodeConfig {
    /// Base URL of the hub, e.g. `http://127.0.0.1:7700`. The node connects
    /// to `{hub_url}/api/v1/node/ws` and hands the same URL to its agents.
    pub hub_url: String,
    /// Node-role token (agent tokens work too): authenticates the node and is handed to every agent
    /// it starts (in the agent's environment, never on its command line).
    pub token: String,
    /// CA certificate (PEM) a `https://` hub is verified with, instead of
    /// the system's roots; passed on to the agents it starts (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Node name; the hub identifies the node by it.
    pub name: String,
    /// Most agent processes alive at once (at least 1); spawn orders past it
    /// are refused.
    pub max_agents: u32,
    /// The `torch` binary agents are started with (`<torch_exe> agent …`).
    pub torch_exe: PathBuf,
    /// Each agent gets the work dir `<work_root>/<agent-id>`, removed when it
    /// exits (unless `--keep-workdirs` is among `extra_agent_args`).
    pub work_root: PathBuf,
    /// Each agent's stdout and stderr are appended to
    /// `<log_dir>/<agent-id>.log`; `None` lets them inherit the node's.
    pub log_dir: Option<PathBuf>,
    /// Extra arguments appended to every `torch agent` command line.
    pub extra_agent_args: Vec<String>,
}

impl NodeConfig {
    /// A config with defaults: [`DEFAULT_MAX_AGENTS`], work dirs under
    /// `$TMPDIR/torch-node`, agent output inherited, no extra arguments.
    pub fn new(
        hub_url: impl Into<String>,
        token: impl Into<String>,
        name: impl Into<String>,
        torch_exe: impl Into<PathBuf>,
    ) -> Self {
        NodeConfig {
            hub_url: hub_url.into(),
            token: token.into(),
            ca_file: None,
            name: name.into(),
            max_agents: DEFAULT_MAX_AGENTS,
            torch_exe: torch_exe.into(),
            work_root: std::env::temp_dir().join("torch-node"),
            log_dir: None,
            extra_agent_args: Vec::new(),
        }
    }

    /// Checks the config and returns the node WebSocket URL of each hub given.
    pub(crate) fn validate(&self) -> Result<Vec<String>, AgentError> {
        if self.name.trim().is_empty() {
            return Err(config_err("name", "must not be empty"));
        }
        if self.max_agents == 0 {
            return Err(config_err("max_agents", "must be at least 1"));
        }
        if !self.torch_exe.is_file() {
            return Err(config_err(
                "torch_exe",
                format!("{} is not a file", self.torch_exe.display()),
            ));
        }
        endpoint_urls(&self.hub_url, "node/ws")
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("hub_url", &self.hub_url)
            .field("token", &"<redacted>")
            .field("name", &self.name)
            .field("max_agents", &self.max_agents)
            .field("torch_exe", &self.torch_exe)
            .field("work_root", &self.work_root)
            .field("log_dir", &self.log_dir)
            .field("extra_agent_args", &self.extra_agent_args)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_redaction() {
        let exe = std::env::current_exe().unwrap();
        let cfg = NodeConfig::new("http://127.0.0.1:7700/", "s3cret", "n1", &exe);
        assert_eq!(
            cfg.validate().unwrap(),
            ["ws://127.0.0.1:7700/api/v1/node/ws"]
        );
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let check = |f: fn(&mut NodeConfig)| {
            let mut c = cfg.clone();
            f(&mut c);
            match c.validate() {
                Err(AgentError::Config { field, .. }) => field,
                other => panic!("expected a config error, got {other:?}"),
            }
        };
        assert_eq!(check(|c| c.max_agents = 0), "max_agents");
        assert_eq!(check(|c| c.name = " ".into()), "name");
        assert_eq!(
            check(|c| c.torch_exe = "/nonexistent/torch".into()),
            "torch_exe"
        );
        assert_eq!(check(|c| c.hub_url = "ftp://h:1".into()), "hub_url");
    }
}

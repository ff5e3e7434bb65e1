//! Agent configuration: what the `torch agent` subcommand hands to [`crate::run`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use torch_api::API_PREFIX;
use torch_core::lifecycle::{AgentTemplate, Executor, SandboxLimits};
use torch_core::sandbox::SandboxPolicy;
use torch_core::{AgentId, Skill};

use crate::error::AgentError;

/// Environment variables a task inherits from the agent by default.
pub const DEFAULT_ENV_ALLOWLIST: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "TERM", "TZ", "USER", "LOGNAME", "TMPDIR", "SHELL",
];

/// Default grace between SIGTERM and SIGKILL of a task's process group.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// Default cap on each of stdout and stderr written to a task's log files.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// Label carrying the agent's hub-chosen id (set when [`AgentConfig::agent_id`]
/// is); the hub pins tasks delegated to a helper agent with it.
pub const LABEL_AGENT_ID: &str = "torch.id";

/// Everything an agent needs to join a hub and run tasks.
///
/// `Debug` redacts the token.
#[derive(Clone)]
pub struct AgentConfig {
    /// Base URL of the hub, e.g. `http://127.0.0.1:7700` (`ws://` is accepted
    /// too). The agent connects to `{hub_url}/api/v1/agent/ws`. Several hubs
    /// sharing a store may be given, comma-separated: the agent tries them
    /// in turn until one answers (a follower then sends it on to the leader).
    pub hub_url: String,
    /// Agent bearer token sent when connecting; never logged.
    pub token: String,
    /// CA certificate (PEM) a `https://` hub is verified with, instead of
    /// the system's roots; also handed to tasks as `TORCH_CA_FILE`.
    pub ca_file: Option<PathBuf>,
    /// Agent name shown by the hub.
    pub name: String,
    /// Skills (with proficiency) the agent advertises.
    pub skills: Vec<Skill>,
    /// How many tasks may run at once (at least 1).
    pub slots: u32,
    /// Labels the hub may route on.
    pub labels: BTreeMap<String, String>,
    /// Cost of one task on this agent (any unit consistent across the fleet);
    /// the hub's router prefers cheaper agents by its cost weight.
    pub cost: Option<f64>,
    /// Directory under which each attempt gets its own work dir
    /// `<task_id>-<attempt>`; created if missing.
    pub work_root: PathBuf,
    /// Path of the `torch` binary. When set, every task runs under
    /// `<path> __supervise …`, which kills the task's process group if the
    /// agent dies, and its directory is prepended to the task's `PATH` so the
    /// task can call `torch progress`. `None` spawns tasks directly: they
    /// survive a `kill -9` of the agent.
    pub supervisor: Option<PathBuf>,
    /// Names of the agent's environment variables a task inherits; everything
    /// else is cleared.
    pub env_allowlist: Vec<String>,
    /// Time between SIGTERM and SIGKILL when a task is stopped.
    pub kill_grace: Duration,
    /// Cap on each of stdout and stderr written to the task's log files; the
    /// rest is read and dropped so the task never blocks on a full pipe.
    pub max_log_bytes: u64,
    /// Keep work dirs after their report is acknowledged (for debugging).
    pub keep_workdirs: bool,
    /// The id the hub chose when it ordered this agent (spawned by a node):
    /// sent in the first Hello so the hub recognises the agent, and
    /// advertised as the label [`LABEL_AGENT_ID`].
    pub agent_id: Option<AgentId>,
    /// What runs a task that has a `prompt` and no `command` (from a
    /// template). Before it starts, the attempt's work dir gets `task.json`
    /// (the assignment without its token; this is `{task_file}`) and
    /// `prompt.txt` (the prompt alone). `prompt-via = "arg"` passes the prompt
    /// as an argument, `"stdin"` makes `prompt.txt` the executor's stdin
    /// (otherwise `/dev/null`), `"file"` passes nothing more: the executor
    /// reads `{task_file}` or `prompt.txt` itself. `None`: prompt tasks fail
    /// as fatal.
    pub executor: Option<Executor>,
    /// Resource limits for every task process: rlimits applied by the
    /// supervisor (so they need [`AgentConfig::supervisor`]), and
    /// `wall_time` as the timeout of tasks that set none (or a shorter one).
    pub limits: SandboxLimits,
    /// The operator's sandbox policy for every task (narrowed by the
    /// template's and each task's own); layers need the supervisor.
    pub sandbox: SandboxPolicy,
    /// Sandbox layers to treat as unavailable on this machine (`files`,
    /// `network`, `memory`, `pids`, `cpu`, `syscalls`): to try a strict
    /// policy, or to run where a layer misbehaves. Reported as missing.
    pub sandbox_disabled: Vec<String>,
    /// Where the agent keeps its identity (key pair, id) and its inbox
    /// across restarts. `None`: a fresh identity and an in-memory inbox.
    pub data_dir: Option<PathBuf>,
    /// Where the agent takes direct messages from peers and requests from
    /// its own tasks.
    pub listen: Listen,
    /// Limits on direct messages (`[collaboration]`).
    pub messages: MessageLimits,
    /// A bearer token accepted on the agent's local routes besides its
    /// running tasks' tokens (for the process embedding the agent, e.g.
    /// `torch bench collab`); never logged.
    pub local_token: Option<String>,
}

/// Where an agent listens for direct messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Listen {
    /// An ephemeral port on the address the agent reaches the hub from.
    #[default]
    Auto,
    /// This address (port 0: ephemeral).
    Addr(std::net::SocketAddr),
    /// Not at all: peers' messages reach it through the hub, and its tasks
    /// cannot send.
    Off,
}

/// Limits on direct messages, shared by the agent and the hub
/// (`[collaboration]` in `torch.toml`).
#[derive(Clone, Debug, PartialEq)]
pub struct MessageLimits {
    /// Messages per second one sender may send (token bucket refill).
    pub rate: f64,
    /// Messages a sender may send at once (token bucket size).
    pub burst: u32,
    /// Messages an inbox keeps; past it the oldest non-urgent one is
    /// dropped with a bounce (all urgent: the new one is refused).
    pub inbox_cap: usize,
    /// A direct message whose `sent_ms` is further than this from the
    /// recipient's clock is refused (replay window); ids seen within it are
    /// remembered.
    pub replay_window: Duration,
    /// Time to live of a message that names none.
    pub default_ttl: Duration,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            rate: 2_000.0,
            burst: 4_000,
            inbox_cap: 10_000,
            replay_window: Duration::from_secs(300),
            default_ttl: Duration::from_secs(3_600),
        }
    }
}

impl AgentConfig {
    /// A config with defaults: one slot, no skills or labels, work dirs under
    /// `$TMPDIR/torch-work`, no supervisor, the default env allowlist, 5 s kill
    /// grace, 8 MiB log cap, work dirs removed once reported.
    pub fn new(
        hub_url: impl Into<String>,
        token: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        AgentConfig {
            hub_url: hub_url.into(),
            token: token.into(),
            ca_file: None,
            name: name.into(),
            skills: Vec::new(),
            slots: 1,
            labels: BTreeMap::new(),
            cost: None,
            work_root: std::env::temp_dir().join("torch-work"),
            supervisor: None,
            env_allowlist: DEFAULT_ENV_ALLOWLIST
                .iter()
                .map(|s| s.to_string())
                .collect(),
            kill_grace: DEFAULT_KILL_GRACE,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            keep_workdirs: false,
            agent_id: None,
            executor: None,
            limits: SandboxLimits::default(),
            sandbox: SandboxPolicy::default(),
            sandbox_disabled: Vec::new(),
            data_dir: None,
            listen: Listen::Auto,
            messages: MessageLimits::default(),
            local_token: None,
        }
    }

    /// Takes skills, slots, labels, cost, executor, limits and the
    /// environment allowlist (added to the current one; `FOO_*` entries
    /// match by prefix) from a template. Explicit settings applied
    /// afterwards still override.
    pub fn apply_template(&mut self, t: &AgentTemplate) -> Result<(), AgentError> {
        self.skills = t
            .skills
            .iter()
            .map(|s| {
                s.parse::<Skill>()
                    .map_err(|e| config_err("skills", format!("template skill {s:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        self.slots = t.slots;
        self.labels
            .extend(t.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.cost = Some(t.cost);
        self.executor = Some(t.executor.clone());
        self.limits = t.limits.clone();
        self.sandbox = self.sandbox.tighten(&t.sandbox);
        for name in &t.env {
            if !self.env_allowlist.contains(name) {
                self.env_allowlist.push(name.clone());
            }
        }
        Ok(())
    }

    /// True when some rlimit is set (they need the supervisor).
    pub(crate) fn has_rlimits(&self) -> bool {
        let l = &self.limits;
        l.cpu_secs.is_some()
            || l.memory.is_some()
            || l.open_files.is_some()
            || l.processes.is_some()
    }

    /// Checks the config and returns the WebSocket URL of each hub given.
    pub(crate) fn validate(&self) -> Result<Vec<String>, AgentError> {
        if self.name.trim().is_empty() {
            return Err(config_err("name", "must not be empty"));
        }
        if self.slots == 0 {
            return Err(config_err("slots", "must be at least 1"));
        }
        if let Some(sup) = &self.supervisor
            && !sup.is_file()
        {
            return Err(config_err(
                "supervisor",
                format!("{} is not a file", sup.display()),
            ));
        }
        if self.supervisor.is_none() && self.has_rlimits() {
            return Err(config_err(
                "limits",
                "resource limits are applied by the supervisor: set `supervisor` (the torch binary)",
            ));
        }
        if let Some(e) = &self.executor
            && e.command.is_empty()
        {
            return Err(config_err("executor", "the command is empty"));
        }
        endpoint_urls(&self.hub_url, "agent/ws")
    }
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("hub_url", &self.hub_url)
            .field("token", &"<redacted>")
            .field("name", &self.name)
            .field("skills", &self.skills)
            .field("slots", &self.slots)
            .field("labels", &self.labels)
            .field("work_root", &self.work_root)
            .field("supervisor", &self.supervisor)
            .field("env_allowlist", &self.env_allowlist)
            .field("kill_grace", &self.kill_grace)
            .field("max_log_bytes", &self.max_log_bytes)
            .field("keep_workdirs", &self.keep_workdirs)
            .field("agent_id", &self.agent_id)
            .field("executor", &self.executor)
            .field("limits", &self.limits)
            .field("sandbox", &self.sandbox)
            .field("sandbox_disabled", &self.sandbox_disabled)
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("messages", &self.messages)
            .finish()
    }
}

/// A config error on `field` (agent or node config).
pub(crate) fn config_err(field: &'static str, problem: impl Into<String>) -> AgentError {
    AgentError::Config {
        field,
        problem: problem.into(),
    }
}

/// A comma-separated list of hub URLs → their `endpoint` WebSocket URLs,
/// in order; at least one.
/// The TLS client configuration for `ca_file` (system roots without one).
pub(crate) fn tls(
    ca_file: Option<&std::path::Path>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, AgentError> {
    torch_tls::client_config(ca_file).map_err(|e| config_err("ca_file", e.to_string()))
}

pub(crate) fn endpoint_urls(hub_urls: &str, endpoint: &str) -> Result<Vec<String>, AgentError> {
    let urls: Vec<String> = hub_urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| endpoint_url(u, endpoint))
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err(config_err("hub_url", "no hub URL given"));
    }
    Ok(urls)
}

/// `http://host:port[/base]` → `ws://host:port[/base]/api/v1/{endpoint}`
/// (`https://` → `wss://`).
pub(crate) fn endpoint_url(hub_url: &str, endpoint: &str) -> Result<String, AgentError> {
    let base = hub_url.trim().trim_end_matches('/');
    let schemes = [
        ("http://", "ws"),
        ("ws://", "ws"),
        ("https://", "wss"),
        ("wss://", "wss"),
    ];
    let Some((rest, ws)) = schemes
        .iter()
        .find_map(|(prefix, ws)| base.strip_prefix(prefix).map(|r| (r, *ws)))
    else {
        return Err(config_err(
            "hub_url",
            format!("{base:?}: expected http://HOST:PORT or https://HOST:PORT"),
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(config_err("hub_url", format!("{base:?}: missing host")));
    }
    Ok(format!("{ws}://{rest}{API_PREFIX}/{endpoint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_urls_and_redaction() {
        let cfg = AgentConfig::new("http://127.0.0.1:7700/", "s3cret", "a1");
        assert_eq!(cfg.slots, 1);
        assert_eq!(cfg.kill_grace, Duration::from_secs(5));
        assert_eq!(cfg.max_log_bytes, 8 << 20);
        assert!(cfg.env_allowlist.iter().any(|v| v == "PATH"));
        assert_eq!(
            cfg.validate().unwrap(),
            ["ws://127.0.0.1:7700/api/v1/agent/ws"]
        );
        let mut two = cfg.clone();
        two.hub_url = " http://a:1/, ws://b:2 ,".into();
        assert_eq!(
            two.validate().unwrap(),
            ["ws://a:1/api/v1/agent/ws", "ws://b:2/api/v1/agent/ws"]
        );
        two.hub_url = " , ".into();
        assert!(matches!(
            two.validate(),
            Err(AgentError::Config {
                field: "hub_url",
                ..
            })
        ));
        two.hub_url = "http://a:1,ftp://b:2".into();
        assert!(two.validate().is_err(), "every URL is checked");
        assert!(!format!("{cfg:?}").contains("s3cret"));

        assert_eq!(
            endpoint_url("ws://h:1/base", "agent/ws").unwrap(),
            "ws://h:1/base/api/v1/agent/ws"
        );
        assert_eq!(
            endpoint_url("https://h:1", "agent/ws").unwrap(),
            "wss://h:1/api/v1/agent/ws"
        );
        assert!(endpoint_url("h:1", "agent/ws").is_err());
        assert!(endpoint_url("http://", "agent/ws").is_err());

        let mut bad = cfg.clone();
        bad.slots = 0;
        assert!(matches!(
            bad.validate(),
            Err(AgentError::Config { field: "slots", .. })
        ));
        let mut bad = cfg.clone();
        bad.limits.open_files = Some(16);
        assert!(matches!(
            bad.validate(),
            Err(AgentError::Config {
                field: "limits",
                ..
            })
        ));
        bad.limits.open_files = None;
        bad.limits.wall_time = Some(Duration::from_secs(1));
        assert!(bad.validate().is_ok(), "wall time needs no supervisor");
        let mut bad = cfg;
        bad.supervisor = Some(PathBuf::from("/nonexistent/torch"));
        assert!(matches!(
            bad.validate(),
            Err(AgentError::Config {
                field: "supervisor",
                ..
            })
        ));
    }

    #[test]
    fn templates_fill_the_config() {
        let mut t = AgentTemplate::new(
            "reviewer",
            Executor {
                command: vec!["claude".into(), "-p".into()],
                prompt_via: Default::default(),
                output: Default::default(),
                ..Default::default()
            },
        );
        t.skills = vec!["rust:0.9".into(), "review".into()];
        t.slots = 3;
        t.labels.insert("team".into(), "core".into());
        t.cost = 2.5;
        t.env = vec!["ANTHROPIC_API_KEY".into(), "CARGO_*".into(), "PATH".into()];
        t.limits.open_files = Some(256);
        let mut cfg = AgentConfig::new("http://h:1", "t", "a");
        cfg.labels.insert("zone".into(), "a".into());
        cfg.apply_template(&t).unwrap();
        let skills: Vec<String> = cfg.skills.iter().map(|s| s.to_string()).collect();
        assert_eq!(skills.len(), 2);
        assert_eq!(cfg.slots, 3);
        assert_eq!(cfg.labels["team"], "core");
        assert_eq!(cfg.labels["zone"], "a", "existing labels kept");
        assert_eq!(cfg.cost, Some(2.5));
        assert_eq!(cfg.executor.as_ref().unwrap().command[0], "claude");
        assert_eq!(cfg.limits.open_files, Some(256));
        assert!(cfg.has_rlimits());
        let n_path = cfg.env_allowlist.iter().filter(|v| *v == "PATH").count();
        assert_eq!(n_path, 1, "no duplicates");
        assert!(cfg.env_allowlist.iter().any(|v| v == "CARGO_*"));
        assert!(cfg.env_allowlist.iter().any(|v| v == "ANTHROPIC_API_KEY"));

        t.skills = vec!["rust:7".into()];
        assert!(matches!(
            cfg.apply_template(&t),
            Err(AgentError::Config {
                field: "skills",
                ..
            })
        ));
    }
}

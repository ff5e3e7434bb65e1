//! Command-line definitions (clap). One subcommand per file under `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub(crate) use crate::cli_bench::{BenchCmd, ExecMode, SpawnBenchArgs, ThroughputArgs};
pub(crate) use crate::cli_coord::{HelpCmd, LockCmd, LocksCmd};

/// Nova Torch: route tasks to a fleet of agents, durably.
///
/// Start everything locally with `torch up`, submit work with `torch submit`,
/// follow it with `torch tasks` and `torch watch`. Try `torch demo` first.
#[derive(Debug, Parser)]
#[command(
    name = "torch",
    version,
    propagate_version = true,
    max_term_width = 100,
    // `torch help` is the help-request command; `--help` stays.
    disable_help_subcommand = true
)]
pub(crate) struct Cli {
    /// Configuration file (default: ./torch.toml if present). Env: TORCH_CONFIG.
    #[arg(long, global = true, env = "TORCH_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `torch_hub=debug`. Env: TORCH_LOG.
    #[arg(long, global = true, env = "TORCH_LOG")]
    pub(crate) log: Option<String>,
    /// CA certificate (PEM) a `https://` hub is verified with, instead of
    /// the system's roots (agents, nodes, the CLI, tasks). Env: TORCH_CA_FILE.
    #[arg(long, global = true, env = "TORCH_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) cmd: Command,
}

/// Where the hub is and how to authenticate (client commands).
#[derive(Debug, Clone, Args)]
pub(crate) struct HubArgs {
    /// Hub URL. Several hubs sharing a store may be listed, comma-separated:
    /// one that cannot be reached is skipped for the next. Env: TORCH_HUB.
    #[arg(long, env = "TORCH_HUB", default_value = "http://127.0.0.1:7700")]
    pub(crate) hub: String,
    /// API token (admin or submitter). Env: TORCH_TOKEN.
    #[arg(long, env = "TORCH_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// Output format of read commands.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct OutArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the hub: API, scheduler, leases, agent sessions.
    Serve(ServeArgs),
    /// Join a hub as an agent and run tasks.
    Agent(AgentArgs),
    /// Start a hub plus local agents in one process tree (Ctrl-C stops all).
    Up(UpArgs),
    /// Submit tasks from a file (TOML/JSON), stdin (`-`), or inline after `--`.
    Submit(SubmitArgs),
    /// List, show, cancel, retry tasks and read their logs.
    Tasks {
        #[command(subcommand)]
        cmd: TasksCmd,
    },
    /// List agents.
    Agents {
        #[command(subcommand)]
        cmd: AgentsCmd,
    },
    /// Follow the event streams (all, or the named streams / prefixes).
    Watch(WatchArgs),
    /// From inside a task: a Model Context Protocol server over stdio for
    /// the agent CLI running the task (uses TORCH_TASK_TOKEN). Tools:
    /// get_task, report_progress, delegate_task, spawn_helper, wait_task.
    Mcp,
    /// The hub's counters, assignment latency and autonomy metrics
    /// (self-spawns, tasks without intervention, tasks per agent-hour,
    /// time to adapt).
    Stats {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
    },
    /// The tamper-evident audit log: list entries, verify the hash chain,
    /// export a signed checkpoint.
    Audit {
        #[command(subcommand)]
        cmd: crate::cli_audit::AuditCmd,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// From inside a task: report progress (uses TORCH_TASK_TOKEN).
    Progress(ProgressArgs),
    /// Tokens and dollars used, from the usage stored with attempts; `usage
    /// report` adds to the running attempt's from inside a task.
    Usage(UsageArgs),
    /// Agent templates: list the configured ones, or check template files.
    Templates {
        #[command(subcommand)]
        cmd: TemplatesCmd,
    },
    /// Run a node: start and stop `torch agent` processes when the hub asks.
    Node(NodeArgs),
    /// Start an agent from a template. Inside a task it becomes a helper of
    /// the task's agent (spawn limits apply; it is stopped when the task ends).
    Spawn(SpawnArgs),
    /// From inside a task: submit a child task (cancelled if this task ends
    /// first), optionally on a dedicated helper started from a template.
    Delegate(DelegateArgs),
    /// Wait for tasks to end; exit 3 if any did not succeed, 5 on timeout,
    /// 6 when the wait would close a cycle of waits (deadlock).
    Wait(WaitArgs),
    /// Named locks and path reservations (inside a task or as an operator).
    Lock {
        #[command(subcommand)]
        cmd: LockCmd,
    },
    /// Locks held and waited for, and the wait-for graph.
    Locks {
        #[command(subcommand)]
        cmd: LocksCmd,
    },
    /// Help requests: ask capable peers, list open requests, accept one.
    Help {
        #[command(subcommand)]
        cmd: HelpCmd,
    },
    /// An agent's key/value memory (inside a task: the task's agent).
    Memory {
        #[command(subcommand)]
        cmd: MemoryCmd,
    },
    /// Peers from the hub's registry: skills, state, team, endpoint, key, tasks.
    Peers(crate::cli_msg::PeersArgs),
    /// Teams formed for tasks: members, leader and term, progress, merge queue.
    Teams {
        #[command(subcommand)]
        cmd: crate::cli_teams::TeamsCmd,
    },
    /// From inside a task of a team: the team's status and members.
    Team {
        #[command(subcommand)]
        cmd: crate::cli_teams::TeamCmd,
    },
    /// Signed direct messages between agents (send, inbox, ack; list for operators).
    Msg {
        #[command(subcommand)]
        cmd: crate::cli_msg::MsgCmd,
    },
    /// Validate a spec file without submitting it.
    Validate(ValidateArgs),
    /// Why a task went where it went: candidates, per-factor scores, rejections.
    Explain {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Task id.
        id: String,
    },
    /// Analyse a spec file without submitting: skills, complexity, team need.
    Analyze {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Spec file (TOML or JSON) or `-` for stdin.
        file: String,
    },
    /// Alerts firing now and recent ones (rules: `[[alerts]]` in torch.toml).
    Alerts {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Capacity planning: arrival rate, service time, utilisation and the
    /// recommended size of each pool; headroom before CPU 80 % / memory 70 %.
    Capacity {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Measure over this window, e.g. `15m` (default from config: 15m).
        #[arg(long)]
        window: Option<String>,
    },
    /// Live terminal view of the fleet, queue, rates and alerts (`q` quits).
    Top {
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Run the demo on a fresh embedded store: a real DAG of shell tasks, or
    /// the five sprint-review scenarios (`torch demo all`).
    Demo(DemoArgs),
    /// Built-in benchmarks with machine-readable output.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
    /// Internal: supervises one task process for an agent.
    #[command(name = "__supervise", hide = true)]
    Supervise {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (default from config: 127.0.0.1:7700).
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// Data directory holding the embedded store (default .torch).
    #[arg(long, env = "TORCH_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Shared store instead of the embedded one: `redis://host:port/db` or
    /// `rediss://…` (many hubs can share it). Env: TORCH_STORE__URL.
    #[arg(long)]
    pub(crate) store: Option<String>,
    /// Also write the admin token created on first start to this file (mode 0600).
    #[arg(long)]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Write the hub's URL to this file once listening (useful with `--listen 127.0.0.1:0`).
    #[arg(long)]
    pub(crate) url_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM, the hub's first).
    #[arg(long, requires = "tls_key", conflicts_with = "tls_self_signed")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serve HTTPS with a CA and certificate made in this directory on first
    /// start (kept after): give its `ca.pem` to agents, nodes and the CLI
    /// (`--ca-file`).
    #[arg(long, value_name = "DIR")]
    pub(crate) tls_self_signed: Option<PathBuf>,
    /// With --tls-self-signed: another name or IP address the certificate is
    /// valid for (besides localhost, 127.0.0.1 and ::1), repeatable.
    #[arg(long = "tls-name", requires = "tls_self_signed")]
    pub(crate) tls_names: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Hub URL. Several hubs sharing a store may be listed, comma-separated:
    /// one that cannot be reached is skipped for the next. Env: TORCH_HUB.
    #[arg(long, env = "TORCH_HUB", default_value = "http://127.0.0.1:7700")]
    pub(crate) hub: String,
    /// Agent (or admin) token. Env: TORCH_TOKEN.
    #[arg(
        long,
        env = "TORCH_TOKEN",
        hide_env_values = true,
        required_unless_present = "check_sandbox"
    )]
    pub(crate) token: Option<String>,
    /// Print which sandbox layers this machine offers (and, for each missing
    /// one, what to change), then exit: 0 when every layer is available, 1
    /// otherwise.
    #[arg(long)]
    pub(crate) check_sandbox: bool,
    /// With `--check-sandbox`: print the probe as JSON.
    #[arg(long, requires = "check_sandbox")]
    pub(crate) json: bool,
    /// Network of every task: `none`, `hub` (default) or `host`; a
    /// template's or task's stricter setting still wins.
    #[arg(long, value_parser = ["none", "hub", "host"])]
    pub(crate) sandbox_network: Option<String>,
    /// Extra read-write path for every task (repeatable).
    #[arg(long = "sandbox-write")]
    pub(crate) sandbox_write: Vec<PathBuf>,
    /// Extra read-only path for every task (repeatable).
    #[arg(long = "sandbox-read")]
    pub(crate) sandbox_read: Vec<PathBuf>,
    /// `strict`: refuse tasks when a sandbox layer is missing here.
    #[arg(long, value_parser = ["strict", "best-effort"])]
    pub(crate) sandbox_require: Option<String>,
    /// Treat a sandbox layer as missing on this machine (repeatable): to
    /// try a strict policy, or to run where a layer misbehaves.
    #[arg(long = "sandbox-disable", value_parser = ["files", "network", "memory", "pids", "cpu", "syscalls"])]
    pub(crate) sandbox_disable: Vec<String>,
    /// Agent name (default: `agent-<pid>`).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Skills with optional proficiency, e.g. `rust:0.9,python,sh` (default
    /// `sh`, or the template's when a node started this agent).
    #[arg(long)]
    pub(crate) skills: Option<String>,
    /// Tasks run at once (default 4, or the template's).
    #[arg(long)]
    pub(crate) slots: Option<u32>,
    /// Labels, `key=value`, repeatable.
    #[arg(long = "label")]
    pub(crate) labels: Vec<String>,
    /// Cost of one task on this agent (any unit consistent across the fleet);
    /// routing prefers cheaper agents.
    #[arg(long)]
    pub(crate) cost: Option<f64>,
    /// Directory for per-task work dirs (default: a temp dir).
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
    /// Keep task work dirs after they finish.
    #[arg(long)]
    pub(crate) keep_workdirs: bool,
    /// Where peers' direct messages and the agent's own tasks reach it:
    /// `HOST:PORT` (port 0: ephemeral), or `off`. Default: an ephemeral port
    /// on the address this machine reaches the hub from.
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// Where the agent keeps its key pair, its id and its inbox across
    /// restarts (default: `<work-dir>/agent-data`).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Number of local agents (default from config: 2).
    #[arg(long)]
    pub(crate) agents: Option<u32>,
    /// Slots per agent (default from config: 4).
    #[arg(long)]
    pub(crate) slots: Option<u32>,
    /// Skills of the local agents (default from config: `sh`).
    #[arg(long)]
    pub(crate) skills: Option<String>,
    /// Address to listen on.
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// Data directory.
    #[arg(long, env = "TORCH_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    #[command(flatten)]
    pub(crate) hub: HubArgs,
    /// Spec file (TOML or JSON) or `-` for stdin. Omit to give a command after `--`.
    pub(crate) file: Option<String>,
    /// Inline task: required skill (repeatable).
    #[arg(long = "skill")]
    pub(crate) skills: Vec<String>,
    /// Inline task: name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Inline task: priority (higher first).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) priority: Option<i32>,
    /// Inline task: timeout, e.g. `30s`.
    #[arg(long)]
    pub(crate) timeout: Option<String>,
    /// Inline task: retries after the first attempt.
    #[arg(long)]
    pub(crate) retries: Option<u32>,
    /// Inline task: prompt.
    #[arg(long)]
    pub(crate) prompt: Option<String>,
    /// Follow the tasks to the end; exit 3 if any fails.
    #[arg(long)]
    pub(crate) wait: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Inline task: the command and its arguments.
    #[arg(last = true)]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TasksCmd {
    /// List tasks, newest first.
    List {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Only these states (comma-separated).
        #[arg(long)]
        state: Option<String>,
        /// Only tasks with this label, `key=value`.
        #[arg(long)]
        label: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one task with its evidence.
    Show {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Task id.
        id: String,
    },
    /// Cancel a task (and dependents that can no longer run).
    Cancel {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Task id.
        id: String,
        /// Reason recorded with the task.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Requeue a dead or cancelled task with a fresh retry budget.
    Retry {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Task id.
        id: String,
    },
    /// Print the captured output of the task's last finished attempt.
    Logs {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Task id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentsCmd {
    /// List agents, connected first, with template, CPU and memory.
    List {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Recent auto-scaling decisions with their inputs.
    Scaling {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Only this template.
        #[arg(long)]
        template: Option<String>,
        /// How many (newest).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Drain an agent (admin token): no new work; once idle, its node stops it.
    Drain {
        #[command(flatten)]
        hub: HubArgs,
        /// Agent id.
        id: String,
        /// Why (recorded in the event).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Nodes: headroom and agent counts.
    Nodes {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TemplatesCmd {
    /// The templates this configuration defines (torch.toml and templates/).
    List {
        #[command(flatten)]
        out: OutArgs,
    },
    /// Validate template files (`NAME.toml` bodies, or files with
    /// `[templates.NAME]` tables); errors name file, line and column. Then
    /// look up each template's program on PATH and run it with `--version`:
    /// a missing program fails the check, with how to install it.
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only validate the files; do not look for or run the programs.
        #[arg(long)]
        no_run: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Hub URL. Several hubs sharing a store may be listed, comma-separated:
    /// one that cannot be reached is skipped for the next. Env: TORCH_HUB.
    #[arg(long, env = "TORCH_HUB", default_value = "http://127.0.0.1:7700")]
    pub(crate) hub: String,
    /// Node token (agent tokens still work; admin too); also handed to the
    /// agents it starts. Env: TORCH_TOKEN.
    #[arg(long, env = "TORCH_TOKEN", hide_env_values = true)]
    pub(crate) token: String,
    /// Node name (default: the host name).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Most agent processes at once.
    #[arg(long, default_value_t = 16)]
    pub(crate) max_agents: u32,
    /// Directory for the agents' work dirs and logs (default: a temp dir).
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
}

/// Hub and token for commands that also run inside a task: the task's
/// `TORCH_HUB` and `TORCH_TASK_TOKEN` are used when no token is given.
#[derive(Debug, Clone, Args)]
pub(crate) struct TaskHubArgs {
    /// Hub URL. Several hubs sharing a store may be listed, comma-separated:
    /// one that cannot be reached is skipped for the next. Env: TORCH_HUB.
    #[arg(long, env = "TORCH_HUB", default_value = "http://127.0.0.1:7700")]
    pub(crate) hub: String,
    /// API token; inside a task the task token (TORCH_TASK_TOKEN) is used instead.
    #[arg(long, env = "TORCH_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SpawnArgs {
    #[command(flatten)]
    pub(crate) hub: TaskHubArgs,
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// Template name.
    #[arg(long)]
    pub(crate) template: String,
    /// Copy the parent agent's memory keys matching this glob (within the
    /// template's inheritance policy).
    #[arg(long)]
    pub(crate) inherit: Option<String>,
    /// Keep the helper after the parent task ends.
    #[arg(long)]
    pub(crate) outlive_parent: bool,
    /// Return once ordered instead of waiting until the agent is ready.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// Longest wait for the agent to be ready.
    #[arg(long, default_value = "60s")]
    pub(crate) timeout: String,
}

#[derive(Debug, Args)]
pub(crate) struct DelegateArgs {
    #[command(flatten)]
    pub(crate) hub: TaskHubArgs,
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// Spec file (TOML or JSON) or `-` for stdin.
    pub(crate) file: String,
    /// Run the child tasks on a new helper started from this template.
    #[arg(long, conflicts_with = "team")]
    pub(crate) helper: Option<String>,
    /// From inside a team's task: route the child tasks to the team's
    /// member in this role (its subtasks count in the team's progress).
    #[arg(long, value_name = "ROLE")]
    pub(crate) team: Option<String>,
    /// With --helper: memory keys (glob) the helper inherits.
    #[arg(long, requires = "helper")]
    pub(crate) inherit: Option<String>,
    /// Wait for the children to end; exit 3 if any did not succeed.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait: give up after this long (exit 5).
    #[arg(long, default_value = "1h", requires = "wait")]
    pub(crate) timeout: String,
}

#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    #[command(flatten)]
    pub(crate) hub: TaskHubArgs,
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// Task ids.
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
    /// Give up after this long (exit 5), e.g. `10m`.
    #[arg(long, default_value = "1h")]
    pub(crate) timeout: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MemoryCmd {
    /// Print one value.
    Get {
        #[command(flatten)]
        hub: TaskHubArgs,
        /// Whose memory (needed outside a task).
        #[arg(long)]
        agent: Option<String>,
        /// Key.
        key: String,
    },
    /// Set one value (`-` reads it from stdin).
    Put {
        #[command(flatten)]
        hub: TaskHubArgs,
        /// Whose memory (admin token; inside a task it is the task's agent).
        #[arg(long)]
        agent: Option<String>,
        /// Key.
        key: String,
        /// Value, or `-` for stdin.
        value: String,
    },
    /// List every key with its value and origin.
    List {
        #[command(flatten)]
        hub: TaskHubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Whose memory (needed outside a task).
        #[arg(long)]
        agent: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    pub(crate) hub: HubArgs,
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// Streams or prefixes, e.g. `nova.torch.tasks.completed` or `nova.torch.tasks.`.
    pub(crate) streams: Vec<String>,
    /// Start after this event id (default: only new events).
    #[arg(long)]
    pub(crate) after: Option<u64>,
    /// Start from the first event.
    #[arg(long, conflicts_with = "after")]
    pub(crate) from_start: bool,
    /// Exit after this many events.
    #[arg(long)]
    pub(crate) count: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCmd {
    /// Create a token (needs an admin token); prints the secret once.
    Create {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Role of the new token.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Label for people and the audit trail.
        #[arg(long)]
        name: Option<String>,
        /// The tenant the token belongs to (not for admin tokens).
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime, e.g. `30d` or `12h` (default: until revoked).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens: id, name, role, tenant, created, last used, expires
    /// (never the secret).
    List {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Revoke a token by id: it stops working at once, and agents and nodes
    /// connected with it are disconnected.
    Revoke {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Token id (from `torch token list` or `token create --json`).
        id: String,
    },
}

/// Token roles.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
    Admin,
    Submitter,
    Agent,
    Node,
}

#[derive(Debug, Args)]
pub(crate) struct ProgressArgs {
    /// Percent done, 0 to 100.
    pub(crate) percent: f64,
    /// Message.
    pub(crate) message: Vec<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct UsageArgs {
    #[command(subcommand)]
    pub(crate) cmd: Option<UsageCmd>,
    #[command(flatten)]
    pub(crate) hub: HubArgs,
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// Only tasks created since then: a duration ago (`24h`, `7days`) or an
    /// RFC 3339 time (`2026-12-01T00:00:00Z`, `2026-12-01`).
    #[arg(long)]
    pub(crate) since: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsageCmd {
    /// From inside a task: add tokens and cost to the running attempt's
    /// usage (uses TORCH_TASK_TOKEN). The hub stops the task once it
    /// reaches its `resources.budget_usd` or `resources.max_tokens`.
    Report {
        /// Input tokens used since the last report.
        #[arg(long, default_value_t = 0)]
        tokens_in: u64,
        /// Output tokens used since the last report.
        #[arg(long, default_value_t = 0)]
        tokens_out: u64,
        /// US dollars spent since the last report.
        #[arg(long, default_value_t = 0.0)]
        cost_usd: f64,
        /// Print the attempt's usage so far as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Spec file or `-` for stdin.
    pub(crate) file: String,
    #[command(flatten)]
    pub(crate) out: OutArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// A sprint-review scenario: 1 intelligent routing, 2 agent self-spawning,
    /// 3 team collaboration, 4 auto-scaling, 5 failure recovery, or `all`.
    /// Without one, the build/test/report pipeline runs.
    #[arg(value_parser = ["1", "2", "3", "4", "5", "all"])]
    pub(crate) scenario: Option<String>,
    /// Print `{"scenarios":[{"number","name","ok","verdict","seconds"}]}`
    /// instead of the narration (scenarios only).
    #[arg(long)]
    pub(crate) json: bool,
    /// Keep the demo's data dirs and print where they are.
    #[arg(long)]
    pub(crate) keep: bool,
}

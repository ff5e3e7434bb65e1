//! Arguments of `torch bench` (kept apart from `cli.rs`).

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCmd {
    /// End-to-end throughput and assignment latency with agent processes.
    Throughput(ThroughputArgs),
    /// Agent lifecycle: spawn-to-ready latency, idle RSS, scale-up and
    /// scale-down reaction, with the hub's built-in node.
    Spawn(SpawnBenchArgs),
    /// Collaboration: direct and relayed messages between 50 in-process
    /// agents (msg/s, latency p50/p99; JSON key `messages`), then lock
    /// acquire/release round trips and deadlock detection latency at the
    /// closing wait (JSON key `locks`).
    Collab(crate::cli_msg::CollabBenchArgs),
    /// `GET /metrics` with many agents connected: render latency (p50, p99)
    /// and size, with N agents joined over real WebSocket sessions to an
    /// embedded hub.
    Metrics(MetricsBenchArgs),
    /// Routing quality: the real scorer against baselines on a simulated workload.
    Routing {
        /// Seed of the synthetic workload.
        #[arg(long, default_value_t = torch_core::routing::sim::DEFAULT_SEED)]
        seed: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `torch bench metrics`.
#[derive(Debug, Args)]
pub(crate) struct MetricsBenchArgs {
    /// Agents to connect.
    #[arg(long, default_value_t = 1000)]
    pub(crate) agents: usize,
    /// Timed requests of `/metrics`.
    #[arg(long, default_value_t = 100)]
    pub(crate) samples: usize,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `torch bench spawn`.
#[derive(Debug, Args)]
pub(crate) struct SpawnBenchArgs {
    /// Agents to spawn (one after another) for the latency figures.
    #[arg(long, default_value_t = 100)]
    pub(crate) count: u32,
    /// Max agents of the template used for the step of load.
    #[arg(long, default_value_t = 8)]
    pub(crate) step_max: u32,
    /// Tasks in the step of load.
    #[arg(long, default_value_t = 64)]
    pub(crate) step_tasks: u32,
    /// Duration of each step task, in ms.
    #[arg(long, default_value_t = 500)]
    pub(crate) task_ms: u64,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What a benchmark task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExecMode {
    /// The built-in empty task: measures orchestration only.
    Noop,
    /// Runs `true` as a real process.
    Process,
}

#[derive(Debug, Args)]
pub(crate) struct ThroughputArgs {
    /// Agent processes.
    #[arg(long, default_value_t = 100)]
    pub(crate) agents: u32,
    /// Tasks to run.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) tasks: u64,
    /// Slots per agent.
    #[arg(long, default_value_t = 16)]
    pub(crate) slots: u32,
    /// What each task runs.
    #[arg(long, value_enum, default_value_t = ExecMode::Noop)]
    pub(crate) exec: ExecMode,
    /// Also measure latency at a steady rate of this many tasks per minute (0 = skip).
    #[arg(long, default_value_t = 1000)]
    pub(crate) steady_rate: u64,
    /// Seconds of the steady-rate phase.
    #[arg(long, default_value_t = 20)]
    pub(crate) steady_secs: u64,
    /// Then connect this many lightweight in-process agents (1 slot each) and
    /// measure latency at the steady rate with all of them connected (0 = skip).
    #[arg(long, default_value_t = 0)]
    pub(crate) scale_agents: u32,
    /// Run the hub on a Redis store, e.g. `redis://127.0.0.1:6379/15`
    /// (the bench writes to it: use a scratch database).
    #[arg(long)]
    pub(crate) store: Option<String>,
    /// Hubs sharing the store (needs --store): the first leads, agents
    /// connect through the last, submissions alternate between them.
    #[arg(long, default_value_t = 1)]
    pub(crate) hubs: u32,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Run the hub without its audit log (`[audit] enabled = false`), to
    /// measure what auditing costs.
    #[arg(long)]
    pub(crate) no_audit: bool,
}

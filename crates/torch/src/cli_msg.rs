//! Arguments of `torch peers` and `torch msg` (kept apart from `cli.rs`).

use clap::{Args, Subcommand};

use crate::cli::{OutArgs, TaskHubArgs};

/// `torch peers`.
#[derive(Debug, Args)]
pub(crate) struct PeersArgs {
    #[command(flatten)]
    pub(crate) hub: TaskHubArgs,
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// Only peers with this skill.
    #[arg(long)]
    pub(crate) skill: Option<String>,
    /// Only members of this team (the agent label `team`).
    #[arg(long)]
    pub(crate) team: Option<String>,
    /// Only peers in this state (`idle`, `busy`, `silent`, `disconnected`).
    #[arg(long)]
    pub(crate) state: Option<String>,
}

/// `torch msg …`.
#[derive(Debug, Subcommand)]
pub(crate) enum MsgCmd {
    /// Send a signed message to an agent, a task's current agent or a team.
    /// Inside a task it goes through the task's own agent, which signs it;
    /// elsewhere an admin token sends it from the hub.
    Send(MsgSendArgs),
    /// From inside a task: the agent's inbox (urgent first).
    Inbox(MsgInboxArgs),
    /// From inside a task: mark messages read (they leave the inbox).
    Ack(MsgAckArgs),
    /// Operators: the messages the hub keeps for an agent (metadata only).
    List(MsgListArgs),
}

/// `torch msg send`.
#[derive(Debug, Args)]
pub(crate) struct MsgSendArgs {
    #[command(flatten)]
    pub(crate) hub: TaskHubArgs,
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// Recipient agent id.
    #[arg(long, conflicts_with_all = ["task", "team"], required_unless_present_any = ["task", "team"])]
    pub(crate) to: Option<String>,
    /// The task whose current agent receives it.
    #[arg(long, conflicts_with = "team")]
    pub(crate) task: Option<String>,
    /// Every agent of this team (label `team`).
    #[arg(long)]
    pub(crate) team: Option<String>,
    /// Conversation the message belongs to.
    #[arg(long)]
    pub(crate) thread: Option<String>,
    /// Id of the message this one answers.
    #[arg(long)]
    pub(crate) reply_to: Option<String>,
    /// Kind (`text` by default; `urgent` is delivered first).
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// How long it may wait for delivery (e.g. `10m`; default from config).
    #[arg(long)]
    pub(crate) ttl: Option<String>,
    /// Parse TEXT as JSON instead of sending it as a string.
    #[arg(long)]
    pub(crate) body_json: bool,
    /// The message, or `-` to read it from stdin.
    pub(crate) text: String,
}

/// `torch msg inbox`.
#[derive(Debug, Args)]
pub(crate) struct MsgInboxArgs {
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// Wait up to this long for a message when the inbox is empty (e.g. `30s`).
    #[arg(long)]
    pub(crate) wait: Option<String>,
    /// Only messages of this thread.
    #[arg(long)]
    pub(crate) thread: Option<String>,
}

/// `torch msg ack`.
#[derive(Debug, Args)]
pub(crate) struct MsgAckArgs {
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// Message ids.
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
}

/// `torch msg list`.
#[derive(Debug, Args)]
pub(crate) struct MsgListArgs {
    #[command(flatten)]
    pub(crate) hub: TaskHubArgs,
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// The agent.
    #[arg(long)]
    pub(crate) agent: String,
}

/// `torch bench collab`.
#[derive(Debug, Args)]
pub(crate) struct CollabBenchArgs {
    /// In-process agents (a fifth of them listen on no endpoint, so messages
    /// to them are relayed by the hub).
    #[arg(long, default_value_t = 50)]
    pub(crate) agents: u32,
    /// Direct messages to send (a quarter as many relayed ones follow).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) messages: u32,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: u32,
    /// Lock acquire + release round trips per client.
    #[arg(long, default_value_t = 2000)]
    pub(crate) rounds: u32,
    /// Lock clients at once (each on its own lock) for the concurrent figure.
    #[arg(long, default_value_t = 8)]
    pub(crate) clients: u32,
    /// Lock rings formed per size (2 and 10) for the deadlock latency.
    #[arg(long, default_value_t = 20)]
    pub(crate) cycles: u32,
    /// Print JSON (figures under `messages` and `locks`).
    #[arg(long)]
    pub(crate) json: bool,
}

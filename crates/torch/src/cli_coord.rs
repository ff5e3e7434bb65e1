//! Arguments of `torch lock`, `torch locks` and `torch help` (kept apart
//! from `cli.rs`).

use clap::Subcommand;

use crate::cli::{OutArgs, TaskHubArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum LockCmd {
    /// Acquire a named lock (or a path reservation with --path); prints
    /// `{"name","fence","mode","expires_ms"}` with --json. Exit 5 when
    /// --wait runs out, 6 when waiting would close a cycle (deadlock).
    Acquire {
        #[command(flatten)]
        hub: TaskHubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// The lock's name (omit with --path).
        #[arg(required_unless_present = "path", conflicts_with = "path")]
        name: Option<String>,
        /// Reserve paths matching this glob, e.g. 'src/api/**': conflicts
        /// with any overlapping glob held by someone else.
        #[arg(long)]
        path: Option<String>,
        /// Shared instead of exclusive.
        #[arg(long)]
        shared: bool,
        /// How long the grant lasts unless renewed.
        #[arg(long, default_value = "30s")]
        ttl: String,
        /// Wait up to this long for the lock (default: fail at once if held).
        #[arg(long)]
        wait: Option<String>,
    },
    /// Extend a lock you hold by its TTL (stale fence or not held: an error).
    Renew {
        #[command(flatten)]
        hub: TaskHubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// The lock's name (or glob).
        name: String,
        /// The fence of your grant.
        #[arg(long)]
        fence: u64,
        /// The new TTL from now.
        #[arg(long, default_value = "30s")]
        ttl: String,
    },
    /// Release a lock you hold (stale fence or not held: an error).
    Release {
        #[command(flatten)]
        hub: TaskHubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// The lock's name (or glob).
        name: String,
        /// The fence of your grant.
        #[arg(long)]
        fence: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LocksCmd {
    /// Every lock with its holders and waiters, and the wait-for graph.
    List {
        #[command(flatten)]
        hub: TaskHubArgs,
        #[command(flatten)]
        out: OutArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum HelpCmd {
    /// Ask peers with a skill for help (from inside a task). With --wait,
    /// return who accepted (exit 5 if nobody did in time).
    Request {
        #[command(flatten)]
        hub: TaskHubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// The skill wanted, `NAME` or `NAME:LEVEL` (level 0..1).
        #[arg(long)]
        skill: String,
        /// How long the request stays open.
        #[arg(long, default_value = "5m")]
        timeout: String,
        /// Wait until it is accepted (or a helper is spawned for it).
        #[arg(long)]
        wait: bool,
        /// What you need, in words.
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Open help requests (all recent ones with --all).
    List {
        #[command(flatten)]
        hub: TaskHubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Also accepted, expired and escalated ones.
        #[arg(long)]
        all: bool,
    },
    /// Accept a help request: the first accept wins, others get
    /// `409 already_accepted`.
    Accept {
        #[command(flatten)]
        hub: TaskHubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// The request's id.
        id: String,
    },
}

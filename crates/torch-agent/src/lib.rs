//! Nova Torch agent runtime: joins a hub over WebSocket, runs the tasks it is
//! assigned as sandboxed processes, judges them against their success criteria
//! and reports the outcome.
//!
//! The `torch agent` subcommand builds an [`AgentConfig`] and calls [`run`];
//! the hidden `torch __supervise` subcommand calls [`supervise_main`].
//!
//! # Layout
//! - [`config`]: [`AgentConfig`] and its defaults.
//! - `reconnect`: the reconnect loop the agent and the node share (dial,
//!   offline work, redirects, backoff, stopping what remains), and the
//!   `Role` trait through which each plugs in.
//! - `link`: one connected session (Hello/Welcome, heartbeats, liveness,
//!   hub errors, the drain at shutdown), shared the same way.
//! - `connect`: opening the WebSocket; the `Dialer` (which hub, backoff).
//! - `session`: the agent's startup and its `Role`: Hello, hub messages,
//!   runner events, stopping tasks.
//! - `agent`: session-independent state (running tasks, unacked reports).
//! - `writer`: the batching writer (one JSON-array frame per wakeup).
//! - `runner`: one task attempt from work dir to finished report (a task's
//!   command, or the agent's executor for a prompt task).
//! - `home`: the executor's own `HOME`/`TMPDIR`, its files and `env`.
//! - `sandbox`: environment (allowlist with `PREFIX*` patterns), spawning in
//!   an own process group, group kill.
//! - `capture`: bounded stdout/stderr capture to files plus in-memory tails.
//! - `criteria`: agent-side success criteria.
//! - `activity`: liveness read from an agent CLI's stream while it runs,
//!   sent as progress reports.
//! - `output`: the verdict in an executor's structured output (Claude JSON,
//!   Codex JSONL), which can fail an attempt that exited 0.
//! - `confine`: the task sandbox: the machine probe, each attempt's layers
//!   (Landlock, network namespace, cgroup, seccomp), the hub socket, and
//!   naming the limit that ended an attempt.
//! - `status`: the task's exit status as the supervisor records it.
//! - `worktree`: each attempt of a task with a repository in its own git
//!   worktree (or clone) on the branch `torch/<task>/<attempt>`, committed
//!   by the runtime and cleaned up at the end.
//! - `supervise`: the per-task supervisor that applies rlimits and kills the
//!   task group when the agent dies.
//! - `identity`: the agent's ed25519 key pair and id, kept in its data dir.
//! - `msg`: direct messages: the agent's endpoint, verifying and storing
//!   peers' envelopes in the on-disk inbox, sending for its tasks (directly,
//!   else through the hub).
//! - [`node`]: the node runtime ([`node::run_node`]): starts and stops agent
//!   processes on the hub's orders and reports their `/proc` samples.

mod activity;
mod agent;
mod capture;
pub mod config;
mod confine;
mod connect;
mod criteria;
mod error;
mod home;
mod identity;
mod link;
mod msg;
pub mod node;
mod output;
mod reconnect;
mod resume;
mod runner;
mod sandbox;
mod session;
mod status;
mod supervise;
mod worktree;
mod writer;

pub use config::{AgentConfig, Listen, MessageLimits};
pub use confine::{probe_machine, render as render_probe};
pub use error::AgentError;
pub use session::run;
pub use supervise::supervise_main;

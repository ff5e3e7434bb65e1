//! Nova Torch agent runtime: joins a hub over WebSocket, runs the tasks it is
//! assigned as sandboxed processes, judges them against their success criteria
//! and reports the outcome.
//!
//! The `torch agent` subcommand builds an [`AgentConfig`] and calls [`run`];
//! the hidden `torch __supervise` subcommand calls [`supervise_main`].
//!
//! # Layout
//! - [`config`]: [`AgentConfig`] and its defaults.
//! - `session`: connection, reconnect with backoff, the hub message loop.
//! - `agent`: session-independent state (running tasks, unacked reports).
//! - `writer`: the batching writer (one JSON-array frame per wakeup).
//! - `runner`: one task attempt from work dir to finished report (a task's
//!   command, or the agent's executor for a prompt task).
//! - `sandbox`: environment (allowlist with `PREFIX*` patterns), spawning in
//!   an own process group, group kill.
//! - `capture`: bounded stdout/stderr capture to files plus in-memory tails.
//! - `criteria`: agent-side success criteria.
//! - `output`: the verdict in an executor's structured output (Claude JSON,
//!   Codex JSONL), which can fail an attempt that exited 0.
//! - `supervise`: the per-task supervisor that applies rlimits and kills the
//!   task group when the agent dies.
//! - [`node`]: the node runtime ([`node::run_node`]): starts and stops agent
//!   processes on the hub's orders and reports their `/proc` samples.

mod agent;
mod capture;
pub mod config;
mod connect;
mod criteria;
mod error;
pub mod node;
mod output;
mod runner;
mod sandbox;
mod session;
mod supervise;
mod writer;

pub use config::AgentConfig;
pub use error::AgentError;
pub use session::run;
pub use supervise::supervise_main;

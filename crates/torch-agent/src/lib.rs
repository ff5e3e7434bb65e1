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
//! - `runner`: one task attempt from work dir to finished report.
//! - `sandbox`: environment, spawning in an own process group, group kill.
//! - `capture`: bounded stdout/stderr capture to files plus in-memory tails.
//! - `criteria`: agent-side success criteria.
//! - `supervise`: the per-task supervisor that kills the task group when the
//!   agent dies.
//! - [`node`]: the node runtime ([`node::run_node`]): starts and stops agent
//!   processes on the hub's orders and reports their `/proc` samples.

mod agent;
mod capture;
pub mod config;
mod connect;
mod criteria;
mod error;
pub mod node;
mod runner;
mod sandbox;
mod session;
mod supervise;
mod writer;

pub use config::AgentConfig;
pub use error::AgentError;
pub use session::run;
pub use supervise::supervise_main;

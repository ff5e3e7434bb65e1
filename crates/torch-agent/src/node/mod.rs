//! The node runtime: a process that starts and stops `torch agent` processes
//! on its machine when the hub orders it, over the node WebSocket protocol
//! ([`torch_api::node`]), and reports their CPU and memory from `/proc`.
//!
//! `torch node` builds a [`NodeConfig`] and calls [`run_node`].
//!
//! # Layout
//! - `config`: [`NodeConfig`] and its checks.
//! - `session`: connection, reconnect with backoff, the hub message loop,
//!   shutdown.
//! - `procs`: spawning agent processes, one watcher task per child, signals.
//! - `procfs`: pure `/proc` parsers and the sampler turning counters into
//!   rates (CPU and RSS summed over each agent's process tree).

mod config;
mod procfs;
mod procs;
mod session;

pub use config::{DEFAULT_MAX_AGENTS, NodeConfig};
pub use session::run_node;

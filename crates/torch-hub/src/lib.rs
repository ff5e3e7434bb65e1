//! Nova Torch hub: the HTTP API, agent and node WebSocket sessions, and the
//! services behind them, over any [`torch_store::Store`].
//!
//! # Layout
//! - `hub`: start-up, the services and their lifetimes (start, join).
//! - `shared`: what every part holds — handles to the services, the store,
//!   the configuration.
//! - `engine`: the queue, the scheduler and the leases (the lease state
//!   machine itself is `torch_core::lease`); a typed handle with commands
//!   and queries on bounded channels.
//! - `lifecycle`: templates, nodes, spawning under the spawn policy,
//!   auto-scaling, recycling, helper and delegated-task cleanup.
//! - `analysis`: task analysis and the history it learns from.
//! - `leader`: the election among hubs sharing a store, forwarding to the
//!   leader, hand-offs.
//! - `session`: one agent's WebSocket: hello, identity, batching, ordered
//!   recording; `identity`: which token an agent id belongs to.
//! - `api`: REST handlers under `/api/v1`, one module per resource, and the
//!   route table (`api::routes`) that declares each route's leader rule.
//! - `auth`: bearer tokens (hashed at rest), roles, expiry and revocation
//!   (open sessions closed), per-token rate limits, task-scoped tokens (HMAC).
//! - `tls`: the TLS listener (handshakes off the accept path).
//! - [`config`]: `HubConfig`, the hub's section of the configuration.
//! - `metrics`: the Prometheus metrics (a recorder per hub, sampled gauges).
//! - `alerts`: the alert evaluator (rules, events, webhooks) and capacity planning.
//! - `merge`: the merge queue's git engine — lands attempt branches on an
//!   integration branch after a `git merge-tree` conflict check.
//! - `shed`: load shedding by priority as the backlog nears `queue-high-water`.
//! - `batch`, `retention`, `stats`, `clock`: report batching for a networked
//!   store, deletion of old tasks, counters, the clock.
//!
//! Entry point: [`Hub::start`] then [`Hub::serve`], which takes a bound
//! listener and a shutdown token (tests bind port 0).

mod alerts;
mod analysis;
mod api;
mod audit;
mod auth;
mod autonomy;
mod batch;
mod capacity;
mod clock;
pub mod config;
mod coord;
mod engine;
mod error;
mod hub;
mod identity;
mod leader;
mod lifecycle;
mod merge;
mod messaging;
mod metrics;
mod retention;
mod session;
mod shared;
mod shed;
mod stats;
mod teams;
#[cfg(test)]
mod testing;
mod tls;
mod usage;

pub use audit::AuditConfig;
pub use auth::{generate_token, hash_token};
pub use config::{HubConfig, LifecycleConfig, ObserveConfig};
pub use error::HubError;
pub use hub::Hub;
pub use messaging::MessagingConfig;

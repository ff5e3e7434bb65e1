//! Nova Torch hub: the HTTP API, agent WebSocket sessions and the scheduling
//! engine, over any [`torch_store::Store`].
//!
//! # Layout
//! - [`config`]: `HubConfig`, the hub's section of the configuration.
//! - `auth`: bearer tokens (hashed at rest), roles, task-scoped tokens (HMAC).
//! - `engine`: one task owns the scheduler, agent capacity and leases; everyone
//!   else talks to it through a bounded channel.
//! - `session`: one agent's WebSocket: hello, batching, ordered recording.
//! - `lifecycle`: templates, nodes, spawning under the spawn policy,
//!   auto-scaling, recycling, helper and delegated-task cleanup.
//! - `api`: REST handlers under `/api/v1`, one module per resource.
//!
//! Entry point: [`Hub::start`] then [`Hub::serve`], which takes a bound
//! listener and a shutdown token (tests bind port 0).

mod api;
mod auth;
mod batch;
mod clock;
pub mod config;
mod engine;
mod error;
mod leader;
mod lifecycle;
mod retention;
mod session;
mod stats;

pub use auth::{generate_token, hash_token};
pub use config::{HubConfig, LifecycleConfig};
pub use error::HubError;
pub use hub::Hub;

mod hub;

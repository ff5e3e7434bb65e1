//! Nova Torch wire model: the JSON bodies of the hub's HTTP API (`/api/v1`)
//! and the messages exchanged with agents over the WebSocket.
//!
//! These types change on purpose and slowly; domain types in `torch-core`
//! change freely. Enums that travel to agents carry an `Unknown` variant so an
//! older agent survives a newer hub's messages.

pub mod coord;
mod json;
pub mod msg;
pub mod node;
pub mod rest;
#[cfg(test)]
mod tests;
pub mod ws;

/// Version prefix of every API route.
pub const API_PREFIX: &str = "/api/v1";
/// Header carrying the bearer token.
pub const AUTH_HEADER: &str = "authorization";
/// Environment variable holding the hub URL inside a task.
pub const ENV_HUB: &str = "TORCH_HUB";
/// Set for tasks whose sandbox network is `hub`: a Unix socket the agent
/// forwards to the hub; the `torch` CLI sends its requests through it.
pub const ENV_HUB_SOCKET: &str = "TORCH_HUB_SOCKET";
/// Environment variable holding the CA certificate file a `https://` hub is
/// verified with (set for tasks when their agent has one).
pub const ENV_CA_FILE: &str = "TORCH_CA_FILE";
/// Environment variable holding the task id inside a task.
pub const ENV_TASK_ID: &str = "TORCH_TASK_ID";
/// Environment variable holding the task-scoped token inside a task.
pub const ENV_TASK_TOKEN: &str = "TORCH_TASK_TOKEN";
/// Environment variable holding the attempt number inside a task.
pub const ENV_ATTEMPT: &str = "TORCH_ATTEMPT";
/// Environment variable holding the task's work dir inside a task.
pub const ENV_WORKDIR: &str = "TORCH_WORKDIR";

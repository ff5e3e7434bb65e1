//! Why [`crate::run`] gave up.

use std::io;
use std::path::PathBuf;

/// Errors that end an agent. An unreachable hub is not one of them: the agent
/// keeps reconnecting until it is shut down.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The hub refused the agent's token; retrying will not help.
    #[error("the hub refused the agent token: {detail}")]
    Auth {
        /// What the hub said (HTTP status or session error code), never the token.
        detail: String,
    },
    /// The hub's TLS certificate cannot be trusted (wrong or missing CA,
    /// wrong name, expired); retrying will not help.
    #[error("cannot trust the hub: {detail}")]
    Tls {
        /// What is wrong and what to do.
        detail: String,
    },
    /// The configuration cannot work.
    #[error("invalid agent config: {field}: {problem}")]
    Config {
        /// The [`crate::AgentConfig`] field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A local filesystem operation the agent cannot run without failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What the agent was doing, e.g. `create work root`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

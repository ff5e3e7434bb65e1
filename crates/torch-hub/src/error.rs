//! Errors of starting and running the hub.

use torch_store::StoreError;

/// Why the hub could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The configuration is inconsistent.
    #[error("invalid hub configuration: {0}")]
    Config(String),
    /// The store failed.
    #[error("store error")]
    Store(#[from] StoreError),
    /// Serving HTTP failed.
    #[error("server error")]
    Io(#[from] std::io::Error),
}

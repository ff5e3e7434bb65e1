//! TLS for Nova Torch: the hub's server configuration, the client
//! configuration agents, nodes and the CLI verify the hub with, and a
//! self-signed CA and certificate for a first deployment.
//!
//! One crypto provider for the whole build: *ring*, which the Redis client
//! already brings in. Every configuration here is built with it explicitly,
//! so nothing depends on a process-wide default provider.
//!
//! - [`client_config`]: trust the system's roots, or only the CA in a file.
//! - [`server_config`]: a certificate chain and key from PEM files.
//! - [`self_signed`]: a CA and a certificate signed by it, written to a
//!   directory (kept across restarts).
//! - [`explain`]: a clear sentence for a certificate error buried in an
//!   HTTP or WebSocket client's error chain.

mod client;
mod error;
mod self_signed;
mod server;

pub use client::{client_config, explain};
pub use error::TlsError;
pub use self_signed::{SelfSigned, self_signed};
pub use server::server_config;

/// The crypto provider every configuration uses.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

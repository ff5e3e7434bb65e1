//! Nova Torch durable store.
//!
//! The store is a set of small capability traits, each one module, which
//! together make the [`Store`] the hub is generic over:
//!
//! | trait | what |
//! |---|---|
//! | [`TaskStore`] | tasks and leases: submit, assign, start, finish, expire, cancel, retry, progress, and the task reads |
//! | [`EventLog`] | the seed's streams: appends and reads |
//! | [`TokenStore`] | API tokens (hashes only) |
//! | [`MetaStore`] | the hub's metadata (e.g. its signing secret) |
//! | [`MemoryStore`] | agents' key/value memory |
//! | [`LockStore`] | lock grants with fences (locks, path reservations) |
//! | [`HelpStore`] | help requests; the first accept wins |
//! | [`Retention`] | deleting finished tasks |
//! | [`AuditStore`] | the hash-chained audit log and its signed checkpoints |
//! | [`SharedStore`] | leadership and hand-offs among hubs sharing one store; only a shared backend has it ([`Store::shared`]) |
//!
//! Each mutating operation is atomic, checks fence tokens itself (the store,
//! not the hub's memory, is the authority on who owns a task), appends its
//! events on the seed's stream names, and returns only once durable.
//!
//! Values both backends store are encoded and parsed once, in [`codec`].
//!
//! Implementations:
//! - [`sqlite::SqliteStore`]: the embedded default, in this crate. One file
//!   in the data dir, WAL, one writer thread with group commit, versioned
//!   migrations. It is not shared: its [`Store::Shared`] is [`NotShared`].
//! - `torch_store_redis::RedisStore` (crate `torch-store-redis`): Redis
//!   (Valkey, Dragonfly) for many hubs on many machines: Lua scripts for
//!   atomic, fenced batches, the event streams as real Redis streams,
//!   consumer groups and a leader lease.
//!
//! The conformance suite (module `conformance`, feature `conformance`) is
//! written against the traits; `tests/conformance.rs` runs it on SQLite and
//! `torch-store-redis`'s `tests/conformance.rs` on Redis, so both pass the
//! same cases.

pub mod audit;
pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod events;
mod help;
mod locks;
mod memory;
mod meta;
mod model;
mod relay;
mod retention;
mod shared;
pub mod sqlite;
mod store;
mod tasks;
mod tokens;

pub use audit::{AuditCheckpoint, AuditEntry, AuditHead, AuditStore, NewAudit};
pub use error::StoreError;
pub use events::EventLog;
pub use help::{HelpAccept, HelpRecord, HelpStore, help_state};
pub use locks::{LockRecord, LockSnapshot, LockStore};
pub use memory::MemoryStore;
pub use meta::MetaStore;
pub use model::*;
pub use relay::{RelayPut, RelayStore, RelayedMessage};
pub use retention::Retention;
pub use shared::{NotShared, SharedStore};
pub use store::Store;
pub use tasks::TaskStore;
pub use tokens::TokenStore;
/// The stream names, declared with the event kinds in `torch-core` and
/// re-exported here where the store's callers have always found them.
pub use torch_core::events::streams::*;

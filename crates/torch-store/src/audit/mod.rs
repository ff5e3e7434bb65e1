//! The tamper-evident audit log: who did what to what, and whether it was
//! allowed. Kept apart from the event streams (event retention never
//! touches it).
//!
//! Each entry carries its `seq` (1, 2, 3, …), the hash of the entry before
//! it (`prev`; [`GENESIS`] for the first) and its own `hash`: SHA-256 over
//! the canonical encoding of its fields and `prev` ([`chain::entry_hash`]).
//! The store assigns `seq`, `prev` and `hash` atomically with the append, so
//! several hubs sharing one store keep one chain. Signed checkpoints
//! ([`AuditCheckpoint`]) pin a size and head hash; [`verify`] walks the
//! chain and names the first entry where a change shows.

pub mod chain;
pub mod verify;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::StoreError;

pub use verify::{AuditProblem, AuditReport, ChainWalker, verify_store};

/// The `prev` of the very first entry: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry to append; the store gives it its `seq`, `prev` and `hash`.
/// Empty strings stand for "none" (e.g. no tenant, no reason).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewAudit {
    /// When it happened (unix ms).
    pub at_ms: u64,
    /// Who: `token:<id>`, `task:<task id>`, `agent:<id>`, `hub:<id>` or
    /// `anonymous`.
    pub actor: String,
    /// The actor's role (`admin`, `submitter`, `agent`, `node`, `task`,
    /// `hub`), or empty.
    pub role: String,
    /// The actor's tenant, or empty.
    pub tenant: String,
    /// What: e.g. `api.post /api/v1/tasks`, `task.finished`, `token.revoke`.
    pub action: String,
    /// On what: a task id, agent id, token id, lock name, or the request path.
    pub target: String,
    /// `allowed`, `refused` or `failed`.
    pub outcome: String,
    /// Why it was refused or failed; empty when allowed.
    pub reason: String,
    /// Metadata as compact JSON (never message bodies); empty when none.
    pub detail: String,
}

/// A stored entry: a [`NewAudit`] with its place in the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// Its position, from 1, without gaps.
    pub seq: u64,
    /// What was recorded.
    #[serde(flatten)]
    pub entry: NewAudit,
    /// The hash of the entry before it (hex), [`GENESIS`] for the first.
    pub prev: String,
    /// Its own hash (hex): [`chain::entry_hash`].
    pub hash: String,
}

/// The chain's head: how many entries were ever appended and the last hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditHead {
    /// The last entry's seq (0 when empty).
    pub size: u64,
    /// The last entry's hash ([`GENESIS`] when empty).
    pub hash: String,
}

/// A signed statement "the log had `size` entries and its head was `head`
/// at `at_ms`", signed with a hub's ed25519 key ([`chain::checkpoint_message`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditCheckpoint {
    /// Entries in the log up to and including this one.
    pub size: u64,
    /// The hash of entry `size`.
    pub head: String,
    /// When it was signed (unix ms).
    pub at_ms: u64,
    /// The signer's ed25519 public key (hex).
    pub key: String,
    /// The signature (hex) over [`chain::checkpoint_message`].
    pub sig: String,
}

/// The audit log's storage. Appends are atomic per batch and chain onto the
/// stored head whoever wrote it (one chain per store).
pub trait AuditStore: Send + Sync {
    /// Appends `batch` in order, chaining each entry onto the one before;
    /// returns the head afterwards.
    fn audit_append(
        &self,
        batch: Vec<NewAudit>,
    ) -> impl Future<Output = Result<AuditHead, StoreError>> + Send;

    /// Up to `limit` entries with `seq > after`, in seq order, exactly as
    /// stored (nothing is checked).
    fn audit_range(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// The head: the highest seq and its hash (size 0 when empty).
    fn audit_head(&self) -> impl Future<Output = Result<AuditHead, StoreError>> + Send;

    /// Keeps a signed checkpoint (a second one at the same size replaces
    /// the first).
    fn audit_put_checkpoint(
        &self,
        cp: AuditCheckpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every kept checkpoint, by size.
    fn audit_checkpoints(
        &self,
    ) -> impl Future<Output = Result<Vec<AuditCheckpoint>, StoreError>> + Send;

    /// Retention: keeps `cp` and deletes the entries up to `cp.size`, in one
    /// step. Refused ([`StoreError::Invalid`]) when entry `cp.size` is not
    /// stored with hash `cp.head`, or is the newest entry (the head always
    /// stays). Returns how many entries were deleted.
    fn audit_cut(
        &self,
        cp: AuditCheckpoint,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

//! Locks and path reservations: their grants, durably, with fences.
//!
//! The hub's coordination service decides who gets a lock (the pure
//! `torch_core::locks::LockTable`); the store keeps each grant so a restart
//! or a new leader loses none, and refuses a grant whose fence is not above
//! every fence granted before (a stale owner cannot grant).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// One holder of a lock, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// The lock's name, or the glob of a path reservation.
    pub name: String,
    /// A path reservation.
    pub path: bool,
    /// The holder, as a wait-graph node (`task:ID` or `operator:NAME`).
    pub holder: String,
    /// `exclusive` or `shared`.
    pub mode: String,
    /// The grant's fence: unique, and above every fence granted before it.
    pub fence: u64,
    /// When it was granted (unix ms).
    pub granted_ms: u64,
    /// When it lapses unless renewed (unix ms).
    pub expires_ms: u64,
}

/// Every lock held, and the fence counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockSnapshot {
    /// The highest fence ever granted.
    pub last_fence: u64,
    /// The holders, by fence.
    pub holders: Vec<LockRecord>,
}

/// Lock grants, durably.
pub trait LockStore: Send + Sync {
    /// Records a grant. Answers false (and writes nothing) when its fence is
    /// not above the highest fence granted so far.
    fn lock_grant(&self, rec: LockRecord) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Moves the expiry of the holder of `name` with `fence`; false when no
    /// such holder is stored.
    fn lock_renew(
        &self,
        name: String,
        fence: u64,
        expires_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes the holder of `name` with `fence`; false when no such holder
    /// is stored.
    fn lock_release(
        &self,
        name: String,
        fence: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every holder and the fence counter (on start, or a new leader).
    fn lock_load(&self) -> impl Future<Output = Result<LockSnapshot, StoreError>> + Send;
}

//! Relayed messages: direct messages the hub keeps for an agent its sender
//! could not reach, until the agent takes them or they expire.

use std::future::Future;

use torch_core::AgentId;

use crate::StoreError;

/// One message kept for its recipient. The store treats the envelope as
/// opaque text; `id` is unique across every recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayedMessage {
    /// The message's id (a UUID, as text).
    pub id: String,
    /// Its recipient.
    pub to: AgentId,
    /// Its sender (an agent id or `hub`).
    pub from: String,
    /// Delivered ahead of the others.
    pub urgent: bool,
    /// When it is dropped with a bounce (unix ms).
    pub expires_ms: u64,
    /// The signed envelope, as JSON.
    pub envelope: String,
}

/// What keeping a message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayPut {
    /// Kept.
    Stored,
    /// A message with this id is already kept (nothing changed).
    Duplicate,
    /// The recipient already has `cap` messages kept: refused.
    Full,
}

/// Messages kept for agents. Every operation is atomic.
pub trait RelayStore: Send + Sync {
    /// Keeps `msg` unless its id is kept already or its recipient has `cap`
    /// messages kept.
    fn relay_put(
        &self,
        msg: RelayedMessage,
        cap: usize,
    ) -> impl Future<Output = Result<RelayPut, StoreError>> + Send;

    /// Up to `limit` messages kept for `to`: urgent ones first, then in the
    /// order they were kept.
    fn relay_pending(
        &self,
        to: AgentId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RelayedMessage>, StoreError>> + Send;

    /// Forgets messages `to` has taken; returns how many were kept.
    fn relay_remove(
        &self,
        to: AgentId,
        ids: Vec<String>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Removes and returns up to `limit` messages that expired at `now`
    /// (their `expires_ms <= now`), soonest first.
    fn relay_take_expired(
        &self,
        now: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RelayedMessage>, StoreError>> + Send;
}

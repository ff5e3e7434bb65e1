//! Agents' key/value memory.

use std::future::Future;

use torch_core::AgentId;

use crate::{MemoryEntry, MemoryLimits, StoreError};

/// Each agent's key/value memory, within [`MemoryLimits`].
pub trait MemoryStore: Send + Sync {
    /// Writes one key of an agent's memory, refusing (with
    /// [`StoreError::LimitExceeded`]) a write past `limits`.
    fn memory_put(
        &self,
        owner: AgentId,
        key: String,
        value: String,
        limits: MemoryLimits,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads one key of an agent's memory.
    fn memory_get(
        &self,
        owner: AgentId,
        key: String,
    ) -> impl Future<Output = Result<Option<MemoryEntry>, StoreError>> + Send;

    /// An agent's whole memory, by key.
    fn memory_list(
        &self,
        owner: AgentId,
    ) -> impl Future<Output = Result<Vec<MemoryEntry>, StoreError>> + Send;

    /// Copies `keys` (those that exist) of `from`'s memory into `to`'s, marked
    /// as inherited from `from`, within `limits`, and appends an
    /// `agent.memory_inherited` event on [`crate::AGENTS_SPAWNING`] naming both
    /// agents and the keys copied. Returns the keys copied. All or nothing.
    fn memory_inherit(
        &self,
        from: AgentId,
        to: AgentId,
        keys: Vec<String>,
        limits: MemoryLimits,
        now: u64,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

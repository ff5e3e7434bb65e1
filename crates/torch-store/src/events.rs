//! The event log: the seed's streams, appended to and read back.

use std::future::Future;

use crate::{AgentEvent, EventRecord, NewEvent, StoreError};

/// The event log. Every state change a [`crate::TaskStore`] write makes is
/// appended with it, atomically; these are the other appends and the reads.
pub trait EventLog: Send + Sync {
    /// Appends a free-form event (e.g. a refused stale report) on a stream.
    fn append_event(
        &self,
        event: NewEvent,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Appends many free-form events at once (one write where the store
    /// can; by default one after another, stopping at the first failure).
    fn append_events(
        &self,
        events: Vec<NewEvent>,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            for event in events {
                self.append_event(event, now).await?;
            }
            Ok(())
        }
    }

    /// Records an agent session starting (`joined`) or ending.
    fn agent_event(
        &self,
        event: AgentEvent,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Events with id greater than `after`, oldest first, optionally limited
    /// to some streams (exact names or prefixes ending in `.`).
    fn events(
        &self,
        after: u64,
        streams: Vec<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventRecord>, StoreError>> + Send;

    /// Id of the newest event (0 when none).
    fn last_event_id(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

//! The umbrella trait the hub is generic over.

use crate::{
    AuditStore, EventLog, HelpStore, LockStore, MemoryStore, MetaStore, RelayStore, Retention,
    SharedStore, TaskStore, TokenStore,
};

/// Every durable operation of the hub: the capability traits together, plus
/// what tells backends apart. See the crate docs for the guarantees.
pub trait Store:
    TaskStore
    + EventLog
    + TokenStore
    + MetaStore
    + MemoryStore
    + LockStore
    + HelpStore
    + RelayStore
    + Retention
    + AuditStore
    + Send
    + Sync
    + 'static
{
    /// Leadership and hand-offs when several hubs may share this store
    /// ([`NotShared`](crate::NotShared) for an embedded one).
    type Shared: SharedStore;

    /// Short name for health output, e.g. `sqlite`.
    fn kind(&self) -> &'static str;

    /// Requests sent to a networked store so far (each one round trip), for
    /// benchmarks; `None` for an embedded store.
    fn round_trips(&self) -> Option<u64> {
        None
    }

    /// The store's shared side, when several hubs may share it; then one of
    /// them, the leader, runs the scheduler, autoscaler and reaper (see
    /// [`SharedStore`]). `None` for an embedded store: it has one hub,
    /// always the leader.
    fn shared(&self) -> Option<&Self::Shared>;
}

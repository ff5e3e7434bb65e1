//! What only a store shared by several hubs can do: elect a leader and
//! pass submissions from followers to it.

use std::future::Future;
use std::time::Duration;

use crate::{Handoff, NewTask, StoreError, Submitted};

/// Leadership and hand-offs among hubs sharing one store. One hub, the
/// leader, runs the scheduler, autoscaler and reaper; the others serve the
/// API and forward to it. Only a shared backend (Redis) implements this; an
/// embedded store has one hub, always the leader (see [`NotShared`]).
pub trait SharedStore: Send + Sync + 'static {
    /// Takes (or, for its holder, extends) the leader lease for `hub` for
    /// `ttl_ms`; returns the leader fence while `hub` holds it. The fence
    /// grows with every change of leader.
    fn acquire_leadership(
        &self,
        hub: String,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Extends the lease held by `hub` under `fence`; false once it is lost.
    fn renew_leadership(
        &self,
        hub: String,
        fence: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives the lease up (a hub stopping cleanly), so another hub can take
    /// over at once instead of after the term.
    fn release_leadership(
        &self,
        hub: String,
        fence: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The current leader (its hub id, e.g. its URL) and fence, if any.
    fn current_leader(
        &self,
    ) -> impl Future<Output = Result<Option<(String, u64)>, StoreError>> + Send;

    /// As [`crate::TaskStore::submit`], for a hub that is not the leader and
    /// could not reach it: with the tasks, the store records a hand-off
    /// naming `hub` and the new tasks, which the leader reads with
    /// [`SharedStore::handoffs`] and schedules at once.
    fn submit_handoff(
        &self,
        batch: Vec<NewTask>,
        now: u64,
        hub: String,
    ) -> impl Future<Output = Result<Vec<Submitted>, StoreError>> + Send;

    /// For the leader `hub`: hand-offs other hubs recorded that no leader
    /// has acknowledged yet, delivered to `hub` until it acknowledges them
    /// ([`SharedStore::ack_handoffs`]). With `reclaim`, first those delivered
    /// to an earlier leader that never acknowledged them (it died). Waits up
    /// to `wait` for one when there are none.
    fn handoffs(
        &self,
        hub: String,
        reclaim: bool,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Handoff>, StoreError>> + Send;

    /// Acknowledges hand-offs (by id) the leader `hub` has handled.
    fn ack_handoffs(
        &self,
        hub: String,
        ids: Vec<u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The [`crate::Store::Shared`] of a store that is not shared (one hub):
/// it has no values, so such a store's [`crate::Store::shared`] can only be
/// `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotShared {}

impl SharedStore for NotShared {
    async fn acquire_leadership(&self, _: String, _: u64) -> Result<Option<u64>, StoreError> {
        match *self {}
    }

    async fn renew_leadership(&self, _: String, _: u64, _: u64) -> Result<bool, StoreError> {
        match *self {}
    }

    async fn release_leadership(&self, _: String, _: u64) -> Result<(), StoreError> {
        match *self {}
    }

    async fn current_leader(&self) -> Result<Option<(String, u64)>, StoreError> {
        match *self {}
    }

    async fn submit_handoff(
        &self,
        _: Vec<NewTask>,
        _: u64,
        _: String,
    ) -> Result<Vec<Submitted>, StoreError> {
        match *self {}
    }

    async fn handoffs(&self, _: String, _: bool, _: Duration) -> Result<Vec<Handoff>, StoreError> {
        match *self {}
    }

    async fn ack_handoffs(&self, _: String, _: Vec<u64>) -> Result<(), StoreError> {
        match *self {}
    }
}

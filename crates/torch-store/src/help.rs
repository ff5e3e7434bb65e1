//! Help requests: offered to capable peers, accepted by exactly one.

use std::future::Future;

use serde::{Deserialize, Serialize};
use torch_core::AgentId;

use crate::StoreError;

/// A help request's state.
pub mod help_state {
    /// Waiting for an accept.
    pub const OPEN: &str = "open";
    /// A peer accepted it.
    pub const ACCEPTED: &str = "accepted";
    /// Nobody accepted in time, and no helper could be spawned.
    pub const EXPIRED: &str = "expired";
    /// Nobody accepted in time; a helper was spawned for it.
    pub const ESCALATED: &str = "escalated";
}

/// A help request as stored. The fields from `accepted_by` on change once,
/// when it leaves `open`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelpRecord {
    /// Its id (a UUID v7).
    pub id: String,
    /// Who asked, as a wait-graph node (`task:ID` or `operator:NAME`).
    pub requester: String,
    /// The requesting task's agent, if a task asked.
    pub requester_agent: Option<AgentId>,
    /// The skill wanted.
    pub skill: String,
    /// Its minimum level.
    pub level: f64,
    /// What is wanted, in words.
    pub text: String,
    /// The peers it was offered to, idle ones first.
    pub offered: Vec<AgentId>,
    /// When it was made (unix ms).
    pub created_ms: u64,
    /// When it expires unless accepted (unix ms).
    pub expires_ms: u64,
    /// `open`, `accepted`, `expired` or `escalated` (see [`help_state`]).
    pub state: String,
    /// Who accepted it (a wait-graph node).
    pub accepted_by: Option<String>,
    /// The accepting task's agent, if a task accepted.
    pub accepted_agent: Option<AgentId>,
    /// When it left `open`.
    pub closed_ms: Option<u64>,
    /// The helper agent spawned for it (escalation).
    pub helper: Option<String>,
}

/// What an accept found.
#[derive(Clone, Debug, PartialEq)]
pub enum HelpAccept {
    /// This accept won; the request as it is now.
    Accepted(HelpRecord),
    /// It was no longer open (accepted, expired or escalated): as it is.
    Closed(HelpRecord),
    /// Its time is up (it will be closed as expired or escalated).
    TooLate(HelpRecord),
    /// No such request.
    NotFound,
}

/// Help requests, durably; the accept is atomic: the first wins.
pub trait HelpStore: Send + Sync {
    /// Records a new request (state `open`).
    fn help_put(&self, rec: HelpRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Accepts request `id` for `by` if it is open and not past its
    /// expiry at `now`; the first accept wins, every later one gets
    /// [`HelpAccept::Closed`].
    fn help_accept(
        &self,
        id: String,
        by: String,
        agent: Option<AgentId>,
        now: u64,
    ) -> impl Future<Output = Result<HelpAccept, StoreError>> + Send;

    /// Closes request `id` as `state` (expired or escalated, with the
    /// helper) if it is still open; false when it was not.
    fn help_close(
        &self,
        id: String,
        state: String,
        helper: Option<String>,
        now: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One request.
    fn help_get(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<HelpRecord>, StoreError>> + Send;

    /// Requests, oldest first: only open ones, or the newest `limit` of all.
    fn help_list(
        &self,
        open_only: bool,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<HelpRecord>, StoreError>> + Send;
}

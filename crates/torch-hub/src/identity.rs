//! Agent identity: an agent id belongs to the token that first registered
//! it. A Hello that claims an id registered under another token is refused,
//! so a leaked or shared token of one agent cannot become another.
//!
//! The binding is kept in the store (set once, atomically, with
//! `init_meta`), so it survives hub restarts and holds across hubs sharing a
//! store. The collaboration layer adds the agent's public key to the same
//! identity.

use torch_core::AgentId;
use torch_store::{Store, StoreError};

/// Why an agent id cannot be used by this session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClaimError {
    /// The id was registered by another token.
    #[error(
        "agent id {0} is registered to another token; connect without an id (a new one is assigned) or with the token that registered it"
    )]
    Taken(AgentId),
    /// The store could not be asked.
    #[error("cannot check the agent's identity: {0}")]
    Store(#[from] StoreError),
}

/// Binds `agent` to the token whose hash is `token` on first use; succeeds
/// when it is bound to that token, fails when it is bound to another.
pub(crate) async fn claim<S: Store>(
    store: &S,
    agent: AgentId,
    token: &str,
) -> Result<(), ClaimError> {
    let bound = store
        .init_meta(format!("agent_token:{agent}"), token.to_owned())
        .await?;
    if bound == token {
        Ok(())
    } else {
        Err(ClaimError::Taken(agent))
    }
}

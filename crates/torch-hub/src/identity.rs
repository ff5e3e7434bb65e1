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

/// Why a session cannot have the key it claims.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// The id is bound to another key.
    #[error("agent id {0} is registered with another key")]
    Other(AgentId),
    /// The id is bound to a key and the Hello carried none.
    #[error("agent id {0} is registered with a key; the hello must carry it")]
    Missing(AgentId),
    /// The key is not a hex ed25519 public key.
    #[error("malformed public key: {0}")]
    Malformed(String),
    /// The store could not be asked.
    #[error("cannot check the agent's key: {0}")]
    Store(#[from] StoreError),
}

/// Binds `key` (hex) to `agent` on first use; with no key, checks that the
/// id has none bound. Returns the key to challenge.
pub(crate) async fn bind_key<S: Store>(
    store: &S,
    agent: AgentId,
    key: Option<&str>,
) -> Result<Option<ed25519_dalek::VerifyingKey>, KeyError> {
    let meta = format!("agent_key:{agent}");
    let Some(key) = key else {
        return match store.get_meta(meta).await? {
            Some(_) => Err(KeyError::Missing(agent)),
            None => Ok(None),
        };
    };
    let parsed =
        torch_api::msg::parse_public_key(key).map_err(|e| KeyError::Malformed(e.to_string()))?;
    let canonical = torch_api::msg::public_key_hex(&parsed);
    let bound = store.init_meta(meta, canonical.clone()).await?;
    if bound == canonical {
        Ok(Some(parsed))
    } else {
        Err(KeyError::Other(agent))
    }
}

/// A fresh challenge (hex).
pub(crate) fn challenge() -> String {
    use rand::RngExt;
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

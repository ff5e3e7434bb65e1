//! API tokens (their hashes only).

use std::future::Future;

use crate::{StoreError, TokenRecord};

/// API tokens, stored by hash.
pub trait TokenStore: Send + Sync {
    /// Stores a token (only its hash).
    fn put_token(&self, token: TokenRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Looks a token up by its hash.
    fn find_token(
        &self,
        hash: String,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Number of tokens with the given role (e.g. to know whether an admin
    /// exists), revoked and expired ones included.
    fn count_tokens(&self, role: String) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every token, revoked and expired ones included, oldest first (ties by
    /// hash).
    fn list_tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>, StoreError>> + Send;

    /// Revokes the token whose id ([`TokenRecord::id`]) is `id` at `now` and
    /// returns it as stored afterwards; `None` when no token has that id.
    /// Revoking twice keeps the first time.
    fn revoke_token(
        &self,
        id: String,
        now: u64,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Records a use of the token with this hash at `now` (`last_used_ms`);
    /// an unknown hash is ignored (nothing is created).
    fn touch_token(
        &self,
        hash: String,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

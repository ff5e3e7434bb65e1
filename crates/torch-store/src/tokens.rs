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

    /// Number of tokens with the given role (e.g. to know whether an admin exists).
    fn count_tokens(&self, role: String) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

//! The hub's metadata: a few named values such as its signing secret.

use std::future::Future;

use crate::StoreError;

/// Named metadata values of the hub.
pub trait MetaStore: Send + Sync {
    /// Reads a metadata value (e.g. the hub's signing secret).
    fn get_meta(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Sets a metadata value only if it is absent; returns the value now stored.
    fn init_meta(
        &self,
        key: String,
        value: String,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
}

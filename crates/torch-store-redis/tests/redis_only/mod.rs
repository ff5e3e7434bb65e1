//! Redis-only cases: what the trait cannot say but a Redis deployment needs.

mod audit;
mod consumer;
mod handoff;
mod leader;
mod memory;
mod race;
mod restart;
mod streams;
mod tls;

use std::time::{Duration, Instant};

use torch_store::StoreError;

/// Retries `f` while it fails as unavailable, for up to `within`.
pub(crate) async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(StoreError::Unavailable(m)) if Instant::now() < deadline => {
                let _ = m;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing after {within:?}: {e}"),
        }
    }
}

//! Ending open sessions when their token stops working: revoked (through
//! this hub) or expired.

use std::future::pending;

use tokio::sync::broadcast;
use tokio::time::Instant;

/// Revocations a session may miss while busy before it lags (it then keeps
/// going; the next request with the token is refused anyway).
pub(crate) const REVOCATIONS: usize = 256;

/// Why a session's token stopped working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenEnd {
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
}

impl TokenEnd {
    /// The message told to the agent or node.
    pub(crate) fn message(self) -> &'static str {
        match self {
            TokenEnd::Revoked => "the session's token was revoked",
            TokenEnd::Expired => "the session's token expired",
        }
    }
}

/// Watches one session's token.
pub(crate) struct TokenWatch {
    hash: String,
    expires: Option<Instant>,
    revoked: broadcast::Receiver<String>,
}

impl TokenWatch {
    /// Watches the token with `hash`, expiring `expires_ms` (unix ms; `now_ms` is now).
    pub(crate) fn new(
        revoked: broadcast::Receiver<String>,
        hash: String,
        expires_ms: Option<u64>,
        now_ms: u64,
    ) -> Self {
        let expires = expires_ms
            .map(|e| Instant::now() + std::time::Duration::from_millis(e.saturating_sub(now_ms)));
        TokenWatch {
            hash,
            expires,
            revoked,
        }
    }

    /// Resolves when the token stops working (cancel-safe: use in `select!`).
    pub(crate) async fn ended(&mut self) -> TokenEnd {
        let expiry = async {
            match self.expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => pending().await,
            }
        };
        let revoked = async {
            loop {
                match self.revoked.recv().await {
                    Ok(h) if h == self.hash => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => pending::<()>().await,
                }
            }
        };
        tokio::select! {
            () = expiry => TokenEnd::Expired,
            () = revoked => TokenEnd::Revoked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ends_on_its_own_revocation_or_expiry() {
        let (tx, _) = broadcast::channel(REVOCATIONS);
        let mut w = TokenWatch::new(tx.subscribe(), "mine".into(), None, 0);
        tx.send("other".into()).expect("send");
        tx.send("mine".into()).expect("send");
        assert_eq!(w.ended().await, TokenEnd::Revoked);

        let mut w = TokenWatch::new(tx.subscribe(), "mine".into(), Some(5_000), 1_000);
        let start = Instant::now();
        assert_eq!(w.ended().await, TokenEnd::Expired);
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(4));
    }
}

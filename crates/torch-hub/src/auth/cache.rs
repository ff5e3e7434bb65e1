//! The cache of API tokens, so a request costs no store read.
//!
//! An entry is re-read from the store once it is [`FRESH_FOR`] old, so a
//! token revoked through another hub sharing the store stops working here
//! within that time; a revocation through this hub drops the entry at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use torch_api::rest::Role;
use torch_store::{StoreError, TokenRecord, TokenStore};

/// How long a cached token is trusted before it is read again.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Entries kept at most; past it the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// How often a token's last use is written to the store, at most.
pub(crate) const TOUCH_EVERY_MS: u64 = 60_000;

/// What the hub knows about one token.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    /// Its role.
    pub(crate) role: Role,
    /// Its label.
    pub(crate) name: String,
    /// Its tenant.
    pub(crate) tenant: Option<String>,
    /// When it stops working (unix ms).
    pub(crate) expires_ms: Option<u64>,
    /// When it was revoked.
    pub(crate) revoked_ms: Option<u64>,
    /// Last use recorded (or about to be).
    pub(crate) last_used_ms: Option<u64>,
}

impl Known {
    fn of(rec: &TokenRecord) -> Option<Known> {
        Some(Known {
            role: Role::parse(&rec.role)?,
            name: rec.name.clone(),
            tenant: rec.tenant.clone(),
            expires_ms: rec.expires_ms,
            revoked_ms: rec.revoked_ms,
            last_used_ms: rec.last_used_ms,
        })
    }
}

/// Token hash → what is known, with when it was read.
#[derive(Default)]
pub(crate) struct TokenCache {
    known: Mutex<HashMap<String, (Known, Instant)>>,
}

impl TokenCache {
    /// The token with this hash: from the cache while fresh, else from the
    /// store. `None` for an unknown token or a role this hub does not know.
    pub(crate) async fn lookup<S: TokenStore>(
        &self,
        store: &S,
        hash: &str,
    ) -> Result<Option<Known>, StoreError> {
        if let Some(k) = self.fresh(hash) {
            return Ok(Some(k));
        }
        let Some(known) = store
            .find_token(hash.to_owned())
            .await?
            .as_ref()
            .and_then(Known::of)
        else {
            return Ok(None);
        };
        if let Ok(mut m) = self.known.lock() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(hash.to_owned(), (known.clone(), Instant::now()));
        }
        Ok(Some(known))
    }

    fn fresh(&self, hash: &str) -> Option<Known> {
        let m = self.known.lock().ok()?;
        let (k, at) = m.get(hash)?;
        (at.elapsed() < FRESH_FOR).then(|| k.clone())
    }

    /// True when the token's last use should be written now (at most once
    /// per [`TOUCH_EVERY_MS`]); marks it used at `now` in the cache.
    pub(crate) fn due_touch(&self, hash: &str, now: u64) -> bool {
        let Ok(mut m) = self.known.lock() else {
            return false;
        };
        let Some((k, _)) = m.get_mut(hash) else {
            return false;
        };
        if k.last_used_ms
            .is_some_and(|t| now.saturating_sub(t) < TOUCH_EVERY_MS)
        {
            return false;
        }
        k.last_used_ms = Some(now);
        true
    }

    /// Forgets a token (after it was revoked).
    pub(crate) fn forget(&self, hash: &str) {
        if let Ok(mut m) = self.known.lock() {
            m.remove(hash);
        }
    }
}

//! Bearer tokens and roles.
//!
//! API tokens are random (`torch_` + 64 hex digits), stored only as SHA-256.
//! Task-scoped tokens are `tt1.<task>.<fence>.<mac>` where `mac` is
//! HMAC-SHA256 over `task.fence` with the hub's secret: stateless to check,
//! and useless once the lease (fence) moves on.

mod cache;
mod rate;
mod watch;

use axum::http::HeaderMap;
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use torch_api::rest::Role;
use torch_core::TaskId;

pub(crate) use cache::TokenCache;
pub(crate) use rate::TokenRates;
pub(crate) use watch::TokenWatch;

/// A fresh random API token.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("torch_{}", hex::encode(bytes))
}

/// SHA-256 of a token, hex: what the store keeps.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// HMAC-SHA256 of `msg` under `key` (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The hub's authentication state: the cache of API tokens, their rate
/// limits, revocations for open sessions, and the key of task-scoped tokens.
pub(crate) struct Auth {
    /// API tokens seen lately.
    pub(crate) tokens: TokenCache,
    /// Per-token request rates.
    pub(crate) rates: TokenRates,
    /// Hashes of tokens revoked through this hub, for open sessions.
    revoked: broadcast::Sender<String>,
    /// Mints and checks task-scoped tokens.
    pub(crate) task_tokens: TaskTokens,
}

impl Auth {
    /// Authentication keyed by the hub's `secret`, with `per_second`
    /// requests a second per token in bursts of `burst` (0: no limit).
    pub(crate) fn new(secret: &str, per_second: u32, burst: u32) -> Self {
        Auth {
            tokens: TokenCache::default(),
            rates: TokenRates::new(per_second, burst),
            revoked: broadcast::channel(watch::REVOCATIONS).0,
            task_tokens: TaskTokens::new(secret),
        }
    }

    /// A watch that ends when the token with `hash` is revoked through this
    /// hub or reaches `expires_ms`.
    pub(crate) fn watch(&self, hash: String, expires_ms: Option<u64>, now_ms: u64) -> TokenWatch {
        TokenWatch::new(self.revoked.subscribe(), hash, expires_ms, now_ms)
    }

    /// The token with `hash` was revoked: forget it and end its sessions.
    pub(crate) fn revoked(&self, hash: &str) {
        self.tokens.forget(hash);
        // No receiver means no open session: nothing to end.
        let _ = self.revoked.send(hash.to_owned());
    }
}

/// Mints and checks task-scoped tokens with the hub's secret.
pub(crate) struct TaskTokens {
    secret: Vec<u8>,
}

impl TaskTokens {
    pub(crate) fn new(secret: &str) -> Self {
        TaskTokens {
            secret: secret.as_bytes().to_vec(),
        }
    }

    pub(crate) fn mint(&self, task: TaskId, fence: u64) -> String {
        let msg = format!("{task}.{fence}");
        format!(
            "tt1.{msg}.{}",
            hex::encode(hmac_sha256(&self.secret, msg.as_bytes()))
        )
    }

    /// Returns (task, fence) when the token is authentic.
    pub(crate) fn verify(&self, token: &str) -> Option<(TaskId, u64)> {
        let rest = token.strip_prefix("tt1.")?;
        let (msg, mac) = rest.rsplit_once('.')?;
        let (task, fence) = msg.split_once('.')?;
        let expected = hex::encode(hmac_sha256(&self.secret, msg.as_bytes()));
        // Constant-time comparison.
        if expected.len() != mac.len()
            || expected
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0
        {
            return None;
        }
        Some((task.parse().ok()?, fence.parse().ok()?))
    }
}

/// Extracts the bearer token from headers.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let t = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?;
    Some(t.trim())
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// An API token with a role; `hash` (SHA-256 of the secret) identifies it.
    Token {
        role: Role,
        name: String,
        hash: String,
        /// The tenant of a tenant's token.
        tenant: Option<String>,
        /// When the token stops working (unix ms).
        expires_ms: Option<u64>,
    },
    /// A task-scoped token.
    Task { task: TaskId, fence: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_tokens_verify_only_when_authentic() {
        let t = TaskTokens::new("secret");
        let id: TaskId = "01890000-0000-7000-8000-000000000001".parse().unwrap();
        let tok = t.mint(id, 42);
        assert_eq!(t.verify(&tok), Some((id, 42)));
        let forged = tok.replace(".42.", ".43.");
        assert_eq!(t.verify(&forged), None);
        assert_eq!(TaskTokens::new("other").verify(&tok), None);
        assert_eq!(t.verify("tt1.garbage"), None);
        assert_ne!(generate_token(), generate_token());
        assert_eq!(hash_token("a").len(), 64);
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

//! API tokens: `{torch}:token:<hash>` hashes, found through the set of
//! every token (`{torch}:tokens`) and the per-role sets.

use redis::Value;
use torch_store::{StoreError, TOKEN_ID_LEN, TokenRecord};

use crate::RedisStore;
use crate::read::fields;
use crate::scripts::SCRIPTS;
use crate::value::{parse_u64, uint};

/// Roles whose sets held every token before `{torch}:tokens` existed; a
/// token stored then is found through them.
const LEGACY_ROLES: [&str; 3] = ["admin", "submitter", "agent"];

pub(crate) async fn put_token(s: &RedisStore, token: TokenRecord) -> Result<(), StoreError> {
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let args = [
        "token".to_owned(),
        token.hash,
        token.role,
        token.name,
        token.created_ms.to_string(),
        token.tenant.unwrap_or_default(),
        opt(token.expires_ms),
        opt(token.revoked_ms),
        opt(token.last_used_ms),
    ];
    s.eval(&SCRIPTS.small, token.created_ms, &args).await?;
    Ok(())
}

pub(crate) async fn find_token(
    s: &RedisStore,
    hash: String,
) -> Result<Option<TokenRecord>, StoreError> {
    let reply: Value = s
        .query(redis::cmd("HGETALL").arg(s.keys.token(&hash)))
        .await?;
    let mut f = fields("token", reply)?;
    if f.is_empty() {
        return Ok(None);
    }
    let mut time = |name: &str| -> Result<Option<u64>, StoreError> {
        f.remove(name)
            .map(|v| parse_u64("token time", &v))
            .transpose()
    };
    let created_ms = time("created")?.unwrap_or(0);
    let expires_ms = time("expires")?;
    let revoked_ms = time("revoked")?;
    let last_used_ms = time("used")?;
    Ok(Some(TokenRecord {
        hash,
        role: f.remove("role").unwrap_or_default(),
        name: f.remove("name").unwrap_or_default(),
        created_ms,
        tenant: f.remove("tenant"),
        expires_ms,
        revoked_ms,
        last_used_ms,
    }))
}

pub(crate) async fn count_tokens(s: &RedisStore, role: String) -> Result<u64, StoreError> {
    s.query(redis::cmd("SCARD").arg(s.keys.tokens(&role))).await
}

/// The hashes of every token.
async fn hashes(s: &RedisStore) -> Result<Vec<String>, StoreError> {
    let mut cmd = redis::cmd("SUNION");
    cmd.arg(s.keys.all_tokens());
    for role in LEGACY_ROLES {
        cmd.arg(s.keys.tokens(role));
    }
    s.query(&cmd).await
}

pub(crate) async fn list_tokens(s: &RedisStore) -> Result<Vec<TokenRecord>, StoreError> {
    let mut out = Vec::new();
    for hash in hashes(s).await? {
        if let Some(t) = find_token(s, hash).await? {
            out.push(t);
        }
    }
    out.sort_by(|a, b| (a.created_ms, &a.hash).cmp(&(b.created_ms, &b.hash)));
    Ok(out)
}

pub(crate) async fn revoke_token(
    s: &RedisStore,
    id: String,
    now: u64,
) -> Result<Option<TokenRecord>, StoreError> {
    if id.len() != TOKEN_ID_LEN {
        return Ok(None);
    }
    let Some(hash) = hashes(s).await?.into_iter().find(|h| h.starts_with(&id)) else {
        return Ok(None);
    };
    let args = ["revoke".to_owned(), hash.clone(), now.to_string()];
    if uint("revoked", s.eval(&SCRIPTS.small, now, &args).await?)? == 0 {
        return Ok(None);
    }
    find_token(s, hash).await
}

pub(crate) async fn touch_token(s: &RedisStore, hash: String, now: u64) -> Result<(), StoreError> {
    let args = ["touch".to_owned(), hash, now.to_string()];
    s.eval(&SCRIPTS.small, now, &args).await?;
    Ok(())
}

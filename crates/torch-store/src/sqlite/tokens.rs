//! API tokens: writes (on the writer thread) and reads (on a reader).

use rusqlite::{Connection, Row, params};

use super::rows::{to_i64, to_u64};
use super::writer::Tx;
use crate::{StoreError, TOKEN_ID_LEN, TokenRecord};

/// The columns [`token_row`] reads, in order.
const COLS: &str = "hash, role, name, created_ms, tenant, expires_ms, revoked_ms, last_used_ms";

fn opt_u64(v: Option<i64>) -> Result<Option<u64>, StoreError> {
    v.map(to_u64).transpose()
}

fn token_row(r: &Row<'_>) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        hash: r.get(0)?,
        role: r.get(1)?,
        name: r.get(2)?,
        created_ms: to_u64(r.get(3)?)?,
        tenant: r.get(4)?,
        expires_ms: opt_u64(r.get(5)?)?,
        revoked_ms: opt_u64(r.get(6)?)?,
        last_used_ms: opt_u64(r.get(7)?)?,
    })
}

pub(crate) fn put_token(tx: &mut Tx<'_>, token: TokenRecord) -> Result<(), StoreError> {
    let mut st = tx.conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO tokens ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?;
    st.execute(params![
        token.hash,
        token.role,
        token.name,
        to_i64(token.created_ms),
        token.tenant,
        token.expires_ms.map(to_i64),
        token.revoked_ms.map(to_i64),
        token.last_used_ms.map(to_i64),
    ])?;
    Ok(())
}

pub(crate) fn revoke_token(
    tx: &mut Tx<'_>,
    id: String,
    now: u64,
) -> Result<Option<TokenRecord>, StoreError> {
    if id.len() != TOKEN_ID_LEN {
        return Ok(None);
    }
    let mut st = tx.conn.prepare_cached(&format!(
        "UPDATE tokens SET revoked_ms = coalesce(revoked_ms, ?2)
         WHERE substr(hash, 1, {TOKEN_ID_LEN}) = ?1
         RETURNING {COLS}"
    ))?;
    let mut rows = st.query(params![id, to_i64(now)])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    token_row(row).map(Some)
}

pub(crate) fn touch_token(tx: &mut Tx<'_>, hash: String, now: u64) -> Result<(), StoreError> {
    tx.conn
        .prepare_cached("UPDATE tokens SET last_used_ms = ?2 WHERE hash = ?1")?
        .execute(params![hash, to_i64(now)])?;
    Ok(())
}

pub(crate) fn find_token(
    conn: &Connection,
    hash: String,
) -> Result<Option<TokenRecord>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {COLS} FROM tokens WHERE hash = ?1"))?;
    let mut rows = st.query([&hash])?;
    rows.next()?.map(token_row).transpose()
}

pub(crate) fn list_tokens(conn: &Connection) -> Result<Vec<TokenRecord>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM tokens ORDER BY created_ms, hash"
    ))?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(token_row(r)?);
    }
    Ok(out)
}

pub(crate) fn count_tokens(conn: &Connection, role: String) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM tokens WHERE role = ?1")?
        .query_row([role], |r| r.get(0))?;
    to_u64(n)
}

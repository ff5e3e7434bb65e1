//! Relayed messages on SQLite (table `relay_messages`, schema version 6).

use rusqlite::{Connection, OptionalExtension, Row, params};
use torch_core::AgentId;

use super::writer::Tx;
use crate::{RelayPut, RelayedMessage, StoreError};

const COLUMNS: &str = "id, to_agent, from_agent, urgent, expires_ms, envelope";

fn row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, bool, i64, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn message(
    (id, to, from, urgent, expires_ms, envelope): (String, String, String, bool, i64, String),
) -> Result<RelayedMessage, StoreError> {
    Ok(RelayedMessage {
        id,
        to: to
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("relay_messages.to_agent {to:?}: {e}")))?,
        from,
        urgent,
        expires_ms: expires_ms.max(0) as u64,
        envelope,
    })
}

pub(crate) fn put(tx: &mut Tx<'_>, m: RelayedMessage, cap: usize) -> Result<RelayPut, StoreError> {
    let exists: Option<i64> = tx
        .conn
        .prepare_cached("SELECT 1 FROM relay_messages WHERE id = ?1")?
        .query_row([&m.id], |r| r.get(0))
        .optional()?;
    if exists.is_some() {
        return Ok(RelayPut::Duplicate);
    }
    let kept: i64 = tx
        .conn
        .prepare_cached("SELECT count(*) FROM relay_messages WHERE to_agent = ?1")?
        .query_row([m.to.to_string()], |r| r.get(0))?;
    if kept as usize >= cap {
        return Ok(RelayPut::Full);
    }
    tx.conn
        .prepare_cached(
            "INSERT INTO relay_messages (id, to_agent, from_agent, urgent, expires_ms, envelope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            m.id,
            m.to.to_string(),
            m.from,
            m.urgent,
            m.expires_ms as i64,
            m.envelope
        ])?;
    Ok(RelayPut::Stored)
}

pub(crate) fn pending(
    conn: &Connection,
    to: AgentId,
    limit: usize,
) -> Result<Vec<RelayedMessage>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM relay_messages WHERE to_agent = ?1 ORDER BY urgent DESC, seq LIMIT ?2"
    ))?;
    let rows = st.query_map(params![to.to_string(), limit as i64], row)?;
    rows.map(|r| message(r?)).collect()
}

pub(crate) fn remove(tx: &mut Tx<'_>, to: AgentId, ids: Vec<String>) -> Result<usize, StoreError> {
    let mut st = tx
        .conn
        .prepare_cached("DELETE FROM relay_messages WHERE id = ?1 AND to_agent = ?2")?;
    let to = to.to_string();
    let mut n = 0;
    for id in ids {
        n += st.execute(params![id, to])?;
    }
    Ok(n)
}

pub(crate) fn take_expired(
    tx: &mut Tx<'_>,
    now: u64,
    limit: usize,
) -> Result<Vec<RelayedMessage>, StoreError> {
    let found: Vec<RelayedMessage> = {
        let mut st = tx.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM relay_messages WHERE expires_ms <= ?1 ORDER BY expires_ms, seq LIMIT ?2"
        ))?;
        let rows = st.query_map(params![now as i64, limit as i64], row)?;
        rows.map(|r| message(r?)).collect::<Result<_, _>>()?
    };
    let mut del = tx
        .conn
        .prepare_cached("DELETE FROM relay_messages WHERE id = ?1")?;
    for m in &found {
        del.execute([&m.id])?;
    }
    Ok(found)
}

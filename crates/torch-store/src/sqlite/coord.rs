//! Lock grants and help requests on SQLite (schema version 5).
//!
//! `locks` holds one row per holder, keyed by fence; the counter
//! `lock_fence` (in `counters`) is the highest fence ever granted. Help
//! requests keep their fixed part as JSON (`rec`) and their changing part
//! in columns, so the accept is one conditional `UPDATE … WHERE state =
//! 'open'` inside the writer's transaction: the first accept wins.

use rusqlite::{Connection, OptionalExtension, params};
use torch_core::AgentId;

use super::SqliteStore;
use super::rows::{to_i64, to_u64};
use super::writer::Tx;
use crate::help::help_state;
use crate::{HelpAccept, HelpRecord, HelpStore, LockRecord, LockSnapshot, LockStore, StoreError};

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("help request: {e}"))
}

fn last_lock_fence(conn: &Connection) -> Result<u64, StoreError> {
    let v: Option<i64> = conn
        .prepare_cached("SELECT value FROM counters WHERE name = 'lock_fence'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    to_u64(v.unwrap_or(0))
}

fn grant(tx: &mut Tx<'_>, rec: LockRecord) -> Result<bool, StoreError> {
    let conn = tx.conn;
    if rec.fence <= last_lock_fence(conn)? {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO counters (name, value) VALUES ('lock_fence', ?1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute([to_i64(rec.fence)])?;
    conn.prepare_cached(
        "INSERT INTO locks (fence, name, path, holder, mode, granted_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        to_i64(rec.fence),
        rec.name,
        rec.path,
        rec.holder,
        rec.mode,
        to_i64(rec.granted_ms),
        to_i64(rec.expires_ms)
    ])?;
    Ok(true)
}

fn load_locks(conn: &Connection) -> Result<LockSnapshot, StoreError> {
    let mut holders = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT fence, name, path, holder, mode, granted_ms, expires_ms FROM locks ORDER BY fence",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        holders.push(LockRecord {
            fence: to_u64(r.get(0)?)?,
            name: r.get(1)?,
            path: r.get(2)?,
            holder: r.get(3)?,
            mode: r.get(4)?,
            granted_ms: to_u64(r.get(5)?)?,
            expires_ms: to_u64(r.get(6)?)?,
        });
    }
    Ok(LockSnapshot {
        last_fence: last_lock_fence(conn)?,
        holders,
    })
}

const HELP_COLUMNS: &str = "rec, state, accepted_by, accepted_agent, closed_ms, helper";

fn help_row(r: &rusqlite::Row<'_>) -> Result<HelpRecord, StoreError> {
    let rec: String = r.get(0)?;
    let mut h: HelpRecord = serde_json::from_str(&rec).map_err(json_err)?;
    h.state = r.get(1)?;
    h.accepted_by = r.get(2)?;
    let agent: Option<String> = r.get(3)?;
    h.accepted_agent = agent
        .map(|a| a.parse::<AgentId>())
        .transpose()
        .map_err(|_| StoreError::Corrupt("help request: bad accepting agent id".into()))?;
    let closed: Option<i64> = r.get(4)?;
    h.closed_ms = closed.map(to_u64).transpose()?;
    h.helper = r.get(5)?;
    Ok(h)
}

fn help_get(conn: &Connection, id: &str) -> Result<Option<HelpRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {HELP_COLUMNS} FROM help_requests WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(r) => Ok(Some(help_row(r)?)),
        None => Ok(None),
    }
}

fn help_accept(
    tx: &mut Tx<'_>,
    id: String,
    by: String,
    agent: Option<AgentId>,
    now: u64,
) -> Result<HelpAccept, StoreError> {
    let conn = tx.conn;
    let Some(rec) = help_get(conn, &id)? else {
        return Ok(HelpAccept::NotFound);
    };
    if rec.state != help_state::OPEN {
        return Ok(HelpAccept::Closed(rec));
    }
    if now >= rec.expires_ms {
        return Ok(HelpAccept::TooLate(rec));
    }
    let n = conn
        .prepare_cached(
            "UPDATE help_requests SET state = ?2, accepted_by = ?3, accepted_agent = ?4, closed_ms = ?5
             WHERE id = ?1 AND state = 'open'",
        )?
        .execute(params![
            id,
            help_state::ACCEPTED,
            by,
            agent.map(|a| a.to_string()),
            to_i64(now)
        ])?;
    let after =
        help_get(conn, &id)?.ok_or_else(|| StoreError::Corrupt("help request vanished".into()))?;
    Ok(if n == 1 {
        HelpAccept::Accepted(after)
    } else {
        HelpAccept::Closed(after)
    })
}

impl LockStore for SqliteStore {
    async fn lock_grant(&self, rec: LockRecord) -> Result<bool, StoreError> {
        self.writer.call(move |tx| grant(tx, rec)).await
    }

    async fn lock_renew(
        &self,
        name: String,
        fence: u64,
        expires_ms: u64,
    ) -> Result<bool, StoreError> {
        self.writer
            .call(move |tx| {
                let n = tx
                    .conn
                    .prepare_cached(
                        "UPDATE locks SET expires_ms = ?3 WHERE fence = ?1 AND name = ?2",
                    )?
                    .execute(params![to_i64(fence), name, to_i64(expires_ms)])?;
                Ok(n == 1)
            })
            .await
    }

    async fn lock_release(&self, name: String, fence: u64) -> Result<bool, StoreError> {
        self.writer
            .call(move |tx| {
                let n = tx
                    .conn
                    .prepare_cached("DELETE FROM locks WHERE fence = ?1 AND name = ?2")?
                    .execute(params![to_i64(fence), name])?;
                Ok(n == 1)
            })
            .await
    }

    async fn lock_load(&self) -> Result<LockSnapshot, StoreError> {
        self.readers.run(load_locks).await
    }
}

impl HelpStore for SqliteStore {
    async fn help_put(&self, rec: HelpRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(&rec).map_err(json_err)?;
        self.writer
            .call(move |tx| {
                tx.conn
                    .prepare_cached(
                        "INSERT INTO help_requests (id, rec, state, created_ms, expires_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        rec.id,
                        json,
                        rec.state,
                        to_i64(rec.created_ms),
                        to_i64(rec.expires_ms)
                    ])?;
                Ok(())
            })
            .await
    }

    async fn help_accept(
        &self,
        id: String,
        by: String,
        agent: Option<AgentId>,
        now: u64,
    ) -> Result<HelpAccept, StoreError> {
        self.writer
            .call(move |tx| help_accept(tx, id, by, agent, now))
            .await
    }

    async fn help_close(
        &self,
        id: String,
        state: String,
        helper: Option<String>,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.writer
            .call(move |tx| {
                let n = tx
                    .conn
                    .prepare_cached(
                        "UPDATE help_requests SET state = ?2, helper = ?3, closed_ms = ?4
                         WHERE id = ?1 AND state = 'open'",
                    )?
                    .execute(params![id, state, helper, to_i64(now)])?;
                Ok(n == 1)
            })
            .await
    }

    async fn help_get(&self, id: String) -> Result<Option<HelpRecord>, StoreError> {
        self.readers.run(move |c| help_get(c, &id)).await
    }

    async fn help_list(
        &self,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<HelpRecord>, StoreError> {
        self.readers
            .run(move |c| {
                let sql = if open_only {
                    format!(
                        "SELECT {HELP_COLUMNS} FROM help_requests WHERE state = 'open'
                         ORDER BY created_ms, id LIMIT ?1"
                    )
                } else {
                    format!(
                        "SELECT * FROM (SELECT {HELP_COLUMNS}, created_ms, id FROM help_requests
                         ORDER BY created_ms DESC, id DESC LIMIT ?1) ORDER BY created_ms, id"
                    )
                };
                let mut stmt = c.prepare_cached(&sql)?;
                let mut rows = stmt.query([to_i64(limit.min(10_000) as u64)])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(help_row(r)?);
                }
                Ok(out)
            })
            .await
    }
}

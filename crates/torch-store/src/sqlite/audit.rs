//! The audit log on SQLite (tables `audit_log` and `audit_checkpoints`,
//! schema version 9). Appends run on the writer thread, so a batch chains
//! onto the head inside the same transaction that stores it.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{to_i64, to_u64};
use super::writer::Tx;
use crate::audit::{GENESIS, chain::entry_hash};
use crate::{AuditCheckpoint, AuditEntry, AuditHead, AuditStore, NewAudit, StoreError};

const COLS: &str =
    "seq, at_ms, actor, role, tenant, action, target, outcome, reason, detail, prev, hash";

fn entry(r: &Row<'_>) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: to_u64(r.get(0)?)?,
        entry: NewAudit {
            at_ms: to_u64(r.get(1)?)?,
            actor: r.get(2)?,
            role: r.get(3)?,
            tenant: r.get(4)?,
            action: r.get(5)?,
            target: r.get(6)?,
            outcome: r.get(7)?,
            reason: r.get(8)?,
            detail: r.get(9)?,
        },
        prev: r.get(10)?,
        hash: r.get(11)?,
    })
}

fn head(conn: &Connection) -> Result<AuditHead, StoreError> {
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let last = match last {
        Some(l) => Some(l),
        // Everything before a retention cut is gone: chain onto the cut.
        None => conn
            .prepare_cached("SELECT size, head FROM audit_checkpoints ORDER BY size DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    };
    Ok(match last {
        Some((size, hash)) => AuditHead {
            size: to_u64(size)?,
            hash,
        },
        None => AuditHead {
            size: 0,
            hash: GENESIS.into(),
        },
    })
}

fn append(tx: &mut Tx<'_>, batch: Vec<NewAudit>) -> Result<AuditHead, StoreError> {
    let mut at = head(tx.conn)?;
    let mut st = tx.conn.prepare_cached(&format!(
        "INSERT INTO audit_log ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?;
    for e in batch {
        let seq = at.size + 1;
        let hash = entry_hash(seq, &e, &at.hash);
        st.execute(params![
            to_i64(seq),
            to_i64(e.at_ms),
            e.actor,
            e.role,
            e.tenant,
            e.action,
            e.target,
            e.outcome,
            e.reason,
            e.detail,
            at.hash,
            hash,
        ])?;
        at = AuditHead { size: seq, hash };
    }
    Ok(at)
}

fn range(conn: &Connection, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let mut rows = st.query(params![to_i64(after), limit.min(100_000) as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(entry(r)?);
    }
    Ok(out)
}

fn put_checkpoint(tx: &mut Tx<'_>, cp: &AuditCheckpoint) -> Result<(), StoreError> {
    tx.conn
        .prepare_cached(
            "INSERT OR REPLACE INTO audit_checkpoints (size, head, at_ms, key, sig)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            to_i64(cp.size),
            cp.head,
            to_i64(cp.at_ms),
            cp.key,
            cp.sig
        ])?;
    Ok(())
}

fn checkpoints(conn: &Connection) -> Result<Vec<AuditCheckpoint>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT size, head, at_ms, key, sig FROM audit_checkpoints ORDER BY size",
    )?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(AuditCheckpoint {
            size: to_u64(r.get(0)?)?,
            head: r.get(1)?,
            at_ms: to_u64(r.get(2)?)?,
            key: r.get(3)?,
            sig: r.get(4)?,
        });
    }
    Ok(out)
}

fn cut(tx: &mut Tx<'_>, cp: AuditCheckpoint) -> Result<u64, StoreError> {
    let at: Option<String> = tx
        .conn
        .prepare_cached("SELECT hash FROM audit_log WHERE seq = ?1")?
        .query_row([to_i64(cp.size)], |r| r.get(0))
        .optional()?;
    if at.as_deref() != Some(cp.head.as_str()) {
        return Err(StoreError::Invalid(format!(
            "audit cut at {}: no entry {} with that hash",
            cp.size, cp.size
        )));
    }
    if head(tx.conn)?.size <= cp.size {
        return Err(StoreError::Invalid(format!(
            "audit cut at {}: the newest entry always stays",
            cp.size
        )));
    }
    put_checkpoint(tx, &cp)?;
    let n = tx
        .conn
        .prepare_cached("DELETE FROM audit_log WHERE seq <= ?1")?
        .execute([to_i64(cp.size)])?;
    Ok(n as u64)
}

impl AuditStore for SqliteStore {
    async fn audit_append(&self, batch: Vec<NewAudit>) -> Result<AuditHead, StoreError> {
        self.writer.call(move |tx| append(tx, batch)).await
    }

    async fn audit_range(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.readers.run(move |c| range(c, after, limit)).await
    }

    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        self.readers.run(head).await
    }

    async fn audit_put_checkpoint(&self, cp: AuditCheckpoint) -> Result<(), StoreError> {
        self.writer.call(move |tx| put_checkpoint(tx, &cp)).await
    }

    async fn audit_checkpoints(&self) -> Result<Vec<AuditCheckpoint>, StoreError> {
        self.readers.run(checkpoints).await
    }

    async fn audit_cut(&self, cp: AuditCheckpoint) -> Result<u64, StoreError> {
        self.writer.call(move |tx| cut(tx, cp)).await
    }
}

//! Conversions between SQLite values and domain types, error mapping, and the
//! event append shared by every writing operation.

use rusqlite::{Connection, ErrorCode, Row, params};

use crate::codec::{self, QueuedRow};
use crate::{NewEvent, StoreError};

impl From<rusqlite::Error> for StoreError {
    /// Busy, locked, I/O and similar failures are retryable (`Unavailable`);
    /// anything that says the stored data or schema is not what we expect is
    /// `Corrupt`.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        match &e {
            E::SqliteFailure(f, _) => match f.code {
                ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::ConstraintViolation
                | ErrorCode::TypeMismatch
                | ErrorCode::SchemaChanged => StoreError::Corrupt(e.to_string()),
                _ => StoreError::Unavailable(e.to_string()),
            },
            E::FromSqlConversionFailure(..)
            | E::IntegralValueOutOfRange(..)
            | E::Utf8Error(..)
            | E::InvalidColumnIndex(_)
            | E::InvalidColumnName(_)
            | E::InvalidColumnType(..)
            | E::QueryReturnedNoRows
            | E::QueryReturnedMoreThanOneRow => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// True for a UNIQUE/PRIMARY KEY violation, which some inserts turn into a
/// precise `Invalid` error.
pub(crate) fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

/// A copy of `e` for each caller of a failed batch.
pub(crate) fn dup_err(e: &StoreError) -> StoreError {
    e.clone()
}

/// SQLite integers are signed; our counters and times never reach `i64::MAX`.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Reads back a value written by [`to_i64`]; negative values are corrupt.
pub(crate) fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative counter {v}")))
}

/// The columns [`queued_row`] expects, in order (a literal, for `concat!`).
macro_rules! queued_cols {
    () => {
        "id, priority, seq, not_before_ms, skills, tenant, routing, failed_agents"
    };
}
pub(crate) use queued_cols;

/// Reads the columns of [`queued_cols`] starting at column `at`.
pub(crate) fn queued_row(r: &Row<'_>, at: usize) -> Result<QueuedRow, StoreError> {
    Ok(QueuedRow {
        id: codec::task_id(&r.get::<_, String>(at)?)?,
        priority: r.get(at + 1)?,
        seq: to_u64(r.get(at + 2)?)?,
        not_before: to_u64(r.get(at + 3)?)?,
        skills: r.get(at + 4)?,
        tenant: r.get(at + 5)?,
        routing: r.get(at + 6)?,
        failed_agents: r.get(at + 7)?,
    })
}

/// Appends an event inside the current transaction.
pub(crate) fn put_event(conn: &Connection, ev: NewEvent, now: u64) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "INSERT INTO events (stream, kind, task_id, agent_id, at_ms, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    st.execute(params![
        ev.stream(),
        ev.kind.name(),
        ev.task.map(|t| t.to_string()),
        ev.agent.map(|a| a.to_string()),
        to_i64(now),
        ev.data
    ])?;
    Ok(())
}

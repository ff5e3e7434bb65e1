//! Conversions between SQLite values and domain types, error mapping, and the
//! event append shared by every writing operation.

use rusqlite::{Connection, ErrorCode, params};
use torch_core::{AgentId, SkillReq, TaskId, TaskState};

use crate::StoreError;

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

/// A copy of `e` for each caller of a failed batch (`StoreError` is not `Clone`).
pub(crate) fn dup_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound(t) => StoreError::NotFound(*t),
        StoreError::Conflict {
            task,
            state,
            message,
        } => StoreError::Conflict {
            task: *task,
            state: *state,
            message: message.clone(),
        },
        StoreError::Invalid(m) => StoreError::Invalid(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
    }
}

/// SQLite integers are signed; our counters and times never reach `i64::MAX`.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Reads back a value written by [`to_i64`]; negative values are corrupt.
pub(crate) fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative counter {v}")))
}

/// Parses a stored state name.
pub(crate) fn state(s: &str) -> Result<TaskState, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("bad task state: {e}")))
}

/// Parses a stored task id.
pub(crate) fn task_id(s: &str) -> Result<TaskId, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("bad task id {s:?}: {e}")))
}

/// Parses a stored agent id.
pub(crate) fn agent_id(s: &str) -> Result<AgentId, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("bad agent id {s:?}: {e}")))
}

/// Parses an optional stored agent id.
pub(crate) fn opt_agent(s: Option<String>) -> Result<Option<AgentId>, StoreError> {
    s.as_deref().map(agent_id).transpose()
}

/// Parses a stored JSON column.
pub(crate) fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad {what} JSON: {e}")))
}

/// Serializes a value for a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::Invalid(format!("cannot serialize {what}: {e}")))
}

/// Parses the `skills` column (a task's required skills), skipping the JSON
/// parser for the common empty list.
pub(crate) fn skills(s: &str) -> Result<Vec<SkillReq>, StoreError> {
    if s == "[]" {
        return Ok(Vec::new());
    }
    json("skills", s)
}

/// One event to append.
pub(crate) struct Ev<'a> {
    /// Stream name (one of `crate::streams`).
    pub(crate) stream: &'a str,
    /// Kind, e.g. `task.assigned`.
    pub(crate) kind: &'a str,
    /// Task concerned.
    pub(crate) task: Option<TaskId>,
    /// Agent concerned.
    pub(crate) agent: Option<AgentId>,
    /// JSON text.
    pub(crate) data: String,
}

/// Appends an event inside the current transaction.
pub(crate) fn put_event(conn: &Connection, ev: Ev<'_>, now: u64) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "INSERT INTO events (stream, kind, task_id, agent_id, at_ms, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    st.execute(params![
        ev.stream,
        ev.kind,
        ev.task.map(|t| t.to_string()),
        ev.agent.map(|a| a.to_string()),
        to_i64(now),
        ev.data
    ])?;
    Ok(())
}

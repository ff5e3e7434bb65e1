//! Conversions between SQLite values and domain types, error mapping, and the
//! event append shared by every writing operation.

use rusqlite::{Connection, ErrorCode, Row, params};
use torch_core::scheduler::{DEFAULT_TENANT, QueuedTask};
use torch_core::{AgentId, SkillReq, TaskId, TaskState};

use crate::{Routing, StoreError};

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

/// Parses the `failed_agents` column (NULL: none).
pub(crate) fn failed_agents(s: Option<&str>) -> Result<Vec<AgentId>, StoreError> {
    match s {
        None => Ok(Vec::new()),
        Some(s) => json("failed_agents", s),
    }
}

/// Adds `agent` to the stored `failed_agents` list unless it is already there.
/// Returns the new column value and the list.
pub(crate) fn add_failed(
    stored: Option<&str>,
    agent: Option<AgentId>,
) -> Result<(Option<String>, Vec<AgentId>), StoreError> {
    let mut list = failed_agents(stored)?;
    match agent {
        Some(a) if !list.contains(&a) => list.push(a),
        _ => return Ok((stored.map(str::to_owned), list)),
    }
    Ok((Some(to_json("failed_agents", &list)?), list))
}

/// The columns [`QueuedRow::read`] expects, in order (a literal, for `concat!`).
macro_rules! queued_cols {
    () => {
        "id, priority, seq, not_before_ms, skills, tenant, routing, failed_agents"
    };
}
pub(crate) use queued_cols;

/// The columns of a task row that make its [`QueuedTask`].
pub(crate) struct QueuedRow {
    pub(crate) id: TaskId,
    pub(crate) priority: i32,
    pub(crate) seq: u64,
    pub(crate) not_before: u64,
    /// The `skills` column.
    pub(crate) skills: String,
    /// The `tenant` column.
    pub(crate) tenant: String,
    /// The `routing` column (NULL: derived from the other columns).
    pub(crate) routing: Option<String>,
    /// The `failed_agents` column.
    pub(crate) failed: Option<String>,
}

impl QueuedRow {
    /// Reads the columns of [`queued_cols`] starting at column `at`.
    pub(crate) fn read(r: &Row<'_>, at: usize) -> Result<QueuedRow, StoreError> {
        Ok(QueuedRow {
            id: task_id(&r.get::<_, String>(at)?)?,
            priority: r.get(at + 1)?,
            seq: to_u64(r.get(at + 2)?)?,
            not_before: to_u64(r.get(at + 3)?)?,
            skills: r.get(at + 4)?,
            tenant: r.get(at + 5)?,
            routing: r.get(at + 6)?,
            failed: r.get(at + 7)?,
        })
    }

    /// The queued task; see [`queued`].
    pub(crate) fn queued(&self) -> Result<QueuedTask, StoreError> {
        queued(
            self.id,
            self.priority,
            self.seq,
            self.not_before,
            &self.skills,
            &self.tenant,
            self.routing.as_deref(),
            self.failed.as_deref(),
        )
    }
}

/// The [`QueuedTask`] for a stored task: its stored [`Routing`] when present,
/// else its skills and tenant columns; `avoid` is its `failed_agents`.
/// Every queued task the store hands back is built here, so they all route
/// alike. Without routing (and failures) no JSON beyond the skills is parsed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn queued(
    id: TaskId,
    priority: i32,
    seq: u64,
    not_before: u64,
    skills_json: &str,
    tenant: &str,
    routing_json: Option<&str>,
    failed_json: Option<&str>,
) -> Result<QueuedTask, StoreError> {
    let avoid = failed_agents(failed_json)?;
    if let Some(routing) = routing_json {
        let routing: Routing = json("routing", routing)?;
        return Ok(routing.queued(id, priority, seq, not_before, avoid));
    }
    let mut q =
        QueuedTask::new(id, priority, seq, skills(skills_json)?).with_not_before(not_before);
    if tenant != DEFAULT_TENANT {
        q.tenant = tenant.to_owned();
    }
    q.avoid = avoid;
    Ok(q)
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

//! Queries, run on a small pool of read-only connections beside the writer
//! (WAL lets readers see the last commit without waiting for it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use torch_core::{AgentId, TaskId, TaskState};

use super::rows::{self, queued_cols, to_i64, to_u64};
use super::schema;
use crate::codec;
use crate::{
    EventRecord, LeaseRecord, LogRecord, MemoryEntry, Snapshot, StoreError, TaskFilter, TaskPage,
    TaskRecord,
};

/// Idle read connections kept open.
const MAX_IDLE: usize = 4;

/// Read-only connections, opened on first use and reused.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Arc<Readers> {
        Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a read connection on the blocking thread pool.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = this.take()?;
            let out = f(&conn);
            this.put(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store read did not complete: {e}")))?
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.path),
        }
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

const TASK_COLS: &str = "id, seq, name, state, spec, attempt, fence, agent_id, last_agent_id,
    not_before_ms, progress_pct, progress_msg, progress_ms, outcome, reason, created_ms,
    updated_ms, analysis,
    coalesce(explanation, (SELECT json_extract(e.data, '$.explanation') FROM events e
        WHERE e.id = tasks.explanation_event)),
    failed_agents, parent_id, progress_live";

fn task_row(r: &Row<'_>) -> Result<TaskRecord, StoreError> {
    let pct: Option<f64> = r.get(10)?;
    let progress = match pct {
        Some(p) => Some((
            p,
            r.get(11)?,
            to_u64(r.get::<_, Option<i64>>(12)?.unwrap_or(0))?,
        )),
        None => None,
    };
    let outcome: Option<String> = r.get(13)?;
    Ok(TaskRecord {
        id: codec::task_id(&r.get::<_, String>(0)?)?,
        seq: to_u64(r.get(1)?)?,
        name: r.get(2)?,
        state: codec::state(&r.get::<_, String>(3)?)?,
        spec: codec::json("spec", &r.get::<_, String>(4)?)?,
        deps: Vec::new(),
        attempt: r.get(5)?,
        fence: to_u64(r.get(6)?)?,
        agent: codec::opt_agent(r.get(7)?)?,
        last_agent: codec::opt_agent(r.get(8)?)?,
        not_before_ms: to_u64(r.get(9)?)?,
        progress,
        outcome: outcome
            .as_deref()
            .map(|o| codec::json("outcome", o))
            .transpose()?,
        reason: r.get(14)?,
        created_ms: to_u64(r.get(15)?)?,
        updated_ms: to_u64(r.get(16)?)?,
        analysis: r.get(17)?,
        explanation: r.get(18)?,
        failed_agents: codec::failed_agents(r.get::<_, Option<String>>(19)?.as_deref())?,
        liveness: codec::liveness(r.get::<_, Option<String>>(21)?.as_deref())?,
        parent: r
            .get::<_, Option<String>>(20)?
            .as_deref()
            .map(codec::task_id)
            .transpose()?,
    })
}

fn fill_deps(conn: &Connection, t: &mut TaskRecord) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached("SELECT dep_id FROM deps WHERE task_id = ?1 ORDER BY pos")?;
    let mut q = st.query([t.id.to_string()])?;
    while let Some(r) = q.next()? {
        t.deps.push(codec::task_id(&r.get::<_, String>(0)?)?);
    }
    Ok(())
}

pub(crate) fn get_task(conn: &Connection, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
    let _snapshot = conn.unchecked_transaction()?;
    let sql = format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1");
    let mut st = conn.prepare_cached(&sql)?;
    let mut q = st.query([id.to_string()])?;
    let Some(r) = q.next()? else {
        return Ok(None);
    };
    let mut task = task_row(r)?;
    fill_deps(conn, &mut task)?;
    Ok(Some(task))
}

pub(crate) fn list_tasks(conn: &Connection, filter: TaskFilter) -> Result<TaskPage, StoreError> {
    // One read transaction, so the page and the counts agree.
    let _snapshot = conn.unchecked_transaction()?;
    let mut sql = format!("SELECT {TASK_COLS} FROM tasks WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if !filter.states.is_empty() {
        let marks = vec!["?"; filter.states.len()].join(", ");
        sql.push_str(&format!(" AND state IN ({marks})"));
        args.extend(filter.states.iter().map(|s| Value::Text(s.as_str().into())));
    }
    if let Some(before) = filter.before_seq {
        sql.push_str(" AND seq < ?");
        args.push(Value::Integer(to_i64(before)));
    }
    if let Some(parent) = filter.parent {
        sql.push_str(" AND parent_id = ?");
        args.push(Value::Text(parent.to_string()));
    }
    if let Some((key, value)) = filter.label {
        sql.push_str(" AND id IN (SELECT task_id FROM labels WHERE key = ? AND value = ?)");
        args.push(Value::Text(key));
        args.push(Value::Text(value));
    }
    let limit = codec::page_limit(filter.limit);
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    args.push(Value::Integer(limit as i64));
    let mut tasks = Vec::new();
    {
        let mut st = conn.prepare_cached(&sql)?;
        let mut q = st.query(params_from_iter(args))?;
        while let Some(r) = q.next()? {
            tasks.push(task_row(r)?);
        }
    }
    for t in &mut tasks {
        fill_deps(conn, t)?;
    }
    let mut counts: BTreeMap<TaskState, u64> = TaskState::ALL.iter().map(|s| (*s, 0)).collect();
    let mut st = conn.prepare_cached("SELECT state, count(*) FROM tasks GROUP BY state")?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        counts.insert(codec::state(&r.get::<_, String>(0)?)?, to_u64(r.get(1)?)?);
    }
    Ok(TaskPage { tasks, counts })
}

pub(crate) fn task_logs(conn: &Connection, id: TaskId) -> Result<Option<LogRecord>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT attempt, stdout, stderr, truncated FROM task_logs WHERE task_id = ?1",
    )?;
    Ok(st
        .query_row([id.to_string()], |r| {
            Ok(LogRecord {
                task: id,
                attempt: r.get(0)?,
                stdout: r.get(1)?,
                stderr: r.get(2)?,
                truncated: r.get(3)?,
            })
        })
        .optional()?)
}

pub(crate) fn events(
    conn: &Connection,
    after: u64,
    streams: Vec<String>,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    let mut sql = String::from(
        "SELECT id, stream, kind, task_id, agent_id, at_ms, data FROM events WHERE id > ?",
    );
    let mut args = vec![Value::Integer(to_i64(after))];
    if !streams.is_empty() {
        let mut alts = Vec::with_capacity(streams.len());
        for s in streams {
            if s.ends_with('.') {
                alts.push("substr(stream, 1, ?) = ?");
                args.push(Value::Integer(s.len() as i64));
            } else {
                alts.push("stream = ?");
            }
            args.push(Value::Text(s));
        }
        sql.push_str(&format!(" AND ({})", alts.join(" OR ")));
    }
    let limit = codec::events_limit(limit);
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(Value::Integer(limit as i64));
    let mut st = conn.prepare_cached(&sql)?;
    let mut q = st.query(params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        let task: Option<String> = r.get(3)?;
        out.push(EventRecord {
            id: to_u64(r.get(0)?)?,
            stream: r.get(1)?,
            kind: r.get(2)?,
            task: task.as_deref().map(codec::task_id).transpose()?,
            agent: codec::opt_agent(r.get(4)?)?,
            at_ms: to_u64(r.get(5)?)?,
            data: r.get(6)?,
        });
    }
    Ok(out)
}

pub(crate) fn last_event_id(conn: &Connection) -> Result<u64, StoreError> {
    let id: i64 = conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM events")?
        .query_row([], |r| r.get(0))?;
    to_u64(id)
}

pub(crate) fn get_meta(conn: &Connection, key: String) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub(crate) fn lease_holder(
    conn: &Connection,
    task: TaskId,
) -> Result<Option<(AgentId, u64)>, StoreError> {
    let row: Option<(Option<String>, i64)> = conn
        .prepare_cached(
            "SELECT agent_id, fence FROM tasks
             WHERE id = ?1 AND state IN ('assigned', 'running')",
        )?
        .query_row([task.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((Some(agent), fence)) => Ok(Some((codec::agent_id(&agent)?, to_u64(fence)?))),
        _ => Ok(None),
    }
}

pub(crate) fn load(conn: &Connection) -> Result<Snapshot, StoreError> {
    let _snapshot = conn.unchecked_transaction()?;
    let mut snap = Snapshot::default();
    let mut st = conn.prepare_cached(concat!(
        "SELECT ",
        queued_cols!(),
        " FROM tasks WHERE state = 'queued' ORDER BY seq"
    ))?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        snap.queued.push(rows::queued_row(r, 0)?.queued()?);
    }
    drop(q);
    let mut st = conn.prepare_cached(
        "SELECT id, agent_id, fence, attempt FROM tasks
         WHERE state IN ('assigned', 'running') ORDER BY seq",
    )?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        let task = codec::task_id(&r.get::<_, String>(0)?)?;
        let agent: Option<String> = r.get(1)?;
        let Some(agent) = agent else {
            return Err(StoreError::Corrupt(format!(
                "leased task {task} has no agent"
            )));
        };
        snap.leased.push(LeaseRecord {
            task,
            agent: codec::agent_id(&agent)?,
            fence: to_u64(r.get(2)?)?,
            attempt: r.get(3)?,
        });
    }
    drop(q);
    let backlog: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM tasks
             WHERE state IN ('blocked', 'queued', 'assigned', 'running')",
        )?
        .query_row(params![], |r| r.get(0))?;
    snap.backlog = to_u64(backlog)?;
    Ok(snap)
}

pub(crate) fn memory_get(
    conn: &Connection,
    owner: AgentId,
    key: String,
) -> Result<Option<MemoryEntry>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT key, value, updated_ms, inherited_from FROM agent_memory
         WHERE owner = ?1 AND key = ?2",
    )?;
    let mut q = st.query([owner.to_string(), key])?;
    match q.next()? {
        Some(r) => Ok(Some(memory_row(r)?)),
        None => Ok(None),
    }
}

pub(crate) fn memory_list(
    conn: &Connection,
    owner: AgentId,
) -> Result<Vec<MemoryEntry>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT key, value, updated_ms, inherited_from FROM agent_memory
         WHERE owner = ?1 ORDER BY key",
    )?;
    let mut q = st.query([owner.to_string()])?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        out.push(memory_row(r)?);
    }
    Ok(out)
}

fn memory_row(r: &Row<'_>) -> Result<MemoryEntry, StoreError> {
    Ok(MemoryEntry {
        key: r.get(0)?,
        value: r.get(1)?,
        updated_ms: to_u64(r.get(2)?)?,
        inherited_from: codec::opt_agent(r.get(3)?)?,
    })
}

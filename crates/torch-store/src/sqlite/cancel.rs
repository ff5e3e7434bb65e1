//! Moves in and out of terminal states by hand: cancel (with its cascade to
//! dependents, also used when a task dies) and retry.

use std::collections::VecDeque;

use rusqlite::{Connection, OptionalExtension, params};
use torch_core::events::payload::{TaskCancelled, TaskRetried};
use torch_core::{AgentId, EventData, TaskId, TaskState};

use super::rows::{self, put_event, queued_cols, to_i64};
use super::writer::Tx;
use crate::codec;
use crate::{Cancelled, NewEvent, Requeued, StoreError};

/// Cancels one non-terminal task, recording a lease to revoke if it had one.
fn cancel_one(
    conn: &Connection,
    (id, state, agent, fence): (TaskId, TaskState, Option<AgentId>, u64),
    reason: &str,
    now: u64,
    out: &mut Cancelled,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE tasks SET state = 'cancelled', reason = ?2, agent_id = NULL,
             lease_expires_ms = 0, not_before_ms = 0, updated_ms = ?3
         WHERE id = ?1",
    )?
    .execute(params![id.to_string(), reason, to_i64(now)])?;
    let holder = agent.filter(|_| state.is_leased());
    if let Some(agent) = holder {
        out.revoked.push((id, agent, fence));
    }
    let cancelled = EventData::TaskCancelled(TaskCancelled {
        reason: reason.to_owned(),
        was: state,
    });
    put_event(conn, NewEvent::of(&cancelled, Some(id), holder)?, now)?;
    out.tasks.push(id);
    Ok(())
}

/// Cancels the non-terminal dependents of `root`, transitively, breadth first.
pub(crate) fn cascade(
    conn: &Connection,
    root: TaskId,
    reason: &str,
    now: u64,
    out: &mut Cancelled,
) -> Result<(), StoreError> {
    let mut queue = VecDeque::from([root]);
    while let Some(id) = queue.pop_front() {
        let mut st = conn.prepare_cached(
            "SELECT t.id, t.state, t.agent_id, t.fence
             FROM deps d JOIN tasks t ON t.id = d.task_id WHERE d.dep_id = ?1",
        )?;
        let found = st
            .query_map([id.to_string()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(st);
        for (dep_id, state, agent, fence) in found {
            let state = codec::state(&state)?;
            if state.is_terminal() {
                continue;
            }
            let dep_id = codec::task_id(&dep_id)?;
            let victim = (
                dep_id,
                state,
                codec::opt_agent(agent)?,
                rows::to_u64(fence)?,
            );
            cancel_one(conn, victim, reason, now, out)?;
            queue.push_back(dep_id);
        }
    }
    Ok(())
}

pub(crate) fn cancel(
    tx: &mut Tx<'_>,
    task: TaskId,
    reason: String,
    now: u64,
) -> Result<Cancelled, StoreError> {
    let conn = tx.conn;
    let mut st =
        conn.prepare_cached("SELECT name, state, agent_id, fence FROM tasks WHERE id = ?1")?;
    let row: Option<(String, String, Option<String>, i64)> = st
        .query_row([task.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    drop(st);
    let Some((name, state, agent, fence)) = row else {
        return Err(StoreError::NotFound(task));
    };
    let state = codec::state(&state)?;
    if state.is_terminal() {
        return Err(StoreError::Conflict {
            task,
            state,
            message: "only unfinished tasks can be cancelled".into(),
        });
    }
    let mut out = Cancelled {
        tasks: Vec::new(),
        revoked: Vec::new(),
    };
    let victim = (task, state, codec::opt_agent(agent)?, rows::to_u64(fence)?);
    cancel_one(conn, victim, &reason, now, &mut out)?;
    let why = format!("dependency {name} ({task}) was cancelled");
    cascade(conn, task, &why, now, &mut out)?;
    Ok(out)
}

pub(crate) fn retry(tx: &mut Tx<'_>, task: TaskId, now: u64) -> Result<Requeued, StoreError> {
    let conn = tx.conn;
    let id = task.to_string();
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM tasks WHERE id = ?1")?
        .query_row([&id], |r| r.get(0))
        .optional()?;
    let Some(state) = state else {
        return Err(StoreError::NotFound(task));
    };
    let state = codec::state(&state)?;
    if !matches!(state, TaskState::Dead | TaskState::Cancelled) {
        return Err(StoreError::Conflict {
            task,
            state,
            message: "only dead or cancelled tasks can be retried".into(),
        });
    }
    let mut st = conn.prepare_cached(
        "SELECT d.dep_id, t.name, t.state
         FROM deps d LEFT JOIN tasks t ON t.id = d.dep_id
         WHERE d.task_id = ?1 ORDER BY d.pos",
    )?;
    let deps = st
        .query_map([&id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    drop(st);
    let mut pending = 0u32;
    for (dep, dep_name, dep_state) in deps {
        let conflict = |message: String| StoreError::Conflict {
            task,
            state,
            message,
        };
        let (Some(dep_name), Some(dep_state)) = (dep_name, dep_state) else {
            return Err(conflict(format!("dependency {dep} no longer exists")));
        };
        match codec::state(&dep_state)? {
            TaskState::Succeeded => {}
            s @ (TaskState::Dead | TaskState::Cancelled) => {
                return Err(conflict(format!(
                    "dependency {dep_name} ({dep}) is {s}; retry it first"
                )));
            }
            _ => pending += 1,
        }
    }
    let new_state = if pending == 0 {
        TaskState::Queued
    } else {
        TaskState::Blocked
    };
    // `failed_agents` is kept: routing still avoids them while others can.
    let row = {
        let mut st = conn.prepare_cached(concat!(
            "UPDATE tasks SET state = ?2, retries_used = 0, deps_pending = ?3, reason = NULL,
                 agent_id = NULL, lease_expires_ms = 0, not_before_ms = 0, updated_ms = ?4
             WHERE id = ?1
             RETURNING ",
            queued_cols!()
        ))?;
        let mut q = st.query(params![id, new_state.as_str(), pending, to_i64(now)])?;
        let r = q.next()?.ok_or(StoreError::NotFound(task))?;
        rows::queued_row(r, 0)?
    };
    let retried = EventData::TaskRetried(TaskRetried {
        state: new_state,
        was: state,
    });
    put_event(conn, NewEvent::of(&retried, Some(task), None)?, now)?;
    let ready = match new_state {
        TaskState::Queued => Some(row.queued()?),
        _ => None,
    };
    Ok(Requeued {
        task,
        state: new_state,
        ready,
    })
}

//! Leasing, start, progress and the small writes (agents, events, tokens,
//! metadata). Each runs on the writer thread inside its own savepoint (see
//! `writer`), so returning an error undoes everything the operation wrote.

use rusqlite::{OptionalExtension, params};
use torch_core::events::payload;
use torch_core::{AgentId, EventData, EventKind, Liveness, TaskId, TaskSpec, TaskState};

use super::rows::{self, put_event, to_i64};
use super::writer::Tx;
use crate::codec;
use crate::{
    AgentEvent, ClaimRefused, FenceCheck, Grant, Leased, MemoryLimits, NewEvent, StoreError,
};

pub(crate) fn assign(
    tx: &mut Tx<'_>,
    grants: Vec<Grant>,
    now: u64,
) -> Result<Vec<Result<Leased, ClaimRefused>>, StoreError> {
    let mut out = Vec::with_capacity(grants.len());
    for g in grants {
        let fence = tx.peek_fence();
        let id = g.task.to_string();
        let mut st = tx.conn.prepare_cached(
            "UPDATE tasks SET state = 'assigned', agent_id = ?2, fence = ?3, attempt = attempt + 1,
                 lease_expires_ms = ?4, not_before_ms = 0, progress_pct = NULL,
                 progress_msg = NULL, progress_ms = NULL, progress_live = NULL, updated_ms = ?5, explanation = NULL,
                 explanation_event = NULL
             WHERE id = ?1 AND state = 'queued'
             RETURNING name, spec, attempt",
        )?;
        let row: Option<(String, String, u32)> = st
            .query_row(
                params![
                    id,
                    g.agent.to_string(),
                    to_i64(fence),
                    to_i64(g.expires_ms),
                    to_i64(now),
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((name, spec, attempt)) = row else {
            let state = current(tx, g.task)?.map(|(_, s)| s);
            out.push(Err(ClaimRefused {
                task: g.task,
                state,
            }));
            continue;
        };
        tx.take_fence();
        let spec: TaskSpec = codec::json("spec", &spec)?;
        let assigned = EventData::TaskAssigned(payload::TaskAssigned {
            agent: g.agent,
            attempt,
            fence,
            explanation: None,
        });
        let mut ev = NewEvent::of(&assigned, Some(g.task), Some(g.agent))?;
        if let Some(x) = &g.explanation {
            ev.data = codec::with_explanation(ev.data, &codec::explanation_json(x));
        }
        put_event(tx.conn, ev, now)?;
        if g.explanation.is_some() {
            let event = tx.conn.last_insert_rowid();
            tx.conn
                .prepare_cached("UPDATE tasks SET explanation_event = ?2 WHERE id = ?1")?
                .execute(params![id, event])?;
        }
        out.push(Ok(Leased {
            task: g.task,
            agent: g.agent,
            fence,
            attempt,
            name,
            spec,
        }));
    }
    Ok(out)
}

/// The task's fence and state, if it exists.
fn current(tx: &Tx<'_>, task: TaskId) -> Result<Option<(u64, TaskState)>, StoreError> {
    let mut st = tx
        .conn
        .prepare_cached("SELECT fence, state FROM tasks WHERE id = ?1")?;
    let row: Option<(i64, String)> = st
        .query_row([task.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(f, s)| Ok((rows::to_u64(f)?, codec::state(&s)?)))
        .transpose()
}

/// The answer to a fenced report that changed nothing.
fn refused(tx: &Tx<'_>, task: TaskId) -> Result<FenceCheck, StoreError> {
    Ok(match current(tx, task)? {
        None => FenceCheck::NotFound,
        Some((current_fence, state)) => FenceCheck::Stale {
            current_fence,
            state,
        },
    })
}

pub(crate) fn start(
    tx: &mut Tx<'_>,
    held: Vec<(TaskId, u64)>,
    now: u64,
) -> Result<Vec<FenceCheck>, StoreError> {
    let mut out = Vec::with_capacity(held.len());
    for (task, fence) in held {
        let mut st = tx.conn.prepare_cached(
            "UPDATE tasks SET state = 'running', updated_ms = ?3
             WHERE id = ?1 AND fence = ?2 AND state = 'assigned'
             RETURNING agent_id",
        )?;
        let agent: Option<Option<String>> = st
            .query_row(params![task.to_string(), to_i64(fence), to_i64(now)], |r| {
                r.get(0)
            })
            .optional()?;
        let check = match agent {
            Some(agent) => {
                let agent = codec::opt_agent(agent)?;
                let started = EventData::TaskStarted(payload::TaskStarted { fence });
                put_event(tx.conn, NewEvent::of(&started, Some(task), agent)?, now)?;
                FenceCheck::Ok
            }
            // Already running under this fence: a resent start is harmless.
            None => match current(tx, task)? {
                Some((f, TaskState::Running)) if f == fence => FenceCheck::Ok,
                Some((current_fence, state)) => FenceCheck::Stale {
                    current_fence,
                    state,
                },
                None => FenceCheck::NotFound,
            },
        };
        out.push(check);
    }
    Ok(out)
}

pub(crate) fn progress(
    tx: &mut Tx<'_>,
    task: TaskId,
    fence: u64,
    percent: f64,
    message: Option<String>,
    live: Option<Liveness>,
    now: u64,
) -> Result<FenceCheck, StoreError> {
    let percent = codec::progress_percent(percent);
    let live_text = codec::liveness_text(live.as_ref())?;
    let mut st = tx.conn.prepare_cached(
        "UPDATE tasks SET state = 'running', progress_pct = ?3, progress_msg = ?4,
             progress_ms = ?5, updated_ms = ?5, progress_live = ?6
         WHERE id = ?1 AND fence = ?2 AND state IN ('assigned', 'running')
         RETURNING agent_id",
    )?;
    let agent: Option<Option<String>> = st
        .query_row(
            params![
                task.to_string(),
                to_i64(fence),
                percent,
                message,
                to_i64(now),
                live_text
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(agent) = agent else {
        return refused(tx, task);
    };
    let ev = NewEvent {
        kind: EventKind::TaskProgress,
        task: Some(task),
        agent: codec::opt_agent(agent)?,
        data: codec::progress_data(fence, percent, message.as_deref(), live.as_ref())?,
    };
    put_event(tx.conn, ev, now)?;
    Ok(FenceCheck::Ok)
}

pub(crate) fn agent_event(tx: &mut Tx<'_>, event: AgentEvent, now: u64) -> Result<(), StoreError> {
    match &event {
        AgentEvent::Joined {
            id,
            name,
            skills,
            slots,
            labels,
        } => {
            let mut st = tx.conn.prepare_cached(
                "INSERT INTO agents (id, name, skills, slots, labels, state, joined_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'joined', ?6)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, skills = excluded.skills,
                     slots = excluded.slots, labels = excluded.labels, state = 'joined',
                     joined_ms = excluded.joined_ms, left_ms = NULL, reason = NULL",
            )?;
            st.execute(params![
                id.to_string(),
                name,
                codec::to_json("skills", skills)?,
                slots,
                codec::to_json("labels", labels)?,
                to_i64(now)
            ])?;
        }
        AgentEvent::Left { id, reason } => {
            let mut st = tx.conn.prepare_cached(
                "UPDATE agents SET state = 'left', left_ms = ?2, reason = ?3 WHERE id = ?1",
            )?;
            st.execute(params![id.to_string(), to_i64(now), reason])?;
        }
    }
    append_event(tx, codec::agent_event(&event)?, now)
}

pub(crate) fn append_event(tx: &mut Tx<'_>, event: NewEvent, now: u64) -> Result<(), StoreError> {
    put_event(tx.conn, event, now)
}

pub(crate) fn init_meta(tx: &mut Tx<'_>, key: String, value: String) -> Result<String, StoreError> {
    tx.conn
        .prepare_cached("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)")?
        .execute([&key, &value])?;
    let stored: String = tx
        .conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([&key], |r| r.get(0))?;
    Ok(stored)
}

/// Keys and bytes (keys plus values) of `owner`'s memory, not counting `except`.
fn memory_usage(tx: &Tx<'_>, owner: &str, except: &[String]) -> Result<(usize, usize), StoreError> {
    let mut st = tx.conn.prepare_cached(
        "SELECT key, length(CAST(value AS BLOB)) FROM agent_memory WHERE owner = ?1",
    )?;
    let mut q = st.query([owner])?;
    let (mut keys, mut bytes) = (0usize, 0usize);
    while let Some(r) = q.next()? {
        let key: String = r.get(0)?;
        if except.contains(&key) {
            continue;
        }
        let len: i64 = r.get(1)?;
        keys += 1;
        bytes += key.len() + usize::try_from(len).unwrap_or(0);
    }
    Ok((keys, bytes))
}

fn put_memory(
    tx: &Tx<'_>,
    owner: &str,
    key: &str,
    value: &str,
    from: Option<&str>,
    now: u64,
) -> Result<(), StoreError> {
    tx.conn
        .prepare_cached(
            "INSERT OR REPLACE INTO agent_memory (owner, key, value, updated_ms, inherited_from)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![owner, key, value, to_i64(now), from])?;
    Ok(())
}

pub(crate) fn memory_put(
    tx: &mut Tx<'_>,
    owner: AgentId,
    key: String,
    value: String,
    limits: MemoryLimits,
    now: u64,
) -> Result<(), StoreError> {
    limits
        .check_entry(&key, &value)
        .map_err(StoreError::LimitExceeded)?;
    let owner = owner.to_string();
    let (keys, bytes) = memory_usage(tx, &owner, std::slice::from_ref(&key))?;
    limits
        .check_totals(keys + 1, bytes + key.len() + value.len())
        .map_err(StoreError::LimitExceeded)?;
    put_memory(tx, &owner, &key, &value, None, now)
}

pub(crate) fn memory_inherit(
    tx: &mut Tx<'_>,
    from: AgentId,
    to: AgentId,
    keys: Vec<String>,
    limits: MemoryLimits,
    now: u64,
) -> Result<Vec<String>, StoreError> {
    let (src, dst) = (from.to_string(), to.to_string());
    let mut copied = Vec::new();
    let mut added = 0usize;
    for key in keys {
        let value: Option<String> = tx
            .conn
            .prepare_cached("SELECT value FROM agent_memory WHERE owner = ?1 AND key = ?2")?
            .query_row([&src, &key], |r| r.get(0))
            .optional()?;
        let Some(value) = value else { continue };
        limits
            .check_entry(&key, &value)
            .map_err(StoreError::LimitExceeded)?;
        added += key.len() + value.len();
        copied.push((key, value));
    }
    let keys: Vec<String> = copied.iter().map(|(k, _)| k.clone()).collect();
    let (have, bytes) = memory_usage(tx, &dst, &keys)?;
    limits
        .check_totals(have + copied.len(), bytes + added)
        .map_err(StoreError::LimitExceeded)?;
    for (key, value) in &copied {
        put_memory(tx, &dst, key, value, Some(&src), now)?;
    }
    let inherited = EventData::AgentMemoryInherited(payload::MemoryInherited {
        from,
        keys: keys.clone(),
        to,
    });
    put_event(tx.conn, NewEvent::of(&inherited, None, Some(to))?, now)?;
    Ok(keys)
}

/// See [`crate::Store::purge_finished`].
pub(crate) fn purge_finished(
    tx: &mut Tx<'_>,
    before_ms: u64,
    limit: usize,
) -> Result<u64, StoreError> {
    let conn = tx.conn;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM tasks
             WHERE state IN ('succeeded', 'dead', 'cancelled') AND updated_ms < ?1
             ORDER BY seq LIMIT ?2",
        )?
        .query_map(params![to_i64(before_ms), limit], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        for sql in [
            "DELETE FROM deps WHERE task_id = ?1",
            "DELETE FROM labels WHERE task_id = ?1",
            "DELETE FROM task_logs WHERE task_id = ?1",
            "DELETE FROM tasks WHERE id = ?1",
        ] {
            conn.prepare_cached(sql)?.execute([id])?;
        }
    }
    // A task has four or five events: old events go at eight per task
    // allowed, so they keep up with the tasks.
    conn.prepare_cached(
        "DELETE FROM events WHERE id IN
           (SELECT id FROM events WHERE at_ms < ?1 ORDER BY id LIMIT ?2)",
    )?
    .execute(params![to_i64(before_ms), limit.saturating_mul(8)])?;
    Ok(ids.len() as u64)
}

//! Writing operations other than attempt ends: submission, leasing, start,
//! progress, agents, events, tokens and metadata. Each runs on the writer
//! thread inside its own savepoint (see `writer`), so returning an error
//! undoes everything the operation wrote.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};
use serde_json::json;
use torch_core::scheduler::QueuedTask;
use torch_core::{TaskId, TaskState, TaskSpec};

use super::rows::{self, Ev, is_constraint, put_event, to_i64};
use super::writer::Tx;
use crate::{
    AGENTS_SPAWNING, AGENTS_TERMINATING, AgentEvent, ClaimRefused, FenceCheck, Grant, Leased,
    NewEvent, NewTask, StoreError, Submitted, TASKS_ACTIVE, TASKS_QUEUE, TokenRecord,
};

/// Tenant used when a spec names none.
const DEFAULT_TENANT: &str = "default";

/// What submission decided for one task of the batch.
enum Slot {
    /// Inserted as a new task.
    New,
    /// Its idempotency key matched a stored task.
    Stored(Submitted),
    /// Its idempotency key matched an earlier task of this batch (by index).
    Earlier(usize),
}

pub(crate) fn submit(
    tx: &mut Tx<'_>,
    batch: Vec<NewTask>,
    now: u64,
) -> Result<Vec<Submitted>, StoreError> {
    let conn = tx.conn;
    // Pass 1: idempotency. A duplicate's minted id is an alias for the task
    // it duplicates, so later tasks of the batch may depend on it.
    let mut slots = Vec::with_capacity(batch.len());
    let mut alias: HashMap<TaskId, TaskId> = HashMap::new();
    let mut keys: HashMap<(&str, &str), usize> = HashMap::new();
    let mut fresh: HashSet<TaskId> = HashSet::with_capacity(batch.len());
    for (i, t) in batch.iter().enumerate() {
        if let Some(key) = t.spec.idempotency_key.as_deref() {
            let tenant = t.spec.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
            if let Some(&j) = keys.get(&(tenant, key)) {
                alias.insert(t.id, batch[j].id);
                slots.push(Slot::Earlier(j));
                continue;
            }
            if let Some(dup) = find_key(tx, tenant, key)? {
                alias.insert(t.id, dup.id);
                slots.push(Slot::Stored(dup));
                continue;
            }
            keys.insert((tenant, key), i);
        }
        if !fresh.insert(t.id) {
            return Err(StoreError::Invalid(format!(
                "task {} ({}) appears twice in the batch",
                t.name, t.id
            )));
        }
        slots.push(Slot::New);
    }

    // Pass 2: check every dependency before writing anything.
    let mut resolved: Vec<(Vec<TaskId>, u32)> = Vec::with_capacity(batch.len());
    for (t, slot) in batch.iter().zip(&slots) {
        if !matches!(slot, Slot::New) {
            resolved.push((Vec::new(), 0));
            continue;
        }
        let mut deps: Vec<TaskId> = Vec::with_capacity(t.deps.len());
        let mut pending = 0u32;
        for dep in &t.deps {
            let dep = alias.get(dep).copied().unwrap_or(*dep);
            if dep == t.id {
                return Err(StoreError::Invalid(format!(
                    "task {} ({}) depends on itself",
                    t.name, t.id
                )));
            }
            if deps.contains(&dep) {
                continue;
            }
            deps.push(dep);
            if fresh.contains(&dep) {
                pending += 1;
                continue;
            }
            let mut st = conn.prepare_cached("SELECT name, state FROM tasks WHERE id = ?1")?;
            let found: Option<(String, String)> = st
                .query_row([dep.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((dep_name, dep_state)) = found else {
                return Err(StoreError::Invalid(format!(
                    "task {} ({}): dependency {dep} does not exist",
                    t.name, t.id
                )));
            };
            match rows::state(&dep_state)? {
                TaskState::Succeeded => {}
                s @ (TaskState::Dead | TaskState::Cancelled) => {
                    return Err(StoreError::Invalid(format!(
                        "task {} ({}): dependency {dep_name} ({dep}) is {s}",
                        t.name, t.id
                    )));
                }
                _ => pending += 1,
            }
        }
        resolved.push((deps, pending));
    }

    // Pass 3: insert.
    let mut out: Vec<Submitted> = Vec::with_capacity(batch.len());
    for ((t, slot), (deps, pending)) in batch.iter().zip(slots).zip(resolved) {
        let sub = match slot {
            Slot::New => insert(tx, t, &deps, pending, now)?,
            Slot::Stored(dup) => dup,
            Slot::Earlier(j) => {
                let first = &out[j];
                Submitted {
                    id: first.id,
                    name: first.name.clone(),
                    state: first.state,
                    duplicate: true,
                    ready: None,
                }
            }
        };
        out.push(sub);
    }
    Ok(out)
}

fn find_key(tx: &Tx<'_>, tenant: &str, key: &str) -> Result<Option<Submitted>, StoreError> {
    let mut st = tx.conn.prepare_cached(
        "SELECT id, name, state FROM tasks WHERE tenant = ?1 AND idempotency_key = ?2",
    )?;
    let row: Option<(String, String, String)> = st
        .query_row([tenant, key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(id, name, state)| {
        Ok(Submitted {
            id: rows::task_id(&id)?,
            name,
            state: rows::state(&state)?,
            duplicate: true,
            ready: None,
        })
    })
    .transpose()
}

fn insert(
    tx: &Tx<'_>,
    t: &NewTask,
    deps: &[TaskId],
    pending: u32,
    now: u64,
) -> Result<Submitted, StoreError> {
    let conn = tx.conn;
    let state = if pending == 0 {
        TaskState::Queued
    } else {
        TaskState::Blocked
    };
    let spec = &t.spec;
    let id = t.id.to_string();
    let backoff = spec
        .backoff
        .as_ref()
        .map(|b| rows::to_json("backoff", b))
        .transpose()?;
    let mut st = conn.prepare_cached(
        "INSERT INTO tasks (id, name, state, priority, tenant, idempotency_key, spec, skills,
                            max_retries, backoff, deps_pending, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
    )?;
    let inserted = st.execute(params![
        id,
        t.name,
        state.as_str(),
        spec.priority,
        spec.tenant.as_deref().unwrap_or(DEFAULT_TENANT),
        spec.idempotency_key,
        rows::to_json("spec", spec)?,
        rows::to_json("skills", &spec.skills)?,
        spec.max_retries(),
        backoff,
        pending,
        to_i64(now),
    ]);
    match inserted {
        Ok(_) => {}
        Err(e) if is_constraint(&e) => {
            return Err(StoreError::Invalid(format!(
                "task {} ({}): a task with this id already exists",
                t.name, t.id
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let seq = rows::to_u64(conn.last_insert_rowid())?;
    if !deps.is_empty() {
        let mut st =
            conn.prepare_cached("INSERT INTO deps (task_id, pos, dep_id) VALUES (?1, ?2, ?3)")?;
        for (pos, dep) in deps.iter().enumerate() {
            st.execute(params![id, pos as i64, dep.to_string()])?;
        }
    }
    if !spec.labels.is_empty() {
        let mut st =
            conn.prepare_cached("INSERT INTO labels (task_id, key, value) VALUES (?1, ?2, ?3)")?;
        for (k, v) in &spec.labels {
            st.execute(params![id, k, v])?;
        }
    }
    let data = json!({"name": t.name, "state": state, "priority": spec.priority});
    let ev = Ev {
        stream: TASKS_QUEUE,
        kind: "task.submitted",
        task: Some(t.id),
        agent: None,
        data: data.to_string(),
    };
    put_event(conn, ev, now)?;
    let ready = (state == TaskState::Queued).then(|| QueuedTask {
        id: t.id,
        priority: spec.priority,
        seq,
        skills: spec.skills.clone(),
        not_before: 0,
    });
    Ok(Submitted {
        id: t.id,
        name: t.name.clone(),
        state,
        duplicate: false,
        ready,
    })
}

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
                 progress_msg = NULL, progress_ms = NULL, updated_ms = ?5
             WHERE id = ?1 AND state = 'queued'
             RETURNING name, spec, attempt",
        )?;
        let row: Option<(String, String, u32)> = st
            .query_row(
                params![id, g.agent.to_string(), to_i64(fence), to_i64(g.expires_ms), to_i64(now)],
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
        let spec: TaskSpec = rows::json("spec", &spec)?;
        let data = json!({"agent": g.agent, "fence": fence, "attempt": attempt});
        let ev = Ev {
            stream: TASKS_ACTIVE,
            kind: "task.assigned",
            task: Some(g.task),
            agent: Some(g.agent),
            data: data.to_string(),
        };
        put_event(tx.conn, ev, now)?;
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
    row.map(|(f, s)| Ok((rows::to_u64(f)?, rows::state(&s)?)))
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
                let agent = rows::opt_agent(agent)?;
                let ev = Ev {
                    stream: TASKS_ACTIVE,
                    kind: "task.started",
                    task: Some(task),
                    agent,
                    data: json!({"fence": fence}).to_string(),
                };
                put_event(tx.conn, ev, now)?;
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
    now: u64,
) -> Result<FenceCheck, StoreError> {
    let percent = if percent.is_nan() {
        0.0
    } else {
        percent.clamp(0.0, 100.0)
    };
    let mut st = tx.conn.prepare_cached(
        "UPDATE tasks SET state = 'running', progress_pct = ?3, progress_msg = ?4,
             progress_ms = ?5, updated_ms = ?5
         WHERE id = ?1 AND fence = ?2 AND state IN ('assigned', 'running')
         RETURNING agent_id",
    )?;
    let agent: Option<Option<String>> = st
        .query_row(
            params![task.to_string(), to_i64(fence), percent, message, to_i64(now)],
            |r| r.get(0),
        )
        .optional()?;
    let Some(agent) = agent else {
        return refused(tx, task);
    };
    let ev = Ev {
        stream: TASKS_ACTIVE,
        kind: "task.progress",
        task: Some(task),
        agent: rows::opt_agent(agent)?,
        data: json!({"fence": fence, "percent": percent, "message": message}).to_string(),
    };
    put_event(tx.conn, ev, now)?;
    Ok(FenceCheck::Ok)
}

pub(crate) fn agent_event(tx: &mut Tx<'_>, event: AgentEvent, now: u64) -> Result<(), StoreError> {
    let ev = match event {
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
                rows::to_json("skills", &skills)?,
                slots,
                rows::to_json("labels", &labels)?,
                to_i64(now)
            ])?;
            let data = json!({"name": name, "slots": slots, "skills": skills, "labels": labels});
            Ev {
                stream: AGENTS_SPAWNING,
                kind: "agent.joined",
                task: None,
                agent: Some(id),
                data: data.to_string(),
            }
        }
        AgentEvent::Left { id, reason } => {
            let mut st = tx.conn.prepare_cached(
                "UPDATE agents SET state = 'left', left_ms = ?2, reason = ?3 WHERE id = ?1",
            )?;
            st.execute(params![id.to_string(), to_i64(now), reason])?;
            Ev {
                stream: AGENTS_TERMINATING,
                kind: "agent.left",
                task: None,
                agent: Some(id),
                data: json!({"reason": reason}).to_string(),
            }
        }
    };
    put_event(tx.conn, ev, now)
}

pub(crate) fn append_event(tx: &mut Tx<'_>, event: NewEvent, now: u64) -> Result<(), StoreError> {
    let ev = Ev {
        stream: event.stream,
        kind: &event.kind,
        task: event.task,
        agent: event.agent,
        data: event.data,
    };
    put_event(tx.conn, ev, now)
}

pub(crate) fn put_token(tx: &mut Tx<'_>, token: TokenRecord) -> Result<(), StoreError> {
    let mut st = tx.conn.prepare_cached(
        "INSERT OR REPLACE INTO tokens (hash, role, name, created_ms) VALUES (?1, ?2, ?3, ?4)",
    )?;
    st.execute(params![
        token.hash,
        token.role,
        token.name,
        to_i64(token.created_ms)
    ])?;
    Ok(())
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

//! Submission: idempotency, dependency checks and inserts, all-or-nothing
//! (the writer's savepoint undoes a batch that fails part way).

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};
use torch_core::events::payload::TaskSubmitted;
use torch_core::{EventData, TaskId, TaskState};

use super::rows::{self, is_constraint, put_event, to_i64};
use super::writer::Tx;
use crate::codec;
use crate::{NewEvent, NewTask, StoreError, Submitted};

/// What submission decided for one task of the batch.
enum Slot {
    /// Inserted as a new task.
    New,
    /// Its idempotency key matched a stored task.
    Stored(Box<Submitted>),
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
            let tenant = codec::tenant(&t.spec);
            if let Some(&j) = keys.get(&(tenant, key)) {
                alias.insert(t.id, batch[j].id);
                slots.push(Slot::Earlier(j));
                continue;
            }
            if let Some(dup) = find_key(tx, tenant, key)? {
                alias.insert(t.id, dup.id);
                slots.push(Slot::Stored(Box::new(dup)));
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
            match codec::state(&dep_state)? {
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
            Slot::Stored(dup) => *dup,
            Slot::Earlier(j) => codec::duplicate_of(&out[j]),
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
            id: codec::task_id(&id)?,
            name,
            state: codec::state(&state)?,
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
        .map(|b| codec::to_json("backoff", b))
        .transpose()?;
    let (skills, routing) = codec::skills_and_routing(t)?;
    let mut st = conn.prepare_cached(
        "INSERT INTO tasks (id, name, state, priority, tenant, idempotency_key, spec, skills,
                            max_retries, backoff, deps_pending, created_ms, updated_ms,
                            routing, analysis, parent_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, ?15)",
    )?;
    let inserted = st.execute(params![
        id,
        t.name,
        state.as_str(),
        spec.priority,
        codec::tenant(spec),
        spec.idempotency_key,
        codec::to_json("spec", spec)?,
        skills,
        spec.max_retries(),
        backoff,
        pending,
        to_i64(now),
        routing,
        t.analysis,
        t.parent.map(|p| p.to_string()),
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
    let submitted = EventData::TaskSubmitted(TaskSubmitted {
        name: t.name.clone(),
        priority: spec.priority,
        state,
    });
    put_event(conn, NewEvent::of(&submitted, Some(t.id), None)?, now)?;
    let ready = (state == TaskState::Queued).then(|| codec::ready(t, seq));
    Ok(Submitted {
        id: t.id,
        name: t.name.clone(),
        state,
        duplicate: false,
        ready,
    })
}

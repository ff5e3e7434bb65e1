//! Attempt ends (finish, expire) and their effects on dependents: success
//! releases them, death cancels them (see `cancel::cascade`).
//!
//! Fencing: a report is recorded only while the task is leased under the
//! report's fence (and, for agent reports, to the reporting agent). The fence
//! of the last recorded attempt end is kept in `finished_fence`, so a resent
//! report is `Duplicate` while every other mismatch is `Stale`. Either way
//! nothing changes, so each fence yields at most one completion event.

use rusqlite::{Connection, params};
use torch_core::events::payload::{AttemptFailed, TaskDead, TaskReady, TaskSucceeded};
use torch_core::scheduler::QueuedTask;
use torch_core::state::{RetryDecision, retry_decision};
use torch_core::{AgentId, Backoff, EventData, Evidence, Outcome, OutcomeKind, TaskId, TaskState};

use super::cancel::cascade;
use super::rows::{self, put_event, queued_cols, to_i64};
use super::writer::Tx;
use crate::codec::{self, QueuedRow};
use crate::{Cancelled, Effect, Finish, FinishResult, NewEvent, StoreError};

/// The columns of a task that an attempt end reads.
struct Attempt {
    id: TaskId,
    name: String,
    state: TaskState,
    fence: u64,
    finished_fence: u64,
    agent: Option<AgentId>,
    attempt: u32,
    retries_used: u32,
    priority: i32,
    seq: u64,
    skills: String,
    max_retries: u32,
    backoff: Option<String>,
    tenant: String,
    routing: Option<String>,
    failed_agents: Option<String>,
}

fn load_attempt(conn: &Connection, id: TaskId) -> Result<Option<Attempt>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT name, state, fence, finished_fence, agent_id, attempt, retries_used, priority,
                seq, skills, max_retries, backoff, tenant, routing, failed_agents
         FROM tasks WHERE id = ?1",
    )?;
    let mut q = st.query([id.to_string()])?;
    let Some(r) = q.next()? else {
        return Ok(None);
    };
    Ok(Some(Attempt {
        id,
        name: r.get(0)?,
        state: codec::state(&r.get::<_, String>(1)?)?,
        fence: rows::to_u64(r.get(2)?)?,
        finished_fence: rows::to_u64(r.get(3)?)?,
        agent: codec::opt_agent(r.get(4)?)?,
        attempt: r.get(5)?,
        retries_used: r.get(6)?,
        priority: r.get(7)?,
        seq: rows::to_u64(r.get(8)?)?,
        skills: r.get(9)?,
        max_retries: r.get(10)?,
        backoff: r.get(11)?,
        tenant: r.get(12)?,
        routing: r.get(13)?,
        failed_agents: r.get(14)?,
    }))
}

/// `None` when a report under `fence` (from `agent`, if given) may be recorded.
fn gate(a: &Attempt, fence: u64, agent: Option<AgentId>) -> Option<FinishResult> {
    if fence != 0 && fence == a.finished_fence {
        return Some(FinishResult::Duplicate);
    }
    let holder = agent.is_none_or(|ag| a.agent == Some(ag));
    if a.state.is_leased() && a.fence == fence && holder {
        None
    } else {
        Some(FinishResult::Stale {
            current_fence: a.fence,
            state: a.state,
        })
    }
}

/// How an attempt ended.
enum Ending {
    Success,
    Failure {
        reason: String,
        fatal: bool,
        /// The event when the task is requeued (`task.failed` or
        /// `task.lease_expired`).
        requeued: fn(AttemptFailed) -> EventData,
        /// Recorded in the `task.dead` event.
        cause: &'static str,
    },
}

pub(crate) fn finish(
    tx: &mut Tx<'_>,
    reports: Vec<Finish>,
    now: u64,
) -> Result<Vec<FinishResult>, StoreError> {
    reports
        .into_iter()
        .map(|r| finish_one(tx.conn, r, now))
        .collect()
}

fn finish_one(conn: &Connection, r: Finish, now: u64) -> Result<FinishResult, StoreError> {
    let Some(a) = load_attempt(conn, r.task)? else {
        return Ok(FinishResult::NotFound);
    };
    if let Some(refused) = gate(&a, r.fence, Some(r.agent)) {
        return Ok(refused);
    }
    if let Some((stdout, stderr, truncated)) = &r.logs {
        let mut st = conn.prepare_cached(
            "INSERT OR REPLACE INTO task_logs (task_id, attempt, stdout, stderr, truncated)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        st.execute(params![
            a.id.to_string(),
            a.attempt,
            stdout,
            stderr,
            truncated
        ])?;
    }
    let ending = match r.outcome.kind {
        OutcomeKind::Succeeded => Ending::Success,
        kind => Ending::Failure {
            reason: r
                .outcome
                .reason
                .clone()
                .unwrap_or_else(|| format!("attempt {} {}", a.attempt, kind.as_str())),
            fatal: kind.is_final(),
            requeued: EventData::TaskFailed,
            cause: kind.as_str(),
        },
    };
    let outcome = codec::to_json("outcome", &r.outcome)?;
    end_attempt(conn, &a, Some(r.agent), &outcome, ending, now).map(FinishResult::Recorded)
}

pub(crate) fn expire(
    tx: &mut Tx<'_>,
    task: TaskId,
    fence: u64,
    reason: String,
    now: u64,
) -> Result<FinishResult, StoreError> {
    let Some(a) = load_attempt(tx.conn, task)? else {
        return Ok(FinishResult::NotFound);
    };
    if let Some(refused) = gate(&a, fence, None) {
        return Ok(refused);
    }
    let outcome = Outcome::failed(OutcomeKind::Failed, reason.clone(), Evidence::default());
    let outcome = codec::to_json("outcome", &outcome)?;
    let ending = Ending::Failure {
        reason,
        fatal: false,
        requeued: EventData::TaskLeaseExpired,
        cause: "lease_expired",
    };
    end_attempt(tx.conn, &a, a.agent, &outcome, ending, now).map(FinishResult::Recorded)
}

fn end_attempt(
    conn: &Connection,
    a: &Attempt,
    agent: Option<AgentId>,
    outcome: &str,
    ending: Ending,
    now: u64,
) -> Result<Effect, StoreError> {
    let set = |state: TaskState,
               not_before: u64,
               retries: u32,
               reason: Option<&str>,
               failed: Option<&str>| {
        let mut st = conn.prepare_cached(
            "UPDATE tasks SET state = ?2, agent_id = NULL, last_agent_id = ?3,
                 finished_fence = fence, lease_expires_ms = 0, not_before_ms = ?4,
                 retries_used = ?5, outcome = ?6, reason = ?7, updated_ms = ?8,
                 failed_agents = ?9
             WHERE id = ?1",
        )?;
        st.execute(params![
            a.id.to_string(),
            state.as_str(),
            agent.map(|g| g.to_string()),
            to_i64(not_before),
            retries,
            outcome,
            reason,
            to_i64(now),
            failed
        ])?;
        Ok::<_, StoreError>(state)
    };
    let mut effect = Effect {
        task: a.id,
        state: TaskState::Succeeded,
        requeued: None,
        released: Vec::new(),
        cancelled: Vec::new(),
    };
    let data = match &ending {
        Ending::Success => {
            let failed = a.failed_agents.as_deref();
            effect.state = set(TaskState::Succeeded, 0, a.retries_used, None, failed)?;
            EventData::TaskSucceeded(TaskSucceeded {
                agent,
                attempt: a.attempt,
                fence: a.fence,
            })
        }
        Ending::Failure {
            reason,
            fatal,
            requeued,
            cause,
        } => {
            let backoff: Backoff = match &a.backoff {
                Some(b) => codec::json("backoff", b)?,
                None => Backoff::default(),
            };
            let budget_attempt = a.retries_used.saturating_add(1);
            let (failed, failed_list) = codec::add_failed(a.failed_agents.as_deref(), agent)?;
            let failed = failed.as_deref();
            match retry_decision(budget_attempt, a.max_retries, &backoff, *fatal, now) {
                RetryDecision::Retry { not_before, .. } => {
                    effect.state =
                        set(TaskState::Queued, not_before, budget_attempt, None, failed)?;
                    let row = QueuedRow {
                        id: a.id,
                        priority: a.priority,
                        seq: a.seq,
                        not_before,
                        skills: a.skills.clone(),
                        tenant: a.tenant.clone(),
                        routing: a.routing.clone(),
                        failed_agents: failed.map(str::to_owned),
                    };
                    effect.requeued = Some(row.queued()?);
                    requeued(AttemptFailed {
                        attempt: a.attempt,
                        fence: a.fence,
                        reason: reason.clone(),
                        retry_at_ms: not_before,
                        will_retry: true,
                    })
                }
                RetryDecision::Dead => {
                    let reason = dead_reason(failed_list.len(), reason);
                    let dead = set(TaskState::Dead, 0, a.retries_used, Some(&reason), failed)?;
                    effect.state = dead;
                    EventData::TaskDead(TaskDead {
                        attempt: a.attempt,
                        cause: (*cause).to_owned(),
                        failed_agents: failed_list,
                        fence: a.fence,
                        reason,
                    })
                }
            }
        }
    };
    put_event(conn, NewEvent::of(&data, Some(a.id), agent)?, now)?;
    // Dependents' events follow the task's own.
    match effect.state {
        TaskState::Succeeded => effect.released = release(conn, a.id, now)?,
        TaskState::Dead => {
            let why = format!("dependency {} ({}) is dead", a.name, a.id);
            let mut gone = Cancelled {
                tasks: Vec::new(),
                revoked: Vec::new(),
            };
            cascade(conn, a.id, &why, now, &mut gone)?;
            effect.cancelled = gone.tasks;
        }
        _ => {}
    }
    Ok(effect)
}

/// Why a task died: on how many distinct agents it failed, then the last
/// attempt's reason.
fn dead_reason(agents: usize, last: &str) -> String {
    match agents {
        0 => last.to_owned(),
        1 => format!("failed on 1 agent: {last}"),
        n => format!("failed on {n} agents: {last}"),
    }
}

/// One fewer pending dependency for each blocked dependent of `dep`; those
/// reaching zero become queued and are returned.
fn release(conn: &Connection, dep: TaskId, now: u64) -> Result<Vec<QueuedTask>, StoreError> {
    // Most tasks have no dependents: a probe of the covering index answers
    // that without the join (which profiling showed SQLite re-preparing).
    let has_dependents = conn
        .prepare_cached("SELECT 1 FROM deps WHERE dep_id = ?1 LIMIT 1")?
        .exists([dep.to_string()])?;
    if !has_dependents {
        return Ok(Vec::new());
    }
    let mut st = conn.prepare_cached(concat!(
        "SELECT t.deps_pending, ",
        queued_cols!(),
        " FROM deps d JOIN tasks t ON t.id = d.task_id
         WHERE d.dep_id = ?1 AND t.state = 'blocked'"
    ))?;
    let mut found = Vec::new();
    let mut q = st.query([dep.to_string()])?;
    while let Some(r) = q.next()? {
        found.push((r.get::<_, i64>(0)?, rows::queued_row(r, 1)?));
    }
    drop(q);
    drop(st);
    let mut out = Vec::new();
    for (pending, mut row) in found {
        let id = row.id.to_string();
        if pending > 1 {
            conn.prepare_cached(
                "UPDATE tasks SET deps_pending = deps_pending - 1, updated_ms = ?2 WHERE id = ?1",
            )?
            .execute(params![id, to_i64(now)])?;
            continue;
        }
        conn.prepare_cached(
            "UPDATE tasks SET state = 'queued', deps_pending = 0, not_before_ms = 0,
                 updated_ms = ?2
             WHERE id = ?1",
        )?
        .execute(params![id, to_i64(now)])?;
        let task = row.id;
        let ready = EventData::TaskReady(TaskReady { released_by: dep });
        put_event(conn, NewEvent::of(&ready, Some(task), None)?, now)?;
        row.not_before = 0;
        out.push(row.queued()?);
    }
    Ok(out)
}

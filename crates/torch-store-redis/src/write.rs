//! The writing operations: arguments for the scripts in `scripts/` and
//! decoding of their replies. The semantics (and the error messages) follow
//! the SQLite store (`sqlite/submit.rs`, `ops.rs`, `finish.rs`,
//! `cancel.rs`); the scripts say which part each one does.

use redis::Value;
use torch_core::scheduler::QueuedTask;
use torch_core::{
    AgentId, Backoff, EventKind, Evidence, Liveness, Outcome, OutcomeKind, TaskId, TaskState,
};
use torch_store::{
    AgentEvent, Cancelled, ClaimRefused, Effect, FenceCheck, Finish, FinishResult, Grant, Leased,
    MemoryLimits, NewEvent, NewTask, Requeued, StoreError, Submitted, TASKS_FAILED, codec,
};

use crate::RedisStore;
use crate::scripts::SCRIPTS;
use crate::value::{array, opt_arg, opt_text, queued_row, text, tuple, uint};

/// Longest retry-delay table stored with a task: delays stop growing after
/// at most 65 attempts (see [`Backoff::delay`]).
const MAX_DELAYS: u32 = 66;

/// The delays (ms) before the 2nd, 3rd, … attempt, comma-separated, up to
/// the first that reaches the backoff's ceiling (every later one equals
/// it). Stored with the task so the finish script computes exactly what
/// [`torch_core::state::retry_decision`] would, without floating point in Lua.
pub(crate) fn delay_table(backoff: Option<&Backoff>, max_retries: u32) -> String {
    let b = backoff.cloned().unwrap_or_default();
    let ceiling = b.delay(MAX_DELAYS).as_millis();
    let mut out = String::new();
    for budget in 1..=max_retries.clamp(1, MAX_DELAYS) {
        let d = b.delay(budget + 1).as_millis();
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&d.to_string());
        if d >= ceiling {
            break;
        }
    }
    out
}

fn queued_rows(v: Value) -> Result<Vec<QueuedTask>, StoreError> {
    array("queued rows", v)?
        .into_iter()
        .map(queued_row)
        .collect()
}

fn ids(v: Value) -> Result<Vec<TaskId>, StoreError> {
    array("task ids", v)?
        .into_iter()
        .map(|v| codec::task_id(&text("task id", v)?))
        .collect()
}

fn opt_state(v: Value) -> Result<Option<TaskState>, StoreError> {
    opt_text("state", v)?
        .as_deref()
        .map(codec::state)
        .transpose()
}

/// Decodes `{'ok'}`, `{'stale', fence, state}` or `{'missing'}`.
fn fence_check(v: Value) -> Result<FenceCheck, StoreError> {
    let [status, fence, state] = tuple("fence check", v)?;
    match text("status", status)?.as_str() {
        "ok" => Ok(FenceCheck::Ok),
        "missing" => Ok(FenceCheck::NotFound),
        "stale" => Ok(FenceCheck::Stale {
            current_fence: uint("fence", fence)?,
            state: codec::state(&text("state", state)?)?,
        }),
        other => Err(StoreError::Corrupt(format!(
            "unexpected fence check {other:?}"
        ))),
    }
}

/// Writes a batch; with `handoff_hub`, also hands the new tasks off to
/// the leader (see `scripts/submit.lua`).
pub(super) async fn submit(
    s: &RedisStore,
    batch: Vec<NewTask>,
    now: u64,
    handoff_hub: Option<&str>,
) -> Result<Vec<Submitted>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = Vec::with_capacity(1 + batch.len() * 17);
    args.push(batch.len().to_string());
    for t in &batch {
        let spec = &t.spec;
        args.push(t.id.to_string());
        args.push(t.name.clone());
        args.push(codec::to_json("name", &t.name)?);
        args.push(spec.priority.to_string());
        args.push(codec::tenant(spec).to_owned());
        args.push(opt_arg(spec.idempotency_key.as_deref()));
        args.push(codec::to_json("spec", spec)?);
        // With routing, `sk` holds its normalised skills, as in SQLite.
        let (skills, routing) = codec::skills_and_routing(t)?;
        args.push(skills);
        args.push(opt_arg(routing.as_deref()));
        args.push(opt_arg(t.analysis.as_deref()));
        args.push(opt_arg(t.parent.map(|p| p.to_string()).as_deref()));
        args.push(spec.max_retries().to_string());
        args.push(delay_table(spec.backoff.as_ref(), spec.max_retries()));
        args.push(t.deps.len().to_string());
        args.extend(t.deps.iter().map(|d| d.to_string()));
        args.push(spec.labels.len().to_string());
        for (k, v) in &spec.labels {
            args.push(k.clone());
            args.push(v.clone());
        }
    }
    if let Some(hub) = handoff_hub {
        args.push(hub.to_owned());
    }
    let reply = s.eval(&SCRIPTS.submit, now, &args).await?;
    let [status, body] = tuple("submit", reply)?;
    match text("status", status)?.as_str() {
        "ok" => {}
        "invalid" => return Err(StoreError::Invalid(text("message", body)?)),
        _ => return Err(StoreError::Corrupt(text("message", body)?)),
    }
    let results = array("submit results", body)?;
    if results.len() != batch.len() {
        return Err(StoreError::Corrupt(format!(
            "submit answered {} results for {} tasks",
            results.len(),
            batch.len()
        )));
    }
    let mut out: Vec<Submitted> = Vec::with_capacity(batch.len());
    for (t, r) in batch.iter().zip(results) {
        let [kind, a, b, c] = tuple("submit result", r)?;
        let sub = match text("kind", kind)?.as_str() {
            "new" => {
                let seq = uint("seq", a)?;
                let state = codec::state(&text("state", b)?)?;
                let ready = (state == TaskState::Queued).then(|| codec::ready(t, seq));
                Submitted {
                    id: t.id,
                    name: t.name.clone(),
                    state,
                    duplicate: false,
                    ready,
                }
            }
            "stored" => Submitted {
                id: codec::task_id(&text("task id", a)?)?,
                name: text("name", b)?,
                state: codec::state(&text("state", c)?)?,
                duplicate: true,
                ready: None,
            },
            "earlier" => {
                let j = uint("index", a)? as usize;
                let first = j
                    .checked_sub(1)
                    .and_then(|j| out.get(j))
                    .ok_or_else(|| StoreError::Corrupt(format!("submit: bad index {j}")))?;
                codec::duplicate_of(first)
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unexpected submit result {other:?}"
                )));
            }
        };
        out.push(sub);
    }
    Ok(out)
}

/// The `explanation` field of the `task.assigned` entry: '' for none, else
/// the explanation as JSON (see [`codec::explanation_json`]).
fn explanation_arg(x: Option<&str>) -> String {
    x.map(codec::explanation_json).unwrap_or_default()
}

pub(super) async fn assign(
    s: &RedisStore,
    grants: Vec<Grant>,
    now: u64,
) -> Result<Vec<Result<Leased, ClaimRefused>>, StoreError> {
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    // The lease expiry is the hub's to keep (it is not stored).
    let mut args = Vec::with_capacity(1 + grants.len() * 3);
    args.push(grants.len().to_string());
    for g in &grants {
        args.push(g.task.to_string());
        args.push(g.agent.to_string());
        args.push(explanation_arg(g.explanation.as_deref()));
    }
    let reply = array("assign", s.eval(&SCRIPTS.assign, now, &args).await?)?;
    if reply.len() != grants.len() {
        return Err(StoreError::Corrupt(
            "assign answered the wrong count".into(),
        ));
    }
    grants
        .into_iter()
        .zip(reply)
        .map(|(g, r)| {
            let [won, a, attempt, name, spec] = tuple("assign result", r)?;
            if uint("won", won)? == 0 {
                return Ok(Err(ClaimRefused {
                    task: g.task,
                    state: opt_state(a)?,
                }));
            }
            let fence = uint("fence", a)?;
            let attempt = u32::try_from(uint("attempt", attempt)?)
                .map_err(|_| StoreError::Corrupt("attempt out of range".into()))?;
            Ok(Ok(Leased {
                task: g.task,
                agent: g.agent,
                fence,
                attempt,
                name: text("name", name)?,
                spec: codec::json("spec", &text("spec", spec)?)?,
            }))
        })
        .collect()
}

pub(super) async fn start(
    s: &RedisStore,
    held: Vec<(TaskId, u64)>,
    now: u64,
) -> Result<Vec<FenceCheck>, StoreError> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = Vec::with_capacity(1 + held.len() * 2);
    args.push(held.len().to_string());
    for (task, fence) in &held {
        args.push(task.to_string());
        args.push(fence.to_string());
    }
    let reply = array("start", s.eval(&SCRIPTS.start, now, &args).await?)?;
    if reply.len() != held.len() {
        return Err(StoreError::Corrupt("start answered the wrong count".into()));
    }
    reply.into_iter().map(fence_check).collect()
}

pub(super) async fn progress(
    s: &RedisStore,
    task: TaskId,
    fence: u64,
    percent: f64,
    message: Option<String>,
    live: Option<Liveness>,
    now: u64,
) -> Result<FenceCheck, StoreError> {
    let percent = codec::progress_percent(percent);
    let data = codec::progress_data(fence, percent, message.as_deref(), live.as_ref())?;
    let live = codec::liveness_text(live.as_ref())?;
    let args = [
        task.to_string(),
        fence.to_string(),
        percent.to_string(),
        opt_arg(message.as_deref()),
        data,
        opt_arg(live.as_deref()),
    ];
    fence_check(s.eval(&SCRIPTS.progress, now, &args).await?)
}

/// One attempt end for the finish script (five arguments, more for a
/// failure or logs; see `scripts/finish.lua`).
struct End<'a> {
    task: TaskId,
    fence: u64,
    /// The reporting agent; `None` for an expiry (the holder is used).
    reporter: Option<AgentId>,
    outcome: &'a Outcome,
    /// Why, when given (else the script says `attempt N <kind>`).
    reason: Option<&'a str>,
    /// Event kind when requeued (`finish.lua` writes it on
    /// `nova.torch.tasks.failed`).
    kind: EventKind,
    /// Recorded in `task.dead`.
    cause: &'static str,
    logs: Option<&'a (String, String, bool)>,
}

impl End<'_> {
    fn push_args(&self, args: &mut Vec<String>) -> Result<(), StoreError> {
        let failed = self.outcome.kind != OutcomeKind::Succeeded;
        let flags = match (failed, self.logs.is_some()) {
            (false, false) => "",
            (false, true) => "L",
            (true, false) => "F",
            (true, true) => "FL",
        };
        args.push(self.task.to_string());
        args.push(self.fence.to_string());
        args.push(opt_arg(self.reporter.map(|a| a.to_string()).as_deref()));
        args.push(flags.into());
        args.push(codec::to_json("outcome", self.outcome)?);
        if failed {
            args.push(opt_arg(self.reason));
            args.push(self.outcome.kind.as_str().into());
            let fatal = self.outcome.kind.is_final();
            args.push(if fatal { "1" } else { "0" }.into());
            debug_assert_eq!(self.kind.stream(), TASKS_FAILED, "finish.lua's stream");
            args.push(self.kind.name().into());
            args.push(self.cause.into());
        }
        if let Some((stdout, stderr, truncated)) = self.logs {
            args.push(stdout.clone());
            args.push(stderr.clone());
            args.push(if *truncated { "1" } else { "0" }.into());
        }
        Ok(())
    }
}

fn finish_result(task: TaskId, v: Value) -> Result<FinishResult, StoreError> {
    // The common case, a success that changed nothing else, is one word.
    if !matches!(v, Value::Array(_)) {
        let state = codec::state(&text("finish result", v)?)?;
        return Ok(FinishResult::Recorded(Effect {
            task,
            state,
            requeued: None,
            released: Vec::new(),
            cancelled: Vec::new(),
        }));
    }
    let [status, a, b, c, d] = tuple("finish result", v)?;
    match text("status", status)?.as_str() {
        "missing" => Ok(FinishResult::NotFound),
        "dup" => Ok(FinishResult::Duplicate),
        "stale" => Ok(FinishResult::Stale {
            current_fence: uint("fence", a)?,
            state: codec::state(&text("state", b)?)?,
        }),
        "ok" => Ok(FinishResult::Recorded(Effect {
            task,
            state: codec::state(&text("state", a)?)?,
            requeued: match b {
                Value::Nil => None,
                row => Some(queued_row(row)?),
            },
            released: queued_rows(c)?,
            cancelled: ids(d)?,
        })),
        other => Err(StoreError::Corrupt(format!(
            "unexpected finish result {other:?}"
        ))),
    }
}

async fn record_ends(
    s: &RedisStore,
    ends: &[End<'_>],
    now: u64,
) -> Result<Vec<FinishResult>, StoreError> {
    let mut args = Vec::with_capacity(1 + ends.len() * 5);
    args.push(ends.len().to_string());
    for e in ends {
        e.push_args(&mut args)?;
    }
    let reply = array("finish", s.eval(&SCRIPTS.finish, now, &args).await?)?;
    if reply.len() != ends.len() {
        return Err(StoreError::Corrupt(
            "finish answered the wrong count".into(),
        ));
    }
    ends.iter()
        .zip(reply)
        .map(|(e, r)| finish_result(e.task, r))
        .collect()
}

pub(super) async fn finish(
    s: &RedisStore,
    reports: Vec<Finish>,
    now: u64,
) -> Result<Vec<FinishResult>, StoreError> {
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    let ends: Vec<End<'_>> = reports
        .iter()
        .map(|r| End {
            task: r.task,
            fence: r.fence,
            reporter: Some(r.agent),
            outcome: &r.outcome,
            reason: r.outcome.reason.as_deref(),
            kind: EventKind::TaskFailed,
            cause: r.outcome.kind.as_str(),
            logs: r.logs.as_ref(),
        })
        .collect();
    record_ends(s, &ends, now).await
}

pub(super) async fn expire(
    s: &RedisStore,
    task: TaskId,
    fence: u64,
    reason: String,
    now: u64,
) -> Result<FinishResult, StoreError> {
    let outcome = Outcome::failed(OutcomeKind::Failed, reason.clone(), Evidence::default());
    let end = End {
        task,
        fence,
        reporter: None,
        outcome: &outcome,
        reason: Some(&reason),
        kind: EventKind::TaskLeaseExpired,
        cause: "lease_expired",
        logs: None,
    };
    let mut out = record_ends(s, std::slice::from_ref(&end), now).await?;
    out.pop()
        .ok_or_else(|| StoreError::Corrupt("expire answered nothing".into()))
}

pub(super) async fn cancel(
    s: &RedisStore,
    task: TaskId,
    reason: String,
    now: u64,
) -> Result<Cancelled, StoreError> {
    let reply = s
        .eval(&SCRIPTS.cancel, now, &[task.to_string(), reason])
        .await?;
    let [status, a, b] = tuple("cancel", reply)?;
    match text("status", status)?.as_str() {
        "missing" => Err(StoreError::NotFound(task)),
        "conflict" => Err(StoreError::Conflict {
            task,
            state: codec::state(&text("state", a)?)?,
            message: "only unfinished tasks can be cancelled".into(),
        }),
        "ok" => {
            let revoked = array("revoked", b)?
                .into_iter()
                .map(|r| {
                    let [t, agent, fence] = tuple("revoked lease", r)?;
                    Ok((
                        codec::task_id(&text("task", t)?)?,
                        codec::agent_id(&text("agent", agent)?)?,
                        uint("fence", fence)?,
                    ))
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Cancelled {
                tasks: ids(a)?,
                revoked,
            })
        }
        other => Err(StoreError::Corrupt(format!(
            "unexpected cancel result {other:?}"
        ))),
    }
}

pub(super) async fn retry(s: &RedisStore, task: TaskId, now: u64) -> Result<Requeued, StoreError> {
    let reply = s.eval(&SCRIPTS.retry, now, &[task.to_string()]).await?;
    let [status, a, b] = tuple("retry", reply)?;
    match text("status", status)?.as_str() {
        "missing" => Err(StoreError::NotFound(task)),
        "conflict" => Err(StoreError::Conflict {
            task,
            state: codec::state(&text("state", a)?)?,
            message: text("message", b)?,
        }),
        "ok" => {
            let state = codec::state(&text("state", a)?)?;
            let ready = match b {
                Value::Nil => None,
                row => Some(queued_row(row)?),
            };
            Ok(Requeued { task, state, ready })
        }
        other => Err(StoreError::Corrupt(format!(
            "unexpected retry result {other:?}"
        ))),
    }
}

/// Appends an event, with an agent record (`joined` / `left` and its
/// fields) when given.
async fn event(
    s: &RedisStore,
    ev: &NewEvent,
    record: Option<(&str, Vec<String>)>,
    now: u64,
) -> Result<(), StoreError> {
    let mut args = vec![
        ev.stream().to_owned(),
        ev.kind.name().to_owned(),
        opt_arg(ev.task.map(|t| t.to_string()).as_deref()),
        opt_arg(ev.agent.map(|a| a.to_string()).as_deref()),
        ev.data.clone(),
    ];
    match record {
        Some((kind, fields)) => {
            args.push(kind.to_owned());
            args.extend(fields);
        }
        None => args.push(String::new()),
    }
    s.eval(&SCRIPTS.event, now, &args).await?;
    Ok(())
}

pub(super) async fn agent_event(
    s: &RedisStore,
    event_: AgentEvent,
    now: u64,
) -> Result<(), StoreError> {
    let record = match &event_ {
        AgentEvent::Joined {
            name,
            skills,
            slots,
            labels,
            ..
        } => {
            let fields = vec![
                "name".into(),
                name.clone(),
                "skills".into(),
                codec::to_json("skills", skills)?,
                "slots".into(),
                slots.to_string(),
                "labels".into(),
                codec::to_json("labels", labels)?,
                "state".into(),
                "joined".into(),
                "joined_ms".into(),
                now.to_string(),
            ];
            ("joined", fields)
        }
        AgentEvent::Left { reason, .. } => {
            let fields = vec![
                "state".into(),
                "left".into(),
                "left_ms".into(),
                now.to_string(),
                "reason".into(),
                reason.clone(),
            ];
            ("left", fields)
        }
    };
    event(s, &codec::agent_event(&event_)?, Some(record), now).await
}

pub(super) async fn append_event(s: &RedisStore, ev: NewEvent, now: u64) -> Result<(), StoreError> {
    event(s, &ev, None, now).await
}

pub(super) async fn init_meta(
    s: &RedisStore,
    key: String,
    value_: String,
) -> Result<String, StoreError> {
    let reply = s
        .eval(&SCRIPTS.small, 0, &["meta".to_owned(), key, value_])
        .await?;
    text("meta value", reply)
}

/// The common arguments of the memory script.
fn memory_args(op: &str, limits: &MemoryLimits) -> Vec<String> {
    vec![
        op.to_owned(),
        limits.max_keys.to_string(),
        limits.max_total_bytes.to_string(),
        limits.max_key_bytes.to_string(),
        limits.max_value_bytes.to_string(),
    ]
}

/// Decodes the memory script's reply: the keys written, or the limit error.
fn memory_reply(v: Value, limits: &MemoryLimits) -> Result<Vec<String>, StoreError> {
    let [status, a, b] = tuple("memory", v)?;
    let refused = |msg: Result<(), String>| {
        StoreError::LimitExceeded(msg.err().unwrap_or_else(|| "agent memory is full".into()))
    };
    match text("status", status)?.as_str() {
        "ok" => array("keys", a)?
            .into_iter()
            .map(|k| text("key", k))
            .collect(),
        "limit" => {
            let keys = uint("keys", a)? as usize;
            let bytes = uint("bytes", b)? as usize;
            Err(refused(limits.check_totals(keys, bytes)))
        }
        "entry" => Err(refused(
            limits.check_entry(&text("key", a)?, &text("value", b)?),
        )),
        other => Err(StoreError::Corrupt(format!(
            "unexpected memory result {other:?}"
        ))),
    }
}

pub(super) async fn memory_put(
    s: &RedisStore,
    owner: AgentId,
    key: String,
    value_: String,
    limits: MemoryLimits,
    now: u64,
) -> Result<(), StoreError> {
    limits
        .check_entry(&key, &value_)
        .map_err(StoreError::LimitExceeded)?;
    let mut args = memory_args("put", &limits);
    args.extend([owner.to_string(), key, value_]);
    let reply = s.eval(&SCRIPTS.memory, now, &args).await?;
    memory_reply(reply, &limits).map(|_| ())
}

pub(super) async fn memory_inherit(
    s: &RedisStore,
    from: AgentId,
    to: AgentId,
    keys: Vec<String>,
    limits: MemoryLimits,
    now: u64,
) -> Result<Vec<String>, StoreError> {
    let mut args = memory_args("inherit", &limits);
    args.extend([from.to_string(), to.to_string()]);
    args.extend(keys);
    let reply = s.eval(&SCRIPTS.memory, now, &args).await?;
    memory_reply(reply, &limits)
}

/// See [`Retention::purge_finished`](torch_store::Retention::purge_finished) (`scripts/purge.lua`).
pub(super) async fn purge_finished(
    s: &RedisStore,
    before_ms: u64,
    limit: usize,
    now: u64,
) -> Result<u64, StoreError> {
    if limit == 0 {
        return Ok(0);
    }
    let args = [before_ms.to_string(), limit.to_string()];
    uint("purged", s.eval(&SCRIPTS.purge, now, &args).await?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn delay_table_matches_retry_decision() {
        use torch_core::state::{RetryDecision, retry_decision};
        let cases = [
            Backoff::default(),
            Backoff {
                initial: Duration::from_millis(1500),
                max: Duration::from_secs(600),
                multiplier: 1.7,
            },
            Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(10),
                multiplier: 1.0,
            },
            Backoff {
                initial: Duration::from_micros(1),
                max: Duration::from_secs(3600),
                multiplier: 1.01,
            },
        ];
        for b in cases {
            for max_retries in [0, 1, 3, 10, 100] {
                let table: Vec<u64> = delay_table(Some(&b), max_retries)
                    .split(',')
                    .map(|d| d.parse().expect("number"))
                    .collect();
                assert!(table.len() <= MAX_DELAYS as usize);
                for budget in 1..=max_retries {
                    let got = table[(budget as usize).min(table.len()) - 1];
                    let RetryDecision::Retry { not_before, .. } =
                        retry_decision(budget, max_retries, &b, false, 0)
                    else {
                        panic!("retry expected");
                    };
                    assert_eq!(got, not_before, "{b:?} budget {budget}");
                }
            }
        }
    }

    #[test]
    fn explanation_arg_is_json_or_a_json_string() {
        assert_eq!(explanation_arg(None), "");
        assert_eq!(explanation_arg(Some(" {\"a\":1.0} ")), "{\"a\":1.0}");
        assert_eq!(explanation_arg(Some("not \"json")), "\"not \\\"json\"");
    }
}

//! What every backend stores and reads back the same way, declared once:
//! parsers of stored ids, states and JSON columns, the queued form of a
//! stored task, the normalisation of inputs, and the data of the events
//! both backends write from Rust.
//!
//! A backend keeps only what is its own (SQL rows, Redis replies); the
//! values inside them go through here, so both backends store the same text
//! and refuse the same bad data the same way (as [`StoreError::Corrupt`]).

use torch_core::events::payload::{self, TaskProgress};
use torch_core::scheduler::{DEFAULT_TENANT, QueuedTask};
use torch_core::{AgentId, EventData, Liveness, SkillReq, TaskId, TaskSpec, TaskState};

use crate::{AgentEvent, NewEvent, NewTask, Routing, StoreError, Submitted};

/// `list_tasks` page size when the filter says 0.
pub const DEFAULT_PAGE: usize = 100;
/// Largest `list_tasks` page.
pub const MAX_PAGE: usize = 1000;
/// `events` batch size when the caller says 0.
pub const DEFAULT_EVENTS: usize = 1000;
/// Largest `events` batch.
pub const MAX_EVENTS: usize = 10_000;

/// The number of tasks a `list_tasks` page returns for a filter's `limit`.
pub fn page_limit(limit: usize) -> usize {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// The number of events an `events` call returns for its `limit`.
pub fn events_limit(limit: usize) -> usize {
    match limit {
        0 => DEFAULT_EVENTS,
        n => n.min(MAX_EVENTS),
    }
}

/// Parses a stored state name.
pub fn state(s: &str) -> Result<TaskState, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("bad task state: {e}")))
}

/// Parses a stored task id.
pub fn task_id(s: &str) -> Result<TaskId, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("bad task id {s:?}: {e}")))
}

/// Parses a stored agent id.
pub fn agent_id(s: &str) -> Result<AgentId, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("bad agent id {s:?}: {e}")))
}

/// Parses an optional stored agent id.
pub fn opt_agent(s: Option<String>) -> Result<Option<AgentId>, StoreError> {
    s.as_deref().map(agent_id).transpose()
}

/// Parses a stored JSON value (`what` names it in the error).
pub fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad {what} JSON: {e}")))
}

/// Serializes a value to store as JSON (`what` names it in the error).
pub fn to_json<T: serde::Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::Invalid(format!("cannot serialize {what}: {e}")))
}

/// An event's data as stored: its payload through a JSON value, so that
/// keys are sorted at every level, as every writer has always stored them
/// (the Lua scripts write them sorted by hand).
pub fn event_data(data: &EventData) -> Result<String, StoreError> {
    serde_json::to_value(data)
        .map(|v| v.to_string())
        .map_err(|e| StoreError::Invalid(format!("cannot serialize {} data: {e}", data.kind())))
}

/// Parses a task's stored required skills, skipping the JSON parser for the
/// common empty list.
pub fn skills(s: &str) -> Result<Vec<SkillReq>, StoreError> {
    if s == "[]" {
        return Ok(Vec::new());
    }
    json("skills", s)
}

/// Parses a task's stored failed agents (absent: none).
pub fn failed_agents(s: Option<&str>) -> Result<Vec<AgentId>, StoreError> {
    match s {
        None => Ok(Vec::new()),
        Some(s) => json("failed_agents", s),
    }
}

/// Adds `agent` to the stored failed agents unless it is already there.
/// Returns the new stored value and the list.
pub fn add_failed(
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

/// The tenant a spec is stored (and its idempotency key scoped) under.
pub fn tenant(spec: &TaskSpec) -> &str {
    spec.tenant.as_deref().unwrap_or(DEFAULT_TENANT)
}

/// The stored skills and routing of a new task: with routing, its
/// normalised skills (so every reader of the skills agrees with the routing)
/// and the routing JSON; without, the spec's skills and no routing.
pub fn skills_and_routing(t: &NewTask) -> Result<(String, Option<String>), StoreError> {
    Ok(match &t.routing {
        Some(r) => (to_json("skills", &r.skills)?, Some(to_json("routing", r)?)),
        None => (to_json("skills", &t.spec.skills)?, None),
    })
}

/// What the scheduler needs of a new task stored as `seq` that is queued now.
pub fn ready(t: &NewTask, seq: u64) -> QueuedTask {
    match &t.routing {
        Some(r) => r.queued(t.id, t.spec.priority, seq, 0, Vec::new()),
        None => QueuedTask::from_spec(t.id, seq, &t.spec),
    }
}

/// The answer for a task of a batch whose idempotency key an earlier task
/// of the same batch (`first`) already had.
pub fn duplicate_of(first: &Submitted) -> Submitted {
    Submitted {
        id: first.id,
        name: first.name.clone(),
        state: first.state,
        duplicate: true,
        ready: None,
    }
}

/// The stored fields of a task that make its [`QueuedTask`].
#[derive(Clone, Debug)]
pub struct QueuedRow {
    /// The task.
    pub id: TaskId,
    /// Its priority.
    pub priority: i32,
    /// Its submission sequence.
    pub seq: u64,
    /// Earliest next attempt (unix ms).
    pub not_before: u64,
    /// Its required skills (JSON).
    pub skills: String,
    /// Its tenant.
    pub tenant: String,
    /// Its [`Routing`] (JSON), if stored with one.
    pub routing: Option<String>,
    /// The agents whose attempts failed (JSON), if any.
    pub failed_agents: Option<String>,
}

impl QueuedRow {
    /// The queued task: its stored [`Routing`] when present, else its skills
    /// and tenant; `avoid` is its failed agents. Every queued task a store
    /// hands back is built here, so they all route alike. Without routing
    /// (and failures) no JSON beyond the skills is parsed.
    pub fn queued(&self) -> Result<QueuedTask, StoreError> {
        let avoid = failed_agents(self.failed_agents.as_deref())?;
        if let Some(routing) = &self.routing {
            let routing: Routing = json("routing", routing)?;
            return Ok(routing.queued(self.id, self.priority, self.seq, self.not_before, avoid));
        }
        let mut q = QueuedTask::new(self.id, self.priority, self.seq, skills(&self.skills)?)
            .with_not_before(self.not_before);
        if self.tenant != DEFAULT_TENANT {
            q.tenant.clone_from(&self.tenant);
        }
        q.avoid = avoid;
        Ok(q)
    }
}

/// An assignment's explanation as stored JSON: `x` itself when it is valid
/// JSON (checked without building it), else `x` as a JSON string.
pub fn explanation_json(x: &str) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(x).is_ok() {
        x.trim().to_owned()
    } else {
        serde_json::Value::from(x).to_string()
    }
}

/// `data`, a JSON object, with `"explanation": <explanation>` (JSON text)
/// added as its last field: a `task.assigned` event's data as readers see
/// it. Anything but an object comes back unchanged.
pub fn with_explanation(data: String, explanation: &str) -> String {
    match data.strip_suffix('}') {
        Some(head) => {
            let sep = if head.ends_with('{') { "" } else { "," };
            format!("{head}{sep}\"explanation\":{explanation}}}")
        }
        None => data,
    }
}

/// A progress report's percentage as stored: within 0 to 100, 0 for NaN.
pub fn progress_percent(percent: f64) -> f64 {
    if percent.is_nan() {
        0.0
    } else {
        percent.clamp(0.0, 100.0)
    }
}

/// The data of a `task.progress` event.
pub fn progress_data(
    fence: u64,
    percent: f64,
    message: Option<&str>,
    live: Option<&Liveness>,
) -> Result<String, StoreError> {
    event_data(&EventData::TaskProgress(TaskProgress {
        fence,
        message: message.map(str::to_owned),
        percent,
        activity: live.and_then(|l| l.activity.clone()),
        waiting: live.and_then(|l| l.waiting.clone()),
    }))
}

/// The agent CLI's activity and waiting as stored (JSON), `None` when empty.
pub fn liveness_text(live: Option<&Liveness>) -> Result<Option<String>, StoreError> {
    match live.filter(|l| !l.is_empty()) {
        Some(l) => serde_json::to_string(l)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode liveness: {e}"))),
        None => Ok(None),
    }
}

/// Stored liveness back (`None` for none).
pub fn liveness(text: Option<&str>) -> Result<Option<Liveness>, StoreError> {
    text.map(|t| json("liveness", t)).transpose()
}

/// The event recording an agent session starting (`agent.joined`) or
/// ending (`agent.left`).
pub fn agent_event(event: &AgentEvent) -> Result<NewEvent, StoreError> {
    match event {
        AgentEvent::Joined {
            id,
            name,
            skills,
            slots,
            labels,
        } => {
            let data = EventData::AgentJoined(payload::AgentJoined {
                labels: labels.clone(),
                name: name.clone(),
                skills: skills.clone(),
                slots: *slots,
            });
            NewEvent::of(&data, None, Some(*id))
        }
        AgentEvent::Left { id, reason } => {
            let data = EventData::AgentLeft(payload::AgentLeft {
                reason: reason.clone(),
            });
            NewEvent::of(&data, None, Some(*id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_are_json_and_spliced_into_objects() {
        assert_eq!(explanation_json(" {\"a\":1.0} "), "{\"a\":1.0}");
        assert_eq!(explanation_json("not \"json"), "\"not \\\"json\"");
        assert_eq!(
            with_explanation(r#"{"fence":3}"#.into(), r#"{"b":1}"#),
            r#"{"fence":3,"explanation":{"b":1}}"#
        );
        assert_eq!(with_explanation("{}".into(), "1"), r#"{"explanation":1}"#);
        assert_eq!(with_explanation("[1]".into(), "1"), "[1]");
        assert_eq!(progress_percent(f64::NAN), 0.0);
        assert_eq!(progress_percent(140.0), 100.0);
        assert_eq!((page_limit(0), page_limit(5000)), (DEFAULT_PAGE, MAX_PAGE));
        assert_eq!(events_limit(7), 7);
    }
}

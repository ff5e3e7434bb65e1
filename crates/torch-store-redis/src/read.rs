//! Reads. Anything that spans keys runs in the read-only script
//! (`scripts/read.lua`, one round trip, one consistent view); single keys
//! are plain commands.

use std::collections::{BTreeMap, HashMap};

use redis::Value;
use torch_core::{AgentId, TaskId, TaskState};
use torch_store::{
    EventRecord, LeaseRecord, LogRecord, MemoryEntry, Snapshot, StoreError, TaskFilter, TaskPage,
    TaskRecord, codec,
};

use crate::RedisStore;
use crate::value::{array, opt_arg, opt_text, parse_u32, parse_u64, queued_row, text, tuple, uint};

/// A flat `[field, value, …]` reply as a map.
pub(crate) fn fields(what: &str, v: Value) -> Result<HashMap<String, String>, StoreError> {
    let items = array(what, v)?;
    let mut map = HashMap::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(text(what, k)?, text(what, v)?);
    }
    Ok(map)
}

/// An explanation as stored (JSON), unquoted when it is a JSON string.
fn unquote(raw: &str) -> Option<String> {
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).ok()
    } else {
        Some(raw.to_owned())
    }
}

/// The explanation in a `task.assigned` event's data, as entries written
/// before the `explanation` field had it: the text after `,"explanation":`
/// (written by the assign script, so the first match is ours).
fn explanation(data: &str) -> Option<String> {
    let (_, rest) = data.split_once(",\"explanation\":")?;
    unquote(rest.strip_suffix('}')?)
}

/// The read script's explanation: `=` and the entry's `explanation` field,
/// or `d` and the data of an older entry.
fn stored_explanation(v: &str) -> Option<String> {
    match v.split_at_checked(1)? {
        ("=", raw) => unquote(raw),
        ("d", data) => explanation(data),
        _ => None,
    }
}

/// An entry's `data` with its `explanation` field put back inside, as the
/// API shows it (and as SQLite stores it).
fn with_explanation(data: String, explanation: Option<String>) -> String {
    match explanation {
        Some(x) => codec::with_explanation(data, &x),
        None => data,
    }
}

/// A task from the read script's row `{id, HGETALL, explanation event data}`.
fn record(v: Value) -> Result<Option<TaskRecord>, StoreError> {
    if matches!(v, Value::Nil) {
        return Ok(None);
    }
    let [id, flat, expl] = tuple("task row", v)?;
    let id = codec::task_id(&text("task id", id)?)?;
    let mut f = fields("task", flat)?;
    let mut take = |name: &str| f.remove(name);
    let need = |v: Option<String>, name: &str| {
        v.ok_or_else(|| StoreError::Corrupt(format!("task {id} has no {name}")))
    };
    let num = |v: Option<String>, name: &str| match v {
        Some(v) => parse_u64(name, &v),
        None => Ok(0),
    };
    let progress = match take("pp") {
        Some(p) => {
            let pct: f64 = p
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("bad progress {p:?}")))?;
            Some((pct, take("pm"), num(take("pt"), "progress time")?))
        }
        None => None,
    };
    let deps = match take("deps") {
        Some(d) => d
            .split(',')
            .filter(|s| !s.is_empty())
            .map(codec::task_id)
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let state = codec::state(&need(take("st"), "state")?)?;
    // Scripts leave `ag` and `why` behind when a task moves on (one command
    // less per finish): the holder counts only while the task is leased,
    // the reason only once it is dead or cancelled, as in SQLite.
    let holder = take("ag").filter(|_| state.is_leased());
    let reason = take("why").filter(|_| matches!(state, TaskState::Dead | TaskState::Cancelled));
    Ok(Some(TaskRecord {
        id,
        seq: num(take("seq"), "seq")?,
        name: need(take("name"), "name")?,
        state,
        spec: codec::json("spec", &need(take("spec"), "spec")?)?,
        deps,
        attempt: parse_u32("attempt", &take("att").unwrap_or_else(|| "0".into()))?,
        fence: num(take("f"), "fence")?,
        agent: codec::opt_agent(holder)?,
        last_agent: codec::opt_agent(take("la"))?,
        not_before_ms: num(take("nb"), "not_before")?,
        progress,
        liveness: codec::liveness(take("pl").as_deref())?,
        outcome: take("out")
            .as_deref()
            .map(|o| codec::json("outcome", o))
            .transpose()?,
        reason,
        created_ms: num(take("c"), "created")?,
        updated_ms: num(take("u"), "updated")?,
        analysis: take("an"),
        explanation: opt_text("explanation", expl)?.and_then(|d| stored_explanation(&d)),
        failed_agents: codec::failed_agents(take("fa").as_deref())?,
        parent: take("par").as_deref().map(codec::task_id).transpose()?,
    }))
}

pub(super) async fn get_task(s: &RedisStore, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
    let reply = s.read_script("tasks", &[id.to_string()]).await?;
    match array("tasks", reply)?.pop() {
        Some(row) => record(row),
        None => Ok(None),
    }
}

/// Several tasks in one script call (those that exist), in the order asked.
pub(super) async fn get_tasks(
    s: &RedisStore,
    ids: Vec<TaskId>,
) -> Result<Vec<TaskRecord>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let args: Vec<String> = chunk.iter().map(TaskId::to_string).collect();
        let reply = s.read_script("tasks", &args).await?;
        for row in array("tasks", reply)? {
            if let Some(t) = record(row)? {
                out.push(t);
            }
        }
    }
    Ok(out)
}

pub(super) async fn list_tasks(s: &RedisStore, filter: TaskFilter) -> Result<TaskPage, StoreError> {
    let limit = codec::page_limit(filter.limit);
    let (label_key, label_value) = match &filter.label {
        Some((k, v)) => (Some(k.as_str()), v.clone()),
        None => (None, String::new()),
    };
    let mut args = vec![
        limit.to_string(),
        opt_arg(filter.before_seq.map(|b| b.to_string()).as_deref()),
        opt_arg(filter.parent.map(|p| p.to_string()).as_deref()),
        opt_arg(label_key),
        label_value,
    ];
    args.extend(filter.states.iter().map(|s| s.as_str().to_owned()));
    let reply = s.read_script("list", &args).await?;
    let [rows_v, counts_v] = tuple("list", reply)?;
    let mut tasks = Vec::new();
    for row in array("rows", rows_v)? {
        // A task listed by an index but gone is skipped (not written by us).
        if let Some(t) = record(row)? {
            tasks.push(t);
        }
    }
    let mut counts: BTreeMap<TaskState, u64> = TaskState::ALL.iter().map(|s| (*s, 0)).collect();
    for c in array("counts", counts_v)? {
        let [state, n] = tuple("count", c)?;
        counts.insert(codec::state(&text("state", state)?)?, uint("count", n)?);
    }
    Ok(TaskPage { tasks, counts })
}

pub(super) async fn task_logs(s: &RedisStore, id: TaskId) -> Result<Option<LogRecord>, StoreError> {
    let reply: Value = s.query(redis::cmd("HGETALL").arg(s.keys.log(id))).await?;
    let mut f = fields("logs", reply)?;
    if f.is_empty() {
        return Ok(None);
    }
    Ok(Some(LogRecord {
        task: id,
        attempt: parse_u32("attempt", &f.remove("attempt").unwrap_or_default())?,
        stdout: f.remove("stdout").unwrap_or_default(),
        stderr: f.remove("stderr").unwrap_or_default(),
        truncated: f.remove("truncated").as_deref() == Some("1"),
    }))
}

/// The global event id of a stream entry id `0-<id>`.
pub(super) fn entry_id(id: &str) -> Result<u64, StoreError> {
    id.strip_prefix("0-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("stream entry id {id:?} is not torch's")))
}

/// An event from a stream entry `[id, [field, value, …]]` of `stream`.
pub(super) fn event(stream: &str, entry: Value) -> Result<EventRecord, StoreError> {
    let [id, flat] = tuple("stream entry", entry)?;
    let id = entry_id(&text("entry id", id)?)?;
    let mut f = fields("stream entry", flat)?;
    Ok(EventRecord {
        id,
        stream: stream.to_owned(),
        kind: f.remove("kind").unwrap_or_default(),
        task: f
            .remove("task")
            .as_deref()
            .map(codec::task_id)
            .transpose()?,
        agent: f
            .remove("agent")
            .as_deref()
            .map(codec::agent_id)
            .transpose()?,
        at_ms: parse_u64("event time", &f.remove("at").unwrap_or_else(|| "0".into()))?,
        data: with_explanation(
            f.remove("data").unwrap_or_default(),
            f.remove("explanation"),
        ),
    })
}

pub(super) async fn events(
    s: &RedisStore,
    after: u64,
    streams: Vec<String>,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    let limit = codec::events_limit(limit);
    let mut args = vec![format!("0-{}", after.saturating_add(1)), limit.to_string()];
    args.extend(streams);
    let reply = s.read_script("events", &args).await?;
    let mut out = Vec::new();
    for per_stream in array("events", reply)? {
        let [name, entries] = tuple("stream events", per_stream)?;
        let name = text("stream name", name)?;
        for e in array("entries", entries)? {
            out.push(event(&name, e)?);
        }
    }
    out.sort_unstable_by_key(|e| e.id);
    out.truncate(limit);
    Ok(out)
}

pub(super) async fn last_event_id(s: &RedisStore) -> Result<u64, StoreError> {
    let id: Option<String> = s.query(redis::cmd("GET").arg(s.keys.event_id())).await?;
    id.map_or(Ok(0), |id| parse_u64("last event id", &id))
}

pub(super) async fn get_meta(s: &RedisStore, key: String) -> Result<Option<String>, StoreError> {
    s.query(redis::cmd("HGET").arg(s.keys.meta()).arg(key))
        .await
}

pub(super) async fn lease_holder(
    s: &RedisStore,
    task: TaskId,
) -> Result<Option<(AgentId, u64)>, StoreError> {
    let (state, agent, fence): (Option<String>, Option<String>, Option<String>) = s
        .query(
            redis::cmd("HMGET")
                .arg(s.keys.task(task))
                .arg("st")
                .arg("ag")
                .arg("f"),
        )
        .await?;
    let leased = state
        .as_deref()
        .map(codec::state)
        .transpose()?
        .is_some_and(TaskState::is_leased);
    match (leased, agent, fence) {
        (true, Some(agent), Some(fence)) => Ok(Some((
            codec::agent_id(&agent)?,
            parse_u64("fence", &fence)?,
        ))),
        _ => Ok(None),
    }
}

pub(super) async fn load(s: &RedisStore) -> Result<Snapshot, StoreError> {
    let reply = s.read_script("load", &[]).await?;
    let [queued, leased, backlog] = tuple("load", reply)?;
    let mut snap = Snapshot::default();
    for row in array("queued", queued)? {
        snap.queued.push(queued_row(row)?);
    }
    for row in array("leased", leased)? {
        let [id, agent, fence, attempt] = tuple("lease row", row)?;
        let task = codec::task_id(&text("task id", id)?)?;
        let Some(agent) = opt_text("agent", agent)? else {
            return Err(StoreError::Corrupt(format!(
                "leased task {task} has no agent"
            )));
        };
        snap.leased.push(LeaseRecord {
            task,
            agent: codec::agent_id(&agent)?,
            fence: uint("fence", fence)?,
            attempt: parse_u32("attempt", &text("attempt", attempt)?)?,
        });
    }
    snap.backlog = uint("backlog", backlog)?;
    Ok(snap)
}

/// A memory entry from its value and its meta (`<ms>` or `<ms>:<from>`).
fn memory_entry(key: String, value_: String, meta: &str) -> Result<MemoryEntry, StoreError> {
    let (ms, from) = match meta.split_once(':') {
        Some((ms, from)) => (ms, Some(codec::agent_id(from)?)),
        None => (meta, None),
    };
    Ok(MemoryEntry {
        key,
        value: value_,
        updated_ms: parse_u64("memory time", ms)?,
        inherited_from: from,
    })
}

pub(super) async fn memory_get(
    s: &RedisStore,
    owner: AgentId,
    key: String,
) -> Result<Option<MemoryEntry>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGET").arg(s.keys.memory(owner)).arg(&key);
    pipe.cmd("HGET").arg(s.keys.memory_meta(owner)).arg(&key);
    let mut conn = s.conn();
    let (value_, meta): (Option<String>, Option<String>) = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| s.unavailable("reading", e))?;
    match value_ {
        Some(v) => memory_entry(key, v, meta.as_deref().unwrap_or("0")).map(Some),
        None => Ok(None),
    }
}

pub(super) async fn memory_list(
    s: &RedisStore,
    owner: AgentId,
) -> Result<Vec<MemoryEntry>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGETALL").arg(s.keys.memory(owner));
    pipe.cmd("HGETALL").arg(s.keys.memory_meta(owner));
    let mut conn = s.conn();
    let (values, metas): (Value, Value) = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| s.unavailable("reading", e))?;
    let mut metas = fields("memory meta", metas)?;
    let mut out = fields("memory", values)?
        .into_iter()
        .map(|(k, v)| {
            let meta = metas.remove(&k).unwrap_or_else(|| "0".into());
            memory_entry(k, v, &meta)
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_comes_back_as_written() {
        let data = r#"{"agent":"a","attempt":1,"fence":3,"explanation":{"b":1.0,"a":[2]}}"#;
        assert_eq!(explanation(data).as_deref(), Some(r#"{"b":1.0,"a":[2]}"#));
        let data = r#"{"agent":"a","attempt":1,"fence":3,"explanation":"not json {"}"#;
        assert_eq!(explanation(data).as_deref(), Some("not json {"));
        assert_eq!(explanation(r#"{"agent":"a"}"#), None);
        assert_eq!(
            stored_explanation(r#"={"b":1.0}"#).as_deref(),
            Some(r#"{"b":1.0}"#)
        );
        assert_eq!(
            stored_explanation(r#"="a string""#).as_deref(),
            Some("a string")
        );
        assert_eq!(
            stored_explanation(r#"d{"fence":3,"explanation":{"b":1}}"#).as_deref(),
            Some(r#"{"b":1}"#)
        );
        assert_eq!(stored_explanation(""), None);
        assert_eq!(
            with_explanation(r#"{"fence":3}"#.into(), Some(r#"{"b":1}"#.into())),
            r#"{"fence":3,"explanation":{"b":1}}"#
        );
        assert_eq!(
            with_explanation("{}".into(), Some("1".into())),
            r#"{"explanation":1}"#
        );
        assert_eq!(
            with_explanation(r#"{"fence":3}"#.into(), None),
            r#"{"fence":3}"#
        );
        assert_eq!(entry_id("0-42").ok(), Some(42));
        assert!(entry_id("1700000000000-0").is_err());
    }
}

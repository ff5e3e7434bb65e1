//! Decoding script replies and mapping Redis errors.

use redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use torch_core::scheduler::QueuedTask;
use torch_store::StoreError;
use torch_store::codec::{self, QueuedRow};

/// Maps a client or server error to the store's error kinds:
/// connection trouble and overload are [`StoreError::Unavailable`] (retry
/// later), a write refused at `maxmemory` is [`StoreError::Full`] (retry after
/// freeing memory); replies that are not what the store wrote are
/// [`StoreError::Corrupt`].
pub(crate) fn map_err(e: RedisError) -> StoreError {
    let text = e.to_string();
    if e.code() == Some("OOM") || text.contains("OOM command not allowed") {
        return StoreError::Full(format!(
            "redis is out of memory (maxmemory reached): {text}; nothing was written"
        ));
    }
    if text.contains("TORCHLOST") {
        return StoreError::Corrupt(format!(
            "redis lost the store's data: {text}; nothing was written (reopen the store to \
             start over with an empty one)"
        ));
    }
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            StoreError::Corrupt(format!("unexpected reply from redis: {text}"))
        }
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::ReadOnly,
        ) => StoreError::Unavailable(format!("redis cannot serve writes now: {text}")),
        ErrorKind::Server(ServerErrorKind::ResponseError) | ErrorKind::Extension
            if e.code() == Some("BUSY") =>
        {
            StoreError::Unavailable(format!("redis is busy running a script: {text}"))
        }
        ErrorKind::Server(ServerErrorKind::ResponseError) | ErrorKind::Extension
            if e.code() == Some("WRONGTYPE") =>
        {
            StoreError::Corrupt(format!("a torch key holds the wrong type: {text}"))
        }
        ErrorKind::Server(ServerErrorKind::ResponseError) if text.contains("script") => {
            StoreError::Corrupt(format!("redis script failed: {text}"))
        }
        ErrorKind::Io => StoreError::Unavailable(format!("redis unreachable: {text}")),
        _ => StoreError::Unavailable(format!("redis error: {text}")),
    }
}

fn corrupt(what: &str, v: &Value) -> StoreError {
    StoreError::Corrupt(format!("unexpected redis reply for {what}: {v:?}"))
}

/// The elements of an array reply.
pub(crate) fn array(what: &str, v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(corrupt(what, &other)),
    }
}

/// An array reply's elements as a fixed number of values (missing ones nil).
pub(crate) fn tuple<const N: usize>(what: &str, v: Value) -> Result<[Value; N], StoreError> {
    let mut items = array(what, v)?.into_iter();
    Ok(std::array::from_fn(|_| items.next().unwrap_or(Value::Nil)))
}

/// A string reply (integers are given as their decimal text).
pub(crate) fn text(what: &str, v: Value) -> Result<String, StoreError> {
    opt_text(what, v)?.ok_or_else(|| StoreError::Corrupt(format!("{what} is missing")))
}

/// A string reply, `None` for nil (a Lua `false`).
pub(crate) fn opt_text(what: &str, v: Value) -> Result<Option<String>, StoreError> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{what} is not UTF-8: {e}"))),
        Value::SimpleString(s) => Ok(Some(s)),
        Value::Okay => Ok(Some("OK".into())),
        Value::Int(i) => Ok(Some(i.to_string())),
        other => Err(corrupt(what, &other)),
    }
}

/// A non-negative integer reply (or decimal text).
pub(crate) fn uint(what: &str, v: Value) -> Result<u64, StoreError> {
    match v {
        Value::Int(i) => {
            u64::try_from(i).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {i}")))
        }
        other => parse_u64(what, &text(what, other)?),
    }
}

/// Parses stored decimal text.
pub(crate) fn parse_u64(what: &str, s: &str) -> Result<u64, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not a count: {s:?}")))
}

/// Parses stored decimal text as a small count.
pub(crate) fn parse_u32(what: &str, s: &str) -> Result<u32, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not a count: {s:?}")))
}

/// Rebuilds a queued task from a script's queued row:
/// `{id, priority, seq, not_before, skills, tenant, routing|nil, failed|nil}`.
pub(crate) fn queued_row(v: Value) -> Result<QueuedTask, StoreError> {
    let [id, pri, seq, nb, sk, ten, rt, fa] = tuple("queued row", v)?;
    let id = codec::task_id(&text("task id", id)?)?;
    let pri = text("priority", pri)?;
    let priority = pri
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("bad priority {pri:?} of task {id}")))?;
    QueuedRow {
        id,
        priority,
        seq: uint("seq", seq)?,
        not_before: uint("not_before", nb)?,
        skills: text("skills", sk)?,
        tenant: text("tenant", ten)?,
        routing: opt_text("routing", rt)?,
        failed_agents: opt_text("failed agents", fa)?,
    }
    .queued()
}

/// Encodes an optional script argument: `""` for none, else `+` and the value.
pub(crate) fn opt_arg(v: Option<&str>) -> String {
    match v {
        None => String::new(),
        Some(v) => {
            let mut s = String::with_capacity(v.len() + 1);
            s.push('+');
            s.push_str(v);
            s
        }
    }
}

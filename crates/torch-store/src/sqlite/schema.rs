//! Opening connections and versioned migrations.
//!
//! The schema version lives in `PRAGMA user_version`. [`MIGRATIONS`] holds
//! one SQL script per version; opening applies the missing ones in order, each
//! in its own transaction together with the version bump. A file written by a
//! newer build (a version we do not know) is refused rather than guessed at.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tracing::{info, warn};

use crate::StoreError;

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection (the writer uses about 40).
const STATEMENT_CACHE: usize = 96;

/// Migration scripts; index `i` takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9];

/// Version 1: tasks, their dependencies and labels, logs, events, tokens,
/// metadata, counters and agents.
///
/// `tasks.seq` is the rowid, so submission order is the table order. Besides
/// the full `spec` JSON, a task keeps the few spec fields the hot path needs
/// (`skills`, `max_retries`, `backoff`) in their own columns so that
/// releasing or requeueing a task never parses its whole spec.
/// `finished_fence` is the fence of the last recorded attempt end: a report
/// carrying it is a duplicate, any other non-current fence is stale.
const V1: &str = "
CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    name             TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    tenant           TEXT    NOT NULL,
    idempotency_key  TEXT,
    spec             TEXT    NOT NULL,
    skills           TEXT    NOT NULL,
    max_retries      INTEGER NOT NULL,
    backoff          TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    retries_used     INTEGER NOT NULL DEFAULT 0,
    fence            INTEGER NOT NULL DEFAULT 0,
    finished_fence   INTEGER NOT NULL DEFAULT 0,
    agent_id         TEXT,
    last_agent_id    TEXT,
    lease_expires_ms INTEGER NOT NULL DEFAULT 0,
    not_before_ms    INTEGER NOT NULL DEFAULT 0,
    deps_pending     INTEGER NOT NULL DEFAULT 0,
    progress_pct     REAL,
    progress_msg     TEXT,
    progress_ms      INTEGER,
    outcome          TEXT,
    reason           TEXT,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL
);
CREATE UNIQUE INDEX tasks_idempotency ON tasks (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_state ON tasks (state);

CREATE TABLE deps (
    task_id TEXT    NOT NULL,
    pos     INTEGER NOT NULL,
    dep_id  TEXT    NOT NULL,
    PRIMARY KEY (task_id, pos)
) WITHOUT ROWID;
CREATE INDEX deps_by_dep ON deps (dep_id);

CREATE TABLE labels (
    task_id TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (task_id, key)
) WITHOUT ROWID;
CREATE INDEX labels_by_value ON labels (key, value);

CREATE TABLE task_logs (
    task_id   TEXT PRIMARY KEY,
    attempt   INTEGER NOT NULL,
    stdout    TEXT    NOT NULL,
    stderr    TEXT    NOT NULL,
    truncated INTEGER NOT NULL
);

CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream   TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    task_id  TEXT,
    agent_id TEXT,
    at_ms    INTEGER NOT NULL,
    data     TEXT    NOT NULL
);

CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,
    role       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('fence', 0);

CREATE TABLE agents (
    id        TEXT PRIMARY KEY,
    name      TEXT    NOT NULL,
    skills    TEXT    NOT NULL,
    slots     INTEGER NOT NULL,
    labels    TEXT    NOT NULL,
    state     TEXT    NOT NULL,
    joined_ms INTEGER NOT NULL,
    left_ms   INTEGER,
    reason    TEXT
);
";

/// Version 2: routing data.
///
/// - `routing`: the task's [`crate::Routing`] as JSON; NULL when it was
///   submitted without one (its queued form then comes from `skills` and
///   `tenant`). When set, `skills` holds the same normalised skills.
/// - `failed_agents`: JSON array of the distinct agents whose attempts failed
///   (or whose leases expired), in order; NULL when none.
/// - `analysis`: the task analysis (JSON) given at submission.
/// - `explanation`: why the current or last lease went to its agent (JSON).
const V2: &str = "
ALTER TABLE tasks ADD COLUMN routing TEXT;
ALTER TABLE tasks ADD COLUMN failed_agents TEXT;
ALTER TABLE tasks ADD COLUMN analysis TEXT;
ALTER TABLE tasks ADD COLUMN explanation TEXT;
";

/// Version 3: the explanation of an assignment is written once, in its
/// `task.assigned` event; the task keeps that event's id. Explanations are
/// the largest thing written per task, and writing them twice halved
/// throughput at 100 agents.
const V3: &str = "
ALTER TABLE tasks ADD COLUMN explanation_event INTEGER;
";

/// Version 4: the parent of a delegated task, and per-agent key/value memory.
const V4: &str = "
ALTER TABLE tasks ADD COLUMN parent_id TEXT;
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE agent_memory (
    owner          TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    value          TEXT    NOT NULL,
    updated_ms     INTEGER NOT NULL,
    inherited_from TEXT,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
";

/// Version 5: lock grants (one row per holder, by fence; the counter
/// `lock_fence` is the highest fence granted) and help requests (the fixed
/// part as JSON, the part an accept or a close changes in columns).
const V5: &str = "
CREATE TABLE locks (
    fence      INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    path       INTEGER NOT NULL,
    holder     TEXT    NOT NULL,
    mode       TEXT    NOT NULL,
    granted_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('lock_fence', 0);

CREATE TABLE help_requests (
    id             TEXT PRIMARY KEY,
    rec            TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    accepted_by    TEXT,
    accepted_agent TEXT,
    closed_ms      INTEGER,
    helper         TEXT,
    created_ms     INTEGER NOT NULL,
    expires_ms     INTEGER NOT NULL
);
CREATE INDEX help_open ON help_requests (state, created_ms);
";

/// Version 6: direct messages the hub keeps for agents it could not reach
/// (relayed), ordered per recipient by urgency then by `seq`.
const V6: &str = "
CREATE TABLE relay_messages (
    seq        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    to_agent   TEXT    NOT NULL,
    from_agent TEXT    NOT NULL,
    urgent     INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    envelope   TEXT    NOT NULL
);
CREATE INDEX relay_by_recipient ON relay_messages (to_agent, urgent DESC, seq);
CREATE INDEX relay_by_expiry ON relay_messages (expires_ms);
";

/// Version 7: the token lifecycle: a submitter token's tenant, expiry,
/// revocation and last use (all NULL for tokens made before).
const V7: &str = "
ALTER TABLE tokens ADD COLUMN tenant TEXT;
ALTER TABLE tokens ADD COLUMN expires_ms INTEGER;
ALTER TABLE tokens ADD COLUMN revoked_ms INTEGER;
ALTER TABLE tokens ADD COLUMN last_used_ms INTEGER;
";

/// v8: the agent CLI's activity and waiting from the last progress report
/// (JSON).
const V8: &str = "
ALTER TABLE tasks ADD COLUMN progress_live TEXT;
";

/// v9: the audit log (hash-chained, kept apart from `events`, which
/// retention deletes) and its signed checkpoints.
const V9: &str = "
CREATE TABLE audit_log (
    seq     INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    role    TEXT    NOT NULL,
    tenant  TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    outcome TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    detail  TEXT    NOT NULL,
    prev    TEXT    NOT NULL,
    hash    TEXT    NOT NULL
);

CREATE TABLE audit_checkpoints (
    size  INTEGER PRIMARY KEY,
    head  TEXT    NOT NULL,
    at_ms INTEGER NOT NULL,
    key   TEXT    NOT NULL,
    sig   TEXT    NOT NULL
);
";

/// Opens the writer connection: creates the file (and its directory), sets
/// WAL and the durability level, and migrates the schema.
pub(crate) fn open_writer(path: &Path, synchronous_full: bool) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display()))
        })?;
    }
    let mut conn = Connection::open(path).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        warn!(path = %path.display(), mode, "sqlite refused WAL mode; writes will block readers");
    }
    let sync = if synchronous_full { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -32_768)?;
    migrate(&mut conn)?;
    // Fences must never go backwards, even if the counter row was damaged.
    conn.execute(
        "UPDATE counters SET value = max(value, (SELECT coalesce(max(fence), 0) FROM tasks))
         WHERE name = 'fence'",
        [],
    )?;
    Ok(conn)
}

/// Opens a read-only connection for the read pool.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::Unavailable(m) => {
            StoreError::Unavailable(format!("cannot open {}: {m}", path.display()))
        }
        StoreError::Corrupt(m) => {
            StoreError::Corrupt(format!("cannot open {}: {m}", path.display()))
        }
        other => other,
    }
}

/// Brings the schema to the newest version this build knows.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len();
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = usize::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("negative schema version {version}")))?;
        if version > known {
            return Err(StoreError::Corrupt(format!(
                "database schema version {version} is newer than this build supports \
                 (up to {known}); use a newer torch or another data dir"
            )));
        }
        let Some(script) = MIGRATIONS.get(version) else {
            return Ok(());
        };
        tx.execute_batch(script).map_err(|e| {
            StoreError::Corrupt(format!(
                "migration to schema version {} failed: {e}",
                version + 1
            ))
        })?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
        info!(version = version + 1, "store schema migrated");
    }
}

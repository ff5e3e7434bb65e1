//! The hub's side of the audit log (see `torch_store::audit` for the chain).
//!
//! Whatever happens — an API call (by the middleware in [`api`]), a task
//! transition, a spawn, a lock grant — is handed to [`Audit::record`], which
//! never waits: entries go through a channel to one writer task that
//! appends them in batches (one store write per batch, the chain extended
//! atomically by the store). The API middleware uses
//! [`Audit::record_durable`] for every call that may change something (any
//! method but `GET`): the caller hears the answer only once its entry is in
//! the store, so no acknowledged change goes unaudited, even across a
//! `kill -9`. Entries the engine records (transitions) may lose the last
//! batch to a `kill -9`; the store's task state and events still show them. The writer also signs checkpoints every
//! [`AuditConfig::checkpoint_every`] entries or
//! [`AuditConfig::checkpoint_interval`], and cuts the log when
//! [`AuditConfig::retention`] is set. Only the leader signs and cuts.

pub(crate) mod api;
mod key;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use torch_store::NewAudit;

pub(crate) use key::load_key;
pub(crate) use writer::Writer;

/// `[audit]` settings (set by the binary).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuditConfig {
    /// Record the audit log (default on).
    pub enabled: bool,
    /// Sign a checkpoint after this many new entries.
    pub checkpoint_every: u64,
    /// ... or this long after the last one, when there are new entries.
    #[serde(with = "torch_core::spec::duration")]
    pub checkpoint_interval: Duration,
    /// Entries older than this are cut, keeping a signed checkpoint at the
    /// cut; unset keeps every entry.
    #[serde(
        default,
        with = "torch_core::spec::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention: Option<Duration>,
    /// The hub's ed25519 signing key (created with mode 0600 when missing);
    /// unset: a key made at start and never written (tests).
    #[serde(skip)]
    pub key_path: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            retention: None,
            key_path: None,
        }
    }
}

/// An entry on its way to the writer, with whom to tell once it is stored
/// (`true`) or given up on (`false`).
pub(crate) type Queued = (NewAudit, Option<oneshot::Sender<bool>>);

/// Records audit entries (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Audit {
    tx: Option<mpsc::UnboundedSender<Queued>>,
}

impl Audit {
    /// A recorder and, when enabled, the writer's end of its channel.
    pub(crate) fn new(enabled: bool) -> (Audit, Option<mpsc::UnboundedReceiver<Queued>>) {
        if !enabled {
            return (Audit { tx: None }, None);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        (Audit { tx: Some(tx) }, Some(rx))
    }

    /// Whether entries are recorded.
    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `entry` for the writer.
    pub(crate) fn record(&self, entry: NewAudit) {
        if let Some(tx) = &self.tx
            && tx.send((entry, None)).is_err()
        {
            tracing::warn!("audit writer stopped: an entry was not recorded");
        }
    }

    /// Queues `entry` and waits until the writer has stored it; `false`
    /// when it could not (the store refused it, or the writer stopped).
    pub(crate) async fn record_durable(&self, entry: NewAudit) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (done, stored) = oneshot::channel();
        if tx.send((entry, Some(done))).is_err() {
            tracing::warn!("audit writer stopped: an entry was not recorded");
            return false;
        }
        stored.await.unwrap_or(false)
    }

    /// Records an act of the hub itself (`actor` `hub`) on `target`.
    pub(crate) fn hub(&self, at_ms: u64, action: &str, target: String, detail: String) {
        if self.enabled() {
            self.record(NewAudit {
                at_ms,
                actor: "hub".into(),
                role: "hub".into(),
                action: action.into(),
                target,
                outcome: "allowed".into(),
                detail,
                ..NewAudit::default()
            });
        }
    }
}

/// Who did something, for entries recorded outside the API middleware.
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    actor: String,
    role: String,
    tenant: String,
}

impl Actor {
    /// An allowed act of this actor on `target`.
    pub(crate) fn entry(
        &self,
        at_ms: u64,
        action: &str,
        target: String,
        detail: String,
    ) -> NewAudit {
        NewAudit {
            at_ms,
            actor: self.actor.clone(),
            role: self.role.clone(),
            tenant: self.tenant.clone(),
            action: action.into(),
            target,
            outcome: "allowed".into(),
            detail,
            ..NewAudit::default()
        }
    }
}

/// The actor of an authenticated API caller.
pub(crate) fn actor_of(caller: &crate::auth::Caller) -> Actor {
    match caller {
        crate::auth::Caller::Token {
            role, hash, tenant, ..
        } => Actor {
            actor: format!("token:{}", torch_store::token_id(hash)),
            role: role.as_str().into(),
            tenant: tenant.clone().unwrap_or_default(),
        },
        crate::auth::Caller::Task { task, .. } => Actor {
            actor: format!("task:{task}"),
            role: "task".into(),
            tenant: String::new(),
        },
    }
}

/// Records an agent's report about a task (start, finish): refused with
/// `refused` as the reason when the store did not take it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn agent_act(
    audit: &Audit,
    at_ms: u64,
    agent: torch_core::AgentId,
    action: &str,
    task: torch_core::TaskId,
    fence: u64,
    refused: Option<String>,
    outcome_kind: &str,
) {
    if !audit.enabled() {
        return;
    }
    let detail = if outcome_kind.is_empty() {
        format!("{{\"fence\":{fence}}}")
    } else {
        format!("{{\"fence\":{fence},\"outcome\":\"{outcome_kind}\"}}")
    };
    audit.record(NewAudit {
        at_ms,
        actor: format!("agent:{agent}"),
        role: "agent".into(),
        action: action.into(),
        target: task.to_string(),
        outcome: if refused.is_some() {
            "refused"
        } else {
            "allowed"
        }
        .into(),
        reason: refused.unwrap_or_default(),
        detail,
        ..NewAudit::default()
    });
}

/// The target of an entry about `tasks`: the task's id when there is one,
/// else `<n> tasks` (their ids are in the detail).
pub(crate) fn tasks_target(tasks: &[serde_json::Value]) -> String {
    match tasks {
        [one] => one["task"].as_str().unwrap_or_default().to_owned(),
        many => format!("{} tasks", many.len()),
    }
}

/// Records one entry for a batch of tasks that went through the same
/// transition together (`detail` is `{"tasks": [...]}`): one entry per
/// store write, not per task, keeps the audit log's cost off the hot path.
pub(crate) fn batch(audit: &Audit, mut entry: NewAudit, tasks: Vec<serde_json::Value>) {
    if tasks.is_empty() || !audit.enabled() {
        return;
    }
    entry.target = tasks_target(&tasks);
    entry.detail = serde_json::json!({ "tasks": tasks }).to_string();
    audit.record(entry);
}

/// An allowed act of `agent` (its target and detail set by [`batch`]).
pub(crate) fn agent_entry(at_ms: u64, agent: torch_core::AgentId, action: &str) -> NewAudit {
    NewAudit {
        at_ms,
        actor: format!("agent:{agent}"),
        role: "agent".into(),
        action: action.into(),
        outcome: "allowed".into(),
        ..NewAudit::default()
    }
}

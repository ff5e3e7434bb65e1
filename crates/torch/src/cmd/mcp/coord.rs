//! The coordination tools: `request_help`, `accept_help`, `acquire_lock`,
//! `release_lock`. They call the client functions `torch help` and
//! `torch lock` use; a wait that would close a cycle in the wait-for graph
//! is refused at once with the cycle named.

use std::time::Duration;

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::RequestMetaObject;
use rmcp::{Peer, RoleServer, schemars, tool, tool_router};
use serde::{Deserialize, Serialize};
use torch_api::coord::{HelpAsk, HelpView, LockAcquire, LockFence, LockGrantView};

use super::{TorchMcp, ms, tool_error, wait_for, with_progress};
use crate::cmd::coord as cli;

/// `request_help` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct HelpInput {
    /// The skill wanted, optionally with a minimum level (`rust`, `rust:0.7`).
    skill: String,
    /// What is wanted.
    text: String,
    /// Seconds it stays open for an accept (default 300).
    #[serde(default)]
    timeout_seconds: Option<f64>,
    /// Wait until someone accepts it (or it expires) before answering.
    #[serde(default)]
    wait: bool,
}

/// `accept_help` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AcceptInput {
    /// The help request's id.
    id: String,
}

/// A help request.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct HelpOut {
    /// Its id.
    id: String,
    /// `open`, `accepted`, `expired` or `escalated`.
    state: String,
    /// Who asked (`task:ID` or `operator:NAME`).
    requester: String,
    /// The asking task's agent.
    requester_agent: Option<String>,
    /// The skill wanted.
    skill: String,
    /// Its minimum level.
    level: f64,
    /// What is wanted.
    text: String,
    /// The peers it was offered to, idle ones first.
    offered_to: Vec<String>,
    /// When it was made (unix ms).
    created_ms: u64,
    /// When it expires unless accepted (unix ms).
    expires_ms: u64,
    /// Who accepted it (`task:ID`).
    accepted_by: Option<String>,
    /// The accepting task's agent.
    accepted_agent: Option<String>,
    /// The helper agent spawned for it (`escalated`).
    helper: Option<String>,
}

impl From<HelpView> for HelpOut {
    fn from(h: HelpView) -> Self {
        HelpOut {
            id: h.id,
            state: h.state,
            requester: h.requester,
            requester_agent: h.requester_agent.map(|a| a.to_string()),
            skill: h.skill,
            level: h.level,
            text: h.text,
            offered_to: h.offered_to.iter().map(ToString::to_string).collect(),
            created_ms: h.created_ms,
            expires_ms: h.expires_ms,
            accepted_by: h.accepted_by,
            accepted_agent: h.accepted_agent.map(|a| a.to_string()),
            helper: h.helper,
        }
    }
}

/// `acquire_lock` input: a `name`, or a `path` glob to reserve.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AcquireInput {
    /// The lock's name.
    #[serde(default)]
    name: Option<String>,
    /// Or a path reservation (`src/api/**`): conflicts with any overlapping
    /// glob another task holds.
    #[serde(default)]
    path: Option<String>,
    /// Shared (many holders) instead of exclusive.
    #[serde(default)]
    shared: bool,
    /// Seconds the grant lasts unless renewed (default 30); released
    /// anyway when this task's attempt ends.
    #[serde(default)]
    ttl_seconds: Option<f64>,
    /// Wait up to this many seconds for it (default: do not wait). A wait
    /// that would close a deadlock is refused at once, naming the cycle.
    #[serde(default)]
    wait_seconds: Option<f64>,
}

/// `acquire_lock` output: the grant.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct GrantOut {
    /// The lock (or path glob).
    name: String,
    /// The fence token: pass it to `release_lock`; it grows with every grant.
    fence: u64,
    /// `exclusive` or `shared`.
    mode: String,
    /// When the grant expires unless renewed (unix ms).
    expires_ms: u64,
    /// A path reservation.
    path: bool,
    /// Who holds it (`task:ID`).
    holder: String,
}

impl From<LockGrantView> for GrantOut {
    fn from(g: LockGrantView) -> Self {
        GrantOut {
            name: g.name,
            fence: g.fence,
            mode: g.mode,
            expires_ms: g.expires_ms,
            path: g.path,
            holder: g.holder,
        }
    }
}

/// `release_lock` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ReleaseInput {
    /// The lock (or path glob) as granted.
    name: String,
    /// The fence token of the grant.
    fence: u64,
}

/// `release_lock` output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct ReleaseOutput {
    /// The lock.
    name: String,
    /// The fence released.
    fence: u64,
    /// It was held with this fence and is free now (a stale fence or a
    /// lock not held is an error instead).
    released: bool,
}

#[tool_router(router = coord_router, vis = "pub(super)")]
impl TorchMcp {
    /// Asks peers for help.
    #[tool(
        description = "Ask peers that have a skill for help: offered to capable peers (idle ones first); the first to accept wins. With wait, answers once someone accepted or it expired."
    )]
    async fn request_help(
        &self,
        Parameters(input): Parameters<HelpInput>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<Json<HelpOut>, String> {
        let timeout = wait_for(input.timeout_seconds)?;
        let client = self.hub_waiting(if input.wait {
            timeout.unwrap_or(Duration::from_secs(300))
        } else {
            Duration::ZERO
        })?;
        let req = HelpAsk {
            skill: input.skill,
            level: None,
            text: input.text,
            timeout_ms: timeout.map(ms),
            wait: input.wait,
        };
        let h = with_progress(
            cli::request_help(&client, &req),
            &peer,
            meta.get_progress_token(),
            "request_help",
        )
        .await
        .map_err(tool_error)?;
        Ok(Json(h.into()))
    }

    /// Accepts a help request.
    #[tool(
        description = "Accept a help request offered to this task's agent: the first accept wins; a later one is refused (already_accepted)."
    )]
    async fn accept_help(
        &self,
        Parameters(input): Parameters<AcceptInput>,
    ) -> Result<Json<HelpOut>, String> {
        if input.id.is_empty()
            || !input
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!("id {:?} is not a help request id", input.id));
        }
        let h = cli::accept_help(&self.client, &input.id)
            .await
            .map_err(tool_error)?;
        Ok(Json(h.into()))
    }

    /// Acquires a lock.
    #[tool(
        description = "Acquire a named lock or a path reservation, exclusive or shared, with a TTL; returns the fence token release_lock needs. With wait_seconds, waits in order; a wait closing a deadlock is refused naming the cycle."
    )]
    async fn acquire_lock(
        &self,
        Parameters(input): Parameters<AcquireInput>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<Json<GrantOut>, String> {
        if input.name.is_some() == input.path.is_some() {
            return Err("give a lock name or a path glob (one of them)".into());
        }
        let ttl = wait_for(input.ttl_seconds)?.unwrap_or(Duration::from_secs(30));
        let wait = wait_for(input.wait_seconds)?;
        let client = self.hub_waiting(wait.unwrap_or_default())?;
        let req = LockAcquire {
            name: input.name,
            path: input.path,
            shared: input.shared,
            ttl_ms: Some(ms(ttl)),
            wait_ms: wait.map(ms),
        };
        let g = with_progress(
            cli::acquire_lock(&client, &req),
            &peer,
            meta.get_progress_token(),
            "acquire_lock",
        )
        .await
        .map_err(tool_error)?;
        Ok(Json(g.into()))
    }

    /// Releases a lock.
    #[tool(
        description = "Release a lock this task holds, with the fence of its grant; a stale fence or a lock not held is an error, never a silent success."
    )]
    async fn release_lock(
        &self,
        Parameters(input): Parameters<ReleaseInput>,
    ) -> Result<Json<ReleaseOutput>, String> {
        let r = cli::release_lock(
            &self.client,
            &LockFence {
                name: input.name,
                fence: input.fence,
                ttl_ms: None,
            },
        )
        .await
        .map_err(tool_error)?;
        Ok(Json(ReleaseOutput {
            name: r.name,
            fence: r.fence,
            released: r.released,
        }))
    }
}

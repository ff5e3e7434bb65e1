//! `torch mcp`: a Model Context Protocol server over stdio for the agent CLI
//! running inside a task (Claude Code, Codex, …), built on the official Rust
//! SDK (`rmcp`). It acts with the task's own token from the environment
//! (`TORCH_HUB`, `TORCH_TASK_ID`, `TORCH_TASK_TOKEN`, and `TORCH_AGENT_URL`
//! for messages), so the agent inside the task can do exactly what `torch`
//! can from a task's shell: read its task, report progress, delegate
//! subtasks, spawn a helper, wait for tasks ([`tasks`]); find peers, send,
//! read and ack signed messages ([`msg`]); ask for and accept help, acquire
//! and release locks ([`coord`]). Each tool calls the same client functions
//! as the matching CLI command. Every tool has an input and an output
//! schema; a refusal is a tool error (`isError`) whose text names the cause.
//! Stdout carries the protocol only (logs go to stderr).

mod coord;
mod msg;
mod tasks;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{ProgressNotificationParam, ProgressToken, ServerCapabilities, ServerConfig};
use rmcp::{Peer, RoleServer, ServerHandler, ServiceExt, tool_handler};
use torch_api::{ENV_HUB, ENV_TASK_ID, ENV_TASK_TOKEN};

use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};

/// How often a waiting tool reports progress: well inside the 60 s idle
/// watchdogs of MCP clients.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The longest any tool waits.
const WAIT_MAX_SECONDS: u64 = 3600;
/// Room on top of a wait for the answer to come back.
const ANSWER_SLACK: Duration = Duration::from_secs(30);

/// The server: a hub client acting with the task token.
#[derive(Clone)]
struct TorchMcp {
    /// The hub client for short requests.
    client: Client,
    /// The hub URL(s), for clients with longer timeouts.
    hub: String,
    /// The task token.
    token: String,
    /// This task.
    task_id: String,
    tool_router: ToolRouter<TorchMcp>,
}

/// A tool's error text: the whole cause chain (the hub's code and message,
/// a deadlock's cycle, a rate limit's name).
fn tool_error(e: anyhow::Error) -> String {
    format!("{e:#}")
}

/// Seconds as a bounded wait.
fn wait_for(seconds: Option<f64>) -> Result<Option<Duration>, String> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(
            s.min(WAIT_MAX_SECONDS as f64),
        ))),
        Some(s) => Err(format!("{s} is not a number of seconds >= 0")),
    }
}

/// Milliseconds of a duration, saturating.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `fut`, sending a progress notification every few seconds while it
/// runs (when the client gave a progress token), so a long wait never
/// trips the client's idle watchdog.
async fn with_progress<F: Future>(
    fut: F,
    peer: &Peer<RoleServer>,
    token: Option<ProgressToken>,
    what: &str,
) -> F::Output {
    let Some(token) = token else {
        return fut.await;
    };
    let started = Instant::now();
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => {
                let secs = started.elapsed().as_secs();
                let _ = peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), secs as f64)
                            .with_message(format!("{what}: waited {secs} s")),
                    )
                    .await;
            }
        }
    }
}

impl TorchMcp {
    fn new(client: Client, hub: String, token: String, task_id: String) -> Self {
        TorchMcp {
            client,
            hub,
            token,
            task_id,
            tool_router: Self::tasks_router() + Self::msg_router() + Self::coord_router(),
        }
    }

    /// A hub client whose requests may last `wait` plus some slack.
    fn hub_waiting(&self, wait: Duration) -> Result<Client, String> {
        if wait.is_zero() {
            return Ok(self.client.clone());
        }
        Client::with_timeout(&self.hub, Some(self.token.clone()), wait + ANSWER_SLACK)
            .map_err(tool_error)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TorchMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "Nova Torch tools for the agent running this task: read tasks, report progress, delegate subtasks, spawn helpers, wait for tasks; find peers, send, read and ack signed messages; ask for and accept help; acquire and release locks.",
        )
    }
}

pub(crate) async fn run() -> Result<()> {
    let var = |k: &str| {
        std::env::var(k).map_err(|_| {
            exit(
                BAD_INPUT,
                format!(
                    "{k} is not set: `torch mcp` runs inside a task started by a torch agent (its MCP client starts it there)"
                ),
            )
        })
    };
    let hub = var(ENV_HUB)?;
    let task = var(ENV_TASK_ID)?;
    let token = var(ENV_TASK_TOKEN)?;
    let client = Client::new(&hub, Some(token.clone()))?;
    let server = TorchMcp::new(client, hub, token, task)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| {
            exit(
                crate::exit::ERROR,
                format!("MCP session did not start: {e}"),
            )
        })?;
    server.waiting().await.map_err(|e| {
        exit(
            crate::exit::ERROR,
            format!("MCP session ended with an error: {e}"),
        )
    })?;
    Ok(())
}

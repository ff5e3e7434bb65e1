//! The messaging tools: `list_peers`, `send_message`, `read_inbox`,
//! `ack_messages`. They call the client functions `torch peers` and
//! `torch msg` use; messages go through the task's own agent runtime
//! (`TORCH_AGENT_URL`), which signs them and talks to the peer directly.

use std::collections::BTreeMap;

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::RequestMetaObject;
use rmcp::{Peer, RoleServer, schemars, tool, tool_router};
use serde::{Deserialize, Serialize};
use torch_api::msg::{AckRequest, InboxMessage, PeerCard, Recipient, SendRequest};

use super::{ANSWER_SLACK, TorchMcp, ms, tool_error, wait_for, with_progress};
use crate::cmd::msg as cli;

/// `list_peers` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct PeersInput {
    /// Only peers with this skill (`rust`, or `rust:0.7` for a minimum level).
    #[serde(default)]
    skill: Option<String>,
    /// Only members of this team.
    #[serde(default)]
    team: Option<String>,
    /// Only peers in this state (`idle`, `busy`, …).
    #[serde(default)]
    state: Option<String>,
}

/// A peer's card.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct PeerOut {
    /// Its agent id: the `to` of `send_message`.
    agent_id: String,
    /// Its name.
    name: String,
    /// Its skills (`name:level`).
    skills: Vec<String>,
    /// Its labels.
    labels: BTreeMap<String, String>,
    /// Its state.
    state: String,
    /// Its team.
    team: Option<String>,
    /// Its direct message endpoint.
    endpoint: Option<String>,
    /// Its ed25519 public key (hex), which signs its messages.
    public_key: Option<String>,
    /// The tasks it runs now.
    task_ids: Vec<String>,
}

impl From<PeerCard> for PeerOut {
    fn from(p: PeerCard) -> Self {
        PeerOut {
            agent_id: p.agent_id.to_string(),
            name: p.name,
            skills: p.skills.iter().map(ToString::to_string).collect(),
            labels: p.labels,
            state: p.state,
            team: p.team,
            endpoint: p.endpoint,
            public_key: p.public_key,
            task_ids: p.task_ids.iter().map(ToString::to_string).collect(),
        }
    }
}

/// `list_peers` output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct PeersOutput {
    /// The peers this task may talk to (same tenant).
    peers: Vec<PeerOut>,
}

/// `send_message` input: one recipient (`to`, `task` or `team`) and the
/// message (`text`, or `body` for JSON).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SendInput {
    /// The recipient agent's id.
    #[serde(default)]
    to: Option<String>,
    /// Or a task: its current agent receives it.
    #[serde(default)]
    task: Option<String>,
    /// Or a team: every member receives it.
    #[serde(default)]
    team: Option<String>,
    /// The message as text.
    #[serde(default)]
    text: Option<String>,
    /// Or the message as any JSON value (at most 64 KiB).
    #[serde(default)]
    body: Option<serde_json::Value>,
    /// The conversation it belongs to.
    #[serde(default)]
    thread: Option<String>,
    /// The id of the message it answers.
    #[serde(default)]
    reply_to: Option<String>,
    /// Its kind (`message` by default; `urgent` is delivered first).
    #[serde(default)]
    kind: Option<String>,
    /// Seconds it stays deliverable (the hub's default when omitted).
    #[serde(default)]
    ttl_seconds: Option<f64>,
}

/// One delivered copy of a message.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct SentOut {
    /// Its id.
    id: String,
    /// The recipient agent.
    to: String,
    /// `direct` or `relayed`.
    delivery: String,
}

/// `send_message` output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct SendOutput {
    /// The message id (uuid v7).
    id: String,
    /// `direct` (the recipient acked it) or `relayed` (the hub keeps it
    /// until the recipient is back).
    delivery: String,
    /// With a team recipient: one entry per member.
    sent: Vec<SentOut>,
}

/// `read_inbox` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct InboxInput {
    /// Wait up to this many seconds for a first message when the inbox is
    /// empty (progress notifications every 5 s meanwhile).
    #[serde(default)]
    wait_seconds: Option<f64>,
    /// Only messages of this thread.
    #[serde(default)]
    thread: Option<String>,
}

/// A message in the inbox.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct MessageOut {
    /// Its id: ack it with `ack_messages`.
    id: String,
    /// The sender agent's id (or `hub`).
    from: String,
    /// The sender's name.
    from_name: Option<String>,
    /// The recipient agent.
    to: String,
    /// Its thread.
    thread: Option<String>,
    /// The message it answers.
    reply_to: Option<String>,
    /// Its kind (`message`, `urgent`, `bounce`, `help`, …).
    kind: String,
    /// The body: a string for text messages, else JSON.
    body: serde_json::Value,
    /// When it was sent (unix ms).
    sent_ms: u64,
    /// `direct` or `relayed`.
    delivery: String,
    /// Its signature was verified against the sender's registered key.
    verified: bool,
}

impl From<InboxMessage> for MessageOut {
    fn from(m: InboxMessage) -> Self {
        MessageOut {
            id: m.id.to_string(),
            from: m.from,
            from_name: m.from_name,
            to: m.to.to_string(),
            thread: m.thread,
            reply_to: m.reply_to.map(|r| r.to_string()),
            kind: m.kind,
            body: m.body,
            sent_ms: m.sent_ms,
            delivery: m.delivery.as_str().to_string(),
            verified: m.verified,
        }
    }
}

/// `read_inbox` output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct InboxOutput {
    /// The messages not yet acked.
    messages: Vec<MessageOut>,
}

/// `ack_messages` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AckInput {
    /// The ids of the messages to ack; they leave the inbox.
    ids: Vec<String>,
}

/// `ack_messages` output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct AckOutput {
    /// How many were in the inbox and are gone now.
    acked: usize,
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("{what} {s:?}: {e}"))
}

#[tool_router(router = msg_router, vis = "pub(super)")]
impl TorchMcp {
    /// Lists peers.
    #[tool(
        description = "List peer agents (same tenant) with their skills, state, team, endpoint, public key and current tasks; filter by skill, team or state."
    )]
    async fn list_peers(
        &self,
        Parameters(input): Parameters<PeersInput>,
    ) -> Result<Json<PeersOutput>, String> {
        let list = cli::list_peers(
            &self.client,
            input.skill.as_deref(),
            input.team.as_deref(),
            input.state.as_deref(),
        )
        .await
        .map_err(tool_error)?;
        Ok(Json(PeersOutput {
            peers: list.peers.into_iter().map(PeerOut::from).collect(),
        }))
    }

    /// Sends a signed message.
    #[tool(
        description = "Send a signed message to one agent (to), a task's current agent (task) or every member of a team (team): straight to the peer, or relayed by the hub when the peer is unreachable."
    )]
    async fn send_message(
        &self,
        Parameters(input): Parameters<SendInput>,
    ) -> Result<Json<SendOutput>, String> {
        let recipients = [&input.to, &input.task, &input.team]
            .iter()
            .filter(|r| r.is_some())
            .count();
        if recipients != 1 {
            return Err(format!(
                "give exactly one recipient: to (agent id), task (task id) or team; got {recipients}"
            ));
        }
        let body = match (input.text, input.body) {
            (Some(t), None) => serde_json::Value::String(t),
            (None, Some(b)) => b,
            _ => return Err("give the message as text or as body (JSON), not both".into()),
        };
        let ttl_ms = wait_for(input.ttl_seconds)?.map(ms);
        let req = SendRequest {
            recipient: Recipient {
                to: input.to.as_deref().map(|s| parse("to", s)).transpose()?,
                task: input
                    .task
                    .as_deref()
                    .map(|s| parse("task", s))
                    .transpose()?,
                team: input.team,
            },
            thread: input.thread,
            reply_to: input
                .reply_to
                .as_deref()
                .map(|s| parse("reply_to", s))
                .transpose()?,
            kind: input.kind,
            body,
            ttl_ms,
        };
        let agent = cli::inside_task_with(ANSWER_SLACK * 4).map_err(tool_error)?;
        let res = cli::send_from_task(&agent, &req)
            .await
            .map_err(tool_error)?;
        Ok(Json(SendOutput {
            id: res.id.to_string(),
            delivery: res.delivery.as_str().to_string(),
            sent: res
                .sent
                .into_iter()
                .map(|s| SentOut {
                    id: s.id.to_string(),
                    to: s.to.to_string(),
                    delivery: s.delivery.as_str().to_string(),
                })
                .collect(),
        }))
    }

    /// Reads the inbox, waiting for a first message if asked to.
    #[tool(
        description = "Read this task's inbox: verified messages not yet acked. With wait_seconds, wait that long for a first message when the inbox is empty."
    )]
    async fn read_inbox(
        &self,
        Parameters(input): Parameters<InboxInput>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<Json<InboxOutput>, String> {
        let wait = wait_for(input.wait_seconds)?;
        let agent = cli::inside_task_with(wait.unwrap_or_default() + ANSWER_SLACK * 4)
            .map_err(tool_error)?;
        let inbox = with_progress(
            cli::read_inbox(&agent, wait.map(ms), input.thread.as_deref()),
            &peer,
            meta.get_progress_token(),
            "read_inbox",
        )
        .await
        .map_err(tool_error)?;
        Ok(Json(InboxOutput {
            messages: inbox.messages.into_iter().map(MessageOut::from).collect(),
        }))
    }

    /// Acks messages.
    #[tool(description = "Ack messages by id: they leave the inbox for good.")]
    async fn ack_messages(
        &self,
        Parameters(input): Parameters<AckInput>,
    ) -> Result<Json<AckOutput>, String> {
        if input.ids.is_empty() {
            return Err("ids is empty".into());
        }
        let ids = input
            .ids
            .iter()
            .map(|s| parse("message id", s))
            .collect::<Result<Vec<_>, _>>()?;
        let agent = cli::inside_task_with(ANSWER_SLACK * 4).map_err(tool_error)?;
        let res = cli::ack_messages(&agent, &AckRequest { ids })
            .await
            .map_err(tool_error)?;
        Ok(Json(AckOutput { acked: res.acked }))
    }
}

//! Sending for a task: rate limit, recipients (an agent, a task's current
//! agent, a team's members), sign, POST straight to the recipient's
//! endpoint; when it cannot be reached, hand the envelope to the hub
//! (`relayed`).

use std::time::{Duration, Instant};

use uuid::Uuid;

use torch_api::msg::{
    Delivery, Envelope, KIND_TEXT, PEER_MESSAGES_PATH, RelayRequest, RelayResult, SendRequest,
    SendResult, SentOne, SignedEnvelope,
};
use torch_api::rest::ErrorBody;
use torch_core::AgentId;

use super::peers::HubError;
use super::{Messenger, event_of, now_ms};

/// How long a direct POST to a peer may take.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// A rate limit refused it (`limit` names which).
    #[error("rate limited ({limit}); retry in {} ms", retry_after.as_millis())]
    RateLimited {
        /// Which limit: `sender` (ours), `recipient_sender` (the recipient's
        /// bucket for us), `inbox`, `relay_inbox`.
        limit: String,
        /// When to retry.
        retry_after: Duration,
    },
    /// The request is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// No such recipient (task without an agent, empty team).
    #[error("{0}")]
    NotFound(String),
    /// The recipient is gone; the message bounced.
    #[error("recipient gone: {0}")]
    Gone(String),
    /// Neither the recipient nor the hub could be reached.
    #[error("undeliverable now: {0}")]
    Unreachable(String),
    /// The recipient refused it.
    #[error("refused by the recipient: {0}")]
    Refused(String),
    /// This agent has no id yet.
    #[error("the agent is not registered with a hub yet")]
    NotReady,
}

impl Messenger {
    /// Sends `req` from this agent; one message per recipient.
    pub(crate) async fn send(&self, req: SendRequest) -> Result<SendResult, SendError> {
        let me = self.me().ok_or(SendError::NotReady)?;
        let kind = req.kind.clone().unwrap_or_else(|| KIND_TEXT.to_string());
        if kind.is_empty() || kind.len() > 64 {
            return Err(SendError::BadRequest("kind must be 1 to 64 bytes".into()));
        }
        let to = self.recipients(me, &req).await?;
        let mut sent = Vec::with_capacity(to.len());
        for agent in to {
            let limited = super::lock(&self.buckets).take(
                "",
                self.limits.rate,
                self.limits.burst,
                Instant::now(),
            );
            if let Err(retry_after) = limited {
                return Err(SendError::RateLimited {
                    limit: "sender".into(),
                    retry_after,
                });
            }
            let env = Envelope {
                id: Uuid::now_v7(),
                from: me.to_string(),
                to: agent,
                thread: req.thread.clone(),
                reply_to: req.reply_to,
                kind: kind.clone(),
                body: req.body.clone(),
                sent_ms: now_ms(),
                ttl_ms: req
                    .ttl_ms
                    .unwrap_or(self.limits.default_ttl.as_millis() as u64),
            };
            let id = env.id;
            let delivery = self.deliver_one(env).await?;
            sent.push(SentOne {
                id,
                to: agent,
                delivery,
            });
        }
        let first = sent
            .first()
            .cloned()
            .ok_or_else(|| SendError::NotFound("no recipient".into()))?;
        Ok(SendResult {
            id: first.id,
            delivery: first.delivery,
            sent: if sent.len() > 1 { sent } else { Vec::new() },
        })
    }

    /// The agents `req` addresses.
    async fn recipients(&self, me: AgentId, req: &SendRequest) -> Result<Vec<AgentId>, SendError> {
        let r = &req.recipient;
        match (r.to, r.task, &r.team) {
            (Some(a), None, None) => Ok(vec![a]),
            (None, Some(task), None) => {
                let cards = self.peers.refresh(&self.hub).await.map_err(hub_err)?;
                cards
                    .iter()
                    .find(|c| c.task_ids.contains(&task))
                    .map(|c| vec![c.agent_id])
                    .ok_or_else(|| SendError::NotFound(format!("task {task} has no current agent")))
            }
            (None, None, Some(team)) => {
                let cards = self.peers.refresh(&self.hub).await.map_err(hub_err)?;
                let members: Vec<AgentId> = cards
                    .iter()
                    .filter(|c| c.team.as_deref() == Some(team) && c.agent_id != me)
                    .map(|c| c.agent_id)
                    .collect();
                if members.is_empty() {
                    return Err(SendError::NotFound(format!(
                        "team {team} has no other member"
                    )));
                }
                Ok(members)
            }
            _ => Err(SendError::BadRequest(
                "give exactly one of --to, --task, --team".into(),
            )),
        }
    }

    /// Signs and delivers one envelope: directly, else through the hub.
    pub(crate) async fn deliver_one(&self, env: Envelope) -> Result<Delivery, SendError> {
        let signed = env
            .sign(&self.key)
            .map_err(|e| SendError::BadRequest(e.to_string()))?;
        let to = signed.envelope.to.to_string();
        let mut stale = false;
        for _ in 0..2 {
            let Some(peer) = self.peers.lookup(&self.hub, &to, stale).await else {
                break;
            };
            let Some(endpoint) = peer.endpoint else { break };
            match self.post_direct(&endpoint, &signed).await {
                Ok(()) => {
                    self.sent(&signed, Delivery::Direct);
                    return Ok(Delivery::Direct);
                }
                Err(Direct::Refused(e)) => return Err(e),
                Err(Direct::Unreachable) if !stale => stale = true,
                Err(Direct::Unreachable) => break,
            }
        }
        self.relay(&signed).await?;
        self.sent(&signed, Delivery::Relayed);
        Ok(Delivery::Relayed)
    }

    fn sent(&self, signed: &SignedEnvelope, delivery: Delivery) {
        self.event(event_of(
            "message.sent",
            Some(&signed.envelope),
            Some(delivery),
            None,
        ));
    }

    async fn post_direct(&self, endpoint: &str, signed: &SignedEnvelope) -> Result<(), Direct> {
        let url = format!("{}{PEER_MESSAGES_PATH}", endpoint.trim_end_matches('/'));
        let resp = self
            .http
            .post(&url)
            .json(signed)
            .timeout(DIRECT_TIMEOUT)
            .send()
            .await
            .map_err(|_| Direct::Unreachable)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_server_error() {
            return Err(Direct::Unreachable);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body: Option<ErrorBody> = resp.json().await.ok();
        if status.as_u16() == 429 {
            return Err(Direct::Refused(SendError::RateLimited {
                limit: body
                    .and_then(|b| b.limit)
                    .unwrap_or_else(|| "recipient".into()),
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
            }));
        }
        let why = body.map_or_else(
            || status.to_string(),
            |b| format!("{}: {}", b.code, b.message),
        );
        Err(Direct::Refused(SendError::Refused(why)))
    }

    async fn relay(&self, signed: &SignedEnvelope) -> Result<(), SendError> {
        let req = RelayRequest {
            messages: vec![signed.clone()],
        };
        let res: RelayResult = self
            .hub
            .call("/api/v1/messages/relay", Some(&req))
            .await
            .map_err(hub_err)?;
        match res.results.first().map(String::as_str) {
            Some("relayed" | "duplicate") => Ok(()),
            Some(other) => Err(SendError::Gone(
                other.strip_prefix("bounced: ").unwrap_or(other).to_string(),
            )),
            None => Err(SendError::Unreachable("the hub answered nothing".into())),
        }
    }
}

enum Direct {
    Unreachable,
    Refused(SendError),
}

fn hub_err(e: HubError) -> SendError {
    match e {
        HubError::Unreachable(m) => SendError::Unreachable(format!("recipient and hub: {m}")),
        HubError::Status { status: 429, body } => {
            let limit = serde_json::from_str::<ErrorBody>(&body)
                .ok()
                .and_then(|b| b.limit)
                .unwrap_or_else(|| "relay".into());
            SendError::RateLimited {
                limit,
                retry_after: Duration::from_secs(1),
            }
        }
        HubError::Status { status: 404, body } => SendError::NotFound(body),
        HubError::Status { status, body } => {
            SendError::Unreachable(format!("the hub answered {status}: {body}"))
        }
    }
}

//! Relaying: keeping a message its sender could not deliver, pushing it to
//! its recipient when connected (now, or at its next Hello), bouncing it
//! when the recipient is unknown or its TTL passes, and operators' messages.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use torch_api::msg::{
    Delivery, Envelope, HUB_SENDER, KIND_BOUNCE, PEER_MESSAGES_PATH, SignedEnvelope,
    parse_public_key,
};
use torch_api::ws::HubMessage;
use torch_core::events::payload::MessageEvent;
use torch_core::{AgentId, EventData};
use torch_store::{RelayPut, RelayedMessage, Store, StoreError};
use tracing::{debug, warn};

use super::Messaging;
use crate::hub::Shared;

/// Messages pushed to an agent in one `Deliver`.
const PAGE: usize = 512;
/// How often the leader looks for expired relayed messages, and pushes
/// again what connected recipients have not confirmed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Sweeps between two pushes of unconfirmed messages.
const REPUSH_EVERY: u32 = 3;

/// Why a relay was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    /// The envelope is not the caller's, or does not verify.
    #[error("{0}")]
    Forbidden(String),
    /// Malformed or too large.
    #[error("{0}")]
    BadRequest(String),
    /// A limit refused it.
    #[error("rate limited ({limit})")]
    Limited {
        /// `sender` or `relay_inbox`.
        limit: &'static str,
        /// When to retry.
        retry_after: Duration,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `message.*` event data about `env`.
fn data(env: &Envelope, delivery: Option<Delivery>, reason: Option<String>) -> MessageEvent {
    MessageEvent {
        delivery: delivery.map(|d| d.as_str().to_string()),
        from: Some(env.from.clone()),
        id: Some(env.id.to_string()),
        kind: Some(env.kind.clone()),
        reason,
        to: Some(env.to.to_string()),
        sent_ms: Some(env.sent_ms),
        at_ms: None,
    }
}

/// Whether an agent id was ever registered with this store.
async fn known<S: Store>(shared: &Shared<S>, agent: AgentId) -> Result<bool, StoreError> {
    Ok(shared
        .store
        .get_meta(format!("agent_token:{agent}"))
        .await?
        .is_some())
}

impl Messaging {
    /// Keeps envelopes that `caller` (an agent) signed; one result per
    /// envelope: `relayed`, `duplicate` or `bounced: REASON`.
    pub(crate) async fn relay<S: Store>(
        &self,
        shared: &Arc<Shared<S>>,
        caller: AgentId,
        envelopes: Vec<SignedEnvelope>,
    ) -> Result<Vec<String>, RelayError> {
        let key_hex = match self.contact(caller).and_then(|(_, k)| k) {
            Some(k) => Some(k),
            None => shared.store.get_meta(format!("agent_key:{caller}")).await?,
        };
        let key = key_hex
            .as_deref()
            .and_then(|k| parse_public_key(k).ok())
            .ok_or_else(|| {
                RelayError::Forbidden(format!("agent {caller} has no registered key"))
            })?;
        let mut results = Vec::with_capacity(envelopes.len());
        for signed in envelopes {
            let env = &signed.envelope;
            if env.from != caller.to_string() {
                return Err(RelayError::Forbidden(format!(
                    "envelope {} is from {}, not from the calling agent {caller}",
                    env.id, env.from
                )));
            }
            signed
                .verify(&key)
                .map_err(|e| RelayError::Forbidden(format!("envelope {}: {e}", env.id)))?;
            env.check_body()
                .map_err(|e| RelayError::BadRequest(e.to_string()))?;
            if let Err(retry_after) = self.take_token(&env.from) {
                return Err(RelayError::Limited {
                    limit: "sender",
                    retry_after,
                });
            }
            results.push(self.keep(shared, signed).await?);
        }
        Ok(results)
    }

    /// Keeps one verified envelope (or bounces it), pushes it when its
    /// recipient is connected.
    async fn keep<S: Store>(
        &self,
        shared: &Arc<Shared<S>>,
        signed: SignedEnvelope,
    ) -> Result<String, RelayError> {
        let env = signed.envelope.clone();
        let now = shared.now_ms();
        if env.expires_ms() <= now {
            self.bounce(shared, &env, "expired").await;
            return Ok("bounced: expired".into());
        }
        if !known(shared, env.to).await? {
            self.bounce(shared, &env, "unknown agent").await;
            return Ok(format!("bounced: unknown agent {}", env.to));
        }
        let text =
            serde_json::to_string(&signed).map_err(|e| RelayError::BadRequest(e.to_string()))?;
        let put = shared
            .store
            .relay_put(
                RelayedMessage {
                    id: env.id.to_string(),
                    to: env.to,
                    from: env.from.clone(),
                    urgent: env.is_urgent(),
                    expires_ms: env.expires_ms(),
                    envelope: text,
                },
                self.cfg.relay_cap,
            )
            .await?;
        match put {
            RelayPut::Stored => {
                shared
                    .event(
                        Some(env.to),
                        None,
                        EventData::MessageRelayed(data(&env, Some(Delivery::Relayed), None)),
                    )
                    .await;
                self.push(env.to, vec![signed]).await;
                Ok("relayed".into())
            }
            RelayPut::Duplicate => Ok("duplicate".into()),
            RelayPut::Full => Err(RelayError::Limited {
                limit: "relay_inbox",
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// Pushes envelopes to a connected recipient's session (best effort:
    /// what is not taken stays kept and goes out at its next Hello).
    async fn push(&self, to: AgentId, messages: Vec<SignedEnvelope>) {
        if messages.is_empty() {
            return;
        }
        self.owe(to, true);
        if let Some(tx) = self.session_tx(to)
            && tx
                .try_send(HubMessage::Deliver { messages }.into())
                .is_err()
        {
            debug!(agent_id = %to, "session outbox full; relayed messages wait for the next hello");
        }
    }

    /// Pushes what is kept for `agent` (after its Hello, or when it took a
    /// full page).
    pub(crate) async fn deliver_pending<S: Store>(&self, shared: &Arc<Shared<S>>, agent: AgentId) {
        match shared.store.relay_pending(agent, PAGE).await {
            Ok(kept) if kept.is_empty() => self.owe(agent, false),
            Ok(kept) => {
                let messages: Vec<SignedEnvelope> = kept
                    .iter()
                    .filter_map(|m| serde_json::from_str(&m.envelope).ok())
                    .collect();
                self.push(agent, messages).await;
            }
            Err(e) => warn!(agent_id = %agent, error = %e, "could not read relayed messages"),
        }
    }

    /// The agent stored these relayed messages: forget them.
    pub(crate) async fn delivered<S: Store>(
        &self,
        shared: &Arc<Shared<S>>,
        agent: AgentId,
        ids: Vec<Uuid>,
    ) {
        let n = ids.len();
        match shared
            .store
            .relay_remove(agent, ids.iter().map(Uuid::to_string).collect())
            .await
        {
            Ok(_) if n >= PAGE => self.deliver_pending(shared, agent).await,
            Ok(_) => {}
            Err(e) => warn!(agent_id = %agent, error = %e, "could not forget delivered messages"),
        }
    }

    /// Sends `original` back to its sender as a `bounce` signed by the hub
    /// (not for bounces and the hub's own messages), with an event.
    pub(crate) async fn bounce<S: Store>(
        &self,
        shared: &Arc<Shared<S>>,
        original: &Envelope,
        reason: &str,
    ) {
        shared
            .event(
                original.from.parse().ok(),
                None,
                EventData::MessageBounced(data(original, None, Some(reason.to_string()))),
            )
            .await;
        if original.kind == KIND_BOUNCE || original.from == HUB_SENDER {
            return;
        }
        let Ok(sender) = original.from.parse::<AgentId>() else {
            return;
        };
        let bounce = Envelope {
            id: Uuid::now_v7(),
            from: HUB_SENDER.into(),
            to: sender,
            thread: original.thread.clone(),
            reply_to: Some(original.id),
            kind: KIND_BOUNCE.into(),
            body: serde_json::json!({
                "reason": reason,
                "id": original.id,
                "to": original.to,
                "kind": original.kind,
                "thread": original.thread,
                "sent_ms": original.sent_ms,
            }),
            sent_ms: shared.now_ms(),
            ttl_ms: self.cfg.default_ttl.as_millis() as u64,
        };
        let signed = match bounce.sign(&self.hub_key) {
            Ok(s) => s,
            Err(e) => return warn!(error = %e, "could not sign a bounce"),
        };
        if let Err(e) = Box::pin(self.keep(shared, signed)).await {
            warn!(error = %e, "could not keep a bounce for its sender");
        }
    }

    /// Sends a message from the hub (an operator) to `to`: straight to its
    /// endpoint when it has one, else kept and relayed.
    pub(crate) async fn send_from_hub<S: Store>(
        &self,
        shared: &Arc<Shared<S>>,
        env: Envelope,
    ) -> Result<Delivery, RelayError> {
        if let Err(retry_after) = self.take_token(HUB_SENDER) {
            return Err(RelayError::Limited {
                limit: "sender",
                retry_after,
            });
        }
        let signed = env
            .sign(&self.hub_key)
            .map_err(|e| RelayError::BadRequest(e.to_string()))?;
        if let Some((Some(endpoint), _)) = self.contact(signed.envelope.to) {
            let url = format!("{}{PEER_MESSAGES_PATH}", endpoint.trim_end_matches('/'));
            if let Ok(resp) = self.http.post(&url).json(&signed).send().await
                && resp.status().is_success()
            {
                shared
                    .event(
                        None,
                        None,
                        EventData::MessageSent(data(
                            &signed.envelope,
                            Some(Delivery::Direct),
                            None,
                        )),
                    )
                    .await;
                return Ok(Delivery::Direct);
            }
        }
        let env = signed.envelope.clone();
        match self.keep(shared, signed).await?.as_str() {
            "relayed" | "duplicate" => {
                shared
                    .event(
                        None,
                        None,
                        EventData::MessageSent(data(&env, Some(Delivery::Relayed), None)),
                    )
                    .await;
                Ok(Delivery::Relayed)
            }
            other => Err(RelayError::BadRequest(other.to_string())),
        }
    }
}

/// The leader's sweeper: bounces relayed messages whose TTL passed, until
/// the hub stops.
pub(crate) async fn sweep<S: Store>(shared: Arc<Shared<S>>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        if !shared.is_leader() {
            continue;
        }
        n = n.wrapping_add(1);
        if n.is_multiple_of(REPUSH_EVERY) {
            for agent in shared.msg.owing() {
                shared.msg.deliver_pending(&shared, agent).await;
            }
        }
        match shared
            .store
            .relay_take_expired(shared.now_ms(), 1_000)
            .await
        {
            Ok(expired) => {
                for m in expired {
                    match serde_json::from_str::<SignedEnvelope>(&m.envelope) {
                        Ok(s) => shared.msg.bounce(&shared, &s.envelope, "expired").await,
                        Err(e) => warn!(error = %e, "dropping an unreadable relayed message"),
                    }
                }
            }
            Err(e) => debug!(error = %e, "could not look for expired relayed messages"),
        }
    }
}

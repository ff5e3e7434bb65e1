//! Taking a message in: checks in order (recipient, replay window or TTL,
//! sender's key, signature, duplicate, sender's rate), then the inbox. Every
//! refusal is reported as a `message.refused` event with its reason.

use std::time::{Duration, Instant};

use uuid::Uuid;

use torch_api::msg::{Delivery, Envelope, HUB_SENDER, KIND_BOUNCE, SignedEnvelope};

use super::inbox::{Added, Stored};
use super::{Messenger, event_of, inbox_failed, now_ms};

/// Why a message was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// It is for another agent.
    #[error("wrong recipient: this is agent {0}")]
    WrongRecipient(String),
    /// `sent_ms` is outside the replay window.
    #[error("outside the replay window ({0} ms off)")]
    Replay(i128),
    /// Its TTL passed.
    #[error("expired")]
    Expired,
    /// The hub does not know the sender or its key.
    #[error("unknown sender {0}")]
    UnknownSender(String),
    /// The signature does not verify with the sender's key.
    #[error("bad signature")]
    BadSignature,
    /// Malformed or over the size limit.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The sender is over its rate.
    #[error("sender {sender} is over its rate limit")]
    RateLimited {
        /// Who.
        sender: String,
        /// When to retry.
        retry_after: Duration,
    },
    /// The inbox is full of urgent messages.
    #[error("inbox full")]
    InboxFull,
    /// The inbox could not be written.
    #[error("inbox unavailable")]
    Unavailable,
    /// This agent has no id yet (not registered with a hub).
    #[error("not registered yet")]
    NotReady,
}

impl Refused {
    /// The event reason (stable words).
    fn reason(&self) -> String {
        self.to_string()
    }
}

/// A message taken (or already had).
pub(crate) enum Taken {
    /// New in the inbox.
    Stored,
    /// Had it already.
    Duplicate,
}

impl Messenger {
    /// Checks and stores one message that came `delivery`; a refusal is
    /// reported as an event.
    pub(crate) async fn receive(
        &self,
        signed: SignedEnvelope,
        delivery: Delivery,
    ) -> Result<Taken, Refused> {
        let res = self.check_and_store(&signed, delivery).await;
        match &res {
            Ok(Taken::Stored) => self.event(event_of(
                "message.delivered",
                Some(&signed.envelope),
                Some(delivery),
                None,
            )),
            Ok(Taken::Duplicate) => self.event(event_of(
                "message.refused",
                Some(&signed.envelope),
                Some(delivery),
                Some("duplicate id (already delivered)".into()),
            )),
            Err(e) => self.event(event_of(
                "message.refused",
                Some(&signed.envelope),
                Some(delivery),
                Some(e.reason()),
            )),
        }
        res
    }

    async fn check_and_store(
        &self,
        signed: &SignedEnvelope,
        delivery: Delivery,
    ) -> Result<Taken, Refused> {
        let env = &signed.envelope;
        let me = self.me().ok_or(Refused::NotReady)?;
        if env.to != me {
            return Err(Refused::WrongRecipient(me.to_string()));
        }
        let now = now_ms();
        if env.expires_ms() <= now {
            return Err(Refused::Expired);
        }
        // Relayed messages come from the hub over the session, any age; a
        // direct one must be fresh, so an old capture cannot be replayed
        // once its id is forgotten.
        if delivery == Delivery::Direct {
            let off = i128::from(now) - i128::from(env.sent_ms);
            if off.unsigned_abs() > self.limits.replay_window.as_millis() {
                return Err(Refused::Replay(off));
            }
        }
        env.check_body()
            .map_err(|e| Refused::Malformed(e.to_string()))?;
        let peer = self
            .peers
            .lookup(&self.hub, &env.from, false)
            .await
            .ok_or_else(|| Refused::UnknownSender(env.from.clone()))?;
        let key = peer
            .key
            .ok_or_else(|| Refused::UnknownSender(env.from.clone()))?;
        if signed.verify(&key).is_err() {
            // The key may have changed (an agent re-registered): ask once more.
            let fresh = self.peers.lookup(&self.hub, &env.from, true).await;
            let ok = fresh
                .and_then(|p| p.key)
                .is_some_and(|k| k != key && signed.verify(&k).is_ok());
            if !ok {
                return Err(Refused::BadSignature);
            }
        }
        if self.inbox.has_seen(env.id) {
            return Ok(Taken::Duplicate);
        }
        if delivery == Delivery::Direct {
            let limited = super::lock(&self.buckets).take(
                &env.from,
                self.limits.rate,
                self.limits.burst,
                Instant::now(),
            );
            if let Err(retry_after) = limited {
                return Err(Refused::RateLimited {
                    sender: env.from.clone(),
                    retry_after,
                });
            }
        }
        let stored = Stored {
            envelope: env.clone(),
            delivery,
            from_name: Some(peer.name),
        };
        match self.inbox.add(stored) {
            Ok(Added::Stored { dropped }) => {
                if let Some(d) = dropped {
                    self.bounce_dropped(d.envelope).await;
                }
                Ok(Taken::Stored)
            }
            Ok(Added::Duplicate) => Ok(Taken::Duplicate),
            Ok(Added::Full) => Err(Refused::InboxFull),
            Err(e) => {
                inbox_failed(&e);
                Err(Refused::Unavailable)
            }
        }
    }

    /// Sends a message pushed out of a full inbox back to its sender as a
    /// bounce (not for bounces or the hub's messages).
    async fn bounce_dropped(&self, dropped: Envelope) {
        self.event(event_of(
            "message.bounced",
            Some(&dropped),
            None,
            Some("inbox full: oldest message dropped".into()),
        ));
        if dropped.kind == KIND_BOUNCE || dropped.from == HUB_SENDER {
            return;
        }
        let Ok(to) = dropped.from.parse() else { return };
        let body = serde_json::json!({
            "reason": "inbox full: oldest message dropped",
            "id": dropped.id,
            "to": dropped.to,
            "kind": dropped.kind,
            "thread": dropped.thread,
            "sent_ms": dropped.sent_ms,
        });
        let bounce = Envelope {
            id: Uuid::now_v7(),
            from: dropped.to.to_string(),
            to,
            thread: dropped.thread.clone(),
            reply_to: Some(dropped.id),
            kind: KIND_BOUNCE.into(),
            body,
            sent_ms: now_ms(),
            ttl_ms: self.limits.default_ttl.as_millis() as u64,
        };
        if let Err(e) = self.deliver_one(bounce).await {
            tracing::debug!(error = %e, "could not bounce a dropped message");
        }
    }
}

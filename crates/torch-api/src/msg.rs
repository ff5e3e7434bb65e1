//! Direct agent-to-agent messages: the signed envelope, peer cards and the
//! bodies of the message routes (the hub's `/api/v1/peers`,
//! `/api/v1/messages`, and each agent's own endpoint).
//!
//! An envelope is signed by its sender's ed25519 key over the RFC 8785
//! canonical JSON (JCS) of every envelope field except `sig`, prefixed with
//! [`SIGN_DOMAIN`]. The recipient checks the signature against the sender's
//! key from the hub's registry. Hub-originated messages (bounces, operator
//! messages) come `from` [`HUB_SENDER`] and are signed with the hub's key.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use torch_core::{AgentId, Skill, TaskId};
use uuid::Uuid;

/// Largest `body` of a message: its JSON encoding, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Prefix of the bytes an envelope signature covers.
pub const SIGN_DOMAIN: &[u8] = b"torch-msg-v1\n";
/// Prefix of the bytes an agent signs to answer the hub's challenge.
pub const CHALLENGE_DOMAIN: &[u8] = b"torch-hello-v1\n";
/// `from` of messages the hub itself sends (bounces, operators' messages).
pub const HUB_SENDER: &str = "hub";
/// Kind of a message that could not be delivered, sent back to its sender.
pub const KIND_BOUNCE: &str = "bounce";
/// Kind delivered ahead of every other.
pub const KIND_URGENT: &str = "urgent";
/// Kind of a plain message when none is given.
pub const KIND_TEXT: &str = "text";
/// Environment variable holding the URL of the task's own agent runtime.
pub const ENV_AGENT_URL: &str = "TORCH_AGENT_URL";
/// Environment variable holding the path of a Unix socket the agent forwards
/// to its own endpoint: how a task whose network is `hub` (a namespace with
/// only loopback) reaches `TORCH_AGENT_URL`.
pub const ENV_AGENT_SOCKET: &str = "TORCH_AGENT_SOCKET";
/// Path, on an agent's endpoint, where peers POST envelopes.
pub const PEER_MESSAGES_PATH: &str = "/peer/v1/messages";
/// Path prefix, on an agent's endpoint, of the routes its own tasks call.
pub const LOCAL_PREFIX: &str = "/local/v1";

/// One message, as signed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Envelope {
    /// Unique id (UUIDv7); duplicates are dropped by it.
    #[schemars(with = "torch_core::schema::UuidString")]
    pub id: Uuid,
    /// The sending agent's id, or [`HUB_SENDER`].
    pub from: String,
    /// The recipient agent.
    pub to: AgentId,
    /// Conversation the message belongs to.
    #[serde(default)]
    pub thread: Option<String>,
    /// The message this one answers.
    #[serde(default)]
    #[schemars(with = "Option<torch_core::schema::UuidString>")]
    pub reply_to: Option<Uuid>,
    /// What it is (`text`, `urgent`, `bounce`, or anything the agents agree on).
    pub kind: String,
    /// Its content (JSON, at most [`MAX_BODY_BYTES`] encoded).
    pub body: serde_json::Value,
    /// When it was sent (unix ms, the sender's clock).
    pub sent_ms: u64,
    /// How long it may wait for delivery, from `sent_ms`.
    pub ttl_ms: u64,
}

impl Envelope {
    /// True for kind [`KIND_URGENT`].
    pub fn is_urgent(&self) -> bool {
        self.kind == KIND_URGENT
    }

    /// When it expires (unix ms).
    pub fn expires_ms(&self) -> u64 {
        self.sent_ms.saturating_add(self.ttl_ms)
    }

    /// The bytes the signature covers: [`SIGN_DOMAIN`] then the JCS of the
    /// envelope.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        let canon = serde_jcs::to_vec(self).map_err(|e| EnvelopeError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(SIGN_DOMAIN.len() + canon.len());
        out.extend_from_slice(SIGN_DOMAIN);
        out.extend_from_slice(&canon);
        Ok(out)
    }

    /// Checks the size of the body.
    pub fn check_body(&self) -> Result<(), EnvelopeError> {
        let n = serde_json::to_vec(&self.body)
            .map_err(|e| EnvelopeError::Encode(e.to_string()))?
            .len();
        if n > MAX_BODY_BYTES {
            return Err(EnvelopeError::BodyTooLarge(n));
        }
        Ok(())
    }

    /// Signs it with `key`.
    pub fn sign(self, key: &SigningKey) -> Result<SignedEnvelope, EnvelopeError> {
        self.check_body()?;
        let sig = key.sign(&self.signing_bytes()?);
        Ok(SignedEnvelope {
            envelope: self,
            sig: hex::encode(sig.to_bytes()),
        })
    }
}

/// An envelope with its signature: what travels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SignedEnvelope {
    /// The signed fields.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// Ed25519 signature, hex.
    pub sig: String,
}

impl SignedEnvelope {
    /// Checks the signature against `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), EnvelopeError> {
        let sig = parse_signature(&self.sig)?;
        key.verify(&self.envelope.signing_bytes()?, &sig)
            .map_err(|_| EnvelopeError::BadSignature)
    }
}

/// Why an envelope or key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The body is over [`MAX_BODY_BYTES`].
    #[error("message body is {0} bytes; the limit is {MAX_BODY_BYTES}")]
    BodyTooLarge(usize),
    /// The signature does not match the envelope and the sender's key.
    #[error("bad signature")]
    BadSignature,
    /// A key or signature is not well-formed hex of the right length.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The canonical encoding failed.
    #[error("cannot encode the envelope: {0}")]
    Encode(String),
}

/// A public key from its hex form.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, EnvelopeError> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(EnvelopeError::Malformed("public key"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| EnvelopeError::Malformed("public key"))
}

/// A signature from its hex form.
pub fn parse_signature(hex_sig: &str) -> Result<Signature, EnvelopeError> {
    let bytes: [u8; 64] = hex::decode(hex_sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(EnvelopeError::Malformed("signature"))?;
    Ok(Signature::from_bytes(&bytes))
}

/// The hex form of a public key.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.to_bytes())
}

/// The bytes an agent signs to prove it holds its key: [`CHALLENGE_DOMAIN`],
/// its id, a newline, the hub's challenge.
pub fn challenge_bytes(agent: AgentId, challenge: &str) -> Vec<u8> {
    let mut out = CHALLENGE_DOMAIN.to_vec();
    out.extend_from_slice(agent.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(challenge.as_bytes());
    out
}

/// Signs the hub's challenge (hex signature).
pub fn sign_challenge(key: &SigningKey, agent: AgentId, challenge: &str) -> String {
    hex::encode(key.sign(&challenge_bytes(agent, challenge)).to_bytes())
}

/// Checks an answer to the hub's challenge.
pub fn verify_challenge(
    key: &VerifyingKey,
    agent: AgentId,
    challenge: &str,
    signature: &str,
) -> Result<(), EnvelopeError> {
    let sig = parse_signature(signature)?;
    key.verify(&challenge_bytes(agent, challenge), &sig)
        .map_err(|_| EnvelopeError::BadSignature)
}

/// A peer as the hub's registry shows it (`GET /api/v1/peers`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeerCard {
    /// Its id.
    pub agent_id: AgentId,
    /// Its name.
    pub name: String,
    /// Advertised skills.
    pub skills: Vec<Skill>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `idle`, `busy`, `silent` or `disconnected`.
    pub state: String,
    /// Its team: the label `team`, when set.
    #[serde(default)]
    pub team: Option<String>,
    /// Where it takes direct messages (`http://HOST:PORT`), when it listens.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Its ed25519 public key (hex), when registered.
    #[serde(default)]
    pub public_key: Option<String>,
    /// The tasks it runs now.
    #[serde(default)]
    pub task_ids: Vec<TaskId>,
}

/// `GET /api/v1/peers`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeerList {
    /// The peers that match, connected ones first.
    pub peers: Vec<PeerCard>,
    /// The hub's public key (hex): it signs bounces and operators' messages.
    #[serde(default)]
    pub hub_key: Option<String>,
}

/// Whom a message goes to: exactly one of the three.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Recipient {
    /// An agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<AgentId>,
    /// The agent running this task now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// Every agent of this team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// `POST /api/v1/messages` (operators) and `POST /local/v1/msg/send` (a task
/// through its agent runtime).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SendRequest {
    /// Whom to.
    #[serde(flatten)]
    pub recipient: Recipient,
    /// Conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// The message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<torch_core::schema::UuidString>")]
    pub reply_to: Option<Uuid>,
    /// Kind; `text` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Content.
    pub body: serde_json::Value,
    /// Time to live in ms; the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// How a message got to its recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Straight to the recipient agent's endpoint.
    Direct,
    /// Kept by the hub and delivered when the recipient is back.
    Relayed,
    /// Anything newer than this build understands.
    #[serde(other)]
    Unknown,
}

impl Delivery {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Direct => "direct",
            Delivery::Relayed => "relayed",
            Delivery::Unknown => "unknown",
        }
    }
}

/// Answer to a send: one message. With a team recipient, `sent` lists one
/// per member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SendResult {
    /// The message's id.
    #[schemars(with = "torch_core::schema::UuidString")]
    pub id: Uuid,
    /// How it went.
    pub delivery: Delivery,
    /// Every message sent, when there were several (a team).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<SentOne>,
}

/// One message of a send to several agents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SentOne {
    /// Its id.
    #[schemars(with = "torch_core::schema::UuidString")]
    pub id: Uuid,
    /// The recipient.
    pub to: AgentId,
    /// How it went.
    pub delivery: Delivery,
}

/// An agent's answer to a peer's POST of an envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeerAck {
    /// The envelope's id.
    #[schemars(with = "torch_core::schema::UuidString")]
    pub id: Uuid,
    /// `stored`, or `duplicate` (already had it).
    pub status: String,
}

/// One message in an inbox (`GET /local/v1/msg/inbox`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InboxMessage {
    /// Its id.
    #[schemars(with = "torch_core::schema::UuidString")]
    pub id: Uuid,
    /// Sender agent id, or `hub`.
    pub from: String,
    /// Sender's name, when known.
    #[serde(default)]
    pub from_name: Option<String>,
    /// The recipient (this agent).
    pub to: AgentId,
    /// Conversation.
    #[serde(default)]
    pub thread: Option<String>,
    /// The message it answers.
    #[serde(default)]
    #[schemars(with = "Option<torch_core::schema::UuidString>")]
    pub reply_to: Option<Uuid>,
    /// Kind.
    pub kind: String,
    /// Content.
    pub body: serde_json::Value,
    /// When it was sent (unix ms).
    pub sent_ms: u64,
    /// How it came.
    pub delivery: Delivery,
    /// The signature was checked against the sender's registered key.
    pub verified: bool,
}

/// `GET /local/v1/msg/inbox`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Inbox {
    /// Urgent first, then in arrival order.
    pub messages: Vec<InboxMessage>,
}

/// `POST /local/v1/msg/ack`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AckRequest {
    /// Messages read: they leave the inbox.
    #[schemars(with = "Vec<torch_core::schema::UuidString>")]
    pub ids: Vec<Uuid>,
}

/// Answer to an ack.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AckResult {
    /// How many were in the inbox and left it.
    pub acked: usize,
}

/// A message the hub keeps for an agent, without its body
/// (`GET /api/v1/messages?agent=A`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageMeta {
    /// Its id.
    #[schemars(with = "torch_core::schema::UuidString")]
    pub id: Uuid,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: AgentId,
    /// Kind.
    pub kind: String,
    /// Conversation.
    #[serde(default)]
    pub thread: Option<String>,
    /// When it was sent (unix ms).
    pub sent_ms: u64,
    /// When the hub drops it with a bounce (unix ms).
    pub expires_ms: u64,
    /// Encoded size of the envelope, in bytes.
    pub bytes: usize,
}

/// `GET /api/v1/messages?agent=A`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageList {
    /// Messages the hub keeps for the agent, urgent first.
    pub messages: Vec<MessageMeta>,
}

/// `POST /api/v1/messages/relay` (an agent runtime): envelopes its
/// recipients could not take directly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RelayRequest {
    /// Signed by the calling agent.
    pub messages: Vec<SignedEnvelope>,
}

/// Answer to a relay, one per envelope in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RelayResult {
    /// `relayed`, `duplicate`, or `bounced: REASON`.
    pub results: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            id: Uuid::from_u128(7),
            from: AgentId::from_uuid(Uuid::from_u128(1)).to_string(),
            to: AgentId::from_uuid(Uuid::from_u128(2)),
            thread: Some("t".into()),
            reply_to: None,
            kind: KIND_TEXT.into(),
            body: serde_json::json!({"z": 1.5, "a": [1, "x"], "text": "héllo"}),
            sent_ms: 1_700_000_000_000,
            ttl_ms: 60_000,
        }
    }

    #[test]
    fn signatures_cover_every_field_and_survive_the_wire() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let signed = envelope().sign(&key).unwrap();
        let wire = serde_json::to_string(&signed).unwrap();
        let back: SignedEnvelope = serde_json::from_str(&wire).unwrap();
        back.verify(&key.verifying_key()).unwrap();
        assert_eq!(
            back.verify(&other.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
        let mut changed = back.clone();
        changed.envelope.body["z"] = serde_json::json!(1.25);
        assert_eq!(
            changed.verify(&key.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
        let mut changed = back.clone();
        changed.envelope.ttl_ms += 1;
        assert!(changed.verify(&key.verifying_key()).is_err());
        // Key order on the wire does not matter: the canonical form is signed.
        let mut v: serde_json::Value = serde_json::from_str(&wire).unwrap();
        let body = v["body"].take();
        v["body"] = body;
        let again: SignedEnvelope = serde_json::from_value(v).unwrap();
        again.verify(&key.verifying_key()).unwrap();

        let pk = public_key_hex(&key.verifying_key());
        assert_eq!(parse_public_key(&pk).unwrap(), key.verifying_key());
        assert!(parse_public_key("abcd").is_err());
        let agent = AgentId::from_uuid(Uuid::from_u128(3));
        let s = sign_challenge(&key, agent, "c1");
        verify_challenge(&key.verifying_key(), agent, "c1", &s).unwrap();
        assert!(verify_challenge(&key.verifying_key(), agent, "c2", &s).is_err());
        assert!(verify_challenge(&other.verifying_key(), agent, "c1", &s).is_err());

        let mut big = envelope();
        big.body = serde_json::json!("x".repeat(MAX_BODY_BYTES));
        assert!(matches!(
            big.sign(&key),
            Err(EnvelopeError::BodyTooLarge(_))
        ));
    }
}

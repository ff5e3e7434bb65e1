//! The canonical encoding and hashes of the audit chain.
//!
//! An entry's hash is the lowercase hex SHA-256 of:
//!
//! ```text
//! torch.audit.v1\n
//! then, for each of seq, at_ms, actor, role, tenant, action, target,
//! outcome, reason, detail, prev:  <byte length>:<bytes>\n
//! ```
//!
//! with numbers in decimal. The length prefixes make the encoding
//! unambiguous whatever the fields hold. The Redis store computes the same
//! bytes and hash in Lua (`scripts/audit.lua`); the conformance suite checks
//! that both agree with this function.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::{AuditCheckpoint, AuditEntry, NewAudit};

fn field(buf: &mut Vec<u8>, value: &str) {
    buf.extend_from_slice(value.len().to_string().as_bytes());
    buf.push(b':');
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'\n');
}

/// The bytes an entry's hash covers (see the module docs).
pub fn canonical(seq: u64, e: &NewAudit, prev: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(
        64 + e.actor.len() + e.action.len() + e.target.len() + e.detail.len() + prev.len(),
    );
    buf.extend_from_slice(b"torch.audit.v1\n");
    field(&mut buf, &seq.to_string());
    field(&mut buf, &e.at_ms.to_string());
    for f in [
        &e.actor, &e.role, &e.tenant, &e.action, &e.target, &e.outcome, &e.reason, &e.detail,
    ] {
        field(&mut buf, f);
    }
    field(&mut buf, prev);
    buf
}

/// The hash of entry `seq` holding `e` after `prev` (hex).
pub fn entry_hash(seq: u64, e: &NewAudit, prev: &str) -> String {
    hex::encode(Sha256::digest(canonical(seq, e, prev)))
}

/// Whether a stored entry's hash matches its contents.
pub fn hash_matches(e: &AuditEntry) -> bool {
    entry_hash(e.seq, &e.entry, &e.prev) == e.hash
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_message(size: u64, head: &str, at_ms: u64) -> Vec<u8> {
    format!("torch.audit.checkpoint.v1\n{size}\n{head}\n{at_ms}\n").into_bytes()
}

/// A checkpoint of (`size`, `head`) at `at_ms`, signed with `key`.
pub fn sign_checkpoint(key: &SigningKey, size: u64, head: &str, at_ms: u64) -> AuditCheckpoint {
    let sig = key.sign(&checkpoint_message(size, head, at_ms));
    AuditCheckpoint {
        size,
        head: head.to_owned(),
        at_ms,
        key: hex::encode(key.verifying_key().to_bytes()),
        sig: hex::encode(sig.to_bytes()),
    }
}

/// Why a checkpoint's signature does not hold.
pub fn checkpoint_signature_error(cp: &AuditCheckpoint) -> Option<String> {
    let key: [u8; 32] = match hex::decode(&cp.key).ok().and_then(|b| b.try_into().ok()) {
        Some(k) => k,
        None => return Some("its key is not a hex ed25519 public key".into()),
    };
    let key = match VerifyingKey::from_bytes(&key) {
        Ok(k) => k,
        Err(e) => return Some(format!("its key is not valid: {e}")),
    };
    let sig: [u8; 64] = match hex::decode(&cp.sig).ok().and_then(|b| b.try_into().ok()) {
        Some(s) => s,
        None => return Some("its signature is not 64 hex bytes".into()),
    };
    let sig = Signature::from_bytes(&sig);
    match key.verify(&checkpoint_message(cp.size, &cp.head, cp.at_ms), &sig) {
        Ok(()) => None,
        Err(_) => Some("its signature does not match its contents and key".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_length_prefixed_and_hash_is_sha256() {
        let e = NewAudit {
            at_ms: 5,
            actor: "token:ab".into(),
            action: "x".into(),
            outcome: "allowed".into(),
            ..NewAudit::default()
        };
        let bytes = canonical(1, &e, "p");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "torch.audit.v1\n1:1\n1:5\n8:token:ab\n0:\n0:\n1:x\n0:\n7:allowed\n0:\n0:\n1:p\n"
        );
        assert_eq!(entry_hash(1, &e, "p").len(), 64);
        assert_ne!(entry_hash(1, &e, "p"), entry_hash(2, &e, "p"));
    }

    #[test]
    fn checkpoints_verify_only_unchanged() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let cp = sign_checkpoint(&key, 3, "abc", 9);
        assert_eq!(checkpoint_signature_error(&cp), None);
        let mut bad = cp.clone();
        bad.size = 4;
        assert!(checkpoint_signature_error(&bad).is_some());
    }
}

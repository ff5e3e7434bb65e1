//! The audit log: one hash chain whoever appends, hashes every backend
//! computes the same way, signed checkpoints, and the retention cut.

use ed25519_dalek::SigningKey;

use super::{Harness, NOW};
use crate::audit::chain::{entry_hash, sign_checkpoint};
use crate::audit::{GENESIS, verify_store};
use crate::{AuditStore, NewAudit};

/// An entry with characters that need care in every encoding.
pub fn entry(n: u64, actor: &str) -> NewAudit {
    NewAudit {
        at_ms: NOW + n,
        actor: actor.into(),
        role: "admin".into(),
        tenant: if n.is_multiple_of(2) {
            "acme".into()
        } else {
            String::new()
        },
        action: "api.post /api/v1/tasks".into(),
        target: format!("/api/v1/tasks/{n}"),
        outcome: if n.is_multiple_of(3) {
            "refused"
        } else {
            "allowed"
        }
        .into(),
        reason: if n.is_multiple_of(3) {
            "a submitter token cannot do this; it needs admin — \"quoted\"\n".into()
        } else {
            String::new()
        },
        detail: format!("{{\"status\":200,\"n\":{n},\"ü\":\"/\\\\\"}}"),
    }
}

/// Appends in batches chain on each other; every stored hash is the one
/// [`entry_hash`] computes; checkpoints round-trip; the retention cut keeps
/// the chain verifiable and refuses to cut the head.
pub async fn audit_chain_and_checkpoints<H: Harness>(h: &H) {
    let s = h.open();
    let empty = s.audit_head().await.expect("head");
    assert_eq!((empty.size, empty.hash.as_str()), (0, GENESIS));
    let head = s
        .audit_append((1..=3).map(|n| entry(n, "token:aaaa")).collect())
        .await
        .expect("append");
    assert_eq!(head.size, 3);
    let head = s
        .audit_append(vec![entry(4, "task:t1"), entry(5, "hub:h")])
        .await
        .expect("append");
    assert_eq!(head.size, 5);
    assert_eq!(s.audit_head().await.expect("head"), head);
    let all = s.audit_range(0, 100).await.expect("range");
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let mut prev = GENESIS.to_owned();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.entry, entry(i as u64 + 1, &e.entry.actor));
        assert_eq!(e.prev, prev, "entry {} chains on the one before", e.seq);
        assert_eq!(
            e.hash,
            entry_hash(e.seq, &e.entry, &e.prev),
            "entry {}",
            e.seq
        );
        prev.clone_from(&e.hash);
    }
    assert_eq!(head.hash, prev);
    assert_eq!(s.audit_range(3, 1).await.expect("range")[0].seq, 4);

    let key = SigningKey::from_bytes(&[9u8; 32]);
    let cp = sign_checkpoint(&key, 3, &all[2].hash, NOW + 10);
    s.audit_put_checkpoint(cp.clone())
        .await
        .expect("checkpoint");
    assert_eq!(s.audit_checkpoints().await.expect("cps"), vec![cp.clone()]);
    let report = verify_store(&s, None).await.expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.entries, report.head.size), (5, 5));

    // The head always stays; a cut must name a stored entry and hash.
    let at_head = sign_checkpoint(&key, 5, &head.hash, NOW + 11);
    assert!(s.audit_cut(at_head).await.is_err());
    let wrong = sign_checkpoint(&key, 2, &all[0].hash, NOW + 11);
    assert!(s.audit_cut(wrong).await.is_err());
    let at_two = sign_checkpoint(&key, 2, &all[1].hash, NOW + 12);
    assert_eq!(s.audit_cut(at_two.clone()).await.expect("cut"), 2);
    let left = s.audit_range(0, 100).await.expect("range");
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(s.audit_checkpoints().await.expect("cps").contains(&at_two));
    let report = verify_store(&s, None).await.expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.first_seq, report.entries), (3, 3));
    drop(s);

    // Reopened, appends chain on.
    let s = h.open();
    let head = s.audit_append(vec![entry(6, "a")]).await.expect("append");
    assert_eq!(head.size, 6);
    let report = verify_store(&s, Some(&sign_checkpoint(&key, 6, &head.hash, NOW)))
        .await
        .expect("verify");
    assert!(report.ok, "{report:?}");
}

/// Two stores on the same data (two hubs) appending at once keep one chain
/// without gaps.
pub async fn audit_concurrent_appends<H: Harness>(h: &H) {
    let (a, b) = (std::sync::Arc::new(h.open()), std::sync::Arc::new(h.open()));
    let mut jobs = Vec::new();
    for (i, s) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        jobs.push(tokio::spawn(async move {
            for round in 0..25u64 {
                let batch = (0..4)
                    .map(|k| entry(round * 4 + k, &format!("hub:{i}")))
                    .collect();
                s.audit_append(batch).await.expect("append");
            }
        }));
    }
    for j in jobs {
        j.await.expect("appender");
    }
    let report = verify_store(&*a, None).await.expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries, 400);
    assert_eq!(b.audit_head().await.expect("head").size, 400);
}

//! Relayed messages: kept once per id, bounded per recipient, handed out
//! urgent first then in order, removed when taken, expired soonest first,
//! and kept across a reopen.

use crate::{RelayPut, RelayStore, RelayedMessage};

use super::*;

fn msg(n: u64, to: u64, urgent: bool, expires_ms: u64) -> RelayedMessage {
    RelayedMessage {
        id: format!("m{n}"),
        to: aid(to),
        from: aid(9).to_string(),
        urgent,
        expires_ms,
        envelope: format!("{{\"n\":{n}}}"),
    }
}

fn ids(v: &[RelayedMessage]) -> Vec<&str> {
    v.iter().map(|m| m.id.as_str()).collect()
}

/// Put, duplicate, cap, order, remove, expiry and durability.
pub async fn relay_keeps_orders_and_expires(h: &impl Harness) {
    {
        let s = h.open();
        assert_eq!(
            s.relay_put(msg(1, 1, false, NOW + 50), 3)
                .await
                .expect("put"),
            RelayPut::Stored
        );
        assert_eq!(
            s.relay_put(msg(1, 1, false, NOW + 50), 3)
                .await
                .expect("put"),
            RelayPut::Duplicate
        );
        assert_eq!(
            s.relay_put(msg(2, 1, true, NOW + 10), 3)
                .await
                .expect("put"),
            RelayPut::Stored
        );
        assert_eq!(
            s.relay_put(msg(3, 1, false, NOW + 20), 3)
                .await
                .expect("put"),
            RelayPut::Stored
        );
        assert_eq!(
            s.relay_put(msg(4, 1, false, NOW + 20), 3)
                .await
                .expect("put"),
            RelayPut::Full
        );
        assert_eq!(
            s.relay_put(msg(4, 2, false, NOW + 30), 3)
                .await
                .expect("put"),
            RelayPut::Stored
        );
        let got = s.relay_pending(aid(1), 10).await.expect("pending");
        assert_eq!(ids(&got), ["m2", "m1", "m3"], "urgent first, then in order");
        assert_eq!(got[1], msg(1, 1, false, NOW + 50), "kept as given");
        assert_eq!(
            ids(&s.relay_pending(aid(1), 1).await.expect("pending")),
            ["m2"]
        );
        assert_eq!(
            s.relay_remove(aid(1), vec!["m2".into(), "m4".into(), "nope".into()])
                .await
                .expect("remove"),
            1,
            "only the recipient's own messages are removed"
        );
    }
    let s = h.open();
    assert_eq!(
        ids(&s.relay_pending(aid(1), 10).await.expect("pending")),
        ["m1", "m3"]
    );
    let expired = s.relay_take_expired(NOW + 30, 10).await.expect("expire");
    assert_eq!(ids(&expired), ["m3", "m4"], "soonest first");
    assert!(
        s.relay_take_expired(NOW + 30, 10)
            .await
            .expect("expire")
            .is_empty()
    );
    assert_eq!(
        ids(&s.relay_pending(aid(1), 10).await.expect("pending")),
        ["m1"]
    );
    assert!(
        s.relay_pending(aid(2), 10)
            .await
            .expect("pending")
            .is_empty()
    );
    assert_eq!(
        s.relay_put(msg(2, 1, false, NOW + 50), 3)
            .await
            .expect("put"),
        RelayPut::Stored,
        "a removed id may be kept again (the recipient dedupes)"
    );
}

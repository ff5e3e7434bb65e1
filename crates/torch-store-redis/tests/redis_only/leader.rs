//! The leader lease: one holder at a time, renewals only by the holder,
//! expiry, and a higher fence on every takeover.

use std::time::Duration;

use crate::Redis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_lease_expires_and_fences_increase() {
    let Some(h) = Redis::start(&[]) else { return };
    let (s1, s2) = (h.store().await, h.store().await);
    assert_eq!(s1.leader_current().await.expect("current"), None);

    let f1 = s1
        .leader_acquire("hub-1", 10_000)
        .await
        .expect("acquire")
        .expect("free lease taken");
    assert_eq!(
        s2.leader_acquire("hub-2", 10_000).await.expect("acquire"),
        None
    );
    assert_eq!(
        s1.leader_acquire("hub-1", 10_000).await.expect("acquire"),
        Some(f1),
        "the holder keeps its fence"
    );
    assert_eq!(
        s2.leader_current().await.expect("current"),
        Some(("hub-1".to_string(), f1))
    );
    assert!(
        !s2.leader_renew("hub-2", f1, 10_000).await.expect("renew"),
        "not the holder"
    );
    assert!(
        !s1.leader_renew("hub-1", f1 + 1, 10_000)
            .await
            .expect("renew"),
        "wrong fence"
    );
    assert!(s1.leader_renew("hub-1", f1, 300).await.expect("renew"));

    // Not renewed: it expires and another hub takes over with a higher fence.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(s1.leader_current().await.expect("current"), None);
    let f2 = s2
        .leader_acquire("hub-2", 10_000)
        .await
        .expect("acquire")
        .expect("expired lease taken");
    assert!(f2 > f1, "fence {f2} after {f1}");
    assert!(
        !s1.leader_renew("hub-1", f1, 10_000).await.expect("renew"),
        "the old leader is out"
    );
    assert!(!s1.leader_release("hub-1", f1).await.expect("release"));
    assert!(s2.leader_release("hub-2", f2).await.expect("release"));
    assert_eq!(s1.leader_current().await.expect("current"), None);
    let f3 = s1
        .leader_acquire("hub-1", 10_000)
        .await
        .expect("acquire")
        .expect("released lease taken");
    assert!(f3 > f2);
}

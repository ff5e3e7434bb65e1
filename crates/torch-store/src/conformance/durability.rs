//! What survives closing and reopening the store.

use std::collections::BTreeSet;

use crate::{EventLog, FinishResult, MetaStore, TaskStore};
use torch_core::{OutcomeKind, TaskState};

use super::*;

/// Reopening the store keeps tasks, leases, dependencies, events and metadata.
pub async fn reopen_keeps_everything(h: &impl Harness) {
    let (l2, l3, last_event) = {
        let s = h.open();
        let batch = vec![
            task(1, &[]),
            task(2, &[]),
            task(3, &[]),
            task(4, &[1]),
            task(5, &[]),
        ];
        s.submit(batch, NOW).await.expect("submit");
        let l2 = lease(&s, 2, 1, NOW).await;
        let l3 = lease(&s, 3, 2, NOW).await;
        s.start(vec![(tid(3), l3.fence)], NOW).await.expect("start");
        let l5 = lease(&s, 5, 1, NOW).await;
        s.finish(vec![report(&l5, OutcomeKind::Succeeded)], NOW)
            .await
            .expect("finish");
        s.init_meta("k".into(), "v".into()).await.expect("meta");
        (l2, l3, s.last_event_id().await.expect("last"))
    };
    let s = h.open();
    assert_eq!(state(&s, 1).await, TaskState::Queued);
    assert_eq!(state(&s, 3).await, TaskState::Running);
    assert_eq!(state(&s, 4).await, TaskState::Blocked);
    assert_eq!(state(&s, 5).await, TaskState::Succeeded);
    assert_eq!(s.last_event_id().await.expect("last"), last_event);
    assert_eq!(
        s.get_meta("k".into()).await.expect("meta").as_deref(),
        Some("v")
    );

    let snap = s.load().await.expect("load");
    let queued: Vec<_> = snap.queued.iter().map(|q| (q.id, q.not_before)).collect();
    assert_eq!(queued, [(tid(1), 0)]);
    let leased: BTreeSet<_> = snap
        .leased
        .iter()
        .map(|l| (l.task, l.agent, l.fence, l.attempt))
        .collect();
    let want = |l: &Leased| (l.task, l.agent, l.fence, 1);
    assert_eq!(leased, BTreeSet::from([want(&l2), want(&l3)]));
    assert_eq!(snap.backlog, 4, "blocked + queued + two leased");

    // The leases are still honoured after the restart.
    let out = s
        .finish(vec![report(&l2, OutcomeKind::Succeeded)], NOW)
        .await
        .expect("finish");
    assert!(matches!(out[0], FinishResult::Recorded(_)));
    let new = s.events(last_event, vec![], 0).await.expect("events");
    assert_eq!(new.len(), 1);
    assert!(new[0].id > last_event, "event ids continue");
}

/// Fences keep increasing across reopening the store.
pub async fn fences_increase_across_reopen(h: &impl Harness) {
    let mut highest = 0;
    for round in 0..3u64 {
        let s = h.open();
        let base = round * 10 + 1;
        let batch = (base..base + 3).map(|n| task(n, &[])).collect();
        s.submit(batch, NOW).await.expect("submit");
        let mut first = None;
        for n in base..base + 3 {
            let l = lease(&s, n, 1, NOW).await;
            assert!(l.fence > highest, "fence {} after {highest}", l.fence);
            highest = l.fence;
            first.get_or_insert(l.fence);
        }
        let first = first.expect("three leases");
        // A lease given up and granted again gets a fresh, higher fence.
        let out = s
            .expire(tid(base), first, "lost".into(), NOW)
            .await
            .expect("expire");
        assert!(matches!(out, FinishResult::Recorded(_)), "{out:?}");
        let again = lease(&s, base, 2, NOW + 60_000).await;
        assert!(
            again.fence > highest,
            "fence {} after {highest}",
            again.fence
        );
        highest = again.fence;
    }
}

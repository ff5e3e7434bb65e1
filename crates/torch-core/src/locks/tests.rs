use super::*;
use crate::waits::WaitGraph;

fn op(n: &str) -> Node {
    Node::Operator(n.into())
}

fn waiter(id: u64, node: &Node, mode: LockMode, priority: i32, since: u64) -> Waiter {
    Waiter {
        id,
        node: node.clone(),
        mode,
        priority,
        since_ms: since,
        ttl_ms: 1_000,
    }
}

fn granted(a: Acquire) -> Holder {
    match a {
        Acquire::Granted(g) => g.holder,
        Acquire::Blocked(e) => panic!("blocked by {e:?}"),
    }
}

#[test]
fn exclusive_and_shared_with_fences_and_errors() {
    let mut t = LockTable::new(10);
    let (a, b, c) = (op("a"), op("b"), op("c"));
    let k = LockKey::named("db");
    let ha = granted(t.try_acquire(&k, &a, LockMode::Shared, 1_000, 0).unwrap());
    assert_eq!(ha.fence, 11);
    let hb = granted(t.try_acquire(&k, &b, LockMode::Shared, 1_000, 0).unwrap());
    assert_eq!(hb.fence, 12);
    // Exclusive waits on both shared holders.
    let Acquire::Blocked(edges) = t
        .try_acquire(&k, &c, LockMode::Exclusive, 1_000, 0)
        .unwrap()
    else {
        panic!("granted")
    };
    let to: Vec<&Node> = edges.iter().map(|e| &e.to).collect();
    assert_eq!(to, vec![&a, &b]);
    assert!(matches!(
        t.try_acquire(&k, &a, LockMode::Shared, 1_000, 0),
        Err(LockError::AlreadyHeld { fence: 11, .. })
    ));
    assert!(
        t.enqueue(&k, waiter(1, &c, LockMode::Exclusive, 0, 5), 5)
            .is_empty()
    );
    // A later shared request queues behind the exclusive waiter.
    let Acquire::Blocked(edges) = t
        .try_acquire(&k, &op("d"), LockMode::Shared, 1_000, 6)
        .unwrap()
    else {
        panic!("granted")
    };
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].to, c);
    // Stale fence, not held, not yours: errors, never silent success.
    assert!(matches!(
        t.release("db", 99, None, 7),
        Err(LockError::StaleFence { fence: 99, .. })
    ));
    assert!(matches!(
        t.release("nope", 11, None, 7),
        Err(LockError::NotHeld { .. })
    ));
    assert!(matches!(
        t.release("db", 11, Some(&b), 7),
        Err(LockError::NotYours { .. })
    ));
    let (_, _, grants) = t.release("db", 11, Some(&a), 7).unwrap();
    assert!(grants.is_empty());
    assert!(matches!(
        t.release("db", 11, None, 7),
        Err(LockError::StaleFence { .. })
    ));
    let (_, _, grants) = t.release("db", 12, None, 8).unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].waiter, Some(1));
    assert_eq!(grants[0].holder.fence, 13);
    assert_eq!(grants[0].holder.expires_ms, 1_008);
    // Renew moves the expiry; expiry releases.
    let (_, h) = t.renew("db", 13, Some(&c), 5_000, 10).unwrap();
    assert_eq!(h.expires_ms, 5_010);
    assert_eq!(t.next_expiry(), Some(5_010));
    let (gone, _) = t.expire(5_010);
    assert_eq!(gone.len(), 1);
    assert!(matches!(
        t.renew("db", 13, None, 1, 5_011),
        Err(LockError::NotHeld { .. })
    ));
    assert!(t.views().is_empty());
}

#[test]
fn shared_waiters_are_batched_in_order_with_priority_breaking_ties() {
    let mut t = LockTable::new(0);
    let k = LockKey::named("l");
    let x = op("x");
    let hx = granted(
        t.try_acquire(&k, &x, LockMode::Exclusive, 1_000, 0)
            .unwrap(),
    );
    // Same millisecond: priority 5 goes before priority 1.
    t.enqueue(&k, waiter(1, &op("s1"), LockMode::Shared, 1, 10), 10);
    t.enqueue(&k, waiter(2, &op("s2"), LockMode::Shared, 5, 10), 10);
    t.enqueue(&k, waiter(3, &op("e"), LockMode::Exclusive, 9, 11), 11);
    t.enqueue(&k, waiter(4, &op("s3"), LockMode::Shared, 0, 12), 12);
    let order: Vec<u64> = t.waiters().map(|(_, w)| w.id).collect();
    assert_eq!(order, vec![2, 1, 3, 4]);
    let (_, _, grants) = t.release("l", hx.fence, None, 20).unwrap();
    let ids: Vec<Option<u64>> = grants.iter().map(|g| g.waiter).collect();
    assert_eq!(
        ids,
        vec![Some(2), Some(1)],
        "both shared, not the exclusive nor the later shared"
    );
    let f2 = grants[0].holder.fence;
    let f1 = grants[1].holder.fence;
    t.release("l", f2, None, 21).unwrap();
    let (_, _, grants) = t.release("l", f1, None, 22).unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].waiter, Some(3));
    // A cancelled head lets the next through.
    let (_, _, grants) = t.release("l", grants[0].holder.fence, None, 23).unwrap();
    assert_eq!(grants[0].waiter, Some(4));
    assert_eq!(t.cancel_wait(4, 24), (false, vec![]));
}

#[test]
fn path_reservations_conflict_by_overlap_with_others_only() {
    let mut t = LockTable::new(0);
    let (a, b) = (op("a"), op("b"));
    let api = LockKey::path("src/api/**");
    granted(
        t.try_acquire(&api, &a, LockMode::Exclusive, 1_000, 0)
            .unwrap(),
    );
    // The same party may reserve an overlapping glob; another may not.
    granted(
        t.try_acquire(
            &LockKey::path("src/api/v1/*.rs"),
            &a,
            LockMode::Exclusive,
            1_000,
            0,
        )
        .unwrap(),
    );
    let Acquire::Blocked(edges) = t
        .try_acquire(
            &LockKey::path("src/**/mod.rs"),
            &b,
            LockMode::Exclusive,
            1_000,
            0,
        )
        .unwrap()
    else {
        panic!("granted")
    };
    // One edge per overlapping reservation of a's.
    assert_eq!(edges.len(), 2, "{edges:?}");
    assert!(edges.iter().all(|e| e.to == a));
    granted(
        t.try_acquire(
            &LockKey::path("src/db/**"),
            &b,
            LockMode::Exclusive,
            1_000,
            0,
        )
        .unwrap(),
    );
    // A named lock of the same text is another thing.
    granted(
        t.try_acquire(
            &LockKey::named("src/api/**"),
            &b,
            LockMode::Exclusive,
            1_000,
            0,
        )
        .unwrap(),
    );
    // When a's reservations go, b's queued one is granted.
    let mod_rs = LockKey::path("src/**/mod.rs");
    t.enqueue(&mod_rs, waiter(7, &b, LockMode::Exclusive, 0, 1), 1);
    let (released, grants) = t.release_where(2, |_, h| h.node == a);
    assert_eq!(released.len(), 2);
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].waiter, Some(7));
}

#[test]
fn a_lock_cycle_shows_in_the_wait_graph() {
    let mut t = LockTable::new(0);
    let n: Vec<Node> = (0..3).map(|i| op(&format!("p{i}"))).collect();
    let keys: Vec<LockKey> = (0..3).map(|i| LockKey::named(format!("l{i}"))).collect();
    for i in 0..3 {
        granted(
            t.try_acquire(&keys[i], &n[i], LockMode::Exclusive, 1_000, 0)
                .unwrap(),
        );
    }
    for i in 0..2 {
        let Acquire::Blocked(edges) = t
            .try_acquire(&keys[i + 1], &n[i], LockMode::Exclusive, 1_000, 0)
            .unwrap()
        else {
            panic!("granted")
        };
        let g = WaitGraph::of(t.wait_edges());
        assert!(g.would_close(&edges).is_none());
        t.enqueue(
            &keys[i + 1],
            waiter(i as u64, &n[i], LockMode::Exclusive, 0, 0),
            0,
        );
    }
    let Acquire::Blocked(edges) = t
        .try_acquire(&keys[0], &n[2], LockMode::Exclusive, 1_000, 0)
        .unwrap()
    else {
        panic!("granted")
    };
    let cycle = WaitGraph::of(t.wait_edges()).would_close(&edges).unwrap();
    assert_eq!(cycle.len(), 3);
    assert_eq!(cycle[0].from, n[2]);
}

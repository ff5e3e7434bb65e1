//! Property tests of the lease table over random event sequences.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use super::*;

const TASKS: u128 = 6;
const AGENTS: u128 = 3;

fn task(n: u8) -> TaskId {
    TaskId::from_uuid(uuid::Uuid::from_u128(1 + u128::from(n) % TASKS))
}
fn agent(n: u8) -> AgentId {
    AgentId::from_uuid(uuid::Uuid::from_u128(100 + u128::from(n) % AGENTS))
}

#[derive(Clone, Debug)]
enum Op {
    Register(u8, u32),
    Unregister(u8),
    Grant(u8, u8),
    Confirm(u8),
    Refuse(u8),
    /// Heartbeat from an agent; `stale` uses a fence the lease does not have.
    Renew(u8, u8, bool),
    Activity(u8),
    End(u8, u8, bool),
    Recorded(u8, u8, bool),
    RecordFailed(u8),
    Cancel(u8),
    Tick(u64),
    Expired(u8),
    ExpiryFailed(u8),
    Adopt(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0u8..8;
    prop_oneof![
        1 => (n.clone(), 0u32..4).prop_map(|(a, c)| Op::Register(a, c)),
        1 => n.clone().prop_map(Op::Unregister),
        5 => (n.clone(), n.clone()).prop_map(|(t, a)| Op::Grant(t, a)),
        4 => n.clone().prop_map(Op::Confirm),
        1 => n.clone().prop_map(Op::Refuse),
        3 => (n.clone(), n.clone(), any::<bool>()).prop_map(|(a, t, s)| Op::Renew(a, t, s)),
        1 => n.clone().prop_map(Op::Activity),
        4 => (n.clone(), n.clone(), any::<bool>()).prop_map(|(a, t, s)| Op::End(a, t, s)),
        3 => (n.clone(), n.clone(), any::<bool>()).prop_map(|(a, t, s)| Op::Recorded(a, t, s)),
        1 => n.clone().prop_map(Op::RecordFailed),
        2 => n.clone().prop_map(Op::Cancel),
        3 => (0u64..120).prop_map(Op::Tick),
        3 => n.clone().prop_map(Op::Expired),
        1 => n.clone().prop_map(Op::ExpiryFailed),
        1 => (n.clone(), n).prop_map(|(t, a)| Op::Adopt(t, a)),
    ]
}

/// The table's leases as a comparable value.
fn snapshot(lt: &LeaseTable) -> BTreeMap<TaskId, Lease> {
    lt.iter().map(|(t, l)| (t, l.clone())).collect()
}

/// The fence an op uses: the lease's own, or one it does not have.
fn fence_for(lt: &LeaseTable, t: TaskId, stale: bool) -> u64 {
    let f = lt.get(t).map_or(1, |l| l.fence);
    if stale { f + 1000 } else { f }
}

fn is_stale(lt: &LeaseTable, t: TaskId, fence: u64) -> bool {
    lt.get(t).is_some_and(|l| l.fence != 0 && l.fence != fence)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn leases_keep_their_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        let mut lt = LeaseTable::new(LeaseRules { lease_ms: 100, stall_ms: Some(40), stall_requeue: true });
        let mut caps: HashMap<AgentId, u32> = HashMap::new();
        let (mut now, mut next_fence) = (0u64, 1u64);
        // (task, fence) whose expiry was recorded: never twice.
        let mut expired_once: HashSet<(TaskId, u64)> = HashSet::new();
        // Leases with an expiry outstanding (due and not yet answered).
        let mut expiring: HashSet<TaskId> = HashSet::new();
        for op in ops {
            let before = snapshot(&lt);
            match op {
                Op::Register(a, c) => {
                    lt.register(agent(a), c);
                    caps.insert(agent(a), c);
                }
                Op::Unregister(a) => {
                    lt.unregister(agent(a));
                    caps.remove(&agent(a));
                }
                Op::Grant(t, a) => {
                    let (t, a) = (task(t), agent(a));
                    let had = lt.contains(t);
                    let used = lt.used(a);
                    match lt.grant(t, a, now) {
                        Ok(()) => {
                            prop_assert!(!had, "a second lease for one task");
                            let cap = caps.get(&a).copied();
                            prop_assert!(cap.is_some(), "granted to an unregistered agent");
                            prop_assert!(used < cap.unwrap_or(0), "granted past capacity");
                            prop_assert!(lt.used(a) <= cap.unwrap_or(0));
                        }
                        Err(_) => prop_assert_eq!(snapshot(&lt), before),
                    }
                }
                Op::Confirm(t) => {
                    lt.confirm(task(t), next_fence, now);
                    next_fence += 1;
                }
                Op::Refuse(t) => {
                    lt.refuse(task(t));
                }
                Op::Renew(a, t, stale) => {
                    let t = task(t);
                    let f = fence_for(&lt, t, stale);
                    let stale = is_stale(&lt, t, f);
                    lt.renew(agent(a), t, f, now);
                    if stale {
                        prop_assert_eq!(snapshot(&lt), before, "a stale fence changed state");
                    }
                }
                Op::Activity(t) => lt.activity(task(t), now),
                Op::End(a, t, stale) => {
                    let t = task(t);
                    let f = fence_for(&lt, t, stale);
                    let stale = is_stale(&lt, t, f);
                    let r = lt.end(agent(a), t, f);
                    if stale {
                        prop_assert_eq!(r, Ended::Ignored);
                        prop_assert_eq!(snapshot(&lt), before, "a stale fence changed state");
                    }
                }
                Op::Recorded(a, t, stale) => {
                    let t = task(t);
                    let f = fence_for(&lt, t, stale);
                    let stale = f != lt.get(t).map_or(0, |l| l.fence);
                    lt.recorded(agent(a), t, f);
                    if stale {
                        prop_assert_eq!(snapshot(&lt), before, "a stale fence changed state");
                    }
                }
                Op::RecordFailed(t) => lt.record_failed(task(t), now),
                Op::Cancel(t) => {
                    lt.cancel(task(t), now);
                    expiring.remove(&task(t));
                }
                Op::Tick(dt) => {
                    now += dt;
                    for d in lt.tick(now) {
                        if let Due::Expire { task, fence, .. } = d {
                            prop_assert!(expiring.insert(task), "an expiry was due twice at once");
                            prop_assert!(!expired_once.contains(&(task, fence)), "expired again after it was recorded");
                        }
                    }
                }
                Op::Expired(t) => {
                    let t = task(t);
                    let fence = lt.get(t).map(|l| l.fence);
                    if lt.expired(t) {
                        prop_assert!(expiring.remove(&t), "expired without being due");
                        let fence = fence.unwrap_or(0);
                        prop_assert!(expired_once.insert((t, fence)), "one lease expired twice");
                    }
                }
                Op::ExpiryFailed(t) => {
                    let t = task(t);
                    if lt.get(t).is_some_and(|l| l.phase == Phase::Expiring) {
                        expiring.remove(&t);
                    }
                    lt.expiry_failed(t, now);
                }
                Op::Adopt(t, a) => {
                    let had = lt.contains(task(t));
                    prop_assert_eq!(lt.adopt(task(t), agent(a), next_fence, now), !had);
                    next_fence += 1;
                }
            }
            // Slots: a slot is taken iff its lease is live, never negative.
            let mut live: HashMap<AgentId, u32> = HashMap::new();
            for (_, l) in lt.iter() {
                if l.phase.holds_slot() {
                    *live.entry(l.agent).or_default() += 1;
                }
            }
            for n in 0..AGENTS as u8 {
                let a = agent(n);
                prop_assert_eq!(lt.used(a), live.get(&a).copied().unwrap_or(0));
            }
            // Expiring leases are exactly those with an expiry outstanding.
            let phase_expiring: HashSet<TaskId> = lt
                .iter()
                .filter(|(_, l)| l.phase == Phase::Expiring)
                .map(|(t, _)| t)
                .collect();
            prop_assert_eq!(&phase_expiring, &expiring);
        }
        // The scheduler's copy, fed from take_changed, ends equal to the table.
        let changed: HashMap<AgentId, u32> = lt.take_changed().into_iter().collect();
        for (a, used) in changed {
            prop_assert_eq!(used, lt.used(a));
        }
    }
}

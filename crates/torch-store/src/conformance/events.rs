//! What the store writes on its streams is what `torch_core::events`
//! declares: every kind on its stream, every data the kind's payload.

use std::collections::{BTreeMap, BTreeSet};

use torch_core::routing::{AssignMode, Candidate, Explanation, FactorScore};
use torch_core::{EventData, EventKind, OutcomeKind};

use super::*;
use crate::{AgentEvent, EventLog, MemoryLimits, MemoryStore, TaskStore};

/// The kinds the store itself writes (the hub writes the others).
const STORE_KINDS: [EventKind; 14] = [
    EventKind::TaskSubmitted,
    EventKind::TaskReady,
    EventKind::TaskRetried,
    EventKind::TaskAssigned,
    EventKind::TaskStarted,
    EventKind::TaskProgress,
    EventKind::TaskSucceeded,
    EventKind::TaskFailed,
    EventKind::TaskLeaseExpired,
    EventKind::TaskDead,
    EventKind::TaskCancelled,
    EventKind::AgentJoined,
    EventKind::AgentLeft,
    EventKind::AgentMemoryInherited,
];

/// An explanation as the scheduler writes it with an assignment.
fn explanation() -> String {
    let factor = |name: &str, value: f64, weight: f64| FactorScore {
        name: name.into(),
        value,
        weight,
    };
    let e = Explanation {
        policy: "torch".into(),
        chosen: aid(1),
        mode: AssignMode::Greedy,
        candidates: vec![Candidate {
            agent: aid(1),
            total: 0.875,
            used: 0,
            factors: vec![factor("skill", 1.0, 0.75), factor("load", 0.5, 0.25)],
        }],
        feasible: 1,
        rejected: Vec::new(),
        rejected_counts: BTreeMap::new(),
        not_examined: 0,
        notes: Vec::new(),
    };
    serde_json::to_string(&e).expect("explanation serialises")
}

/// Every kind the store writes, written once or more by a short history,
/// reads back on its declared stream as its declared payload, exactly, and
/// is stored as the store has always stored it: keys sorted, the
/// explanation of `task.assigned` appended as given.
pub async fn every_kind_reads_as_declared(h: &impl Harness) {
    let s = h.open();
    let batch = vec![
        task(1, &[]),
        task(2, &[1]),
        task_with(3, &[], retries(2)),
        task(4, &[3]),
    ];
    s.submit(batch, NOW).await.expect("submit");
    let joined = AgentEvent::Joined {
        id: aid(1),
        name: "a1".into(),
        skills: vec!["rust:0.5".parse().expect("skill")],
        slots: 2,
        labels: BTreeMap::from([("zone".into(), "a".into())]),
    };
    s.agent_event(joined, NOW).await.expect("joined");

    // t1: explained assignment, start, progress, success (releases t2).
    let explained = explanation();
    let grant = Grant {
        task: tid(1),
        agent: aid(1),
        expires_ms: NOW + 30_000,
        explanation: Some(explained.clone()),
    };
    let l1 = s.assign(vec![grant], NOW).await.expect("assign")[0]
        .clone()
        .expect("leased");
    s.start(vec![(tid(1), l1.fence)], NOW).await.expect("start");
    for message in [Some("half".to_string()), None] {
        s.progress(tid(1), l1.fence, 50.0, message, NOW)
            .await
            .expect("progress");
    }
    s.finish(vec![report(&l1, OutcomeKind::Succeeded)], NOW + 1)
        .await
        .expect("finish");

    // t3: failed, expired, dead (cancelling t4), then retried.
    let l = lease(&s, 3, 1, NOW).await;
    s.finish(vec![report(&l, OutcomeKind::Failed)], NOW)
        .await
        .expect("fail");
    let l = lease(&s, 3, 1, NOW + 10_000).await;
    s.expire(tid(3), l.fence, "agent lost".into(), NOW + 10_000)
        .await
        .expect("expire");
    let l = lease(&s, 3, 1, NOW + 20_000).await;
    s.finish(vec![report(&l, OutcomeKind::Fatal)], NOW + 20_000)
        .await
        .expect("dead");
    s.retry(tid(3), NOW + 20_001).await.expect("retry");

    let lim = MemoryLimits::default();
    s.memory_put(aid(1), "ctx".into(), "v".into(), lim, NOW)
        .await
        .expect("put");
    s.memory_inherit(aid(1), aid(2), vec!["ctx".into()], lim, NOW)
        .await
        .expect("inherit");
    let left = AgentEvent::Left {
        id: aid(1),
        reason: "bye".into(),
    };
    s.agent_event(left, NOW + 30_000).await.expect("left");

    let mut seen = BTreeSet::new();
    for e in s.events(0, vec![], 0).await.expect("events") {
        let kind: EventKind = e.kind.parse().expect("a declared kind");
        assert_eq!(e.stream, kind.stream(), "{kind} is on its stream");
        let data: serde_json::Value = serde_json::from_str(&e.data).expect("JSON data");
        let typed = EventData::read(kind, &data);
        assert!(typed.is_some(), "{kind} data is its payload: {data}");
        let mut rest = data.clone();
        let text = match rest.as_object_mut().and_then(|o| o.remove("explanation")) {
            Some(_) => crate::codec::with_explanation(rest.to_string(), &explained),
            None => rest.to_string(),
        };
        assert_eq!(e.data, text, "{kind} data as stored");
        seen.insert(kind);
    }
    assert_eq!(
        seen,
        BTreeSet::from(STORE_KINDS),
        "every store kind written"
    );
}

//! Leasing, fences, start and progress.

use std::collections::HashSet;
use std::sync::Arc;

use crate::{FenceCheck, Grant, TASKS_ACTIVE, TaskStore};
use torch_core::{OutcomeKind, TaskState};

use super::*;

/// Only queued tasks are leased; other grants are refused one by one.
pub async fn assign_refuses_non_queued(h: &impl Harness) {
    let s = h.open();
    let batch = vec![task_with(1, &[], |sp| sp.priority = 3), task(2, &[1])];
    let spec1 = batch[0].spec.clone();
    s.submit(batch, NOW).await.expect("submit");
    let g = |n, a| Grant {
        task: tid(n),
        agent: aid(a),
        expires_ms: NOW + 5000,
        explanation: None,
    };
    let out = s
        .assign(vec![g(1, 1), g(1, 2), g(2, 1), g(99, 1)], NOW)
        .await
        .expect("assign");
    assert_eq!(out.len(), 4);
    let won = out[0].as_ref().expect("first grant wins");
    assert_eq!((won.task, won.agent, won.attempt), (tid(1), aid(1), 1));
    assert!(won.fence > 0);
    assert_eq!(won.name, "t1");
    assert_eq!(won.spec, spec1);
    let refused = |i: usize| out[i].as_ref().expect_err("refused").clone();
    assert_eq!(
        refused(1).state,
        Some(TaskState::Assigned),
        "second grant, same call"
    );
    assert_eq!(refused(2).state, Some(TaskState::Blocked));
    assert_eq!((refused(3).task, refused(3).state), (tid(99), None));

    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(
        (rec.state, rec.agent, rec.fence, rec.attempt),
        (TaskState::Assigned, Some(aid(1)), won.fence, 1)
    );
    assert_eq!(
        s.lease_holder(tid(1)).await.expect("holder"),
        Some((aid(1), won.fence))
    );
    assert_eq!(s.lease_holder(tid(2)).await.expect("holder"), None);
    let assigned = events_of(&s, EventKind::TaskAssigned, 1).await;
    assert_eq!(assigned.len(), 1);
    assert_eq!(assigned[0].stream, TASKS_ACTIVE);
    assert_eq!(assigned[0].agent, Some(aid(1)));
    let data: serde_json::Value = serde_json::from_str(&assigned[0].data).expect("json");
    assert_eq!(data["fence"], won.fence);
    assert_eq!(data["attempt"], 1);
}

/// Concurrent claims of the same tasks lease each task once.
pub async fn concurrent_claims(h: &impl Harness) {
    let s = Arc::new(h.open());
    const N: u64 = 64;
    let batch = (1..=N).map(|n| task(n, &[])).collect();
    s.submit(batch, NOW).await.expect("submit");
    let claim = |agent: u64| {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            let grants = (1..=N)
                .map(|n| Grant {
                    task: tid(n),
                    agent: aid(agent),
                    expires_ms: NOW + 5000,
                    explanation: None,
                })
                .collect();
            s.assign(grants, NOW).await.expect("assign")
        })
    };
    let (a, b) = (claim(1), claim(2));
    let (a, b) = (a.await.expect("join"), b.await.expect("join"));
    let mut fences = HashSet::new();
    for n in 0..N as usize {
        let wins = [&a[n], &b[n]].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "task {} claimed {wins} times", n + 1);
        let l = a[n].as_ref().or(b[n].as_ref()).expect("one winner");
        assert!(fences.insert(l.fence), "fence {} reused", l.fence);
        let rec = s.get_task(l.task).await.expect("get").expect("exists");
        assert_eq!((rec.agent, rec.fence), (Some(l.agent), l.fence));
    }
    for n in 1..=N {
        assert_eq!(
            events_of(s.as_ref(), EventKind::TaskAssigned, n)
                .await
                .len(),
            1
        );
    }
}

/// Start and progress are accepted under the current fence only.
pub async fn start_and_progress(h: &impl Harness) {
    let s = h.open();
    s.submit(vec![task(1, &[]), task(2, &[])], NOW)
        .await
        .expect("submit");
    let l1 = lease(&s, 1, 1, NOW).await;
    let l2 = lease(&s, 2, 1, NOW).await;
    assert!(l2.fence > l1.fence, "fences increase");

    let out = s
        .start(
            vec![(tid(1), l1.fence), (tid(2), l2.fence + 100), (tid(99), 1)],
            NOW + 1,
        )
        .await
        .expect("start");
    assert_eq!(out[0], FenceCheck::Ok);
    assert_eq!(
        out[1],
        FenceCheck::Stale {
            current_fence: l2.fence,
            state: TaskState::Assigned
        }
    );
    assert_eq!(out[2], FenceCheck::NotFound);
    assert_eq!(state(&s, 1).await, TaskState::Running);
    assert_eq!(state(&s, 2).await, TaskState::Assigned);
    // A resent start is accepted without a second event.
    let again = s
        .start(vec![(tid(1), l1.fence)], NOW + 2)
        .await
        .expect("start");
    assert_eq!(again, [FenceCheck::Ok]);
    assert_eq!(events_of(&s, EventKind::TaskStarted, 1).await.len(), 1);

    let ok = s
        .progress(tid(1), l1.fence, 150.0, Some("nearly".into()), NOW + 3)
        .await
        .expect("progress");
    assert_eq!(ok, FenceCheck::Ok);
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(
        rec.progress,
        Some((100.0, Some("nearly".into()), NOW + 3)),
        "clamped"
    );
    let stale = s
        .progress(tid(1), l1.fence + 1000, 10.0, None, NOW)
        .await
        .expect("progress");
    assert_eq!(
        stale,
        FenceCheck::Stale {
            current_fence: l1.fence,
            state: TaskState::Running
        }
    );
    let missing = s
        .progress(tid(99), 1, 10.0, None, NOW)
        .await
        .expect("progress");
    assert_eq!(missing, FenceCheck::NotFound);
    // Progress on an assigned task means it runs.
    let ok = s
        .progress(tid(2), l2.fence, -5.0, None, NOW + 4)
        .await
        .expect("progress");
    assert_eq!(ok, FenceCheck::Ok);
    assert_eq!(state(&s, 2).await, TaskState::Running);
    let rec = s.get_task(tid(2)).await.expect("get").expect("exists");
    assert_eq!(rec.progress, Some((0.0, None, NOW + 4)));
    assert_eq!(rec.liveness, None);
    assert_eq!(events_of(&s, EventKind::TaskProgress, 1).await.len(), 1);

    // The agent CLI's activity and waiting are kept with the task and carried
    // by the event; a report without them clears them.
    let live = torch_core::Liveness {
        activity: Some(torch_core::Activity {
            last_tool: Some("Write".into()),
            turns: 3,
            tokens_so_far: 3000,
            at_ms: NOW + 4,
        }),
        waiting: Some(torch_core::Waiting {
            reason: "rate_limited".into(),
            until_ms: Some(NOW + 60_000),
            detail: None,
        }),
    };
    let ok = s
        .progress_live(tid(2), l2.fence, 0.0, None, Some(live.clone()), NOW + 4)
        .await
        .expect("progress");
    assert_eq!(ok, FenceCheck::Ok);
    let rec = s.get_task(tid(2)).await.expect("get").expect("exists");
    assert_eq!(rec.liveness, Some(live));
    let evs = events_of(&s, EventKind::TaskProgress, 2).await;
    let data: serde_json::Value = serde_json::from_str(&evs[evs.len() - 1].data).expect("JSON");
    assert_eq!(data["waiting"]["reason"], "rate_limited");
    assert_eq!(data["activity"]["last_tool"], "Write");
    s.progress(tid(2), l2.fence, 1.0, None, NOW + 4)
        .await
        .expect("progress");
    let rec = s.get_task(tid(2)).await.expect("get").expect("exists");
    assert_eq!(rec.liveness, None);

    // After the attempt ends, its fence no longer reports progress.
    s.finish(vec![report(&l1, OutcomeKind::Succeeded)], NOW + 5)
        .await
        .expect("finish");
    let late = s
        .progress(tid(1), l1.fence, 50.0, None, NOW + 6)
        .await
        .expect("progress");
    assert_eq!(
        late,
        FenceCheck::Stale {
            current_fence: l1.fence,
            state: TaskState::Succeeded
        }
    );
    let late = s
        .start(vec![(tid(1), l1.fence)], NOW + 6)
        .await
        .expect("start");
    assert!(matches!(late[0], FenceCheck::Stale { .. }));
}

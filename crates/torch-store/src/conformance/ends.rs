//! Attempt ends (finish, expire), cancel and retry.

use std::collections::BTreeSet;

use crate::{
    Effect, EventLog, FinishResult, Store, StoreError, TASKS_COMPLETED, TASKS_FAILED, TASKS_QUEUE,
    TaskStore,
};
use torch_core::{OutcomeKind, TaskState};

use super::*;

fn recorded(r: &FinishResult) -> &Effect {
    match r {
        FinishResult::Recorded(e) => e,
        other => panic!("expected Recorded, got {other:?}"),
    }
}

async fn finish_one<S: Store>(s: &S, l: &Leased, kind: OutcomeKind, now: u64) -> FinishResult {
    let mut out = s.finish(vec![report(l, kind)], now).await.expect("finish");
    out.pop().expect("one result")
}

fn ids(tasks: &[torch_core::scheduler::QueuedTask]) -> BTreeSet<TaskId> {
    tasks.iter().map(|t| t.id).collect()
}

/// A success releases dependents once all their dependencies succeeded, and keeps its captured output.
pub async fn success_releases_diamond(h: &impl Harness) {
    let s = h.open();
    // 1 -> {2, 3} -> 4
    let batch = vec![task(1, &[]), task(2, &[1]), task(3, &[1]), task(4, &[2, 3])];
    s.submit(batch, NOW).await.expect("submit");
    let l1 = lease(&s, 1, 1, NOW).await;
    let mut rep = report(&l1, OutcomeKind::Succeeded);
    rep.logs = Some(("out".into(), "err".into(), true));
    let out = s.finish(vec![rep], NOW + 10).await.expect("finish");
    let e = recorded(&out[0]);
    assert_eq!(
        (e.task, e.state, e.requeued.clone()),
        (tid(1), TaskState::Succeeded, None)
    );
    assert_eq!(ids(&e.released), BTreeSet::from([tid(2), tid(3)]));
    assert!(e.cancelled.is_empty());
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!((rec.agent, rec.last_agent), (None, Some(aid(1))));
    assert_eq!(rec.outcome.map(|o| o.kind), Some(OutcomeKind::Succeeded));
    let logs = s.task_logs(tid(1)).await.expect("logs").expect("stored");
    assert_eq!(
        (
            logs.attempt,
            logs.stdout.as_str(),
            logs.stderr.as_str(),
            logs.truncated
        ),
        (1, "out", "err", true)
    );
    assert!(s.task_logs(tid(2)).await.expect("logs").is_none());
    assert_eq!(state(&s, 4).await, TaskState::Blocked);

    let l2 = lease(&s, 2, 1, NOW).await;
    let e = finish_one(&s, &l2, OutcomeKind::Succeeded, NOW + 20).await;
    assert!(recorded(&e).released.is_empty(), "4 still waits for 3");
    assert_eq!(state(&s, 4).await, TaskState::Blocked);
    let l3 = lease(&s, 3, 2, NOW).await;
    let e = finish_one(&s, &l3, OutcomeKind::Succeeded, NOW + 30).await;
    let released = &recorded(&e).released;
    assert_eq!(ids(released), BTreeSet::from([tid(4)]));
    assert_eq!(released[0].not_before, 0);
    assert_eq!(state(&s, 4).await, TaskState::Queued);

    let ready: Vec<_> = s
        .events(0, vec![TASKS_QUEUE.into()], 0)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == EventKind::TaskReady.name())
        .filter_map(|e| e.task)
        .collect();
    assert_eq!(ready.len(), 3);
    assert_eq!(ready.last(), Some(&tid(4)));
    let done = events_of(&s, EventKind::TaskSucceeded, 1).await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].stream, TASKS_COMPLETED);
}

/// Reports with a stale fence, another agent or an unknown task change nothing; a resent one is `Duplicate`.
pub async fn stale_and_duplicate(h: &impl Harness) {
    let s = h.open();
    s.submit(vec![task(1, &[])], NOW).await.expect("submit");
    let l = lease(&s, 1, 1, NOW).await;
    let mut wrong_fence = report(&l, OutcomeKind::Succeeded);
    wrong_fence.fence += 1000;
    let mut wrong_agent = report(&l, OutcomeKind::Succeeded);
    wrong_agent.agent = aid(9);
    let mut missing = report(&l, OutcomeKind::Succeeded);
    missing.task = tid(99);
    let out = s
        .finish(vec![wrong_fence, wrong_agent, missing], NOW)
        .await
        .expect("finish");
    let stale = FinishResult::Stale {
        current_fence: l.fence,
        state: TaskState::Assigned,
    };
    assert_eq!(out, [stale.clone(), stale, FinishResult::NotFound]);
    assert_eq!(
        state(&s, 1).await,
        TaskState::Assigned,
        "stale reports change nothing"
    );

    // The report and its resend in one call, then again in another call.
    let out = s
        .finish(
            vec![
                report(&l, OutcomeKind::Succeeded),
                report(&l, OutcomeKind::Failed),
            ],
            NOW,
        )
        .await
        .expect("finish");
    assert_eq!(recorded(&out[0]).state, TaskState::Succeeded);
    assert_eq!(out[1], FinishResult::Duplicate);
    let again = finish_one(&s, &l, OutcomeKind::Succeeded, NOW + 1).await;
    assert_eq!(again, FinishResult::Duplicate);
    let expired = s
        .expire(tid(1), l.fence, "late".into(), NOW + 2)
        .await
        .expect("expire");
    assert_eq!(expired, FinishResult::Duplicate);
    assert_eq!(
        events_of(&s, EventKind::TaskSucceeded, 1).await.len(),
        1,
        "one completion per fence"
    );
    assert!(events_of(&s, EventKind::TaskFailed, 1).await.is_empty());
    assert_eq!(state(&s, 1).await, TaskState::Succeeded);
}

/// Failures are retried with backoff until the budget is spent; then the task is dead and its dependents cancelled.
pub async fn failures_retry_then_dead(h: &impl Harness) {
    let s = h.open();
    let batch = vec![
        task_with(1, &[], retries(2)),
        task(2, &[1]),
        task(3, &[2]),
        task(4, &[]),
    ];
    s.submit(batch, NOW).await.expect("submit");

    let l = lease(&s, 1, 1, NOW).await;
    let e = finish_one(&s, &l, OutcomeKind::Failed, NOW).await;
    let e = recorded(&e);
    assert_eq!(e.state, TaskState::Queued);
    let rq = e.requeued.clone().expect("requeued");
    assert_eq!((rq.id, rq.not_before), (tid(1), NOW + 1000));
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(
        (rec.state, rec.not_before_ms, rec.agent),
        (TaskState::Queued, NOW + 1000, None)
    );
    let snap = s.load().await.expect("load");
    let q = snap
        .queued
        .iter()
        .find(|q| q.id == tid(1))
        .expect("queued in load");
    assert_eq!(q.not_before, NOW + 1000);
    let failed = events_of(&s, EventKind::TaskFailed, 1).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].stream, TASKS_FAILED);
    let data: serde_json::Value = serde_json::from_str(&failed[0].data).expect("json");
    assert_eq!(data["will_retry"], true);
    assert_eq!(data["retry_at_ms"], NOW + 1000);
    assert_eq!(data["attempt"], 1);

    let now = NOW + 1000;
    let l = lease(&s, 1, 1, now).await;
    assert_eq!(l.attempt, 2);
    assert_eq!(
        s.get_task(tid(1))
            .await
            .expect("get")
            .expect("exists")
            .not_before_ms,
        0
    );
    let e = finish_one(&s, &l, OutcomeKind::TimedOut, now).await;
    assert_eq!(
        recorded(&e).requeued.as_ref().map(|q| q.not_before),
        Some(now + 2000)
    );

    let l = lease(&s, 1, 2, now).await;
    assert_eq!(l.attempt, 3);
    let e = finish_one(&s, &l, OutcomeKind::Failed, now).await;
    let e = recorded(&e);
    assert_eq!((e.state, e.requeued.clone()), (TaskState::Dead, None));
    assert_eq!(
        e.cancelled,
        vec![tid(2), tid(3)],
        "dependents, transitively"
    );
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(
        rec.reason.as_deref(),
        Some("failed on 2 agents: it failed"),
        "failed on agents 1, 1 and 2"
    );
    assert_eq!(rec.failed_agents, vec![aid(1), aid(2)]);
    for n in [2, 3] {
        let rec = s.get_task(tid(n)).await.expect("get").expect("exists");
        assert_eq!(rec.state, TaskState::Cancelled);
        let reason = rec.reason.expect("reason");
        assert!(reason.contains("t1") && reason.contains("dead"), "{reason}");
        assert_eq!(events_of(&s, EventKind::TaskCancelled, n).await.len(), 1);
    }
    assert_eq!(
        state(&s, 4).await,
        TaskState::Queued,
        "unrelated task untouched"
    );
    assert_eq!(events_of(&s, EventKind::TaskDead, 1).await.len(), 1);
    assert_eq!(events_of(&s, EventKind::TaskFailed, 1).await.len(), 2);

    // Fatal is never retried; an agent-side cancel of a live task is a failure.
    s.submit(vec![task(5, &[]), task(6, &[])], NOW)
        .await
        .expect("submit");
    let l = lease(&s, 5, 1, now).await;
    assert_eq!(
        recorded(&finish_one(&s, &l, OutcomeKind::Fatal, now).await).state,
        TaskState::Dead
    );
    let l = lease(&s, 6, 1, now).await;
    let e = finish_one(&s, &l, OutcomeKind::Cancelled, now).await;
    assert_eq!(recorded(&e).state, TaskState::Queued);
}

/// An expired lease counts as a failed attempt (retried or dead), and only under the current fence.
pub async fn expire_lease(h: &impl Harness) {
    let s = h.open();
    s.submit(
        vec![task(1, &[]), task_with(2, &[], retries(0)), task(3, &[2])],
        NOW,
    )
    .await
    .expect("submit");
    let l = lease(&s, 1, 1, NOW).await;
    let stale = s
        .expire(tid(1), l.fence + 5, "lost".into(), NOW)
        .await
        .expect("expire");
    assert!(matches!(stale, FinishResult::Stale { current_fence, .. } if current_fence == l.fence));
    let missing = s
        .expire(tid(99), 1, "lost".into(), NOW)
        .await
        .expect("expire");
    assert_eq!(missing, FinishResult::NotFound);

    let out = s
        .expire(tid(1), l.fence, "agent lost".into(), NOW)
        .await
        .expect("expire");
    let e = recorded(&out);
    assert_eq!(e.state, TaskState::Queued);
    assert_eq!(e.requeued.as_ref().map(|q| q.not_before), Some(NOW + 1000));
    assert_eq!(s.lease_holder(tid(1)).await.expect("holder"), None);
    let ev = events_of(&s, EventKind::TaskLeaseExpired, 1).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].stream, TASKS_FAILED);
    // The agent's late report for that attempt changes nothing.
    let late = finish_one(&s, &l, OutcomeKind::Succeeded, NOW + 1).await;
    assert_eq!(late, FinishResult::Duplicate);
    assert_eq!(state(&s, 1).await, TaskState::Queued);
    assert!(events_of(&s, EventKind::TaskSucceeded, 1).await.is_empty());

    // Out of retries: dead, dependents cancelled.
    let l = lease(&s, 2, 1, NOW).await;
    let out = s
        .expire(tid(2), l.fence, "agent lost".into(), NOW)
        .await
        .expect("expire");
    let e = recorded(&out);
    assert_eq!(
        (e.state, e.cancelled.clone()),
        (TaskState::Dead, vec![tid(3)])
    );
    assert_eq!(events_of(&s, EventKind::TaskDead, 2).await.len(), 1);
}

/// Cancelling a running task cancels its dependents and names the leases to revoke.
pub async fn cancel_running(h: &impl Harness) {
    let s = h.open();
    s.submit(
        vec![task(1, &[]), task(2, &[1]), task(3, &[2]), task(4, &[])],
        NOW,
    )
    .await
    .expect("submit");
    let l = lease(&s, 1, 7, NOW).await;
    s.start(vec![(tid(1), l.fence)], NOW).await.expect("start");
    let c = s
        .cancel(tid(1), "user asked".into(), NOW)
        .await
        .expect("cancel");
    assert_eq!(c.tasks, vec![tid(1), tid(2), tid(3)]);
    assert_eq!(c.revoked, vec![(tid(1), aid(7), l.fence)]);
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(
        (rec.state, rec.reason.as_deref()),
        (TaskState::Cancelled, Some("user asked"))
    );
    assert_eq!(state(&s, 3).await, TaskState::Cancelled);
    assert_eq!(state(&s, 4).await, TaskState::Queued);
    assert_eq!(s.lease_holder(tid(1)).await.expect("holder"), None);
    assert_eq!(events_of(&s, EventKind::TaskCancelled, 1).await.len(), 1);
    assert_eq!(events_of(&s, EventKind::TaskCancelled, 3).await.len(), 1);

    let late = finish_one(&s, &l, OutcomeKind::Succeeded, NOW).await;
    assert_eq!(
        late,
        FinishResult::Stale {
            current_fence: l.fence,
            state: TaskState::Cancelled
        }
    );
    assert!(events_of(&s, EventKind::TaskSucceeded, 1).await.is_empty());
    let again = s.cancel(tid(1), "again".into(), NOW).await;
    assert!(
        matches!(
            again,
            Err(StoreError::Conflict {
                state: TaskState::Cancelled,
                ..
            })
        ),
        "{again:?}"
    );
    let missing = s.cancel(tid(99), "x".into(), NOW).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(t)) if t == tid(99)),
        "{missing:?}"
    );
    // Cancelling a queued task revokes nothing.
    let c = s.cancel(tid(4), "x".into(), NOW).await.expect("cancel");
    assert_eq!((c.tasks, c.revoked), (vec![tid(4)], vec![]));
}

/// A dead task is retried with a fresh budget, but not while its dependencies are dead or cancelled.
pub async fn retry_dead(h: &impl Harness) {
    let s = h.open();
    s.submit(vec![task_with(1, &[], retries(1)), task(2, &[1])], NOW)
        .await
        .expect("submit");
    for _ in 0..2 {
        let l = lease(&s, 1, 1, NOW).await;
        finish_one(&s, &l, OutcomeKind::Failed, NOW).await;
    }
    assert_eq!(state(&s, 1).await, TaskState::Dead);
    assert_eq!(state(&s, 2).await, TaskState::Cancelled);

    let blocked = s.retry(tid(2), NOW).await;
    let Err(StoreError::Conflict { message, .. }) = &blocked else {
        panic!("expected Conflict, got {blocked:?}");
    };
    assert!(
        message.contains("t1") && message.contains("dead"),
        "{message}"
    );
    let r = s.retry(tid(1), NOW + 5).await.expect("retry");
    assert_eq!((r.task, r.state), (tid(1), TaskState::Queued));
    assert_eq!(
        r.ready.as_ref().map(|q| (q.id, q.not_before)),
        Some((tid(1), 0))
    );
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!((rec.state, rec.reason), (TaskState::Queued, None));
    assert_eq!(events_of(&s, EventKind::TaskRetried, 1).await.len(), 1);
    // Its dependency is alive again, so the dependent can come back (blocked).
    let r2 = s.retry(tid(2), NOW + 5).await.expect("retry");
    assert_eq!((r2.state, r2.ready), (TaskState::Blocked, None));

    // The retry budget was reset: one failure is retried again.
    let l = lease(&s, 1, 1, NOW + 10).await;
    assert_eq!(l.attempt, 3, "attempts keep counting");
    let e = finish_one(&s, &l, OutcomeKind::Failed, NOW + 10).await;
    assert_eq!(recorded(&e).state, TaskState::Queued);
    let l = lease(&s, 1, 1, NOW + 20_000).await;
    let e = finish_one(&s, &l, OutcomeKind::Succeeded, NOW + 20_000).await;
    assert_eq!(ids(&recorded(&e).released), BTreeSet::from([tid(2)]));

    for n in [1, 2] {
        let wrong = s.retry(tid(n), NOW).await;
        assert!(
            matches!(wrong, Err(StoreError::Conflict { .. })),
            "{wrong:?}"
        );
    }
    let missing = s.retry(tid(99), NOW).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

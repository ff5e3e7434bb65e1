//! Submission: queued vs blocked, idempotency, all-or-nothing.

use crate::{EventLog, StoreError, TASKS_QUEUE, TaskFilter, TaskStore};
use torch_core::{OutcomeKind, TaskState};

use super::*;

/// A batch is stored queued or blocked by its dependencies, with its events.
pub async fn queued_and_blocked(h: &impl Harness) {
    let s = h.open();
    // 2 depends on 1 (earlier in the batch) and on 4 (later in the batch).
    let batch = vec![
        task_with(1, &[], |sp| {
            sp.priority = 7;
            sp.skills = vec!["rust:0.5".parse().expect("skill")];
            sp.labels.insert("team".into(), "core".into());
        }),
        task(2, &[1, 4, 1]),
        task(3, &[2]),
        task(4, &[]),
    ];
    let spec1 = batch[0].spec.clone();
    let out = s.submit(batch, NOW).await.expect("submit");
    assert_eq!(out.len(), 4);
    let states: Vec<_> = out.iter().map(|o| o.state).collect();
    use TaskState::*;
    assert_eq!(states, [Queued, Blocked, Blocked, Queued]);
    assert!(out.iter().all(|o| !o.duplicate));
    let ready = out[0].ready.clone().expect("queued task has ready");
    assert_eq!((ready.id, ready.priority, ready.not_before), (tid(1), 7, 0));
    assert_eq!(ready.skills, spec1.skills);
    assert!(out[1].ready.is_none() && out[2].ready.is_none());
    let seq4 = out[3].ready.as_ref().expect("queued").seq;
    assert!(ready.seq < seq4, "seq follows batch order");

    let rec = s.get_task(tid(2)).await.expect("get").expect("exists");
    assert_eq!(
        rec.deps,
        vec![tid(1), tid(4)],
        "deps kept in order, deduplicated"
    );
    assert_eq!((rec.attempt, rec.fence, rec.agent), (0, 0, None));
    assert_eq!(rec.created_ms, NOW);
    let rec1 = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(rec1.spec, spec1, "spec round-trips");
    assert_eq!(rec1.seq, ready.seq);

    // An external dependency on a queued task blocks; on a succeeded one it does not.
    let l = lease(&s, 4, 1, NOW).await;
    s.finish(vec![report(&l, OutcomeKind::Succeeded)], NOW)
        .await
        .expect("finish");
    let out = s
        .submit(vec![task(5, &[1]), task(6, &[4])], NOW)
        .await
        .expect("submit");
    assert_eq!((out[0].state, out[1].state), (Blocked, Queued));

    let submitted = s
        .events(0, vec![TASKS_QUEUE.into()], 0)
        .await
        .expect("events");
    let kinds: Vec<_> = submitted
        .iter()
        .filter(|e| e.kind == EventKind::TaskSubmitted.name())
        .map(|e| e.task.expect("task event"))
        .collect();
    assert_eq!(kinds, [tid(1), tid(2), tid(3), tid(4), tid(5), tid(6)]);
    let data: serde_json::Value = serde_json::from_str(&submitted[1].data).expect("json");
    assert_eq!(data["state"], "blocked");
    assert_eq!(data["name"], "t2");
    let page = s.list_tasks(TaskFilter::default()).await.expect("list");
    assert_eq!(page.counts[&Queued], 2);
    assert_eq!(page.counts[&Blocked], 3);
    assert_eq!(page.counts[&Succeeded], 1);
}

/// An idempotency key returns the stored task, also inside one batch.
pub async fn idempotent(h: &impl Harness) {
    let s = h.open();
    let key = |k: &str| {
        let k = k.to_string();
        move |sp: &mut torch_core::TaskSpec| sp.idempotency_key = Some(k)
    };
    let first = s
        .submit(vec![task_with(1, &[], key("k1"))], NOW)
        .await
        .expect("submit");
    assert!(!first[0].duplicate);

    // Same key, freshly minted id: the stored task comes back.
    // 3 depends on the duplicate's minted id, which means the stored task.
    let out = s
        .submit(
            vec![
                task_with(2, &[], key("k1")),
                task(3, &[2]),
                task_with(4, &[], key("k2")),
                task_with(5, &[], key("k2")),
                task_with(6, &[], |sp| {
                    sp.idempotency_key = Some("k1".into());
                    sp.tenant = Some("other".into());
                }),
            ],
            NOW,
        )
        .await
        .expect("resubmit");
    assert!(out[0].duplicate);
    assert_eq!(
        (out[0].id, out[0].state, out[0].ready.clone()),
        (tid(1), TaskState::Queued, None)
    );
    assert_eq!(out[0].name, "t1");
    assert!(!out[1].duplicate);
    assert_eq!(out[1].state, TaskState::Blocked);
    let rec3 = s.get_task(tid(3)).await.expect("get").expect("exists");
    assert_eq!(
        rec3.deps,
        vec![tid(1)],
        "dependency on a duplicate resolves to the stored task"
    );
    assert!(!out[2].duplicate);
    assert!(out[3].duplicate, "same key twice in one batch");
    assert_eq!(out[3].id, tid(4));
    assert!(!out[4].duplicate, "keys are per tenant");
    assert!(s.get_task(tid(2)).await.expect("get").is_none());
    assert!(s.get_task(tid(5)).await.expect("get").is_none());
    assert_eq!(total(&s).await, 4);
    assert_eq!(events_of(&s, EventKind::TaskSubmitted, 1).await.len(), 1);
    assert!(events_of(&s, EventKind::TaskSubmitted, 2).await.is_empty());
}

/// A batch with a bad task stores nothing.
pub async fn all_or_nothing(h: &impl Harness) {
    let s = h.open();
    s.submit(vec![task(1, &[]), task(2, &[])], NOW)
        .await
        .expect("submit");
    s.cancel(tid(2), "no longer needed".into(), NOW)
        .await
        .expect("cancel");
    let before_events = s.last_event_id().await.expect("last id");

    // A good task, then one whose external dependency does not exist.
    let err = s
        .submit(vec![task(10, &[]), task(11, &[1, 99])], NOW)
        .await
        .expect_err("missing dependency");
    let StoreError::Invalid(msg) = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(
        msg.contains("t11") && msg.contains(&tid(99).to_string()),
        "{msg}"
    );

    // A dependency on a cancelled task.
    let err = s
        .submit(vec![task(12, &[]), task(13, &[2])], NOW)
        .await
        .expect_err("cancelled dependency");
    let StoreError::Invalid(msg) = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(
        msg.contains("t13") && msg.contains("t2") && msg.contains("cancelled"),
        "{msg}"
    );

    // An id that is already stored, and one repeated in the batch.
    let err = s.submit(vec![task(14, &[]), task(1, &[])], NOW).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    let err = s.submit(vec![task(15, &[]), task(15, &[])], NOW).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");

    assert_eq!(
        total(&s).await,
        2,
        "nothing from the failed batches was stored"
    );
    for n in [10, 11, 12, 13, 14, 15] {
        assert!(
            s.get_task(tid(n)).await.expect("get").is_none(),
            "t{n} stored"
        );
    }
    assert_eq!(
        s.last_event_id().await.expect("last id"),
        before_events,
        "no events"
    );
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(rec.name, "t1", "the stored task was not replaced");
    // The store still works after the failed batches.
    let out = s.submit(vec![task(10, &[1])], NOW).await.expect("submit");
    assert_eq!(out[0].state, TaskState::Blocked);
}

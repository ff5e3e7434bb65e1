//! Retention: finished tasks past the cutoff are deleted with what only
//! they use; unfinished and younger ones stay.

use crate::{Retention, Store, TaskFilter, TaskStore};
use torch_core::{OutcomeKind, TaskState};

use super::*;

fn labelled(n: u64, key: &str) -> NewTask {
    task_with(n, &[], |s| {
        s.labels.insert("team".into(), "blue".into());
        s.idempotency_key = Some(key.into());
    })
}

async fn count<S: Store>(s: &S, state: TaskState) -> u64 {
    let page = s.list_tasks(TaskFilter::default()).await.expect("list");
    page.counts.get(&state).copied().unwrap_or(0)
}

/// Retention deletes finished tasks past the cutoff with what only they use; others stay.
pub async fn purge_finished_tasks(h: &impl Harness) {
    let s = h.open();
    // 1: succeeded early (labels, idempotency key, logs, a child 5).
    // 2: dead early. 3: succeeded late. 4: still queued. 6: running.
    s.submit(
        vec![
            labelled(1, "k1"),
            task_with(2, &[], retries(0)),
            task(3, &[]),
            task(4, &[]),
        ],
        NOW,
    )
    .await
    .expect("submit");
    let mut child = task(5, &[]);
    child.parent = Some(tid(1));
    s.submit(vec![child, task(6, &[])], NOW)
        .await
        .expect("child");
    let l1 = lease(&s, 1, 1, NOW).await;
    let mut rep = report(&l1, OutcomeKind::Succeeded);
    rep.logs = Some(("out".into(), "err".into(), false));
    s.finish(vec![rep], NOW + 10).await.expect("finish 1");
    let l2 = lease(&s, 2, 1, NOW).await;
    s.finish(vec![report(&l2, OutcomeKind::Failed)], NOW + 20)
        .await
        .expect("finish 2");
    assert_eq!(state(&s, 2).await, TaskState::Dead);
    let l3 = lease(&s, 3, 1, NOW).await;
    s.finish(vec![report(&l3, OutcomeKind::Succeeded)], NOW + 5_000)
        .await
        .expect("finish 3");
    let _l6 = lease(&s, 6, 2, NOW).await;

    // Nothing is older than a cutoff before the first finish.
    assert_eq!(s.purge_finished(NOW + 10, 100).await.expect("purge"), 0);
    // A limit of one deletes one, the oldest submission first.
    assert_eq!(s.purge_finished(NOW + 1_000, 1).await.expect("purge"), 1);
    assert!(
        s.get_task(tid(1)).await.expect("get").is_none(),
        "1 went first"
    );
    assert_eq!(s.purge_finished(NOW + 1_000, 100).await.expect("purge"), 1);
    assert!(s.get_task(tid(2)).await.expect("get").is_none());
    assert!(
        s.task_logs(tid(1)).await.expect("logs").is_none(),
        "its output went with it"
    );
    // Younger and unfinished tasks stay.
    assert_eq!(state(&s, 3).await, TaskState::Succeeded);
    assert_eq!(state(&s, 4).await, TaskState::Queued);
    assert_eq!(state(&s, 6).await, TaskState::Assigned);
    let child = s.get_task(tid(5)).await.expect("get").expect("child stays");
    assert_eq!(
        child.parent,
        Some(tid(1)),
        "a child keeps naming its parent"
    );
    // Listings and counts no longer see them.
    assert_eq!(count(&s, TaskState::Succeeded).await, 1);
    assert_eq!(count(&s, TaskState::Dead).await, 0);
    let by_label = s
        .list_tasks(TaskFilter {
            label: Some(("team".into(), "blue".into())),
            ..TaskFilter::default()
        })
        .await
        .expect("by label");
    assert!(by_label.tasks.is_empty(), "{:?}", by_label.tasks);
    let children = s
        .list_tasks(TaskFilter {
            parent: Some(tid(1)),
            ..TaskFilter::default()
        })
        .await
        .expect("children");
    assert_eq!(
        children.tasks.len(),
        1,
        "the child is still listed under its parent id"
    );
    // The idempotency key is free again: a new task, not a duplicate.
    let again = s
        .submit(vec![labelled(7, "k1")], NOW + 6_000)
        .await
        .expect("resubmit");
    assert!(!again[0].duplicate);
    assert_eq!(again[0].id, tid(7));
    // The snapshot a new leader loads is unchanged by retention.
    let snap = s.load().await.expect("load");
    let mut queued: Vec<_> = snap.queued.iter().map(|q| q.id).collect();
    queued.sort();
    assert_eq!(queued, [tid(4), tid(5), tid(7)]);
    assert_eq!(snap.leased.len(), 1);
    // Later, task 3 goes too.
    assert_eq!(s.purge_finished(NOW + 10_000, 100).await.expect("purge"), 1);
    assert!(s.get_task(tid(3)).await.expect("get").is_none());
}

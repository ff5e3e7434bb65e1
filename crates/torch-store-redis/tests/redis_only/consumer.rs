//! Consumer groups: a consumer dies with an event pending; another one of
//! its group reclaims it once it has been idle long enough.

use std::time::Duration;

use torch_core::EventKind;

use torch_store::{TASKS_QUEUE, TaskStore};
use torch_store_redis::StartFrom;

use crate::Redis;
use torch_store::conformance::{NOW, task, tid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_pending_event_is_reclaimed() {
    let Some(h) = Redis::start(&[]) else { return };
    let s = h.store().await;
    let mut a = s
        .consumer("hub", "a", &[TASKS_QUEUE], StartFrom::New)
        .await
        .expect("consumer a");
    let mut b = s
        .consumer("hub", "b", &[TASKS_QUEUE], StartFrom::New)
        .await
        .expect("consumer b");
    s.submit(vec![task(1, &[]), task(2, &[])], NOW)
        .await
        .expect("submit");

    let got = a
        .read(10, Some(Duration::from_secs(2)))
        .await
        .expect("read");
    let tasks: Vec<_> = got.iter().map(|e| e.task).collect();
    assert_eq!(tasks, [Some(tid(1)), Some(tid(2))]);
    assert!(
        got.iter()
            .all(|e| e.kind == EventKind::TaskSubmitted.name() && e.stream == TASKS_QUEUE)
    );
    assert_eq!(a.ack(&got[..1]).await.expect("ack"), 1);
    // `a` dies with task 2's event pending.
    drop(a);

    assert!(
        b.read(10, None).await.expect("read").is_empty(),
        "delivered once"
    );
    assert_eq!(b.pending().await.expect("pending"), 1);
    let early = b
        .reclaim(Duration::from_secs(60), 10)
        .await
        .expect("reclaim");
    assert!(early.is_empty(), "not idle long enough yet");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = b
        .reclaim(Duration::from_millis(200), 10)
        .await
        .expect("reclaim");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].task, Some(tid(2)));
    assert_eq!(taken[0], got[1], "the same event");
    assert_eq!(b.ack(&taken).await.expect("ack"), 1);
    assert_eq!(b.pending().await.expect("pending"), 0);

    // Another group sees everything still kept, independently.
    let mut c = s
        .consumer("audit", "c", &[TASKS_QUEUE], StartFrom::Beginning)
        .await
        .expect("consumer c");
    assert_eq!(c.read(10, None).await.expect("read").len(), 2);
    // Reopening a group keeps its position.
    let mut b2 = s
        .consumer("hub", "b", &[TASKS_QUEUE], StartFrom::Beginning)
        .await
        .expect("consumer b again");
    assert!(b2.read(10, None).await.expect("read").is_empty());
}

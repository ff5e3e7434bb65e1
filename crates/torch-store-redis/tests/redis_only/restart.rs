//! Redis restarts (killed, AOF with fsync on every write): acknowledged
//! writes survive, and the same store carries on without being reopened.

use std::time::Duration;

use torch_core::TaskState;
use torch_store::{EventLog, StoreError, TaskFilter, TaskStore};

use super::eventually;
use crate::Redis;
use torch_store::conformance::{NOW, lease, task, tid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_redis_restart() {
    let Some(mut h) = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let s = h.store().await;
    s.submit((1..=100).map(|n| task(n, &[])).collect(), NOW)
        .await
        .expect("submit");
    let l = lease(&s, 1, 1, NOW).await;
    let events = s.last_event_id().await.expect("last");

    h.server.kill();
    let down = s.get_task(tid(1)).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    let down = s.submit(vec![task(200, &[])], NOW).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");

    h.server.restart().expect("restart redis");
    let page = eventually(Duration::from_secs(20), || {
        s.list_tasks(TaskFilter {
            limit: 1000,
            ..TaskFilter::default()
        })
    })
    .await;
    assert_eq!(page.tasks.len(), 100, "every acknowledged task is back");
    assert!(s.get_task(tid(200)).await.expect("get").is_none());
    let rec = s.get_task(tid(1)).await.expect("get").expect("kept");
    assert_eq!((rec.state, rec.fence), (TaskState::Assigned, l.fence));
    assert_eq!(s.last_event_id().await.expect("last"), events);

    // Writing works again (scripts are reloaded), fences keep increasing.
    let l2 = lease(&s, 2, 1, NOW).await;
    assert!(l2.fence > l.fence);
    let out = s.submit(vec![task(201, &[])], NOW).await.expect("submit");
    assert_eq!(out[0].state, TaskState::Queued);
}

/// A server that lost the store's data (restarted without persistence,
/// flushed) is refused rather than written from scratch under the open
/// store, whose fences and event ids would start over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_the_data_is_refused() {
    let Some(h) = Redis::start(&[]) else { return };
    let s = h.store().await;
    s.submit(vec![task(1, &[])], NOW).await.expect("submit");
    lease(&s, 1, 1, NOW).await;
    let raw = redis::Client::open(h.server.url()).expect("client");
    let mut conn = raw
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("flush");
    let err = s.submit(vec![task(2, &[])], NOW).await;
    let Err(StoreError::Corrupt(msg)) = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert!(msg.contains("lost"), "{msg}");
    assert!(
        s.get_task(tid(2)).await.expect("get").is_none(),
        "nothing written"
    );
    // Reopening starts an empty store on purpose.
    let s = h.store().await;
    s.submit(vec![task(2, &[])], NOW).await.expect("submit");
    assert_eq!(lease(&s, 2, 1, NOW).await.fence, 1);
}

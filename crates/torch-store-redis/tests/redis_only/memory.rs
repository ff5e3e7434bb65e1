//! `maxmemory` reached: whole batches refused as full, nothing of
//! them written, everything acknowledged before intact.

use torch_core::TaskState;
use torch_store::{EventLog, Grant, StoreError, TaskStore};

use crate::Redis;
use torch_store::conformance::{NOW, aid, task, tid};

/// Task `n` with a 1 KB analysis, so memory fills quickly.
fn fat(n: u64) -> torch_store::NewTask {
    let mut t = task(n, &[]);
    t.analysis = Some(format!("{{\"pad\":\"{}\"}}", "x".repeat(1000)));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_refuses_whole_batches() {
    let Some(h) = Redis::start(&["--maxmemory-policy", "noeviction"]) else {
        return;
    };
    let s = h.store().await;
    // Room for about a megabyte more than the empty server uses.
    let raw = redis::Client::open(h.server.url()).expect("client");
    let mut conn = raw
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + (1 << 20))
        .query_async(&mut conn)
        .await
        .expect("config set");
    const BATCH: u64 = 40;
    let mut acked = Vec::new();
    let mut refused = None;
    for round in 0..1000u64 {
        let batch = (0..BATCH).map(|k| fat(round * BATCH + k + 1)).collect();
        match s.submit(batch, NOW).await {
            Ok(out) => acked.extend(out.into_iter().map(|o| o.id)),
            Err(e) => {
                refused = Some((round, e));
                break;
            }
        }
    }
    let (round, err) = refused.expect("maxmemory is reached within 40,000 tasks");
    let StoreError::Full(msg) = &err else {
        panic!("expected Full, got {err:?}");
    };
    assert!(
        msg.contains("out of memory")
            && msg.contains("maxmemory")
            && msg.contains("nothing was written"),
        "{msg}"
    );
    assert!(err.is_retryable());
    assert!(acked.len() >= BATCH as usize, "some batches fit first");

    // Nothing of the refused batch was written; reads still work.
    for k in 0..BATCH {
        let id = tid(round * BATCH + k + 1);
        assert!(s.get_task(id).await.expect("get").is_none(), "{id} written");
    }
    assert_eq!(
        s.last_event_id().await.expect("last") as usize,
        acked.len(),
        "one event per acknowledged task, none for the refused batch"
    );
    // Every acknowledged task is intact and loadable.
    for id in &acked {
        let rec = s
            .get_task(*id)
            .await
            .expect("get")
            .expect("acknowledged task kept");
        assert_eq!(rec.state, TaskState::Queued);
        assert!(rec.analysis.is_some_and(|a| a.len() > 1000));
    }
    let snap = s.load().await.expect("load");
    assert_eq!(snap.queued.len(), acked.len());
    assert_eq!(snap.backlog, acked.len() as u64);

    // Other writes are refused the same way, and change nothing.
    let grant = Grant {
        task: acked[0],
        agent: aid(1),
        expires_ms: NOW + 1000,
        explanation: None,
    };
    let err = s.assign(vec![grant.clone()], NOW).await;
    assert!(matches!(err, Err(StoreError::Full(_))), "{err:?}");
    assert_eq!(
        s.get_task(acked[0])
            .await
            .expect("get")
            .expect("kept")
            .state,
        TaskState::Queued
    );

    // With room again, the same store writes again.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .expect("config set");
    let out = s.assign(vec![grant], NOW).await.expect("assign");
    assert!(out[0].is_ok());
}

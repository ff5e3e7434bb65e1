//! Two hubs (two stores on one server) racing to claim the same tasks.

use std::collections::HashSet;
use std::sync::Arc;

use torch_store::{Grant, TaskStore};

use crate::Redis;
use torch_store::conformance::{NOW, aid, task, tid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_race_for_each_task() {
    let Some(h) = Redis::start(&[]) else { return };
    let (a, b) = (Arc::new(h.store().await), Arc::new(h.store().await));
    const N: u64 = 200;
    a.submit((1..=N).map(|n| task(n, &[])).collect(), NOW)
        .await
        .expect("submit");
    // Each hub claims every task, one call per task, in opposite orders,
    // so their claims interleave.
    let hub = |s: Arc<torch_store_redis::RedisStore>, agent: u64, reverse: bool| {
        tokio::spawn(async move {
            let mut order: Vec<u64> = (1..=N).collect();
            if reverse {
                order.reverse();
            }
            let mut won = Vec::new();
            for n in order {
                let g = Grant {
                    task: tid(n),
                    agent: aid(agent),
                    expires_ms: NOW + 5000,
                    explanation: None,
                };
                let mut out = s.assign(vec![g], NOW).await.expect("assign");
                if let Ok(l) = out.pop().expect("one result") {
                    won.push(l);
                }
            }
            won
        })
    };
    let (wa, wb) = tokio::join!(hub(Arc::clone(&a), 1, false), hub(Arc::clone(&b), 2, true));
    let (wa, wb) = (wa.expect("join"), wb.expect("join"));
    assert_eq!(wa.len() + wb.len(), N as usize, "every task claimed once");
    assert!(!wa.is_empty() && !wb.is_empty(), "both hubs won some");
    let mut tasks = HashSet::new();
    let mut fences = HashSet::new();
    for l in wa.iter().chain(&wb) {
        assert!(tasks.insert(l.task), "{} claimed twice", l.task);
        assert!(fences.insert(l.fence), "fence {} reused", l.fence);
        let rec = b.get_task(l.task).await.expect("get").expect("exists");
        assert_eq!(
            (rec.agent, rec.fence, rec.attempt),
            (Some(l.agent), l.fence, 1)
        );
    }
}

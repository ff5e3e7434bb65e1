//! The audit log on Redis, tampered with from outside with plain Redis
//! commands: two hubs appending at once keep one chain, and an edited or
//! deleted entry is named by verification.

use std::sync::Arc;

use torch_store::AuditStore;
use torch_store::audit::verify_store;
use torch_store::conformance::audit::entry;

use crate::Redis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_keep_one_chain_and_tampering_shows() {
    let Some(h) = Redis::start(&[]) else { return };
    let (a, b) = (Arc::new(h.store().await), Arc::new(h.store().await));
    let hub = |s: Arc<torch_store_redis::RedisStore>, name: &'static str| {
        tokio::spawn(async move {
            for n in 0..50u64 {
                s.audit_append(vec![entry(n, name), entry(n + 1, name)])
                    .await
                    .expect("append");
            }
        })
    };
    let (x, y) = (hub(a.clone(), "hub:a"), hub(b.clone(), "hub:b"));
    x.await.expect("hub a");
    y.await.expect("hub b");
    let report = verify_store(&*b, None).await.expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries, 200);
    let both = a.audit_range(0, 1000).await.expect("range");
    assert!(both.iter().any(|e| e.entry.actor == "hub:a"));
    assert!(both.iter().any(|e| e.entry.actor == "hub:b"));

    let client = redis::Client::open(h.server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // Change who did entry 42.
    let raw: String = redis::cmd("HGET")
        .arg("{torch}:audit:e")
        .arg(42)
        .query_async(&mut conn)
        .await
        .expect("hget");
    let edited = raw.replacen("hub:", "hub:x", 1);
    assert_ne!(raw, edited);
    let _: () = redis::cmd("HSET")
        .arg("{torch}:audit:e")
        .arg(42)
        .arg(&edited)
        .query_async(&mut conn)
        .await
        .expect("hset");
    let p = verify_store(&*a, None)
        .await
        .expect("verify")
        .problem
        .expect("caught");
    assert_eq!((p.seq, p.kind.as_str()), (42, "modified"));
    // Delete entry 17.
    let _: () = redis::cmd("HDEL")
        .arg("{torch}:audit:e")
        .arg(17)
        .query_async(&mut conn)
        .await
        .expect("hdel");
    let p = verify_store(&*a, None)
        .await
        .expect("verify")
        .problem
        .expect("caught");
    assert_eq!((p.seq, p.kind.as_str()), (17, "deleted"));
}

//! The seed's streams are real Redis streams: an outside reader follows
//! them with plain `XREAD`, and they stay bounded by `maxlen`.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;
use torch_core::{EventKind, OutcomeKind};
use torch_store::{EventLog, TASKS_COMPLETED, TASKS_QUEUE, TaskStore};
use torch_store_redis::RedisOptions;

use crate::Redis;
use torch_store::conformance::{NOW, lease, report, task, tid};

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).expect("utf-8"),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

/// `[[id, [field, value, …]], …]` as (id, fields) pairs.
fn entries(v: &Value) -> Vec<(String, HashMap<String, String>)> {
    let Value::Array(items) = v else {
        panic!("not entries: {v:?}")
    };
    items
        .iter()
        .map(|e| {
            let Value::Array(parts) = e else {
                panic!("not an entry: {e:?}")
            };
            let Value::Array(kv) = &parts[1] else {
                panic!("no fields: {e:?}")
            };
            let fields = kv.chunks(2).map(|p| (text(&p[0]), text(&p[1]))).collect();
            (text(&parts[0]), fields)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_reader_follows_bounded_streams() {
    let Some(mut h) = Redis::start(&[]) else {
        return;
    };
    h.opts = RedisOptions {
        maxlen: 10,
        ..RedisOptions::default()
    };
    let s = h.store().await;
    let completed = format!("{{torch}}:stream:{TASKS_COMPLETED}");
    let queue = format!("{{torch}}:stream:{TASKS_QUEUE}");

    // A reader on its own connection blocks for the next completion.
    let raw = redis::Client::open(h.server.url()).expect("client");
    let mut reader = raw
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .expect("connect");
    let key = completed.clone();
    let waiting = tokio::spawn(async move {
        let reply: Value = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(10_000)
            .arg("STREAMS")
            .arg(&key)
            .arg("$")
            .query_async(&mut reader)
            .await
            .expect("XREAD");
        reply
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.submit(vec![task(1, &[])], NOW).await.expect("submit");
    let l = lease(&s, 1, 1, NOW).await;
    s.finish(vec![report(&l, OutcomeKind::Succeeded)], NOW + 5)
        .await
        .expect("finish");
    let reply = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("XREAD returned")
        .expect("join");
    let Value::Array(streams) = &reply else {
        panic!("XREAD reply: {reply:?}")
    };
    let Value::Array(stream) = &streams[0] else {
        panic!("stream: {reply:?}")
    };
    assert_eq!(text(&stream[0]), completed);
    let got = entries(&stream[1]);
    assert_eq!(got.len(), 1);
    let (id, f) = &got[0];
    let last = s.last_event_id().await.expect("last");
    assert_eq!(id, &format!("0-{last}"), "entry id is the global event id");
    assert_eq!(f["kind"], EventKind::TaskSucceeded.name());
    assert_eq!(f["task"], tid(1).to_string());
    assert_eq!(f["at"], (NOW + 5).to_string());
    let data: serde_json::Value = serde_json::from_str(&f["data"]).expect("json");
    assert_eq!(data["fence"], l.fence);

    // 500 submissions: the queue stream keeps about `maxlen` of them
    // (`MAXLEN ~` trims whole nodes of 100 entries).
    s.submit((2..502).map(|n| task(n, &[])).collect(), NOW)
        .await
        .expect("submit");
    let mut conn = raw
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let len: u64 = redis::cmd("XLEN")
        .arg(&queue)
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    assert!(
        (10..=110).contains(&len),
        "queue stream holds {len} entries"
    );
    let all: Value = redis::cmd("XRANGE")
        .arg(&queue)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let all = entries(&all);
    let last = s.last_event_id().await.expect("last");
    assert_eq!(all.last().map(|e| e.0.clone()), Some(format!("0-{last}")));
    assert_eq!(
        all.last().map(|e| e.1["task"].clone()),
        Some(tid(501).to_string())
    );
    // The store's own reader sees exactly what is kept, in the same order.
    let kept = s
        .events(0, vec![TASKS_QUEUE.into()], 0)
        .await
        .expect("events");
    let ids: Vec<String> = kept.iter().map(|e| format!("0-{}", e.id)).collect();
    let raw_ids: Vec<String> = all.iter().map(|e| e.0.clone()).collect();
    assert_eq!(ids, raw_ids);
}

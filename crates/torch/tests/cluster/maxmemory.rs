//! Redis `maxmemory` reached under a real hub (issue 6): submitters get a
//! clear 503 `store_full` with `Retry-After`, and nothing is corrupted:
//! every task accepted before is intact, the refused batch left nothing
//! behind, and once memory is raised every task succeeds exactly once.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use torch_store_redis::testing::RedisServer;

use crate::harness::{Agent, Api, Hub, Response, TestDir, secs};

/// Tasks per submission.
const BATCH: usize = 10;
/// Bytes of padding per task, so memory fills in a few hundred submissions.
const PAD: usize = 2048;
/// Room left above what Redis uses once the hub and agent are up.
const HEADROOM: u64 = 3 << 20;

/// One command to the test's own `redis-server` (RESP over a plain socket,
/// so this test binary needs no Redis client); returns the reply's text.
fn redis(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis-server");
    s.set_read_timeout(Some(secs(10))).expect("read timeout");
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).expect("send to redis-server");
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..10_000 {
        let n = s.read(&mut buf).expect("read from redis-server");
        assert!(n > 0, "redis-server closed the connection");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        let Some((head, rest)) = text.split_once("\r\n") else {
            continue;
        };
        assert!(!head.starts_with('-'), "redis {args:?}: {head}");
        match head.strip_prefix('$') {
            Some(len) => {
                let len: usize = len.parse().expect("bulk length");
                if rest.len() >= len {
                    return rest[..len].to_string();
                }
            }
            None => return head.to_string(),
        }
    }
    panic!("no whole reply from redis-server to {args:?}");
}

fn used_memory(port: u16) -> u64 {
    redis(port, &["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO memory has used_memory")
}

/// Task `n`: runs `true`, padded so memory fills quickly, with an
/// idempotency key so a resubmission shows whether it was stored.
fn spec(n: usize, pad: &str) -> Value {
    json!({
        "name": format!("fill-{n}"),
        "command": ["true"],
        "skills": ["sh"],
        "env": {"PAD": pad},
        "idempotency_key": format!("fill-key-{n}"),
    })
}

fn post_batch(api: &Api, specs: &[Value]) -> Response {
    api.post("/api/v1/tasks", &json!({ "tasks": specs }))
}

/// The ids and `duplicate` flags of a 201 answer.
fn accepted(r: &Response) -> Vec<(String, bool)> {
    assert_eq!(r.status, 201, "submit: {}", r.text());
    r.json()["tasks"]
        .as_array()
        .expect("tasks array")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().expect("id").to_string(),
                t["duplicate"].as_bool().expect("duplicate"),
            )
        })
        .collect()
}

fn role(api: &Api) -> String {
    api.request("GET", "/api/v1/health", None)
        .ok()
        .map(|r| r.json()["role"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn maxmemory_reached_submitters_get_503_store_full_and_nothing_is_corrupted() {
    let _machine = crate::machine_shared();
    let Some(server) = RedisServer::start_or_skip(&["--maxmemory-policy", "noeviction"]) else {
        return;
    };
    let port = server.port();
    let dir = TestDir::new("redis-maxmemory");
    let url = server.url();
    let hub = Hub::start(&dir, &[("TORCH_STORE__URL", url.as_str())]);
    let api = hub.api();
    dir.wait_for("the hub to lead", secs(20), || {
        (role(&api) == "leader").then_some(())
    });
    // An agent runs tasks all along, so starts and finishes also meet the
    // full store, not only submissions.
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a", "sh", 4);
    api.agent_id(&dir, "a");

    let limit = used_memory(port) + HEADROOM;
    redis(port, &["CONFIG", "SET", "maxmemory", &limit.to_string()]);

    let pad = "x".repeat(PAD);
    let mut ids: BTreeMap<usize, String> = BTreeMap::new();
    let mut refused = None;
    let start = Instant::now();
    for round in 0..2_000 {
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
        let nums: Vec<usize> = (round * BATCH..(round + 1) * BATCH).collect();
        let specs: Vec<Value> = nums.iter().map(|n| spec(*n, &pad)).collect();
        let r = post_batch(&api, &specs);
        if r.status == 201 {
            for (n, (id, dup)) in nums.iter().zip(accepted(&r)) {
                assert!(!dup, "fresh key fill-key-{n} reported as duplicate");
                ids.insert(*n, id);
            }
        } else {
            refused = Some((nums, specs, r));
            break;
        }
    }
    let (refused_nums, refused_specs, r) = refused.unwrap_or_else(|| {
        panic!(
            "no submission was refused within 20,000 tasks or 60 s ({} accepted, maxmemory {limit})",
            ids.len()
        )
    });
    eprintln!(
        "maxmemory {limit}: {} tasks accepted before the refusal after {} ms",
        ids.len(),
        start.elapsed().as_millis()
    );

    // A clear refusal.
    assert_eq!(r.status, 503, "refused with {}: {}", r.status, r.text());
    let body = r.json();
    assert_eq!(body["code"], "store_full", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("maxmemory") && message.contains("nothing was written"),
        "{message}"
    );
    let retry_after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Retry-After: {:?}", r.headers));
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert!(!ids.is_empty(), "some submissions fit first");

    // Nothing corrupted, read while the store is still full: every accepted
    // task is there with its spec, and the refused batch added no task.
    for (n, id) in &ids {
        let t = api.task(id);
        assert_eq!(t["name"], format!("fill-{n}"), "{id}");
        assert_eq!(t["spec"]["env"]["PAD"].as_str(), Some(pad.as_str()), "{id}");
        assert_eq!(
            t["spec"]["idempotency_key"],
            format!("fill-key-{n}"),
            "{id}"
        );
        assert_eq!(t["spec"]["command"], json!(["true"]), "{id}");
    }
    let total: u64 = api.counts().values().sum();
    assert_eq!(
        total,
        ids.len() as u64,
        "the task list holds exactly the accepted tasks"
    );

    // With room again: the refused batch is new (its keys were never
    // stored), an accepted batch is a duplicate of what was stored.
    redis(port, &["CONFIG", "SET", "maxmemory", "0"]);
    let again = accepted(&post_batch(&api, &refused_specs));
    for (n, (id, dup)) in refused_nums.iter().zip(again) {
        assert!(!dup, "refused key fill-key-{n} was stored after all");
        ids.insert(*n, id);
    }
    let first: Vec<Value> = (0..BATCH).map(|n| spec(n, &pad)).collect();
    for (n, (id, dup)) in (0..BATCH).zip(accepted(&post_batch(&api, &first))) {
        assert!(dup, "accepted key fill-key-{n} was lost");
        assert_eq!(ids[&n], id, "fill-key-{n} maps to its first task");
    }

    // Every task ends succeeded, exactly once.
    let want = ids.len() as u64;
    dir.wait_for("every task to succeed", secs(180), || {
        let c = api.counts();
        let bad: u64 = ["dead", "cancelled"].iter().filter_map(|s| c.get(*s)).sum();
        assert_eq!(bad, 0, "tasks ended badly: {c:?}");
        (c.get("succeeded").copied().unwrap_or(0) == want).then_some(())
    });
    assert_eq!(api.counts().values().sum::<u64>(), want, "no extra task");
    let all: Vec<String> = ids.values().cloned().collect();
    crate::multihub::assert_exactly_once(&api, &all);
    let retried = ids
        .values()
        .filter(|id| api.task(id)["attempt"].as_u64() != Some(1))
        .count();
    eprintln!(
        "maxmemory: {want} tasks succeeded once each ({retried} needed more than one attempt), {} ms",
        start.elapsed().as_millis()
    );
}

//! Rough throughput of a store: submit + assign (+ start) + finish cycles.
//!
//! ```text
//! cargo run -p torch-store-redis --release --example store_cycles [rounds]
//! cargo run -p torch-store-redis --release --example store_cycles [rounds] --store redis://127.0.0.1:6390/0 [--batch 256]
//! ```
//!
//! SQLite (the default): two shapes, (1) batched calls of 512 tasks each
//! (what the hub's loops do under load), and (2) many concurrent single-task
//! calls, which the writer groups into shared commits; submit, assign and
//! finish per cycle.
//!
//! Redis (`--store redis://…`, use a scratch server: the run writes under a
//! fresh key prefix and leaves it there): submit, assign, start and finish
//! per cycle, batched (256 by default) and as concurrent single-task
//! callers, with the Redis round trips per task and the server memory per
//! stored task.
//!
//! `--hub-like` (Redis): the calls the hub makes in a burst instead: tasks
//! with routing and analysis, submitted 500 per call, assigned 64 per call
//! with a five-candidate explanation each, finished 100 per call (no
//! separate start). For the Redis scripts' own cost, run the server under
//! `valgrind --tool=callgrind` and divide its instruction count by the
//! tasks (docs/benchmarks.md): unlike wall time, it repeats exactly.
//!
//! Not a benchmark harness: one run, wall clock.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use torch_core::{AgentId, Evidence, Outcome, TaskId, TaskSpec};
use torch_store::sqlite::{SqliteOptions, SqliteStore};
use torch_store::{FenceCheck, Finish, FinishResult, Grant, Leased, NewTask, Store, TaskStore};
use torch_store_redis::{RedisOptions, RedisStore};

fn tid(n: u64) -> TaskId {
    format!("00000000-0000-7000-8000-{n:012x}")
        .parse()
        .expect("valid uuid")
}

fn new_task(n: u64) -> NewTask {
    NewTask {
        id: tid(n),
        name: format!("bench-{n}"),
        spec: TaskSpec {
            command: Some(vec!["true".into()]),
            skills: vec!["sh".parse().expect("skill")],
            ..TaskSpec::default()
        },
        deps: Vec::new(),
        routing: None,
        analysis: None,
        parent: None,
    }
}

/// One full cycle for tasks `first..first + count`: one batched call per step.
async fn cycle<S: Store>(s: &S, agent: AgentId, first: u64, count: u64, now: u64, start: bool) {
    let batch = (first..first + count).map(new_task).collect();
    s.submit(batch, now).await.expect("submit");
    let grants = (first..first + count)
        .map(|n| Grant {
            task: tid(n),
            agent,
            expires_ms: now + 60_000,
            explanation: None,
        })
        .collect();
    let leased: Vec<_> = s
        .assign(grants, now)
        .await
        .expect("assign")
        .into_iter()
        .map(|l| l.expect("queued"))
        .collect();
    if start {
        let held = leased.iter().map(|l| (l.task, l.fence)).collect();
        let started = s.start(held, now).await.expect("start");
        assert!(started.iter().all(|c| *c == FenceCheck::Ok));
    }
    succeed(s, agent, &leased, now).await;
}

/// Reports every lease in `leased` succeeded (one call), which must be recorded.
async fn succeed<S: Store>(s: &S, agent: AgentId, leased: &[Leased], now: u64) {
    let reports = leased
        .iter()
        .map(|l| Finish {
            task: l.task,
            fence: l.fence,
            agent,
            outcome: Outcome::succeeded(Evidence::default()),
            logs: None,
        })
        .collect();
    let done = s.finish(reports, now).await.expect("finish");
    assert!(done.iter().all(|d| matches!(d, FinishResult::Recorded(_))));
}

/// `concurrency` callers, each running `per_caller` single-task cycles.
async fn concurrent<S: Store>(
    s: &Arc<S>,
    agent: AgentId,
    concurrency: u64,
    per_caller: u64,
    start: bool,
) -> f64 {
    let t = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        let s = Arc::clone(s);
        callers.spawn(async move {
            for i in 0..per_caller {
                cycle(s.as_ref(), agent, (c << 24) | i, 1, 1_000, start).await;
            }
        });
    }
    while let Some(r) = callers.join_next().await {
        r.expect("caller");
    }
    t.elapsed().as_secs_f64()
}

struct Args {
    rounds: u64,
    store: Option<String>,
    batch: Option<u64>,
    hub_like: bool,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 100,
        store: None,
        batch: None,
        hub_like: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--store" => a.store = it.next(),
            "--batch" => a.batch = it.next().map(|b| b.parse().expect("batch size")),
            "--hub-like" => a.hub_like = true,
            n => a.rounds = n.parse().expect("rounds"),
        }
    }
    a
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let agent: AgentId = "00000000-0000-7000-9000-000000000001"
        .parse()
        .expect("uuid");
    match a.store.as_deref() {
        None | Some("sqlite") => rt.block_on(sqlite(a.rounds, a.batch.unwrap_or(512), agent)),
        Some(url) if a.hub_like => rt.block_on(hub_like(url, a.rounds, agent)),
        Some(url) => rt.block_on(redis(url, a.rounds, a.batch.unwrap_or(256), agent)),
    }
}

async fn sqlite(rounds: u64, batch: u64, agent: AgentId) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut out = std::io::stdout().lock();
    for full in [false, true] {
        let path = dir.path().join(format!("batched-{full}.db"));
        let opts = SqliteOptions {
            synchronous_full: full,
            ..SqliteOptions::default()
        };
        let s = SqliteStore::open(&path, opts).expect("open");
        let t = Instant::now();
        for r in 0..rounds {
            cycle(&s, agent, r * batch, batch, 1_000 + r, false).await;
        }
        let secs = t.elapsed().as_secs_f64();
        let n = rounds * batch;
        writeln!(
            out,
            "batched x{batch}, synchronous_full={full}: {n} cycles in {secs:.2}s = {:.0} cycles/s",
            n as f64 / secs
        )
        .expect("stdout");
    }

    // 512 concurrent callers, one task per call.
    let s = Arc::new(
        SqliteStore::open(&dir.path().join("single.db"), SqliteOptions::default()).expect("open"),
    );
    let per_caller = rounds.max(1);
    let secs = concurrent(&s, agent, 512, per_caller, false).await;
    let n = per_caller * 512;
    writeln!(
        out,
        "512 concurrent single-task callers: {n} cycles in {secs:.2}s = {:.0} cycles/s",
        n as f64 / secs
    )
    .expect("stdout");
}

/// `used_memory` of the server, in bytes.
async fn used_memory(url: &str) -> u64 {
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn redis(url: &str, rounds: u64, batch: u64, agent: AgentId) {
    let mut out = std::io::stdout().lock();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let opts = |shape: &str| RedisOptions {
        key_prefix: format!("bench-{shape}-{stamp}"),
        ..RedisOptions::default()
    };
    let before = used_memory(url).await;
    let s = RedisStore::open(url, opts("batched"))
        .await
        .expect("open redis store");
    let trips = s.round_trips();
    let t = Instant::now();
    for r in 0..rounds {
        cycle(&s, agent, r * batch, batch, 1_000 + r, true).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let n = rounds * batch;
    let trips = s.round_trips() - trips;
    let memory = used_memory(url).await.saturating_sub(before);
    writeln!(
        out,
        "redis batched x{batch} (submit, assign, start, finish): {n} cycles in {secs:.2}s = \
         {:.0} cycles/s; {trips} round trips = {:.4} per task; ~{} bytes of server memory per \
         finished task (task, indexes, its share of the bounded streams)",
        n as f64 / secs,
        trips as f64 / n as f64,
        memory / n.max(1),
    )
    .expect("stdout");

    let s = Arc::new(
        RedisStore::open(url, opts("single"))
            .await
            .expect("open redis store"),
    );
    let per_caller = (rounds / 4).max(1);
    let concurrency = 256;
    let trips = s.round_trips();
    let secs = concurrent(&s, agent, concurrency, per_caller, true).await;
    let n = per_caller * concurrency;
    let trips = s.round_trips() - trips;
    writeln!(
        out,
        "redis {concurrency} concurrent single-task callers: {n} cycles in {secs:.2}s = {:.0} \
         cycles/s; {:.1} round trips per task",
        n as f64 / secs,
        trips as f64 / n as f64
    )
    .expect("stdout");
}

/// A task as the hub submits it: routing and analysis included.
fn hub_task(n: u64, idx: &torch_core::routing::taxonomy::TaxonomyIndex) -> NewTask {
    let mut t = new_task(n);
    let history = torch_core::routing::History::new();
    let analysis = torch_core::routing::analyze_with(&t.spec, idx, &history, &[]);
    let queued =
        torch_core::scheduler::QueuedTask::from_spec(t.id, 0, &t.spec).with_analysis(&analysis);
    t.routing = Some(torch_store::Routing::of(&queued));
    t.analysis = serde_json::to_string(&analysis).ok();
    t
}

/// An explanation with five candidates, as the router writes one.
fn explanation(agent: AgentId) -> String {
    use torch_core::routing::{AssignMode, Candidate, Explanation, FactorScore};
    let factors = torch_core::routing::score::TORCH_FACTORS
        .iter()
        .map(|name| FactorScore {
            name: (*name).into(),
            value: 0.4375,
            weight: 0.2,
        })
        .collect::<Vec<_>>();
    let e = Explanation {
        policy: "torch".into(),
        chosen: agent,
        mode: AssignMode::Batch,
        candidates: vec![
            Candidate {
                agent,
                total: 0.5156,
                used: 9,
                factors,
            };
            5
        ],
        feasible: 22,
        rejected: Vec::new(),
        rejected_counts: [("no-free-slot".to_string(), 78)].into(),
        not_examined: 0,
        notes: Vec::new(),
    };
    serde_json::to_string(&e).expect("explanation")
}

/// See the module docs: `rounds` × 500 tasks through the hub's call shapes.
async fn hub_like(url: &str, rounds: u64, agent: AgentId) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let opts = RedisOptions {
        key_prefix: format!("bench-hub-{stamp}"),
        ..RedisOptions::default()
    };
    let s = RedisStore::open(url, opts).await.expect("open redis store");
    let idx = torch_core::routing::taxonomy::Taxonomy::default().compile();
    let expl = explanation(agent);
    let t = Instant::now();
    let mut n = 0;
    for r in 0..rounds {
        let ids: Vec<u64> = (r * 500..(r + 1) * 500).collect();
        let batch = ids.iter().map(|&i| hub_task(i, &idx)).collect();
        s.submit(batch, 1_000 + r).await.expect("submit");
        let mut leased = Vec::new();
        for chunk in ids.chunks(64) {
            let grants = chunk
                .iter()
                .map(|&i| Grant {
                    task: tid(i),
                    agent,
                    expires_ms: 60_000,
                    explanation: Some(expl.clone()),
                })
                .collect();
            for l in s.assign(grants, 1_000 + r).await.expect("assign") {
                leased.push(l.expect("queued"));
            }
        }
        for chunk in leased.chunks(100) {
            succeed(&s, agent, chunk, 1_000 + r).await;
        }
        n += ids.len();
    }
    let secs = t.elapsed().as_secs_f64();
    writeln!(
        std::io::stdout().lock(),
        "redis hub-like (submit x500, assign x64 with explanations, finish x100): {n} tasks in \
         {secs:.2}s = {:.0} tasks/s",
        n as f64 / secs
    )
    .expect("stdout");
}

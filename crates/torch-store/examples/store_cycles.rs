//! Rough throughput of the SQLite store: submit + assign + finish cycles.
//!
//! `cargo run -p torch-store --release --example store_cycles [rounds]`
//!
//! Two shapes: (1) batched calls of 512 tasks each (what the hub's loops do
//! under load), and (2) many concurrent single-task calls, which the writer
//! groups into shared commits. Not a benchmark harness: one run, wall clock.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use torch_core::{AgentId, Evidence, Outcome, TaskId, TaskSpec};
use torch_store::sqlite::{SqliteOptions, SqliteStore};
use torch_store::{Finish, FinishResult, Grant, NewTask, Store};

const BATCH: u64 = 512;

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

/// One full cycle for tasks `first..first + count` in three batched calls.
async fn cycle(s: &SqliteStore, agent: AgentId, first: u64, count: u64, now: u64) {
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
    let leased = s.assign(grants, now).await.expect("assign");
    let reports = leased
        .into_iter()
        .map(|l| {
            let l = l.expect("queued");
            Finish {
                task: l.task,
                fence: l.fence,
                agent,
                outcome: Outcome::succeeded(Evidence::default()),
                logs: None,
            }
        })
        .collect();
    let done = s.finish(reports, now).await.expect("finish");
    assert!(done.iter().all(|d| matches!(d, FinishResult::Recorded(_))));
}

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .map(|r| r.parse().expect("rounds"))
        .unwrap_or(100);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut out = std::io::stdout().lock();
    rt.block_on(async {
        let agent: AgentId = "00000000-0000-7000-9000-000000000001"
            .parse()
            .expect("uuid");
        for full in [false, true] {
            let path = dir.path().join(format!("batched-{full}.db"));
            let opts = SqliteOptions {
                synchronous_full: full,
                ..SqliteOptions::default()
            };
            let s = SqliteStore::open(&path, opts).expect("open");
            let t = Instant::now();
            for r in 0..rounds {
                cycle(&s, agent, r * BATCH, BATCH, 1_000 + r).await;
            }
            let secs = t.elapsed().as_secs_f64();
            let n = rounds * BATCH;
            writeln!(
                out,
                "batched x{BATCH}, synchronous_full={full}: {n} cycles in {secs:.2}s = {:.0} cycles/s",
                n as f64 / secs
            )
            .expect("stdout");
        }

        // 512 concurrent callers, one task per call.
        let s = Arc::new(SqliteStore::open(&dir.path().join("single.db"), SqliteOptions::default()).expect("open"));
        let per_caller = rounds.max(1);
        let t = Instant::now();
        let mut callers = tokio::task::JoinSet::new();
        for c in 0..BATCH {
            let s = Arc::clone(&s);
            callers.spawn(async move {
                for i in 0..per_caller {
                    cycle(&s, agent, (c << 24) | i, 1, 1_000).await;
                }
            });
        }
        while let Some(r) = callers.join_next().await {
            r.expect("caller");
        }
        let secs = t.elapsed().as_secs_f64();
        let n = per_caller * BATCH;
        writeln!(
            out,
            "{BATCH} concurrent single-task callers: {n} cycles in {secs:.2}s = {:.0} cycles/s",
            n as f64 / secs
        )
        .expect("stdout");
    });
}

//! The scheduler under a burst, as `torch bench throughput` drives it: 100
//! agents × 16 slots with the same skill, a deep queue of identical no-op
//! tasks, and rounds in which a few agents finish a handful of tasks (their
//! slots free up, the outcome is learned) and the scheduler places as many
//! as fit. Prints placements and wall time; run it under
//! `valgrind --tool=callgrind` for instruction counts that repeat exactly.
//!
//! ```text
//! cargo run --release -p torch-core --example sched_burst [tasks]
//! ```

#![allow(clippy::print_stdout)]

use std::time::Instant;

use torch_core::scheduler::{AgentSlots, QueuedTask, Scheduler};
use torch_core::skill::{Skill, SkillReq};
use torch_core::{AgentId, TaskId};

const AGENTS: u64 = 100;
const SLOTS: u32 = 16;

fn main() {
    let tasks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut s: Scheduler<_> = Scheduler::new();
    let agents: Vec<AgentId> = (0..AGENTS)
        .map(|i| AgentId::from_uuid(uuid::Uuid::from_u64_pair(0xa9e, i)))
        .collect();
    for &a in &agents {
        s.upsert_agent(AgentSlots::new(
            a,
            vec![Skill {
                name: "bench".into(),
                level: 1.0,
            }],
            SLOTS,
        ));
    }
    let req = vec![SkillReq {
        name: "bench".into(),
        min: 0.0,
    }];
    for n in 0..tasks {
        let id = TaskId::from_uuid(uuid::Uuid::from_u64_pair(0x7a5c, n));
        s.enqueue(QueuedTask::new(id, 0, n + 1, req.clone()));
    }
    let start = Instant::now();
    let mut now = 1_000_000u64;
    // Which agent holds each running task, oldest first.
    let mut running: std::collections::VecDeque<AgentId> = std::collections::VecDeque::new();
    let mut placed = 0u64;
    let mut passes = 0u64;
    while placed < tasks {
        for p in s.schedule(now, 8192) {
            running.push_back(p.agent);
            placed += 1;
        }
        passes += 1;
        // 48 tasks end (about what one batch of agents' reports frees).
        for _ in 0..48 {
            let Some(a) = running.pop_front() else { break };
            s.release_slot(a);
            s.record_outcome(a, &req, None, true, 1, now);
        }
        now += 3;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{placed} placements in {passes} passes, {secs:.3} s = {:.2} µs per placement",
        secs * 1e6 / placed as f64
    );
}

//! Tests of the routing simulation, and the (ignored) tuning sweep.

use super::*;
use crate::ids::{AgentId, TaskId};
use crate::routing::score::{Scored, TaskView, Weights};

#[test]
fn shipped_seed_meets_the_targets() {
    let r = run(DEFAULT_SEED);
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    let mean = |k: &str| r.policies[k].mean_completion_s;
    assert!(
        mean("torch") <= 0.75 * mean("least_loaded"),
        "torch vs least_loaded {}",
        r.torch_vs_least_loaded
    );
    assert!(mean("torch") < mean("round_robin"));
    assert!(mean("torch") < mean("random"));
    assert!(r.torch_vs_lower_bound >= 1.0);
    for p in r.policies.values() {
        assert_eq!(p.success_rate, 1.0, "every task can succeed and does");
    }
    let json = serde_json::to_value(&r).unwrap();
    for k in [
        "torch",
        "least_loaded",
        "round_robin",
        "random",
        "lower_bound",
    ] {
        for f in [
            "mean_completion_s",
            "p95_completion_s",
            "success_rate",
            "makespan_s",
        ] {
            assert!(json["policies"][k][f].is_number(), "{k}.{f}");
        }
    }
    assert_eq!(r, run(DEFAULT_SEED), "deterministic");
}

/// Knows the hidden speeds, failure rates and warm repositories: the best a
/// greedy router could do under the same queue rules. For tuning only.
struct Oracle {
    speed: Vec<BTreeMap<String, f64>>,
    fail: Vec<BTreeMap<String, f64>>,
    agent_ix: BTreeMap<AgentId, usize>,
    task_repo: BTreeMap<TaskId, usize>,
    last: Vec<BTreeMap<usize, u64>>,
    now: u64,
}

impl Oracle {
    fn new(w: &Workload) -> Self {
        Oracle {
            speed: w.agents.iter().map(|a| a.speed.clone()).collect(),
            fail: w.agents.iter().map(|a| a.fail.clone()).collect(),
            agent_ix: w
                .agents
                .iter()
                .enumerate()
                .map(|(i, a)| (a.id, i))
                .collect(),
            task_repo: w.tasks.iter().map(|t| (t.id, t.repo)).collect(),
            last: vec![BTreeMap::new(); w.agents.len()],
            now: 0,
        }
    }
}

impl Placer for Oracle {
    fn name(&self) -> &str {
        "oracle"
    }
    fn factors(&self, _: &RoutingConfig) -> Vec<(&'static str, f64)> {
        vec![("oracle", 1.0)]
    }
    fn score(&mut self, view: &TaskView<'_>, agent: &AgentSlots) -> Scored {
        let a = self.agent_ix[&agent.id];
        let n = view.task.skills.len().max(1) as f64;
        let sp: f64 = view
            .task
            .skills
            .iter()
            .map(|s| self.speed[a][&s.name])
            .sum::<f64>()
            / n;
        let f: f64 = view
            .task
            .skills
            .iter()
            .map(|s| self.fail[a][&s.name])
            .sum::<f64>()
            / n;
        self.now = view.now;
        let repo = self.task_repo[&view.task.id];
        let warm = self.last[a]
            .get(&repo)
            .is_some_and(|&t| view.now - t < WARM_WINDOW_MS);
        let t = sp * if warm { WARM_FACTOR } else { 1.0 } / (1.0 - f).powi(2);
        Scored {
            total: 1.0 / t,
            values: [1.0 / t, 0.0, 0.0, 0.0, 0.0],
        }
    }
    fn placed(&mut self, task: &QueuedTask, agent: AgentId) {
        let a = self.agent_ix[&agent];
        self.last[a].insert(self.task_repo[&task.id], self.now);
    }
}

/// Torch / least-loaded mean completion across seeds for weight variants,
/// next to the oracle ceiling. Run with
/// `cargo test --release -p torch-core seed_sweep -- --ignored --nocapture`.
#[test]
#[ignore = "tuning tool; prints a table"]
fn seed_sweep() {
    let seeds: Vec<u64> = vec![42, 1, 2, 3, 4, 5, 6, 7];
    let ws: Vec<Workload> = seeds.iter().map(|&s| workload::generate(s)).collect();
    let base = |w: &Workload, s: u64| {
        simulate(w, LeastLoaded, RoutingConfig::default(), s).mean_completion_s
    };
    let ll: Vec<f64> = ws.iter().zip(&seeds).map(|(w, &s)| base(w, s)).collect();
    let row = |name: &str, r: Vec<f64>| {
        let avg = r.iter().sum::<f64>() / r.len() as f64;
        let cells: Vec<String> = r.iter().map(|x| format!("{x:.3}")).collect();
        println!("{name:>14}: avg {avg:.3} | {}", cells.join(" "));
    };
    let oracle = ws.iter().zip(&seeds).zip(&ll);
    row(
        "oracle",
        oracle
            .map(|((w, &s), l)| {
                simulate(w, Oracle::new(w), RoutingConfig::default(), s).mean_completion_s / l
            })
            .collect(),
    );
    let variants: [(&str, [f64; 5]); 4] = [
        ("default", [0.25, 0.15, 0.30, 0.25, 0.05]),
        ("no-load", [0.30, 0.00, 0.35, 0.30, 0.05]),
        ("perf-heavy", [0.20, 0.10, 0.45, 0.20, 0.05]),
        ("affinity-heavy", [0.20, 0.10, 0.30, 0.35, 0.05]),
    ];
    for (name, wt) in variants {
        let cfg = RoutingConfig {
            weights: Weights {
                skill: wt[0],
                load: wt[1],
                performance: wt[2],
                affinity: wt[3],
                cost: wt[4],
            },
            ..RoutingConfig::default()
        };
        let r = ws.iter().zip(&seeds).zip(&ll);
        row(
            name,
            r.map(|((w, &s), l)| simulate(w, Torch, cfg.clone(), s).mean_completion_s / l)
                .collect(),
        );
    }
}

/// Prints the cost of one decision with 1,000 agents (not asserted: timing
/// belongs to benchmarks). Run in release for a meaningful figure:
/// `cargo test --release -p torch-core scoring_cost -- --nocapture`.
#[test]
fn scoring_cost_with_1000_agents() {
    let (mut s, tasks) = scale_fixture(1000, 600, 7);
    let now = 100_000;
    let (single, batch) = tasks.split_at(400);
    let start = std::time::Instant::now();
    let mut feasible = 0u64;
    for t in single {
        s.enqueue(t.clone());
        let p = s.schedule(now, 1);
        assert_eq!(p.len(), 1, "the fixture always has room");
        feasible += p[0].explanation.feasible as u64;
        s.release_slot(p[0].agent);
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / single.len() as f64;
    println!(
        "scoring cost, 1,000 agents: {per:.1} µs per decision (one task per pass; {:.0} feasible candidates scored on average)",
        feasible as f64 / single.len() as f64
    );
    for t in batch {
        s.enqueue(t.clone());
    }
    let start = std::time::Instant::now();
    let placed = s.schedule(now, batch.len()).len();
    let per = start.elapsed().as_secs_f64() * 1e6 / placed.max(1) as f64;
    println!("scoring cost, 1,000 agents: {per:.1} µs per decision in a joint batch of {placed}");
    assert!(placed > 0);
}

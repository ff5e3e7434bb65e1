//! The routing simulation behind `torch bench routing`: a discrete-event
//! simulation on a virtual clock that runs the real [`Scheduler`] with each
//! policy over the shipped synthetic workload (see the `workload` module
//! docs), plus a lower bound.
//!
//! Production rules apply to every policy: hard filters, breakers, and a
//! failed attempt requeues the task (backoff 1 s doubling, at most 3 retries)
//! with the failing agent on its avoid-list. Outcome randomness is drawn per
//! (task, attempt) so all policies face the same dice.
//!
//! `lower_bound`: each task on its fastest capable agent, warm, no waiting,
//! no failure: no policy can beat its mean completion time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use serde::{Deserialize, Serialize};

use super::policy::{LeastLoaded, Placer, Random, RoundRobin, Torch};
use super::prng::SplitMix64;
use super::score::RoutingConfig;
use super::workload::{self, WARM_FACTOR, WARM_WINDOW_MS, Workload};
use crate::scheduler::{AgentSlots, QueuedTask, Scheduler};
use crate::skill::covers;
use crate::spec::TaskContext;

pub use super::scale::scale_fixture;

/// The seed `torch bench routing` uses by default.
pub const DEFAULT_SEED: u64 = 42;
/// Retries after the first attempt, as in production's default.
const MAX_RETRIES: u32 = 3;

/// Results of one policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyStats {
    /// Mean time from arrival to success, seconds (succeeded tasks).
    pub mean_completion_s: f64,
    /// 95th percentile of the same.
    pub p95_completion_s: f64,
    /// Succeeded / submitted.
    pub success_rate: f64,
    /// First arrival to last task end, seconds.
    pub makespan_s: f64,
    /// Attempts that failed (each requeued or dead).
    pub failed_attempts: u64,
    /// Attempts on a warm agent / all attempts.
    pub warm_share: f64,
    /// Mean run time of an attempt, seconds.
    pub mean_run_s: f64,
    /// Mean feasible agents per placement decision (how much choice there was).
    pub mean_feasible: f64,
    /// Busy slot-time / (slots × makespan).
    pub utilisation: f64,
}

/// The simulation report; `--json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// Workload seed.
    pub seed: u64,
    /// Agents in the fleet.
    pub agents: usize,
    /// Tasks submitted.
    pub tasks: usize,
    /// Per policy: `torch`, `least_loaded`, `round_robin`, `random`, `lower_bound`.
    pub policies: BTreeMap<String, PolicyStats>,
    /// Torch's mean completion / least-loaded's (below 0.75 meets the target).
    pub torch_vs_least_loaded: f64,
    /// Torch's mean completion / the lower bound's (≥ 1).
    pub torch_vs_lower_bound: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Task index arrives.
    Arrive(usize),
    /// `(task, agent, success, run ms)` ends.
    Finish(usize, usize, bool, u64),
}

#[allow(clippy::too_many_arguments)]
fn stats(
    completions: &mut [f64],
    succeeded: usize,
    total: usize,
    makespan_ms: u64,
    failed: u64,
    warm: f64,
    mean_run_s: f64,
    mean_feasible: f64,
    utilisation: f64,
) -> PolicyStats {
    completions.sort_by(f64::total_cmp);
    let n = completions.len();
    let mean = if n == 0 {
        0.0
    } else {
        completions.iter().sum::<f64>() / n as f64
    };
    let p95 = if n == 0 {
        0.0
    } else {
        completions[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1]
    };
    PolicyStats {
        mean_completion_s: mean,
        p95_completion_s: p95,
        success_rate: succeeded as f64 / total.max(1) as f64,
        makespan_s: makespan_ms as f64 / 1000.0,
        failed_attempts: failed,
        warm_share: warm,
        mean_run_s,
        mean_feasible,
        utilisation,
    }
}

/// Runs `placer` over the workload and measures it.
fn simulate<P: Placer>(w: &Workload, placer: P, config: RoutingConfig, seed: u64) -> PolicyStats {
    let mut sched = Scheduler::with_placer_and_config(placer, config);
    for a in &w.agents {
        sched.upsert_agent(AgentSlots {
            cost: a.cost,
            ..AgentSlots::new(a.id, a.skills.clone(), a.slots)
        });
    }
    let index: BTreeMap<_, usize> = w
        .agents
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id, i))
        .collect();
    let task_index: BTreeMap<_, usize> =
        w.tasks.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    let mut events: BinaryHeap<Reverse<(u64, u64, Event)>> = BinaryHeap::new();
    let mut seq = 0u64;
    for (i, t) in w.tasks.iter().enumerate() {
        events.push(Reverse((t.arrival_ms, seq, Event::Arrive(i))));
        seq += 1;
    }
    let mut attempts = vec![0u32; w.tasks.len()];
    let mut avoid: Vec<Vec<crate::ids::AgentId>> = vec![Vec::new(); w.tasks.len()];
    // Per agent: repository → when it last ran there.
    let mut warm: Vec<BTreeMap<usize, u64>> = vec![BTreeMap::new(); w.agents.len()];
    let (mut completions, mut succeeded, mut failed, mut last_end) =
        (Vec::new(), 0usize, 0u64, 0u64);
    let (mut runs, mut warm_runs, mut run_ms, mut feasible) = (0u64, 0u64, 0.0f64, 0u64);
    let ctx = |i: usize| {
        let t = &w.tasks[i];
        Some(TaskContext {
            repository: Some(workload::repo_url(t.repo)),
            paths: t.paths.clone(),
            parent: None,
            branch: None,
        })
    };
    let queued = |i: usize, avoid: &[crate::ids::AgentId], not_before: u64| {
        let t = &w.tasks[i];
        QueuedTask {
            preferred: t.preferred.clone(),
            context: ctx(i),
            avoid: avoid.to_vec(),
            tenant: t.tenant.clone(),
            ..QueuedTask::new(t.id, t.priority, i as u64, t.skills.clone())
                .with_not_before(not_before)
        }
    };
    loop {
        let next_ev = events.peek().map(|Reverse((t, _, _))| *t);
        let now = match (next_ev, sched.next_wakeup()) {
            (None, None) => break,
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
        };
        while let Some(&Reverse((t, _, ev))) = events.peek() {
            if t != now {
                break;
            }
            events.pop();
            match ev {
                Event::Arrive(i) => sched.enqueue(queued(i, &[], 0)),
                Event::Finish(i, a, ok, ran) => {
                    let agent = w.agents[a].id;
                    warm[a].insert(w.tasks[i].repo, now);
                    sched.release_slot(agent);
                    sched.record_outcome(agent, &w.tasks[i].skills, ctx(i).as_ref(), ok, ran, now);
                    last_end = last_end.max(now);
                    if ok {
                        succeeded += 1;
                        completions.push((now - w.tasks[i].arrival_ms) as f64 / 1000.0);
                    } else {
                        failed += 1;
                        attempts[i] += 1;
                        if attempts[i] <= MAX_RETRIES {
                            if !avoid[i].contains(&agent) {
                                avoid[i].push(agent);
                            }
                            let backoff = 1000u64 << (attempts[i] - 1).min(6);
                            sched.enqueue(queued(i, &avoid[i], now + backoff));
                        }
                    }
                }
            }
        }
        for p in sched.schedule(now, usize::MAX) {
            let Some(&a) = index.get(&p.agent) else {
                continue;
            };
            let Some(&i) = task_index.get(&p.task) else {
                continue;
            };
            let t = &w.tasks[i];
            let (speed, fail) = w.agents[a].profile_for(&t.skills);
            let is_warm = warm[a]
                .get(&t.repo)
                .is_some_and(|&at| now - at < WARM_WINDOW_MS);
            warm[a].insert(t.repo, now);
            runs += 1;
            warm_runs += is_warm as u64;
            let run = t.base_ms * speed * if is_warm { WARM_FACTOR } else { 1.0 };
            run_ms += run;
            feasible += p.explanation.feasible as u64;
            // Common random numbers: the dice depend on (seed, task, attempt) only.
            let mut dice = SplitMix64::new(
                seed ^ (i as u64).wrapping_mul(0x9E37_79B9) ^ ((attempts[i] as u64) << 48),
            );
            let ok = dice.next_f64() >= fail;
            let ran = if ok { run } else { run * 0.5 } as u64;
            events.push(Reverse((
                now + ran.max(1),
                seq,
                Event::Finish(i, a, ok, ran.max(1)),
            )));
            seq += 1;
        }
    }
    let first = w.tasks.first().map_or(0, |t| t.arrival_ms);
    let warm = warm_runs as f64 / runs.max(1) as f64;
    let mean_run_s = run_ms / runs.max(1) as f64 / 1000.0;
    let mean_feasible = feasible as f64 / runs.max(1) as f64;
    let makespan = last_end.saturating_sub(first);
    let slots: u64 = w.agents.iter().map(|a| a.slots as u64).sum();
    let util = run_ms / (slots.max(1) as f64 * makespan.max(1) as f64);
    stats(
        &mut completions,
        succeeded,
        w.tasks.len(),
        makespan,
        failed,
        warm,
        mean_run_s,
        mean_feasible,
        util,
    )
}

/// Each task on its fastest capable agent, warm, at once, never failing.
fn lower_bound(w: &Workload) -> PolicyStats {
    let mut completions = Vec::with_capacity(w.tasks.len());
    let mut end = 0u64;
    for t in &w.tasks {
        let best = w
            .agents
            .iter()
            .filter(|a| covers(&a.skills, &t.skills))
            .map(|a| t.base_ms * a.profile_for(&t.skills).0 * WARM_FACTOR)
            .fold(f64::INFINITY, f64::min);
        if best.is_finite() {
            completions.push(best / 1000.0);
            end = end.max(t.arrival_ms + best as u64);
        }
    }
    let n = completions.len();
    let first = w.tasks.first().map_or(0, |t| t.arrival_ms);
    let mean_run = completions.iter().sum::<f64>() / n.max(1) as f64;
    stats(
        &mut completions,
        n,
        w.tasks.len(),
        end.saturating_sub(first),
        0,
        1.0,
        mean_run,
        0.0,
        0.0,
    )
}

/// Runs every policy on the workload generated from `seed`.
pub fn run(seed: u64) -> SimReport {
    let w = workload::generate(seed);
    let cfg = RoutingConfig::default;
    let mut policies = BTreeMap::new();
    policies.insert("torch".to_string(), simulate(&w, Torch, cfg(), seed));
    policies.insert(
        "least_loaded".to_string(),
        simulate(&w, LeastLoaded, cfg(), seed),
    );
    policies.insert(
        "round_robin".to_string(),
        simulate(&w, RoundRobin::default(), cfg(), seed),
    );
    policies.insert(
        "random".to_string(),
        simulate(&w, Random::new(seed ^ 0x5eed), cfg(), seed),
    );
    policies.insert("lower_bound".to_string(), lower_bound(&w));
    let mean = |k: &str| policies.get(k).map_or(f64::NAN, |p| p.mean_completion_s);
    SimReport {
        seed,
        agents: w.agents.len(),
        tasks: w.tasks.len(),
        torch_vs_least_loaded: mean("torch") / mean("least_loaded"),
        torch_vs_lower_bound: mean("torch") / mean("lower_bound"),
        policies,
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;

//! A deterministic discrete-time simulation of one template's pool under the
//! real [`Autoscaler`], used to compare predictive and reactive scaling.
//!
//! One step is one autoscaler interval (1 s). Each step, in order: tasks that
//! finish free their slots; the step's arrivals join a FIFO queue; queued
//! tasks are placed on ready agents, oldest agent first (packing, so younger
//! agents go idle and can be reclaimed); the autoscaler ticks (it is told the
//! run time of every finished task, as the hub does); an `Up` adds
//! agents that become ready `spawn_delay_steps` later, a `Down` removes the
//! named agents. After the trace ends the simulation runs on until the queue
//! is empty, every task has finished and the pool is back at `min` (or a
//! cap of 1000 extra steps).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::autoscale::{Autoscaler, IdleAgent, ScaleAction, ScaleInputs, ScalingConfig};

/// Length of one step, ms (the default scaling interval).
pub const SIM_STEP_MS: u64 = 1000;
/// Idle timeout used by the simulation, in steps.
pub const SIM_IDLE_TIMEOUT_STEPS: u64 = 10;
/// Steps simulated after the trace at most.
const TAIL_CAP: u64 = 1000;

/// A recorded ramp: arrivals per 1 s interval, 67 intervals.
///
/// - 0–9 s: a trickle of 1 task/s;
/// - 10–29 s: a linear ramp to 40/s (about +2/s each second);
/// - 30–49 s: a plateau at 40/s;
/// - 50–66 s: a roughly geometric decay back to 0.
pub const RAMP_TRACE: [u32; 67] = [
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, // trickle
    3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, // ramp
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, // plateau
    34, 28, 23, 19, 15, 12, 9, 7, 5, 4, 3, 2, 2, 1, 1, 1, 0, // decay
];

/// The recorded ramp, [`RAMP_TRACE`], as a vector.
pub fn ramp_trace() -> Vec<u32> {
    RAMP_TRACE.to_vec()
}

/// The simulated pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimParams {
    /// Steps from spawn to ready.
    pub spawn_delay_steps: u32,
    /// Steps one task occupies a slot (service time).
    pub task_steps: u32,
    /// Slots per agent.
    pub slots: u32,
    /// Agents kept at least (present, ready, at step 0).
    pub min: u32,
    /// Agents at most, starting ones included.
    pub max: u32,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// Longest time any task waited in the queue, steps.
    pub peak_wait_steps: u64,
    /// The same in ms.
    pub peak_wait_ms: u64,
    /// Mean queue wait per task, steps.
    pub mean_wait: f64,
    /// Most agents at once (starting ones included).
    pub max_agents: u32,
    /// Sum over steps of agents alive (starting ones included): the cost.
    pub agent_steps: u64,
    /// Scale changes (`Up` or `Down`) decided.
    pub decisions: usize,
    /// Tasks served.
    pub tasks: u64,
    /// Steps simulated.
    pub steps: u64,
    /// Agents left at the end.
    pub final_agents: u32,
    /// Agents named in a `Down` while busy (must be 0; such agents are kept).
    pub busy_agents_downed: u32,
}

struct SimAgent {
    id: u64,
    ready_at: u64,
    /// Finish step of each running task.
    tasks: Vec<u64>,
    idle_since: u64,
}

/// Runs `trace` (arrivals per step) through a pool with `params`, with the
/// default [`ScalingConfig`] (predictive or not) and an idle timeout of
/// [`SIM_IDLE_TIMEOUT_STEPS`].
pub fn simulate(trace: &[u32], params: &SimParams, predictive: bool) -> SimReport {
    let slots = params.slots.max(1) as usize;
    let config = ScalingConfig {
        predictive,
        ..ScalingConfig::default()
    };
    let idle_timeout = std::time::Duration::from_millis(SIM_IDLE_TIMEOUT_STEPS * SIM_STEP_MS);
    let mut scaler = Autoscaler::new(
        "sim",
        params.min,
        params.max,
        params.slots,
        idle_timeout,
        config,
    );
    let mut agents: Vec<SimAgent> = (0..u64::from(params.min.min(params.max)))
        .map(|id| SimAgent {
            id,
            ready_at: 0,
            tasks: Vec::new(),
            idle_since: 0,
        })
        .collect();
    let mut next_id = agents.len() as u64;
    let mut queue: VecDeque<u64> = VecDeque::new();
    let mut report = SimReport {
        peak_wait_steps: 0,
        peak_wait_ms: 0,
        mean_wait: 0.0,
        max_agents: agents.len() as u32,
        agent_steps: 0,
        decisions: 0,
        tasks: 0,
        steps: 0,
        final_agents: 0,
        busy_agents_downed: 0,
    };
    let mut total_wait = 0u64;
    let end = trace.len() as u64 + TAIL_CAP;
    let mut t = 0u64;
    while t < end {
        let run_ms = u64::from(params.task_steps.max(1)) * SIM_STEP_MS;
        for a in &mut agents {
            let before = a.tasks.len();
            a.tasks.retain(|&f| f > t);
            for _ in a.tasks.len()..before {
                scaler.observe_run_time(run_ms);
            }
            if before > 0 && a.tasks.is_empty() {
                a.idle_since = t;
            }
        }
        let arrivals = trace.get(t as usize).copied().unwrap_or(0);
        queue.extend(std::iter::repeat_n(t, arrivals as usize));
        for a in agents.iter_mut().filter(|a| a.ready_at <= t) {
            while a.tasks.len() < slots {
                let Some(arrived) = queue.pop_front() else {
                    break;
                };
                let wait = t - arrived;
                total_wait += wait;
                report.tasks += 1;
                report.peak_wait_steps = report.peak_wait_steps.max(wait);
                a.tasks.push(t + u64::from(params.task_steps.max(1)));
            }
        }

        let ready: Vec<&SimAgent> = agents.iter().filter(|a| a.ready_at <= t).collect();
        let inputs = ScaleInputs {
            now_ms: t * SIM_STEP_MS,
            queue_depth: queue.len() as u64,
            oldest_wait_ms: queue.front().map_or(0, |&a| (t - a) * SIM_STEP_MS),
            arrivals: u64::from(arrivals),
            busy_slots: ready.iter().map(|a| a.tasks.len() as u32).sum(),
            total_slots: (ready.len() * slots) as u32,
            running: ready.len() as u32,
            starting: (agents.len() - ready.len()) as u32,
            idle: ready
                .iter()
                .map(|a| IdleAgent {
                    agent: a.id.to_string(),
                    idle_since_ms: a.idle_since * SIM_STEP_MS,
                    busy: !a.tasks.is_empty(),
                })
                .collect(),
        };
        let decision = scaler.tick(&inputs);
        if decision.is_change() {
            report.decisions += 1;
        }
        match decision.action {
            ScaleAction::Hold => {}
            ScaleAction::Up { count } => {
                let ready_at = t + u64::from(params.spawn_delay_steps);
                for _ in 0..count {
                    agents.push(SimAgent {
                        id: next_id,
                        ready_at,
                        tasks: Vec::new(),
                        idle_since: ready_at,
                    });
                    next_id += 1;
                }
            }
            ScaleAction::Down { agents: ids } => {
                for id in ids {
                    if let Some(i) = agents.iter().position(|a| a.id.to_string() == id) {
                        if agents[i].tasks.is_empty() {
                            agents.remove(i);
                        } else {
                            report.busy_agents_downed += 1;
                        }
                    }
                }
            }
        }
        report.agent_steps += agents.len() as u64;
        report.max_agents = report.max_agents.max(agents.len() as u32);
        t += 1;
        let settled = t >= trace.len() as u64
            && queue.is_empty()
            && agents.iter().all(|a| a.tasks.is_empty())
            && agents.len() as u32 <= params.min;
        if settled {
            break;
        }
    }
    report.steps = t;
    report.final_agents = agents.len() as u32;
    report.peak_wait_ms = report.peak_wait_steps * SIM_STEP_MS;
    if report.tasks > 0 {
        report.mean_wait = total_wait as f64 / report.tasks as f64;
    }
    report
}

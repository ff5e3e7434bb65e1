//! A scheduling pass: pick which tasks run (queue order, fairness), choose
//! their agents (greedy, or jointly for a batch), commit.

use std::collections::{HashMap, HashSet};

use super::eval::{Mode, PassState, evaluate, explanation, is_half_open};
use super::{Placement, Placer, Scheduler};
use crate::ids::TaskId;
use crate::routing::batch::{BatchProblem, solve};
use crate::routing::explain::{AssignMode, Explanation};
use crate::routing::score::TaskView;

/// Options per task offered to the joint solver (plus its first-fit agent).
const JOINT_OPTIONS: usize = 8;
/// Local-improvement rounds before a batch falls back to greedy.
const VERIFY_ROUNDS: usize = 4;

/// A task chosen in this pass and the agent (slab index) tentatively holding it.
struct Pick {
    id: TaskId,
    idx: usize,
    explanation: Option<Explanation>,
}

/// Requirement signature: tasks with the same one fit the same agents.
fn signature(task: &super::QueuedTask) -> String {
    let mut s = String::new();
    for r in &task.skills {
        s.push_str(&r.name);
        s.push(':');
        s.push_str(&r.min.to_bits().to_string());
        s.push(',');
    }
    for (k, v) in &task.agent_labels {
        s.push('|');
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// Takes (`+1`) or gives back (`-1`) a tentative slot; half-open agents
/// take one probe per pass.
fn apply(
    agents: &mut super::agents::AgentTable,
    probing: &mut Vec<usize>,
    idx: usize,
    now: u64,
    delta: i64,
) {
    agents.add_used(idx, delta);
    if agents.at(idx).is_some_and(|a| is_half_open(a, now)) {
        if delta > 0 {
            probing.push(idx);
        } else if let Some(p) = probing.iter().position(|&i| i == idx) {
            probing.swap_remove(p);
        }
    }
}

impl<P: Placer> Scheduler<P> {
    /// Places as many ready tasks as capacity allows (at most `limit`).
    ///
    /// Which tasks: priority first, tenants fairly within a priority, FIFO
    /// within a tenant; a task no agent can take now is skipped, not waited
    /// for. Which agents: with a policy that supports it (the default
    /// [`super::Torch`]), up to `batch-max` selected tasks are assigned
    /// jointly: each task's best options (scored at the pre-batch load) go to
    /// a min-cost assignment that accounts for the load each extra task adds,
    /// then a local-improvement check re-scores every task against the final
    /// batch and moves any task whose top candidate is another agent, so each
    /// explanation's chosen agent is its top feasible candidate. If that does
    /// not settle, the batch is placed greedily instead. Other policies place
    /// one task at a time. Placements come back in queue order.
    pub fn schedule(&mut self, now: u64, limit: usize) -> Vec<Placement> {
        self.promote_due(now);
        let mut out = Vec::new();
        let joint = self.placer.joint_load_weight(&self.config);
        while out.len() < limit && !self.agents.free().is_empty() && !self.queue.is_empty() {
            let room = limit - out.len();
            let picks = match joint {
                None => self.select(now, room, Mode::Explain),
                Some(w) => {
                    let picks = self.select(
                        now,
                        self.config.batch_max.clamp(1, room),
                        Mode::FirstFeasible,
                    );
                    if picks.is_empty() {
                        break;
                    }
                    self.assign_jointly(now, picks, w)
                }
            };
            if picks.is_empty() {
                break;
            }
            self.commit(now, picks, &mut out);
            if joint.is_none() {
                break; // one greedy scan already tried every ready task
            }
        }
        out
    }

    /// Walks the queue in fair order and tentatively places up to `max`
    /// tasks (slots taken), each on its top candidate (or first feasible).
    fn select(&mut self, now: u64, max: usize, mode: Mode) -> Vec<Pick> {
        let Scheduler {
            queue,
            tasks,
            agents,
            fleet,
            config,
            placer,
            ..
        } = self;
        let max_cost = agents.max_cost();
        let mut picks = Vec::new();
        let mut probing: Vec<usize> = Vec::new();
        let mut hopeless: HashSet<String> = HashSet::new();
        'levels: for level in queue.levels.values() {
            let mut cursors: Vec<_> = level
                .tenants
                .iter()
                .map(|(t, set)| {
                    (
                        level.pass.get(t).copied().unwrap_or(0),
                        set.iter().peekable(),
                    )
                })
                .collect();
            loop {
                if picks.len() >= max || agents.free().is_empty() {
                    break 'levels;
                }
                let mut best: Option<(usize, (u64, u64))> = None;
                for (ci, (pass, it)) in cursors.iter_mut().enumerate() {
                    if let Some(&&(seq, _)) = it.peek()
                        && best.is_none_or(|(_, k)| (*pass, seq) < k)
                    {
                        best = Some((ci, (*pass, seq)));
                    }
                }
                let Some((ci, _)) = best else { break };
                let Some(&(_, id)) = cursors[ci].1.next() else {
                    break;
                };
                let Some(task) = tasks.get(&id) else { continue };
                let sig = task.avoid.is_empty().then(|| signature(task));
                if sig.as_ref().is_some_and(|s| hopeless.contains(s)) {
                    continue;
                }
                let view = TaskView::new(task, now, config, fleet, max_cost);
                let st = PassState {
                    now,
                    breaker: &config.breaker,
                    probing: &probing,
                };
                let ev = evaluate(agents, &view, placer, &st, mode);
                let Some(top) = ev.top.first().copied() else {
                    hopeless.extend(sig);
                    continue;
                };
                let explanation = match mode {
                    Mode::Explain => explanation(ev, agents, placer, config, AssignMode::Greedy),
                    _ => None,
                };
                apply(agents, &mut probing, top.idx, now, 1);
                cursors[ci].0 += 1;
                picks.push(Pick {
                    id,
                    idx: top.idx,
                    explanation,
                });
            }
        }
        picks
    }

    /// Re-assigns tentatively placed `picks` jointly; see [`Scheduler::schedule`].
    fn assign_jointly(&mut self, now: u64, picks: Vec<Pick>, load_weight: f64) -> Vec<Pick> {
        let mut probing: Vec<usize> = Vec::new();
        for p in &picks {
            self.agents.add_used(p.idx, -1);
        }
        if picks.len() < 2 {
            return self.greedy(now, picks);
        }
        let Scheduler {
            tasks,
            agents,
            fleet,
            config,
            placer,
            ..
        } = self;
        let max_cost = agents.max_cost();
        let views: Vec<TaskView<'_>> = picks
            .iter()
            .filter_map(|p| tasks.get(&p.id))
            .map(|t| TaskView::new(t, now, config, fleet, max_cost))
            .collect();
        if views.len() != picks.len() {
            return self.greedy(now, picks);
        }
        let mut problem = BatchProblem::default();
        let mut local: HashMap<usize, usize> = HashMap::new();
        let mut slab: Vec<usize> = Vec::new();
        let mut local_of = |idx: usize, problem: &mut BatchProblem| -> usize {
            *local.entry(idx).or_insert_with(|| {
                let a = agents.at(idx);
                let free = a.map_or(0, |a| a.slots.saturating_sub(a.used));
                let cap = if a.is_some_and(|a| is_half_open(a, now)) {
                    free.min(1)
                } else {
                    free
                };
                problem.caps.push(cap);
                problem
                    .step
                    .push(load_weight / a.map_or(1, |a| a.slots.max(1)) as f64);
                slab.push(idx);
                slab.len() - 1
            })
        };
        let st = PassState {
            now,
            breaker: &config.breaker,
            probing: &[],
        };
        for (view, pick) in views.iter().zip(&picks) {
            let ev = evaluate(agents, view, placer, &st, Mode::Top(JOINT_OPTIONS));
            let mut opts: Vec<(usize, f64)> = ev
                .top
                .iter()
                .map(|c| (local_of(c.idx, &mut problem), c.score.total))
                .collect();
            if !ev.top.iter().any(|c| c.idx == pick.idx)
                && let Some(a) = agents.at(pick.idx)
            {
                let s = placer.score(view, a);
                opts.push((local_of(pick.idx, &mut problem), s.total));
            }
            problem.options.push(opts);
        }
        let Some(solution) = solve(&problem) else {
            return self.greedy(now, picks);
        };
        let mut assign: Vec<usize> = solution.iter().map(|&j| slab[j]).collect();
        for &a in &assign {
            apply(agents, &mut probing, a, now, 1);
        }
        for _ in 0..VERIFY_ROUNDS {
            let mut changed = false;
            let mut exps = Vec::with_capacity(assign.len());
            for (i, view) in views.iter().enumerate() {
                apply(agents, &mut probing, assign[i], now, -1);
                let st = PassState {
                    now,
                    breaker: &config.breaker,
                    probing: &probing,
                };
                let ev = evaluate(agents, view, placer, &st, Mode::Explain);
                if let Some(top) = ev.top.first()
                    && top.idx != assign[i]
                {
                    assign[i] = top.idx;
                    changed = true;
                }
                apply(agents, &mut probing, assign[i], now, 1);
                exps.push(explanation(ev, agents, placer, config, AssignMode::Batch));
            }
            if !changed && exps.iter().all(Option::is_some) {
                return picks
                    .into_iter()
                    .zip(assign)
                    .zip(exps)
                    .map(|((p, idx), explanation)| Pick {
                        id: p.id,
                        idx,
                        explanation,
                    })
                    .collect();
            }
        }
        for &a in &assign {
            apply(agents, &mut probing, a, now, -1);
        }
        self.greedy(now, picks)
    }

    /// Places `picks` (holding no slots) one at a time, in order; a task that
    /// no longer fits stays queued.
    fn greedy(&mut self, now: u64, picks: Vec<Pick>) -> Vec<Pick> {
        let Scheduler {
            tasks,
            agents,
            fleet,
            config,
            placer,
            ..
        } = self;
        let max_cost = agents.max_cost();
        let mut probing = Vec::new();
        let mut out = Vec::with_capacity(picks.len());
        for p in picks {
            let Some(task) = tasks.get(&p.id) else {
                continue;
            };
            let view = TaskView::new(task, now, config, fleet, max_cost);
            let st = PassState {
                now,
                breaker: &config.breaker,
                probing: &probing,
            };
            let ev = evaluate(agents, &view, placer, &st, Mode::Explain);
            let Some(top) = ev.top.first().copied() else {
                continue;
            };
            let explanation = explanation(ev, agents, placer, config, AssignMode::Greedy);
            apply(agents, &mut probing, top.idx, now, 1);
            out.push(Pick {
                id: p.id,
                idx: top.idx,
                explanation,
            });
        }
        out
    }

    /// Makes tentative picks final: dequeue, charge the tenant, stamp the
    /// agent's warm context and breaker probe, tell the policy.
    fn commit(&mut self, now: u64, picks: Vec<Pick>, out: &mut Vec<Placement>) {
        for p in picks {
            let (Some(explanation), Some(task)) = (p.explanation, self.tasks.remove(&p.id)) else {
                debug_assert!(false, "a pick without explanation or task");
                self.agents.add_used(p.idx, -1);
                continue;
            };
            self.queue.charge(task.priority, &task.tenant);
            self.queue
                .remove(task.priority, &task.tenant, task.seq, task.id);
            let Some(agent) = self.agents.at_mut(p.idx) else {
                continue;
            };
            agent.profile.touch(task.context.as_ref(), now);
            agent.profile.breaker.on_assigned(now);
            let agent = agent.id;
            self.placer.placed(&task, agent);
            out.push(Placement {
                task: task.id,
                agent,
                explanation,
            });
        }
    }
}

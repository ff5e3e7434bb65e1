//! Joint assignment of a batch of tasks to agents.
//!
//! Given the tasks the queue order selected and, for each, its best-scoring
//! agents, find the assignment with the highest total score, respecting
//! slots. A multi-factor score is `base(task, agent) + w_load × free/slots`,
//! so the k-th extra task on an agent costs `w_load × k / slots`: a convex
//! per-agent cost. That is a min-cost flow (source → task → agent → the
//! agent's k-th slot → sink), solved exactly by successive shortest paths with
//! Dijkstra on reduced costs. Costs are scaled to integers so the solver is
//! exact and deterministic; sizes are small (≤ 64 tasks × ≤ 9 options).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Utilities are scaled by this before rounding to integers.
const SCALE: f64 = 1e9;

/// A batch to assign.
#[derive(Clone, Debug, Default)]
pub(crate) struct BatchProblem {
    /// Per task: `(agent, utility at the agent's pre-batch load)`.
    pub(crate) options: Vec<Vec<(usize, f64)>>,
    /// Per agent: slots it may take in this batch.
    pub(crate) caps: Vec<u32>,
    /// Per agent: utility lost per extra task already on it (`w_load / slots`).
    pub(crate) step: Vec<f64>,
}

struct Edge {
    to: usize,
    rev: usize,
    cap: i32,
    cost: i64,
}

/// The agent for each task, or `None` when not every task can be placed.
pub(crate) fn solve(p: &BatchProblem) -> Option<Vec<usize>> {
    let n = p.options.len();
    let m = p.caps.len();
    let (s, t) = (0, n + m + 1);
    let mut g: Vec<Vec<Edge>> = (0..n + m + 2).map(|_| Vec::new()).collect();
    fn add(g: &mut [Vec<Edge>], from: usize, to: usize, cap: i32, cost: i64) -> usize {
        let (rf, rt) = (g[to].len(), g[from].len());
        g[from].push(Edge {
            to,
            rev: rf,
            cap,
            cost,
        });
        g[to].push(Edge {
            to: from,
            rev: rt,
            cap: 0,
            cost: -cost,
        });
        rt
    }
    let max_u = p
        .options
        .iter()
        .flatten()
        .map(|o| o.1)
        .fold(f64::MIN, f64::max);
    let mut incoming = vec![0u32; m];
    let mut task_edges: Vec<Vec<(usize, usize)>> = Vec::with_capacity(n);
    for (i, opts) in p.options.iter().enumerate() {
        add(&mut g, s, 1 + i, 1, 0);
        let mut mine = Vec::with_capacity(opts.len());
        for &(a, u) in opts {
            let cost = ((max_u - u) * SCALE).round() as i64;
            mine.push((add(&mut g, 1 + i, 1 + n + a, 1, cost.max(0)), a));
            incoming[a] += 1;
        }
        task_edges.push(mine);
    }
    for (a, (&cap, &inc)) in p.caps.iter().zip(&incoming).enumerate() {
        // More slot edges than tasks that could use them would be dead weight.
        for k in 0..cap.min(inc) {
            let cost = (k as f64 * p.step[a].max(0.0) * SCALE).round() as i64;
            add(&mut g, 1 + n + a, t, 1, cost);
        }
    }
    let nodes = g.len();
    let mut dual = vec![0i64; nodes];
    let mut dist = vec![i64::MAX; nodes];
    let mut prev: Vec<(usize, usize)> = vec![(usize::MAX, 0); nodes];
    let mut vis = vec![false; nodes];
    let mut heap = BinaryHeap::with_capacity(nodes);
    for _ in 0..n {
        dist.fill(i64::MAX);
        vis.fill(false);
        heap.clear();
        dist[s] = 0;
        heap.push(Reverse((0i64, s)));
        while let Some(Reverse((d, v))) = heap.pop() {
            if vis[v] || d > dist[v] {
                continue;
            }
            vis[v] = true;
            if v == t {
                break;
            }
            for (ei, e) in g[v].iter().enumerate() {
                if e.cap == 0 {
                    continue;
                }
                let cost = e.cost - dual[e.to] + dual[v];
                if dist[e.to] - dist[v] > cost {
                    dist[e.to] = dist[v] + cost;
                    prev[e.to] = (v, ei);
                    heap.push(Reverse((dist[e.to], e.to)));
                }
            }
        }
        if !vis[t] {
            return None;
        }
        for v in 0..nodes {
            if vis[v] {
                dual[v] -= dist[t] - dist[v];
            }
        }
        let mut v = t;
        while v != s {
            let (u, ei) = prev[v];
            g[u][ei].cap -= 1;
            let rev = g[u][ei].rev;
            g[v][rev].cap += 1;
            v = u;
        }
    }
    let mut out = Vec::with_capacity(n);
    for (i, edges) in task_edges.iter().enumerate() {
        let a = edges
            .iter()
            .find(|&&(ei, _)| g[1 + i][ei].cap == 0)
            .map(|&(_, a)| a)?;
        out.push(a);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(p: &BatchProblem, assign: &[usize]) -> f64 {
        let mut on = vec![0u32; p.caps.len()];
        let mut sum = 0.0;
        for (i, &a) in assign.iter().enumerate() {
            let u = p.options[i].iter().find(|o| o.0 == a).unwrap().1;
            sum += u - on[a] as f64 * p.step[a];
            on[a] += 1;
            assert!(on[a] <= p.caps[a]);
        }
        sum
    }

    #[test]
    fn beats_greedy_and_respects_caps() {
        // Greedy gives task 0 agent 0 (0.9) and leaves task 1 with 0.1;
        // jointly, 0.8 + 0.85 is better.
        let p = BatchProblem {
            options: vec![vec![(0, 0.9), (1, 0.8)], vec![(0, 0.85), (1, 0.1)]],
            caps: vec![1, 1],
            step: vec![0.0, 0.0],
        };
        let a = solve(&p).unwrap();
        assert_eq!(a, vec![1, 0]);
        assert!((total(&p, &a) - 1.65).abs() < 1e-9);
        // Load step spreads tasks when agents are otherwise equal.
        let p = BatchProblem {
            options: vec![vec![(0, 0.5), (1, 0.5)]; 4],
            caps: vec![4, 4],
            step: vec![0.1, 0.1],
        };
        let a = solve(&p).unwrap();
        assert_eq!(a.iter().filter(|&&x| x == 0).count(), 2);
        // Infeasible: two tasks, one slot.
        let p = BatchProblem {
            options: vec![vec![(0, 0.5)], vec![(0, 0.6)]],
            caps: vec![1],
            step: vec![0.0],
        };
        assert!(solve(&p).is_none());
    }

    #[test]
    fn optimal_on_small_random_instances() {
        let mut rng = super::super::prng::SplitMix64::new(3);
        for _ in 0..200 {
            let n = 1 + rng.below(4) as usize;
            let m = 1 + rng.below(3) as usize;
            let caps: Vec<u32> = (0..m).map(|_| 1 + rng.below(2) as u32).collect();
            let step: Vec<f64> = (0..m).map(|_| rng.next_f64() * 0.2).collect();
            let options: Vec<Vec<(usize, f64)>> = (0..n)
                .map(|_| {
                    let mut o = Vec::new();
                    for a in 0..m {
                        if rng.chance(0.8) {
                            o.push((a, rng.next_f64()));
                        }
                    }
                    o
                })
                .collect();
            let p = BatchProblem {
                options,
                caps,
                step,
            };
            // Brute force over all assignments.
            let mut best: Option<f64> = None;
            let mut idx = vec![0usize; n];
            'outer: loop {
                if p.options.iter().zip(&idx).all(|(o, &k)| k < o.len()) {
                    let assign: Vec<usize> =
                        p.options.iter().zip(&idx).map(|(o, &k)| o[k].0).collect();
                    let mut on = vec![0u32; m];
                    if assign.iter().all(|&a| {
                        on[a] += 1;
                        on[a] <= p.caps[a]
                    }) {
                        let v = total(&p, &assign);
                        best = Some(best.map_or(v, |b: f64| b.max(v)));
                    }
                }
                for (k, o) in idx.iter_mut().zip(&p.options) {
                    *k += 1;
                    if *k < o.len().max(1) {
                        continue 'outer;
                    }
                    *k = 0;
                }
                break;
            }
            match (solve(&p), best) {
                (Some(a), Some(b)) => {
                    assert!((total(&p, &a) - b).abs() < 1e-6, "{} vs {b}", total(&p, &a))
                }
                (None, None) => {}
                (got, want) => panic!("solver {got:?} vs brute force {want:?}"),
            }
        }
    }
}

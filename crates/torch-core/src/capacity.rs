//! Capacity planning: how many agents a pool needs to keep
//! schedule-to-start under a target, from measured arrival and service
//! rates.
//!
//! The model is **M/M/c** (Poisson arrivals, exponential service times, `c`
//! slots serving one queue) and the **Erlang C** formula: with offered load
//! `a = λ·s` (arrivals per second times mean service time), the probability
//! that a task waits at all is `C(c, a)`, and the wait of those that do is
//! exponential with rate `c·μ − λ` (`μ = 1/s`). So
//! `P(wait > t) = C(c, a)·e^{−(cμ−λ)t}`, and the p95 wait is
//! `ln(C/0.05) / (cμ − λ)` (0 when `C ≤ 0.05`). The recommendation is the
//! smallest number of agents (each with the pool's slots per agent) whose
//! p95 wait is at most the target; it never goes below what keeps
//! utilisation under 100 %, i.e. Little's law `L = λW` bounds the busy slots
//! from below by `λ·s`.
//!
//! Real task times are rarely exponential; for lower variability (fixed
//! durations) Erlang C overestimates the wait, so the recommendation errs
//! on the safe side.

/// Whether `x` is a finite number above zero.
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// Probability that an arrival waits, for `c` servers and offered load `a`
/// (Erlang C). 1 when `a ≥ c` (the queue grows without bound).
pub fn erlang_c(c: u32, a: f64) -> f64 {
    if c == 0 {
        return 1.0;
    }
    if !positive(a) {
        return 0.0;
    }
    let cf = f64::from(c);
    if a >= cf {
        return 1.0;
    }
    // Erlang B by its stable recursion, then C from B.
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (f64::from(k) + a * b);
    }
    let c_prob = cf * b / (cf - a * (1.0 - b));
    c_prob.clamp(0.0, 1.0)
}

/// The `q` quantile (e.g. 0.95) of the wait in seconds with `c` servers,
/// `lambda` arrivals per second and mean service time `service_s`.
/// `f64::INFINITY` when the servers cannot keep up.
pub fn wait_quantile(c: u32, lambda: f64, service_s: f64, q: f64) -> f64 {
    if !positive(lambda) || !positive(service_s) {
        return 0.0;
    }
    let a = lambda * service_s;
    if a >= f64::from(c) {
        return f64::INFINITY;
    }
    let p_wait = erlang_c(c, a);
    let tail = 1.0 - q;
    if p_wait <= tail {
        return 0.0;
    }
    let rate = f64::from(c) / service_s - lambda;
    (p_wait / tail).ln() / rate
}

/// Smallest number of agents (each with `slots` slots) whose p95 wait is at
/// most `target_s`, for `lambda` arrivals per second and mean service time
/// `service_s`. 0 when nothing arrives.
pub fn recommended_agents(lambda: f64, service_s: f64, slots: u32, target_s: f64) -> u32 {
    if !positive(lambda) || !positive(service_s) {
        return 0;
    }
    let slots = slots.max(1);
    let min_servers = (lambda * service_s).floor() as u64 + 1;
    let mut agents = min_servers.div_ceil(u64::from(slots)).max(1) as u32;
    // Each extra agent lowers the wait; 10 000 agents is far past any pool.
    while agents < 10_000 {
        if wait_quantile(agents.saturating_mul(slots), lambda, service_s, 0.95) <= target_s {
            break;
        }
        agents += 1;
    }
    agents
}

/// Utilisation of `servers` slots: `λ·s / c` (may exceed 1 when overloaded).
pub fn utilisation(lambda: f64, service_s: f64, servers: u32) -> f64 {
    if servers == 0 {
        return if lambda > 0.0 { f64::INFINITY } else { 0.0 };
    }
    (lambda * service_s / f64::from(servers)).max(0.0)
}

#[cfg(test)]
mod tests {
    use std::collections::BinaryHeap;

    use super::*;

    /// xorshift64*: enough randomness for a queue simulation, seeded.
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn exp(&mut self, mean: f64) -> f64 {
            -mean * self.uniform().ln()
        }
    }

    /// p95 wait of a discrete-event simulation of `servers` slots serving a
    /// Poisson stream (FIFO), with exponential service times.
    fn simulate_p95(servers: u32, lambda: f64, service_s: f64, tasks: usize, seed: u64) -> f64 {
        let mut rng = Rng(seed);
        // Min-heap of when each slot is next free, in nanoseconds.
        let mut free: BinaryHeap<std::cmp::Reverse<u64>> =
            (0..servers).map(|_| std::cmp::Reverse(0)).collect();
        let mut t = 0.0f64;
        let mut waits = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            t += rng.exp(1.0 / lambda);
            let std::cmp::Reverse(at_ns) = free.pop().expect("servers > 0");
            let start = t.max(at_ns as f64 / 1e9);
            waits.push(start - t);
            let end = start + rng.exp(service_s);
            free.push(std::cmp::Reverse((end * 1e9) as u64));
        }
        // Skip the warm-up.
        let mut w: Vec<f64> = waits[tasks / 10..].to_vec();
        w.sort_by(f64::total_cmp);
        w[(w.len() as f64 * 0.95) as usize]
    }

    #[test]
    fn erlang_c_matches_known_values() {
        // Textbook: c = 2, a = 1 → C = 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // One server: C = ρ.
        assert!((erlang_c(1, 0.6) - 0.6).abs() < 1e-12);
        assert_eq!(erlang_c(3, 3.0), 1.0);
        assert_eq!(erlang_c(3, 0.0), 0.0);
        assert_eq!(wait_quantile(2, 3.0, 1.0, 0.95), f64::INFINITY);
        assert_eq!(recommended_agents(0.0, 1.0, 2, 1.0), 0);
        assert!((utilisation(4.0, 0.5, 4) - 0.5).abs() < 1e-12);
    }

    /// The recommendation against a simulated workload: the smallest agent
    /// count whose simulated p95 wait meets the target is within one agent
    /// of what Erlang C recommends.
    #[test]
    fn recommendation_agrees_with_a_simulation_within_one_agent() {
        let cases = [
            // (arrivals/s, service s, slots per agent, target p95 s)
            (10.0, 0.5, 1, 0.1),
            (10.0, 0.5, 2, 0.5),
            (2.0, 3.0, 1, 1.0),
            (40.0, 0.2, 4, 0.05),
            (0.5, 20.0, 2, 5.0),
        ];
        for (i, (lambda, service, slots, target)) in cases.into_iter().enumerate() {
            let rec = recommended_agents(lambda, service, slots, target);
            let mut simulated = None;
            for agents in 1..200u32 {
                let servers = agents * slots;
                if lambda * service >= f64::from(servers) {
                    continue;
                }
                let p95 = simulate_p95(servers, lambda, service, 60_000, 0x5eed + i as u64);
                if p95 <= target {
                    simulated = Some(agents);
                    break;
                }
            }
            let sim = simulated.expect("some pool size meets the target");
            assert!(
                rec.abs_diff(sim) <= 1,
                "case {i}: Erlang C recommends {rec} agents, the simulation needs {sim}"
            );
        }
    }
}

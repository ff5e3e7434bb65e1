//! Per-pool load for capacity planning, kept by the engine as tasks arrive,
//! wait and finish: arrivals, attempts served and their wall time, and a
//! histogram of ready → assigned waits, in one-minute buckets (the last 24
//! hours). A pool is a template (the tasks its agents could run) or a
//! required skill (`any` for tasks that require none).
//!
//! Cost on the hot path: one bucket update per pool of the task at arrival,
//! assignment and end (a vector index for templates, a map lookup by `&str`
//! for skills); nothing is allocated once a pool's minute exists.

use std::collections::{HashMap, VecDeque};

use torch_api::rest::PoolKey;

/// Buckets are this long.
const MINUTE_MS: u64 = 60_000;
/// Buckets kept per pool: the longest window is 24 h.
const KEPT: u64 = 24 * 60;
/// Wait histogram bins: quarter octaves of (1 + ms), up to about 4.6 h.
const BINS: usize = 96;
/// The skill pool of tasks that require no skill.
pub(crate) const ANY_SKILL: &str = "any";

/// One minute of a pool.
struct Minute {
    /// Minute number (unix ms / 60 000).
    at: u64,
    arrivals: u64,
    served: u64,
    busy_ms: u64,
    waits: Box<[u32; BINS]>,
}

#[derive(Default)]
struct Pool {
    minutes: VecDeque<Minute>,
}

impl Pool {
    fn now(&mut self, now_ms: u64) -> &mut Minute {
        let at = now_ms / MINUTE_MS;
        if self.minutes.back().is_none_or(|m| m.at != at) {
            while self.minutes.front().is_some_and(|m| m.at + KEPT <= at) {
                self.minutes.pop_front();
            }
            self.minutes.push_back(Minute {
                at,
                arrivals: 0,
                served: 0,
                busy_ms: 0,
                waits: Box::new([0; BINS]),
            });
        }
        // Just pushed or checked above.
        let last = self.minutes.len() - 1;
        &mut self.minutes[last]
    }
}

fn bin(wait_ms: u64) -> usize {
    let x = (1.0 + wait_ms as f64).log2() * 4.0;
    (x as usize).min(BINS - 1)
}

/// The upper edge of a bin, ms.
fn bin_edge(b: usize) -> f64 {
    (2f64.powf((b + 1) as f64 / 4.0) - 1.0).max(0.0)
}

/// One pool over a window.
#[derive(Clone, Debug)]
pub(crate) struct PoolWindow {
    pub(crate) pool: PoolKey,
    pub(crate) arrivals: u64,
    pub(crate) served: u64,
    pub(crate) busy_ms: u64,
    /// p95 of ready → assigned (upper edge of its bin), ms; `None` without waits.
    pub(crate) wait_p95_ms: Option<f64>,
}

/// The tracker (see the module docs).
#[derive(Default)]
pub(crate) struct Capacity {
    /// Template pools, by the index of the engine's template matchers.
    templates: Vec<(String, Pool)>,
    skills: HashMap<String, Pool>,
}

impl Capacity {
    /// The template pools are now `names` (by matcher index); kept by name.
    pub(crate) fn set_templates(&mut self, names: impl Iterator<Item = String>) {
        let mut old: HashMap<String, Pool> = self.templates.drain(..).collect();
        self.templates = names
            .map(|n| {
                let p = old.remove(&n).unwrap_or_default();
                (n, p)
            })
            .collect();
    }

    /// Calls `f` on the current minute of every pool of a task with
    /// `skills` (required skill names) and `templates` (matcher bitmask).
    fn each<'a>(
        &mut self,
        skills: impl Iterator<Item = &'a str>,
        templates: u64,
        now: u64,
        f: impl Fn(&mut Minute),
    ) {
        let mut any = true;
        for s in skills {
            any = false;
            match self.skills.get_mut(s) {
                Some(p) => f(p.now(now)),
                None => f(self.skills.entry(s.to_string()).or_default().now(now)),
            }
        }
        if any {
            match self.skills.get_mut(ANY_SKILL) {
                Some(p) => f(p.now(now)),
                None => f(self.skills.entry(ANY_SKILL.into()).or_default().now(now)),
            }
        }
        let mut bits = templates;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some((_, p)) = self.templates.get_mut(i) {
                f(p.now(now));
            }
        }
    }

    /// A task became ready.
    pub(crate) fn arrived<'a>(
        &mut self,
        skills: impl Iterator<Item = &'a str>,
        templates: u64,
        now: u64,
    ) {
        self.each(skills, templates, now, |m| m.arrivals += 1);
    }

    /// A task was assigned after waiting `wait_ms` since it became ready.
    pub(crate) fn waited<'a>(
        &mut self,
        skills: impl Iterator<Item = &'a str>,
        templates: u64,
        wait_ms: u64,
        now: u64,
    ) {
        let b = bin(wait_ms);
        self.each(skills, templates, now, |m| m.waits[b] += 1);
    }

    /// An attempt ended after `ms` of wall time.
    pub(crate) fn served<'a>(
        &mut self,
        skills: impl Iterator<Item = &'a str>,
        templates: u64,
        ms: u64,
        now: u64,
    ) {
        self.each(skills, templates, now, |m| {
            m.served += 1;
            m.busy_ms += ms;
        });
    }

    /// Every pool over the last `window_ms` (whole minutes that overlap it).
    pub(crate) fn window(&self, window_ms: u64, now: u64) -> Vec<PoolWindow> {
        let from = now.saturating_sub(window_ms) / MINUTE_MS;
        let sum = |pool: PoolKey, p: &Pool| {
            let mut w = PoolWindow {
                pool,
                arrivals: 0,
                served: 0,
                busy_ms: 0,
                wait_p95_ms: None,
            };
            let mut bins = [0u64; BINS];
            for m in p.minutes.iter().filter(|m| m.at >= from) {
                w.arrivals += m.arrivals;
                w.served += m.served;
                w.busy_ms += m.busy_ms;
                for (b, n) in m.waits.iter().enumerate() {
                    bins[b] += u64::from(*n);
                }
            }
            let total: u64 = bins.iter().sum();
            if total > 0 {
                let want = (total as f64 * 0.95).ceil() as u64;
                let mut seen = 0;
                for (b, n) in bins.iter().enumerate() {
                    seen += n;
                    if seen >= want {
                        w.wait_p95_ms = Some(bin_edge(b));
                        break;
                    }
                }
            }
            w
        };
        let mut out: Vec<PoolWindow> = self
            .templates
            .iter()
            .map(|(n, p)| sum(PoolKey::Template(n.clone()), p))
            .collect();
        let mut skills: Vec<PoolWindow> = self
            .skills
            .iter()
            .map(|(n, p)| sum(PoolKey::Skill(n.clone()), p))
            .collect();
        skills.sort_by(|a, b| a.pool.cmp(&b.pool));
        out.extend(skills);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_sum_minutes_and_find_the_p95_wait() {
        let mut c = Capacity::default();
        c.set_templates(["shell".to_string()].into_iter());
        let t0 = 10 * MINUTE_MS;
        for i in 0..100u64 {
            c.arrived(["rust"].into_iter(), 1, t0 + i);
            // 95 short waits, 5 long ones.
            let wait = if i < 95 { 10 } else { 5_000 };
            c.waited(["rust"].into_iter(), 1, wait, t0 + i);
            c.served(["rust"].into_iter(), 1, 2_000, t0 + i);
        }
        c.arrived(std::iter::empty(), 0, t0);
        // An hour later, one more arrival: a 5-minute window sees only it.
        c.arrived(["rust"].into_iter(), 1, t0 + 60 * MINUTE_MS);
        let all = c.window(2 * 60 * MINUTE_MS, t0 + 60 * MINUTE_MS);
        let shell = all
            .iter()
            .find(|w| w.pool == PoolKey::Template("shell".into()))
            .expect("template");
        assert_eq!(
            (shell.arrivals, shell.served, shell.busy_ms),
            (101, 100, 200_000)
        );
        let p95 = shell.wait_p95_ms.expect("waits");
        assert!((10.0..16.0).contains(&p95), "p95 {p95} in the bin of 10 ms");
        assert!(
            all.iter()
                .any(|w| w.pool == PoolKey::Skill(ANY_SKILL.into()) && w.arrivals == 1)
        );
        let recent = c.window(5 * MINUTE_MS, t0 + 60 * MINUTE_MS);
        let rust = recent
            .iter()
            .find(|w| w.pool == PoolKey::Skill("rust".into()))
            .expect("skill");
        assert_eq!((rust.arrivals, rust.served, rust.wait_p95_ms), (1, 0, None));
    }
}

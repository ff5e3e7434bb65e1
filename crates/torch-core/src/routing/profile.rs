//! What the scheduler learns about each agent: per-skill performance, the
//! contexts it worked in recently (for affinity) and its circuit breaker.
//! Also fleet-wide per-skill references that "faster than the fleet" is
//! measured against.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::breaker::{Breaker, BreakerConfig, BreakerState};
use crate::spec::TaskContext;

/// Recent contexts remembered per agent.
pub const MAX_RECENT: usize = 16;
/// Paths per context compared for affinity.
pub const MAX_CONTEXT_PATHS: usize = 8;

/// Outcomes of one agent for one skill.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SkillPerf {
    /// Outcomes recorded.
    pub count: u64,
    /// Exponentially weighted success rate.
    pub success_ewma: f64,
    /// Exponentially weighted run time, milliseconds.
    pub duration_ewma_ms: f64,
}

impl SkillPerf {
    /// Folds in one outcome with EWMA weight `alpha` (the first sets the value).
    pub fn record(&mut self, success: bool, duration_ms: u64, alpha: f64) {
        let x = if success { 1.0 } else { 0.0 };
        let d = duration_ms as f64;
        if self.count == 0 {
            self.success_ewma = x;
            self.duration_ewma_ms = d;
        } else {
            self.success_ewma += alpha * (x - self.success_ewma);
            self.duration_ewma_ms += alpha * (d - self.duration_ewma_ms);
        }
        self.count += 1;
    }
}

/// 64-bit FNV-1a: stable across runs and platforms (unlike `DefaultHasher`).
pub(crate) fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.max(1) // 0 means "absent"
}

/// A task context reduced to hashes, so affinity compares integers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextKey {
    /// Repository hash; 0 when absent.
    pub repo: u64,
    /// Parent task hash; 0 when absent.
    pub parent: u64,
    /// `(file, directory)` hashes of up to [`MAX_CONTEXT_PATHS`] paths, within the repository.
    pub paths: Vec<(u64, u64)>,
}

impl ContextKey {
    /// Hashes a task's context.
    pub fn of(ctx: Option<&TaskContext>) -> ContextKey {
        let Some(c) = ctx else {
            return ContextKey::default();
        };
        let repo_s = c.repository.as_deref().unwrap_or("").trim_end_matches('/');
        let opt = |s: &str| if s.is_empty() { 0 } else { fnv(&[s]) };
        let paths = c
            .paths
            .iter()
            .take(MAX_CONTEXT_PATHS)
            .map(|p| {
                let p = p.trim_start_matches("./").trim_end_matches('/');
                let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
                (fnv(&[repo_s, p]), fnv(&[repo_s, dir, "/"]))
            })
            .collect();
        ContextKey {
            repo: opt(repo_s),
            parent: opt(c.parent.as_deref().unwrap_or("")),
            paths,
        }
    }

    /// True when there is nothing to match on.
    pub fn is_empty(&self) -> bool {
        self.repo == 0 && self.parent == 0 && self.paths.is_empty()
    }

    /// How much of `self` (a task) the context `seen` covers, in `0..=1`:
    /// repository 0.5, paths 0.3 (same file 1, same directory ½), parent 0.2,
    /// renormalised over the parts the task has.
    pub fn overlap(&self, seen: &ContextKey) -> f64 {
        // Path hashes include the repository: another repository can only
        // share the parent task.
        if self.repo != 0
            && self.repo != seen.repo
            && (self.parent == 0 || self.parent != seen.parent)
        {
            return 0.0;
        }
        let (mut got, mut max) = (0.0, 0.0);
        if self.repo != 0 {
            max += 0.5;
            if self.repo == seen.repo {
                got += 0.5;
            }
        }
        if !self.paths.is_empty() {
            max += 0.3;
            let mut sum = 0.0;
            for &(file, dir) in &self.paths {
                let mut best: f64 = 0.0;
                for &(f2, d2) in &seen.paths {
                    if f2 == file {
                        best = 1.0;
                        break;
                    }
                    if d2 == dir {
                        best = 0.5;
                    }
                }
                sum += best;
            }
            got += 0.3 * sum / self.paths.len() as f64;
        }
        if self.parent != 0 {
            max += 0.2;
            if self.parent == seen.parent {
                got += 0.2;
            }
        }
        if max == 0.0 { 0.0 } else { got / max }
    }
}

/// A context an agent worked in, and when it last did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentContext {
    /// Last assignment or success in this context (unix ms).
    pub at: u64,
    /// The repository, for views.
    pub repository: Option<String>,
    /// The hashed context.
    pub key: ContextKey,
}

/// The scheduler's learned state for one agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentProfile {
    /// Performance per canonical skill name.
    pub perf: BTreeMap<String, SkillPerf>,
    /// Performance over all tasks (used for tasks that name no skill).
    pub overall: SkillPerf,
    /// Most recent contexts first; at most [`MAX_RECENT`].
    pub recent: VecDeque<RecentContext>,
    /// The circuit breaker.
    pub breaker: Breaker,
}

impl AgentProfile {
    /// True when nothing has been learned yet.
    pub fn is_empty(&self) -> bool {
        self.perf.is_empty()
            && self.overall.count == 0
            && self.recent.is_empty()
            && self.breaker == Breaker::default()
    }

    /// Stamps `ctx` as warm at `now` (merging with an entry for the same
    /// repository and parent).
    pub fn touch(&mut self, ctx: Option<&TaskContext>, now: u64) {
        let key = ContextKey::of(ctx);
        if key.is_empty() {
            return;
        }
        let pos = self
            .recent
            .iter()
            .position(|r| r.key.repo == key.repo && r.key.parent == key.parent);
        let mut entry = match pos.and_then(|i| self.recent.remove(i)) {
            Some(mut e) => {
                for p in key.paths {
                    if !e.key.paths.contains(&p) {
                        e.key.paths.insert(0, p);
                    }
                }
                e.key.paths.truncate(MAX_CONTEXT_PATHS);
                e
            }
            None => RecentContext {
                at: now,
                repository: ctx.and_then(|c| c.repository.clone()),
                key,
            },
        };
        entry.at = entry.at.max(now);
        self.recent.push_front(entry);
        self.recent.truncate(MAX_RECENT);
    }

    /// Warm-context affinity for a task in `0..=1`: the best overlap with a
    /// recent context, halved every `half_life_ms` since it was last touched.
    pub fn affinity(&self, key: &ContextKey, now: u64, half_life_ms: u64) -> f64 {
        if key.is_empty() {
            return 0.0;
        }
        let mut best: f64 = 0.0;
        for r in &self.recent {
            let m = key.overlap(&r.key);
            if m <= best {
                continue;
            }
            let age = now.saturating_sub(r.at) as f64;
            let decay = if half_life_ms == 0 {
                0.0
            } else {
                (-age / half_life_ms as f64 * std::f64::consts::LN_2).exp()
            };
            best = best.max(m * decay);
        }
        best
    }

    /// Folds in a finished task.
    pub fn record(
        &mut self,
        skills: &[&str],
        success: bool,
        duration_ms: u64,
        alpha: f64,
        now: u64,
        cfg: &BreakerConfig,
    ) {
        for s in skills {
            self.perf
                .entry((*s).to_string())
                .or_default()
                .record(success, duration_ms, alpha);
        }
        self.overall.record(success, duration_ms, alpha);
        self.breaker.on_outcome(success, now, cfg);
    }
}

/// A summary of an agent for views (`torch agents show`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentStateView {
    /// The breaker as of `now`.
    pub breaker: BreakerState,
    /// Times the breaker opened.
    pub breaker_trips: u64,
    /// Tasks held / slots.
    pub used: u32,
    /// Slots.
    pub slots: u32,
    /// Cost per task.
    pub cost: f64,
    /// Per-skill performance.
    pub perf: BTreeMap<String, SkillPerf>,
    /// Over all tasks.
    pub overall: SkillPerf,
    /// Repositories worked in recently, most recent first.
    pub recent_repositories: Vec<String>,
}

/// Fleet-wide reference per skill: what an average agent achieves.
#[derive(Clone, Debug, Default)]
pub struct FleetStats {
    per_skill: HashMap<String, SkillPerf>,
    overall: SkillPerf,
}

/// Weight of one outcome in the fleet averages (slow: it is a reference).
const FLEET_ALPHA: f64 = 0.05;

impl FleetStats {
    /// Folds in a finished task.
    pub fn record(&mut self, skills: &[&str], success: bool, duration_ms: u64) {
        for s in skills {
            match self.per_skill.get_mut(*s) {
                Some(p) => p.record(success, duration_ms, FLEET_ALPHA),
                None => {
                    let mut p = SkillPerf::default();
                    p.record(success, duration_ms, FLEET_ALPHA);
                    self.per_skill.insert((*s).to_string(), p);
                }
            }
        }
        self.overall.record(success, duration_ms, FLEET_ALPHA);
    }

    /// The reference for one skill, or over all tasks when `skill` is `None`.
    pub fn get(&self, skill: Option<&str>) -> Option<&SkillPerf> {
        let p = match skill {
            Some(s) => self.per_skill.get(s)?,
            None => &self.overall,
        };
        (p.count > 0).then_some(p)
    }
}

//! One decision: filter the agents that could take a task (hard constraints,
//! each rejection with its reason), score the feasible ones with the policy,
//! keep the best. Uses the skill and free-slot indexes so that agents ruled
//! out by them are never touched.

use std::cmp::Ordering;

use super::agents::AgentTable;
use super::{AgentSlots, QueuedTask};
use crate::routing::breaker::{BreakerConfig, BreakerRefusal, BreakerState};
use crate::routing::explain::{
    AssignMode, Candidate, Explanation, FactorScore, MAX_CANDIDATES, MAX_REJECTIONS, RejectReason,
    Rejection,
};
use crate::routing::policy::Placer;
use crate::routing::score::{RoutingConfig, Scored, TaskView};

/// What to collect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Stop at the first feasible agent; no scoring.
    FirstFeasible,
    /// Score all feasible agents; keep the best `k`.
    Top(usize),
    /// As `Top(MAX_CANDIDATES)`, and record rejections.
    Explain,
}

/// A scored candidate (slab index).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    pub(crate) idx: usize,
    pub(crate) score: Scored,
    pub(crate) used: u32,
    pub(crate) id: crate::ids::AgentId,
}

/// Higher total first; ties to fewer running tasks, then lower id.
pub(crate) fn better(a: &Cand, b: &Cand) -> Ordering {
    b.score
        .total
        .total_cmp(&a.score.total)
        .then(a.used.cmp(&b.used))
        .then(a.id.cmp(&b.id))
}

#[derive(Debug, Default)]
pub(crate) struct Eval {
    /// Best first.
    pub(crate) top: Vec<Cand>,
    pub(crate) feasible: u32,
    pub(crate) rejected: Vec<Rejection>,
    /// Rejections by [`Why::kind`] index.
    pub(crate) counts: [u32; KINDS.len()],
    pub(crate) examined: u32,
    /// Only agents on the avoid-list could take it, so they were used.
    pub(crate) avoided_fallback: bool,
}

/// Pass-local state the filters read besides the agents themselves.
pub(crate) struct PassState<'a> {
    pub(crate) now: u64,
    pub(crate) breaker: &'a BreakerConfig,
    /// Half-open agents whose one probe this pass already handed out.
    pub(crate) probing: &'a [usize],
}

/// Why an agent is out, borrowed so that counting costs no allocation.
enum Why<'a> {
    MissingSkill(&'a str),
    LevelTooLow(&'a str, f64, f64),
    MissingLabel(&'a str, &'a str),
    Draining,
    NoFreeSlot(u32, u32),
    BreakerOpen(u64),
    BreakerProbing,
    Avoided,
}

/// Reason kinds, in [`Why`] order (names as [`RejectReason::kind`]).
const KINDS: [&str; 8] = [
    "missing-skill",
    "level-too-low",
    "missing-label",
    "draining",
    "no-free-slot",
    "breaker-open",
    "breaker-probing",
    "avoided",
];

impl Why<'_> {
    fn kind(&self) -> usize {
        match self {
            Why::MissingSkill(_) => 0,
            Why::LevelTooLow(..) => 1,
            Why::MissingLabel(..) => 2,
            Why::Draining => 3,
            Why::NoFreeSlot(..) => 4,
            Why::BreakerOpen(_) => 5,
            Why::BreakerProbing => 6,
            Why::Avoided => 7,
        }
    }

    fn reason(&self) -> RejectReason {
        match *self {
            Why::MissingSkill(s) => RejectReason::MissingSkill {
                skill: s.to_string(),
            },
            Why::LevelTooLow(s, have, need) => RejectReason::LevelTooLow {
                skill: s.to_string(),
                have,
                need,
            },
            Why::MissingLabel(k, v) => RejectReason::MissingLabel {
                key: k.to_string(),
                want: v.to_string(),
            },
            Why::Draining => RejectReason::Draining,
            Why::NoFreeSlot(used, slots) => RejectReason::NoFreeSlot { used, slots },
            Why::BreakerOpen(until) => RejectReason::BreakerOpen { until },
            Why::BreakerProbing => RejectReason::BreakerProbing,
            Why::Avoided => RejectReason::Avoided,
        }
    }
}

/// Capability: skills, levels, labels, draining. Static for the agent.
fn capable<'a>(agent: &AgentSlots, task: &'a QueuedTask) -> Result<(), Why<'a>> {
    for r in &task.skills {
        match agent.skills.iter().find(|s| s.name == r.name) {
            None => return Err(Why::MissingSkill(&r.name)),
            Some(s) if s.level + 1e-9 < r.min => {
                return Err(Why::LevelTooLow(&r.name, s.level, r.min));
            }
            Some(_) => {}
        }
    }
    for (k, v) in &task.agent_labels {
        if agent.labels.get(k) != Some(v) {
            return Err(Why::MissingLabel(k, v));
        }
    }
    if agent.draining {
        return Err(Why::Draining);
    }
    Ok(())
}

/// Availability now: a free slot and a breaker that admits.
fn available(idx: usize, agent: &AgentSlots, st: &PassState<'_>) -> Result<(), Why<'static>> {
    if agent.used >= agent.slots {
        return Err(Why::NoFreeSlot(agent.used, agent.slots));
    }
    match agent.profile.breaker.admits(st.now, st.breaker) {
        Err(BreakerRefusal::Open(until)) => Err(Why::BreakerOpen(until)),
        Err(BreakerRefusal::Probing) => Err(Why::BreakerProbing),
        Ok(()) if is_half_open(agent, st.now) && st.probing.contains(&idx) => {
            Err(Why::BreakerProbing)
        }
        Ok(()) => Ok(()),
    }
}

/// True when the agent is half-open (it takes at most one task per pass).
pub(crate) fn is_half_open(agent: &AgentSlots, now: u64) -> bool {
    matches!(
        agent.profile.breaker.state(now),
        BreakerState::HalfOpen { .. }
    )
}

enum Source<'a> {
    List(&'a [usize]),
    Free,
    All,
}

pub(crate) fn evaluate<P: Placer + ?Sized>(
    agents: &AgentTable,
    view: &TaskView<'_>,
    placer: &mut P,
    st: &PassState<'_>,
    mode: Mode,
) -> Eval {
    let task = view.task;
    let mut ev = Eval::default();
    // Tasks with required skills scan the shortest skill list (so busy
    // capable agents are explained as such); a first-fit probe may scan the
    // free-slot index instead when it is shorter. Tasks without required
    // skills scan the free-slot index, or every agent when an avoid-list
    // makes "is another capable agent there at all" matter.
    let mut source = if task.avoid.is_empty() {
        Source::Free
    } else {
        Source::All
    };
    let mut best_len = usize::MAX;
    for r in &task.skills {
        let list = agents.with_skill(&r.name).unwrap_or(&[]);
        if list.len() < best_len {
            best_len = list.len();
            source = Source::List(list);
        }
    }
    // Without an explanation to write, only agents that could take the task
    // now matter: scanning the free-slot index finds the same candidates
    // (ties are broken by id, not by scan order) and skips busy agents, most
    // of the fleet in a burst. An avoid-list needs every capable agent.
    if let Source::List(l) = source
        && mode != Mode::Explain
        && task.avoid.is_empty()
        && agents.free().len() < l.len()
    {
        source = Source::Free;
    }
    let keep = match mode {
        Mode::FirstFeasible => 1,
        Mode::Top(k) => k.max(1),
        Mode::Explain => MAX_CANDIDATES,
    };
    let explain = mode == Mode::Explain;
    let mut avoided: Vec<usize> = Vec::new();
    let mut other_capable = false;
    let reject = |ev: &mut Eval, agent: &AgentSlots, why: Why<'_>| {
        ev.counts[why.kind()] += 1;
        // Busy agents are only counted: listing them says nothing the count
        // does not, and explanations are written with every assignment.
        if explain && ev.rejected.len() < MAX_REJECTIONS && !matches!(why, Why::NoFreeSlot(..)) {
            ev.rejected.push(Rejection {
                agent: agent.id,
                reason: why.reason(),
            });
        }
    };
    let mut consider = |idx: usize, ev: &mut Eval, placer: &mut P| -> bool {
        let Some(agent) = agents.at(idx) else {
            return false;
        };
        ev.examined += 1;
        if let Err(r) = capable(agent, task) {
            reject(ev, agent, r);
            return false;
        }
        let is_avoided = task.avoid.contains(&agent.id);
        other_capable |= !is_avoided;
        if let Err(r) = available(idx, agent, st) {
            reject(ev, agent, r);
            return false;
        }
        if is_avoided {
            avoided.push(idx);
            return false;
        }
        ev.feasible += 1;
        let score = if mode == Mode::FirstFeasible {
            Scored::default()
        } else {
            placer.score(view, agent)
        };
        insert(
            &mut ev.top,
            Cand {
                idx,
                score,
                used: agent.used,
                id: agent.id,
            },
            keep,
        );
        mode == Mode::FirstFeasible
    };
    match source {
        Source::List(l) => {
            for &i in l {
                if consider(i, &mut ev, placer) {
                    break;
                }
            }
        }
        Source::Free => {
            for &i in agents.free() {
                if consider(i, &mut ev, placer) {
                    break;
                }
            }
        }
        Source::All => {
            for i in agents.all() {
                if consider(i, &mut ev, placer) {
                    break;
                }
            }
        }
    }
    if ev.feasible == 0 && !other_capable && !avoided.is_empty() {
        // Only agents that already failed this task can run it: use them.
        ev.avoided_fallback = true;
        for idx in avoided {
            let Some(agent) = agents.at(idx) else {
                continue;
            };
            ev.feasible += 1;
            let score = if mode == Mode::FirstFeasible {
                Scored::default()
            } else {
                placer.score(view, agent)
            };
            insert(
                &mut ev.top,
                Cand {
                    idx,
                    score,
                    used: agent.used,
                    id: agent.id,
                },
                keep,
            );
        }
    } else {
        for idx in avoided {
            if let Some(agent) = agents.at(idx) {
                reject(&mut ev, agent, Why::Avoided);
            }
        }
    }
    ev
}

fn insert(top: &mut Vec<Cand>, c: Cand, keep: usize) {
    if top.len() >= keep && top.last().is_some_and(|l| better(&c, l) != Ordering::Less) {
        return;
    }
    let pos = top.partition_point(|x| better(x, &c) == Ordering::Less);
    top.insert(pos, c);
    top.truncate(keep);
}

/// Turns an evaluation whose top candidate was chosen into an explanation.
pub(crate) fn explanation<P: Placer + ?Sized>(
    ev: Eval,
    agents: &AgentTable,
    placer: &P,
    cfg: &RoutingConfig,
    mode: AssignMode,
) -> Option<Explanation> {
    let chosen = ev.top.first()?.id;
    let factors = placer.factors(cfg);
    let candidates = ev
        .top
        .iter()
        .map(|c| Candidate {
            agent: c.id,
            total: c.score.total,
            used: c.used,
            factors: factors
                .iter()
                .zip(c.score.values)
                .map(|(&(name, weight), value)| FactorScore {
                    name: name.to_string(),
                    value,
                    weight,
                })
                .collect(),
        })
        .collect();
    let mut notes = Vec::new();
    if ev.avoided_fallback {
        notes.push(
            "only agents that already failed this task can run it; retrying on them".to_string(),
        );
    }
    Some(Explanation {
        policy: placer.name().to_string(),
        chosen,
        mode,
        candidates,
        feasible: ev.feasible,
        rejected: ev.rejected,
        rejected_counts: KINDS
            .iter()
            .zip(ev.counts)
            .filter(|&(_, n)| n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
        not_examined: (agents.len() as u32).saturating_sub(ev.examined),
        notes,
    })
}

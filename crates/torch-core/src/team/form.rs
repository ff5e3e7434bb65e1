//! Forming a team: candidates, weights, the exact min-cost assignment, the
//! leader, and clear reasons when a team cannot be formed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::spec::{RoleSpec, TeamSpec};
use crate::ids::AgentId;
use crate::routing::batch::{BatchProblem, solve};
use crate::skill::{Skill, covers};

/// Who a member would be.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum CandidateId {
    /// A connected agent.
    Agent(AgentId),
    /// An agent to spawn from this template.
    Template(String),
}

/// A possible member.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The agent, or the template to spawn one from.
    pub id: CandidateId,
    /// Display name.
    pub name: String,
    /// What it can do (canonical names, levels `0..=1`).
    pub skills: Vec<Skill>,
    /// Cost of using it in any consistent unit (an agent's cost per task, a
    /// template's spawn cost); 0 when free or unknown.
    pub cost: f64,
    /// Its record of success in `0..=1` (0.5 when nothing is known).
    pub success: f64,
    /// Members it can provide: 1 for a connected agent that has a free slot
    /// (0 when it has none), the number of agents the spawn limits allow for
    /// a template.
    pub capacity: u32,
}

/// How much each part of a member's cost counts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormationWeights {
    /// The candidate's cost, normalised by the highest among candidates.
    pub cost: f64,
    /// `1 − success`.
    pub history: f64,
    /// Skills it shares with what the other roles require.
    pub overlap: f64,
    /// Added for a member that must be spawned (prefer connected agents).
    pub spawn: f64,
}

impl Default for FormationWeights {
    fn default() -> Self {
        FormationWeights {
            cost: 1.0,
            history: 0.5,
            overlap: 0.5,
            spawn: 0.5,
        }
    }
}

/// One member of a formed team.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The role it fills.
    pub role: String,
    /// Who.
    pub candidate: CandidateId,
    /// Display name.
    pub name: String,
    /// Its cost in this role (see the module docs).
    pub cost: f64,
}

/// The candidates a role had, for the explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleOptions {
    /// The role.
    pub role: String,
    /// Candidates that cover it, cheapest first, with their cost in it.
    pub candidates: Vec<(String, f64)>,
    /// Candidates that do not, with why.
    pub rejected: Vec<(String, String)>,
}

/// A formed team.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Formation {
    /// Members, in role order.
    pub members: Vec<Member>,
    /// Index of the leader in `members`.
    pub leader: usize,
    /// Why that member leads.
    pub leader_reason: String,
    /// Sum of the members' costs.
    pub total_cost: f64,
    /// Per role, the candidates considered.
    pub roles: Vec<RoleOptions>,
}

/// Why a team could not be formed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FormationError {
    /// The spec asks for no role.
    #[error("the team has no roles")]
    NoRoles,
    /// More members than the size limit.
    #[error("the roles ask for {need} members, more than max_size {max}")]
    TooLarge {
        /// Members asked for.
        need: u32,
        /// The limit.
        max: u32,
    },
    /// No candidate, or too few, can fill a role.
    #[error("role {role:?} cannot be covered: {reason}")]
    Uncoverable {
        /// The role.
        role: String,
        /// Why, naming the skills and the best levels on offer.
        reason: String,
    },
    /// Roles that can each be covered compete for too few candidates.
    #[error(
        "roles {} need {need} members but only {} can fill them ({})",
        roles.join(", "), candidates.len(), candidates.join(", ")
    )]
    Contended {
        /// The roles.
        roles: Vec<String>,
        /// Members they need together.
        need: u32,
        /// The candidates that could fill them.
        candidates: Vec<String>,
    },
}

/// The cost of `c` in role `r`, or `None` when it cannot fill it.
fn cost_in(
    c: &Candidate,
    role: &RoleSpec,
    others: &BTreeSet<&str>,
    max_cost: f64,
    w: &FormationWeights,
) -> Option<f64> {
    if c.capacity == 0 || !covers(&c.skills, &role.skills) {
        return None;
    }
    let norm = if max_cost > 0.0 {
        c.cost / max_cost
    } else {
        0.0
    };
    let shared = if others.is_empty() {
        0.0
    } else {
        let has = c
            .skills
            .iter()
            .filter(|s| others.contains(s.name.as_str()))
            .count();
        has as f64 / others.len() as f64
    };
    let spawn = match c.id {
        CandidateId::Template(_) => w.spawn,
        CandidateId::Agent(_) => 0.0,
    };
    Some(w.cost * norm + w.history * (1.0 - c.success.clamp(0.0, 1.0)) + w.overlap * shared + spawn)
}

/// Why `c` cannot fill `role`.
fn why_not(c: &Candidate, role: &RoleSpec) -> String {
    if c.capacity == 0 {
        return "no free slot".into();
    }
    let missing: Vec<String> = role
        .skills
        .iter()
        .filter(|r| !covers(&c.skills, std::slice::from_ref(*r)))
        .map(|r| match c.skills.iter().find(|s| s.name == r.name) {
            Some(s) => format!("{} {:.2} < {:.2}", r.name, s.level, r.min),
            None => format!("no {}", r.name),
        })
        .collect();
    missing.join(", ")
}

/// Why nobody covers `role`: for each skill, the best level on offer.
fn uncovered(role: &RoleSpec, candidates: &[Candidate]) -> String {
    let mut parts = Vec::new();
    for r in &role.skills {
        let best = candidates
            .iter()
            .filter_map(|c| {
                c.skills
                    .iter()
                    .find(|s| s.name == r.name)
                    .map(|s| (s.level, &c.name))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let need = if r.min > 0.0 {
            format!("{} at {:.2}", r.name, r.min)
        } else {
            r.name.clone()
        };
        match best {
            Some((level, name)) if level + 1e-9 < r.min => {
                parts.push(format!("{need} (best: {name} at {level:.2})"))
            }
            None => parts.push(format!("{need} (no agent or template has it)")),
            Some(_) => {}
        }
    }
    if parts.is_empty() {
        "every candidate that has its skills is busy (no free slot) and no template can spawn one"
            .into()
    } else {
        format!("needs {}", parts.join("; "))
    }
}

/// Forms the cheapest team for `spec` from `candidates` (see the module
/// docs). Deterministic for the same input.
pub fn form(
    spec: &TeamSpec,
    candidates: &[Candidate],
    w: &FormationWeights,
) -> Result<Formation, FormationError> {
    if spec.roles.is_empty() {
        return Err(FormationError::NoRoles);
    }
    let need = spec.size();
    if let Some(max) = spec.max_size
        && need > max
    {
        return Err(FormationError::TooLarge { need, max });
    }
    let max_cost = candidates.iter().map(|c| c.cost).fold(0.0, f64::max);
    // Per role: each candidate's cost in it (None: cannot fill it).
    let costs: Vec<Vec<Option<f64>>> = spec
        .roles
        .iter()
        .map(|role| {
            let others: BTreeSet<&str> = spec
                .roles
                .iter()
                .filter(|o| o.name != role.name)
                .flat_map(|o| o.skills.iter().map(|s| s.name.as_str()))
                .filter(|n| !role.skills.iter().any(|s| s.name == *n))
                .collect();
            candidates
                .iter()
                .map(|c| cost_in(c, role, &others, max_cost, w))
                .collect()
        })
        .collect();
    for (role, row) in spec.roles.iter().zip(&costs) {
        let fit: u32 = row
            .iter()
            .zip(candidates)
            .filter(|(c, _)| c.is_some())
            .map(|(_, cand)| cand.capacity)
            .sum();
        if fit == 0 {
            return Err(FormationError::Uncoverable {
                role: role.name.clone(),
                reason: uncovered(role, candidates),
            });
        }
        if fit < role.count {
            return Err(FormationError::Uncoverable {
                role: role.name.clone(),
                reason: format!(
                    "needs {} members but only {fit} candidate(s) can fill it",
                    role.count
                ),
            });
        }
    }
    let mut problem = BatchProblem {
        options: Vec::new(),
        caps: candidates.iter().map(|c| c.capacity).collect(),
        step: vec![0.0; candidates.len()],
    };
    let mut slot_role = Vec::new();
    for (ri, role) in spec.roles.iter().enumerate() {
        let opts: Vec<(usize, f64)> = costs[ri]
            .iter()
            .enumerate()
            .filter_map(|(ci, c)| c.map(|c| (ci, -c)))
            .collect();
        for _ in 0..role.count {
            problem.options.push(opts.clone());
            slot_role.push(ri);
        }
    }
    let Some(chosen) = solve(&problem) else {
        return Err(contended(spec, &costs, candidates));
    };
    let mut members: Vec<Member> = chosen
        .iter()
        .zip(&slot_role)
        .map(|(&ci, &ri)| Member {
            role: spec.roles[ri].name.clone(),
            candidate: candidates[ci].id.clone(),
            name: candidates[ci].name.clone(),
            cost: costs[ri][ci].unwrap_or(0.0),
        })
        .collect();
    // Members of one role, cheapest first; roles in spec order.
    members.sort_by(|a, b| {
        let ra = spec.roles.iter().position(|r| r.name == a.role);
        let rb = spec.roles.iter().position(|r| r.name == b.role);
        ra.cmp(&rb)
            .then(a.cost.total_cmp(&b.cost))
            .then(a.candidate.cmp(&b.candidate))
    });
    let total_cost = members.iter().map(|m| m.cost).sum();
    let (leader, leader_reason) = leader(spec, &members, candidates);
    let roles = spec
        .roles
        .iter()
        .zip(&costs)
        .map(|(role, row)| {
            let mut ok: Vec<(String, f64)> = row
                .iter()
                .zip(candidates)
                .filter_map(|(c, cand)| c.map(|c| (cand.name.clone(), c)))
                .collect();
            ok.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let rejected = row
                .iter()
                .zip(candidates)
                .filter(|(c, _)| c.is_none())
                .map(|(_, cand)| (cand.name.clone(), why_not(cand, role)))
                .collect();
            RoleOptions {
                role: role.name.clone(),
                candidates: ok,
                rejected,
            }
        })
        .collect();
    Ok(Formation {
        members,
        leader,
        leader_reason,
        total_cost,
        roles,
    })
}

/// The smallest set of roles whose members together outnumber the
/// candidates that could fill them (Hall's condition failing).
fn contended(
    spec: &TeamSpec,
    costs: &[Vec<Option<f64>>],
    candidates: &[Candidate],
) -> FormationError {
    let n = spec.roles.len().min(16);
    let mut best: Option<(u32, u32)> = None; // (set bits, mask)
    for mask in 1u32..(1 << n) {
        let need: u32 = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| spec.roles[i].count)
            .sum();
        let have: u32 = candidates
            .iter()
            .enumerate()
            .filter(|(ci, _)| (0..n).any(|i| mask & (1 << i) != 0 && costs[i][*ci].is_some()))
            .map(|(_, c)| c.capacity)
            .sum();
        if have < need && best.is_none_or(|(bits, _)| mask.count_ones() < bits) {
            best = Some((mask.count_ones(), mask));
        }
    }
    let mask = best.map_or((1u32 << n) - 1, |(_, m)| m);
    let roles: Vec<String> = (0..n)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| spec.roles[i].name.clone())
        .collect();
    let need = (0..n)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| spec.roles[i].count)
        .sum();
    let names = candidates
        .iter()
        .enumerate()
        .filter(|(ci, _)| (0..n).any(|i| mask & (1 << i) != 0 && costs[i][*ci].is_some()))
        .map(|(_, c)| c.name.clone())
        .collect();
    FormationError::Contended {
        roles,
        need,
        candidates: names,
    }
}

/// The leader's index and why (see the module docs).
fn leader(spec: &TeamSpec, members: &[Member], candidates: &[Candidate]) -> (usize, String) {
    if let Some(role) = &spec.leader
        && let Some(i) = members.iter().position(|m| &m.role == role)
    {
        return (i, format!("the spec names role {role:?} to lead"));
    }
    let score = |m: &Member| {
        let c = candidates.iter().find(|c| c.id == m.candidate);
        let coordination = c
            .and_then(|c| c.skills.iter().find(|s| s.name == "coordination"))
            .map_or(0.0, |s| s.level);
        let success = c.map_or(0.5, |c| c.success);
        (0.5 * coordination + 0.5 * success, coordination, success)
    };
    let mut best = 0;
    for i in 1..members.len() {
        if score(&members[i]).0 > score(&members[best]).0 + 1e-12 {
            best = i;
        }
    }
    let (s, coordination, success) = score(&members[best]);
    let reason = format!(
        "best coordination and history among {} members (score {s:.2}: coordination {coordination:.2}, success {success:.2})",
        members.len()
    );
    (best, reason)
}

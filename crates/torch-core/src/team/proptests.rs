//! Formation against a brute-force optimum on small random instances.

use proptest::prelude::*;

use super::tests::{agent, role};
use super::*;

/// The cheapest cost of filling every role slot, by trying every assignment.
fn brute(spec: &TeamSpec, cands: &[Candidate], w: &FormationWeights) -> Option<f64> {
    // Slot costs come from `form` itself on single-candidate problems would
    // be circular; recompute each (candidate, role) cost from the formula.
    let f = |ci: usize, ri: usize| -> Option<f64> {
        let c = &cands[ci];
        let r = &spec.roles[ri];
        if c.capacity == 0 || !crate::skill::covers(&c.skills, &r.skills) {
            return None;
        }
        let max_cost = cands.iter().map(|c| c.cost).fold(0.0, f64::max);
        let others: std::collections::BTreeSet<&str> = spec
            .roles
            .iter()
            .filter(|o| o.name != r.name)
            .flat_map(|o| o.skills.iter().map(|s| s.name.as_str()))
            .filter(|n| !r.skills.iter().any(|s| s.name == *n))
            .collect();
        let shared = if others.is_empty() {
            0.0
        } else {
            c.skills
                .iter()
                .filter(|s| others.contains(s.name.as_str()))
                .count() as f64
                / others.len() as f64
        };
        let norm = if max_cost > 0.0 {
            c.cost / max_cost
        } else {
            0.0
        };
        Some(w.cost * norm + w.history * (1.0 - c.success) + w.overlap * shared)
    };
    let slots: Vec<usize> = spec
        .roles
        .iter()
        .enumerate()
        .flat_map(|(i, r)| std::iter::repeat_n(i, r.count as usize))
        .collect();
    fn go(
        k: usize,
        slots: &[usize],
        used: &mut Vec<u32>,
        cands: &[Candidate],
        f: &dyn Fn(usize, usize) -> Option<f64>,
    ) -> Option<f64> {
        if k == slots.len() {
            return Some(0.0);
        }
        let mut best: Option<f64> = None;
        for ci in 0..cands.len() {
            if used[ci] >= cands[ci].capacity {
                continue;
            }
            let Some(c) = f(ci, slots[k]) else { continue };
            used[ci] += 1;
            if let Some(rest) = go(k + 1, slots, used, cands, f) {
                best = Some(best.map_or(c + rest, |b: f64| b.min(c + rest)));
            }
            used[ci] -= 1;
        }
        best
    }
    go(0, &slots, &mut vec![0; cands.len()], cands, &f)
}

const SKILLS: [&str; 4] = ["rust", "go", "sql", "ts"];

fn instance() -> impl Strategy<Value = (TeamSpec, Vec<Candidate>)> {
    let roles = proptest::collection::vec((0usize..4, 1u32..3, prop::bool::ANY), 1..4);
    let cands = proptest::collection::vec(
        (
            proptest::collection::vec((0usize..4, 0.3f64..1.0), 1..4),
            0.0f64..5.0,
            0.0f64..1.0,
            0u32..2,
        ),
        1..13,
    );
    (roles, cands).prop_map(|(roles, cands)| {
        let mut seen = std::collections::BTreeSet::new();
        let roles: Vec<RoleSpec> = roles
            .into_iter()
            .filter(|(s, _, _)| seen.insert(*s))
            .map(|(s, count, high)| {
                let need = if high {
                    format!("{}:0.6", SKILLS[s])
                } else {
                    SKILLS[s].to_string()
                };
                role(SKILLS[s], &[need.as_str()], count)
            })
            .collect();
        let cands = cands
            .into_iter()
            .enumerate()
            .map(|(i, (skills, cost, success, cap))| {
                let skills: Vec<(&str, f64)> =
                    skills.iter().map(|(s, l)| (SKILLS[*s], *l)).collect();
                let mut c = agent(i as u8, &format!("c{i}"), &skills, cost, success);
                c.capacity = cap.max(1) * u32::from(cap > 0 || i % 3 != 0);
                c
            })
            .collect();
        (
            TeamSpec {
                roles,
                leader: None,
                max_size: None,
            },
            cands,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn formation_is_optimal_covers_every_role_or_says_why((spec, cands) in instance()) {
        let w = FormationWeights { spawn: 0.0, ..FormationWeights::default() };
        let optimum = brute(&spec, &cands, &w);
        match form(&spec, &cands, &w) {
            Ok(f) => {
                let optimum = optimum.expect("formed where brute force found nothing");
                prop_assert!((f.total_cost - optimum).abs() < 1e-6, "cost {} vs optimum {optimum}", f.total_cost);
                prop_assert_eq!(f.members.len() as u32, spec.size());
                for r in &spec.roles {
                    let filled: Vec<&Member> = f.members.iter().filter(|m| m.role == r.name).collect();
                    prop_assert_eq!(filled.len() as u32, r.count);
                    for m in filled {
                        let c = cands.iter().find(|c| c.id == m.candidate).expect("a candidate");
                        prop_assert!(crate::skill::covers(&c.skills, &r.skills), "{} does not cover {}", c.name, r.name);
                    }
                }
                for c in &cands {
                    let uses = f.members.iter().filter(|m| m.candidate == c.id).count() as u32;
                    prop_assert!(uses <= c.capacity);
                }
                prop_assert!(f.leader < f.members.len());
            }
            Err(e) => {
                prop_assert!(optimum.is_none(), "refused ({e}) where brute force formed one");
                let named = match &e {
                    FormationError::Uncoverable { role, .. } => vec![role.clone()],
                    FormationError::Contended { roles, .. } => roles.clone(),
                    other => return Err(TestCaseError::fail(format!("unexpected {other}"))),
                };
                prop_assert!(named.iter().all(|n| spec.roles.iter().any(|r| &r.name == n)));
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

//! Property tests of the scheduler over random event sequences.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use super::tests::{SKILLS, agent, aid, ctx, task, tid};
use super::*;
use crate::routing::policy::Random;

#[derive(Debug, Clone)]
enum Op {
    Task {
        prio: i32,
        skill: usize,
        min: bool,
        label: bool,
        repo: u8,
    },
    Agent {
        skills: Vec<(usize, bool)>,
        slots: u32,
        label: bool,
    },
    Finish {
        pick: usize,
        success: bool,
    },
    Schedule {
        dt: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (-3i32..3, 0usize..3, any::<bool>(), prop::bool::weighted(0.2), 0u8..3)
            .prop_map(|(prio, skill, min, label, repo)| Op::Task { prio, skill, min, label, repo }),
        1 => (proptest::collection::vec((0usize..3, any::<bool>()), 0..3), 0u32..4, prop::bool::weighted(0.3))
            .prop_map(|(skills, slots, label)| Op::Agent { skills, slots, label }),
        2 => (0usize..1000, prop::bool::weighted(0.7)).prop_map(|(pick, success)| Op::Finish { pick, success }),
        3 => (0u64..20_000).prop_map(|dt| Op::Schedule { dt }),
    ]
}

/// Drives two identical schedulers with `ops`, checking the invariants on
/// one and that the other decides identically.
fn check<P: Placer, F: Fn() -> P>(ops: Vec<Op>, make: F) -> Result<(), TestCaseError> {
    let mut s = Scheduler::with_placer(make());
    let mut twin = Scheduler::with_placer(make());
    // task → (prio, seq, skill, needs 0.8, needs label)
    let mut queued: HashMap<TaskId, (i32, u64, usize, bool, bool)> = HashMap::new();
    let mut caps: HashMap<AgentId, (Vec<(usize, f64)>, bool)> = HashMap::new();
    let mut running: Vec<(TaskId, AgentId, usize)> = Vec::new();
    let mut ever_placed: HashSet<TaskId> = HashSet::new();
    let (mut n, mut now) = (0u64, 0u64);
    let fits = |caps: &(Vec<(usize, f64)>, bool), skill: usize, hi: bool, label: bool| {
        caps.0.iter().any(|&(k, l)| k == skill && (!hi || l >= 0.8)) && (!label || caps.1)
    };
    for op in ops {
        match op {
            Op::Task {
                prio,
                skill,
                min,
                label,
                repo,
            } => {
                n += 1;
                let mut t = task(
                    n,
                    prio,
                    &format!("{}{}", SKILLS[skill], if min { ":0.8" } else { "" }),
                );
                if label {
                    t.agent_labels.insert("pool".into(), "x".into());
                }
                t.context = ctx(&format!("repo-{repo}"));
                s.enqueue(t.clone());
                twin.enqueue(t);
                queued.insert(tid(n), (prio, n, skill, min, label));
            }
            Op::Agent {
                skills,
                slots,
                label,
            } => {
                let id = aid(caps.len() as u64);
                let sk: Vec<(usize, f64)> = skills
                    .iter()
                    .map(|&(k, hi)| (k, if hi { 0.9 } else { 0.5 }))
                    .collect();
                let mut a = AgentSlots::new(
                    id,
                    sk.iter()
                        .map(|&(k, l)| Skill {
                            name: SKILLS[k].into(),
                            level: l,
                        })
                        .collect(),
                    slots,
                );
                if label {
                    a.labels = BTreeMap::from([("pool".to_string(), "x".to_string())]);
                }
                s.upsert_agent(a.clone());
                twin.upsert_agent(a);
                caps.insert(id, (sk, label));
            }
            Op::Finish { pick, success } => {
                if !running.is_empty() {
                    let (_, a, skill) = running.remove(pick % running.len());
                    let req: Vec<SkillReq> = vec![SKILLS[skill].parse().unwrap()];
                    for x in [&mut s, &mut twin] {
                        x.release_slot(a);
                        x.record_outcome(a, &req, None, success, 1000, now);
                    }
                }
            }
            Op::Schedule { dt } => {
                now += dt;
                let placements = s.schedule(now, usize::MAX);
                prop_assert_eq!(
                    &placements,
                    &twin.schedule(now, usize::MAX),
                    "same inputs, same decisions"
                );
                for p in &placements {
                    let (prio, seq, skill, hi, label) =
                        queued.remove(&p.task).expect("placed task was queued");
                    prop_assert!(
                        fits(&caps[&p.agent], skill, hi, label),
                        "agent lacks skill, level or label"
                    );
                    prop_assert!(ever_placed.insert(p.task), "task placed twice");
                    // Single tenant: no still-queued task with the same needs outranks it.
                    for &(op, oseq, osk, ohi, olab) in queued.values() {
                        if (osk, ohi, olab) == (skill, hi, label) {
                            prop_assert!(
                                (Reverse(prio), seq) < (Reverse(op), oseq),
                                "a higher-ranked task was skipped"
                            );
                        }
                    }
                    let e = &p.explanation;
                    prop_assert_eq!(e.chosen, p.agent);
                    prop_assert_eq!(
                        e.candidates[0].agent,
                        p.agent,
                        "chosen is the top candidate"
                    );
                    for c in &e.candidates {
                        prop_assert!(
                            c.total <= e.candidates[0].total,
                            "a candidate outscored the chosen agent"
                        );
                        prop_assert!(
                            fits(&caps[&c.agent], skill, hi, label),
                            "infeasible candidate listed"
                        );
                    }
                    running.push((p.task, p.agent, skill));
                }
                for a in s.agents() {
                    let held = running.iter().filter(|(_, ag, _)| *ag == a.id).count() as u32;
                    prop_assert_eq!(held, a.used);
                    prop_assert!(a.used <= a.slots, "over slots");
                }
                // Work-conserving: nothing queued could have been placed.
                let cfg = s.config().breaker.clone();
                for &(_, _, skill, hi, label) in queued.values() {
                    let placeable = s.agents().any(|a| {
                        a.has_free_slot()
                            && a.profile.breaker.admits(now, &cfg).is_ok()
                            && fits(&caps[&a.id], skill, hi, label)
                    });
                    prop_assert!(!placeable, "a placeable task was left queued");
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn torch_placements_respect_filters_slots_priority_explanations(ops in proptest::collection::vec(op(), 1..120)) {
        check(ops, || Torch)?;
    }

    #[test]
    fn least_loaded_placements_respect_the_same_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        check(ops, || LeastLoaded)?;
    }

    #[test]
    fn random_policy_is_deterministic_per_seed(ops in proptest::collection::vec(op(), 1..60), seed in any::<u64>()) {
        check(ops, || Random::new(seed))?;
    }

    #[test]
    fn a_flooding_tenant_cannot_starve_another(flood in 1usize..60, small in 1usize..6, slots in 1u32..4) {
        let mut s = Scheduler::new();
        s.upsert_agent(agent(1, "sh", slots));
        for n in 0..flood as u64 {
            let mut t = task(n, 0, "sh");
            t.tenant = "flood".into();
            s.enqueue(t);
        }
        for n in 1000..1000 + small as u64 {
            let mut t = task(n, 0, "sh");
            t.tenant = "small".into();
            s.enqueue(t);
        }
        let mut placed = 0usize;
        let mut small_done = 0usize;
        while small_done < small {
            let p = s.schedule(0, usize::MAX);
            prop_assert!(!p.is_empty());
            for p in &p {
                placed += 1;
                if p.task >= tid(1000) {
                    small_done += 1;
                    // The k-th small task runs within the first 2k placements.
                    prop_assert!(placed <= 2 * small_done + slots as usize, "placed {} for small #{}", placed, small_done);
                }
                s.release_slot(p.agent);
            }
        }
    }
}

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::routing::breaker::BreakerState;
use crate::routing::explain::{AssignMode, RejectReason};
use crate::routing::policy::{RoundRobin, Random};

fn tid(n: u64) -> TaskId {
    TaskId::from_uuid(Uuid::from_u64_pair(1, n))
}
fn aid(n: u64) -> AgentId {
    AgentId::from_uuid(Uuid::from_u64_pair(2, n))
}
fn agent(n: u64, skills: &str, slots: u32) -> AgentSlots {
    AgentSlots::new(aid(n), crate::skill::parse_skill_list(skills).unwrap(), slots)
}
fn task(n: u64, prio: i32, skills: &str) -> QueuedTask {
    let skills = skills.split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    QueuedTask::new(tid(n), prio, n, skills)
}
fn ctx(repo: &str) -> Option<TaskContext> {
    Some(TaskContext { repository: Some(repo.into()), ..Default::default() })
}
const SKILLS: [&str; 3] = ["rust", "python", "sh"];

#[test]
fn priority_then_fifo_and_skills() {
    for batch in [true, false] {
        let mut s = Scheduler::with_config(RoutingConfig { batch, ..Default::default() });
        s.upsert_agent(agent(1, "sh", 2));
        s.enqueue(task(1, 0, "sh"));
        s.enqueue(task(2, 5, "sh"));
        s.enqueue(task(3, 9, "rust"));
        s.enqueue(task(4, 0, "sh"));
        let p = s.schedule(0, 100);
        assert_eq!(p.iter().map(|p| p.task).collect::<Vec<_>>(), vec![tid(2), tid(1)]);
        assert!(s.schedule(0, 100).is_empty(), "agent is full");
        s.release_slot(aid(1));
        assert_eq!(s.schedule(0, 100)[0].task, tid(4));
        assert!(s.is_queued(tid(3)), "rust task waits for a rust agent");
        s.enqueue(task(5, 100, "sh").with_not_before(50));
        s.release_slot(aid(1));
        assert!(s.schedule(10, 100).is_empty());
        assert_eq!(s.next_wakeup(), Some(50));
        assert_eq!(s.schedule(50, 100)[0].task, tid(5));
    }
}

#[test]
fn hard_filters_levels_labels_and_reasons() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, "rust:0.5", 1));
    let mut labelled = agent(2, "rust:0.9", 1);
    labelled.labels.insert("gpu".into(), "a100".into());
    s.upsert_agent(labelled.clone());
    s.upsert_agent(AgentSlots { id: aid(3), ..labelled });
    s.set_draining(aid(3), true);
    let mut t = task(1, 0, "rust:0.8");
    t.agent_labels.insert("gpu".into(), "h100".into());
    s.enqueue(t);
    assert!(s.schedule(0, 10).is_empty(), "no agent has gpu=h100");
    let mut t = task(2, 0, "rust:0.8");
    t.agent_labels.insert("gpu".into(), "a100".into());
    s.enqueue(t);
    let p = s.schedule(0, 10);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].task, p[0].agent), (tid(2), aid(2)));
    let e = &p[0].explanation;
    assert_eq!(e.policy, "torch");
    assert_eq!(e.chosen, aid(2));
    let reasons: Vec<&str> = e.rejected.iter().map(|r| r.reason.kind()).collect();
    assert_eq!(reasons, vec!["level-too-low", "draining"]);
    assert_eq!(e.rejected_counts.values().sum::<u32>() + e.feasible + e.not_examined, 3);
    let json = serde_json::to_string(e).unwrap();
    let back: Explanation = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, e);
}

#[test]
fn breaker_excludes_then_probes_then_closes() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, "sh", 2));
    s.upsert_agent(agent(2, "sh", 1));
    let skills = vec!["sh".parse().unwrap()];
    for t in 0..3 {
        s.record_outcome(aid(1), &skills, None, false, 100, 1000 + t);
    }
    let st = s.agent_state(aid(1), 1002).unwrap();
    assert_eq!(st.breaker, BreakerState::Open { until: 31_002 });
    s.upsert_agent(agent(2, "sh", 0)); // no capacity elsewhere; the profile survives
    assert_eq!(s.agent_state(aid(1), 1002).unwrap().breaker_trips, 1, "profile kept on re-registration");
    s.enqueue(task(1, 0, "sh"));
    s.enqueue(task(2, 0, "sh"));
    assert!(s.schedule(2000, 10).is_empty(), "open breaker: no placement");
    // Cool-down over: half-open admits exactly one probe even with two free slots.
    let p = s.schedule(31_002, 10);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].agent, aid(1));
    assert!(s.schedule(31_003, 10).is_empty(), "probe out");
    s.record_outcome(aid(1), &skills, None, true, 100, 31_500);
    s.release_slot(aid(1));
    assert_eq!(s.agent_state(aid(1), 31_500).unwrap().breaker, BreakerState::Closed { failures: 0 });
    assert_eq!(s.schedule(31_500, 10).len(), 1);
}

#[test]
fn avoid_list_is_hard_unless_only_avoided_agents_are_capable() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, "rust", 1));
    s.upsert_agent(agent(2, "rust", 1));
    s.take_slot(aid(2)); // the other capable agent is busy
    let mut t = task(1, 0, "rust");
    t.avoid = vec![aid(1)];
    s.enqueue(t);
    assert!(s.schedule(0, 10).is_empty(), "waits for agent 2 rather than retrying on agent 1");
    s.release_slot(aid(2));
    let p = s.schedule(0, 10);
    assert_eq!(p[0].agent, aid(2));
    assert!(p[0].explanation.rejected.iter().any(|r| r.reason == RejectReason::Avoided));
    // Only avoided agents are capable: they are used again, and it says so.
    let mut t = task(2, 0, "rust");
    t.avoid = vec![aid(1), aid(2)];
    s.enqueue(t);
    let p = s.schedule(0, 10);
    assert_eq!(p[0].agent, aid(1));
    assert!(!p[0].explanation.notes.is_empty());
}

#[test]
fn affinity_prefers_the_warm_agent_and_decays() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, "rust", 1));
    s.upsert_agent(agent(2, "rust", 1));
    s.record_outcome(aid(2), &[], ctx("repo-x").as_ref(), true, 10, 0);
    let mut t = task(1, 0, "rust");
    t.context = ctx("repo-x");
    s.enqueue(t.clone());
    let p = s.schedule(1000, 10);
    assert_eq!(p[0].agent, aid(2), "warm agent wins");
    let aff = |e: &Explanation, a: AgentId| {
        let c = e.candidates.iter().find(|c| c.agent == a).unwrap();
        c.factors.iter().find(|f| f.name == "affinity").unwrap().value
    };
    assert!(aff(&p[0].explanation, aid(2)) > 0.99);
    assert_eq!(aff(&p[0].explanation, aid(1)), 0.0);
    assert_eq!(s.agent_state(aid(2), 0).unwrap().recent_repositories, vec!["repo-x".to_string()]);
    // Ten half-lives later the warmth is gone.
    s.release_slot(aid(2));
    let mut t2 = t;
    t2.id = tid(2);
    s.enqueue(t2);
    let later = 1000 + 10 * 600_000;
    let p = s.schedule(later, 10);
    assert!(aff(&p[0].explanation, aid(2)) < 0.001);
}

#[test]
fn batch_assignment_beats_greedy() {
    let setup = |batch: bool| {
        let mut s = Scheduler::with_config(RoutingConfig { batch, ..Default::default() });
        s.upsert_agent(agent(1, "rust:1.0,python:1.0", 1));
        s.upsert_agent(agent(2, "rust:0.6", 1));
        s.enqueue(task(1, 0, "rust"));
        let mut t2 = task(2, 0, "rust");
        t2.preferred = vec!["python".parse().unwrap()];
        s.enqueue(t2);
        s.schedule(0, 10)
    };
    let total = |p: &[Placement]| p.iter().map(|p| p.explanation.candidates[0].total).sum::<f64>();
    let greedy = setup(false);
    let joint = setup(true);
    assert_eq!(greedy.iter().map(|p| p.agent).collect::<Vec<_>>(), vec![aid(1), aid(2)]);
    assert_eq!(joint.iter().map(|p| p.agent).collect::<Vec<_>>(), vec![aid(2), aid(1)]);
    assert!(joint.iter().all(|p| p.explanation.mode == AssignMode::Batch));
    assert!(total(&joint) > total(&greedy) + 1e-6, "{} vs {}", total(&joint), total(&greedy));
    // Task 1's explanation is honest: agent 1's slot went to task 2.
    let e = &joint[0].explanation;
    assert!(e.rejected.iter().any(|r| r.agent == aid(1) && r.reason.kind() == "no-free-slot"));
}

#[test]
fn tenants_share_capacity_fairly() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, "sh", 1));
    for n in 0..50 {
        let mut t = task(n, 0, "sh");
        t.tenant = "flood".into();
        s.enqueue(t);
    }
    for n in 100..105 {
        let mut t = task(n, 0, "sh");
        t.tenant = "small".into();
        s.enqueue(t);
    }
    let mut order = Vec::new();
    for step in 0..20 {
        let p = s.schedule(step, 10);
        assert_eq!(p.len(), 1);
        order.push(p[0].task);
        s.release_slot(aid(1));
    }
    let small: Vec<usize> = order.iter().enumerate().filter(|(_, t)| **t >= tid(100)).map(|(i, _)| i).collect();
    assert_eq!(small.len(), 5, "all of the small tenant's tasks ran within 10 placements");
    assert!(small.iter().enumerate().all(|(k, &i)| i <= 2 * k + 1), "{small:?}");
    // FIFO within each tenant.
    let flood: Vec<TaskId> = order.iter().copied().filter(|t| *t < tid(100)).collect();
    assert!(flood.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn baseline_policies_are_interchangeable() {
    let run = |policy: Box<dyn Placer + Send>| {
        let mut s = Scheduler::with_placer(policy);
        for n in 0..4 {
            s.upsert_agent(agent(n, "sh", 1));
        }
        for n in 0..4 {
            s.enqueue(task(n, 0, "sh"));
        }
        let p = s.schedule(0, 10);
        assert_eq!(p.len(), 4);
        for p in &p {
            assert_eq!(p.explanation.chosen, p.agent);
        }
        (p[0].explanation.policy.clone(), p.iter().map(|p| p.agent).collect::<Vec<_>>())
    };
    for name in ["torch", "least_loaded", "round_robin", "random"] {
        let (policy, agents) = run(crate::routing::policy_by_name(name, 7).unwrap());
        assert_eq!(policy, name);
        assert_eq!(agents.iter().collect::<HashSet<_>>().len(), 4, "{name} spreads");
    }
    let mut rr = Scheduler::with_placer(RoundRobin::default());
    rr.upsert_agent(agent(1, "sh", 5));
    rr.upsert_agent(agent(2, "sh", 5));
    for n in 0..4 {
        rr.enqueue(task(n, 0, "sh"));
    }
    let agents: Vec<AgentId> = rr.schedule(0, 10).iter().map(|p| p.agent).collect();
    assert_eq!(agents, vec![aid(1), aid(2), aid(1), aid(2)]);
    let _ = Random::new(1);
}

#[derive(Debug, Clone)]
enum Op {
    Task { prio: i32, skill: usize, min: bool, label: bool, repo: u8 },
    Agent { skills: Vec<(usize, bool)>, slots: u32, label: bool },
    Finish { pick: usize, success: bool },
    Schedule { dt: u64 },
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
            Op::Task { prio, skill, min, label, repo } => {
                n += 1;
                let mut t = task(n, prio, &format!("{}{}", SKILLS[skill], if min { ":0.8" } else { "" }));
                if label {
                    t.agent_labels.insert("pool".into(), "x".into());
                }
                t.context = ctx(&format!("repo-{repo}"));
                s.enqueue(t.clone());
                twin.enqueue(t);
                queued.insert(tid(n), (prio, n, skill, min, label));
            }
            Op::Agent { skills, slots, label } => {
                let id = aid(caps.len() as u64);
                let sk: Vec<(usize, f64)> = skills.iter().map(|&(k, hi)| (k, if hi { 0.9 } else { 0.5 })).collect();
                let mut a = AgentSlots::new(
                    id,
                    sk.iter().map(|&(k, l)| Skill { name: SKILLS[k].into(), level: l }).collect(),
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
                prop_assert_eq!(&placements, &twin.schedule(now, usize::MAX), "same inputs, same decisions");
                for p in &placements {
                    let (prio, seq, skill, hi, label) = queued.remove(&p.task).expect("placed task was queued");
                    prop_assert!(fits(&caps[&p.agent], skill, hi, label), "agent lacks skill, level or label");
                    prop_assert!(ever_placed.insert(p.task), "task placed twice");
                    // Single tenant: no still-queued task with the same needs outranks it.
                    for &(op, oseq, osk, ohi, olab) in queued.values() {
                        if (osk, ohi, olab) == (skill, hi, label) {
                            prop_assert!((Reverse(prio), seq) < (Reverse(op), oseq), "a higher-ranked task was skipped");
                        }
                    }
                    let e = &p.explanation;
                    prop_assert_eq!(e.chosen, p.agent);
                    prop_assert_eq!(e.candidates[0].agent, p.agent, "chosen is the top candidate");
                    for c in &e.candidates {
                        prop_assert!(c.total <= e.candidates[0].total, "a candidate outscored the chosen agent");
                        prop_assert!(fits(&caps[&c.agent], skill, hi, label), "infeasible candidate listed");
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

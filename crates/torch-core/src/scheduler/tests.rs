use std::collections::HashSet;

use uuid::Uuid;

use super::*;
use crate::routing::breaker::BreakerState;
use crate::routing::explain::{AssignMode, RejectReason};
use crate::routing::policy::{Random, RoundRobin};

pub(super) fn tid(n: u64) -> TaskId {
    TaskId::from_uuid(Uuid::from_u64_pair(1, n))
}
pub(super) fn aid(n: u64) -> AgentId {
    AgentId::from_uuid(Uuid::from_u64_pair(2, n))
}
pub(super) fn agent(n: u64, skills: &str, slots: u32) -> AgentSlots {
    AgentSlots::new(
        aid(n),
        crate::skill::parse_skill_list(skills).unwrap(),
        slots,
    )
}
pub(super) fn task(n: u64, prio: i32, skills: &str) -> QueuedTask {
    let skills = skills
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    QueuedTask::new(tid(n), prio, n, skills)
}
pub(super) fn ctx(repo: &str) -> Option<TaskContext> {
    Some(TaskContext {
        repository: Some(repo.into()),
        ..Default::default()
    })
}
pub(super) const SKILLS: [&str; 3] = ["rust", "python", "sh"];

#[test]
fn priority_then_fifo_and_skills() {
    for batch in [true, false] {
        let mut s = Scheduler::with_config(RoutingConfig {
            batch,
            ..Default::default()
        });
        s.upsert_agent(agent(1, "sh", 2));
        s.enqueue(task(1, 0, "sh"));
        s.enqueue(task(2, 5, "sh"));
        s.enqueue(task(3, 9, "rust"));
        s.enqueue(task(4, 0, "sh"));
        let p = s.schedule(0, 100);
        assert_eq!(
            p.iter().map(|p| p.task).collect::<Vec<_>>(),
            vec![tid(2), tid(1)]
        );
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
    s.upsert_agent(AgentSlots {
        id: aid(3),
        ..labelled
    });
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
    assert_eq!(
        e.rejected_counts.values().sum::<u32>() + e.feasible + e.not_examined,
        3
    );
    // Scores are rounded to 4 decimals when stored; a stored explanation
    // reads back and stores again identically.
    let json = serde_json::to_string(e).unwrap();
    let back: Explanation = serde_json::from_str(&json).unwrap();
    assert_eq!(back.chosen, e.chosen);
    assert_eq!(back.rejected, e.rejected);
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
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
    s.upsert_agent(agent(2, "sh", 0)); // no capacity elsewhere
    s.remove_agent(aid(1));
    s.upsert_agent(agent(1, "sh", 2)); // disconnects and comes back
    assert_eq!(
        s.agent_state(aid(1), 1002).unwrap().breaker,
        BreakerState::Open { until: 31_002 },
        "a reconnect does not reset the breaker"
    );
    s.enqueue(task(1, 0, "sh"));
    s.enqueue(task(2, 0, "sh"));
    assert!(
        s.schedule(2000, 10).is_empty(),
        "open breaker: no placement"
    );
    // Cool-down over: half-open admits exactly one probe even with two free slots.
    let p = s.schedule(31_002, 10);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].agent, aid(1));
    assert!(s.schedule(31_003, 10).is_empty(), "probe out");
    s.record_outcome(aid(1), &skills, None, true, 100, 31_500);
    s.release_slot(aid(1));
    assert_eq!(
        s.agent_state(aid(1), 31_500).unwrap().breaker,
        BreakerState::Closed { failures: 0 }
    );
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
    assert!(
        s.schedule(0, 10).is_empty(),
        "waits for agent 2 rather than retrying on agent 1"
    );
    s.release_slot(aid(2));
    let p = s.schedule(0, 10);
    assert_eq!(p[0].agent, aid(2));
    assert!(
        p[0].explanation
            .rejected
            .iter()
            .any(|r| r.reason == RejectReason::Avoided)
    );
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
        c.factors
            .iter()
            .find(|f| f.name == "affinity")
            .unwrap()
            .value
    };
    assert!(aff(&p[0].explanation, aid(2)) > 0.99);
    assert_eq!(aff(&p[0].explanation, aid(1)), 0.0);
    assert_eq!(
        s.agent_state(aid(2), 0).unwrap().recent_repositories,
        vec!["repo-x".to_string()]
    );
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
        let mut s = Scheduler::with_config(RoutingConfig {
            batch,
            ..Default::default()
        });
        s.upsert_agent(agent(1, "rust:1.0,python:1.0", 1));
        s.upsert_agent(agent(2, "rust:0.6", 1));
        s.enqueue(task(1, 0, "rust"));
        let mut t2 = task(2, 0, "rust");
        t2.preferred = vec!["python".parse().unwrap()];
        s.enqueue(t2);
        s.schedule(0, 10)
    };
    let total = |p: &[Placement]| {
        p.iter()
            .map(|p| p.explanation.candidates[0].total)
            .sum::<f64>()
    };
    let greedy = setup(false);
    let joint = setup(true);
    assert_eq!(
        greedy.iter().map(|p| p.agent).collect::<Vec<_>>(),
        vec![aid(1), aid(2)]
    );
    assert_eq!(
        joint.iter().map(|p| p.agent).collect::<Vec<_>>(),
        vec![aid(2), aid(1)]
    );
    assert!(
        joint
            .iter()
            .all(|p| p.explanation.mode == AssignMode::Batch)
    );
    assert!(
        total(&joint) > total(&greedy) + 1e-6,
        "{} vs {}",
        total(&joint),
        total(&greedy)
    );
    // Task 1's explanation is honest: agent 1's slot went to task 2, so it
    // is counted as busy (busy agents are counted, not listed).
    let e = &joint[0].explanation;
    assert!(e.rejected_counts.get("no-free-slot").copied().unwrap_or(0) >= 1);
    assert!(e.rejected.iter().all(|r| r.reason.kind() != "no-free-slot"));
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
    let small: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, t)| **t >= tid(100))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        small.len(),
        5,
        "all of the small tenant's tasks ran within 10 placements"
    );
    assert!(
        small.iter().enumerate().all(|(k, &i)| i <= 2 * k + 1),
        "{small:?}"
    );
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
        (
            p[0].explanation.policy.clone(),
            p.iter().map(|p| p.agent).collect::<Vec<_>>(),
        )
    };
    for name in ["torch", "least_loaded", "round_robin", "random"] {
        let (policy, agents) = run(crate::routing::policy_by_name(name, 7).unwrap());
        assert_eq!(policy, name);
        assert_eq!(
            agents.iter().collect::<HashSet<_>>().len(),
            4,
            "{name} spreads"
        );
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

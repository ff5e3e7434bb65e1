//! A large synthetic fleet for measuring the cost of one routing decision.

use super::prng::SplitMix64;
use super::taxonomy::Taxonomy;
use crate::scheduler::{AgentSlots, QueuedTask, Scheduler, Torch};
use crate::spec::TaskContext;

/// A large fleet for measuring decision cost (`torch bench throughput`
/// times [`Scheduler::schedule`] on it): `agents` agents with 3 of the 17
/// default skills each (so a skill has ~18 % of the fleet), 4 slots with 0–3
/// in use, learned performance and 16 recent contexts each; plus `tasks`
/// tasks needing 1–2 skills, with a preferred skill and a context. Seeded.
pub fn scale_fixture(
    agents: usize,
    tasks: usize,
    seed: u64,
) -> (Scheduler<Torch>, Vec<QueuedTask>) {
    // The default taxonomy's skills (17, sorted by name).
    let names: Vec<String> = Taxonomy::default().entries().into_keys().collect();
    let pick = |rng: &mut SplitMix64| names[rng.below(names.len() as u64) as usize].clone();
    let mut rng = SplitMix64::new(seed);
    let mut sched = Scheduler::new();
    let ctx = |rng: &mut SplitMix64| TaskContext {
        repository: Some(format!("repo-{}", rng.below(200))),
        paths: vec![
            format!("src/m{}/f{}.rs", rng.below(5), rng.below(20)),
            format!("src/m{}/g.rs", rng.below(5)),
        ],
        parent: None,
        branch: None,
    };
    for i in 0..agents {
        let mut skills: Vec<crate::skill::Skill> = Vec::new();
        while skills.len() < 3 {
            let name = pick(&mut rng);
            if !skills.iter().any(|s| s.name == name) {
                skills.push(crate::skill::Skill {
                    name,
                    level: rng.range_f64(0.3, 1.0),
                });
            }
        }
        let id = crate::ids::AgentId::from_uuid(uuid::Uuid::from_u64_pair(0x5ca1e, i as u64));
        let used = rng.below(4) as u32;
        sched.upsert_agent(AgentSlots {
            used,
            cost: rng.range_f64(0.0, 2.0),
            ..AgentSlots::new(id, skills.clone(), 4)
        });
        for k in 0..16u64 {
            let req = [crate::skill::SkillReq {
                name: skills[(k % 3) as usize].name.clone(),
                min: 0.0,
            }];
            let c = ctx(&mut rng);
            let ok = rng.chance(0.9);
            sched.record_outcome(id, &req, Some(&c), ok, 30_000 + rng.below(60_000), k * 1000);
        }
    }
    let queued = (0..tasks)
        .map(|i| {
            let mut skills =
                vec![
                    pick(&mut rng)
                        .parse()
                        .unwrap_or_else(|_| crate::skill::SkillReq {
                            name: "sh".into(),
                            min: 0.0,
                        }),
                ];
            if rng.chance(0.3) {
                skills.push(crate::skill::SkillReq {
                    name: pick(&mut rng),
                    min: 0.0,
                });
                skills.dedup_by(|a, b| a.name == b.name);
            }
            let id = crate::ids::TaskId::from_uuid(uuid::Uuid::from_u64_pair(0x5ca1e, i as u64));
            QueuedTask {
                preferred: vec![crate::skill::SkillReq {
                    name: pick(&mut rng),
                    min: 0.0,
                }],
                context: Some(ctx(&mut rng)),
                ..QueuedTask::new(id, 0, i as u64, skills)
            }
        })
        .collect();
    (sched, queued)
}

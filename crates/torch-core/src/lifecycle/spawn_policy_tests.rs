//! `can_spawn_agent`: every limit, the check order, bucket refill and pruning.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::spawn_policy::*;

fn limits() -> SpawnLimits {
    let mut l = SpawnLimits::default();
    l.tenant_quota.insert("acme".into(), 2);
    l
}

fn autoscale_req() -> SpawnRequest {
    SpawnRequest {
        template: "coder".into(),
        template_max: 4,
        parent: None,
        depth: 0,
        tenant: "acme".into(),
        node: NodeHeadroom {
            cpu_used: 0.2,
            mem_used: 0.2,
        },
        is_autoscale: true,
    }
}

fn child_req(parent: &str, depth: u32) -> SpawnRequest {
    SpawnRequest {
        parent: Some(parent.into()),
        depth,
        is_autoscale: false,
        tenant: "other".into(),
        ..autoscale_req()
    }
}

fn pool(total: u32, coder: u32, children: u32, acme: u32) -> PoolView {
    PoolView {
        total,
        per_template: BTreeMap::from([("coder".to_string(), coder)]),
        children_of_parent: children,
        per_tenant: BTreeMap::from([("acme".to_string(), acme)]),
    }
}

fn refused(r: Result<(), SpawnRefusal>) -> SpawnRefusal {
    r.expect_err("spawn should be refused")
}

#[test]
fn defaults_and_toml_shape() {
    let l: SpawnLimits = toml::from_str(
        "pool-max = 10\nparent-rate = { burst = 1, per-sec = 0.5 }\n[tenant-quota]\nacme = 3\n",
    )
    .unwrap();
    assert_eq!(l.pool_max, 10);
    assert_eq!(l.children_per_parent, 3);
    assert_eq!(l.max_depth, 2);
    assert_eq!((l.node_cpu_max, l.node_mem_max), (0.80, 0.70));
    assert_eq!(
        l.parent_rate,
        RateLimit {
            burst: 1,
            per_sec: 0.5
        }
    );
    assert_eq!(
        l.global_rate,
        RateLimit {
            burst: 20,
            per_sec: 10.0
        }
    );
    assert_eq!(l.tenant_quota["acme"], 3);
    assert!(toml::from_str::<SpawnLimits>("pool_max = 1").is_err());
    assert!(SpawnLimits::default().problems().is_empty());
    let bad = SpawnLimits {
        node_cpu_max: 1.5,
        global_rate: RateLimit {
            burst: 0,
            per_sec: 1.0,
        },
        ..SpawnLimits::default()
    };
    let fields: Vec<&str> = bad.problems().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, vec!["node-cpu-max", "global-rate"]);
}

#[test]
fn each_limit_refuses_with_its_name_and_numbers() {
    let now = 1_000;
    let mut p = SpawnPolicy::new(limits());
    assert_eq!(
        p.can_spawn_agent(&autoscale_req(), &pool(0, 0, 0, 0), now),
        Ok(())
    );

    let r = refused(p.can_spawn_agent(&autoscale_req(), &pool(64, 0, 0, 0), now));
    assert_eq!(r.limit, SpawnLimit::PoolMax);
    assert_eq!(
        r.to_string(),
        "spawn refused by pool-max: pool already has 64 of 64 agents"
    );

    let r = refused(p.can_spawn_agent(&autoscale_req(), &pool(5, 4, 0, 0), now));
    assert_eq!(r.limit, SpawnLimit::TemplateMax);
    assert!(
        r.to_string()
            .contains("template coder already has 4 of 4 agents"),
        "{r}"
    );

    let hot = SpawnRequest {
        node: NodeHeadroom {
            cpu_used: 0.85,
            mem_used: 0.1,
        },
        ..autoscale_req()
    };
    let r = refused(p.can_spawn_agent(&hot, &pool(0, 0, 0, 0), now));
    assert_eq!(r.limit, SpawnLimit::NodeCpu);
    assert_eq!(
        r.to_string(),
        "spawn refused by node-cpu: node CPU at 85%, limit 80%"
    );
    let unknown = SpawnRequest {
        node: NodeHeadroom {
            cpu_used: f64::NAN,
            mem_used: 0.1,
        },
        ..autoscale_req()
    };
    assert_eq!(
        refused(p.can_spawn_agent(&unknown, &pool(0, 0, 0, 0), now)).limit,
        SpawnLimit::NodeCpu
    );

    let full = SpawnRequest {
        node: NodeHeadroom {
            cpu_used: 0.1,
            mem_used: 0.70,
        },
        ..autoscale_req()
    };
    let r = refused(p.can_spawn_agent(&full, &pool(0, 0, 0, 0), now));
    assert_eq!(r.limit, SpawnLimit::NodeMemory);
    assert!(r.message.contains("70%"), "{r}");

    let r = refused(p.can_spawn_agent(&child_req("a1", 3), &pool(0, 0, 0, 0), now));
    assert_eq!(r.limit, SpawnLimit::Depth);
    assert!(
        r.to_string().contains("by a1 would be at depth 3, limit 2"),
        "{r}"
    );
    assert_eq!(
        p.can_spawn_agent(&child_req("a1", 2), &pool(0, 0, 0, 0), now),
        Ok(())
    );

    let r = refused(p.can_spawn_agent(&child_req("a1", 1), &pool(0, 0, 3, 0), now));
    assert_eq!(r.limit, SpawnLimit::Children);
    assert_eq!(
        r.to_string(),
        "spawn refused by children: parent agent a1 already has 3 of 3 children"
    );

    let r = refused(p.can_spawn_agent(&autoscale_req(), &pool(2, 2, 0, 2), now));
    assert_eq!(r.limit, SpawnLimit::TenantQuota);
    assert!(
        r.to_string()
            .contains("tenant acme already has 2 of 2 agents"),
        "{r}"
    );
    // A tenant without a quota is unlimited.
    let other = SpawnRequest {
        tenant: "other".into(),
        ..autoscale_req()
    };
    assert_eq!(p.can_spawn_agent(&other, &pool(2, 2, 0, 2), now), Ok(()));
}

#[test]
fn autoscaler_spawns_skip_parent_checks() {
    let mut p = SpawnPolicy::new(limits());
    // Depth, children and the parent bucket only apply to self-spawns, even
    // if the autoscaler names a parent.
    let req = SpawnRequest {
        parent: Some("a1".into()),
        depth: 9,
        ..autoscale_req()
    };
    for _ in 0..5 {
        assert_eq!(p.can_spawn_agent(&req, &pool(0, 0, 99, 0), 0), Ok(()));
    }
    assert_eq!(p.tracked_parents(), 0);
    assert_eq!(req.self_spawn_parent(), None);
    assert_eq!(child_req("a1", 1).self_spawn_parent(), Some("a1"));
}

#[test]
fn checks_run_in_the_documented_order() {
    let mut p = SpawnPolicy::new(limits());
    let mut req = child_req("a1", 9);
    req.tenant = "acme".into();
    req.node = NodeHeadroom {
        cpu_used: 0.9,
        mem_used: 0.9,
    };
    // Everything is over; peel the limits off one by one.
    let mut view = pool(64, 4, 3, 2);
    let mut order = Vec::new();
    loop {
        match p.can_spawn_agent(&req, &view, 0) {
            Ok(()) => break,
            Err(r) => {
                order.push(r.limit.as_str());
                match r.limit {
                    SpawnLimit::PoolMax => view.total = 0,
                    SpawnLimit::TemplateMax => view.per_template.clear(),
                    SpawnLimit::NodeCpu => req.node.cpu_used = 0.0,
                    SpawnLimit::NodeMemory => req.node.mem_used = 0.0,
                    SpawnLimit::Depth => req.depth = 1,
                    SpawnLimit::Children => view.children_of_parent = 0,
                    SpawnLimit::TenantQuota => view.per_tenant.clear(),
                    other => panic!("unexpected {other}"),
                }
            }
        }
    }
    assert_eq!(
        order,
        vec![
            "pool-max",
            "template-max",
            "node-cpu",
            "node-memory",
            "depth",
            "children",
            "tenant-quota"
        ]
    );
    let json = serde_json::to_value(SpawnLimit::TenantQuota).unwrap();
    assert_eq!(json, "tenant-quota");
    for l in [
        SpawnLimit::PoolMax,
        SpawnLimit::ParentRate,
        SpawnLimit::GlobalRate,
        SpawnLimit::NodeMemory,
    ] {
        assert_eq!(serde_json::to_value(l).unwrap(), l.as_str());
    }
}

#[test]
fn parent_rate_then_refill_and_refusals_cost_no_tokens() {
    let mut p = SpawnPolicy::new(limits());
    let empty = pool(0, 0, 0, 0);
    // Burst 3 for parent a1.
    for _ in 0..3 {
        assert_eq!(p.can_spawn_agent(&child_req("a1", 1), &empty, 0), Ok(()));
    }
    let r = refused(p.can_spawn_agent(&child_req("a1", 1), &empty, 0));
    assert_eq!(r.limit, SpawnLimit::ParentRate);
    assert!(
        r.to_string()
            .contains("parent agent a1 may spawn 3 at once and 1/s"),
        "{r}"
    );
    // Another parent has its own bucket.
    assert_eq!(p.can_spawn_agent(&child_req("a2", 1), &empty, 0), Ok(()));
    // 1/s: one more after a second, not before.
    assert!(p.can_spawn_agent(&child_req("a1", 1), &empty, 999).is_err());
    assert_eq!(p.can_spawn_agent(&child_req("a1", 1), &empty, 1000), Ok(()));
    assert!(
        p.can_spawn_agent(&child_req("a1", 1), &empty, 1000)
            .is_err()
    );
    // A refusal by an earlier check does not consume the parent's token.
    assert!(
        p.can_spawn_agent(&child_req("a1", 1), &pool(0, 0, 3, 0), 2000)
            .is_err()
    );
    assert_eq!(p.can_spawn_agent(&child_req("a1", 1), &empty, 2000), Ok(()));
    // Full buckets are forgotten by prune; a2 refills after 1s.
    assert_eq!(p.tracked_parents(), 2);
    p.prune(10_000);
    assert_eq!(p.tracked_parents(), 0);
}

#[test]
fn global_rate_refuses_without_taking_the_parent_token() {
    let mut l = limits();
    l.global_rate = RateLimit {
        burst: 2,
        per_sec: 10.0,
    };
    let mut p = SpawnPolicy::new(l);
    let empty = pool(0, 0, 0, 0);
    assert_eq!(p.can_spawn_agent(&autoscale_req(), &empty, 0), Ok(()));
    assert_eq!(p.can_spawn_agent(&child_req("a1", 1), &empty, 0), Ok(()));
    let r = refused(p.can_spawn_agent(&child_req("a1", 1), &empty, 0));
    assert_eq!(r.limit, SpawnLimit::GlobalRate);
    assert_eq!(
        r.to_string(),
        "spawn refused by global-rate: the pool may spawn 2 at once and 10/s; try again shortly"
    );
    // 10/s: one token back after 100 ms; a1 still has 2 of its 3.
    assert_eq!(p.can_spawn_agent(&child_req("a1", 1), &empty, 100), Ok(()));
    assert_eq!(p.can_spawn_agent(&child_req("a1", 1), &empty, 200), Ok(()));
    assert_eq!(
        refused(p.can_spawn_agent(&child_req("a1", 1), &empty, 300)).limit,
        SpawnLimit::ParentRate
    );
}

#[test]
fn token_bucket_refills_to_capacity_and_ignores_time_going_back() {
    let mut b = TokenBucket::new(
        &RateLimit {
            burst: 2,
            per_sec: 4.0,
        },
        1000,
    );
    assert!(b.is_full());
    assert!(b.try_take(1000) && b.try_take(1000) && !b.try_take(1000));
    assert!(!b.try_take(1249));
    assert!(b.try_take(1250));
    assert!(!b.try_take(500), "time going backwards earns nothing");
    b.refill(100_000);
    assert_eq!(b.tokens, 2.0);
    let mut never = TokenBucket::new(
        &RateLimit {
            burst: 1,
            per_sec: 0.0,
        },
        0,
    );
    assert!(never.try_take(0) && !never.try_take(u64::MAX));
}

proptest! {
    #[test]
    fn bucket_never_exceeds_its_rate(
        burst in 1u32..5,
        per_sec in 0.1f64..20.0,
        steps in proptest::collection::vec(0u64..500, 1..200),
    ) {
        let mut b = TokenBucket::new(&RateLimit { burst, per_sec }, 0);
        let (mut now, mut taken) = (0u64, 0u64);
        for dt in steps {
            now += dt;
            if b.try_take(now) {
                taken += 1;
            }
            prop_assert!(b.tokens >= 0.0 && b.tokens <= b.capacity);
        }
        let allowed = f64::from(burst) + per_sec * now as f64 / 1000.0;
        prop_assert!(taken as f64 <= allowed + 1e-9, "{} > {}", taken, allowed);
    }
}

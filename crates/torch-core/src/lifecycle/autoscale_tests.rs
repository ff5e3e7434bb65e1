//! Autoscaler unit tests, the ramp simulation and the scale-down property.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::autoscale::*;
use super::autoscale_sim::{SIM_IDLE_TIMEOUT_STEPS, SimParams, ramp_trace, simulate};

const IDLE: Duration = Duration::from_secs(60);

fn scaler(min: u32, max: u32, slots: u32, predictive: bool) -> Autoscaler {
    let config = ScalingConfig {
        predictive,
        ..ScalingConfig::default()
    };
    Autoscaler::new("coder", min, max, slots, IDLE, config)
}

fn idle(agent: &str, since: u64, busy: bool) -> IdleAgent {
    IdleAgent {
        agent: agent.into(),
        idle_since_ms: since,
        busy,
    }
}

#[test]
fn holt_follows_a_ramp_and_never_forecasts_negative() {
    let mut h = Holt::new(0.5, 0.3);
    assert_eq!(h.forecast(5.0), 0.0);
    for x in [1.0, 3.0, 5.0, 7.0, 9.0, 11.0] {
        h.observe(x);
    }
    assert!((h.trend - 2.0).abs() < 0.3, "{h:?}");
    let f = h.forecast(5.0);
    assert!((19.0..23.0).contains(&f), "forecast {f}");
    for x in [8.0, 4.0, 1.0, 0.0, 0.0] {
        h.observe(x);
    }
    assert!(h.trend < 0.0);
    assert_eq!(h.forecast(100.0), 0.0);
    assert_eq!(h.seen, 11);
    h.observe(f64::NAN);
    assert!(h.level.is_finite());
}

#[test]
fn service_time_comes_from_run_times_else_littles_law() {
    let mut a = scaler(0, 10, 4, true);
    let inputs = ScaleInputs {
        now_ms: 1000,
        arrivals: 2,
        busy_slots: 8,
        total_slots: 8,
        running: 2,
        ..ScaleInputs::default()
    };
    a.tick(&inputs);
    // Little's law: 8 busy slots at 2 arrivals per interval → 4 intervals.
    assert!((a.service_steps() - 4.0).abs() < 1e-9);
    a.observe_run_time(30_000);
    assert!((a.service_steps() - 30.0).abs() < 1e-9);
    a.observe_run_time(40_000);
    assert!((a.service_steps() - 31.0).abs() < 1e-9, "smoothed");
    // A reload keeps what was learned but takes the new bounds.
    let mut t = super::template::AgentTemplate::new(
        "coder",
        super::template::Executor {
            command: vec!["x".into()],
            prompt_via: Default::default(),
            output: Default::default(),
            ..Default::default()
        },
    );
    t.max = 2;
    a.reconfigure(&t);
    assert!((a.service_steps() - 31.0).abs() < 1e-9);
    assert_eq!(a.holt().seen, 1);
    let d = a.tick(&ScaleInputs {
        queue_depth: 100,
        ..inputs
    });
    assert_eq!(d.desired, 2);
    assert_eq!(a.template(), "coder");
    assert_eq!(a.idle_timeout_ms(), 60_000);
}

#[test]
fn reaches_min_at_once_and_scales_up_on_a_queue() {
    let mut a = scaler(2, 10, 4, false);
    let d = a.tick(&ScaleInputs::default());
    assert_eq!(d.action, ScaleAction::Up { count: 2 });
    assert_eq!(d.desired, 2);
    assert!(
        d.is_change() && d.reason.starts_with("up 2"),
        "{}",
        d.reason
    );

    // 2 agents × 4 slots all busy, 9 queued: demand 17 slots → 5 agents.
    let inputs = ScaleInputs {
        now_ms: 10_000,
        queue_depth: 9,
        busy_slots: 8,
        total_slots: 8,
        running: 2,
        ..ScaleInputs::default()
    };
    let d = a.tick(&inputs);
    assert_eq!(d.action, ScaleAction::Up { count: 3 });
    assert_eq!(d.desired, 5);
    assert_eq!(d.inputs.queue_depth, 9);
    assert_eq!(d.forecast, None, "reactive");

    // Within the up cool-down (2s): hold, and say why.
    let d = a.tick(&ScaleInputs {
        now_ms: 11_000,
        queue_depth: 30,
        ..inputs.clone()
    });
    assert_eq!(d.action, ScaleAction::Hold);
    assert!(d.reason.contains("cool-down"), "{}", d.reason);
    assert!(!d.is_change());

    // Clamped to max.
    let d = a.tick(&ScaleInputs {
        now_ms: 13_000,
        queue_depth: 1000,
        ..inputs
    });
    assert_eq!(d.action, ScaleAction::Up { count: 8 });
    assert_eq!(d.desired, 10);
}

#[test]
fn pressure_adds_one_when_nothing_is_starting() {
    let mut a = scaler(0, 5, 4, false);
    // Demand fits (3 busy + 1 queued in 1 agent of 4) but the task has waited 3s.
    let base = ScaleInputs {
        now_ms: 5000,
        queue_depth: 1,
        oldest_wait_ms: 3000,
        busy_slots: 3,
        total_slots: 4,
        running: 1,
        ..ScaleInputs::default()
    };
    let d = a.tick(&base);
    assert_eq!(d.action, ScaleAction::Up { count: 1 });
    assert!(
        d.reason.contains("waited 3000ms > target 2000ms"),
        "{}",
        d.reason
    );
    // Something already starting: no pressure.
    let mut a = scaler(0, 5, 4, false);
    let d = a.tick(&ScaleInputs {
        starting: 1,
        ..base.clone()
    });
    assert_eq!(d.action, ScaleAction::Hold);
    // At max: no pressure either.
    let mut a = scaler(0, 1, 4, false);
    assert_eq!(a.tick(&base).action, ScaleAction::Hold);
}

#[test]
fn forecast_adds_capacity_on_a_ramp_before_the_queue_builds() {
    let mut predictive = scaler(1, 100, 4, true);
    let mut reactive = scaler(1, 100, 4, false);
    let mut last = (None, None);
    // Arrivals ramp 2, 4, 6, ...; service 3 intervals, so busy ≈ 3 × rate;
    // capacity exactly covers busy slots and there is no queue yet.
    for (i, rate) in (1..=6u32).map(|i| (i, 2 * i)) {
        let busy = 3 * rate;
        let running = busy.div_ceil(4);
        let inputs = ScaleInputs {
            now_ms: u64::from(i) * 1000,
            arrivals: u64::from(rate),
            busy_slots: busy,
            total_slots: running * 4,
            running,
            ..ScaleInputs::default()
        };
        last = (Some(predictive.tick(&inputs)), Some(reactive.tick(&inputs)));
    }
    let (p, r) = (last.0.unwrap(), last.1.unwrap());
    assert!(p.forecast.unwrap() > 12.0, "{p:?}");
    assert!(
        p.desired > r.desired,
        "predictive {} vs reactive {}",
        p.desired,
        r.desired
    );
    assert!(matches!(p.action, ScaleAction::Up { .. }), "{}", p.reason);
    assert_eq!(r.action, ScaleAction::Hold, "{}", r.reason);
    assert!(p.reason.contains("growth"), "{}", p.reason);
}

#[test]
fn scales_down_only_idle_agents_after_timeout_and_cooldown() {
    let mut a = scaler(1, 10, 2, false);
    let now = 1_000_000;
    let inputs = ScaleInputs {
        now_ms: now,
        busy_slots: 1,
        total_slots: 10,
        running: 5,
        idle: vec![
            idle("busy", 0, true),
            idle("old", now - 120_000, false),
            idle("fresh", now - 10_000, false),
            idle("older", now - 300_000, false),
            idle("edge", now - 60_000, false),
        ],
        ..ScaleInputs::default()
    };
    let d = a.tick(&inputs);
    // Desired 1; hysteresis keeps ceil(1 / (2 × 0.8)) = 1; 4 could go, but
    // only 3 are idle long enough; oldest idle first.
    assert_eq!(
        d.action,
        ScaleAction::Down {
            agents: vec!["older".into(), "old".into(), "edge".into()]
        }
    );
    assert_eq!(d.inputs.reclaimable, 3);
    // Down cool-down: 10s after the last change.
    let d = a.tick(&ScaleInputs {
        now_ms: now + 5000,
        ..inputs.clone()
    });
    assert_eq!(d.action, ScaleAction::Hold);
    assert!(d.reason.contains("down cool-down"), "{}", d.reason);
    // Nothing idle long enough: hold and say so.
    let mut a = scaler(1, 10, 2, false);
    let d = a.tick(&ScaleInputs {
        idle: vec![idle("busy", 0, true), idle("fresh", now - 1, false)],
        ..inputs
    });
    assert_eq!(d.action, ScaleAction::Hold);
    assert!(d.reason.contains("no agent idle"), "{}", d.reason);
}

#[test]
fn hysteresis_keeps_headroom_when_scaling_down() {
    let mut a = scaler(0, 10, 4, false);
    let now = 1_000_000;
    let idle_agents: Vec<IdleAgent> = (0..4).map(|i| idle(&format!("i{i}"), 0, false)).collect();
    // 13 busy slots on 8 agents of 4: reactive desire is 4 agents, but at
    // ≤80% utilisation 13 slots need ceil(13 / 3.2) = 5 agents.
    let d = a.tick(&ScaleInputs {
        now_ms: now,
        busy_slots: 13,
        total_slots: 32,
        running: 8,
        idle: idle_agents.clone(),
        ..ScaleInputs::default()
    });
    assert_eq!(d.desired, 4);
    match d.action {
        ScaleAction::Down { agents } => assert_eq!(agents.len(), 3),
        other => panic!("{other:?}"),
    }
    // 16 busy slots on 5 agents: ceil(16 / 3.2) = 5 = running → hold.
    let mut a = scaler(0, 10, 4, false);
    let d = a.tick(&ScaleInputs {
        now_ms: now,
        busy_slots: 16,
        total_slots: 20,
        running: 5,
        idle: idle_agents,
        ..ScaleInputs::default()
    });
    assert_eq!(d.action, ScaleAction::Hold);
    assert!(d.reason.contains("hysteresis"), "{}", d.reason);
}

#[test]
fn decision_serializes_with_a_flat_action_tag() {
    let mut a = scaler(1, 3, 1, true);
    let d = a.tick(&ScaleInputs::default());
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["action"], "up");
    assert_eq!(v["count"], 1);
    assert_eq!(v["template"], "coder");
    let back: ScaleDecision = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
    let down = serde_json::to_value(ScaleAction::Down {
        agents: vec!["a".into()],
    })
    .unwrap();
    assert_eq!(down, serde_json::json!({"action": "down", "agents": ["a"]}));
    assert_eq!(
        serde_json::to_value(ScaleAction::Hold).unwrap(),
        serde_json::json!({"action": "hold"})
    );
}

#[test]
fn config_parses_with_defaults_and_rejects_unknown_fields() {
    let c: ScalingConfig =
        toml::from_str("interval = \"500ms\"\nup-cooldown = 3\npredictive = false").unwrap();
    assert_eq!(c.interval, Duration::from_millis(500));
    assert_eq!(c.up_cooldown, Duration::from_secs(3));
    assert!(!c.predictive);
    assert_eq!(c.horizon, Duration::from_secs(5));
    assert_eq!(c.alpha, 0.5);
    assert!(toml::from_str::<ScalingConfig>("alpah = 0.5").is_err());
    assert!(ScalingConfig::default().problems().is_empty());
    let bad = ScalingConfig {
        alpha: 0.0,
        beta: 2.0,
        hysteresis: 1.0,
        interval: Duration::ZERO,
        ..ScalingConfig::default()
    };
    let fields: Vec<&str> = bad.problems().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, vec!["interval", "alpha", "beta", "hysteresis"]);
}

fn ramp_params(max: u32) -> SimParams {
    SimParams {
        spawn_delay_steps: 3,
        task_steps: 4,
        slots: 4,
        min: 1,
        max,
    }
}

#[test]
fn predictive_beats_reactive_on_the_ramp() {
    let trace = ramp_trace();
    let params = ramp_params(64);
    let p = simulate(&trace, &params, true);
    let r = simulate(&trace, &params, false);
    println!("predictive {p:?}\nreactive   {r:?}");
    let total: u64 = trace.iter().map(|&x| u64::from(x)).sum();
    assert_eq!(p.tasks, total);
    assert_eq!(r.tasks, total);
    assert!(
        p.peak_wait_steps < r.peak_wait_steps,
        "predictive peak {} vs reactive {}",
        p.peak_wait_steps,
        r.peak_wait_steps
    );
    assert!(p.mean_wait < r.mean_wait);
    for rep in [&p, &r] {
        assert!(rep.max_agents <= params.max, "{rep:?}");
        assert_eq!(rep.final_agents, params.min, "{rep:?}");
        assert_eq!(rep.busy_agents_downed, 0);
        // Back at min well before the cap: trace + drain + idle timeout + cool-downs.
        assert!(
            rep.steps < trace.len() as u64 + 20 * SIM_IDLE_TIMEOUT_STEPS,
            "{rep:?}"
        );
        assert_eq!(rep.peak_wait_ms, rep.peak_wait_steps * 1000);
    }
}

#[test]
fn a_tight_max_is_never_exceeded() {
    let trace = ramp_trace();
    for predictive in [true, false] {
        let rep = simulate(&trace, &ramp_params(12), predictive);
        assert!(rep.max_agents <= 12, "{rep:?}");
        assert_eq!(rep.final_agents, 1, "{rep:?}");
        assert_eq!(rep.busy_agents_downed, 0);
    }
    // min = max: a fixed pool.
    let fixed = SimParams {
        min: 3,
        max: 3,
        ..ramp_params(3)
    };
    let rep = simulate(&trace, &fixed, true);
    assert_eq!((rep.max_agents, rep.final_agents, rep.decisions), (3, 3, 0));
}

/// One tick: (dt ms, queue, arrivals, busy_slots, starting, [(idle age ms, busy)]).
type Tick = (u64, u64, u64, u32, u32, Vec<(u64, bool)>);

fn inputs_strategy() -> impl Strategy<Value = Vec<Tick>> {
    proptest::collection::vec(
        (
            0u64..30_000,
            0u64..40,
            0u64..20,
            0u32..40,
            0u32..4,
            proptest::collection::vec((0u64..200_000, any::<bool>()), 0..12),
        ),
        1..40,
    )
}

proptest! {
    #[test]
    fn never_downs_a_busy_or_fresh_agent_nor_goes_below_min(
        min in 0u32..4,
        extra in 1u32..10,
        slots in 1u32..5,
        predictive in any::<bool>(),
        ticks in inputs_strategy(),
    ) {
        let max = min + extra;
        let mut a = scaler(min, max, slots, predictive);
        let mut now = 1_000_000u64;
        for (dt, queue, arrivals, busy, starting, agents) in ticks {
            now += dt;
            let idle: Vec<IdleAgent> = agents
                .iter()
                .enumerate()
                .map(|(i, &(age, busy))| idle(&format!("a{i}"), now - age, busy))
                .collect();
            let running = idle.len() as u32;
            let inputs = ScaleInputs {
                now_ms: now,
                queue_depth: queue,
                oldest_wait_ms: if queue > 0 { dt } else { 0 },
                arrivals,
                busy_slots: busy.min(running * slots),
                total_slots: running * slots,
                running,
                starting,
                idle,
            };
            let d = a.tick(&inputs);
            prop_assert!(d.desired >= min && d.desired <= max);
            let by_id: HashMap<&str, &IdleAgent> =
                inputs.idle.iter().map(|a| (a.agent.as_str(), a)).collect();
            match &d.action {
                ScaleAction::Hold => {}
                ScaleAction::Up { count } => {
                    prop_assert!(*count >= 1);
                    prop_assert!(running + starting + count <= max, "{:?}", d);
                }
                ScaleAction::Down { agents } => {
                    prop_assert!(!agents.is_empty());
                    prop_assert!(running - agents.len() as u32 >= min, "{:?}", d);
                    for id in agents {
                        let ag = by_id[id.as_str()];
                        prop_assert!(!ag.busy, "busy agent {} scaled down", id);
                        prop_assert!(now - ag.idle_since_ms >= IDLE.as_millis() as u64);
                    }
                    let mut uniq = agents.clone();
                    uniq.sort();
                    uniq.dedup();
                    prop_assert_eq!(uniq.len(), agents.len());
                }
            }
        }
    }
}

//! The hub's Prometheus metrics (`GET /metrics`), through the `metrics`
//! facade and `metrics-exporter-prometheus`.
//!
//! Each hub owns its recorder (never the process-global one: tests run
//! many hubs in one process, and each must report only its own work).
//! - Counters are plain atomics bumped on the hot path ([`Counters`]) and
//!   copied into the recorder when it is sampled.
//! - Latency and duration histograms are recorder handles registered once;
//!   recording one value is a lock-free push, drained by the recorder's
//!   upkeep (run every alert evaluation) or a render.
//! - Gauges (queue depth, agents, slots, CPU and memory, breakers, role)
//!   are read from the services when sampled ([`sample`]): by the alert
//!   evaluator every few seconds, and before every render.
//!
//! # Layout
//! - `names`: every metric's name, type and help text.
//! - `counters`: the atomics and their snapshot.
//! - `sample`: gathering the gauges from the engine, the lifecycle manager
//!   and the cluster role.
//! - `openmetrics`: the OpenMetrics form of the text exposition.

mod counters;
mod names;
mod openmetrics;
mod sample;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;
use torch_core::OutcomeKind;

pub(crate) use counters::{CounterSnapshot, Counters, Failure, Shed, StoreOp};
pub(crate) use openmetrics::{CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, to_openmetrics};
pub(crate) use sample::{Sample, take as sample};

/// Buckets of the latency histograms, seconds: 100 µs to 10 min.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];
/// Buckets of task durations, seconds: 1 ms to 4 h.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];
/// Buckets of spawn-to-ready, seconds: 10 ms to 2 min.
const SPAWN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// A gauge nobody sets for this long (an agent that left) is dropped from
/// the output; live gauges are set at every sample, every few seconds.
const GAUGE_IDLE: Duration = Duration::from_secs(30);

static META: Metadata<'static> = Metadata::new("torch_hub", Level::INFO, Some(module_path!()));

/// Outcomes with a duration histogram each, in this order.
const OUTCOMES: [OutcomeKind; 5] = [
    OutcomeKind::Succeeded,
    OutcomeKind::Failed,
    OutcomeKind::TimedOut,
    OutcomeKind::Fatal,
    OutcomeKind::Cancelled,
];

/// One hub's metrics: its recorder, the hot-path handles and counters.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Event counters (see [`Counters`]).
    pub(crate) counters: Counters,
    assignment: Histogram,
    schedule_to_start: Histogram,
    durations: [Histogram; 5],
    /// Gauges set by the last sample: one missing from the next is set to
    /// zero once, then left to go idle and disappear.
    exported: Mutex<HashSet<Key>>,
}

fn key(name: &'static str, labels: Vec<Label>) -> Key {
    Key::from_parts(name, labels)
}

impl Metrics {
    /// A fresh recorder with every metric described.
    pub(crate) fn new() -> Self {
        let builder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(names::DURATION.into()), DURATION_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(names::SPAWN_READY.into()), SPAWN_BUCKETS)
            });
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            // Only empty bucket lists are refused, and ours are constants.
            Err(e) => {
                tracing::error!(error = %e, "metrics buckets refused; histograms become summaries");
                debug_assert!(false, "metrics buckets refused: {e}");
                PrometheusBuilder::new().build_recorder()
            }
        };
        names::describe(&recorder);
        let handle = recorder.handle();
        let hist = |name, labels| recorder.register_histogram(&key(name, labels), &META);
        let durations =
            OUTCOMES.map(|o| hist(names::DURATION, vec![Label::new("outcome", o.as_str())]));
        Metrics {
            assignment: hist(names::ASSIGNMENT, Vec::new()),
            schedule_to_start: hist(names::SCHEDULE_TO_START, Vec::new()),
            durations,
            counters: Counters::default(),
            exported: Mutex::new(HashSet::new()),
            handle,
            recorder,
        }
    }

    /// Ready → assignment sent, for a batch of tasks (microseconds).
    pub(crate) fn assignments(&self, latencies_us: &[u64]) {
        for &us in latencies_us {
            self.assignment.record(us as f64 / 1e6);
        }
    }

    /// Ready → started for one task.
    pub(crate) fn started(&self, wait: Duration) {
        self.schedule_to_start.record(wait.as_secs_f64());
    }

    /// A finished attempt with `outcome` that ran `duration_ms`.
    pub(crate) fn attempt(&self, outcome: OutcomeKind, duration_ms: u64) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.durations[i].record(duration_ms as f64 / 1000.0);
        }
    }

    /// A spawned agent of `template` registered `spawn_ms` after its order.
    pub(crate) fn spawn_ready(&self, template: &str, spawn_ms: u64) {
        let labels = vec![Label::new("template", template.to_string())];
        self.histogram(names::SPAWN_READY, labels)
            .record(spawn_ms as f64 / 1000.0);
    }

    /// The autoscaler of `template` decided `action` (`up`, `down`, `hold`).
    pub(crate) fn scaling(&self, template: &str, action: &'static str) {
        let labels = vec![
            Label::new("template", template.to_string()),
            Label::new("action", action),
        ];
        self.counter(names::SCALING, labels).increment(1);
    }

    /// A managed agent of `template` ended on its own.
    pub(crate) fn agent_exited(&self, template: &str) {
        self.counters.exited();
        let labels = vec![Label::new("template", template.to_string())];
        self.counter(names::EXITS, labels).increment(1);
    }

    /// Whether alert `name` fires now.
    pub(crate) fn alert_firing(&self, name: &str, severity: &str, firing: bool) {
        let labels = vec![
            Label::new("alert", name.to_string()),
            Label::new("severity", severity.to_string()),
        ];
        self.gauge(names::ALERTS_FIRING, labels)
            .set(if firing { 1.0 } else { 0.0 });
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder.register_counter(&key(name, labels), &META)
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &META)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder.register_histogram(&key(name, labels), &META)
    }

    /// Copies a sample's counters and gauges into the recorder.
    pub(crate) fn export(&self, s: &Sample) {
        let mut exported = match self.exported.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut now: HashSet<Key> = HashSet::with_capacity(exported.len());
        let mut set = |name: &'static str, labels: Vec<Label>, v: f64| {
            let k = key(name, labels);
            self.recorder.register_gauge(&k, &META).set(v);
            now.insert(k);
        };
        sample::gauges(s, &mut set);
        for k in exported.difference(&now) {
            self.recorder.register_gauge(k, &META).set(0.0);
        }
        *exported = now;
        drop(exported);
        let abs = |name: &'static str, labels: Vec<Label>, v: u64| {
            self.counter(name, labels).absolute(v);
        };
        sample::counters(s, abs);
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains recorded histogram values (bounds their memory between scrapes).
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use torch_api::rest::{ManagedView, NodeView};
    use torch_core::AgentId;

    use super::*;
    use crate::engine::EngineGauges;

    fn node(name: &str, cpu: f64) -> NodeView {
        NodeView {
            name: name.into(),
            connected: true,
            cpus: 4,
            cpu_used: cpu,
            mem_total_bytes: 1 << 30,
            mem_used: 0.25,
            max_agents: 8,
            agents: 1,
            last_seen_ms: 0,
        }
    }

    #[test]
    fn nodes_and_agents_are_exported_and_a_departed_agent_goes_to_zero() {
        let m = Metrics::new();
        let id = AgentId::from_uuid(uuid::Uuid::from_u128(7));
        let managed = ManagedView {
            template: "shell".into(),
            node: "n1".into(),
            phase: "ready".into(),
            cpu: Some(0.5),
            rss_bytes: Some(12_000_000),
            ..ManagedView::default()
        };
        let mut s = Sample {
            leader: true,
            leader_known: true,
            engine: EngineGauges::default(),
            nodes: vec![node("n1", 0.5)],
            managed: HashMap::from([(id, managed)]),
            ..Sample::default()
        };
        m.export(&s);
        let text = m.render();
        assert!(
            text.contains("torch_node_cpu_ratio{node=\"n1\"} 0.5"),
            "{text}"
        );
        assert!(text.contains("torch_node_cpus{node=\"n1\"} 4"), "{text}");
        let agent = format!(
            "torch_agent_memory_bytes{{agent=\"\",agent_id=\"{id}\",template=\"shell\",node=\"n1\"}}"
        );
        assert!(text.contains(&format!("{agent} 12000000")), "{text}");
        assert!(text.contains("torch_hub_leader 1"), "{text}");
        // The agent leaves: its gauge reads 0 (then idles out of the output).
        s.managed.clear();
        s.nodes = vec![node("n1", 0.9)];
        m.export(&s);
        let text = m.render();
        assert!(text.contains(&format!("{agent} 0")), "{text}");
        assert!(
            text.contains("torch_node_cpu_ratio{node=\"n1\"} 0.9"),
            "{text}"
        );
    }

    #[test]
    fn autonomy_metrics_are_exported_and_a_rate_without_a_divisor_is_left_out() {
        let m = Metrics::new();
        let s = Sample {
            autonomy: Some(crate::autonomy::AutonomyView {
                self_spawn_events: 4,
                self_spawn_success_rate: Some(0.75),
                tasks_without_intervention_pct: Some(80.0),
                tasks_per_agent_hour: Some(12.5),
                adapt_seconds: Some(2.5),
                adapt_samples: 2,
                team_formation_success_rate: None,
                messages_delivered_rate: Some(1.0),
                help_accept_rate: Some(0.5),
            }),
            ..Sample::default()
        };
        m.export(&s);
        let text = m.render();
        for line in [
            "torch_autonomy_self_spawn_events_total 4",
            "torch_autonomy_self_spawn_success_ratio 0.75",
            "torch_autonomy_tasks_without_intervention_ratio 0.8",
            "torch_autonomy_tasks_per_agent_hour 12.5",
            "torch_autonomy_adapt_seconds 2.5",
            "torch_autonomy_adapt_samples_total 2",
            "torch_autonomy_messages_delivered_ratio 1",
            "torch_autonomy_help_accept_ratio 0.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("torch_autonomy_team_formation_success_ratio")),
            "nothing to divide by: no sample\n{text}"
        );
    }

    /// A fleet of 1,000 managed agents on 10 nodes: every agent's series is
    /// rendered. (Prints the export + render time; `torch bench throughput
    /// --scale-agents 1000` measures the whole route.)
    #[test]
    fn a_thousand_agents_each_get_their_series() {
        let m = Metrics::new();
        let mut s = Sample {
            leader: true,
            nodes: (0..10).map(|i| node(&format!("n{i}"), 0.5)).collect(),
            ..Sample::default()
        };
        for i in 0..1000u128 {
            let id = AgentId::from_uuid(uuid::Uuid::from_u128(i + 1));
            s.engine.agents.push(crate::engine::AgentGauge {
                id,
                name: format!("agent-{i}"),
                state: if i % 3 == 0 { "busy" } else { "idle" },
                slots: 4,
                used: u32::from(i % 3 == 0),
                breaker: Some("closed"),
            });
            let v = ManagedView {
                template: format!("t{}", i % 5),
                node: format!("n{}", i % 10),
                phase: "ready".into(),
                cpu: Some(0.1),
                rss_bytes: Some(10_000_000),
                ..ManagedView::default()
            };
            s.managed.insert(id, v);
        }
        let t = std::time::Instant::now();
        m.export(&s);
        let text = m.render();
        eprintln!(
            "1,000 agents: export + render {:.2} ms, {} bytes",
            t.elapsed().as_secs_f64() * 1000.0,
            text.len()
        );
        assert_eq!(text.matches("torch_agent_cpu_cores{").count(), 1000);
        assert_eq!(text.matches("torch_agent_memory_bytes{").count(), 1000);
        assert!(text.contains("torch_pool_slots{pool=\"t0\"} 800"), "{text}");
        assert!(text.contains("torch_breaker_agents{state=\"closed\"} 1000"));
    }
}

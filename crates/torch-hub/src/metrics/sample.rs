//! A sample of the hub's state for the metrics and the alert rules: the
//! engine's gauges, the lifecycle manager's agents and nodes, the cluster
//! role, the counters and the autonomy metrics, read once and exported as
//! Prometheus series.

use std::collections::{BTreeMap, HashMap};

use metrics::Label;
use torch_api::rest::{ManagedView, NodeView};
use torch_core::AgentId;
use torch_store::Store;

use super::counters::{CounterSnapshot, Failure, Shed, StoreOp};
use super::names::*;
use crate::autonomy::AutonomyView;
use crate::engine::{BANDS, EngineGauges, Query};
use crate::hub::Shared;
use crate::lifecycle::LifeCmd;

/// What the hub looked like at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sample {
    /// When (unix ms).
    pub(crate) at_ms: u64,
    /// The counters.
    pub(crate) counters: CounterSnapshot,
    /// The engine's queue, agents and stuck leases (empty on a follower).
    pub(crate) engine: EngineGauges,
    /// Unfinished tasks (blocked, queued, leased).
    pub(crate) backlog: u64,
    /// Agents started from templates.
    pub(crate) managed: HashMap<AgentId, ManagedView>,
    /// Nodes and their resources.
    pub(crate) nodes: Vec<NodeView>,
    /// This hub runs the scheduler.
    pub(crate) leader: bool,
    /// This hub leads or knows which hub does.
    pub(crate) leader_known: bool,
    /// Requests sent to a networked store.
    pub(crate) round_trips: Option<u64>,
    /// Seconds since the hub started.
    pub(crate) uptime_s: f64,
    /// The autonomy metrics (`None` if they could not be read).
    pub(crate) autonomy: Option<AutonomyView>,
}

impl Sample {
    /// Tasks the engine holds in its queue (ready or waiting) now.
    pub(crate) fn queue_len(&self) -> u64 {
        self.engine.queued.iter().chain(&self.engine.waiting).sum()
    }

    /// The busiest node's CPU use (`None` without nodes).
    pub(crate) fn max_node_cpu(&self) -> Option<f64> {
        self.nodes
            .iter()
            .filter(|n| n.connected)
            .map(|n| n.cpu_used)
            .reduce(f64::max)
    }

    /// The fullest node's memory use (`None` without nodes).
    pub(crate) fn max_node_memory(&self) -> Option<f64> {
        self.nodes
            .iter()
            .filter(|n| n.connected)
            .map(|n| n.mem_used)
            .reduce(f64::max)
    }

    /// The pool (template) of an agent, `none` when not started from one.
    pub(crate) fn pool_of(&self, agent: &AgentId) -> &str {
        self.managed
            .get(agent)
            .map_or("none", |m| m.template.as_str())
    }
}

/// Reads a sample from the services (waits for their answers).
pub(crate) async fn take<S: Store>(shared: &Shared<S>) -> Sample {
    let stuck_after = shared
        .cfg
        .stall_after
        .unwrap_or(shared.cfg.observe.stuck_after);
    let stuck_after_ms = stuck_after.as_millis() as u64;
    let engine = shared
        .engine
        .ask(|reply| Query::Gauges {
            stuck_after_ms,
            reply,
        })
        .await
        .unwrap_or_default();
    let managed = shared.life.ask(LifeCmd::Managed).await.unwrap_or_default();
    let nodes = shared.life.ask(LifeCmd::Nodes).await.unwrap_or_default();
    let leader = shared.is_leader();
    let leader_known = leader || matches!(shared.cluster.follower_of(), Some(Some(_)));
    let at_ms = shared.now_ms();
    Sample {
        at_ms,
        counters: shared.metrics.counters.snapshot(&shared.stats),
        engine,
        backlog: shared.backlog(),
        managed,
        nodes,
        leader,
        leader_known,
        round_trips: shared.store.round_trips(),
        uptime_s: shared.started.elapsed().as_secs_f64(),
        autonomy: shared.autonomy.view(at_ms),
    }
}

fn l(k: &'static str, v: impl Into<String>) -> Label {
    Label::new(k, v.into())
}

/// Calls `set(name, labels, value)` for every gauge of `s`.
pub(super) fn gauges(s: &Sample, set: &mut impl FnMut(&'static str, Vec<Label>, f64)) {
    let e = &s.engine;
    let mut held = 0;
    for (state, counts) in [
        ("queued", e.queued),
        ("waiting", e.waiting),
        ("leased", e.leased),
    ] {
        for (b, n) in counts.iter().enumerate() {
            held += n;
            let labels = vec![l("state", state), l("priority", BANDS[b])];
            set(QUEUE_DEPTH, labels, *n as f64);
        }
    }
    // Blocked tasks live only in the store: the backlog minus what the
    // engine holds (a follower holds nothing and reports none).
    let blocked = if s.leader {
        s.backlog.saturating_sub(held)
    } else {
        0
    };
    set(
        QUEUE_DEPTH,
        vec![l("state", "blocked"), l("priority", "any")],
        blocked as f64,
    );
    set(
        STUCK,
        vec![l("reason", "no_progress")],
        e.stuck_no_progress as f64,
    );
    set(
        STUCK,
        vec![l("reason", "no_heartbeat")],
        e.stuck_no_heartbeat as f64,
    );
    let mut agents: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut slots: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut breakers: BTreeMap<&str, u64> = [("closed", 0), ("open", 0), ("half_open", 0)].into();
    let mut names: HashMap<AgentId, &str> = HashMap::with_capacity(e.agents.len());
    for a in &e.agents {
        let pool = s.pool_of(&a.id);
        names.insert(a.id, a.name.as_str());
        *agents.entry((a.state, pool)).or_default() += 1;
        if a.state != "disconnected" {
            let p = slots.entry(pool).or_default();
            p.0 += u64::from(a.slots);
            p.1 += u64::from(a.used);
        }
        if let Some(b) = a.breaker {
            *breakers.entry(b).or_default() += 1;
        }
    }
    for (id, m) in &s.managed {
        if m.phase == "starting" && !names.contains_key(id) {
            *agents.entry(("starting", m.template.as_str())).or_default() += 1;
        }
    }
    for ((state, template), n) in agents {
        set(
            AGENTS,
            vec![l("state", state), l("template", template)],
            n as f64,
        );
    }
    for (pool, (total, used)) in slots {
        set(SLOTS, vec![l("pool", pool)], total as f64);
        set(SLOTS_USED, vec![l("pool", pool)], used as f64);
    }
    for (state, n) in breakers {
        set(BREAKERS, vec![l("state", state)], n as f64);
    }
    for (id, m) in &s.managed {
        let who = || {
            vec![
                l("agent", names.get(id).copied().unwrap_or("")),
                l("agent_id", id.to_string()),
                l("template", m.template.as_str()),
                l("node", m.node.as_str()),
            ]
        };
        if let Some(cpu) = m.cpu {
            set(AGENT_CPU, who(), cpu);
        }
        if let Some(rss) = m.rss_bytes {
            set(AGENT_MEMORY, who(), rss as f64);
        }
    }
    for n in s.nodes.iter().filter(|n| n.connected) {
        let node = || vec![l("node", n.name.as_str())];
        set(NODE_CPU, node(), n.cpu_used);
        set(NODE_MEMORY, node(), n.mem_used);
        set(NODE_CPUS, node(), f64::from(n.cpus));
        set(NODE_MEMORY_TOTAL, node(), n.mem_total_bytes as f64);
    }
    set(LEADER, Vec::new(), if s.leader { 1.0 } else { 0.0 });
    set(
        LEADER_KNOWN,
        Vec::new(),
        if s.leader_known { 1.0 } else { 0.0 },
    );
    set(UPTIME, Vec::new(), s.uptime_s);
    if let Some(a) = &s.autonomy {
        autonomy_gauges(a, set);
    }
}

/// The autonomy rates and means; one with nothing to divide by yet (`null`
/// in `/api/v1/stats`) is left out rather than written as 0.
fn autonomy_gauges(a: &AutonomyView, set: &mut impl FnMut(&'static str, Vec<Label>, f64)) {
    for (name, v) in [
        (AUTONOMY_SELF_SPAWN_SUCCESS, a.self_spawn_success_rate),
        (
            AUTONOMY_WITHOUT_INTERVENTION,
            a.tasks_without_intervention_pct.map(|p| p / 100.0),
        ),
        (AUTONOMY_TASKS_PER_AGENT_HOUR, a.tasks_per_agent_hour),
        (AUTONOMY_ADAPT, a.adapt_seconds),
        (AUTONOMY_TEAM_FORMATION, a.team_formation_success_rate),
        (AUTONOMY_MESSAGES_DELIVERED, a.messages_delivered_rate),
        (AUTONOMY_HELP_ACCEPT, a.help_accept_rate),
    ] {
        if let Some(v) = v {
            set(name, Vec::new(), v);
        }
    }
}

/// Calls `abs(name, labels, value)` for every counter of `s`.
pub(super) fn counters(s: &Sample, abs: impl Fn(&'static str, Vec<Label>, u64)) {
    let c = &s.counters;
    for (name, v) in [
        (SUBMITTED, c.submitted),
        (ENQUEUED, c.enqueued),
        (ASSIGNED, c.assigned),
        (COMPLETED, c.completed),
        (CANCELLED, c.cancelled),
        (LEASES_EXPIRED, c.leases_expired),
        (STALE_REFUSED, c.stale_refused),
        (RECONNECTS, c.reconnects),
    ] {
        abs(name, Vec::new(), v);
    }
    for (i, why) in Failure::ALL.iter().enumerate() {
        abs(FAILURES, vec![l("reason", why.as_str())], c.failures[i]);
        abs(RETRIES, vec![l("reason", why.as_str())], c.retries[i]);
        abs(DEAD, vec![l("reason", why.as_str())], c.dead[i]);
    }
    for (i, op) in StoreOp::ALL.iter().enumerate() {
        abs(STORE_ERRORS, vec![l("op", op.as_str())], c.store_errors[i]);
    }
    for (i, why) in Shed::ALL.iter().enumerate() {
        for (j, band) in BANDS.iter().enumerate() {
            abs(
                SHED,
                vec![l("reason", why.as_str()), l("priority", *band)],
                c.shed[i][j],
            );
        }
    }
    if let Some(rt) = s.round_trips {
        abs(STORE_ROUND_TRIPS, Vec::new(), rt);
    }
    if let Some(a) = &s.autonomy {
        abs(AUTONOMY_SELF_SPAWNS, Vec::new(), a.self_spawn_events);
        abs(AUTONOMY_ADAPT_SAMPLES, Vec::new(), a.adapt_samples);
    }
}

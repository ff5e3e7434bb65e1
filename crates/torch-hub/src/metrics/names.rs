//! Every metric the hub exports: its name, type and meaning, declared once
//! (docs/operations.md lists the same). Names follow
//! `torch_<area>_<what>_<unit>`; counters end in `_total`. No label holds a
//! task id: labels are states, outcomes, reasons, templates, pools, nodes
//! and agents (bounded by the fleet, not by the work).

use metrics::{Recorder, SharedString, Unit};

/// Tasks in the hub's queue and leases, by `state` (`queued`: ready;
/// `waiting`: retry backoff; `leased`: assigned or running; `blocked`: on
/// dependencies) and `priority` (`high` > 0, `normal` = 0, `low` < 0;
/// `any` for blocked tasks).
pub(crate) const QUEUE_DEPTH: &str = "torch_queue_depth";
/// Ready → started (the agent's `started` report), seconds.
pub(crate) const SCHEDULE_TO_START: &str = "torch_task_schedule_to_start_seconds";
/// Ready → assignment written to the agent's socket, seconds.
pub(crate) const ASSIGNMENT: &str = "torch_task_assignment_seconds";
/// Wall time of finished attempts by `outcome`, seconds.
pub(crate) const DURATION: &str = "torch_task_duration_seconds";
/// Tasks accepted by submit.
pub(crate) const SUBMITTED: &str = "torch_tasks_submitted_total";
/// Tasks that became ready (submitted, released, retried, requeued).
pub(crate) const ENQUEUED: &str = "torch_queue_enqueued_total";
/// Assignments delivered to agents.
pub(crate) const ASSIGNED: &str = "torch_tasks_assigned_total";
/// Tasks that succeeded.
pub(crate) const COMPLETED: &str = "torch_tasks_completed_total";
/// Attempts that failed, by `reason`.
pub(crate) const FAILURES: &str = "torch_task_failures_total";
/// Failed attempts followed by another attempt, by `reason`.
pub(crate) const RETRIES: &str = "torch_task_retries_total";
/// Tasks that failed for good, by `reason`.
pub(crate) const DEAD: &str = "torch_tasks_dead_total";
/// Tasks cancelled (by request, or because a dependency died).
pub(crate) const CANCELLED: &str = "torch_tasks_cancelled_total";
/// Leases that ran out (no heartbeat from the agent).
pub(crate) const LEASES_EXPIRED: &str = "torch_leases_expired_total";
/// Reports under a stale fence that were refused.
pub(crate) const STALE_REFUSED: &str = "torch_stale_reports_refused_total";
/// Leased tasks that look stuck, by `reason` (`no_progress`, `no_heartbeat`).
pub(crate) const STUCK: &str = "torch_tasks_stuck";
/// Agents by `state` and `template` (`none` for agents not started from one).
pub(crate) const AGENTS: &str = "torch_agents";
/// Task slots of connected agents, by `pool` (template, or `none`).
pub(crate) const SLOTS: &str = "torch_pool_slots";
/// Slots in use, by `pool`.
pub(crate) const SLOTS_USED: &str = "torch_pool_slots_used";
/// CPU use of an agent and its tasks, in cores (node samples), by `agent`, `template`, `node`.
pub(crate) const AGENT_CPU: &str = "torch_agent_cpu_cores";
/// Resident memory of an agent process, bytes, by `agent`, `template`, `node`.
pub(crate) const AGENT_MEMORY: &str = "torch_agent_memory_bytes";
/// A node's CPU use, 0..1, by `node`.
pub(crate) const NODE_CPU: &str = "torch_node_cpu_ratio";
/// A node's memory use, 0..1, by `node`.
pub(crate) const NODE_MEMORY: &str = "torch_node_memory_ratio";
/// A node's logical CPUs, by `node`.
pub(crate) const NODE_CPUS: &str = "torch_node_cpus";
/// A node's total memory, bytes, by `node`.
pub(crate) const NODE_MEMORY_TOTAL: &str = "torch_node_memory_total_bytes";
/// Spawn order → agent registered, seconds, by `template`.
pub(crate) const SPAWN_READY: &str = "torch_agent_spawn_ready_seconds";
/// Agent sessions that registered again (reconnects).
pub(crate) const RECONNECTS: &str = "torch_agent_reconnects_total";
/// Managed agent processes that ended on their own, by `template`.
pub(crate) const EXITS: &str = "torch_agent_exits_total";
/// Autoscaler decisions, by `template` and `action` (`up`, `down`, `hold`).
pub(crate) const SCALING: &str = "torch_autoscaler_decisions_total";
/// Agents by circuit-breaker `state` (`closed`, `open`, `half_open`).
pub(crate) const BREAKERS: &str = "torch_breaker_agents";
/// 1 when this hub runs the scheduler (leader), else 0.
pub(crate) const LEADER: &str = "torch_hub_leader";
/// 1 when this hub leads or knows which hub does, else 0.
pub(crate) const LEADER_KNOWN: &str = "torch_hub_leader_known";
/// Requests sent to a networked store (Redis); absent for SQLite.
pub(crate) const STORE_ROUND_TRIPS: &str = "torch_store_round_trips_total";
/// Store calls that failed, by `op`.
pub(crate) const STORE_ERRORS: &str = "torch_store_errors_total";
/// Tasks refused by load shedding, by `reason` (`floor`: below the
/// priority floor, `429 shed`; `limit`: at `hub.queue-high-water`, `429
/// queue_full`) and `priority` band (`high`, `normal`, `low`).
pub(crate) const SHED: &str = "torch_shed_total";
/// Alerts firing now, by `alert` and `severity` (1 firing, 0 not).
pub(crate) const ALERTS_FIRING: &str = "torch_alerts_firing";
/// Seconds since the hub started.
pub(crate) const UPTIME: &str = "torch_hub_uptime_seconds";
/// Helper spawns asked for from inside tasks, ordered or refused
/// (autonomy `self_spawn_events`).
pub(crate) const AUTONOMY_SELF_SPAWNS: &str = "torch_autonomy_self_spawn_events_total";
/// Share of those whose helper registered and could take work, 0..1.
pub(crate) const AUTONOMY_SELF_SPAWN_SUCCESS: &str = "torch_autonomy_self_spawn_success_ratio";
/// Share of succeeded tasks no operator touched, 0..1 (autonomy
/// `tasks_without_intervention_pct` / 100).
pub(crate) const AUTONOMY_WITHOUT_INTERVENTION: &str =
    "torch_autonomy_tasks_without_intervention_ratio";
/// Tasks succeeded per hour of connected agent time.
pub(crate) const AUTONOMY_TASKS_PER_AGENT_HOUR: &str = "torch_autonomy_tasks_per_agent_hour";
/// Mean seconds from an autoscaler's change of target to the pool reaching it.
pub(crate) const AUTONOMY_ADAPT: &str = "torch_autonomy_adapt_seconds";
/// Adaptations `torch_autonomy_adapt_seconds` averages.
pub(crate) const AUTONOMY_ADAPT_SAMPLES: &str = "torch_autonomy_adapt_samples_total";
/// `team.formed` / (`team.formed` + `team.formation_failed`), 0..1.
pub(crate) const AUTONOMY_TEAM_FORMATION: &str = "torch_autonomy_team_formation_success_ratio";
/// Distinct messages delivered / sent (bounces excluded), 0..1.
pub(crate) const AUTONOMY_MESSAGES_DELIVERED: &str = "torch_autonomy_messages_delivered_ratio";
/// Help requests accepted by a peer / made, 0..1.
pub(crate) const AUTONOMY_HELP_ACCEPT: &str = "torch_autonomy_help_accept_ratio";

/// Registers help text and units with `r`.
pub(crate) fn describe(r: &impl Recorder) {
    use Unit::{Bytes, Count, Seconds};
    let all: &[(&'static str, Option<Unit>, &'static str, Kind)] = &[
        (
            QUEUE_DEPTH,
            Some(Count),
            "Tasks in the queue and leases by state and priority band.",
            Kind::Gauge,
        ),
        (
            SCHEDULE_TO_START,
            Some(Seconds),
            "Task ready to started (agent report), seconds.",
            Kind::Histogram,
        ),
        (
            ASSIGNMENT,
            Some(Seconds),
            "Task ready to assignment sent to the agent, seconds.",
            Kind::Histogram,
        ),
        (
            DURATION,
            Some(Seconds),
            "Wall time of finished attempts by outcome, seconds.",
            Kind::Histogram,
        ),
        (
            SUBMITTED,
            Some(Count),
            "Tasks accepted by submit.",
            Kind::Counter,
        ),
        (
            ENQUEUED,
            Some(Count),
            "Tasks that became ready to run.",
            Kind::Counter,
        ),
        (
            ASSIGNED,
            Some(Count),
            "Assignments delivered to agents.",
            Kind::Counter,
        ),
        (
            COMPLETED,
            Some(Count),
            "Tasks that succeeded.",
            Kind::Counter,
        ),
        (
            FAILURES,
            Some(Count),
            "Failed attempts by reason.",
            Kind::Counter,
        ),
        (
            RETRIES,
            Some(Count),
            "Failed attempts retried, by reason.",
            Kind::Counter,
        ),
        (
            DEAD,
            Some(Count),
            "Tasks that failed for good, by reason.",
            Kind::Counter,
        ),
        (CANCELLED, Some(Count), "Tasks cancelled.", Kind::Counter),
        (
            LEASES_EXPIRED,
            Some(Count),
            "Leases that ran out without heartbeats.",
            Kind::Counter,
        ),
        (
            STALE_REFUSED,
            Some(Count),
            "Reports under a stale fence refused.",
            Kind::Counter,
        ),
        (
            STUCK,
            Some(Count),
            "Leased tasks without progress or heartbeats, by reason.",
            Kind::Gauge,
        ),
        (
            AGENTS,
            Some(Count),
            "Agents by state and template.",
            Kind::Gauge,
        ),
        (
            SLOTS,
            Some(Count),
            "Task slots of connected agents by pool.",
            Kind::Gauge,
        ),
        (
            SLOTS_USED,
            Some(Count),
            "Task slots in use by pool.",
            Kind::Gauge,
        ),
        (
            AGENT_CPU,
            None,
            "CPU use of an agent and its tasks, in cores.",
            Kind::Gauge,
        ),
        (
            AGENT_MEMORY,
            Some(Bytes),
            "Resident memory of an agent process, bytes.",
            Kind::Gauge,
        ),
        (NODE_CPU, None, "A node's CPU use, 0 to 1.", Kind::Gauge),
        (
            NODE_MEMORY,
            None,
            "A node's memory use, 0 to 1.",
            Kind::Gauge,
        ),
        (
            NODE_CPUS,
            Some(Count),
            "A node's logical CPUs.",
            Kind::Gauge,
        ),
        (
            NODE_MEMORY_TOTAL,
            Some(Bytes),
            "A node's total memory, bytes.",
            Kind::Gauge,
        ),
        (
            SPAWN_READY,
            Some(Seconds),
            "Spawn order to agent registered, seconds.",
            Kind::Histogram,
        ),
        (
            RECONNECTS,
            Some(Count),
            "Agent sessions that registered again.",
            Kind::Counter,
        ),
        (
            EXITS,
            Some(Count),
            "Managed agent processes that ended on their own.",
            Kind::Counter,
        ),
        (
            SCALING,
            Some(Count),
            "Autoscaler decisions by template and action.",
            Kind::Counter,
        ),
        (
            BREAKERS,
            Some(Count),
            "Agents by circuit-breaker state.",
            Kind::Gauge,
        ),
        (LEADER, None, "1 when this hub is the leader.", Kind::Gauge),
        (
            LEADER_KNOWN,
            None,
            "1 when this hub leads or knows the leader.",
            Kind::Gauge,
        ),
        (
            STORE_ROUND_TRIPS,
            Some(Count),
            "Requests sent to a networked store.",
            Kind::Counter,
        ),
        (
            STORE_ERRORS,
            Some(Count),
            "Store calls that failed, by operation.",
            Kind::Counter,
        ),
        (
            SHED,
            Some(Count),
            "Tasks refused by load shedding, by reason and priority band.",
            Kind::Counter,
        ),
        (
            ALERTS_FIRING,
            None,
            "Alerts firing now (1) by alert and severity.",
            Kind::Gauge,
        ),
        (
            UPTIME,
            Some(Seconds),
            "Seconds since the hub started.",
            Kind::Gauge,
        ),
        (
            AUTONOMY_SELF_SPAWNS,
            Some(Count),
            "Helper spawns asked for from inside tasks, ordered or refused.",
            Kind::Counter,
        ),
        (
            AUTONOMY_SELF_SPAWN_SUCCESS,
            None,
            "Share of self-spawned helpers that registered, 0 to 1.",
            Kind::Gauge,
        ),
        (
            AUTONOMY_WITHOUT_INTERVENTION,
            None,
            "Share of succeeded tasks no operator retried, cancelled or drained, 0 to 1.",
            Kind::Gauge,
        ),
        (
            AUTONOMY_TASKS_PER_AGENT_HOUR,
            None,
            "Tasks succeeded per hour of connected agent time.",
            Kind::Gauge,
        ),
        (
            AUTONOMY_ADAPT,
            Some(Seconds),
            "Mean seconds from an autoscaler's change of target to the pool reaching it.",
            Kind::Gauge,
        ),
        (
            AUTONOMY_ADAPT_SAMPLES,
            Some(Count),
            "Adaptations the mean time to adapt is taken over.",
            Kind::Counter,
        ),
        (
            AUTONOMY_TEAM_FORMATION,
            None,
            "Teams formed over formations tried, 0 to 1.",
            Kind::Gauge,
        ),
        (
            AUTONOMY_MESSAGES_DELIVERED,
            None,
            "Messages delivered over messages sent, 0 to 1.",
            Kind::Gauge,
        ),
        (
            AUTONOMY_HELP_ACCEPT,
            None,
            "Help requests accepted over requests made, 0 to 1.",
            Kind::Gauge,
        ),
    ];
    for &(name, unit, help, kind) in all {
        let help = SharedString::const_str(help);
        match kind {
            Kind::Counter => r.describe_counter(name.into(), unit, help),
            Kind::Gauge => r.describe_gauge(name.into(), unit, help),
            Kind::Histogram => r.describe_histogram(name.into(), unit, help),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

//! Alerts (`GET /api/v1/alerts`) and capacity planning
//! (`GET /api/v1/capacity`) as the API carries them.

use serde::{Deserialize, Serialize};

/// One alert: firing now, or a recent firing or resolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AlertView {
    /// The rule's name.
    pub alert: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// `critical`, `warning`, `info`.
    pub severity: String,
    /// The signal the rule watches.
    pub signal: String,
    /// The value now (firing) or when it changed (recent).
    pub value: f64,
    /// The firing threshold.
    pub threshold: f64,
    /// What it means.
    pub summary: String,
    /// When it fired (unix ms).
    pub fired_ms: u64,
    /// When it resolved (unix ms), for a resolved alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_ms: Option<u64>,
}

/// `GET /api/v1/alerts`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AlertList {
    /// Alerts firing now.
    pub firing: Vec<AlertView>,
    /// Recent changes (fired, resolved), newest first.
    pub recent: Vec<AlertView>,
    /// How many rules the hub evaluates.
    pub rules: u32,
}

/// Which pool a capacity row is about: a template, or (for agents not
/// started from a template) a skill.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PoolKey {
    /// Agents started from this template.
    Template(String),
    /// Agents not started from a template that have this skill.
    Skill(String),
}

/// One pool's measured load and recommended size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapacityPool {
    /// `{"template": name}` or `{"skill": name}`.
    #[serde(flatten)]
    pub pool: PoolKey,
    /// Tasks it could serve that became ready, per second, over the window.
    pub arrival_per_s: f64,
    /// Mean wall time of the attempts it finished, seconds.
    pub service_s: f64,
    /// Offered load over its slots: `arrival_per_s · service_s / slots`.
    pub utilisation: f64,
    /// p95 of ready → assigned for its tasks over the window, ms.
    pub schedule_to_start_p95_ms: f64,
    /// Agents now.
    pub agents: u32,
    /// Slots per agent.
    pub slots_per_agent: u32,
    /// The autoscaler's forecast of arrivals per second (templates whose
    /// autoscaler is predictive and has seen enough intervals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<f64>,
    /// Agents needed to keep the p95 schedule-to-start under the target
    /// (M/M/c, Erlang C).
    pub recommended_agents: u32,
}

/// Headroom before the resource limits: the limit minus the use now, as a
/// fraction of the fleet's capacity (negative: over the limit).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Headroom {
    /// 0.8 minus the nodes' CPU use (weighted by their CPUs); `null`
    /// without node samples.
    pub cpu: Option<f64>,
    /// 0.7 minus the nodes' memory use (weighted by their memory); `null`
    /// without node samples.
    pub memory: Option<f64>,
    /// Agents of the average size that still fit before either limit
    /// (`None` without node samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<u32>,
}

/// `GET /api/v1/capacity`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapacityReport {
    /// Per pool.
    pub pools: Vec<CapacityPool>,
    /// Resource headroom.
    pub headroom: Headroom,
    /// The window measured, ms.
    pub window_ms: u64,
    /// The p95 schedule-to-start target, ms.
    pub target_ms: u64,
    /// The queueing model of the recommendation.
    pub model: String,
}

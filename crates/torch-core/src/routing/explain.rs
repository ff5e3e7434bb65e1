//! Explanations: why a task went where it went. Stored with the assignment,
//! printed by `torch explain`, carried in the `tasks.active` event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::AgentId;

/// Most candidates listed. Explanations are written with every assignment
/// (task row and `task.assigned` event), so they are kept short.
pub const MAX_CANDIDATES: usize = 5;
/// Most rejections listed individually (all are counted).
pub const MAX_REJECTIONS: usize = 6;

/// Scores are stored with 4 decimals: enough to explain, 3× shorter in JSON.
fn round4<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((v * 10_000.0).round() / 10_000.0)
}

/// One factor of one candidate's score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorScore {
    /// Factor name (`skill`, `load`, …).
    pub name: String,
    /// Value in `0..=1` (4 decimals when serialised).
    #[serde(serialize_with = "round4")]
    pub value: f64,
    /// Its weight in the total.
    #[serde(serialize_with = "round4")]
    pub weight: f64,
}

/// A feasible agent and its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The agent.
    pub agent: AgentId,
    /// Weighted total (4 decimals when serialised).
    #[serde(serialize_with = "round4")]
    pub total: f64,
    /// Tasks it held when scored (the first tie-break).
    pub used: u32,
    /// Per-factor breakdown.
    pub factors: Vec<FactorScore>,
}

/// Why an agent could not take the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RejectReason {
    /// Lacks a required skill.
    MissingSkill {
        /// The skill.
        skill: String,
    },
    /// Has the skill below the required level.
    LevelTooLow {
        /// The skill.
        skill: String,
        /// Its level.
        have: f64,
        /// The minimum.
        need: f64,
    },
    /// Lacks a required label (or has another value).
    MissingLabel {
        /// The label key.
        key: String,
        /// The value required.
        want: String,
    },
    /// The agent is draining.
    Draining,
    /// Every slot is taken.
    NoFreeSlot {
        /// Slots in use (including this pass's placements).
        used: u32,
        /// Slots.
        slots: u32,
    },
    /// Circuit breaker open.
    BreakerOpen {
        /// End of the cool-down (unix ms).
        until: u64,
    },
    /// Breaker half-open and its one probe is out.
    BreakerProbing,
    /// The agent already failed this task and another capable agent exists.
    Avoided,
}

impl RejectReason {
    /// Stable short name, used for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            RejectReason::MissingSkill { .. } => "missing-skill",
            RejectReason::LevelTooLow { .. } => "level-too-low",
            RejectReason::MissingLabel { .. } => "missing-label",
            RejectReason::Draining => "draining",
            RejectReason::NoFreeSlot { .. } => "no-free-slot",
            RejectReason::BreakerOpen { .. } => "breaker-open",
            RejectReason::BreakerProbing => "breaker-probing",
            RejectReason::Avoided => "avoided",
        }
    }
}

/// An agent turned down, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The agent.
    pub agent: AgentId,
    /// Why.
    pub reason: RejectReason,
}

/// How the placement was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssignMode {
    /// One task at a time.
    Greedy,
    /// Jointly with the other tasks of the batch (min-cost assignment).
    Batch,
}

/// Why a task went to its agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Policy that scored (`torch`, `least_loaded`, …).
    pub policy: String,
    /// The agent chosen: the top candidate.
    pub chosen: AgentId,
    /// Greedy or batch.
    pub mode: AssignMode,
    /// Best feasible candidates, best first (at most [`MAX_CANDIDATES`]). In
    /// batch mode, scores are as of the final batch: the other tasks of the
    /// batch hold their slots, so an agent whose slots they took is rejected
    /// as `no-free-slot`.
    pub candidates: Vec<Candidate>,
    /// Feasible agents scored.
    pub feasible: u32,
    /// Rejected agents, at most [`MAX_REJECTIONS`]; agents rejected only for
    /// having no free slot are counted in `rejected_counts`, not listed.
    pub rejected: Vec<Rejection>,
    /// All rejections, by reason kind.
    pub rejected_counts: BTreeMap<String, u32>,
    /// Agents not examined: the skill index showed they lack a required
    /// skill, or (for a task that requires none) the free-slot index showed
    /// they have no free slot.
    pub not_examined: u32,
    /// Anything else worth saying.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

//! Explanations: why a task went where it went. Stored with the assignment,
//! printed by `torch explain`, carried in the `tasks.active` event.
//!
//! # Wire form
//! One is written with every assignment, so the JSON is kept short: the
//! factor weights appear once (`"weights": {"skill": 0.25, …}`) and each
//! candidate's factors are a map of values in the same order
//! (`"factors": {"skill": 1.0, …}`), so that a candidate's `total` is
//! `Σ weights[f] × factors[f]`. The form of earlier builds, where each
//! candidate listed `[{"name", "value", "weight"}, …]`, is still read.

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
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct FactorScore {
    /// Factor name (`skill`, `load`, …).
    pub name: String,
    /// Value in `0..=1` (4 decimals when serialised).
    #[serde(serialize_with = "round4")]
    pub value: f64,
    /// Its weight in the total (written once per explanation, under
    /// `weights`).
    #[serde(default)]
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
    /// Per-factor breakdown (a map of values on the wire; the weights are
    /// the explanation's).
    #[serde(serialize_with = "factor_values", deserialize_with = "read_factors")]
    pub factors: Vec<FactorScore>,
}

/// `{"skill": 1.0, "load": 0.4375, …}`, in the factors' order.
fn factor_values<S: serde::Serializer>(f: &[FactorScore], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(f.len()))?;
    for x in f {
        m.serialize_entry(&x.name, &Rounded(x.value))?;
    }
    m.end()
}

/// A score with 4 decimals.
struct Rounded(f64);

impl Serialize for Rounded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        round4(&self.0, s)
    }
}

/// Reads a candidate's factors: a map of values (weights filled in from the
/// explanation's `weights` afterwards), or the older list of
/// `{"name", "value", "weight"}`. Keeps the order written.
fn read_factors<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<FactorScore>, D::Error> {
    struct Factors;
    impl<'de> serde::de::Visitor<'de> for Factors {
        type Value = Vec<FactorScore>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of factor values or a list of factor scores")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((name, value)) = m.next_entry::<String, f64>()? {
                out.push(FactorScore {
                    name,
                    value,
                    weight: f64::NAN,
                });
            }
            Ok(out)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut q: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(f) = q.next_element::<FactorScore>()? {
                out.push(f);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Factors)
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
    /// A reason a newer hub gives that this build does not know.
    #[serde(other)]
    Unknown,
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
            RejectReason::Unknown => "unknown",
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
    /// A mode a newer hub uses that this build does not know.
    #[serde(other)]
    Unknown,
}

/// Why a task went to its agent. Serialised by hand into the compact form
/// of the module docs; read back from it or from the older form.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "Wire")]
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
    /// Anything else worth saying (left out when empty).
    pub notes: Vec<String>,
}

/// `{"skill": 0.25, …}`: the weights of the first candidate's factors
/// (every candidate of one explanation is scored with the same weights).
struct Weights<'a>(&'a [Candidate]);

impl Serialize for Weights<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let f = self.0.first().map_or(&[][..], |c| &c.factors[..]);
        let mut m = s.serialize_map(Some(f.len()))?;
        for x in f {
            m.serialize_entry(&x.name, &Rounded(x.weight))?;
        }
        m.end()
    }
}

impl Serialize for Explanation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let notes = !self.notes.is_empty();
        let mut st = s.serialize_struct("Explanation", 10 + usize::from(notes))?;
        st.serialize_field("policy", &self.policy)?;
        st.serialize_field("chosen", &self.chosen)?;
        st.serialize_field("mode", &self.mode)?;
        st.serialize_field("weights", &Weights(&self.candidates))?;
        st.serialize_field("candidates", &self.candidates)?;
        st.serialize_field("feasible", &self.feasible)?;
        st.serialize_field("rejected", &self.rejected)?;
        st.serialize_field("rejected_counts", &self.rejected_counts)?;
        st.serialize_field("not_examined", &self.not_examined)?;
        if notes {
            st.serialize_field("notes", &self.notes)?;
        }
        st.end()
    }
}

/// What is read: the explanation, plus the `weights` of the compact form.
#[derive(Deserialize)]
struct Wire {
    policy: String,
    chosen: AgentId,
    mode: AssignMode,
    #[serde(default)]
    weights: BTreeMap<String, f64>,
    candidates: Vec<Candidate>,
    feasible: u32,
    rejected: Vec<Rejection>,
    rejected_counts: BTreeMap<String, u32>,
    not_examined: u32,
    #[serde(default)]
    notes: Vec<String>,
}

impl From<Wire> for Explanation {
    fn from(w: Wire) -> Explanation {
        let mut candidates = w.candidates;
        for f in candidates.iter_mut().flat_map(|c| c.factors.iter_mut()) {
            if f.weight.is_nan() {
                f.weight = w.weights.get(&f.name).copied().unwrap_or(0.0);
            }
        }
        Explanation {
            policy: w.policy,
            chosen: w.chosen,
            mode: w.mode,
            candidates,
            feasible: w.feasible,
            rejected: w.rejected,
            rejected_counts: w.rejected_counts,
            not_examined: w.not_examined,
            notes: w.notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_modes_from_a_newer_hub_read_as_unknown() {
        let r: RejectReason =
            serde_json::from_str(r#"{"kind":"over-budget","left":0}"#).expect("unknown reason");
        assert_eq!((r.clone(), r.kind()), (RejectReason::Unknown, "unknown"));
        let r: RejectReason = serde_json::from_str(r#"{"kind":"avoided"}"#).expect("known");
        assert_eq!(r, RejectReason::Avoided);
        let m: AssignMode = serde_json::from_str(r#""auction""#).expect("unknown mode");
        assert_eq!(m, AssignMode::Unknown);
    }

    fn agent(n: u8) -> AgentId {
        format!("00000000-0000-7000-8000-0000000000{n:02x}")
            .parse()
            .expect("agent id")
    }

    fn sample() -> Explanation {
        let factors = |v: [f64; 2]| {
            vec![
                FactorScore {
                    name: "skill".into(),
                    value: v[0],
                    weight: 0.75,
                },
                FactorScore {
                    name: "load".into(),
                    value: v[1],
                    weight: 0.25,
                },
            ]
        };
        Explanation {
            policy: "torch".into(),
            chosen: agent(1),
            mode: AssignMode::Batch,
            candidates: vec![
                Candidate {
                    agent: agent(1),
                    total: 0.875,
                    used: 1,
                    factors: factors([1.0, 0.5]),
                },
                Candidate {
                    agent: agent(2),
                    total: 0.8125,
                    used: 3,
                    factors: factors([1.0, 0.25]),
                },
            ],
            feasible: 2,
            rejected: vec![Rejection {
                agent: agent(3),
                reason: RejectReason::Draining,
            }],
            rejected_counts: BTreeMap::from([("draining".into(), 1)]),
            not_examined: 0,
            notes: Vec::new(),
        }
    }

    #[test]
    fn weights_are_written_once_and_factors_as_a_map_in_order() {
        let e = sample();
        let json = serde_json::to_value(&e).expect("serialise");
        assert_eq!(
            json["weights"],
            serde_json::json!({"skill": 0.75, "load": 0.25})
        );
        assert_eq!(
            json["candidates"][1]["factors"],
            serde_json::json!({"skill": 1.0, "load": 0.25})
        );
        assert!(json.get("notes").is_none(), "empty notes are left out");
        let text = serde_json::to_string(&e).expect("serialise");
        assert!(
            text.find("\"skill\":1.0,\"load\":0.5").is_some(),
            "factor order is kept: {text}"
        );
        let back: Explanation = serde_json::from_str(&text).expect("read back");
        assert_eq!(back, e);
    }

    #[test]
    fn the_older_form_with_weights_per_factor_is_still_read() {
        let old = r#"{"policy":"torch","chosen":"00000000-0000-7000-8000-000000000001",
            "mode":"greedy","candidates":[{"agent":"00000000-0000-7000-8000-000000000001",
            "total":0.5,"used":0,"factors":[{"name":"skill","value":1.0,"weight":0.5},
            {"name":"load","value":0.0,"weight":0.5}]}],"feasible":1,"rejected":[],
            "rejected_counts":{},"not_examined":0,"notes":["hi"]}"#;
        let e: Explanation = serde_json::from_str(old).expect("old form");
        let f = &e.candidates[0].factors;
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].name.as_str(), f[0].value, f[0].weight),
            ("skill", 1.0, 0.5)
        );
        assert_eq!(
            (f[1].name.as_str(), f[1].value, f[1].weight),
            ("load", 0.0, 0.5)
        );
        assert_eq!(e.notes, vec!["hi".to_string()]);
    }
}

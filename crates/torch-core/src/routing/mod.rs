//! Intelligent routing: task analysis, multi-factor scoring, circuit
//! breakers, explanations, joint batch assignment, and the simulation that
//! measures them against baseline policies.
//!
//! # Layout
//! - [`taxonomy`]: skill names, synonyms, keyword and extension hints (`[routing.taxonomy]`).
//! - [`analysis`]: `analyze` — required/preferred skills, complexity, team need.
//! - [`history`]: outcomes of similar tasks, read by analysis.
//! - [`score`]: weights, the `[routing]` config section, the five factors.
//! - [`policy`]: the `Placer` plug-in point and the policies (torch, least-loaded, round-robin, random).
//! - [`profile`]: per-agent learned state (performance, recent contexts, breaker).
//! - [`breaker`]: the per-agent circuit breaker state machine.
//! - [`explain`]: the explanation stored with every assignment.
//! - [`batch`]: joint assignment of a batch (min-cost flow).
//! - [`sim`]: the discrete-event simulation behind `torch bench routing`.
//! - [`prng`]: a seeded SplitMix64, so the core needs no `rand`.

pub mod analysis;
pub mod batch;
pub mod breaker;
pub mod explain;
pub mod history;
pub mod policy;
pub mod prng;
pub mod profile;
pub mod scale;
pub mod score;
pub mod sim;
pub mod taxonomy;
mod taxonomy_defaults;
mod workload;

pub use analysis::{Complexity, ComplexityLevel, Inference, TaskAnalysis, analyze, analyze_with};
pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use explain::{AssignMode, Candidate, Explanation, FactorScore, RejectReason, Rejection};
pub use history::{History, HistoryKey};
pub use policy::{LeastLoaded, Placer, Random, RoundRobin, Torch, policy_by_name};
pub use profile::{AgentProfile, AgentStateView, SkillPerf};
pub use score::{RoutingConfig, Weights};
pub use sim::{PolicyStats, SimReport, run};
pub use taxonomy::{SkillHints, Taxonomy, TaxonomyIndex};

//! Agent lifecycle management, the pure part: what agents a pool may run,
//! how many, when to add or remove them, when to refuse a spawn and when to
//! replace an agent.
//!
//! The hub and the agent runtime do the I/O (spawning processes, sampling
//! memory, reading the clock); everything here takes numbers and `now`
//! (unix ms) and returns decisions.
//!
//! # Layout
//! - [`template`]: `AgentTemplate` (`[templates.NAME]`): skills, executor and
//!   placeholders, sandbox limits, env allowlist, pool bounds, inheritance;
//!   parsing with located errors and validation.
//! - [`glob`]: `*`/`?` wildcard matching for memory keys.
//! - [`autoscale`]: the per-template autoscaler (Holt forecast, cool-downs,
//!   hysteresis, idle reclaim) and its decisions.
//! - [`autoscale_sim`]: a deterministic simulation comparing predictive and
//!   reactive scaling on a recorded ramp.
//! - [`spawn_policy`]: `can_spawn_agent`, the ordered admission checks and
//!   rate buckets.
//! - [`recycle`]: when a long-lived agent should be replaced.

pub mod autoscale;
pub mod autoscale_sim;
#[cfg(test)]
mod autoscale_tests;
pub mod glob;
pub mod recycle;
pub mod spawn_policy;
#[cfg(test)]
mod spawn_policy_tests;
pub mod template;

pub use autoscale::{
    Autoscaler, Holt, IdleAgent, ScaleAction, ScaleDecision, ScaleInputs, ScaleSummary,
    ScalingConfig,
};
pub use autoscale_sim::{RAMP_TRACE, SimParams, SimReport, ramp_trace, simulate};
pub use glob::glob_match;
pub use recycle::{RecycleReason, RecycleRules};
pub use spawn_policy::{
    NodeHeadroom, PoolView, RateLimit, SpawnLimit, SpawnLimits, SpawnPolicy, SpawnRefusal,
    SpawnRequest, TokenBucket,
};
pub use template::{
    AgentTemplate, DEFAULT_RESUME_PROMPT, Executor, HomeMode, InheritPolicy, OutputFormat,
    Placeholders, PromptVia, RESUME_MARK, SandboxLimits, TemplateError, TemplateErrors,
    format_bytes, opt_bytes, parse_bytes, parse_template_file, parse_templates, render_text,
    templates_from_map, validate_template,
};

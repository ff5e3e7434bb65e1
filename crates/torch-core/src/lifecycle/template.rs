//! Agent templates: a named recipe for the agents a pool may spawn.
//!
//! A template says what an agent can do (skills, labels, cost), what it runs
//! for each task (the [`Executor`]), how it is confined ([`SandboxLimits`],
//! the environment allowlist), how many may exist (`slots`, `min`, `max`,
//! `idle-timeout`, [`ScalingConfig`]), when it is replaced
//! ([`RecycleRules`]) and what a spawned child may inherit
//! ([`InheritPolicy`]).
//!
//! Templates are written as `[templates.NAME]` tables, in `torch.toml` or a
//! templates file ([`parse_templates`]), or one per `templates/NAME.toml`
//! file ([`parse_template_file`]). Both give located errors
//! (`source:line:col: templates.NAME.field: message`); templates that arrive
//! another way (figment) go through [`validate_template`] or
//! [`templates_from_map`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sandbox::SandboxPolicy;

pub use super::autoscale::ScalingConfig;
pub use super::recycle::RecycleRules;

mod bytes;
mod executor;
mod inherit;
mod parse;
#[cfg(test)]
mod tests;

pub use bytes::{ByteSizeError, format_bytes, opt_bytes, parse_bytes};
pub use executor::{
    DEFAULT_RESUME_PROMPT, Executor, HomeMode, OutputFormat, PLACEHOLDERS, Placeholders, PromptVia,
    RESUME_MARK, render_text,
};
pub use inherit::InheritPolicy;
pub use parse::{
    TemplateError, TemplateErrors, parse_template_file, parse_templates, templates_from_map,
    valid_template_name, validate_template,
};

/// Default `slots`: one task at a time.
pub const DEFAULT_SLOTS: u32 = 1;
/// Most `slots` one agent may declare.
pub const MAX_SLOTS: u32 = 256;
/// Default `max` agents of one template.
pub const DEFAULT_MAX: u32 = 4;
/// Default `idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One `[templates.NAME]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgentTemplate {
    /// The template's name, taken from the table key or file name (never
    /// written in the body). Matches `[a-z0-9][a-z0-9_-]{0,62}`.
    #[serde(skip)]
    pub name: String,
    /// Short role shown in listings and given to planners (`"reviewer"`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Longer free text for people and planners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Skills its agents advertise, as `"rust:0.9"` or `"python"` (level 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// Labels its agents advertise, for task label selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What runs for each task.
    pub executor: Executor,
    /// Environment allowlist: exact names, or prefixes ending in `*`
    /// (`"CARGO_*"`). Everything else is stripped from the task's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Resource limits applied to each task process.
    #[serde(default, skip_serializing_if = "SandboxLimits::is_empty")]
    pub limits: SandboxLimits,
    /// Isolation of each task (files, network, strictness; see
    /// [`crate::sandbox`]). Since v0.2.
    #[serde(default, skip_serializing_if = "is_default_policy")]
    pub sandbox: SandboxPolicy,
    /// Tasks one agent runs at once (`1..=256`, default 1).
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Agents kept alive even when idle (default 0).
    #[serde(default)]
    pub min: u32,
    /// Most agents of this template at once, starting ones included
    /// (default 4, at least 1, at least `min`).
    #[serde(default = "default_max")]
    pub max: u32,
    /// An agent with no task for this long may be scaled down (default 60s).
    #[serde(default = "default_idle_timeout", with = "crate::spec::duration")]
    pub idle_timeout: Duration,
    /// When an agent is replaced by a fresh one.
    #[serde(default, skip_serializing_if = "RecycleRules::is_empty")]
    pub recycle: RecycleRules,
    /// Which parent memory keys a spawned child of this template may inherit.
    #[serde(default)]
    pub inherit: InheritPolicy,
    /// Advertised cost per task, for routing (default 0, never negative).
    #[serde(default)]
    pub cost: f64,
    /// Cost of spawning one agent, for the autoscaler and planners (default 0).
    #[serde(default)]
    pub spawn_cost: f64,
    /// A child spawned from this template keeps running when its parent
    /// agent exits (default false: children are reaped with their parent).
    #[serde(default)]
    pub outlive_parent: bool,
    /// Autoscaler tuning.
    #[serde(default)]
    pub scaling: ScalingConfig,
}

fn is_default_policy(p: &SandboxPolicy) -> bool {
    p == &SandboxPolicy::default()
}

fn default_slots() -> u32 {
    DEFAULT_SLOTS
}
fn default_max() -> u32 {
    DEFAULT_MAX
}
fn default_idle_timeout() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}

impl AgentTemplate {
    /// A template with every field at its default around `executor`.
    pub fn new(name: &str, executor: Executor) -> Self {
        AgentTemplate {
            name: name.to_string(),
            role: String::new(),
            description: None,
            skills: Vec::new(),
            labels: BTreeMap::new(),
            executor,
            env: Vec::new(),
            limits: SandboxLimits::default(),
            sandbox: SandboxPolicy::default(),
            slots: DEFAULT_SLOTS,
            min: 0,
            max: DEFAULT_MAX,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            recycle: RecycleRules::default(),
            inherit: InheritPolicy::None,
            cost: 0.0,
            spawn_cost: 0.0,
            outlive_parent: false,
            scaling: ScalingConfig::default(),
        }
    }

    /// True when the environment variable `name` passes the allowlist.
    pub fn env_allowed(&self, name: &str) -> bool {
        self.env.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
    }

    /// The advertised skills, parsed. Never fails on a validated template;
    /// an unparsable entry is skipped.
    pub fn parsed_skills(&self) -> Vec<crate::skill::Skill> {
        self.skills.iter().filter_map(|s| s.parse().ok()).collect()
    }
}

/// The `[templates.NAME.limits]` section: rlimits and a wall-clock cap for
/// each task process. Absent means unlimited (the agent's own defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// CPU seconds (`RLIMIT_CPU`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_secs: Option<u64>,
    /// Address-space bytes (`RLIMIT_AS`): `"512MiB"`, `"2GiB"`, `"1.5GB"` or an integer.
    #[serde(with = "opt_bytes", skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// Processes of the sandbox user (`RLIMIT_NPROC`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// Wall-clock limit per task (`"30m"`); the task's own timeout, if
    /// shorter, wins.
    #[serde(
        with = "crate::spec::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub wall_time: Option<Duration>,
}

impl SandboxLimits {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        self == &SandboxLimits::default()
    }
}

//! The user-facing task specification and its parsing from TOML and JSON.
//!
//! A spec file holds one task (top-level fields) or many (`[[task]]` in TOML,
//! `{"task": [...]}` or a top-level array in JSON). Parsing rejects unknown
//! fields and wrong types with the line/column or field path; semantic checks
//! across the batch live in [`crate::validate`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::skill::SkillReq;

/// What a user submits: the work, what it needs, and how to judge it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Human name; unique within a file when other tasks depend on it by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Natural-language instruction, for agents whose executor takes a prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Program and arguments to run (no shell unless you name one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Required skills, as `"rust"`, `"rust:0.8"` or `{name = "rust", min = 0.8}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<SkillReq>,
    /// Skills that make an agent a better fit without being required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_skills: Vec<SkillReq>,
    /// Higher runs first; FIFO within one priority. Range `-1000..=1000`.
    #[serde(default)]
    pub priority: i32,
    /// Tasks that must succeed first: names within the same file, or task ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Wall-clock limit for one attempt (`"30s"`, `"5m"` or seconds).
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Attempts after the first before the task goes dead (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Delay between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// How success is judged; by default exit code 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<SuccessCriteria>,
    /// Free-form labels for filtering and routing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where the work happens (repository, paths, parent), for context-aware routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<TaskContext>,
    /// Extra environment variables for the task process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A resubmission with the same key returns the existing task instead of a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Owner of the task for quotas and fairness; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A team to form for this task (roles, leader, size); see [`crate::team`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<crate::team::TeamSpec>,
    /// Isolation this task asks for; it can only tighten its agent's
    /// template (see [`crate::sandbox`]). Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::TaskSandbox>,
    /// Per-task budgets (`budget_usd`, `max_tokens`). Since v0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<crate::budget::Resources>,
}

/// Default number of retries when a spec does not say.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

impl TaskSpec {
    /// Retries allowed after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    /// The backoff policy, defaulted.
    pub fn backoff(&self) -> Backoff {
        self.backoff.clone().unwrap_or_default()
    }

    /// The success criteria, defaulted.
    pub fn success(&self) -> SuccessCriteria {
        self.success.clone().unwrap_or_default()
    }

    /// Display name: the given name, else the program name, else `task`.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(c) = self.command.as_ref().and_then(|c| c.first()) {
            return c.rsplit('/').next().unwrap_or(c).to_string();
        }
        "task".to_string()
    }
}

/// Exponential backoff between attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the second attempt.
    #[serde(default = "Backoff::default_initial", with = "duration")]
    pub initial: Duration,
    /// Upper bound on any delay.
    #[serde(default = "Backoff::default_max", with = "duration")]
    pub max: Duration,
    /// Growth factor per attempt (`>= 1`).
    #[serde(default = "Backoff::default_multiplier")]
    pub multiplier: f64,
}

impl Backoff {
    fn default_initial() -> Duration {
        Duration::from_secs(1)
    }
    fn default_max() -> Duration {
        Duration::from_secs(60)
    }
    fn default_multiplier() -> f64 {
        2.0
    }

    /// Delay before attempt number `attempt` (1-based; attempt 1 has no delay).
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let exp = (attempt - 2).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        let capped = secs.min(self.max.as_secs_f64()).max(0.0);
        Duration::from_secs_f64(capped)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Self::default_initial(),
            max: Self::default_max(),
            multiplier: Self::default_multiplier(),
        }
    }
}

/// How the agent decides that a run succeeded. All listed criteria must hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuccessCriteria {
    /// Exit codes that count as success (default `[0]`).
    #[serde(default = "SuccessCriteria::default_exit_codes")]
    pub exit_codes: Vec<i32>,
    /// Paths (relative to the task's work dir) that must exist afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_exists: Vec<String>,
    /// A regular expression that stdout must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_matches: Option<String>,
    /// A command run in the work dir afterwards that must exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Vec<String>>,
}

impl SuccessCriteria {
    fn default_exit_codes() -> Vec<i32> {
        vec![0]
    }
}

impl Default for SuccessCriteria {
    fn default() -> Self {
        SuccessCriteria {
            exit_codes: Self::default_exit_codes(),
            file_exists: Vec::new(),
            stdout_matches: None,
            check: None,
        }
    }
}

/// Where a task's work lives, used to prefer agents with warm context.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskContext {
    /// The repository the task works on: a git repository (an absolute
    /// path or a URL; each attempt then works in its own checkout, see
    /// [`TaskContext::git_repository`]) or just a name, which only steers
    /// routing to agents that worked on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Paths within the repository the task touches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The task that created this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// With `repository`: the branch (or commit) each attempt's git
    /// worktree starts from; the repository's `HEAD` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl TaskContext {
    /// `repository` when it names a git repository an agent can check out:
    /// an absolute path, a URL (`scheme://…`) or an scp-like `user@host:path`.
    /// Any other value (`shop`, `github.com/org/repo`) is only a name, used
    /// to prefer agents that worked on it: no checkout, no merge queue.
    pub fn git_repository(&self) -> Option<&str> {
        let r = self.repository.as_deref()?;
        let scp_like = r
            .split_once(':')
            .is_some_and(|(host, _)| host.contains('@') && !host.contains('/'));
        (r.starts_with('/') || r.contains("://") || scp_like).then_some(r)
    }
}

/// The format of a spec document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecFormat {
    /// TOML, with `[[task]]` tables for many tasks.
    Toml,
    /// JSON: an object, an array, or `{"task": [...]}`.
    Json,
}

impl SpecFormat {
    /// Guesses the format from a file name, falling back to the content.
    pub fn detect(file_name: &str, text: &str) -> SpecFormat {
        if file_name.ends_with(".json") {
            return SpecFormat::Json;
        }
        if file_name.ends_with(".toml") {
            return SpecFormat::Toml;
        }
        match text.trim_start().chars().next() {
            Some('{') | Some('[') if !text.trim_start().starts_with("[[") => SpecFormat::Json,
            _ => SpecFormat::Toml,
        }
    }
}

/// Durations written as `"1500ms"`, `"30s"`, `"5m"` or a number of seconds.
pub mod duration {
    use super::*;

    /// Serializes as a humantime string such as `"30s"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Accepts a humantime string or a non-negative number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Secs(f64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Secs(s) if s >= 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
            Repr::Secs(s) => Err(serde::de::Error::custom(format!(
                "invalid duration {s}: expected a non-negative number of seconds"
            ))),
            Repr::Text(t) => humantime::parse_duration(&t).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {t:?}: {e} (expected e.g. \"30s\", \"5m\", \"1h 30m\")"
                ))
            }),
        }
    }
}

/// Optional durations; see [`duration`].
pub mod opt_duration {
    use super::*;

    /// Serializes `Some` as a humantime string.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Accepts what [`duration::deserialize`] accepts.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        duration::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskContext;

    fn repo(r: &str) -> Option<String> {
        TaskContext {
            repository: Some(r.into()),
            ..TaskContext::default()
        }
        .git_repository()
        .map(str::to_string)
    }

    #[test]
    fn paths_and_urls_are_checked_out_names_are_not() {
        for r in [
            "/srv/shop",
            "file:///srv/shop.git",
            "https://example.com/shop.git",
            "ssh://git@example.com/shop.git",
            "git@example.com:org/shop.git",
        ] {
            assert_eq!(repo(r).as_deref(), Some(r), "{r}");
        }
        for r in ["shop", "repo-1", "github.com/org/shop", "src/shop:main"] {
            assert_eq!(repo(r), None, "{r}");
        }
    }
}

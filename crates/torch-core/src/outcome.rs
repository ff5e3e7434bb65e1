//! What an agent reports when an attempt ends, and the evidence behind it.

use serde::{Deserialize, Serialize};

/// How an attempt ended, with its retry meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Exited and met every success criterion.
    Succeeded,
    /// Ran and failed (bad exit code or unmet criterion); retryable.
    Failed,
    /// Hit its timeout and was killed; retryable.
    TimedOut,
    /// Could never succeed as specified (e.g. nothing to run); not retried.
    Fatal,
    /// Killed because the task was cancelled.
    Cancelled,
    /// Killed by the out-of-memory killer at its memory limit; retryable.
    Oom,
    /// Hit its process limit (cgroup `pids`); retryable.
    PidsExceeded,
    /// Used up its CPU seconds (`RLIMIT_CPU`); retryable.
    CpuTime,
    /// Failed on something its sandbox refuses (a file, the network, a
    /// system call); retryable.
    SandboxDenied,
    /// Stopped on reaching its `resources.budget_usd` or
    /// `resources.max_tokens`; not retried. Since v0.3.
    BudgetExceeded,
}

impl OutcomeKind {
    /// The lowercase name used on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Succeeded => "succeeded",
            OutcomeKind::Failed => "failed",
            OutcomeKind::TimedOut => "timed_out",
            OutcomeKind::Fatal => "fatal",
            OutcomeKind::Cancelled => "cancelled",
            OutcomeKind::Oom => "oom",
            OutcomeKind::PidsExceeded => "pids_exceeded",
            OutcomeKind::CpuTime => "cpu_time",
            OutcomeKind::SandboxDenied => "sandbox_denied",
            OutcomeKind::BudgetExceeded => "budget_exceeded",
        }
    }

    /// Whether this ending is never retried (`fatal`, `budget_exceeded`).
    pub fn is_final(self) -> bool {
        matches!(self, OutcomeKind::Fatal | OutcomeKind::BudgetExceeded)
    }
}

/// One success criterion and whether it held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CriterionResult {
    /// Which criterion, e.g. `exit_code in [0]` or `file_exists out/report.txt`.
    pub criterion: String,
    /// Whether it held.
    pub ok: bool,
    /// What was observed.
    pub detail: String,
}

/// What the agent saw, so a result can be trusted and debugged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Evidence {
    /// Process exit code, if it exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended the process, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Wall time of the attempt in milliseconds.
    pub duration_ms: u64,
    /// Each criterion's result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub criteria: Vec<CriterionResult>,
    /// Last bytes of stdout (UTF-8, lossy).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout_tail: String,
    /// Last bytes of stderr (UTF-8, lossy).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
    /// What the agent CLI itself said went wrong (an executor with a
    /// structured output only). Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_error: Option<CliError>,
    /// Tokens and cost of the attempt, as the agent CLI reported them.
    /// Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The agent CLI's session (Claude Code's `session_id`, Codex's
    /// `thread_id`), to resume it by hand (`claude --resume ID`,
    /// `codex exec resume ID`) in the agent's home. Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The isolation the attempt actually got. Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::SandboxReport>,
}

/// Why an agent CLI's run failed, in its own words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CliError {
    /// What kind of failure: `api_error` (the model API answered with an
    /// error), `retries_exhausted` (it kept failing after the CLI's own
    /// retries), `permission_denied` (a tool call was denied),
    /// `tool_refused` (the CLI refused a tool call), `max_turns`,
    /// `max_budget`, `execution_error`, or `no_result` (the output holds no
    /// verdict). New kinds may appear.
    pub kind: String,
    /// The CLI's message, with the HTTP status or the denied tools.
    pub detail: String,
}

/// Tokens and money one attempt used, from the agent CLI's own numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// Input tokens, cached ones included.
    pub tokens_in: u64,
    /// Output tokens (reasoning included).
    pub tokens_out: u64,
    /// Input tokens read from the provider's prompt cache.
    pub tokens_cached: u64,
    /// Cost in US dollars, when the CLI reports one (Claude Code estimates
    /// it; Codex reports none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Where the numbers come from, e.g. `claude-code result` or
    /// `codex turn.completed`.
    pub source: String,
}

impl Usage {
    /// Adds `other`'s numbers to these (costs add when either has one).
    pub fn add(&mut self, other: &Usage) {
        self.tokens_in = self.tokens_in.saturating_add(other.tokens_in);
        self.tokens_out = self.tokens_out.saturating_add(other.tokens_out);
        self.tokens_cached = self.tokens_cached.saturating_add(other.tokens_cached);
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        if self.source.is_empty() {
            self.source = other.source.clone();
        } else if !other.source.is_empty() && !self.source.contains(&other.source) {
            self.source = format!("{} + {}", self.source, other.source);
        }
    }

    /// Input plus output tokens.
    pub fn tokens(&self) -> u64 {
        self.tokens_in.saturating_add(self.tokens_out)
    }
}

/// The result of one attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outcome {
    /// How it ended.
    pub kind: OutcomeKind,
    /// One line saying why, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was observed.
    #[serde(default)]
    pub evidence: Evidence,
}

impl Outcome {
    /// A success with the given evidence.
    pub fn succeeded(evidence: Evidence) -> Self {
        Outcome {
            kind: OutcomeKind::Succeeded,
            reason: None,
            evidence,
        }
    }

    /// A non-success with a reason.
    pub fn failed(kind: OutcomeKind, reason: impl Into<String>, evidence: Evidence) -> Self {
        Outcome {
            kind,
            reason: Some(reason.into()),
            evidence,
        }
    }
}

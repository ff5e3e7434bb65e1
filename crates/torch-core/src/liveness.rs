//! What a running agent CLI is doing, as its own event stream says:
//! [`Activity`] (turns, tools, tokens) and [`Waiting`] (on the model
//! provider). The agent reports them with its progress; the task view and
//! `task.progress` events carry them as fields of their own.

use serde::{Deserialize, Serialize};

/// The CLI's activity so far in the current attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Activity {
    /// The last tool it called (`Write`, `shell`, `mcp echo`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tool: Option<String>,
    /// Model turns so far.
    pub turns: u64,
    /// Tokens so far (input and output).
    pub tokens_so_far: u64,
    /// When the stream last showed activity (unix ms).
    pub at_ms: u64,
}

/// The CLI is waiting, not working.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Waiting {
    /// `rate_limited` (the provider's rate limit), `permission` (a
    /// permission request nobody can answer) or `api_retry` (the CLI retries
    /// a failed model request).
    pub reason: String,
    /// Until when (unix ms), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// More about it, e.g. the API error (`overloaded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Both, as one progress report carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Liveness {
    /// What it did last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
    /// What it waits on, if it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

impl Liveness {
    /// True when it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.activity.is_none() && self.waiting.is_none()
    }
}

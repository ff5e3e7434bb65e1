//! Per-task budgets: a spec's `resources.budget_usd` and
//! `resources.max_tokens`, and the check that stops a running task on
//! reaching them (limits use `>=`).

use serde::{Deserialize, Serialize};

use crate::outcome::Usage;

/// A task spec's `resources` field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// Stop the attempt once its cost reaches this many US dollars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Stop the attempt once its input plus output tokens reach this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

impl Resources {
    /// Why the field is invalid, if it is.
    pub fn problem(&self) -> Option<String> {
        if let Some(b) = self.budget_usd
            && !(b.is_finite() && b > 0.0)
        {
            return Some(format!("budget_usd {b} must be a positive number"));
        }
        if self.max_tokens == Some(0) {
            return Some("max_tokens must be at least 1".into());
        }
        None
    }

    /// The limit `usage` has reached, if any, naming the limit and the
    /// usage, e.g. `budget_usd 0.05 reached: cost $0.0600, 1200 tokens`.
    pub fn exceeded(&self, usage: &Usage) -> Option<String> {
        let cost = usage.cost_usd.unwrap_or(0.0);
        let tokens = usage.tokens();
        let used = format!("cost ${cost:.4}, {tokens} tokens");
        if let Some(b) = self.budget_usd
            && cost >= b
        {
            return Some(format!("budget_usd {b} reached: {used}"));
        }
        if let Some(m) = self.max_tokens
            && tokens >= m
        {
            return Some(format!("max_tokens {m} reached: {used}"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_use_greater_or_equal() {
        let r = Resources {
            budget_usd: Some(0.05),
            max_tokens: Some(100),
        };
        let mut u = Usage {
            tokens_in: 50,
            tokens_out: 49,
            cost_usd: Some(0.04),
            ..Usage::default()
        };
        assert_eq!(r.exceeded(&u), None);
        u.tokens_out = 50;
        assert!(
            r.exceeded(&u)
                .is_some_and(|m| m.starts_with("max_tokens 100"))
        );
        u.tokens_out = 0;
        u.cost_usd = Some(0.05);
        let m = r.exceeded(&u).unwrap_or_default();
        assert!(
            m.starts_with("budget_usd 0.05 reached: cost $0.0500"),
            "{m}"
        );
        assert!(
            Resources {
                budget_usd: Some(-1.0),
                max_tokens: None
            }
            .problem()
            .is_some()
        );
        assert!(
            Resources {
                budget_usd: None,
                max_tokens: Some(0)
            }
            .problem()
            .is_some()
        );
        assert!(r.problem().is_none());
    }
}

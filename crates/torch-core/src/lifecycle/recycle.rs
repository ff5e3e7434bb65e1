//! When to replace a long-lived agent with a fresh one.
//!
//! Agent processes (and the executors they host) accumulate state: leaked
//! memory, stale caches, a drifting conversation. A template's `[recycle]`
//! rules say when an agent should be drained and replaced. The check is pure:
//! the agent runtime passes in its counters and acts on the reason returned.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::template::format_bytes;

/// The `[templates.NAME.recycle]` section. Every rule is off when absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RecycleRules {
    /// Recycle after this many finished tasks (at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_tasks: Option<u32>,
    /// Recycle once the agent is this old (`"2h"`), measured from spawn.
    #[serde(
        with = "crate::spec::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_lifetime: Option<Duration>,
    /// Recycle when resident memory has grown by this many bytes since the
    /// agent became ready (`"1GiB"` or an integer).
    #[serde(
        with = "super::template::opt_bytes",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_rss_growth: Option<u64>,
}

/// Why an agent should be recycled, with the numbers that tripped the rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum RecycleReason {
    /// `after-tasks`: the agent has finished its quota of tasks.
    AfterTasks {
        /// Tasks finished so far.
        done: u64,
        /// The configured limit.
        limit: u32,
    },
    /// `max-lifetime`: the agent is older than allowed.
    MaxLifetime {
        /// Age of the agent, milliseconds.
        age_ms: u64,
        /// The configured limit, milliseconds.
        limit_ms: u64,
    },
    /// `rss-growth`: resident memory grew more than allowed.
    RssGrowth {
        /// Growth since start, bytes.
        grown: u64,
        /// The configured limit, bytes.
        limit: u64,
    },
}

impl RecycleReason {
    /// Stable name of the rule: `after-tasks`, `max-lifetime` or `rss-growth`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RecycleReason::AfterTasks { .. } => "after-tasks",
            RecycleReason::MaxLifetime { .. } => "max-lifetime",
            RecycleReason::RssGrowth { .. } => "rss-growth",
        }
    }
}

impl fmt::Display for RecycleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecycleReason::AfterTasks { done, limit } => {
                write!(f, "after-tasks: finished {done} tasks (limit {limit})")
            }
            RecycleReason::MaxLifetime { age_ms, limit_ms } => write!(
                f,
                "max-lifetime: agent is {} old (limit {})",
                humantime::format_duration(Duration::from_millis(*age_ms)),
                humantime::format_duration(Duration::from_millis(*limit_ms)),
            ),
            RecycleReason::RssGrowth { grown, limit } => write!(
                f,
                "rss-growth: resident memory grew by {} (limit {})",
                format_bytes(*grown),
                format_bytes(*limit),
            ),
        }
    }
}

impl RecycleRules {
    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self == &RecycleRules::default()
    }

    /// The first rule that says this agent should be recycled, checked in the
    /// order `after-tasks`, `max-lifetime`, `rss-growth`; `None` keeps it.
    ///
    /// `age_ms` is the time since spawn; `rss_start` is the resident set size
    /// when the agent became ready and `rss_now` the latest sample (bytes). A
    /// shrinking RSS never trips the growth rule.
    pub fn check(
        &self,
        tasks_done: u64,
        age_ms: u64,
        rss_start: u64,
        rss_now: u64,
    ) -> Option<RecycleReason> {
        if let Some(limit) = self.after_tasks
            && tasks_done >= u64::from(limit)
        {
            return Some(RecycleReason::AfterTasks {
                done: tasks_done,
                limit,
            });
        }
        if let Some(max) = self.max_lifetime {
            let limit_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
            if age_ms >= limit_ms {
                return Some(RecycleReason::MaxLifetime { age_ms, limit_ms });
            }
        }
        if let Some(limit) = self.max_rss_growth {
            let grown = rss_now.saturating_sub(rss_start);
            if grown > limit {
                return Some(RecycleReason::RssGrowth { grown, limit });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_trips_with_its_numbers_in_order() {
        let rules = RecycleRules {
            after_tasks: Some(50),
            max_lifetime: Some(Duration::from_secs(3600)),
            max_rss_growth: Some(1 << 30),
        };
        assert_eq!(rules.check(49, 1000, 100, 200), None);
        let r = rules.check(50, 1000, 100, 200).unwrap();
        assert_eq!(
            r,
            RecycleReason::AfterTasks {
                done: 50,
                limit: 50
            }
        );
        assert_eq!(r.as_str(), "after-tasks");
        assert_eq!(r.to_string(), "after-tasks: finished 50 tasks (limit 50)");

        let r = rules.check(1, 3_600_000, 0, 0).unwrap();
        assert_eq!(r.as_str(), "max-lifetime");
        assert_eq!(r.to_string(), "max-lifetime: agent is 1h old (limit 1h)");

        let r = rules.check(1, 10, 1 << 30, (3 << 30) + 1).unwrap();
        assert_eq!(r.as_str(), "rss-growth");
        assert!(r.to_string().contains("limit 1GiB"), "{r}");
        // Shrinking memory never trips; growth exactly at the limit is allowed.
        assert_eq!(rules.check(1, 10, 5 << 30, 1 << 30), None);
        assert_eq!(rules.check(1, 10, 0, 1 << 30), None);
        // Both after-tasks and lifetime: after-tasks is reported.
        assert_eq!(
            rules.check(60, 9_999_999, 0, 0).map(|r| r.as_str()),
            Some("after-tasks")
        );
        assert!(
            RecycleRules::default()
                .check(u64::MAX, u64::MAX, 0, u64::MAX)
                .is_none()
        );
        assert!(RecycleRules::default().is_empty() && !rules.is_empty());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["reason"], "rss-growth");
    }

    #[test]
    fn parses_from_toml() {
        let r: RecycleRules =
            toml::from_str("after-tasks = 10\nmax-lifetime = \"2h\"\nmax-rss-growth = \"512MiB\"")
                .unwrap();
        assert_eq!(r.after_tasks, Some(10));
        assert_eq!(r.max_lifetime, Some(Duration::from_secs(7200)));
        assert_eq!(r.max_rss_growth, Some(512 << 20));
        assert!(toml::from_str::<RecycleRules>("after = 1").is_err());
    }
}

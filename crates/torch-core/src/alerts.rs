//! Alert rules and their evaluation: what an `[[alerts]]` entry of
//! `torch.toml` says, the defaults, and the state machine that turns a
//! stream of values into `firing` and `resolved` transitions.
//!
//! A rule watches one [`Signal`] (a number the hub computes every
//! evaluation from its metrics) and fires when the value stays past its
//! threshold (`above` or `below`) for the rule's `for` duration. It resolves
//! only once the value is back past `clear` (hysteresis: a value hovering
//! around the threshold does not make the alert flap). Pure: every step
//! takes `now`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a rule watches. Each is computed by the hub from its own metrics;
/// `deploy/prometheus/alerts.yml` computes the same from the exported series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Failed attempts over all ended attempts in the rule's window (0..1).
    TaskFailureRatio,
    /// Leased tasks with no progress report for `stuck-after`, or whose agent
    /// stopped sending heartbeats.
    TasksStuck,
    /// Agents that missed their heartbeats now, plus managed agent processes
    /// that ended on their own within the window.
    AgentsDead,
    /// Agent sessions that re-registered (reconnects) within the window.
    AgentReconnects,
    /// The busiest node's CPU use (0..1).
    NodeCpuRatio,
    /// The fullest node's memory use (0..1).
    NodeMemoryRatio,
    /// Tasks entering the queue minus tasks leaving it for an agent, per
    /// second over the window, while the queue is not empty.
    QueueGrowthPerS,
    /// 1 when this hub leads or knows the leader, 0 when no leader is known.
    LeaderKnown,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 8] = [
        Signal::TaskFailureRatio,
        Signal::TasksStuck,
        Signal::AgentsDead,
        Signal::AgentReconnects,
        Signal::NodeCpuRatio,
        Signal::NodeMemoryRatio,
        Signal::QueueGrowthPerS,
        Signal::LeaderKnown,
    ];

    /// The name used in `torch.toml` and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::TaskFailureRatio => "task_failure_ratio",
            Signal::TasksStuck => "tasks_stuck",
            Signal::AgentsDead => "agents_dead",
            Signal::AgentReconnects => "agent_reconnects",
            Signal::NodeCpuRatio => "node_cpu_ratio",
            Signal::NodeMemoryRatio => "node_memory_ratio",
            Signal::QueueGrowthPerS => "queue_growth_per_s",
            Signal::LeaderKnown => "leader_known",
        }
    }
}

/// One `[[alerts]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertRule {
    /// Unique name, e.g. `TorchNodeCpuHigh` (a default rule of the same
    /// name is replaced).
    pub name: String,
    /// What it watches.
    pub signal: Signal,
    /// Fires when the value is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fires when the value is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Resolves only once the value is back at or past this (default: the
    /// threshold itself). For `above` it must not exceed the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear: Option<f64>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for", with = "crate::spec::duration", default)]
    pub for_: Duration,
    /// The window of rate signals (ratios, counts and growth over time).
    #[serde(with = "crate::spec::duration", default = "default_window")]
    pub window: Duration,
    /// `critical`, `warning` or `info` (free text, carried in events).
    #[serde(default = "default_severity")]
    pub severity: String,
    /// What it means, for people.
    #[serde(default)]
    pub summary: String,
}

fn default_window() -> Duration {
    Duration::from_secs(300)
}

fn default_severity() -> String {
    "warning".into()
}

/// The direction of a rule's threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// Fires above `fire`, resolves at or below `clear`.
    Above {
        /// Firing threshold.
        fire: f64,
        /// Resolving threshold (≤ `fire`).
        clear: f64,
    },
    /// Fires below `fire`, resolves at or above `clear`.
    Below {
        /// Firing threshold.
        fire: f64,
        /// Resolving threshold (≥ `fire`).
        clear: f64,
    },
}

impl Threshold {
    /// Whether `v` is past the firing threshold.
    pub fn breached(self, v: f64) -> bool {
        match self {
            Threshold::Above { fire, .. } => v > fire,
            Threshold::Below { fire, .. } => v < fire,
        }
    }

    /// Whether `v` is back past the resolving threshold.
    pub fn cleared(self, v: f64) -> bool {
        match self {
            Threshold::Above { clear, .. } => v <= clear,
            Threshold::Below { clear, .. } => v >= clear,
        }
    }

    /// The firing threshold.
    pub fn fire(self) -> f64 {
        match self {
            Threshold::Above { fire, .. } | Threshold::Below { fire, .. } => fire,
        }
    }
}

impl AlertRule {
    /// The rule's threshold, or what is wrong with it.
    pub fn threshold(&self) -> Result<Threshold, String> {
        let finite = |x: f64, what: &str| {
            if x.is_finite() {
                Ok(x)
            } else {
                Err(format!("alert {:?}: {what} must be a number", self.name))
            }
        };
        match (self.above, self.below) {
            (Some(fire), None) => {
                let fire = finite(fire, "above")?;
                let clear = finite(self.clear.unwrap_or(fire), "clear")?;
                if clear > fire {
                    return Err(format!(
                        "alert {:?}: clear ({clear}) must not be above `above` ({fire})",
                        self.name
                    ));
                }
                Ok(Threshold::Above { fire, clear })
            }
            (None, Some(fire)) => {
                let fire = finite(fire, "below")?;
                let clear = finite(self.clear.unwrap_or(fire), "clear")?;
                if clear < fire {
                    return Err(format!(
                        "alert {:?}: clear ({clear}) must not be below `below` ({fire})",
                        self.name
                    ));
                }
                Ok(Threshold::Below { fire, clear })
            }
            _ => Err(format!(
                "alert {:?}: give exactly one of `above` or `below`",
                self.name
            )),
        }
    }

    /// Checks the rule on its own.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("alert: `name` must not be empty".into());
        }
        if self.window < Duration::from_secs(1) {
            return Err(format!("alert {:?}: window must be at least 1s", self.name));
        }
        self.threshold().map(|_| ())
    }
}

/// The rules used when `torch.toml` names none (or adds to them): the ones
/// the sprint plan lists. `deploy/prometheus/alerts.yml` holds the same.
pub fn default_rules() -> Vec<AlertRule> {
    let rule = |name: &str, signal, above, below, clear, for_s, summary: &str| AlertRule {
        name: name.into(),
        signal,
        above,
        below,
        clear,
        for_: Duration::from_secs(for_s),
        window: default_window(),
        severity: default_severity(),
        summary: summary.into(),
    };
    let mut rules = vec![
        rule(
            "TorchTaskFailureRate",
            Signal::TaskFailureRatio,
            Some(0.2),
            None,
            Some(0.1),
            120,
            "more than 20 % of task attempts failed over 5 minutes",
        ),
        rule(
            "TorchTasksStuck",
            Signal::TasksStuck,
            Some(0.0),
            None,
            None,
            120,
            "tasks show no progress or their agent sends no heartbeat",
        ),
        rule(
            "TorchAgentsDead",
            Signal::AgentsDead,
            Some(0.0),
            None,
            None,
            60,
            "agents missed their heartbeats or their processes died",
        ),
        rule(
            "TorchAgentFlapping",
            Signal::AgentReconnects,
            Some(3.0),
            None,
            Some(1.0),
            0,
            "agents reconnect repeatedly (more than 3 reconnects in 10 minutes)",
        ),
        rule(
            "TorchNodeCpuHigh",
            Signal::NodeCpuRatio,
            Some(0.8),
            None,
            Some(0.7),
            300,
            "a node's CPU use is above 80 %",
        ),
        rule(
            "TorchNodeMemoryHigh",
            Signal::NodeMemoryRatio,
            Some(0.7),
            None,
            Some(0.6),
            300,
            "a node's memory use is above 70 %",
        ),
        rule(
            "TorchQueueGrowing",
            Signal::QueueGrowthPerS,
            Some(0.1),
            None,
            Some(0.0),
            300,
            "the queue grows faster than agents drain it",
        ),
        rule(
            "TorchLeaderLost",
            Signal::LeaderKnown,
            None,
            Some(1.0),
            None,
            15,
            "no hub is known to lead: nothing is scheduled",
        ),
    ];
    for r in &mut rules {
        match r.signal {
            Signal::AgentReconnects | Signal::QueueGrowthPerS => {
                r.window = Duration::from_secs(600)
            }
            Signal::LeaderKnown => r.severity = "critical".into(),
            _ => {}
        }
    }
    rules
}

/// `defaults` with `extra` applied: a rule of `extra` replaces the default
/// of the same name, the others are added.
pub fn merge_rules(defaults: Vec<AlertRule>, extra: &[AlertRule]) -> Vec<AlertRule> {
    let mut out = defaults;
    for r in extra {
        match out.iter_mut().find(|d| d.name == r.name) {
            Some(d) => *d = r.clone(),
            None => out.push(r.clone()),
        }
    }
    out
}

/// Checks a rule set: each rule, and unique names.
pub fn validate_rules(rules: &[AlertRule]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for r in rules {
        r.validate()?;
        if !seen.insert(r.name.as_str()) {
            return Err(format!("alert {:?} is defined twice", r.name));
        }
    }
    Ok(())
}

/// Where an alert stands.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Phase {
    /// Condition not met.
    #[default]
    Inactive,
    /// Condition met since `since_ms`, not yet for the rule's `for`.
    Pending {
        /// When the condition started to hold.
        since_ms: u64,
    },
    /// Firing since `since_ms`.
    Firing {
        /// When it fired.
        since_ms: u64,
    },
}

/// A change worth telling people about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transition {
    /// The alert fired with this value.
    Fired {
        /// The value that completed its `for`.
        value: f64,
    },
    /// The alert resolved with this value; it had fired at `fired_ms`.
    Resolved {
        /// The value past `clear`.
        value: f64,
        /// When it had fired.
        fired_ms: u64,
    },
}

/// One rule's evaluation state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertState {
    /// Where it stands.
    pub phase: Phase,
    /// The last value seen (`None`: no data yet).
    pub value: Option<f64>,
}

impl AlertState {
    /// Feeds the value at `now` (`None`: the signal has no data, which
    /// never fires and never resolves); returns the transition, if any.
    pub fn step(
        &mut self,
        t: Threshold,
        for_: Duration,
        value: Option<f64>,
        now: u64,
    ) -> Option<Transition> {
        self.value = value;
        let Some(v) = value else {
            if let Phase::Pending { .. } = self.phase {
                self.phase = Phase::Inactive;
            }
            return None;
        };
        let for_ms = for_.as_millis() as u64;
        match self.phase {
            Phase::Inactive | Phase::Pending { .. } if !t.breached(v) => {
                self.phase = Phase::Inactive;
                None
            }
            Phase::Inactive => {
                self.phase = Phase::Pending { since_ms: now };
                self.fire_if_due(now, for_ms, v)
            }
            Phase::Pending { .. } => self.fire_if_due(now, for_ms, v),
            Phase::Firing { since_ms } if t.cleared(v) => {
                self.phase = Phase::Inactive;
                Some(Transition::Resolved {
                    value: v,
                    fired_ms: since_ms,
                })
            }
            Phase::Firing { .. } => None,
        }
    }

    fn fire_if_due(&mut self, now: u64, for_ms: u64, v: f64) -> Option<Transition> {
        let Phase::Pending { since_ms } = self.phase else {
            return None;
        };
        if now.saturating_sub(since_ms) >= for_ms {
            self.phase = Phase::Firing { since_ms: now };
            Some(Transition::Fired { value: v })
        } else {
            None
        }
    }

    /// Whether it is firing.
    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_after_for_and_resolves_with_hysteresis() {
        let t = Threshold::Above {
            fire: 0.8,
            clear: 0.7,
        };
        let for_ = Duration::from_secs(10);
        let mut s = AlertState::default();
        assert_eq!(s.step(t, for_, Some(0.9), 0), None, "pending first");
        assert!(matches!(s.phase, Phase::Pending { since_ms: 0 }));
        assert_eq!(s.step(t, for_, Some(0.85), 5_000), None);
        assert_eq!(
            s.step(t, for_, Some(0.95), 10_000),
            Some(Transition::Fired { value: 0.95 })
        );
        assert_eq!(
            s.step(t, for_, Some(0.75), 15_000),
            None,
            "between clear and fire: still firing"
        );
        assert!(s.is_firing());
        assert_eq!(
            s.step(t, for_, None, 16_000),
            None,
            "no data keeps it firing"
        );
        assert!(s.is_firing());
        assert_eq!(
            s.step(t, for_, Some(0.7), 20_000),
            Some(Transition::Resolved {
                value: 0.7,
                fired_ms: 10_000
            })
        );
        // A dip during `for` restarts it.
        assert_eq!(s.step(t, for_, Some(0.9), 30_000), None);
        assert_eq!(s.step(t, for_, Some(0.5), 35_000), None);
        assert_eq!(s.step(t, for_, Some(0.9), 39_000), None);
        assert_eq!(
            s.step(t, for_, Some(0.9), 45_000),
            None,
            "restarted at 39 s"
        );
        assert!(s.step(t, for_, Some(0.9), 49_000).is_some());
    }

    #[test]
    fn below_rules_and_zero_for() {
        let t = Threshold::Below {
            fire: 1.0,
            clear: 1.0,
        };
        let mut s = AlertState::default();
        assert_eq!(
            s.step(t, Duration::ZERO, Some(0.0), 7),
            Some(Transition::Fired { value: 0.0 })
        );
        assert_eq!(
            s.step(t, Duration::ZERO, Some(1.0), 9),
            Some(Transition::Resolved {
                value: 1.0,
                fired_ms: 7
            })
        );
    }

    #[test]
    fn defaults_are_valid_and_merge_by_name() {
        let d = default_rules();
        validate_rules(&d).expect("defaults are valid");
        assert_eq!(d.len(), 8);
        let cpu: AlertRule = toml::from_str(
            "name = \"TorchNodeCpuHigh\"\nsignal = \"node_cpu_ratio\"\nabove = 0.9\nfor = \"1m\"",
        )
        .expect("parse");
        let extra: AlertRule =
            toml::from_str("name = \"Mine\"\nsignal = \"tasks_stuck\"\nabove = 5").expect("parse");
        let merged = merge_rules(d, &[cpu.clone(), extra]);
        assert_eq!(merged.len(), 9);
        assert_eq!(
            merged.iter().find(|r| r.name == "TorchNodeCpuHigh"),
            Some(&cpu)
        );
        let bad: AlertRule =
            toml::from_str("name = \"x\"\nsignal = \"tasks_stuck\"\nabove = 1\nclear = 2")
                .expect("parse");
        assert!(bad.validate().unwrap_err().contains("clear"));
        let both: AlertRule =
            toml::from_str("name = \"x\"\nsignal = \"tasks_stuck\"\nabove = 1\nbelow = 0")
                .expect("parse");
        assert!(both.validate().is_err());
        assert!(
            toml::from_str::<AlertRule>("name = \"x\"\nsignal = \"nope\"\nabove = 1").is_err(),
            "unknown signals are refused"
        );
    }
}

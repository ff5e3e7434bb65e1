//! The per-template autoscaler: how many agents a template should have.
//!
//! The hub calls [`Autoscaler::tick`] once per `interval` with a snapshot
//! ([`ScaleInputs`]) and acts on the returned [`ScaleDecision`]; every
//! decision, holds included, carries a reason so it can be logged.
//!
//! # The rule
//! Demand is counted in task slots:
//!
//! ```text
//! demand  = busy + queued                               (reactive: needed now)
//!         + max(0, λ(t+H) − λ(t)) × S                   (predictive: growth)
//! desired = clamp(ceil(demand / slots), min, max)
//! ```
//!
//! - `λ(t)` is the smoothed arrival rate (tasks per interval) and `λ(t+H)` its
//!   forecast `H = horizon / interval` intervals ahead, both from Holt's
//!   linear trend method ([`Holt`]) over per-interval arrival counts.
//! - `S` is the service time in intervals: the smoothed run time of
//!   finished tasks when the hub reports them
//!   ([`Autoscaler::observe_run_time`]), else Little's law on the busy slots,
//!   `busy / λ(t)`. (That fallback reads low while the pool is saturated,
//!   which errs towards the reactive rule, never towards runaway growth.)
//!   So `(λ(t+H) − λ(t)) × S` is the number of extra slots that the rate
//!   growth will keep busy by the time an agent spawned now is ready. On a
//!   ramp this adds capacity before the queue builds; on a plateau or a decay
//!   it is zero, so the forecast never removes capacity and scale-down stays
//!   purely reactive.
//! - Pressure: when the oldest queued task has waited longer than
//!   `target-wait` and nothing is starting, desired is at least one more
//!   than what exists (up to `max`), whatever the arithmetic says.
//!
//! Scale up when `desired > running + starting` and `up-cooldown` has passed
//! since the last scale-up (always, when below `min`). Scale down when
//! `desired < running`, `down-cooldown` has passed since the last change,
//! and utilisation of what would remain stays at most `1 − hysteresis`:
//! the agents kept are `max(desired, ceil(busy / (slots × (1 − hysteresis))), min)`.
//! Only agents that are not busy and have been idle for `idle-timeout` are
//! removed, oldest idle first.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::template::AgentTemplate;

/// Arrival rates below this (tasks per interval) are treated as this when
/// estimating service time, so an idle template does not divide by zero.
const MIN_RATE: f64 = 0.5;
/// Weight of the newest run time in the service-time average.
const RUN_TIME_SMOOTHING: f64 = 0.1;
/// Cap on the estimated service time, in intervals.
const MAX_SERVICE_STEPS: f64 = 3600.0;
/// Least headroom factor `1 − hysteresis` used, so a hysteresis near 1
/// cannot demand unbounded capacity.
const MIN_HEADROOM: f64 = 0.05;

/// The `[templates.NAME.scaling]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ScalingConfig {
    /// How often the hub runs this template's autoscaler (at the next
    /// `[lifecycle] tick` once due, so keep the tick at or below it); also the
    /// forecast's time step (default 1s).
    #[serde(with = "crate::spec::duration")]
    pub interval: Duration,
    /// The oldest queued task waiting longer than this is pressure: scale up
    /// by at least one (default 2s).
    #[serde(with = "crate::spec::duration")]
    pub target_wait: Duration,
    /// Least time between two scale-ups (default 2s).
    #[serde(with = "crate::spec::duration")]
    pub up_cooldown: Duration,
    /// Least time after any scale change before a scale-down (default 10s).
    #[serde(with = "crate::spec::duration")]
    pub down_cooldown: Duration,
    /// Add capacity for forecast arrival growth (default true).
    pub predictive: bool,
    /// How far ahead the forecast looks; about spawn-to-ready time plus one
    /// interval (default 5s).
    #[serde(with = "crate::spec::duration")]
    pub horizon: Duration,
    /// Holt level smoothing in `(0, 1]` (default 0.5).
    pub alpha: f64,
    /// Holt trend smoothing in `[0, 1]` (default 0.3).
    pub beta: f64,
    /// Scale down only while what remains would be at most `1 − hysteresis`
    /// utilised, in `[0, 1)` (default 0.2).
    pub hysteresis: f64,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            interval: Duration::from_secs(1),
            target_wait: Duration::from_secs(2),
            up_cooldown: Duration::from_secs(2),
            down_cooldown: Duration::from_secs(10),
            predictive: true,
            horizon: Duration::from_secs(5),
            alpha: 0.5,
            beta: 0.3,
            hysteresis: 0.2,
        }
    }
}

impl ScalingConfig {
    /// Out-of-range fields as `(kebab-case field, message)`.
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.interval.is_zero() {
            out.push(("interval", "must be greater than zero".to_string()));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            out.push((
                "alpha",
                format!("{} is out of range: must be in (0, 1]", self.alpha),
            ));
        }
        if !(0.0..=1.0).contains(&self.beta) {
            out.push((
                "beta",
                format!("{} is out of range: must be in [0, 1]", self.beta),
            ));
        }
        if !(self.hysteresis >= 0.0 && self.hysteresis < 1.0) {
            out.push((
                "hysteresis",
                format!("{} is out of range: must be in [0, 1)", self.hysteresis),
            ));
        }
        out
    }

    /// The horizon in intervals (at least 1).
    fn horizon_steps(&self) -> f64 {
        let interval = self.interval.as_secs_f64();
        if interval > 0.0 {
            (self.horizon.as_secs_f64() / interval).max(1.0)
        } else {
            1.0
        }
    }
}

/// Holt's linear trend method (double exponential smoothing) over one value
/// per interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holt {
    /// Level smoothing in `(0, 1]`: weight of the newest observation.
    pub alpha: f64,
    /// Trend smoothing in `[0, 1]`: weight of the newest level change.
    pub beta: f64,
    /// Smoothed current value.
    pub level: f64,
    /// Smoothed change per step.
    pub trend: f64,
    /// Observations so far (saturating).
    pub seen: u32,
}

impl Holt {
    /// An empty model.
    pub fn new(alpha: f64, beta: f64) -> Self {
        Holt {
            alpha: alpha.clamp(f64::MIN_POSITIVE, 1.0),
            beta: beta.clamp(0.0, 1.0),
            level: 0.0,
            trend: 0.0,
            seen: 0,
        }
    }

    /// Folds in the next observation. The first sets the level, the second
    /// the initial trend; after that the usual Holt recurrences apply.
    pub fn observe(&mut self, x: f64) {
        let x = if x.is_finite() { x } else { 0.0 };
        match self.seen {
            0 => self.level = x,
            1 => {
                self.trend = x - self.level;
                self.level = x;
            }
            _ => {
                let prev = self.level;
                self.level = self.alpha * x + (1.0 - self.alpha) * (self.level + self.trend);
                self.trend = self.beta * (self.level - prev) + (1.0 - self.beta) * self.trend;
            }
        }
        self.seen = self.seen.saturating_add(1);
    }

    /// The value expected `h_steps` steps ahead, never negative.
    pub fn forecast(&self, h_steps: f64) -> f64 {
        (self.level + h_steps * self.trend).max(0.0)
    }
}

/// One ready agent of the template, as the autoscaler sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleAgent {
    /// Agent id (opaque to the core).
    pub agent: String,
    /// When it last became idle (or ready), unix ms; meaningless while busy.
    pub idle_since_ms: u64,
    /// True while it runs at least one task: never scaled down.
    pub busy: bool,
}

/// A snapshot of one template's pool and queue, taken by the hub each tick.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleInputs {
    /// The tick's time, unix ms.
    pub now_ms: u64,
    /// Queued and ready tasks that need this template's skills.
    pub queue_depth: u64,
    /// How long the oldest of them has waited, ms (0 when none).
    pub oldest_wait_ms: u64,
    /// Tasks for this template that arrived during the last interval.
    pub arrivals: u64,
    /// Slots in use on ready agents.
    pub busy_slots: u32,
    /// Slots of ready agents.
    pub total_slots: u32,
    /// Ready agents.
    pub running: u32,
    /// Spawned agents not ready yet.
    pub starting: u32,
    /// Every ready agent with its idle state (busy ones included).
    pub idle: Vec<IdleAgent>,
}

/// The numbers a decision was based on, for logs and `torch top`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleSummary {
    /// See [`ScaleInputs::queue_depth`].
    pub queue_depth: u64,
    /// See [`ScaleInputs::oldest_wait_ms`].
    pub oldest_wait_ms: u64,
    /// See [`ScaleInputs::arrivals`].
    pub arrivals: u64,
    /// See [`ScaleInputs::busy_slots`].
    pub busy_slots: u32,
    /// See [`ScaleInputs::total_slots`].
    pub total_slots: u32,
    /// See [`ScaleInputs::running`].
    pub running: u32,
    /// See [`ScaleInputs::starting`].
    pub starting: u32,
    /// Agents idle long enough to be scaled down.
    pub reclaimable: u32,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ScaleAction {
    /// Nothing this tick.
    Hold,
    /// Spawn this many agents.
    Up {
        /// Agents to spawn (at least 1).
        count: u32,
    },
    /// Drain and stop these agents (never busy ones, never below `min`).
    Down {
        /// Agent ids, oldest idle first.
        agents: Vec<String>,
    },
}

/// One tick's decision, with the reasoning behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecision {
    /// Template name.
    pub template: String,
    /// The tick's time, unix ms.
    pub at_ms: u64,
    /// The action (flattened: `"action": "up", "count": 2`).
    #[serde(flatten)]
    pub action: ScaleAction,
    /// Why, in one line.
    pub reason: String,
    /// The inputs it was based on.
    pub inputs: ScaleSummary,
    /// Forecast arrivals per interval at the horizon, when predicting.
    pub forecast: Option<f64>,
    /// Demand in slots (reactive plus forecast growth).
    pub demand: f64,
    /// Agents wanted, within `[min, max]`.
    pub desired: u32,
}

impl ScaleDecision {
    /// True unless the action is [`ScaleAction::Hold`].
    pub fn is_change(&self) -> bool {
        !matches!(self.action, ScaleAction::Hold)
    }
}

/// The autoscaler of one template; feed it one [`ScaleInputs`] per interval.
#[derive(Clone, Debug)]
pub struct Autoscaler {
    template: String,
    min: u32,
    max: u32,
    slots: u32,
    idle_timeout_ms: u64,
    config: ScalingConfig,
    holt: Holt,
    /// Smoothed run time of finished tasks, ms, once any was reported.
    run_ms: Option<f64>,
    /// Busy slots at the last tick, for the Little's-law fallback.
    last_busy: f64,
    last_up_ms: Option<u64>,
    last_change_ms: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn elapsed(last: Option<u64>, now_ms: u64, cooldown: Duration) -> bool {
    last.is_none_or(|t| now_ms.saturating_sub(t) >= ms(cooldown))
}

impl Autoscaler {
    /// An autoscaler for `template` keeping between `min` and `max` agents of
    /// `slots_per_agent` slots, reclaiming agents idle for `idle_timeout`.
    pub fn new(
        template: &str,
        min: u32,
        max: u32,
        slots_per_agent: u32,
        idle_timeout: Duration,
        config: ScalingConfig,
    ) -> Self {
        let holt = Holt::new(config.alpha, config.beta);
        Autoscaler {
            template: template.to_string(),
            min: min.min(max),
            max,
            slots: slots_per_agent.max(1),
            idle_timeout_ms: ms(idle_timeout),
            config,
            holt,
            run_ms: None,
            last_busy: 0.0,
            last_up_ms: None,
            last_change_ms: None,
        }
    }

    /// The autoscaler for a template's `min`, `max`, `slots`,
    /// `idle-timeout` and `[scaling]`.
    pub fn from_template(t: &AgentTemplate) -> Self {
        Autoscaler::new(
            &t.name,
            t.min,
            t.max,
            t.slots,
            t.idle_timeout,
            t.scaling.clone(),
        )
    }

    /// Applies a reloaded template, keeping what was learned (forecast,
    /// service time) and the cool-down clocks.
    pub fn reconfigure(&mut self, t: &AgentTemplate) {
        let old = std::mem::replace(self, Autoscaler::from_template(t));
        self.holt = Holt {
            alpha: self.holt.alpha,
            beta: self.holt.beta,
            ..old.holt
        };
        self.run_ms = old.run_ms;
        self.last_busy = old.last_busy;
        self.last_up_ms = old.last_up_ms;
        self.last_change_ms = old.last_change_ms;
    }

    /// The template this autoscaler serves.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The arrival forecast model.
    pub fn holt(&self) -> &Holt {
        &self.holt
    }

    /// The idle time after which an agent may be reclaimed, ms.
    pub fn idle_timeout_ms(&self) -> u64 {
        self.idle_timeout_ms
    }

    /// Reports the run time of one finished task of this template, ms.
    /// Optional but better: without it the service time is inferred.
    pub fn observe_run_time(&mut self, run_ms: u64) {
        let x = run_ms as f64;
        self.run_ms = Some(match self.run_ms {
            Some(avg) => RUN_TIME_SMOOTHING * x + (1.0 - RUN_TIME_SMOOTHING) * avg,
            None => x,
        });
    }

    /// Estimated service time in intervals (see the module docs).
    pub fn service_steps(&self) -> f64 {
        let s = match self.run_ms {
            Some(run) => run / (ms(self.config.interval).max(1) as f64),
            None => self.last_busy / self.holt.level.max(MIN_RATE),
        };
        s.clamp(0.0, MAX_SERVICE_STEPS)
    }

    /// One tick: learns from `inputs.arrivals` and decides.
    pub fn tick(&mut self, inputs: &ScaleInputs) -> ScaleDecision {
        let now = inputs.now_ms;
        self.holt.observe(inputs.arrivals as f64);
        self.last_busy = f64::from(inputs.busy_slots);
        let slots = f64::from(self.slots);
        let busy = f64::from(inputs.busy_slots);
        let queued = inputs.queue_depth as f64;

        let (forecast, growth) = if self.config.predictive && self.holt.seen >= 2 {
            let rate_now = self.holt.level.max(0.0);
            let rate_then = self.holt.forecast(self.config.horizon_steps());
            let service = self.service_steps();
            (Some(rate_then), (rate_then - rate_now).max(0.0) * service)
        } else {
            (None, 0.0)
        };
        let demand = busy + queued + growth;
        let have = inputs.running.saturating_add(inputs.starting);
        let mut desired = ((demand / slots).ceil() as u32).clamp(self.min, self.max);
        let pressure = inputs.queue_depth > 0
            && inputs.starting == 0
            && inputs.oldest_wait_ms > ms(self.config.target_wait);
        if pressure {
            desired = desired.max(have.saturating_add(1).min(self.max));
        }

        let mut why = format!(
            "demand {demand:.1} slots (busy {} + queued {}",
            inputs.busy_slots, inputs.queue_depth
        );
        if let Some(f) = forecast {
            let _ = write!(why, " + growth {growth:.1} to {f:.1}/interval");
        }
        let _ = write!(
            why,
            ") wants {desired} agents of {} slots; {} running + {} starting",
            self.slots, inputs.running, inputs.starting
        );
        if pressure {
            let _ = write!(
                why,
                "; oldest task waited {}ms > target {}ms",
                inputs.oldest_wait_ms,
                ms(self.config.target_wait)
            );
        }

        let mut reclaimable: Vec<&IdleAgent> = inputs
            .idle
            .iter()
            .filter(|a| !a.busy && now.saturating_sub(a.idle_since_ms) >= self.idle_timeout_ms)
            .collect();
        reclaimable.sort_by(|a, b| (a.idle_since_ms, &a.agent).cmp(&(b.idle_since_ms, &b.agent)));
        reclaimable.dedup_by(|a, b| a.agent == b.agent);

        let (action, reason) = if desired > have {
            let count = desired - have;
            if have < self.min || elapsed(self.last_up_ms, now, self.config.up_cooldown) {
                self.last_up_ms = Some(now);
                self.last_change_ms = Some(now);
                (ScaleAction::Up { count }, format!("up {count}: {why}"))
            } else {
                (
                    ScaleAction::Hold,
                    format!("hold (up cool-down, would add {count}): {why}"),
                )
            }
        } else if desired < inputs.running {
            self.scale_down(inputs, desired, &reclaimable, &why)
        } else {
            (ScaleAction::Hold, format!("hold: {why}"))
        };

        ScaleDecision {
            template: self.template.clone(),
            at_ms: now,
            action,
            reason,
            inputs: ScaleSummary {
                queue_depth: inputs.queue_depth,
                oldest_wait_ms: inputs.oldest_wait_ms,
                arrivals: inputs.arrivals,
                busy_slots: inputs.busy_slots,
                total_slots: inputs.total_slots,
                running: inputs.running,
                starting: inputs.starting,
                reclaimable: u32::try_from(reclaimable.len()).unwrap_or(u32::MAX),
            },
            forecast,
            demand,
            desired,
        }
    }

    fn scale_down(
        &mut self,
        inputs: &ScaleInputs,
        desired: u32,
        reclaimable: &[&IdleAgent],
        why: &str,
    ) -> (ScaleAction, String) {
        let headroom = (1.0 - self.config.hysteresis).max(MIN_HEADROOM);
        let floor = (f64::from(inputs.busy_slots) / (f64::from(self.slots) * headroom)).ceil();
        let keep = desired.max(floor as u32).max(self.min);
        if keep >= inputs.running {
            return (
                ScaleAction::Hold,
                format!(
                    "hold (hysteresis: {} busy slots need {keep} agents at ≤{:.0}% utilisation): {why}",
                    inputs.busy_slots,
                    headroom * 100.0
                ),
            );
        }
        if !elapsed(
            self.last_change_ms,
            inputs.now_ms,
            self.config.down_cooldown,
        ) {
            return (ScaleAction::Hold, format!("hold (down cool-down): {why}"));
        }
        let surplus = (inputs.running - keep) as usize;
        let agents: Vec<String> = reclaimable
            .iter()
            .take(surplus)
            .map(|a| a.agent.clone())
            .collect();
        if agents.is_empty() {
            return (
                ScaleAction::Hold,
                format!("hold (no agent idle for {}ms): {why}", self.idle_timeout_ms),
            );
        }
        self.last_change_ms = Some(inputs.now_ms);
        let n = agents.len();
        (ScaleAction::Down { agents }, format!("down {n}: {why}"))
    }
}

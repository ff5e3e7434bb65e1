//! The alert evaluator: a service that, every `alerting.interval` (5 s by
//! default), samples the hub ([`crate::metrics::sample`]), refreshes the
//! exported gauges, runs the recorder's upkeep, and steps every alert rule
//! (`torch_core::alerts`). A rule that fires or resolves becomes an event
//! on `nova.torch.alerts` (`alert.firing`, `alert.resolved`), a log line
//! (warn / info) and, when a webhook is configured, a signed POST
//! (`webhook`). It owns the rules' states, the counter history the windowed
//! signals need and the recent changes; `GET /api/v1/alerts` asks it
//! through [`AlertsHandle`].

mod signals;
pub(crate) mod webhook;

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use torch_api::rest::{AlertList, AlertView};
use torch_core::EventData;
use torch_core::alerts::{AlertRule, AlertState, Phase, Threshold, Transition};
use torch_core::events::payload::AlertChange;
use torch_store::Store;
use tracing::{debug, info, warn};

use crate::hub::Shared;
use signals::Past;

/// Queries waiting for the evaluator, at most.
const QUERIES: usize = 64;
/// Recent changes kept for `torch alerts`.
const RECENT: usize = 100;
/// Counter samples are kept for the longest window plus this much.
const HISTORY_SLACK_MS: u64 = 60_000;

/// Questions for the evaluator.
pub(crate) enum AlertsQuery {
    /// Firing alerts and recent changes.
    List(oneshot::Sender<AlertList>),
}

/// The evaluator's address. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AlertsHandle {
    tx: mpsc::Sender<AlertsQuery>,
}

impl AlertsHandle {
    /// A handle and the receiving end the evaluator reads.
    pub(crate) fn channel() -> (AlertsHandle, mpsc::Receiver<AlertsQuery>) {
        let (tx, rx) = mpsc::channel(QUERIES);
        (AlertsHandle { tx }, rx)
    }

    /// Asks and waits; `None` when the evaluator is not running.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> AlertsQuery,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// One rule with its checked threshold and its state.
struct Rule {
    rule: AlertRule,
    threshold: Threshold,
    state: AlertState,
}

/// The evaluator; see the module docs.
pub(crate) struct Alerts<S> {
    shared: Arc<Shared<S>>,
    rx: mpsc::Receiver<AlertsQuery>,
    rules: Vec<Rule>,
    history: VecDeque<Past>,
    recent: VecDeque<AlertView>,
    webhook: Option<webhook::Webhook>,
}

impl<S: Store> Alerts<S> {
    /// An evaluator of the configured rules (invalid ones were refused by
    /// the configuration's validation; any left are skipped with an error).
    pub(crate) fn new(shared: Arc<Shared<S>>, rx: mpsc::Receiver<AlertsQuery>) -> Self {
        let rules = shared
            .cfg
            .observe
            .rules
            .iter()
            .filter_map(|r| match r.threshold() {
                Ok(threshold) => Some(Rule {
                    rule: r.clone(),
                    threshold,
                    state: AlertState::default(),
                }),
                Err(e) => {
                    tracing::error!(error = %e, "alert rule skipped");
                    None
                }
            })
            .collect();
        Alerts {
            shared,
            rx,
            rules,
            history: VecDeque::new(),
            recent: VecDeque::new(),
            webhook: None,
        }
    }

    /// Runs until `shutdown` fires; the webhook sender (if any) runs in
    /// `tracker`.
    pub(crate) async fn run(mut self, tracker: TaskTracker, shutdown: CancellationToken) {
        let o = &self.shared.cfg.observe;
        if let Some(url) = o.webhook.clone() {
            let (hook, task) = webhook::start(url, o.webhook_secret.clone(), shutdown.clone());
            tracker.spawn(task);
            self.webhook = Some(hook);
        }
        let mut ticker = tokio::time::interval(o.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                q = self.rx.recv() => match q {
                    Some(q) => self.answer(q),
                    None => break,
                },
                _ = ticker.tick() => self.evaluate().await,
                _ = shutdown.cancelled() => break,
            }
        }
        debug!("alert evaluator stopped");
    }

    fn answer(&self, q: AlertsQuery) {
        match q {
            AlertsQuery::List(reply) => {
                let _ = reply.send(self.list());
            }
        }
    }

    fn list(&self) -> AlertList {
        let firing = self
            .rules
            .iter()
            .filter_map(|r| match r.state.phase {
                Phase::Firing { since_ms } => Some(view(
                    r,
                    "firing",
                    r.state.value.unwrap_or(0.0),
                    since_ms,
                    None,
                )),
                _ => None,
            })
            .collect();
        AlertList {
            firing,
            recent: self.recent.iter().cloned().collect(),
            rules: self.rules.len() as u32,
        }
    }

    /// Samples, exports and steps every rule.
    async fn evaluate(&mut self) {
        let sample = crate::metrics::sample(&self.shared).await;
        let metrics = &self.shared.metrics;
        metrics.export(&sample);
        metrics.upkeep();
        let now = sample.at_ms;
        let longest = self
            .rules
            .iter()
            .map(|r| r.rule.window.as_millis() as u64)
            .max()
            .unwrap_or(0);
        while self
            .history
            .front()
            .is_some_and(|p| now.saturating_sub(p.at_ms) > longest + HISTORY_SLACK_MS)
        {
            self.history.pop_front();
        }
        let mut changes = Vec::new();
        for (i, r) in self.rules.iter_mut().enumerate() {
            let window_ms = r.rule.window.as_millis() as u64;
            let v = signals::value(r.rule.signal, window_ms, &sample, &self.history);
            if let Some(t) = r.state.step(r.threshold, r.rule.for_, v, now) {
                changes.push((i, t));
            }
            metrics.alert_firing(&r.rule.name, &r.rule.severity, r.state.is_firing());
        }
        self.history.push_back(Past {
            at_ms: now,
            counters: sample.counters,
        });
        for (i, t) in changes {
            self.changed(i, t, now).await;
        }
    }

    /// Tells the log, the event stream and the webhook about a change.
    async fn changed(&mut self, i: usize, t: Transition, now: u64) {
        let r = &self.rules[i];
        let (kind, value, fired_ms, resolved_ms) = match t {
            Transition::Fired { value } => ("firing", value, now, None),
            Transition::Resolved { value, fired_ms } => ("resolved", value, fired_ms, Some(now)),
        };
        let name = &r.rule.name;
        let signal = r.rule.signal.as_str();
        if resolved_ms.is_none() {
            warn!(alert = %name, severity = %r.rule.severity, signal, value, threshold = r.threshold.fire(), "alert firing: {}", r.rule.summary);
        } else {
            info!(alert = %name, signal, value, "alert resolved");
        }
        let change = AlertChange {
            alert: name.clone(),
            fired_ms,
            severity: r.rule.severity.clone(),
            signal: signal.to_string(),
            summary: r.rule.summary.clone(),
            threshold: r.threshold.fire(),
            value,
        };
        let v = view(r, kind, value, fired_ms, resolved_ms);
        if self.recent.len() >= RECENT {
            self.recent.pop_back();
        }
        self.recent.push_front(v.clone());
        let data = match t {
            Transition::Fired { .. } => EventData::AlertFiring(change),
            Transition::Resolved { .. } => EventData::AlertResolved(change),
        };
        if let Some(hook) = &self.webhook {
            match serde_json::to_vec(&v) {
                Ok(body) => hook.send(data.kind().name(), body),
                Err(e) => warn!(error = %e, "could not encode an alert for the webhook"),
            }
        }
        self.shared.event(None, None, data).await;
    }
}

fn view(r: &Rule, state: &str, value: f64, fired_ms: u64, resolved_ms: Option<u64>) -> AlertView {
    AlertView {
        alert: r.rule.name.clone(),
        state: state.to_string(),
        severity: r.rule.severity.clone(),
        signal: r.rule.signal.as_str().to_string(),
        value,
        threshold: r.threshold.fire(),
        summary: r.rule.summary.clone(),
        fired_ms,
        resolved_ms,
    }
}

//! The value of each alert signal, from the latest sample and the history
//! of counter samples (for the signals measured over a window).

use std::collections::VecDeque;

use torch_core::alerts::Signal;

use crate::metrics::{CounterSnapshot, Sample};

/// What the evaluator keeps of each past sample.
#[derive(Clone, Copy, Debug)]
pub(super) struct Past {
    pub(super) at_ms: u64,
    pub(super) counters: CounterSnapshot,
}

/// The oldest sample within `window_ms` of `now` (or the oldest kept).
fn start_of(history: &VecDeque<Past>, window_ms: u64, now: u64) -> Option<&Past> {
    let from = now.saturating_sub(window_ms);
    history
        .iter()
        .find(|p| p.at_ms >= from)
        .or_else(|| history.back())
}

/// The value of `signal` over `window_ms`; `None` when there is no data
/// (a rule then neither fires nor resolves).
pub(super) fn value(
    signal: Signal,
    window_ms: u64,
    s: &Sample,
    history: &VecDeque<Past>,
) -> Option<f64> {
    let now = &s.counters;
    let then = start_of(history, window_ms, s.at_ms);
    let delta = |f: fn(&CounterSnapshot) -> u64| -> u64 {
        then.map_or(0, |p| f(now).saturating_sub(f(&p.counters)))
    };
    match signal {
        Signal::TaskFailureRatio => {
            let failed = delta(CounterSnapshot::failures_total);
            let ended = failed + delta(|c| c.completed);
            Some(if ended == 0 {
                0.0
            } else {
                failed as f64 / ended as f64
            })
        }
        Signal::TasksStuck => s
            .leader
            .then(|| (s.engine.stuck_no_progress + s.engine.stuck_no_heartbeat) as f64),
        Signal::AgentsDead => {
            let silent = s
                .engine
                .agents
                .iter()
                .filter(|a| a.state == "silent")
                .count() as u64;
            Some((silent + delta(|c| c.exits)) as f64)
        }
        Signal::AgentReconnects => Some(delta(|c| c.reconnects) as f64),
        Signal::NodeCpuRatio => s.max_node_cpu(),
        Signal::NodeMemoryRatio => s.max_node_memory(),
        Signal::QueueGrowthPerS => {
            if !s.leader {
                return None;
            }
            if s.queue_len() == 0 {
                return Some(0.0);
            }
            let then = then?;
            let secs = s.at_ms.saturating_sub(then.at_ms) as f64 / 1000.0;
            if secs < 1.0 {
                return None;
            }
            let grew = delta(|c| c.enqueued) as f64 - delta(|c| c.assigned) as f64;
            Some(grew / secs)
        }
        Signal::LeaderKnown => Some(if s.leader_known { 1.0 } else { 0.0 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn past(at_ms: u64, f: impl FnOnce(&mut CounterSnapshot)) -> Past {
        let mut counters = CounterSnapshot::default();
        f(&mut counters);
        Past { at_ms, counters }
    }

    #[test]
    fn windowed_signals_use_the_sample_at_the_start_of_the_window() {
        let mut history = VecDeque::new();
        history.push_back(past(0, |_| {}));
        history.push_back(past(60_000, |c| {
            c.completed = 10;
            c.failures[0] = 0;
            c.enqueued = 100;
            c.assigned = 100;
        }));
        let mut s = Sample {
            at_ms: 120_000,
            leader: true,
            leader_known: true,
            ..Sample::default()
        };
        s.counters.completed = 16;
        s.counters.failures = [4, 0, 0, 0];
        s.counters.enqueued = 220;
        s.counters.assigned = 160;
        s.engine.queued = [0, 5, 0];
        // The last minute: 6 completed, 4 failed.
        let r = value(Signal::TaskFailureRatio, 60_000, &s, &history).expect("data");
        assert!((r - 0.4).abs() < 1e-9, "{r}");
        // Two minutes: 16 completed, 4 failed.
        let r = value(Signal::TaskFailureRatio, 120_000, &s, &history).expect("data");
        assert!((r - 0.2).abs() < 1e-9, "{r}");
        // Queue: 120 in, 60 out in the last 60 s → 1/s.
        let g = value(Signal::QueueGrowthPerS, 60_000, &s, &history).expect("data");
        assert!((g - 1.0).abs() < 1e-9, "{g}");
        s.engine.queued = [0, 0, 0];
        assert_eq!(
            value(Signal::QueueGrowthPerS, 60_000, &s, &history),
            Some(0.0)
        );
        assert_eq!(value(Signal::NodeCpuRatio, 60_000, &s, &history), None);
        assert_eq!(value(Signal::LeaderKnown, 60_000, &s, &history), Some(1.0));
    }
}

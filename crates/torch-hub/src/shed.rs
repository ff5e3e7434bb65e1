//! Load shedding by importance: as the backlog (unfinished tasks) climbs
//! from `hub.shed-from × hub.queue-high-water` to `hub.queue-high-water`, a
//! priority floor rises linearly from `hub.shed-lowest` to
//! `hub.shed-highest`; submissions below it get `429 shed`. At the
//! high-water mark itself every submission gets `429 queue_full`.

use serde::Serialize;

use crate::config::HubConfig;

/// What admission decides for a submission at the current backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Accepted.
    Accept,
    /// Refused: its priority is below the floor.
    Shed {
        /// The floor now: the lowest priority accepted.
        floor: i32,
    },
    /// Refused: the backlog is at the hard limit.
    Full,
}

/// The shedding settings of `[hub]`, checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ShedPolicy {
    /// The hard limit (`hub.queue-high-water`).
    pub(crate) limit: u64,
    /// The backlog where shedding starts.
    pub(crate) from: u64,
    /// The floor at `from`.
    pub(crate) lowest: i32,
    /// The floor as the backlog reaches `limit`.
    pub(crate) highest: i32,
}

impl ShedPolicy {
    /// The policy of `cfg` (`shed-from` is clamped to `0..=1`).
    pub(crate) fn of(cfg: &HubConfig) -> Self {
        let fraction = if cfg.shed_from.is_finite() {
            cfg.shed_from.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let from = (cfg.queue_high_water as f64 * fraction).ceil() as u64;
        ShedPolicy {
            limit: cfg.queue_high_water,
            from: from.min(cfg.queue_high_water),
            lowest: cfg.shed_lowest.min(cfg.shed_highest),
            highest: cfg.shed_highest.max(cfg.shed_lowest),
        }
    }

    /// The priority floor at `backlog` unfinished tasks: `None` below the
    /// shedding mark (everything accepted); from the mark it rises linearly
    /// (rounded up) from `lowest` to `highest`, reached at the limit.
    pub(crate) fn floor(&self, backlog: u64) -> Option<i32> {
        if backlog < self.from {
            return None;
        }
        if backlog >= self.limit || self.limit <= self.from {
            return Some(self.highest);
        }
        let span = i128::from(self.highest) - i128::from(self.lowest);
        let done = i128::from(backlog - self.from);
        let width = i128::from(self.limit - self.from);
        // Ceiling division (all terms non-negative).
        let rise = (span * done + width - 1) / width;
        Some((i128::from(self.lowest) + rise).min(i128::from(self.highest)) as i32)
    }

    /// Admission of a submission whose least important task has
    /// `priority` (a batch is judged by its lowest priority, as a whole).
    pub(crate) fn admit(&self, backlog: u64, priority: i32) -> Admission {
        if backlog >= self.limit {
            return Admission::Full;
        }
        match self.floor(backlog) {
            Some(floor) if priority < floor => Admission::Shed { floor },
            _ => Admission::Accept,
        }
    }

    /// The view in `GET /api/v1/stats`.
    pub(crate) fn view(&self, backlog: u64) -> ShedView {
        ShedView {
            backlog,
            from: self.from,
            limit: self.limit,
            floor: self.floor(backlog),
        }
    }
}

/// Load shedding now (`shed` in `GET /api/v1/stats`).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ShedView {
    /// Unfinished tasks (blocked, queued, leased, running).
    pub(crate) backlog: u64,
    /// The backlog where shedding starts (`shed-from` × `queue-high-water`).
    pub(crate) from: u64,
    /// The hard limit (`queue-high-water`): every submission is refused there.
    pub(crate) limit: u64,
    /// The lowest priority accepted now; `null` when nothing is shed.
    pub(crate) floor: Option<i32>,
}

/// Problems with the shedding settings of `cfg`, as `(field, message)`.
pub(crate) fn problems(cfg: &HubConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !(cfg.shed_from.is_finite() && (0.0..=1.0).contains(&cfg.shed_from)) {
        out.push((
            "shed-from",
            format!("{} is not a fraction in 0..=1", cfg.shed_from),
        ));
    }
    for (field, v) in [
        ("shed-lowest", cfg.shed_lowest),
        ("shed-highest", cfg.shed_highest),
    ] {
        if !(-1000..=1000).contains(&v) {
            out.push((field, format!("{v} is out of range -1000..=1000")));
        }
    }
    if cfg.shed_lowest > cfg.shed_highest {
        out.push((
            "shed-lowest",
            format!(
                "{} is above shed-highest ({})",
                cfg.shed_lowest, cfg.shed_highest
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u64, from: f64, lowest: i32, highest: i32) -> ShedPolicy {
        ShedPolicy::of(&HubConfig {
            queue_high_water: limit,
            shed_from: from,
            shed_lowest: lowest,
            shed_highest: highest,
            ..HubConfig::default()
        })
    }

    #[test]
    fn floor_rises_linearly_from_the_mark_to_the_limit() {
        let p = policy(10, 0.5, -1000, 1000);
        assert_eq!(p.from, 5);
        let floors: Vec<Option<i32>> = (0..=11).map(|b| p.floor(b)).collect();
        assert_eq!(
            floors,
            [
                None,
                None,
                None,
                None,
                None,
                Some(-1000),
                Some(-600),
                Some(-200),
                Some(200),
                Some(600),
                Some(1000),
                Some(1000),
            ]
        );
    }

    #[test]
    fn floor_rounds_up_and_never_passes_highest() {
        let p = policy(1000, 0.8, 0, 10);
        assert_eq!(p.from, 800);
        assert_eq!(p.floor(799), None);
        assert_eq!(p.floor(800), Some(0));
        // 10 × 1 / 200 = 0.05, rounded up.
        assert_eq!(p.floor(801), Some(1));
        assert_eq!(p.floor(900), Some(5));
        assert_eq!(p.floor(999), Some(10));
        let mut last = i32::MIN;
        for b in 800..1000 {
            let f = p.floor(b).unwrap_or(i32::MIN);
            assert!(f >= last && f <= 10, "floor at {b}: {f} after {last}");
            last = f;
        }
    }

    #[test]
    fn admission_sheds_below_the_floor_and_refuses_all_at_the_limit() {
        let p = policy(10, 0.5, -1000, 1000);
        assert_eq!(p.admit(4, -1000), Admission::Accept);
        assert_eq!(p.admit(8, 0), Admission::Shed { floor: 200 });
        assert_eq!(p.admit(8, 200), Admission::Accept);
        assert_eq!(p.admit(9, 1000), Admission::Accept);
        assert_eq!(p.admit(10, 1000), Admission::Full);
    }

    #[test]
    fn shed_from_one_disables_shedding_below_the_limit() {
        let p = policy(10, 1.0, -1000, 1000);
        assert_eq!(p.admit(9, -1000), Admission::Accept);
        assert_eq!(p.admit(10, 1000), Admission::Full);
        let p = policy(10, 0.0, -1000, 1000);
        assert_eq!(p.floor(0), Some(-1000));
    }

    #[test]
    fn problems_name_the_field() {
        let cfg = HubConfig {
            shed_from: 1.5,
            shed_lowest: 5,
            shed_highest: -2000,
            ..HubConfig::default()
        };
        let fields: Vec<&str> = problems(&cfg).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["shed-from", "shed-highest", "shed-lowest"]);
        assert!(problems(&HubConfig::default()).is_empty());
    }
}

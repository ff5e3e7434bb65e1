//! Outcomes of past tasks, grouped by what made them similar: the same
//! normalised skill set, or the same name pattern. Task analysis reads it to
//! estimate complexity; the hub records into it when a task ends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most keys remembered; beyond this the least-used key is forgotten.
pub const MAX_HISTORY_KEYS: usize = 4096;

/// Weight of the newest outcome in the success EWMA.
const ALPHA: f64 = 0.2;

/// The two keys under which a task's outcome is remembered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryKey {
    /// `skills:python,testing` (sorted canonical skills; `skills:` when none).
    pub skills: String,
    /// `name:build-#` (lower-cased name, digit runs replaced by `#`); empty when unnamed.
    pub name: String,
}

impl HistoryKey {
    /// Builds the keys from canonical skill names and an optional task name.
    pub fn new<'a>(skills: impl IntoIterator<Item = &'a str>, name: Option<&str>) -> Self {
        let mut s: Vec<&str> = skills.into_iter().collect();
        s.sort_unstable();
        s.dedup();
        let name = name.map(name_pattern).unwrap_or_default();
        HistoryKey {
            skills: format!("skills:{}", s.join(",")),
            name: if name.is_empty() {
                String::new()
            } else {
                format!("name:{name}")
            },
        }
    }
}

/// `Build 42 (try 3)` → `build # (try #)`; at most 128 characters.
fn name_pattern(name: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in name.chars().take(128) {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.extend(c.to_lowercase());
        }
    }
    out.trim().to_string()
}

/// Aggregate outcomes for one key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Outcomes recorded.
    pub count: u64,
    /// Exponentially weighted success rate (newest weighs 0.2).
    pub success_ewma: f64,
    /// Mean run time in milliseconds over all outcomes.
    pub mean_duration_ms: f64,
}

impl HistoryEntry {
    fn record(&mut self, success: bool, duration_ms: u64) {
        let x = if success { 1.0 } else { 0.0 };
        self.success_ewma = if self.count == 0 {
            x
        } else {
            ALPHA * x + (1.0 - ALPHA) * self.success_ewma
        };
        self.count += 1;
        self.mean_duration_ms += (duration_ms as f64 - self.mean_duration_ms) / self.count as f64;
    }
}

/// Past outcomes by key; bounded to [`MAX_HISTORY_KEYS`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    entries: BTreeMap<String, HistoryEntry>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one finished task under both of its keys.
    pub fn record(&mut self, key: &HistoryKey, success: bool, duration_ms: u64) {
        for k in [&key.skills, &key.name] {
            if k.is_empty() {
                continue;
            }
            if !self.entries.contains_key(k.as_str()) && self.entries.len() >= MAX_HISTORY_KEYS {
                self.evict();
            }
            self.entries
                .entry(k.clone())
                .or_default()
                .record(success, duration_ms);
        }
    }

    /// The entry for one key string, if any outcome was recorded under it.
    pub fn get(&self, key: &str) -> Option<&HistoryEntry> {
        self.entries.get(key)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the least-used key (lowest count, then first in name order).
    fn evict(&mut self) {
        let victim = self
            .entries
            .iter()
            .min_by(|a, b| a.1.count.cmp(&b.1.count).then(a.0.cmp(b.0)))
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_bounded_records() {
        let k = HistoryKey::new(["testing", "python", "python"], Some("Build 42 (try 3)"));
        assert_eq!(k.skills, "skills:python,testing");
        assert_eq!(k.name, "name:build # (try #)");
        let mut h = History::new();
        h.record(&k, true, 1000);
        h.record(&k, false, 3000);
        let e = h.get("skills:python,testing").unwrap();
        assert_eq!(e.count, 2);
        assert!((e.success_ewma - 0.8).abs() < 1e-9);
        assert!((e.mean_duration_ms - 2000.0).abs() < 1e-9);
        for i in 0..MAX_HISTORY_KEYS + 10 {
            let key = HistoryKey {
                skills: format!("skills:s{i}"),
                name: String::new(),
            };
            h.record(&key, true, 1);
        }
        assert_eq!(h.len(), MAX_HISTORY_KEYS);
        assert!(
            h.get("skills:python,testing").is_some(),
            "the used key survives"
        );
    }
}

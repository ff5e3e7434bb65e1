//! The ready queue: priority levels, and within a level one FIFO per tenant
//! served fairly.
//!
//! Fairness is stride scheduling with equal weights: each tenant at a level
//! has a *pass* (placements charged so far); the next task comes from the
//! tenant with the lowest pass (ties: the older head task). A tenant that
//! becomes active starts at the lowest pass of those already waiting, so idle
//! time banks no credit. With one tenant this is exactly priority-then-FIFO.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::ids::TaskId;

#[derive(Debug, Default)]
pub(crate) struct Level {
    /// Tenant → its waiting tasks as `(seq, id)`, oldest first.
    pub(crate) tenants: BTreeMap<String, BTreeSet<(u64, TaskId)>>,
    /// Tenant → placements charged (only for tenants with waiting tasks).
    pub(crate) pass: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub(crate) struct FairQueue {
    pub(crate) levels: BTreeMap<Reverse<i32>, Level>,
    len: usize,
}

impl FairQueue {
    pub(crate) fn insert(&mut self, priority: i32, tenant: &str, seq: u64, id: TaskId) {
        let level = self.levels.entry(Reverse(priority)).or_default();
        if !level.tenants.contains_key(tenant) {
            let start = level.pass.values().copied().min().unwrap_or(0);
            level.pass.insert(tenant.to_string(), start);
        }
        if level
            .tenants
            .entry(tenant.to_string())
            .or_default()
            .insert((seq, id))
        {
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, priority: i32, tenant: &str, seq: u64, id: TaskId) {
        let Some(level) = self.levels.get_mut(&Reverse(priority)) else {
            return;
        };
        let Some(set) = level.tenants.get_mut(tenant) else {
            return;
        };
        if set.remove(&(seq, id)) {
            self.len -= 1;
        }
        if set.is_empty() {
            level.tenants.remove(tenant);
            level.pass.remove(tenant);
        }
        if level.tenants.is_empty() {
            self.levels.remove(&Reverse(priority));
        }
    }

    /// Charges one placement to `tenant` at `priority`.
    pub(crate) fn charge(&mut self, priority: i32, tenant: &str) {
        if let Some(p) = self
            .levels
            .get_mut(&Reverse(priority))
            .and_then(|l| l.pass.get_mut(tenant))
        {
            *p += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

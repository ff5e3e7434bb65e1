//! Named locks and path reservations: the pure lock table.
//!
//! A lock is either **named** (any string) or a **path reservation** (a
//! glob such as `src/api/**`). It is held exclusively or shared; each grant
//! carries a **fence** from one counter that never goes back (also across
//! restarts: the owner restores it), and an expiry. A named lock conflicts
//! with its own holders; a path reservation with every held reservation
//! whose glob overlaps it (see [`paths::globs_overlap`]) and that belongs
//! to someone else. Shared conflicts only with exclusive.
//!
//! Waiters queue per lock in order of arrival (`since_ms`), the waiting
//! party's priority breaking ties of the same millisecond, then the order
//! they came in. The queue is strict: a waiter is granted only when nobody
//! ahead of it still waits, so consecutive shared waiters are granted
//! together and an exclusive waiter is never starved by later shared ones.
//!
//! A renew or a release names the lock and its fence: a fence that is not
//! a current holder's is [`LockError::StaleFence`], a lock nobody holds is
//! [`LockError::NotHeld`]; neither is ever a silent success.
//!
//! Pure: the caller passes `now` (unix ms) and does the I/O.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::waits::{Node, WaitEdge, WaitOn};

pub mod paths;
#[cfg(test)]
mod tests;

pub use paths::globs_overlap;

/// Exclusive or shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// One holder.
    Exclusive,
    /// Any number of shared holders, no exclusive one.
    Shared,
}

impl LockMode {
    /// `exclusive` or `shared`.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Exclusive => "exclusive",
            LockMode::Shared => "shared",
        }
    }

    /// Parses [`LockMode::as_str`].
    pub fn parse(s: &str) -> Option<LockMode> {
        match s {
            "exclusive" => Some(LockMode::Exclusive),
            "shared" => Some(LockMode::Shared),
            _ => None,
        }
    }

    fn conflicts(self, other: LockMode) -> bool {
        !(self == LockMode::Shared && other == LockMode::Shared)
    }
}

/// Which lock: a name, or a path glob.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockKey {
    /// The name, or for a path reservation the glob.
    pub name: String,
    /// A path reservation (conflicts by glob overlap).
    pub path: bool,
}

impl LockKey {
    /// A named lock.
    pub fn named(name: impl Into<String>) -> Self {
        LockKey {
            name: name.into(),
            path: false,
        }
    }

    /// A path reservation.
    pub fn path(glob: impl Into<String>) -> Self {
        LockKey {
            name: glob.into(),
            path: true,
        }
    }
}

/// One holder of a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Who holds it.
    pub node: Node,
    /// How.
    pub mode: LockMode,
    /// This grant's fence.
    pub fence: u64,
    /// When it was granted.
    pub granted_ms: u64,
    /// When it lapses unless renewed.
    pub expires_ms: u64,
}

/// One waiter in a lock's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// The owner's id for this wait (to cancel it and deliver the grant).
    pub id: u64,
    /// Who waits.
    pub node: Node,
    /// For which mode.
    pub mode: LockMode,
    /// The waiting party's priority (higher first among the same `since_ms`).
    pub priority: i32,
    /// When it started waiting.
    pub since_ms: u64,
    /// The TTL its grant will get.
    pub ttl_ms: u64,
}

/// A lock given to someone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The waiter this grant answers, or `None` for an immediate grant.
    pub waiter: Option<u64>,
    /// The lock.
    pub key: LockKey,
    /// The new holder.
    pub holder: Holder,
}

/// What an acquire got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquire {
    /// The lock is held now.
    Granted(Grant),
    /// It must wait; these are its edges in the wait-for graph (possibly
    /// none, when only the queue's order holds it back).
    Blocked(Vec<WaitEdge>),
}

/// A renew or release that cannot be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Nobody holds the lock.
    #[error("lock {name:?} is not held")]
    NotHeld {
        /// The lock.
        name: String,
    },
    /// The fence is not one of the lock's current holders'.
    #[error("fence {fence} of lock {name:?} is stale (current: {current:?})")]
    StaleFence {
        /// The lock.
        name: String,
        /// The fence given.
        fence: u64,
        /// The current holders' fences.
        current: Vec<u64>,
    },
    /// The caller already holds the lock.
    #[error("lock {name:?} is already held by {node} (fence {fence})")]
    AlreadyHeld {
        /// The lock.
        name: String,
        /// The holder (the caller).
        node: Node,
        /// Its fence.
        fence: u64,
    },
    /// The fence is current but belongs to another party.
    #[error("lock {name:?} with fence {fence} is held by {holder}, not by the caller")]
    NotYours {
        /// The lock.
        name: String,
        /// The fence.
        fence: u64,
        /// Its holder.
        holder: Node,
    },
}

#[derive(Clone, Debug, Default)]
struct Lock {
    holders: Vec<Holder>,
    waiters: Vec<Waiter>,
}

/// Every lock, its holders and waiters, and the fence counter.
#[derive(Clone, Debug, Default)]
pub struct LockTable {
    locks: BTreeMap<LockKey, Lock>,
    /// Which lock each current fence belongs to.
    by_fence: HashMap<u64, LockKey>,
    last_fence: u64,
}

/// One lock for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockView {
    /// The lock.
    pub key: LockKey,
    /// Its holders.
    pub holders: Vec<Holder>,
    /// Its waiters, in queue order.
    pub waiters: Vec<Waiter>,
}

impl LockTable {
    /// An empty table whose next fence is `last_fence + 1`.
    pub fn new(last_fence: u64) -> Self {
        LockTable {
            last_fence,
            ..LockTable::default()
        }
    }

    /// Puts back a holder read from the store (on start).
    pub fn restore(&mut self, key: LockKey, holder: Holder) {
        self.last_fence = self.last_fence.max(holder.fence);
        self.by_fence.insert(holder.fence, key.clone());
        self.locks.entry(key).or_default().holders.push(holder);
    }

    /// The last fence given.
    pub fn last_fence(&self) -> u64 {
        self.last_fence
    }

    /// The edges from `node` to whoever stands in its way for `key` in
    /// `mode`: conflicting holders (of overlapping globs for a path), and
    /// conflicting waiters ahead of `ahead_of` in the queue (all of them
    /// when `None`).
    fn blockers(
        &self,
        key: &LockKey,
        node: &Node,
        mode: LockMode,
        ahead_of: Option<u64>,
    ) -> Vec<WaitEdge> {
        let mut edges: Vec<WaitEdge> = Vec::new();
        let mut push = |to: &Node, lock: &str| {
            let e = WaitEdge {
                from: node.clone(),
                to: to.clone(),
                on: WaitOn::Lock {
                    lock: lock.to_string(),
                },
            };
            if !edges.contains(&e) {
                edges.push(e);
            }
        };
        for h in self.conflicting_holders(key, node, mode) {
            push(&h.1.node, &h.0.name);
        }
        if let Some(lock) = self.locks.get(key) {
            for w in &lock.waiters {
                if Some(w.id) == ahead_of {
                    break;
                }
                if w.node != *node && w.mode.conflicts(mode) {
                    push(&w.node, &key.name);
                }
            }
        }
        edges
    }

    fn conflicting_holders<'a>(
        &'a self,
        key: &'a LockKey,
        node: &'a Node,
        mode: LockMode,
    ) -> impl Iterator<Item = (&'a LockKey, &'a Holder)> + 'a {
        let same = self
            .locks
            .get_key_value(key)
            .into_iter()
            .flat_map(|(k, l)| l.holders.iter().map(move |h| (k, h)));
        let paths = self
            .locks
            .iter()
            .filter(move |(k, _)| {
                key.path && k.path && *k != key && globs_overlap(&k.name, &key.name)
            })
            .flat_map(|(k, l)| l.holders.iter().map(move |h| (k, h)));
        same.chain(paths)
            .filter(move |(_, h)| h.node != *node && h.mode.conflicts(mode))
    }

    /// Tries to take `key` for `node` now. Granted only when nothing
    /// conflicts and nobody waits for it; otherwise the wait's edges (the
    /// caller checks them for a cycle, then calls [`LockTable::enqueue`]).
    pub fn try_acquire(
        &mut self,
        key: &LockKey,
        node: &Node,
        mode: LockMode,
        ttl_ms: u64,
        now: u64,
    ) -> Result<Acquire, LockError> {
        if let Some(h) = self
            .locks
            .get(key)
            .and_then(|l| l.holders.iter().find(|h| h.node == *node))
        {
            return Err(LockError::AlreadyHeld {
                name: key.name.clone(),
                node: node.clone(),
                fence: h.fence,
            });
        }
        let queued = self.locks.get(key).is_some_and(|l| !l.waiters.is_empty());
        if !queued && self.conflicting_holders(key, node, mode).next().is_none() {
            let holder = self.grant(key, node.clone(), mode, ttl_ms, now);
            return Ok(Acquire::Granted(Grant {
                waiter: None,
                key: key.clone(),
                holder,
            }));
        }
        Ok(Acquire::Blocked(self.blockers(key, node, mode, None)))
    }

    fn grant(
        &mut self,
        key: &LockKey,
        node: Node,
        mode: LockMode,
        ttl_ms: u64,
        now: u64,
    ) -> Holder {
        self.last_fence += 1;
        let holder = Holder {
            node,
            mode,
            fence: self.last_fence,
            granted_ms: now,
            expires_ms: now.saturating_add(ttl_ms),
        };
        self.by_fence.insert(holder.fence, key.clone());
        self.locks
            .entry(key.clone())
            .or_default()
            .holders
            .push(holder.clone());
        holder
    }

    /// Queues a waiter for `key` (after the caller found no cycle), and
    /// grants what can be granted (a waiter whose blockers left meanwhile).
    pub fn enqueue(&mut self, key: &LockKey, waiter: Waiter, now: u64) -> Vec<Grant> {
        let lock = self.locks.entry(key.clone()).or_default();
        let rank = |w: &Waiter| (w.since_ms, Reverse(w.priority), w.id);
        let at = lock.waiters.partition_point(|w| rank(w) <= rank(&waiter));
        lock.waiters.insert(at, waiter);
        self.pump(key, now)
    }

    /// Drops a waiter (timed out, or its caller went away). Answers whether
    /// it was waiting, and what its leaving lets through.
    pub fn cancel_wait(&mut self, id: u64, now: u64) -> (bool, Vec<Grant>) {
        let found = self.locks.iter_mut().find_map(|(k, l)| {
            let i = l.waiters.iter().position(|w| w.id == id)?;
            l.waiters.remove(i);
            Some(k.clone())
        });
        match found {
            Some(key) => {
                let grants = self.pump(&key, now);
                self.tidy(&key);
                (true, grants)
            }
            None => (false, Vec::new()),
        }
    }

    /// Grants waiters at the head of `key`'s queue while they fit; for a
    /// path, also every other path queue (a reservation may have freed
    /// room for any overlapping one).
    fn pump(&mut self, key: &LockKey, now: u64) -> Vec<Grant> {
        let keys: Vec<LockKey> = if key.path {
            self.locks.keys().filter(|k| k.path).cloned().collect()
        } else {
            vec![key.clone()]
        };
        let mut grants = Vec::new();
        for k in keys {
            while let Some(head) = self.locks.get(&k).and_then(|l| l.waiters.first()).cloned() {
                if self
                    .conflicting_holders(&k, &head.node, head.mode)
                    .next()
                    .is_some()
                {
                    break;
                }
                if let Some(l) = self.locks.get_mut(&k) {
                    l.waiters.remove(0);
                }
                let holder = self.grant(&k, head.node.clone(), head.mode, head.ttl_ms, now);
                grants.push(Grant {
                    waiter: Some(head.id),
                    key: k.clone(),
                    holder,
                });
            }
        }
        grants
    }

    fn tidy(&mut self, key: &LockKey) {
        if self
            .locks
            .get(key)
            .is_some_and(|l| l.holders.is_empty() && l.waiters.is_empty())
        {
            self.locks.remove(key);
        }
    }

    /// Finds the holder of `name` with `fence`, checked for `caller` when
    /// given (operators pass `None`).
    fn find(
        &self,
        name: &str,
        fence: u64,
        caller: Option<&Node>,
    ) -> Result<(LockKey, usize), LockError> {
        let key = self.by_fence.get(&fence).filter(|k| k.name == name);
        let Some(key) = key else {
            let current: Vec<u64> = self
                .locks
                .iter()
                .filter(|(k, _)| k.name == name)
                .flat_map(|(_, l)| l.holders.iter().map(|h| h.fence))
                .collect();
            return Err(if current.is_empty() {
                LockError::NotHeld {
                    name: name.to_string(),
                }
            } else {
                LockError::StaleFence {
                    name: name.to_string(),
                    fence,
                    current,
                }
            });
        };
        let lock = self.locks.get(key).ok_or_else(|| LockError::NotHeld {
            name: name.to_string(),
        })?;
        let i = lock
            .holders
            .iter()
            .position(|h| h.fence == fence)
            .ok_or_else(|| LockError::NotHeld {
                name: name.to_string(),
            })?;
        if let Some(c) = caller
            && lock.holders[i].node != *c
        {
            return Err(LockError::NotYours {
                name: name.to_string(),
                fence,
                holder: lock.holders[i].node.clone(),
            });
        }
        Ok((key.clone(), i))
    }

    /// Extends the holder of `name` with `fence` to `now + ttl_ms`.
    pub fn renew(
        &mut self,
        name: &str,
        fence: u64,
        caller: Option<&Node>,
        ttl_ms: u64,
        now: u64,
    ) -> Result<(LockKey, Holder), LockError> {
        let (key, i) = self.find(name, fence, caller)?;
        let lock = self.locks.get_mut(&key).ok_or_else(|| LockError::NotHeld {
            name: name.to_string(),
        })?;
        let h = &mut lock.holders[i];
        h.expires_ms = now.saturating_add(ttl_ms);
        Ok((key, h.clone()))
    }

    /// Releases the holder of `name` with `fence`; returns it and the
    /// grants its leaving lets through.
    pub fn release(
        &mut self,
        name: &str,
        fence: u64,
        caller: Option<&Node>,
        now: u64,
    ) -> Result<(LockKey, Holder, Vec<Grant>), LockError> {
        let (key, i) = self.find(name, fence, caller)?;
        let holder = self.remove_holder(&key, i);
        let grants = self.pump(&key, now);
        self.tidy(&key);
        Ok((key, holder, grants))
    }

    fn remove_holder(&mut self, key: &LockKey, i: usize) -> Holder {
        let lock = self.locks.entry(key.clone()).or_default();
        let h = lock.holders.remove(i);
        self.by_fence.remove(&h.fence);
        h
    }

    /// Releases every holder for which `gone` is true (expired, or its
    /// task's attempt ended); returns them and the grants that follow.
    pub fn release_where(
        &mut self,
        now: u64,
        mut gone: impl FnMut(&LockKey, &Holder) -> bool,
    ) -> (Vec<(LockKey, Holder)>, Vec<Grant>) {
        let mut released = Vec::new();
        let keys: Vec<LockKey> = self.locks.keys().cloned().collect();
        for key in &keys {
            while let Some(i) = self
                .locks
                .get(key)
                .and_then(|l| l.holders.iter().position(|h| gone(key, h)))
            {
                let h = self.remove_holder(key, i);
                released.push((key.clone(), h));
            }
        }
        let mut grants = Vec::new();
        let mut pumped_paths = false;
        for (key, _) in &released {
            if key.path {
                if pumped_paths {
                    continue;
                }
                pumped_paths = true;
            }
            grants.extend(self.pump(key, now));
        }
        for key in &keys {
            self.tidy(key);
        }
        (released, grants)
    }

    /// Releases holders whose expiry is at or before `now`.
    pub fn expire(&mut self, now: u64) -> (Vec<(LockKey, Holder)>, Vec<Grant>) {
        self.release_where(now, |_, h| h.expires_ms <= now)
    }

    /// The earliest holder expiry, if any.
    pub fn next_expiry(&self) -> Option<u64> {
        self.locks
            .values()
            .flat_map(|l| l.holders.iter().map(|h| h.expires_ms))
            .min()
    }

    /// Every waiter's edges in the wait-for graph.
    pub fn wait_edges(&self) -> Vec<WaitEdge> {
        let mut out = Vec::new();
        for (key, lock) in &self.locks {
            for w in &lock.waiters {
                out.extend(self.blockers(key, &w.node, w.mode, Some(w.id)));
            }
        }
        out
    }

    /// Every lock with a holder or a waiter, by key.
    pub fn views(&self) -> Vec<LockView> {
        self.locks
            .iter()
            .map(|(k, l)| LockView {
                key: k.clone(),
                holders: l.holders.clone(),
                waiters: l.waiters.clone(),
            })
            .collect()
    }

    /// Every holder (for a sweep of their parties).
    pub fn holders(&self) -> impl Iterator<Item = (&LockKey, &Holder)> {
        self.locks
            .iter()
            .flat_map(|(k, l)| l.holders.iter().map(move |h| (k, h)))
    }

    /// Every waiter.
    pub fn waiters(&self) -> impl Iterator<Item = (&LockKey, &Waiter)> {
        self.locks
            .iter()
            .flat_map(|(k, l)| l.waiters.iter().map(move |w| (k, w)))
    }
}

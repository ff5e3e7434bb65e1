//! Admission control for new agents: `can_spawn_agent`.
//!
//! Every spawn, whether the autoscaler's or an agent spawning a helper, asks
//! [`SpawnPolicy::can_spawn_agent`] first. Checks run in a fixed order and
//! the first one that fails is reported, naming the limit and the numbers:
//!
//! | order | limit | applies to |
//! |---|---|---|
//! | 1 | `pool-max` | every spawn: agents in the pool, starting included |
//! | 2 | `template-max` | every spawn: agents of the template |
//! | 3 | `node-cpu` | every spawn: CPU utilisation of the node |
//! | 4 | `node-memory` | every spawn: memory utilisation of the node |
//! | 5 | `depth` | self-spawns: how deep the spawn tree would get |
//! | 6 | `children` | self-spawns: live children of the parent |
//! | 7 | `tenant-quota` | every spawn, when the tenant has a quota |
//! | 8 | `parent-rate` | self-spawns: token bucket per parent agent |
//! | 9 | `global-rate` | every spawn: one token bucket for the pool |
//!
//! Rate tokens are taken only when every check passes, so a refusal never
//! costs a token. Time is passed in; nothing here reads the clock.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Parent buckets kept before full (forgettable) ones are pruned.
const PRUNE_AT: usize = 256;

/// A token bucket's shape: `burst` spawns at once, refilled at `per_sec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RateLimit {
    /// Bucket capacity: spawns allowed back to back.
    pub burst: u32,
    /// Tokens added per second.
    pub per_sec: f64,
}

/// The `[spawn]` limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SpawnLimits {
    /// Most agents in the pool, starting ones included (default 64).
    pub pool_max: u32,
    /// Most live children one agent may have (default 3).
    pub children_per_parent: u32,
    /// Deepest spawn tree: autoscaled agents are depth 0, their children 1,
    /// grandchildren 2 (default 2).
    pub max_depth: u32,
    /// Refuse spawns while node CPU utilisation is at or above this, `0..=1`
    /// (default 0.80); 1 turns the check off.
    pub node_cpu_max: f64,
    /// Refuse spawns while node memory utilisation is at or above this,
    /// `0..=1` (default 0.70); 1 turns the check off.
    pub node_mem_max: f64,
    /// Per-parent spawn rate (default burst 3, 1/s).
    pub parent_rate: RateLimit,
    /// Pool-wide spawn rate (default burst 20, 10/s).
    pub global_rate: RateLimit,
    /// Most agents per tenant; a tenant not listed is unlimited.
    pub tenant_quota: BTreeMap<String, u32>,
}

impl Default for SpawnLimits {
    fn default() -> Self {
        SpawnLimits {
            pool_max: 64,
            children_per_parent: 3,
            max_depth: 2,
            node_cpu_max: 0.80,
            node_mem_max: 0.70,
            parent_rate: RateLimit {
                burst: 3,
                per_sec: 1.0,
            },
            global_rate: RateLimit {
                burst: 20,
                per_sec: 10.0,
            },
            tenant_quota: BTreeMap::new(),
        }
    }
}

impl SpawnLimits {
    /// Out-of-range fields as `(kebab-case field, message)`; empty when valid.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (field, v) in [
            ("node-cpu-max", self.node_cpu_max),
            ("node-mem-max", self.node_mem_max),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                out.push((field, format!("{v} is out of range: must be in (0, 1]")));
            }
        }
        for (field, r) in [
            ("parent-rate", &self.parent_rate),
            ("global-rate", &self.global_rate),
        ] {
            if r.burst == 0 || !(r.per_sec.is_finite() && r.per_sec >= 0.0) {
                out.push((
                    field,
                    "burst must be at least 1 and per-sec a non-negative number".to_string(),
                ));
            }
        }
        out
    }
}

/// A token bucket on caller-supplied time.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    /// Most tokens held.
    pub capacity: f64,
    /// Tokens added per millisecond.
    pub refill_per_ms: f64,
    /// Tokens now (fractional between refills).
    pub tokens: f64,
    /// Time of the last refill, unix ms.
    pub last_ms: u64,
}

impl TokenBucket {
    /// A full bucket shaped by `rate`.
    pub fn new(rate: &RateLimit, now_ms: u64) -> Self {
        let capacity = f64::from(rate.burst);
        TokenBucket {
            capacity,
            refill_per_ms: (rate.per_sec / 1000.0).max(0.0),
            tokens: capacity,
            last_ms: now_ms,
        }
    }

    /// Adds the tokens earned since the last refill. Time going backwards
    /// earns nothing.
    pub fn refill(&mut self, now_ms: u64) {
        if now_ms > self.last_ms {
            let earned = (now_ms - self.last_ms) as f64 * self.refill_per_ms;
            self.tokens = (self.tokens + earned).min(self.capacity);
            self.last_ms = now_ms;
        }
    }

    /// True when a token is available now (refilling first), without taking it.
    pub fn available(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens >= 1.0
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        if self.available(now_ms) {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True when the bucket is full: it is then the same as a new one and
    /// can be forgotten.
    pub fn is_full(&self) -> bool {
        self.tokens >= self.capacity
    }
}

/// A node's resource use, each in `0..=1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHeadroom {
    /// CPU utilisation.
    pub cpu_used: f64,
    /// Memory utilisation.
    pub mem_used: f64,
}

/// A request to spawn one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// Template to spawn.
    pub template: String,
    /// The template's `max`.
    pub template_max: u32,
    /// The agent asking, for self-spawns.
    pub parent: Option<String>,
    /// Depth the new agent would have: 0 for autoscaler spawns, the parent's
    /// depth + 1 for self-spawns.
    pub depth: u32,
    /// Tenant the agent is charged to.
    pub tenant: String,
    /// The node the agent would run on.
    pub node: NodeHeadroom,
    /// True for the autoscaler's spawns.
    pub is_autoscale: bool,
}

impl SpawnRequest {
    /// The parent, when this is an agent spawning a helper (not the autoscaler).
    pub fn self_spawn_parent(&self) -> Option<&str> {
        self.parent.as_deref().filter(|_| !self.is_autoscale)
    }
}

/// Current pool counts (starting agents included).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolView {
    /// Agents in the pool.
    pub total: u32,
    /// Agents per template.
    pub per_template: BTreeMap<String, u32>,
    /// Live children of the request's parent (0 without a parent).
    pub children_of_parent: u32,
    /// Agents per tenant.
    pub per_tenant: BTreeMap<String, u32>,
}

/// The limit that refused a spawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpawnLimit {
    /// `pool-max`.
    PoolMax,
    /// `template-max`.
    TemplateMax,
    /// `node-cpu`.
    NodeCpu,
    /// `node-memory`.
    NodeMemory,
    /// `depth`.
    Depth,
    /// `children`.
    Children,
    /// `tenant-quota`.
    TenantQuota,
    /// `parent-rate`.
    ParentRate,
    /// `global-rate`.
    GlobalRate,
}

impl SpawnLimit {
    /// The stable name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            SpawnLimit::PoolMax => "pool-max",
            SpawnLimit::TemplateMax => "template-max",
            SpawnLimit::NodeCpu => "node-cpu",
            SpawnLimit::NodeMemory => "node-memory",
            SpawnLimit::Depth => "depth",
            SpawnLimit::Children => "children",
            SpawnLimit::TenantQuota => "tenant-quota",
            SpawnLimit::ParentRate => "parent-rate",
            SpawnLimit::GlobalRate => "global-rate",
        }
    }
}

impl fmt::Display for SpawnLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a spawn was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("spawn refused by {limit}: {message}")]
pub struct SpawnRefusal {
    /// The limit that refused.
    pub limit: SpawnLimit,
    /// The numbers, e.g. `parent agent a1 already has 3 of 3 children`.
    pub message: String,
}

fn refuse(limit: SpawnLimit, message: String) -> Result<(), SpawnRefusal> {
    Err(SpawnRefusal { limit, message })
}

/// The spawn admission policy, with its rate buckets.
#[derive(Clone, Debug)]
pub struct SpawnPolicy {
    limits: SpawnLimits,
    global: Option<TokenBucket>,
    parents: BTreeMap<String, TokenBucket>,
}

impl SpawnPolicy {
    /// A policy with full buckets.
    pub fn new(limits: SpawnLimits) -> Self {
        SpawnPolicy {
            limits,
            global: None,
            parents: BTreeMap::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SpawnLimits {
        &self.limits
    }

    /// Parent buckets currently remembered.
    pub fn tracked_parents(&self) -> usize {
        self.parents.len()
    }

    /// Forgets parent buckets that have refilled completely (they equal a new
    /// bucket, so nothing is lost).
    pub fn prune(&mut self, now_ms: u64) {
        self.parents.retain(|_, b| {
            b.refill(now_ms);
            !b.is_full()
        });
    }

    /// Admits or refuses one spawn; on admission the rate tokens are taken.
    pub fn can_spawn_agent(
        &mut self,
        req: &SpawnRequest,
        pool: &PoolView,
        now_ms: u64,
    ) -> Result<(), SpawnRefusal> {
        let l = &self.limits;
        if pool.total >= l.pool_max {
            return refuse(
                SpawnLimit::PoolMax,
                format!("pool already has {} of {} agents", pool.total, l.pool_max),
            );
        }
        let of_template = pool.per_template.get(&req.template).copied().unwrap_or(0);
        if of_template >= req.template_max {
            return refuse(
                SpawnLimit::TemplateMax,
                format!(
                    "template {} already has {of_template} of {} agents",
                    req.template, req.template_max
                ),
            );
        }
        // A limit of 1 turns the check off; otherwise a NaN reading refuses
        // (unknown headroom is no headroom).
        let over = |used: f64, max: f64| max < 1.0 && (used.is_nan() || used >= max);
        if over(req.node.cpu_used, l.node_cpu_max) {
            return refuse(
                SpawnLimit::NodeCpu,
                format!(
                    "node CPU at {:.0}%, limit {:.0}%",
                    req.node.cpu_used * 100.0,
                    l.node_cpu_max * 100.0
                ),
            );
        }
        if over(req.node.mem_used, l.node_mem_max) {
            return refuse(
                SpawnLimit::NodeMemory,
                format!(
                    "node memory at {:.0}%, limit {:.0}%",
                    req.node.mem_used * 100.0,
                    l.node_mem_max * 100.0
                ),
            );
        }
        let parent = req.self_spawn_parent();
        if let Some(p) = parent {
            if req.depth > l.max_depth {
                return refuse(
                    SpawnLimit::Depth,
                    format!(
                        "agent spawned by {p} would be at depth {}, limit {}",
                        req.depth, l.max_depth
                    ),
                );
            }
            if pool.children_of_parent >= l.children_per_parent {
                return refuse(
                    SpawnLimit::Children,
                    format!(
                        "parent agent {p} already has {} of {} children",
                        pool.children_of_parent, l.children_per_parent
                    ),
                );
            }
        }
        if let Some(&quota) = l.tenant_quota.get(&req.tenant) {
            let used = pool.per_tenant.get(&req.tenant).copied().unwrap_or(0);
            if used >= quota {
                return refuse(
                    SpawnLimit::TenantQuota,
                    format!("tenant {} already has {used} of {quota} agents", req.tenant),
                );
            }
        }
        let (parent_rate, global_rate) = (l.parent_rate.clone(), l.global_rate.clone());
        if self.parents.len() > PRUNE_AT {
            self.prune(now_ms);
        }
        if let Some(p) = parent {
            let bucket = self
                .parents
                .entry(p.to_string())
                .or_insert_with(|| TokenBucket::new(&parent_rate, now_ms));
            if !bucket.available(now_ms) {
                return refuse(
                    SpawnLimit::ParentRate,
                    format!(
                        "parent agent {p} may spawn {} at once and {}/s; try again shortly",
                        parent_rate.burst, parent_rate.per_sec
                    ),
                );
            }
        }
        let global = self
            .global
            .get_or_insert_with(|| TokenBucket::new(&global_rate, now_ms));
        if !global.try_take(now_ms) {
            return refuse(
                SpawnLimit::GlobalRate,
                format!(
                    "the pool may spawn {} at once and {}/s; try again shortly",
                    global_rate.burst, global_rate.per_sec
                ),
            );
        }
        if let Some(bucket) = parent.and_then(|p| self.parents.get_mut(p)) {
            bucket.try_take(now_ms);
        }
        Ok(())
    }
}

//! The in-memory agent index: agents in a slab, indexed by id, by skill and by
//! "has a free slot", so a decision examines only agents that could fit.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::AgentSlots;
use crate::ids::AgentId;
use crate::routing::profile::AgentProfile;

/// Profiles of removed agents kept for their return (oldest forgotten first).
const MAX_RETIRED: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct AgentTable {
    slab: Vec<Option<AgentSlots>>,
    by_id: BTreeMap<AgentId, usize>,
    vacant: Vec<usize>,
    /// Skill name → slab indices (ascending) of agents advertising it.
    by_skill: HashMap<String, Vec<usize>>,
    /// Slab indices of agents that are not draining and have a free slot.
    free: BTreeSet<usize>,
    /// Highest cost among agents, for normalising the cost factor.
    max_cost: f64,
    /// Learned profiles of agents that left, so a reconnecting agent keeps
    /// its history and, above all, its breaker state.
    retired: BTreeMap<AgentId, AgentProfile>,
    retired_order: VecDeque<AgentId>,
}

impl AgentTable {
    pub(crate) fn upsert(&mut self, mut agent: AgentSlots) {
        // One entry per skill name, at its highest advertised level.
        let mut skills: Vec<crate::skill::Skill> = Vec::with_capacity(agent.skills.len());
        for s in agent.skills.drain(..) {
            match skills.iter_mut().find(|k| k.name == s.name) {
                Some(k) => k.level = k.level.max(s.level),
                None => skills.push(s),
            }
        }
        agent.skills = skills;
        // The profile is learned here; a re-registration (or a return after
        // leaving) keeps it unless the caller supplies one (e.g. restored
        // after a restart).
        let old = self
            .detach(agent.id)
            .map(|a| a.profile)
            .or_else(|| self.retired.remove(&agent.id));
        if let Some(old) = old
            && agent.profile.is_empty()
        {
            agent.profile = old;
        }
        let idx = match self.vacant.pop() {
            Some(i) => i,
            None => {
                self.slab.push(None);
                self.slab.len() - 1
            }
        };
        for s in &agent.skills {
            let list = self.by_skill.entry(s.name.clone()).or_default();
            if let Err(pos) = list.binary_search(&idx) {
                list.insert(pos, idx);
            }
        }
        self.by_id.insert(agent.id, idx);
        self.max_cost = self.max_cost.max(agent.cost);
        self.slab[idx] = Some(agent);
        self.refresh(idx);
    }

    /// Forgets an agent, remembering its profile for a while.
    pub(crate) fn remove(&mut self, id: AgentId) -> Option<AgentSlots> {
        let agent = self.detach(id)?;
        if !agent.profile.is_empty() {
            if self.retired.insert(id, agent.profile.clone()).is_none() {
                self.retired_order.push_back(id);
            }
            while self.retired.len() > MAX_RETIRED {
                match self.retired_order.pop_front() {
                    Some(old) => {
                        self.retired.remove(&old);
                    }
                    None => break,
                }
            }
        }
        Some(agent)
    }

    fn detach(&mut self, id: AgentId) -> Option<AgentSlots> {
        let idx = self.by_id.remove(&id)?;
        let agent = self.slab[idx].take()?;
        for s in &agent.skills {
            if let Some(list) = self.by_skill.get_mut(&s.name) {
                list.retain(|&i| i != idx);
                if list.is_empty() {
                    self.by_skill.remove(&s.name);
                }
            }
        }
        self.free.remove(&idx);
        self.vacant.push(idx);
        if agent.cost >= self.max_cost {
            self.max_cost = self.iter().map(|a| a.cost).fold(0.0, f64::max);
        }
        Some(agent)
    }

    /// Re-derives the free-slot index entry of one agent.
    pub(crate) fn refresh(&mut self, idx: usize) {
        match self.slab.get(idx).and_then(Option::as_ref) {
            Some(a) if a.has_free_slot() => {
                self.free.insert(idx);
            }
            _ => {
                self.free.remove(&idx);
            }
        }
    }

    pub(crate) fn idx(&self, id: AgentId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    pub(crate) fn at(&self, idx: usize) -> Option<&AgentSlots> {
        self.slab.get(idx).and_then(Option::as_ref)
    }

    pub(crate) fn at_mut(&mut self, idx: usize) -> Option<&mut AgentSlots> {
        self.slab.get_mut(idx).and_then(Option::as_mut)
    }

    pub(crate) fn get(&self, id: AgentId) -> Option<&AgentSlots> {
        self.at(self.idx(id)?)
    }

    /// Changes `used` by `delta` and keeps the free index right.
    pub(crate) fn add_used(&mut self, idx: usize, delta: i64) {
        if let Some(a) = self.at_mut(idx) {
            a.used = (a.used as i64 + delta).clamp(0, u32::MAX as i64) as u32;
        }
        self.refresh(idx);
    }

    /// Agents in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &AgentSlots> {
        self.by_id.values().filter_map(|&i| self.at(i))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn with_skill(&self, name: &str) -> Option<&[usize]> {
        self.by_skill.get(name).map(Vec::as_slice)
    }

    pub(crate) fn free(&self) -> &BTreeSet<usize> {
        &self.free
    }

    /// All occupied slab indices, ascending.
    pub(crate) fn all(&self) -> impl Iterator<Item = usize> + '_ {
        self.slab
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_some())
            .map(|(i, _)| i)
    }

    pub(crate) fn max_cost(&self) -> f64 {
        self.max_cost
    }
}

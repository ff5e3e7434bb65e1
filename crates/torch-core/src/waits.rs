//! The one wait-for graph: who waits for whom, over every kind of wait.
//!
//! A node is a task, an operator (an API token's name) or a help request.
//! An edge `from → to` says `from` cannot go on until `to` does something:
//! release a lock ([`WaitOn::Lock`]), end ([`WaitOn::Task`]), or be
//! accepted ([`WaitOn::Help`]). The graph is rebuilt by its owner from
//! what is waiting right now; [`WaitGraph::would_close`] is asked at the
//! start of every wait, *before* the wait is added, and names the cycle the
//! wait would close, edge by edge. A help request has no edges of its own:
//! any capable peer may accept it (an OR-wait), so no cycle runs through it.
//!
//! Pure: no clock, no I/O. Property-tested against a brute-force closure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::TaskId;

#[cfg(test)]
mod proptests;

/// A node of the wait-for graph: whoever can wait or be waited for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A task (from inside it, with its task token).
    Task(TaskId),
    /// An operator, by the name of its API token.
    Operator(String),
    /// A help request, by id.
    Help(String),
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Task(t) => write!(f, "task:{t}"),
            Node::Operator(n) => write!(f, "operator:{n}"),
            Node::Help(h) => write!(f, "help:{h}"),
        }
    }
}

/// A node name that is not `task:ID`, `operator:NAME` or `help:ID`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a wait-graph node (task:ID, operator:NAME or help:ID)")]
pub struct BadNode(pub String);

impl FromStr for Node {
    type Err = BadNode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadNode(s.to_string());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "task" => rest.parse().map(Node::Task).map_err(|_| bad()),
            "operator" => Ok(Node::Operator(rest.to_string())),
            "help" if !rest.is_empty() => Ok(Node::Help(rest.to_string())),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a wait is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitOn {
    /// A lock (or path reservation) the target holds or is queued for ahead.
    Lock {
        /// The lock's name (for a path reservation, its glob).
        lock: String,
    },
    /// The target task to end (`torch wait`, `delegate --wait`).
    Task,
    /// The help request to be accepted (`help request --wait`).
    Help,
}

/// One edge: `from` waits for `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WaitEdge {
    /// Who waits.
    pub from: Node,
    /// For whom.
    pub to: Node,
    /// What for.
    #[serde(flatten)]
    pub on: WaitOn,
}

impl fmt::Display for WaitEdge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.on {
            WaitOn::Lock { lock } => write!(
                f,
                "{} waits for lock {lock:?} held by {}",
                self.from, self.to
            ),
            WaitOn::Task => write!(f, "{} waits for {} to end", self.from, self.to),
            WaitOn::Help => write!(f, "{} waits for {} to be accepted", self.from, self.to),
        }
    }
}

/// The wait-for graph at one moment.
#[derive(Clone, Debug, Default)]
pub struct WaitGraph {
    out: HashMap<Node, Vec<WaitEdge>>,
    edges: usize,
}

impl WaitGraph {
    /// An empty graph.
    pub fn new() -> Self {
        WaitGraph::default()
    }

    /// A graph of these edges.
    pub fn of(edges: impl IntoIterator<Item = WaitEdge>) -> Self {
        let mut g = WaitGraph::new();
        for e in edges {
            g.add(e);
        }
        g
    }

    /// Adds an edge (duplicates are kept once).
    pub fn add(&mut self, e: WaitEdge) {
        let list = self.out.entry(e.from.clone()).or_default();
        if !list.contains(&e) {
            list.push(e);
            self.edges += 1;
        }
    }

    /// How many edges.
    pub fn len(&self) -> usize {
        self.edges
    }

    /// True without edges.
    pub fn is_empty(&self) -> bool {
        self.edges == 0
    }

    /// Every edge, grouped by waiter.
    pub fn edges(&self) -> impl Iterator<Item = &WaitEdge> {
        self.out.values().flatten()
    }

    /// A shortest path of edges from `from` to `to` (empty when they are
    /// the same node), or `None` when `to` cannot be reached.
    pub fn path(&self, from: &Node, to: &Node) -> Option<Vec<WaitEdge>> {
        if from == to {
            return Some(Vec::new());
        }
        let mut came: HashMap<&Node, &WaitEdge> = HashMap::new();
        let mut seen: HashSet<&Node> = HashSet::from([from]);
        let mut todo: VecDeque<&Node> = VecDeque::from([from]);
        while let Some(n) = todo.pop_front() {
            for e in self.out.get(n).into_iter().flatten() {
                if !seen.insert(&e.to) {
                    continue;
                }
                came.insert(&e.to, e);
                if e.to == *to {
                    let mut path = Vec::new();
                    let mut at = &e.to;
                    while let Some(step) = came.get(at) {
                        path.push((*step).clone());
                        at = &step.from;
                    }
                    path.reverse();
                    return Some(path);
                }
                todo.push_back(&e.to);
            }
        }
        None
    }

    /// The cycle that adding `new` would close, or `None`: for the first new
    /// edge `w → t` such that `t` reaches `w`, that edge followed by the path
    /// back. The new edges need not share a waiter; a self-edge is a cycle
    /// of one.
    pub fn would_close(&self, new: &[WaitEdge]) -> Option<Vec<WaitEdge>> {
        // Later new edges may complete a path for an earlier one, so look in
        // the graph with all of them.
        let mut with = self.clone();
        for e in new {
            with.add(e.clone());
        }
        new.iter().find_map(|e| {
            let back = with.path(&e.to, &e.from)?;
            let mut cycle = vec![e.clone()];
            cycle.extend(back);
            Some(cycle)
        })
    }
}

/// A wait refused because it would close a cycle: every edge of the cycle,
/// starting with the refused wait's own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("deadlock: {}", describe(.cycle))]
pub struct Deadlock {
    /// The cycle's edges, in order; the first is the wait that was refused.
    pub cycle: Vec<WaitEdge>,
}

fn describe(cycle: &[WaitEdge]) -> String {
    cycle
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

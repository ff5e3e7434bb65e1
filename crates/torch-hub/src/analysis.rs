//! Task analysis and the history it learns from: one owner for both.
//!
//! Submissions are analysed here (skills inferred through the taxonomy,
//! complexity from the history of similar tasks, whether a team is
//! needed); the engine reports each attempt's outcome here, and the
//! history key of every task stored since the hub started is kept here
//! until its task ends. Nothing else touches the history: handlers and the
//! engine call these methods (a short lock, never held across `.await`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use torch_core::routing::{History, HistoryKey, TaskAnalysis, TaxonomyIndex, analyze_with};
use torch_core::{Skill, TaskId, TaskSpec};

/// What the analysis has learned and is tracking.
#[derive(Default)]
struct Learned {
    /// Outcomes of similar tasks.
    history: History,
    /// History keys of tasks whose outcome is still to come.
    keys: HashMap<TaskId, HistoryKey>,
}

/// Analyses tasks and learns from their outcomes (see the module docs).
pub(crate) struct Analyzer {
    taxonomy: TaxonomyIndex,
    learned: Mutex<Learned>,
}

impl Analyzer {
    /// An analyser with `taxonomy` and an empty history.
    pub(crate) fn new(taxonomy: TaxonomyIndex) -> Self {
        Analyzer {
            taxonomy,
            learned: Mutex::new(Learned::default()),
        }
    }

    /// The compiled taxonomy (skill synonyms), for normalising skill names.
    pub(crate) fn taxonomy(&self) -> &TaxonomyIndex {
        &self.taxonomy
    }

    fn lock(&self) -> MutexGuard<'_, Learned> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.learned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Analyses `specs` against the history and the connected agents' skills.
    pub(crate) fn analyze<'a>(
        &self,
        specs: impl IntoIterator<Item = &'a TaskSpec>,
        agents: &[Vec<Skill>],
    ) -> Vec<TaskAnalysis> {
        let learned = self.lock();
        specs
            .into_iter()
            .map(|spec| analyze_with(spec, &self.taxonomy, &learned.history, agents))
            .collect()
    }

    /// Tasks now stored, with the history key their outcome goes to.
    pub(crate) fn track(&self, keys: impl IntoIterator<Item = (TaskId, HistoryKey)>) {
        self.lock().keys.extend(keys);
    }

    /// An attempt of `task` ended (`success`, after `duration_ms`).
    pub(crate) fn record(&self, task: TaskId, success: bool, duration_ms: u64) {
        let mut learned = self.lock();
        let Learned { history, keys } = &mut *learned;
        if let Some(key) = keys.get(&task) {
            history.record(key, success, duration_ms);
        }
    }

    /// `tasks` will not run again: their keys are dropped.
    pub(crate) fn forget(&self, tasks: &[TaskId]) {
        if tasks.is_empty() {
            return;
        }
        let mut learned = self.lock();
        for t in tasks {
            learned.keys.remove(t);
        }
    }
}

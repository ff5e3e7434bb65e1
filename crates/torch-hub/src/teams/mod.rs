//! Teams (DESIGN §3): a task that asks for a team (its `team` spec, or an
//! analysis saying no single agent covers it) gets members that cover its
//! roles at the least total cost, a leader that runs the task, and one
//! subtask per member whose role has one.
//!
//! - [`form`]: formation when the task is submitted.
//! - `run`: the manager on the leader — pins, progress, replacement of
//!   members that left, a new leader (term) when the leader left, the
//!   merge queue, disbanding.
//! - `book`: every team's record, folded from the team events.
//! - `view`: teams as the API shows them.

mod book;
pub(crate) mod form;
mod merge;
mod run;
mod view;

pub(crate) use book::TeamBook;
pub(crate) use run::run;
pub(crate) use view::{team_of_agent, team_view, teams_view};

use torch_core::TaskId;
use torch_store::{NewTask, Store};
use tracing::warn;

use crate::engine::Command;
use crate::hub::Shared;

/// An operator touched `task` (retry, cancel): for the autonomy metrics
/// that task, and when it belongs to a team every task of that team, did
/// not complete without intervention.
pub(crate) async fn touched<S: Store>(shared: &Shared<S>, task: TaskId) {
    let now = shared.now_ms();
    shared.autonomy.touched(task, now);
    if let Ok(Some(team)) = view::team_view(shared, task).await {
        shared.autonomy.touched(team.id, now);
        for s in team.subtasks {
            shared.autonomy.touched(s.id, now);
        }
    }
}

/// Stores tasks the hub creates itself (a moved subtask, a merge
/// follow-up) and hands the ready ones to the engine; returns their ids.
pub(crate) async fn submit_internal<S: Store>(
    shared: &Shared<S>,
    tasks: Vec<NewTask>,
) -> Vec<TaskId> {
    let now = shared.now_ms();
    match shared.store.submit(tasks, now).await {
        Ok(results) => {
            shared.bump();
            let fresh = results.iter().filter(|r| !r.duplicate).count();
            shared.add_backlog(fresh as i64);
            shared.metrics.counters.submitted(fresh as u64);
            let ready: Vec<_> = results.iter().filter_map(|r| r.ready.clone()).collect();
            if !ready.is_empty() {
                shared.engine.send(Command::Ready(ready)).await;
            }
            results.into_iter().map(|r| r.id).collect()
        }
        Err(e) => {
            warn!(error = %e, "teams: could not store a task");
            Vec::new()
        }
    }
}

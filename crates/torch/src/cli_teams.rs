//! Arguments of `torch teams` (operators) and `torch team` (inside a task).

use clap::{Args, Subcommand};

use crate::cli::{HubArgs, OutArgs, TaskHubArgs};

/// `torch teams …`.
#[derive(Debug, Subcommand)]
pub(crate) enum TeamsCmd {
    /// Teams: active ones first, then recently disbanded ones.
    List {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
    },
    /// One team: members and roles, leader and term, progress, subtasks,
    /// the merge queue, why these members, and what happened since.
    Show {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// The team's id (its task's id), or the id of one of its subtasks.
        id: String,
    },
}

/// `torch team …` (inside a task of a team: its task or a subtask).
#[derive(Debug, Subcommand)]
pub(crate) enum TeamCmd {
    /// This task's team: leader, term, progress, subtasks, merge queue.
    Status(TeamArgs),
    /// This task's team's members: agent, role, state, subtask.
    Members(TeamArgs),
}

/// Options of `torch team status|members`.
#[derive(Debug, Args)]
pub(crate) struct TeamArgs {
    #[command(flatten)]
    pub(crate) hub: TaskHubArgs,
    #[command(flatten)]
    pub(crate) out: OutArgs,
    /// The task whose team to show (default: this task, TORCH_TASK_ID).
    #[arg(long)]
    pub(crate) task: Option<String>,
}

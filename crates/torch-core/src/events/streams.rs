//! The seed's stream names. Every state change is an event on one of these.

/// Submitted and ready tasks.
pub const TASKS_QUEUE: &str = "nova.torch.tasks.queue";
/// Assigned, started and progressing tasks.
pub const TASKS_ACTIVE: &str = "nova.torch.tasks.active";
/// Succeeded tasks.
pub const TASKS_COMPLETED: &str = "nova.torch.tasks.completed";
/// Failed attempts, dead and cancelled tasks, refused stale reports.
pub const TASKS_FAILED: &str = "nova.torch.tasks.failed";
/// Agents joining (and, later, spawn requests).
pub const AGENTS_SPAWNING: &str = "nova.torch.agents.spawning";
/// Agents leaving.
pub const AGENTS_TERMINATING: &str = "nova.torch.agents.terminating";
/// Auto-scaling decisions.
pub const AGENTS_SCALING: &str = "nova.torch.agents.scaling";
/// Agent-to-agent messages.
pub const COLLAB_PEER: &str = "nova.torch.collaboration.peer";
/// Team coordination.
pub const COLLAB_TEAM: &str = "nova.torch.collaboration.team";
/// Help requests.
pub const COLLAB_HELP: &str = "nova.torch.collaboration.help";

/// Alerts firing and resolving (the hub's alert rules).
pub const ALERTS: &str = "nova.torch.alerts";

/// Hand-offs between hubs sharing a store: submissions a follower wrote
/// while it could not reach the leader (`tasks.handed_off`). The leader
/// reads it through a consumer group. Not one of [`ALL_STREAMS`]: it says
/// nothing about tasks that the task streams do not.
pub const HUBS_HANDOFF: &str = "nova.torch.hubs.handoff";

/// The streams of the task events.
pub const TASK_STREAMS: [&str; 4] = [TASKS_QUEUE, TASKS_ACTIVE, TASKS_COMPLETED, TASKS_FAILED];

/// All stream names.
pub const ALL_STREAMS: [&str; 11] = [
    TASKS_QUEUE,
    TASKS_ACTIVE,
    TASKS_COMPLETED,
    TASKS_FAILED,
    AGENTS_SPAWNING,
    AGENTS_TERMINATING,
    AGENTS_SCALING,
    COLLAB_PEER,
    COLLAB_TEAM,
    COLLAB_HELP,
    ALERTS,
];

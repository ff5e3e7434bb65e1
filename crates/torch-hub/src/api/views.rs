//! Store records → wire views.

use torch_api::rest::{LeaseView, ProgressView, TaskView};
use torch_store::TaskRecord;

pub(crate) fn task_view(r: TaskRecord) -> TaskView {
    let lease = match (r.state.is_leased(), r.agent) {
        (true, Some(agent_id)) => Some(LeaseView {
            agent_id,
            fence: r.fence,
        }),
        _ => None,
    };
    let live = r.liveness.unwrap_or_default();
    TaskView {
        activity: live.activity,
        // Waiting is about the running attempt only.
        waiting: live.waiting.filter(|_| r.state.is_leased()),
        id: r.id,
        seq: r.seq,
        name: r.name,
        state: r.state,
        priority: r.spec.priority,
        attempt: r.attempt,
        max_retries: r.spec.max_retries(),
        depends_on: r.deps,
        lease,
        not_before_ms: (r.not_before_ms > 0 && r.state == torch_core::TaskState::Queued)
            .then_some(r.not_before_ms),
        progress: r
            .progress
            .map(|(percent, message, updated_ms)| ProgressView {
                percent,
                message,
                updated_ms,
            }),
        usage: r.outcome.as_ref().and_then(|o| o.evidence.usage.clone()),
        team: None,
        outcome: r.outcome,
        reason: r.reason,
        last_agent_id: r.last_agent,
        created_ms: r.created_ms,
        updated_ms: r.updated_ms,
        labels: r.spec.labels.clone(),
        spec: r.spec,
        analysis: r
            .analysis
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok()),
        explanation: r
            .explanation
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok()),
        failed_agents: r.failed_agents,
        parent: r.parent,
    }
}

//! Help requests: who a request is offered to, and the sweep that closes
//! the ones nobody accepted in time — expired, or escalated to a helper
//! spawned from a template that covers the skill (through the lifecycle
//! manager's spawn path, so the spawn limits apply), recorded as
//! `help.escalated`.
//!
//! The requests themselves live in the store ([`torch_store::HelpStore`]):
//! creating and accepting them are single store operations made by the
//! handlers; the accept is atomic there (the first wins). The sweep runs on
//! the leader only.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use torch_api::rest::{AgentView, SpawnRequest};
use torch_core::events::coord::{HelpEscalated, HelpExpired};
use torch_core::waits::Node;
use torch_core::{AgentId, EventData};
use torch_store::{HelpRecord, Store, help_state};
use tracing::{info, warn};

use crate::hub::Shared;
use crate::lifecycle::{LifeCmd, Origin};

/// How often open requests are looked at for expiry.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The peers a request for `skill` at `level` is offered to: connected,
/// not draining, with the skill at that level, never the requester's own
/// agent; idle ones first, then the least busy, then the most skilled.
pub(crate) fn offer(
    agents: &[AgentView],
    skill: &str,
    level: f64,
    own: Option<AgentId>,
) -> Vec<AgentId> {
    let mut fit: Vec<(&AgentView, f64)> = agents
        .iter()
        .filter(|a| Some(a.id) != own && a.state != "disconnected" && a.state != "draining")
        .filter_map(|a| {
            a.skills
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(skill) && s.level >= level)
                .map(|s| (a, s.level))
        })
        .collect();
    fit.sort_by(|(a, la), (b, lb)| {
        (a.running > 0)
            .cmp(&(b.running > 0))
            .then(a.running.cmp(&b.running))
            .then(lb.total_cmp(la))
            .then(a.id.cmp(&b.id))
    });
    fit.into_iter().map(|(a, _)| a.id).collect()
}

/// Runs the sweep until `stop`.
pub(crate) async fn run<S: Store>(shared: Arc<Shared<S>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                if shared.is_leader() {
                    sweep(&shared).await;
                }
            }
        }
    }
}

async fn sweep<S: Store>(shared: &Shared<S>) {
    let now = shared.now_ms();
    let open = match shared.store.help_list(true, 1000).await {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, "could not list open help requests");
            return;
        }
    };
    for h in open.into_iter().filter(|h| h.expires_ms <= now) {
        close_unanswered(shared, h).await;
    }
}

/// The template that covers `skill` at `level`, if any (the first by name).
fn template_for<S>(shared: &Shared<S>, skill: &str, level: f64) -> Option<String> {
    let mut names: Vec<&str> = shared
        .cfg
        .lifecycle
        .templates
        .iter()
        .filter(|t| {
            t.parsed_skills()
                .iter()
                .any(|s| s.name.eq_ignore_ascii_case(skill) && s.level >= level)
        })
        .map(|t| t.name.as_str())
        .collect();
    names.sort_unstable();
    names.first().map(|n| n.to_string())
}

async fn close_unanswered<S: Store>(shared: &Shared<S>, h: HelpRecord) {
    let requester: Node = match h.requester.parse() {
        Ok(n) => n,
        Err(e) => {
            warn!(id = %h.id, error = %e, "help request with an unreadable requester");
            Node::Operator(h.requester.clone())
        }
    };
    let task = super::task_of(&requester);
    let (state, helper, reason) = match template_for(shared, &h.skill, h.level) {
        None => (
            help_state::EXPIRED,
            None,
            format!("no template has skill {} at level {}", h.skill, h.level),
        ),
        Some(template) => {
            let origin = match (task, h.requester_agent) {
                (Some(task), Some(agent)) => {
                    let tenant = match shared.store.get_task(task).await {
                        Ok(Some(t)) => t.spec.tenant.unwrap_or_else(|| "default".into()),
                        _ => "default".into(),
                    };
                    Origin::Task {
                        task,
                        agent,
                        tenant,
                    }
                }
                _ => Origin::Operator,
            };
            let req = SpawnRequest {
                template: template.clone(),
                inherit: None,
                outlive_parent: None,
            };
            match shared
                .life
                .ask(|reply| LifeCmd::Spawn { req, origin, reply })
                .await
            {
                None => return,
                Some(Ok(resp)) => {
                    if close(
                        shared,
                        &h,
                        help_state::ESCALATED,
                        Some(resp.agent_id.to_string()),
                    )
                    .await
                    {
                        info!(id = %h.id, skill = %h.skill, helper = %resp.agent_id, "help request escalated to a spawned helper");
                        shared
                            .event(
                                Some(resp.agent_id),
                                task,
                                EventData::HelpEscalated(HelpEscalated {
                                    helper: resp.agent_id,
                                    id: h.id.clone(),
                                    requester,
                                    skill: h.skill.clone(),
                                    template,
                                }),
                            )
                            .await;
                    }
                    return;
                }
                Some(Err(e)) => (
                    help_state::EXPIRED,
                    None,
                    format!("spawning a {template} helper: {e}"),
                ),
            }
        }
    };
    if close(shared, &h, state, helper).await {
        info!(id = %h.id, skill = %h.skill, reason = %reason, "help request expired");
        shared
            .event(
                None,
                task,
                EventData::HelpExpired(HelpExpired {
                    id: h.id.clone(),
                    reason,
                    requester,
                    skill: h.skill.clone(),
                }),
            )
            .await;
    }
}

async fn close<S: Store>(
    shared: &Shared<S>,
    h: &HelpRecord,
    state: &str,
    helper: Option<String>,
) -> bool {
    match shared
        .store
        .help_close(h.id.clone(), state.to_string(), helper, shared.now_ms())
        .await
    {
        Ok(done) => done,
        Err(e) => {
            warn!(id = %h.id, error = %e, "could not close a help request");
            false
        }
    }
}

//! The team book: every team's record, folded from the team events in the
//! store. The store's events are the truth; the book is a cache that
//! catches up on them (by event id) before it is read, so every hub — the
//! leader that writes the events and followers that only read them — sees
//! the same teams, and a new leader rebuilds them by reading.

use std::collections::BTreeMap;

use serde_json::Value;
use torch_api::rest::{MergeView, TeamHistoryItem};
use torch_core::events::streams::COLLAB_TEAM;
use torch_core::events::team::TeamMember;
use torch_core::{AgentId, EventData, EventKind, TaskId};
use torch_store::{EventRecord, Store, StoreError};

/// History items kept per team, at most (the oldest go first).
const HISTORY_KEPT: usize = 200;
/// Disbanded teams kept, at most (the oldest go first).
const DISBANDED_KEPT: usize = 500;
/// Events read per catch-up page.
const PAGE: usize = 1000;

/// One team's record.
#[derive(Clone, Debug)]
pub(crate) struct Team {
    /// Its task (the team's id).
    pub(crate) task: TaskId,
    /// When it was formed (unix ms).
    pub(crate) formed_ms: u64,
    /// The leader's term.
    pub(crate) term: u64,
    /// The leading member.
    pub(crate) leader: AgentId,
    /// Why it leads.
    pub(crate) leader_reason: String,
    /// The current members.
    pub(crate) members: Vec<TeamMember>,
    /// Every agent spawned for the team (stopped when it disbands).
    pub(crate) spawned: Vec<AgentId>,
    /// Subtasks moved to a new member (their copies count instead).
    pub(crate) replaced: Vec<TaskId>,
    /// The repository, if any.
    pub(crate) repository: Option<String>,
    /// The integration branch, with a repository.
    pub(crate) integration_branch: Option<String>,
    /// The formation's explanation.
    pub(crate) explanation: Value,
    /// Progress as last recorded.
    pub(crate) progress: f64,
    /// Subtasks that ended, as last recorded.
    pub(crate) done: u32,
    /// Subtasks in all, as last recorded.
    pub(crate) total: u32,
    /// The merge queue.
    pub(crate) merges: Vec<MergeView>,
    /// What happened.
    pub(crate) history: Vec<TeamHistoryItem>,
    /// When it disbanded and the task's final state.
    pub(crate) disbanded: Option<(u64, String)>,
}

impl Team {
    /// The role whose member was given `subtask`, if any.
    pub(crate) fn role_of_subtask(&self, subtask: TaskId) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.subtask == Some(subtask))
            .map(|m| m.role.as_str())
    }

    fn note(&mut self, at_ms: u64, kind: EventKind, text: String) {
        if self.history.len() >= HISTORY_KEPT {
            self.history.remove(0);
        }
        self.history.push(TeamHistoryItem {
            at_ms,
            kind: kind.name().to_string(),
            text,
        });
    }

    fn merge_entry(&mut self, subtask: TaskId, branch: &str) -> &mut MergeView {
        let at = match self
            .merges
            .iter()
            .position(|m| m.subtask == subtask && m.branch == branch)
        {
            Some(i) => i,
            None => {
                self.merges.push(MergeView {
                    subtask,
                    branch: branch.to_string(),
                    state: "queued".into(),
                    commit: None,
                    paths: Vec::new(),
                    follow_up: None,
                });
                self.merges.len() - 1
            }
        };
        &mut self.merges[at]
    }
}

/// Every team, the id of the last event folded in, and when the store
/// was last read.
#[derive(Default)]
struct Folded {
    teams: BTreeMap<TaskId, Team>,
    last_id: u64,
    read_at: Option<std::time::Instant>,
}

/// The team book; see the module docs.
#[derive(Default)]
pub(crate) struct TeamBook {
    inner: tokio::sync::Mutex<Folded>,
}

impl TeamBook {
    /// Folds the team events appended since the last catch-up, then returns
    /// what `read` makes of the teams.
    pub(crate) async fn read<S: Store, T>(
        &self,
        store: &S,
        read: impl FnOnce(&BTreeMap<TaskId, Team>) -> T,
    ) -> Result<T, StoreError> {
        self.read_within(store, std::time::Duration::ZERO, read)
            .await
    }

    /// As [`TeamBook::read`], without reading the store when it was read
    /// less than `fresh` ago (for hot paths that may lag a little).
    pub(crate) async fn read_within<S: Store, T>(
        &self,
        store: &S,
        fresh: std::time::Duration,
        read: impl FnOnce(&BTreeMap<TaskId, Team>) -> T,
    ) -> Result<T, StoreError> {
        let mut f = self.inner.lock().await;
        if f.read_at.is_some_and(|at| at.elapsed() < fresh) {
            return Ok(read(&f.teams));
        }
        f.read_at = Some(std::time::Instant::now());
        loop {
            let page = store
                .events(f.last_id, vec![COLLAB_TEAM.to_string()], PAGE)
                .await?;
            let n = page.len();
            for ev in page {
                f.last_id = ev.id;
                apply(&mut f.teams, &ev);
            }
            if n < PAGE {
                break;
            }
        }
        Ok(read(&f.teams))
    }
}

/// Folds one event into the teams (events of other kinds are skipped).
fn apply(teams: &mut BTreeMap<TaskId, Team>, ev: &EventRecord) {
    let Ok(kind) = ev.kind.parse::<EventKind>() else {
        return;
    };
    let Ok(value) = serde_json::from_str::<Value>(&ev.data) else {
        return;
    };
    let Some(data) = EventData::read(kind, &value) else {
        return;
    };
    let at = ev.at_ms;
    match data {
        EventData::TeamFormed(d) => {
            let spawned = d
                .members
                .iter()
                .filter(|m| m.template.is_some())
                .map(|m| m.agent_id)
                .collect();
            let names: Vec<String> = d
                .members
                .iter()
                .map(|m| format!("{} ({})", m.name, m.role))
                .collect();
            let mut team = Team {
                task: d.task,
                formed_ms: at,
                term: d.term,
                leader: d.leader,
                leader_reason: d.leader_reason.clone(),
                members: d.members,
                spawned,
                replaced: Vec::new(),
                repository: d.repository,
                integration_branch: d.integration_branch,
                explanation: d.explanation,
                progress: 0.0,
                done: 0,
                total: 0,
                merges: Vec::new(),
                history: Vec::new(),
                disbanded: None,
            };
            team.note(at, kind, format!("formed: {}", names.join(", ")));
            teams.insert(d.task, team);
            if teams.values().filter(|t| t.disbanded.is_some()).count() > DISBANDED_KEPT
                && let Some(old) = teams
                    .values()
                    .filter(|t| t.disbanded.is_some())
                    .min_by_key(|t| t.formed_ms)
                    .map(|t| t.task)
            {
                teams.remove(&old);
            }
        }
        EventData::TeamLeaderChanged(d) => {
            if let Some(t) = teams.get_mut(&d.task) {
                t.term = d.term;
                t.leader = d.leader;
                t.leader_reason = d.reason.clone();
                t.note(
                    at,
                    kind,
                    format!(
                        "term {}: {} leads ({}; was {})",
                        d.term, d.leader, d.reason, d.previous
                    ),
                );
            }
        }
        EventData::TeamMemberReplaced(d) => {
            if let Some(t) = teams.get_mut(&d.task) {
                if d.member.template.is_some() {
                    t.spawned.push(d.member.agent_id);
                }
                t.replaced.extend(d.replaced_subtask);
                let text = format!(
                    "{} replaced {} as {} ({})",
                    d.member.name, d.previous, d.member.role, d.reason
                );
                match t.members.iter_mut().find(|m| m.agent_id == d.previous) {
                    Some(m) => *m = d.member,
                    None => t.members.push(d.member),
                }
                t.note(at, kind, text);
            }
        }
        EventData::TeamMemberLost(d) => {
            if let Some(t) = teams.get_mut(&d.task) {
                t.members.retain(|m| m.agent_id != d.agent_id);
                t.note(
                    at,
                    kind,
                    format!("lost {} ({}): {}", d.agent_id, d.role, d.reason),
                );
            }
        }
        EventData::TeamProgress(d) => {
            if let Some(t) = teams.get_mut(&d.task) {
                t.progress = d.progress;
                t.done = d.done;
                t.total = d.total;
            }
        }
        EventData::TeamDisbanded(d) => {
            if let Some(t) = teams.get_mut(&d.task) {
                t.disbanded = Some((at, d.state.clone()));
                t.note(
                    at,
                    kind,
                    format!(
                        "disbanded: its task is {}; {} member(s) stopped",
                        d.state,
                        d.stopped.len()
                    ),
                );
            }
        }
        EventData::MergeQueued(d) | EventData::MergeLanded(d) | EventData::MergeConflict(d) => {
            if let Some(t) = teams.get_mut(&d.task) {
                let (state, text) = match kind {
                    EventKind::MergeLanded => (
                        "landed",
                        format!(
                            "{} landed on {} as {}",
                            d.branch,
                            d.into,
                            d.commit.as_deref().unwrap_or("?")
                        ),
                    ),
                    EventKind::MergeConflict => (
                        "conflict",
                        format!(
                            "{} conflicts with {} in {}",
                            d.branch,
                            d.into,
                            d.paths.join(", ")
                        ),
                    ),
                    _ => ("queued", format!("{} queued for {}", d.branch, d.into)),
                };
                let m = t.merge_entry(d.subtask, &d.branch);
                m.state = state.into();
                m.commit = d.commit;
                m.paths = d.paths;
                m.follow_up = d.follow_up;
                t.note(at, kind, text);
            }
        }
        _ => {}
    }
}

//! [`EventKind`] and [`EventData`], both generated from the one table below:
//! a kind's name, its stream and its payload are written once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::coord::*;
use super::payload::*;
use super::streams::*;
use super::team::*;
use crate::lifecycle::ScaleDecision;

/// Declares [`EventKind`] and [`EventData`] from rows of
/// `Variant = "name" on STREAM carries Payload;`.
macro_rules! events {
    ($(
        $(#[$doc:meta])*
        $kind:ident = $name:literal on $stream:ident carries $payload:ty;
    )*) => {
        /// What an event says happened. Its [`name`](EventKind::name) is
        /// what the streams and the API carry; its
        /// [`stream`](EventKind::stream) is where every writer puts it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $( $(#[$doc])* $kind, )*
        }

        impl EventKind {
            /// Every kind, in the order of the table.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$kind),*];

            /// The name written in events, e.g. `task.assigned`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $name,)*
                }
            }

            /// The stream this kind is written on (one of [`super::streams`]).
            pub const fn stream(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $stream,)*
                }
            }
        }

        /// An event's data, typed by its kind: one variant per
        /// [`EventKind`], of the same name. It serialises as the payload
        /// alone (the kind travels beside it, as `kind`).
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum EventData {
            $( #[doc = concat!("The data of `", $name, "`.")] $kind($payload), )*
        }

        impl EventData {
            /// Its kind.
            pub fn kind(&self) -> EventKind {
                match self {
                    $(EventData::$kind(_) => EventKind::$kind,)*
                }
            }

            /// `data` read as the payload of `kind`, however loosely.
            fn parse(kind: EventKind, data: &serde_json::Value) -> serde_json::Result<EventData> {
                Ok(match kind {
                    $(EventKind::$kind => EventData::$kind(<$payload>::deserialize(data)?),)*
                })
            }
        }
    };
}

events! {
    /// A task was accepted: queued, or blocked on its dependencies.
    TaskSubmitted = "task.submitted" on TASKS_QUEUE carries TaskSubmitted;
    /// A blocked task's last dependency succeeded: it is queued.
    TaskReady = "task.ready" on TASKS_QUEUE carries TaskReady;
    /// A dead or cancelled task was put back (`torch retry`).
    TaskRetried = "task.retried" on TASKS_QUEUE carries TaskRetried;
    /// A task was leased to an agent (with why, when routing explained it).
    TaskAssigned = "task.assigned" on TASKS_ACTIVE carries TaskAssigned;
    /// The agent started the task.
    TaskStarted = "task.started" on TASKS_ACTIVE carries TaskStarted;
    /// A progress report from inside the task.
    TaskProgress = "task.progress" on TASKS_ACTIVE carries TaskProgress;
    /// A running task's agent went quiet about it for too long (hub).
    TaskStalled = "task.stalled" on TASKS_ACTIVE carries TaskStalled;
    /// An attempt succeeded: the task is done.
    TaskSucceeded = "task.succeeded" on TASKS_COMPLETED carries TaskSucceeded;
    /// An attempt failed; the task waits for its next attempt.
    TaskFailed = "task.failed" on TASKS_FAILED carries AttemptFailed;
    /// A lease expired; the task waits for its next attempt.
    TaskLeaseExpired = "task.lease_expired" on TASKS_FAILED carries AttemptFailed;
    /// The task failed for good: no retry left, or a fatal failure.
    TaskDead = "task.dead" on TASKS_FAILED carries TaskDead;
    /// The task was cancelled, by request or because a dependency died.
    TaskCancelled = "task.cancelled" on TASKS_FAILED carries TaskCancelled;
    /// A report under a fence that is no longer current was refused (hub).
    TaskStaleReportRefused = "task.stale_report_refused" on TASKS_FAILED carries StaleReportRefused;
    /// An agent registered (or registered again after a reconnect).
    AgentJoined = "agent.joined" on AGENTS_SPAWNING carries AgentJoined;
    /// The hub ordered a node to start an agent from a template.
    AgentSpawned = "agent.spawned" on AGENTS_SPAWNING carries AgentSpawned;
    /// A spawn was refused by a limit of the spawn policy.
    AgentSpawnRefused = "agent.spawn_refused" on AGENTS_SPAWNING carries AgentSpawnRefused;
    /// A spawned agent did not start or did not register in time.
    AgentSpawnFailed = "agent.spawn_failed" on AGENTS_SPAWNING carries AgentSpawnFailed;
    /// A spawned agent registered: it takes work.
    AgentReady = "agent.ready" on AGENTS_SPAWNING carries AgentReady;
    /// A spawned helper received a copy of its parent's memory keys.
    AgentMemoryInherited = "agent.memory_inherited" on AGENTS_SPAWNING carries MemoryInherited;
    /// An agent session ended.
    AgentLeft = "agent.left" on AGENTS_TERMINATING carries AgentLeft;
    /// An agent gets no new work; a managed one stops once idle.
    AgentDraining = "agent.draining" on AGENTS_TERMINATING carries AgentDraining;
    /// A managed agent's process ended because the hub stopped it.
    AgentTerminated = "agent.terminated" on AGENTS_TERMINATING carries AgentExit;
    /// A managed agent's process ended on its own.
    AgentExited = "agent.exited" on AGENTS_TERMINATING carries AgentExit;
    /// The autoscaler decided something (holds only when they change).
    ScalingDecision = "scaling.decision" on AGENTS_SCALING carries ScaleDecision;
    /// An agent sent a direct message (or handed it to the hub).
    MessageSent = "message.sent" on COLLAB_PEER carries MessageEvent;
    /// A message reached its recipient's inbox.
    MessageDelivered = "message.delivered" on COLLAB_PEER carries MessageEvent;
    /// The hub keeps a message for a recipient it could not be given to directly.
    MessageRelayed = "message.relayed" on COLLAB_PEER carries MessageEvent;
    /// A message could not be delivered (gone recipient, TTL, full inbox): it
    /// went back to its sender as a `bounce`.
    MessageBounced = "message.bounced" on COLLAB_PEER carries MessageEvent;
    /// A recipient refused a message (bad signature, unknown key, replay, …).
    MessageRefused = "message.refused" on COLLAB_PEER carries MessageEvent;
    /// A session claimed an agent id it could not prove.
    IdentityRefused = "identity.refused" on COLLAB_PEER carries IdentityRefused;
    /// An alert rule's condition held for its `for` duration (hub).
    AlertFiring = "alert.firing" on ALERTS carries AlertChange;
    /// A firing alert's value went back past its `clear` threshold (hub).
    AlertResolved = "alert.resolved" on ALERTS carries AlertChange;
    /// A follower handed submissions to the leader (hubs sharing a store).
    TasksHandedOff = "tasks.handed_off" on HUBS_HANDOFF carries TasksHandedOff;
    /// A lock or path reservation was granted (hub).
    LockAcquired = "lock.acquired" on COLLAB_TEAM carries LockAcquired;
    /// A lock holder let go: released, expired, or its attempt ended (hub).
    LockReleased = "lock.released" on COLLAB_TEAM carries LockReleased;
    /// A wait was refused because it would close a cycle of waits (hub).
    WaitDeadlock = "wait.deadlock" on COLLAB_TEAM carries WaitDeadlock;
    /// A task asked capable peers for help (hub).
    HelpRequested = "help.requested" on COLLAB_HELP carries HelpRequested;
    /// A peer accepted a help request; it won the race (hub).
    HelpAccepted = "help.accepted" on COLLAB_HELP carries HelpAccepted;
    /// A help request found no taker in time and no helper could be spawned (hub).
    HelpExpired = "help.expired" on COLLAB_HELP carries HelpExpired;
    /// A help request found no taker in time: a helper was spawned for it (hub).
    HelpEscalated = "help.escalated" on COLLAB_HELP carries HelpEscalated;
    /// A team was formed for a task (hub).
    TeamFormed = "team.formed" on COLLAB_TEAM carries TeamFormed;
    /// A team could not be formed: which role, and why (hub).
    TeamFormationFailed = "team.formation_failed" on COLLAB_TEAM carries TeamFormationFailed;
    /// A team's leader left; another member leads under a new term (hub).
    TeamLeaderChanged = "team.leader_changed" on COLLAB_TEAM carries TeamLeaderChanged;
    /// A team member left and its role was filled again (hub).
    TeamMemberReplaced = "team.member_replaced" on COLLAB_TEAM carries TeamMemberReplaced;
    /// A team member left and nobody could take its role (hub).
    TeamMemberLost = "team.member_lost" on COLLAB_TEAM carries TeamMemberLost;
    /// A team's aggregate progress changed (hub).
    TeamProgress = "team.progress" on COLLAB_TEAM carries TeamProgress;
    /// A team's task ended: the team disbanded (hub).
    TeamDisbanded = "team.disbanded" on COLLAB_TEAM carries TeamDisbanded;
    /// A finished branch entered a team's merge queue (hub).
    MergeQueued = "merge.queued" on COLLAB_TEAM carries MergeEvent;
    /// A branch merged cleanly onto the team's integration branch (hub).
    MergeLanded = "merge.landed" on COLLAB_TEAM carries MergeEvent;
    /// A branch conflicts with the integration branch: a follow-up task
    /// went to the member that produced it (hub).
    MergeConflict = "merge.conflict" on COLLAB_TEAM carries MergeEvent;
}

impl EventData {
    /// `data` read as the payload of `kind`, when that payload reproduces it
    /// exactly: the same fields with the same values, absent or `null` the
    /// same way. Anything else is `None`: a field this build does not know
    /// (a newer writer) or a shape of another version, which a reader then
    /// keeps as it came rather than lose what it cannot type.
    pub fn read(kind: EventKind, data: &serde_json::Value) -> Option<EventData> {
        let typed = EventData::parse(kind, data).ok()?;
        (serde_json::to_value(&typed).ok()? == *data).then_some(typed)
    }
}

/// A kind name that is not one of [`EventKind::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownEventKind(s.to_string()))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

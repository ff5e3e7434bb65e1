//! The description of every operation: its query, body and answer types.
//! Keep it in the order of the route table ([`crate::api::routes`]).

use torch_api::coord::{
    HelpAsk, HelpList, HelpView, LockAcquire, LockFence, LockGrantView, LockList, LockReleased,
    WaitDone, WaitRequest,
};
use torch_api::msg::{MessageList, PeerList, RelayRequest, RelayResult, SendRequest, SendResult};
use torch_api::rest::{
    AgentList, AlertList, AnalyzeResponse, CancelRequest, CancelResponse, CapacityReport,
    CreateTokenRequest, CreateTokenResponse, EventPage, Health, LogsView, MemoryEntryView,
    MemoryList, MemoryPut, NodeList, ProgressRequest, ScalingList, SpawnRequest, SpawnResponse,
    SubmitRequest, SubmitResponse, TaskList, TaskView, TeamList, TeamView, TokenList, TokenView,
    UsageReport, UsageReported, UsageSummary,
};

use super::{Auth, Op, Reply, schema};
use crate::api::routes::Verb::{self, Get, Post, Put};
use crate::api::{help, lifecycle, messages, misc, observe, tasks, ui, usage};
use crate::audit::api as audit;
use crate::metrics::{CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT};
use crate::stats::StatsView;
use torch_store::AuditCheckpoint;
use torch_store::audit::AuditReport;

/// Admin and submitter tokens.
const SUBMIT: &str = "admin or submitter tokens";
/// Admin tokens.
const ADMIN: &str = "admin tokens";
/// Admin, agent or node tokens.
const AGENT: &str = "admin, agent or node tokens";
/// Admin, submitter or task-scoped tokens.
const SUBMIT_OR_TASK: &str = "admin or submitter tokens, or a task-scoped token";

/// Declares an operation with the fields left out defaulting to none.
macro_rules! op {
    ($m:ident $path:literal, $id:literal, $summary:literal, $auth:expr, $reply:expr
     $(, query = $q:ty)? $(, body = $b:ty)? $(, optional_body = $ob:ty)? $(, errors = $e:expr)?) => {
        Op {
            method: $m,
            path: $path,
            id: $id,
            summary: $summary,
            auth: $auth,
            query: op!(@opt $($q)?),
            body: op!(@body $($b, false)? $($ob, true)?),
            reply: $reply,
            errors: op!(@errors $($e)?),
        }
    };
    (@errors $e:expr) => { $e };
    (@errors) => { &[] };
    (@opt $t:ty) => { Some(schema::<$t>) };
    (@opt) => { None };
    (@body $t:ty, $optional:expr) => { Some((schema::<$t>, $optional)) };
    (@body) => { None };
}

/// `200` with a JSON `T`.
macro_rules! ok {
    ($t:ty) => {
        Reply::Json(&[200], schema::<$t>)
    };
}

/// `201` with a JSON `T`.
macro_rules! created {
    ($t:ty) => {
        Reply::Json(&[201], schema::<$t>)
    };
}

/// The Prometheus text format and OpenMetrics.
const METRICS_TYPES: &[&str] = &[CONTENT_TYPE_TEXT, CONTENT_TYPE_OPENMETRICS];

/// The error answers of a submission described on their own.
const SUBMIT_ERRORS: &[(u16, &str, bool)] = &[(
    429,
    "Refused, nothing stored (the whole batch): `shed` when the batch's lowest \
     priority is below the load-shedding floor (`floor` in the body), `queue_full` at \
     `hub.queue-high-water`, `rate_limited` past the token's request rate.",
    true,
)];

/// Every operation.
pub(crate) static OPS: &[Op] = &[
    op!(Get "/api/v1/health", "health", "The hub is up: version, store, role.", Auth::Public, ok!(Health)),
    op!(Get "/api/v1/stats", "stats", "Assignment latency, counters, the autonomy metrics and load shedding.",
        Auth::Bearer(SUBMIT), ok!(StatsView)),
    op!(Post "/api/v1/stats/reset", "resetStats", "Resets the stats counters.", Auth::Bearer(ADMIN),
        Reply::NoContent),
    op!(Get "/metrics", "metrics", "Prometheus metrics (OpenMetrics when asked with `Accept`).",
        Auth::Optional("admin or submitter tokens, unless `[metrics] public = true`"),
        Reply::Text(METRICS_TYPES)),
    op!(Get "/api/v1/alerts", "alerts", "Firing alerts and recent changes.", Auth::Bearer(SUBMIT),
        ok!(AlertList)),
    op!(Get "/api/v1/capacity", "capacity", "Per pool load and the recommended size; headroom.",
        Auth::Bearer(SUBMIT), ok!(CapacityReport), query = observe::CapacityQuery),
    op!(Post "/api/v1/tasks", "submitTasks", "Submits one or many task specs, all or nothing.",
        Auth::Bearer(SUBMIT_OR_TASK), created!(SubmitResponse), body = SubmitRequest,
        errors = SUBMIT_ERRORS),
    op!(Get "/api/v1/tasks", "listTasks", "Tasks, newest first, filtered and paged.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(TaskList), query = tasks::ListQuery),
    op!(Get "/api/v1/tasks/{id}", "getTask", "One task with its spec, analysis and routing.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(TaskView)),
    op!(Post "/api/v1/tasks/{id}/cancel", "cancelTask", "Cancels a task and its dependents.",
        Auth::Bearer(SUBMIT), ok!(CancelResponse), optional_body = CancelRequest),
    op!(Post "/api/v1/tasks/{id}/retry", "retryTask", "Queues a dead or cancelled task again.",
        Auth::Bearer(SUBMIT), ok!(TaskView)),
    op!(Get "/api/v1/tasks/{id}/logs", "taskLogs", "The captured output of a task's last attempt.",
        Auth::Bearer(SUBMIT), ok!(LogsView)),
    op!(Post "/api/v1/tasks/{id}/progress", "reportProgress", "Reports progress from inside a task.",
        Auth::Bearer("the task's own task-scoped token"), Reply::NoContent, body = ProgressRequest),
    op!(Post "/api/v1/tasks/{id}/usage", "reportUsage", "Adds tokens and cost to the running attempt's usage from inside a task; the hub stops the attempt at its budget.",
        Auth::Bearer("the task's own task-scoped token"), ok!(UsageReported), body = UsageReport),
    op!(Get "/api/v1/usage", "usageSummary", "Usage stored with attempts: totals, by tenant and by template.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(UsageSummary), query = usage::UsageQuery),
    op!(Post "/api/v1/analyze", "analyzeTasks", "Analyses task specs without submitting them.",
        Auth::Bearer(SUBMIT), ok!(AnalyzeResponse), body = SubmitRequest),
    op!(Get "/api/v1/agents", "listAgents", "Connected agents with their skills, load and routing state.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(AgentList)),
    op!(Get "/api/v1/events", "listEvents", "Events after an id, optionally long-polled.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(EventPage), query = misc::EventsQuery),
    op!(Get "/api/v1/events/stream", "eventStream", "The event log as server-sent events.",
        Auth::Bearer(SUBMIT_OR_TASK), Reply::EventStream, query = ui::StreamQuery),
    op!(Get "/", "dashboard", "The dashboard page.", Auth::Public,
        Reply::Text(&["text/html; charset=utf-8"])),
    op!(Get "/ui/{file}", "dashboardAsset", "The dashboard's script and style.", Auth::Public,
        Reply::Text(&["text/javascript; charset=utf-8", "text/css; charset=utf-8"])),
    op!(Post "/api/v1/tokens", "createToken", "Creates an API token; its secret is shown once.",
        Auth::Bearer(ADMIN), created!(CreateTokenResponse), body = CreateTokenRequest),
    op!(Get "/api/v1/tokens", "listTokens", "API tokens (never their secrets).",
        Auth::Bearer(ADMIN), ok!(TokenList)),
    op!(Post "/api/v1/tokens/{id}/revoke", "revokeToken", "Revokes an API token.",
        Auth::Bearer(ADMIN), ok!(TokenView)),
    op!(Get "/api/v1/agent/ws", "agentSession", "An agent's WebSocket session.",
        Auth::Bearer(AGENT), Reply::Upgrade),
    op!(Post "/api/v1/agents/spawn", "spawnAgent", "Starts an agent from a template on a node.",
        Auth::Bearer("admin tokens or a task-scoped token"), created!(SpawnResponse), body = SpawnRequest),
    op!(Get "/api/v1/agents/scaling", "scalingDecisions", "The autoscaler's recent decisions.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(ScalingList), query = lifecycle::ScalingQuery),
    op!(Post "/api/v1/agents/{id}/drain", "drainAgent", "Gives an agent no new work; stops it once idle.",
        Auth::Bearer(ADMIN), ok!(lifecycle::DrainResponse), optional_body = lifecycle::DrainRequest),
    op!(Get "/api/v1/nodes", "listNodes", "Nodes and the agents they run.", Auth::Bearer(SUBMIT),
        ok!(NodeList)),
    op!(Get "/api/v1/node/ws", "nodeSession", "A node's WebSocket session.",
        Auth::Bearer(AGENT), Reply::Upgrade),
    op!(Get "/api/v1/peers", "listPeers", "Peer cards of the agents, filtered.",
        Auth::Bearer("any token"), ok!(PeerList), query = messages::PeersQuery),
    op!(Get "/api/v1/teams", "listTeams", "Teams: active ones, then recently disbanded ones (a task token: its own team).",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(TeamList)),
    op!(Get "/api/v1/teams/{id}", "getTeam", "The team of a task, or of the task a subtask belongs to: members, leader and term, progress, subtasks, merge queue, explanation, history.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(TeamView)),
    op!(Post "/api/v1/messages", "sendMessage", "Sends a message from the hub to agents.",
        Auth::Bearer(ADMIN), ok!(SendResult), body = SendRequest),
    op!(Get "/api/v1/messages", "listMessages", "What the hub keeps for an agent's inbox.",
        Auth::Bearer(ADMIN), ok!(MessageList), query = messages::ListQuery),
    op!(Post "/api/v1/messages/relay", "relayMessages", "Relays signed messages between agents.",
        Auth::Bearer("agent tokens"), ok!(RelayResult), body = RelayRequest),
    op!(Get "/api/v1/memory", "listMemory", "An agent's memory entries.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(MemoryList), query = lifecycle::MemoryQuery),
    op!(Get "/api/v1/memory/{key}", "getMemory", "One memory entry.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(MemoryEntryView), query = lifecycle::MemoryQuery),
    op!(Put "/api/v1/memory/{key}", "putMemory", "Writes one memory entry.",
        Auth::Bearer("admin tokens or a task-scoped token"), Reply::NoContent,
        query = lifecycle::MemoryQuery, body = MemoryPut),
    op!(Post "/api/v1/locks", "acquireLock", "Acquires a lock, waiting up to a deadline.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(LockGrantView), body = LockAcquire),
    op!(Get "/api/v1/locks", "listLocks", "Locks, holders, waiters and the wait-for graph.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(LockList)),
    op!(Post "/api/v1/locks/renew", "renewLock", "Renews a held lock.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(LockGrantView), body = LockFence),
    op!(Post "/api/v1/locks/release", "releaseLock", "Releases a held lock.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(LockReleased), body = LockFence),
    op!(Post "/api/v1/waits", "waitTasks", "Waits for tasks to finish (deadlocks are refused).",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(WaitDone), body = WaitRequest),
    op!(Post "/api/v1/help", "askHelp", "Asks for help with a skill.",
        Auth::Bearer(SUBMIT_OR_TASK), Reply::Json(&[201, 200], schema::<HelpView>), body = HelpAsk),
    op!(Get "/api/v1/help", "listHelp", "Open help requests (or all).",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(HelpList), query = help::ListQuery),
    op!(Get "/api/v1/help/{id}", "getHelp", "One help request.", Auth::Bearer(SUBMIT_OR_TASK),
        ok!(HelpView)),
    op!(Post "/api/v1/help/{id}/accept", "acceptHelp", "Accepts a help request.",
        Auth::Bearer(SUBMIT_OR_TASK), ok!(HelpView)),
    op!(Get "/api/v1/audit", "listAudit", "Audit log entries, oldest first, filtered and paged.",
        Auth::Bearer(ADMIN), ok!(audit::AuditList), query = audit::ListQuery),
    op!(Post "/api/v1/audit/verify", "verifyAudit",
        "Walks the audit chain (and checks it against an exported checkpoint).",
        Auth::Bearer(ADMIN), ok!(AuditReport), optional_body = audit::VerifyRequest),
    op!(Get "/api/v1/audit/checkpoint", "auditCheckpoint", "The latest signed audit checkpoint.",
        Auth::Bearer(ADMIN), ok!(AuditCheckpoint)),
    op!(Get "/api/v1/openapi.json", "openapi", "This document.", Auth::Public,
        Reply::Json(&[200], schema::<serde_json::Map<String, serde_json::Value>>)),
];

/// The description of `method path`, if there is one.
pub(crate) fn find(method: Verb, path: &str) -> Option<&'static Op> {
    OPS.iter().find(|o| o.method == method && o.path == path)
}

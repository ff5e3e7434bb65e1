//! Leadership among hubs that share one store (Redis).
//!
//! Every hub serves the API; one of them, the leader, runs the engine
//! (scheduler, leases, reaper) and the lifecycle manager. The leader holds a
//! lease in the store with its own fence (`SharedStore::acquire_leadership`) and
//! renews it every third of its term. Followers try to take it over on the
//! same period, so a dead leader is replaced within one term plus a period.
//!
//! A follower:
//! - forwards requests that need the engine (submissions, cancels, retries,
//!   spawns, drains, agent and node listings, stats) to the leader;
//! - answers agents' and nodes' Hello with `not_leader` and the leader's URL,
//!   so they connect there; reads (tasks, events, logs) it serves itself from
//!   the store.
//!
//! Every `hub.reconcile-every` (30 s) the leader also compares the store's queued tasks and leases
//! with its memory and adopts what it does not know (a safety net for writes
//! whose outcome it could not see).
//!
//! On taking over, a hub loads the store's state into its engine (every
//! lease gets a fresh term, as after a restart); agents whose leader died
//! reconnect through their configured hub and re-attach their running tasks.
//! A leader that cannot renew in time steps down to follower before its
//! lease can have passed on (its engine drops all state and sends its agents
//! away to reconnect): two hubs do not schedule at once, and the store's
//! fenced, atomic claims would keep even an overlap from assigning a task
//! twice.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use torch_store::{SharedStore, Store};
use tracing::{error, info, warn};

use crate::api::ApiError;
use crate::clock::now_ms;
use crate::engine::Cmd;
use crate::hub::Shared;

/// This hub's part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Runs the engine; `fence` is its leader fence.
    Leader { fence: u64 },
    /// Serves reads and forwards the rest to the leader (when one is known).
    Follower { leader: Option<String> },
}

/// The URL in a hub id (`<url>#<unique suffix>`).
fn url_of(hub: &str) -> String {
    hub.split_once('#').map_or(hub, |(url, _)| url).to_string()
}

/// Runs the election for this hub, reachable at `url`, until `shutdown`.
pub(crate) async fn run<S: Store>(
    shared: Arc<Shared<S>>,
    url: String,
    shutdown: CancellationToken,
) {
    // Unique even when two hubs advertise the same URL by mistake.
    let hub = shared
        .hub_id
        .get_or_init(|| format!("{url}#{}", uuid::Uuid::now_v7()))
        .clone();
    let Some(store) = shared.store.shared() else {
        return;
    };
    tokio::spawn(handoffs(shared.clone(), hub.clone(), shutdown.clone()));
    // Followers see the leader's writes only through the store: wake their
    // event long-polls regularly, and once a second take the count of
    // unfinished tasks from the store (load shedding of the submissions they
    // hand off).
    {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut n = 0u32;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                if shared.is_leader() {
                    continue;
                }
                shared.bump();
                n = n.wrapping_add(1);
                if n.is_multiple_of(4) {
                    refresh_backlog(&shared).await;
                }
            }
        });
    }
    let ttl = shared.cfg.leader_lease;
    let ttl_ms = ttl.as_millis() as u64;
    let period = (ttl / 3).max(Duration::from_millis(50));
    let mut last_renewed = now_ms();
    let mut last_reconciled = now_ms();
    loop {
        let role = shared.role.borrow().clone();
        match role {
            Role::Follower { leader } => {
                match store.acquire_leadership(hub.clone(), ttl_ms).await {
                    Ok(Some(fence)) => {
                        if become_leader(&shared, fence).await {
                            last_renewed = now_ms();
                        }
                    }
                    Ok(None) => {
                        let now = match store.current_leader().await {
                            Ok(Some((id, _))) => Some(url_of(&id)),
                            _ => None,
                        };
                        if now != leader {
                            info!(leader = ?now, "following the leader");
                            shared.role.send_replace(Role::Follower { leader: now });
                        }
                    }
                    Err(e) => warn!(error = %e, "leader election: store unavailable"),
                }
            }
            Role::Leader { fence } => {
                // A renewal stuck on a dead connection must not outlive the
                // term: give up after one period and count it as a failure.
                let renewed = tokio::time::timeout(
                    period,
                    store.renew_leadership(hub.clone(), fence, ttl_ms),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(torch_store::StoreError::Unavailable(
                        "lease renewal timed out".into(),
                    ))
                });
                match renewed {
                    Ok(true) => {
                        last_renewed = now_ms();
                        let every = shared.cfg.reconcile_every.as_millis() as u64;
                        if last_renewed.saturating_sub(last_reconciled) >= every {
                            last_reconciled = last_renewed;
                            tokio::spawn(reconcile(shared.clone()));
                        }
                    }
                    Ok(false) => {
                        error!(fence, "lost the leadership to another hub; stepping down");
                        step_down(&shared).await;
                    }
                    Err(e) => {
                        warn!(error = %e, "could not renew the leadership");
                        // Step down before the lease can have passed to
                        // another hub: never two schedulers at once.
                        if now_ms().saturating_sub(last_renewed) + period.as_millis() as u64
                            >= ttl_ms
                        {
                            error!("leadership could not be renewed in time; stepping down");
                            step_down(&shared).await;
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.cancelled() => {
                // A clean stop hands over at once.
                let held = match &*shared.role.borrow() {
                    Role::Leader { fence } => Some(*fence),
                    Role::Follower { .. } => None,
                };
                if let Some(fence) = held {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        store.release_leadership(hub.clone(), fence),
                    )
                    .await;
                    info!("leadership released");
                }
                return;
            }
        }
    }
}

/// Compares the store's queued tasks and leases with the engine's memory (a
/// safety net for writes whose outcome the leader could not see, and for a
/// Redis that lost its last second of writes); `hub.reconcile-every`.
async fn reconcile<S: Store>(shared: Arc<Shared<S>>) {
    match shared.store.load().await {
        Ok(snapshot) => {
            if shared.is_leader() {
                let _ = shared.engine.send(Cmd::Reconcile(snapshot)).await;
            }
        }
        Err(e) => warn!(error = %e, "reconcile: cannot read the store"),
    }
}

/// A follower's count of unfinished tasks, from the store's per-state counts.
async fn refresh_backlog<S: Store>(shared: &Shared<S>) {
    let filter = torch_store::TaskFilter {
        limit: 1,
        ..torch_store::TaskFilter::default()
    };
    if let Ok(page) = shared.store.list_tasks(filter).await
        && !shared.is_leader()
    {
        let unfinished: u64 = page
            .counts
            .iter()
            .filter(|(state, _)| !state.is_terminal())
            .map(|(_, n)| n)
            .sum();
        shared
            .backlog
            .store(unfinished as i64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long one read of the hand-off stream waits for an entry.
const HANDOFF_WAIT: Duration = Duration::from_millis(500);

/// While this hub leads: schedules the tasks other hubs hand off (they
/// wrote a submission themselves because they could not reach this hub),
/// reading them through the store's consumer group. Each hand-off is
/// acknowledged only once its tasks are in the engine, so one that a
/// leader received and did not finish handling (it died) is claimed by the
/// next leader when it takes over.
async fn handoffs<S: Store>(shared: Arc<Shared<S>>, hub: String, shutdown: CancellationToken) {
    let Some(store) = shared.store.shared() else {
        return;
    };
    let mut role = shared.role.subscribe();
    loop {
        // Wait to lead.
        while !shared.is_leader() {
            tokio::select! {
                r = role.changed() => if r.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
        }
        let mut reclaim = true;
        while shared.is_leader() && !shutdown.is_cancelled() {
            let read = tokio::select! {
                r = store.handoffs(hub.clone(), reclaim, HANDOFF_WAIT) => r,
                _ = shutdown.cancelled() => return,
            };
            let batch = match read {
                Ok(b) => {
                    reclaim = false;
                    b
                }
                Err(e) => {
                    warn!(error = %e, "cannot read hand-offs from other hubs; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = take_handoffs(&shared, &hub, batch).await {
                warn!(error = %e, "hand-offs not handled yet; retrying");
                reclaim = true;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Enqueues the queued tasks of `batch` (blocked ones are released by
/// their dependencies as usual) and acknowledges the hand-offs.
async fn take_handoffs<S: Store>(
    shared: &Shared<S>,
    hub: &str,
    batch: Vec<torch_store::Handoff>,
) -> Result<(), torch_store::StoreError> {
    let ids: Vec<torch_core::TaskId> = batch.iter().flat_map(|h| h.tasks.iter().copied()).collect();
    let records = shared.store.get_tasks(ids).await?;
    // Delegated tasks (from inside a running task): their parent's end
    // cleans them up here too, as for a delegation made through this hub.
    for parent in records.iter().filter_map(|r| r.parent) {
        shared.notify_life(crate::lifecycle::LifeCmd::Parent { task: parent });
    }
    let queued: Vec<torch_core::scheduler::QueuedTask> = records
        .iter()
        .filter(|r| r.state == torch_core::TaskState::Queued)
        .map(crate::engine::queued_of)
        .collect();
    let (reply, done) = tokio::sync::oneshot::channel();
    let sent = shared
        .engine
        .send(Cmd::Handoff {
            tasks: queued,
            reply,
        })
        .await;
    let taken = match sent {
        Ok(()) => done.await.ok(),
        Err(_) => None,
    };
    let Some(taken) = taken else {
        return Err(torch_store::StoreError::Unavailable(
            "the engine stopped".into(),
        ));
    };
    for h in &batch {
        info!(from = %h.hub, tasks = h.tasks.len(), handoff = h.id, "tasks handed off by another hub");
    }
    if taken > 0 {
        shared.bump();
    }
    let acked: Vec<u64> = batch.iter().map(|h| h.id).collect();
    match shared.store.shared() {
        Some(store) => store.ack_handoffs(hub.to_owned(), acked).await,
        None => Ok(()),
    }
}

/// Stops scheduling: the engine drops its state and sends agents away.
async fn step_down<S: Store>(shared: &Shared<S>) {
    shared.role.send_replace(Role::Follower { leader: None });
    let _ = shared.engine.send(Cmd::Deactivate).await;
}

/// Loads the store's state into the engine and starts acting as leader.
async fn become_leader<S: Store>(shared: &Shared<S>, fence: u64) -> bool {
    let snapshot = match shared.store.load().await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "won the election but cannot load the state; will retry");
            return false;
        }
    };
    info!(
        fence,
        queued = snapshot.queued.len(),
        leased = snapshot.leased.len(),
        "this hub is now the leader"
    );
    shared.backlog.store(
        snapshot.backlog as i64,
        std::sync::atomic::Ordering::Relaxed,
    );
    if shared.engine.send(Cmd::Activate(snapshot)).await.is_err() {
        return false;
    }
    shared.role.send_replace(Role::Leader { fence });
    shared.bump();
    true
}

/// For a follower: the `Error` answering an agent's Hello (`not_leader` with
/// the leader's URL, or `no_leader` during an election). `None` on the leader.
pub(crate) fn redirect<S>(shared: &Shared<S>) -> Option<torch_api::ws::HubMessage> {
    match &*shared.role.borrow() {
        Role::Leader { .. } => None,
        Role::Follower { leader: Some(url) } => Some(torch_api::ws::HubMessage::Error {
            code: torch_api::ws::NOT_LEADER.into(),
            message: url.clone(),
        }),
        Role::Follower { leader: None } => Some(torch_api::ws::HubMessage::Error {
            code: "no_leader".into(),
            message: "no hub is the leader right now (an election is under way); retrying".into(),
        }),
    }
}

/// Whether a request needs the leader's engine.
fn needs_leader(method: &Method, path: &str) -> bool {
    if !path.starts_with("/api/v1/") || path.ends_with("/ws") {
        return false;
    }
    if method != Method::GET {
        return true;
    }
    path.starts_with("/api/v1/agents")
        || path.starts_with("/api/v1/nodes")
        || path.starts_with("/api/v1/stats")
}

/// Whether a request is a submission (`POST /api/v1/tasks`).
fn is_submission(method: &Method, path: &str) -> bool {
    method == Method::POST && path.trim_end_matches('/') == "/api/v1/tasks"
}

/// Middleware: on a follower, forwards what needs the leader. A submission
/// that cannot reach the leader (none elected yet, or its address refuses
/// connections) is accepted here and handed off to the leader through the
/// store (see [`handoffs`]).
pub(crate) async fn forward<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    req: Request,
    next: Next,
) -> Response {
    let leader = match &*shared.role.borrow() {
        Role::Leader { .. } => None,
        Role::Follower { leader } => Some(leader.clone()),
    };
    let Some(leader) = leader else {
        return next.run(req).await;
    };
    if !needs_leader(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    // The body is read once: a submission may be relayed and then, if the
    // leader could not be reached, handled here.
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, shared.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("reading the request: {e} (hub.max-body-bytes is the limit)"),
            )
            .into_response();
        }
    };
    if is_submission(&parts.method, parts.uri.path()) {
        return submit_via_leader(&shared, leader, parts, body, next).await;
    }
    let Some(base) = leader else {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            "no hub is the leader right now (an election is under way); retry shortly",
        );
        e.retry_after = Some(1);
        return e.into_response();
    };
    relay(&shared, &base, &parts, body)
        .await
        .unwrap_or_else(|u| leader_unreachable(u.message))
}

/// `502 leader_unreachable` with `Retry-After: 1`.
fn leader_unreachable(message: String) -> Response {
    let mut e = ApiError::new(StatusCode::BAD_GATEWAY, "leader_unreachable", message);
    e.retry_after = Some(1);
    e.into_response()
}

/// A submission on a follower: to the leader when it answers; accepted
/// here (a hand-off) when there is no leader or the request never reached
/// it. When it may have reached the leader (the answer was lost), it is not
/// written again here: the client gets 502 and retries, which idempotency
/// keys make safe.
async fn submit_via_leader<S: Store>(
    shared: &Arc<Shared<S>>,
    leader: Option<String>,
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
    next: Next,
) -> Response {
    let why = match leader {
        None => "no hub is the leader right now".to_owned(),
        Some(base) => match relay(shared, &base, &parts, body.clone()).await {
            Ok(r) => return r,
            Err(Unrelayed {
                sent: false,
                message,
            }) => message,
            Err(Unrelayed { message, .. }) => return leader_unreachable(message),
        },
    };
    warn!(reason = %why, "accepting a submission on this follower and handing it off to the leader");
    let mut r = next.run(Request::from_parts(parts, Body::from(body))).await;
    if r.status().is_success() {
        r.headers_mut()
            .insert("x-torch-handed-off", HeaderValue::from_static("1"));
    }
    r
}

/// Why a request was not relayed; `sent` when it may have reached the
/// leader (the connection was made).
struct Unrelayed {
    sent: bool,
    message: String,
}

async fn relay<S: Store>(
    shared: &Shared<S>,
    base: &str,
    parts: &axum::http::request::Parts,
    body: axum::body::Bytes,
) -> Result<Response, Unrelayed> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut out = shared.proxy.request(parts.method.clone(), &url).body(body);
    for h in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = parts.headers.get(&h) {
            out = out.header(h, v);
        }
    }
    let resp = out.send().await.map_err(|e| Unrelayed {
        sent: !e.is_connect(),
        message: format!("the leader at {base} did not answer: {e}"),
    })?;
    let status = resp.status();
    let mut headers = Vec::new();
    for h in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(v) = resp.headers().get(&h) {
            headers.push((h, v.clone()));
        }
    }
    let bytes = resp.bytes().await.map_err(|e| Unrelayed {
        sent: true,
        message: format!("reading the leader's answer: {e}"),
    })?;
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    for (h, v) in headers {
        r.headers_mut().insert(h, v);
    }
    r.headers_mut().insert(
        "x-torch-forwarded-to",
        HeaderValue::from_str(base).unwrap_or(HeaderValue::from_static("leader")),
    );
    Ok(r)
}

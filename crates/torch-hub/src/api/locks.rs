//! `/api/v1/locks` and `/api/v1/waits`: parse, authorise, and ask the
//! coordination service; the waits (a queued acquire, a task wait) are
//! timed here and cancelled when the caller goes away.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use torch_api::coord::{
    LockAcquire, LockFence, LockGrantView, LockHolderView, LockList, LockReleased, LockView,
    LockWaiterView, WaitDone, WaitRequest, WaitedTask,
};
use torch_api::rest::Role;
use torch_core::locks::{Holder, LockKey, LockMode};
use torch_core::waits::{Node, WaitEdge, WaitOn};
use torch_core::{AgentId, TaskId};
use torch_store::Store;

use super::{ApiError, Need, authorize, stopping, task_agent};
use crate::auth::Caller;
use crate::coord::{AcquireReq, Acquired, CoordCmd, CoordError};
use crate::hub::Shared;

type St<S> = State<Arc<Shared<S>>>;

/// A lock's TTL when none is asked for.
pub(crate) const DEFAULT_TTL_MS: u64 = 30_000;
/// The longest TTL and the longest wait one request may ask for.
const MAX_MS: u64 = 24 * 3600 * 1000;
/// Longest lock name or glob.
const MAX_NAME: usize = 512;

/// Who calls, as the wait-for graph knows them.
pub(crate) struct Who {
    pub(crate) node: Node,
    /// A task's attempt (its lease fence).
    pub(crate) attempt: Option<u64>,
    /// A task's agent.
    pub(crate) agent: Option<AgentId>,
    /// An admin may renew and release any holder's lock.
    pub(crate) admin: bool,
}

/// Authorises a coordination call: a task token whose attempt still holds
/// the task, or an admin or submitter token (an operator, by its name).
pub(crate) async fn who<S: Store>(
    shared: &Shared<S>,
    headers: &HeaderMap,
) -> Result<Who, ApiError> {
    match authorize(shared, headers, Need::SubmitOrTask).await? {
        Caller::Task { task, fence } => {
            let agent = task_agent(shared, task, fence).await?;
            Ok(Who {
                node: Node::Task(task),
                attempt: Some(fence),
                agent: Some(agent),
                admin: false,
            })
        }
        Caller::Token { role, name, .. } => Ok(Who {
            node: Node::Operator(name),
            attempt: None,
            agent: None,
            admin: role == Role::Admin,
        }),
    }
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("{what} body: {e}")))
}

impl From<CoordError> for ApiError {
    fn from(e: CoordError) -> Self {
        use torch_core::locks::LockError as L;
        let msg = e.to_string();
        match e {
            CoordError::Deadlock(d) => {
                let mut err = ApiError::new(StatusCode::CONFLICT, "deadlock", msg)
                    .with_details(d.cycle.iter().map(ToString::to_string).collect());
                err.cycle = Some(Box::new(d));
                err
            }
            CoordError::Lock(L::NotHeld { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "not_held", msg)
            }
            CoordError::Lock(L::StaleFence { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "stale_fence", msg)
            }
            CoordError::Lock(L::AlreadyHeld { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "already_held", msg)
            }
            CoordError::Lock(L::NotYours { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "not_yours", msg)
            }
            CoordError::Busy { .. } => ApiError::new(StatusCode::CONFLICT, "lock_busy", msg),
            CoordError::NotLeader => {
                let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", msg);
                err.retry_after = Some(1);
                err
            }
            CoordError::Store(s) => s.into(),
        }
    }
}

/// 408: a wait ran out of time.
pub(crate) fn wait_timeout(what: String) -> ApiError {
    ApiError::new(StatusCode::REQUEST_TIMEOUT, "wait_timeout", what)
}

fn grant_view(key: &LockKey, h: &Holder) -> LockGrantView {
    LockGrantView {
        name: key.name.clone(),
        fence: h.fence,
        mode: h.mode.as_str().to_string(),
        expires_ms: h.expires_ms,
        path: key.path,
        holder: h.node.to_string(),
    }
}

fn check_ms(what: &str, v: Option<u64>) -> Result<Option<u64>, ApiError> {
    match v {
        Some(0) if what == "ttl_ms" => Err(ApiError::bad_request(
            "invalid_lock",
            "ttl_ms must be above 0",
        )),
        Some(v) if v > MAX_MS => Err(ApiError::bad_request(
            "invalid_lock",
            format!("{what} {v} is above a day"),
        )),
        v => Ok(v),
    }
}

/// Cancels a queued wait when the request ends early (timeout, or the
/// caller went away and axum dropped the handler).
struct CancelOnDrop<'a> {
    coord: &'a crate::coord::CoordHandle,
    id: Option<u64>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.coord.tell(CoordCmd::CancelWait { id, reply: None });
        }
    }
}

/// `POST /api/v1/locks`: acquire a lock or a path reservation.
pub(crate) async fn acquire<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LockGrantView>, ApiError> {
    let who = who(&shared, &headers).await?;
    let req: LockAcquire = json(body, "lock")?;
    let key = match (req.name, req.path) {
        (Some(n), None) => LockKey::named(n),
        (None, Some(p)) => LockKey::path(p),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_lock",
                "give exactly one of `name` and `path`",
            ));
        }
    };
    if key.name.is_empty() || key.name.len() > MAX_NAME {
        return Err(ApiError::bad_request(
            "invalid_lock",
            format!("a lock name or glob is 1 to {MAX_NAME} bytes"),
        ));
    }
    let ttl_ms = check_ms("ttl_ms", req.ttl_ms)?.unwrap_or(DEFAULT_TTL_MS);
    let wait_ms = check_ms("wait_ms", req.wait_ms)?.unwrap_or(0);
    let priority = match who.node {
        Node::Task(t) => shared
            .store
            .get_task(t)
            .await?
            .map(|r| r.spec.priority)
            .unwrap_or(0),
        _ => 0,
    };
    let acq = AcquireReq {
        key: key.clone(),
        node: who.node,
        attempt: who.attempt,
        mode: if req.shared {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        },
        ttl_ms,
        wait: wait_ms > 0,
        priority,
    };
    let acquired = shared
        .coord
        .ask(|reply| CoordCmd::Acquire { req: acq, reply })
        .await
        .ok_or_else(stopping)??;
    let (id, mut grant) = match acquired {
        Acquired::Now(h) => return Ok(Json(grant_view(&key, &h))),
        Acquired::Queued { id, grant } => (id, grant),
    };
    let mut guard = CancelOnDrop {
        coord: &shared.coord,
        id: Some(id),
    };
    let waited = tokio::select! {
        r = &mut grant => Some(r),
        _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => None,
        _ = shared.shutdown.cancelled() => return Err(stopping()),
    };
    let result = match waited {
        Some(Ok(r)) => r,
        // The service dropped the wait (the hub is stopping, or it lost
        // the leadership).
        Some(Err(_)) => return Err(stopping()),
        None => {
            guard.id = None;
            shared
                .coord
                .ask(|reply| CoordCmd::CancelWait {
                    id,
                    reply: Some(reply),
                })
                .await;
            // A grant may have crossed the timeout: it is held, so answer it.
            match grant.try_recv() {
                Ok(r) => r,
                Err(_) => {
                    return Err(wait_timeout(format!(
                        "lock {:?} not granted within {} ms",
                        key.name, wait_ms
                    )));
                }
            }
        }
    };
    guard.id = None;
    match result {
        Ok(h) => Ok(Json(grant_view(&key, &h))),
        Err(e) => Err(e.into()),
    }
}

/// The caller a renew or release is checked against (`None`: an admin may
/// act on any holder's lock, the fence still has to match).
fn checked(who: &Who) -> Option<Node> {
    (!who.admin).then(|| who.node.clone())
}

/// `POST /api/v1/locks/renew`.
pub(crate) async fn renew<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LockGrantView>, ApiError> {
    let who = who(&shared, &headers).await?;
    let req: LockFence = json(body, "renew")?;
    let ttl_ms = check_ms("ttl_ms", req.ttl_ms)?.unwrap_or(DEFAULT_TTL_MS);
    let caller = checked(&who);
    let (key, h) = shared
        .coord
        .ask(|reply| CoordCmd::Renew {
            name: req.name,
            fence: req.fence,
            caller,
            ttl_ms,
            reply,
        })
        .await
        .ok_or_else(stopping)??;
    Ok(Json(grant_view(&key, &h)))
}

/// `POST /api/v1/locks/release`.
pub(crate) async fn release<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LockReleased>, ApiError> {
    let who = who(&shared, &headers).await?;
    let req: LockFence = json(body, "release")?;
    let caller = checked(&who);
    let (key, h) = shared
        .coord
        .ask(|reply| CoordCmd::Release {
            name: req.name,
            fence: req.fence,
            caller,
            reply,
        })
        .await
        .ok_or_else(stopping)??;
    Ok(Json(LockReleased {
        name: key.name,
        fence: h.fence,
        released: true,
    }))
}

/// `GET /api/v1/locks`: holders, waiters and the wait-for graph.
pub(crate) async fn list<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
) -> Result<Json<LockList>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let (locks, waits) = shared
        .coord
        .ask(|reply| CoordCmd::List { reply })
        .await
        .ok_or_else(stopping)?;
    let locks = locks
        .into_iter()
        .map(|v| LockView {
            name: v.key.name,
            path: v.key.path,
            holders: v
                .holders
                .into_iter()
                .map(|h| LockHolderView {
                    holder: h.node.to_string(),
                    mode: h.mode.as_str().to_string(),
                    fence: h.fence,
                    granted_ms: h.granted_ms,
                    expires_ms: h.expires_ms,
                })
                .collect(),
            waiters: v
                .waiters
                .into_iter()
                .map(|w| LockWaiterView {
                    waiter: w.node.to_string(),
                    mode: w.mode.as_str().to_string(),
                    priority: w.priority,
                    since_ms: w.since_ms,
                })
                .collect(),
        })
        .collect();
    Ok(Json(LockList { locks, waits }))
}

/// Removes a registered wait when the request ends, however it ends.
pub(crate) struct WaitGuard<'a> {
    pub(crate) coord: &'a crate::coord::CoordHandle,
    pub(crate) id: u64,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.coord.tell(CoordCmd::RemoveWait { id: self.id });
    }
}

/// Registers `edges` as one wait in the graph (refused with 409 deadlock
/// when they would close a cycle); the guard removes it.
pub(crate) async fn register_wait<'a, S: Store>(
    shared: &'a Shared<S>,
    edges: Vec<WaitEdge>,
) -> Result<WaitGuard<'a>, ApiError> {
    let id = shared
        .coord
        .ask(|reply| CoordCmd::AddWait { edges, reply })
        .await
        .ok_or_else(stopping)??;
    Ok(WaitGuard {
        coord: &shared.coord,
        id,
    })
}

/// `POST /api/v1/waits`: wait until every task ended, as edges of the
/// wait-for graph (refused at once when they would close a cycle).
pub(crate) async fn wait_tasks<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WaitDone>, ApiError> {
    let who = who(&shared, &headers).await?;
    let req: WaitRequest = json(body, "wait")?;
    if req.tasks.is_empty() || req.tasks.len() > 10_000 {
        return Err(ApiError::bad_request(
            "invalid_wait",
            "wait for 1 to 10,000 tasks",
        ));
    }
    if req.timeout_ms == 0 || req.timeout_ms > MAX_MS {
        return Err(ApiError::bad_request(
            "invalid_wait",
            "timeout_ms must be above 0 and at most a day",
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms);
    let mut bus = shared.events.subscribe();
    let mut pending: Vec<TaskId> = Vec::new();
    for t in &req.tasks {
        match shared.store.get_task(*t).await? {
            None => {
                return Err(ApiError::not_found(
                    "task_not_found",
                    format!("task {t} not found"),
                ));
            }
            Some(r) if r.state.is_terminal() => {}
            Some(_) => pending.push(*t),
        }
    }
    let edges: Vec<WaitEdge> = pending
        .iter()
        .map(|t| WaitEdge {
            from: who.node.clone(),
            to: Node::Task(*t),
            on: WaitOn::Task,
        })
        .collect();
    let _guard = if edges.is_empty() {
        None
    } else {
        Some(register_wait(&shared, edges).await?)
    };
    while !pending.is_empty() {
        tokio::select! {
            _ = bus.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(wait_timeout(format!(
                    "{} of {} task(s) still running after {} ms",
                    pending.len(), req.tasks.len(), req.timeout_ms
                )));
            }
            _ = shared.shutdown.cancelled() => return Err(stopping()),
        }
        let mut still = Vec::with_capacity(pending.len());
        for t in pending {
            match shared.store.get_task(t).await? {
                Some(r) if !r.state.is_terminal() => still.push(t),
                _ => {}
            }
        }
        pending = still;
    }
    let mut tasks = Vec::with_capacity(req.tasks.len());
    for t in &req.tasks {
        if let Some(r) = shared.store.get_task(*t).await? {
            tasks.push(WaitedTask {
                id: *t,
                state: r.state,
            });
        }
    }
    Ok(Json(WaitDone { tasks }))
}

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

mod forward;
mod handoff;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use torch_store::{SharedStore, Store};
use tracing::{error, info, warn};

pub(crate) use forward::{Leader, forward};

use crate::engine::Command;
use crate::error::HubError;
use crate::hub::Shared;

/// This hub's part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Runs the engine; `fence` is its leader fence.
    Leader { fence: u64 },
    /// Serves reads and forwards the rest to the leader (when one is known).
    Follower { leader: Option<String> },
}

/// Where this hub stands among the hubs sharing a store.
pub(crate) struct Cluster {
    /// Leader or follower; the election task is its only writer.
    pub(crate) role: watch::Sender<Role>,
    /// This hub's id among the hubs sharing a store (`<url>#<uuid>`), set
    /// when it starts serving.
    pub(crate) hub_id: OnceLock<String>,
    /// Forwards requests to the leader (followers).
    proxy: reqwest::Client,
}

impl Cluster {
    /// A hub that leads from the start (`leader`, the embedded store) or
    /// follows until it wins an election; `tls` verifies `https://` leaders.
    pub(crate) fn new(
        leader: bool,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Cluster, HubError> {
        let tls = match tls {
            Some(t) => t,
            None => {
                torch_tls::client_config(None).map_err(|e| HubError::Config(format!("tls: {e}")))?
            }
        };
        let role = if leader {
            Role::Leader { fence: 1 }
        } else {
            Role::Follower { leader: None }
        };
        Ok(Cluster {
            role: watch::channel(role).0,
            hub_id: OnceLock::new(),
            // Connecting fails fast (a leader whose machine vanished), so a
            // submission can be handed off instead of waiting; an answer
            // may take long (a large batch).
            proxy: reqwest::Client::builder()
                .tls_backend_preconfigured(rustls::ClientConfig::clone(&tls))
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(120))
                .build()
                .map_err(|e| HubError::Config(format!("http client: {e}")))?,
        })
    }

    /// Whether this hub runs the engine now.
    pub(crate) fn is_leader(&self) -> bool {
        matches!(*self.role.borrow(), Role::Leader { .. })
    }

    /// The leader's URL as a follower knows it (`None` inside: no leader
    /// elected); `None` on the leader itself.
    pub(crate) fn follower_of(&self) -> Option<Option<String>> {
        match &*self.role.borrow() {
            Role::Leader { .. } => None,
            Role::Follower { leader } => Some(leader.clone()),
        }
    }
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
        .cluster
        .hub_id
        .get_or_init(|| format!("{url}#{}", uuid::Uuid::now_v7()))
        .clone();
    let Some(store) = shared.store.shared() else {
        return;
    };
    // The election's helpers, joined when it stops.
    let mut helpers = JoinSet::new();
    helpers.spawn(handoff::run(shared.clone(), hub.clone(), shutdown.clone()));
    // Followers see the leader's writes only through the store: wake their
    // event long-polls regularly, and once a second take the count of
    // unfinished tasks from the store (load shedding of the submissions they
    // hand off).
    {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        helpers.spawn(async move {
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
    let mut last_renewed = shared.now_ms();
    let mut last_reconciled = shared.now_ms();
    loop {
        // Reap finished reconciles.
        while helpers.try_join_next().is_some() {}
        let role = shared.cluster.role.borrow().clone();
        match role {
            Role::Follower { leader } => {
                match store.acquire_leadership(hub.clone(), ttl_ms).await {
                    Ok(Some(fence)) => {
                        if become_leader(&shared, fence).await {
                            last_renewed = shared.now_ms();
                        }
                    }
                    Ok(None) => {
                        let now = match store.current_leader().await {
                            Ok(Some((id, _))) => Some(url_of(&id)),
                            _ => None,
                        };
                        if now != leader {
                            info!(leader = ?now, "following the leader");
                            shared
                                .cluster
                                .role
                                .send_replace(Role::Follower { leader: now });
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
                        last_renewed = shared.now_ms();
                        let every = shared.cfg.reconcile_every.as_millis() as u64;
                        if last_renewed.saturating_sub(last_reconciled) >= every {
                            last_reconciled = last_renewed;
                            helpers.spawn(reconcile(shared.clone()));
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
                        if shared.now_ms().saturating_sub(last_renewed) + period.as_millis() as u64
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
                let held = match &*shared.cluster.role.borrow() {
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
                break;
            }
        }
    }
    join_all(helpers).await;
}

/// Waits for the election's helpers after a stop.
async fn join_all(mut helpers: JoinSet<()>) {
    while let Some(r) = helpers.join_next().await {
        if let Err(e) = r {
            error!(error = %e, "an election helper task failed");
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
                shared.engine.send(Command::Reconcile(snapshot)).await;
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

/// Stops scheduling: the engine drops its state and sends agents away.
async fn step_down<S: Store>(shared: &Shared<S>) {
    shared
        .cluster
        .role
        .send_replace(Role::Follower { leader: None });
    shared.engine.send(Command::Deactivate).await;
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
    if !shared.engine.send(Command::Activate(snapshot)).await {
        return false;
    }
    shared.cluster.role.send_replace(Role::Leader { fence });
    shared.bump();
    true
}

/// For a follower: the `Error` answering an agent's Hello (`not_leader` with
/// the leader's URL, or `no_leader` during an election). `None` on the leader.
pub(crate) fn redirect<S>(shared: &Shared<S>) -> Option<torch_api::ws::HubMessage> {
    match &*shared.cluster.role.borrow() {
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

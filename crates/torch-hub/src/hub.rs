//! The hub: start-up, the services it runs, and the HTTP server.
//!
//! [`Hub::start`] loads the store's state and builds the services; each owns
//! its state and is reached through a handle held in [`Shared`]:
//! - the **engine** (queue, scheduler, leases; `engine`),
//! - the **lifecycle** manager (templates, nodes, autoscaler; `lifecycle`),
//! - **analysis** (task analysis and its history; `analysis`),
//! - **coordination** (locks, the wait-for graph, the help sweep; `coord`),
//! - on a shared store, the **election** (leadership, hand-offs; `leader`),
//! - **retention** (`retention`) and the report **batcher** (`batch`),
//! - the **alert evaluator** (`alerts`), which also samples the metrics.
//!
//! [`Hub::serve`] spawns them into one task tracker, serves HTTP until the
//! shutdown token fires, then stops them and joins every one. The services
//! of the next features plug in the same way, each a module with its own
//! task and handle: collaboration (peer registry, relay inboxes, locks and
//! the wait-for graph, help, teams), observability (metrics, alerts) and
//! audit. HTTP handlers only parse, authorise and ask a service.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Instant;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use torch_store::{Snapshot, Store, TokenRecord};
use tracing::info;

use crate::alerts::{Alerts, AlertsHandle};
use crate::analysis::Analyzer;
use crate::auth::{Auth, generate_token, hash_token};
use crate::clock::Clock;
use crate::config::HubConfig;
use crate::coord::{Coord, CoordHandle};
use crate::engine::{Engine, EngineHandle, Inbox};
use crate::error::HubError;
use crate::leader::Cluster;
use crate::lifecycle::{LifeHandle, Lifecycle};
use crate::metrics::Metrics;
use crate::shared::EventBus;
pub(crate) use crate::shared::Shared;
use crate::stats::Stats;

/// A started hub: its services are built; call [`Hub::serve`] to run them
/// and accept connections.
pub struct Hub<S: Store> {
    shared: Arc<Shared<S>>,
    engine: Engine<S>,
    lifecycle: Lifecycle<S>,
    coord: Coord<S>,
    alerts: Alerts<S>,
    batcher: Option<crate::batch::BatchRunner<S>>,
    /// The audit writer, when the audit log is on.
    audit: Option<crate::audit::Writer<S>>,
    /// Set on first start: the admin token, shown once.
    pub admin_token: Option<String>,
}

impl<S: Store> Hub<S> {
    /// Loads state from `store`, creates the admin token on first start (or
    /// uses `bootstrap_admin` if given and no admin exists yet), and builds
    /// the services.
    pub async fn start(
        cfg: HubConfig,
        store: S,
        bootstrap_admin: Option<String>,
    ) -> Result<Hub<S>, HubError> {
        Self::start_with(cfg, store, bootstrap_admin, Clock::system()).await
    }

    pub(crate) async fn start_with(
        cfg: HubConfig,
        store: S,
        bootstrap_admin: Option<String>,
        clock: Clock,
    ) -> Result<Hub<S>, HubError> {
        // The build's one TLS crypto provider (ring), for every HTTP client made
        // with reqwest's `rustls-no-provider`; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        cfg.validate().map_err(HubError::Config)?;
        let store = Arc::new(store);
        let secret = store
            .init_meta("hub_secret".into(), generate_token())
            .await?;
        let mut admin_token = None;
        if store.count_tokens("admin".into()).await? == 0 {
            let token = bootstrap_admin.unwrap_or_else(generate_token);
            store
                .put_token(TokenRecord {
                    hash: hash_token(&token),
                    role: "admin".into(),
                    name: "admin (first start)".into(),
                    created_ms: clock.now_ms(),
                    ..TokenRecord::default()
                })
                .await?;
            info!("created the admin token (shown once)");
            admin_token = Some(token);
        }
        // With a shared store the state is loaded when this hub wins the
        // leadership; until then it is a follower with an idle engine.
        let shared_store = store.shared().is_some();
        let snapshot = if shared_store {
            Snapshot::default()
        } else {
            store.load().await?
        };
        let (engine_handle, commands, queries) = EngineHandle::channel();
        let (batcher, batch_runner) = match shared_store {
            true => {
                let (b, r) = crate::batch::Batcher::new(store.clone());
                (Some(b), Some(r))
            }
            false => (None, None),
        };
        let (life, life_rx) = LifeHandle::channel();
        let (coord, coord_rx) = CoordHandle::channel();
        let msg = crate::messaging::Messaging::start(&*store, cfg.messages.clone()).await?;
        let (alerts, alerts_rx) = AlertsHandle::channel();
        let audit_key = crate::audit::load_key(cfg.audit.key_path.as_deref())?;
        let (audit, audit_rx) = crate::audit::Audit::new(cfg.audit.enabled);
        let shared = Arc::new(Shared {
            store: store.clone(),
            engine: engine_handle,
            life,
            coord,
            analysis: Analyzer::new(cfg.routing.taxonomy.compile()),
            auth: Auth::new(&secret, cfg.token_rate_limit, cfg.token_rate_burst),
            events: EventBus::new(),
            stats: Stats::new(),
            autonomy: crate::autonomy::Autonomy::new(),
            metrics: Metrics::new(),
            alerts,
            cluster: Cluster::new(!shared_store, cfg.tls_client.clone())?,
            batcher,
            backlog: AtomicI64::new(snapshot.backlog as i64),
            session_seq: AtomicU64::new(1),
            started: Instant::now(),
            usage: crate::usage::UsageBook::default(),
            teams: crate::teams::TeamBook::default(),
            merges: crate::merge::MergeQueue::new(
                cfg.data_dir
                    .clone()
                    .unwrap_or_else(|| std::env::temp_dir().join("torch-hub")),
            ),
            shutdown: CancellationToken::new(),
            msg,
            audit,
            clock,
            cfg,
        });
        info!(
            queued = snapshot.queued.len(),
            leased = snapshot.leased.len(),
            backlog = snapshot.backlog,
            "state loaded"
        );
        let engine = Engine::new(shared.clone(), Inbox { commands, queries }, snapshot);
        let lifecycle = Lifecycle::new(shared.clone(), life_rx);
        let coord = Coord::new(shared.clone(), coord_rx);
        let alerts = Alerts::new(shared.clone(), alerts_rx);
        let audit = audit_rx.map(|rx| crate::audit::Writer::new(shared.clone(), rx, audit_key));
        Ok(Hub {
            audit,
            shared,
            engine,
            lifecycle,
            coord,
            alerts,
            batcher: batch_runner,
            admin_token,
        })
    }

    /// The shared handles and the two services (tests run them themselves).
    #[cfg(test)]
    pub(crate) fn into_parts(self) -> (Arc<Shared<S>>, Engine<S>, Lifecycle<S>) {
        (self.shared, self.engine, self.lifecycle)
    }

    /// Creates a token with `role` (stored hashed) and returns its secret.
    pub async fn create_token(&self, role: &str, name: &str) -> Result<String, HubError> {
        let token = generate_token();
        self.shared
            .store
            .put_token(TokenRecord {
                hash: hash_token(&token),
                role: role.to_string(),
                name: name.to_string(),
                created_ms: self.shared.now_ms(),
                ..TokenRecord::default()
            })
            .await?;
        Ok(token)
    }

    /// Runs the services and serves the API and agent sessions on
    /// `listener` until `shutdown` fires; then stops the services and
    /// waits for every one of them.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), HubError> {
        self.serve_with(listener, None, shutdown).await
    }

    /// Like [`Hub::serve`], speaking TLS with `tls` on every connection.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: CancellationToken,
    ) -> Result<(), HubError> {
        self.serve_with(listener, Some(tls), shutdown).await
    }

    async fn serve_with(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: CancellationToken,
    ) -> Result<(), HubError> {
        let Hub {
            shared,
            engine,
            lifecycle,
            coord,
            alerts,
            batcher,
            audit,
            ..
        } = self;
        // The audit writer stops after every other service, so what they
        // record while stopping is appended too.
        let audit_stop = CancellationToken::new();
        let audit = audit.map(|w| tokio::spawn(w.run(audit_stop.clone())));
        let stop = shared.shutdown.clone();
        let services = TaskTracker::new();
        services.spawn(engine.run(stop.clone()));
        services.spawn(lifecycle.run(stop.clone()));
        services.spawn(coord.run(stop.clone()));
        services.spawn(crate::coord::help::run(shared.clone(), stop.clone()));
        services.spawn(crate::teams::run(shared.clone(), stop.clone()));
        services.spawn(alerts.run(services.clone(), stop.clone()));
        if let Some(b) = batcher {
            b.spawn_into(&services, stop.clone());
        }
        if shared.store.shared().is_some() {
            let addr = listener.local_addr()?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            let me = shared
                .cfg
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{addr}"));
            services.spawn(crate::leader::run(shared.clone(), me, stop.clone()));
        }
        services.spawn(crate::messaging::sweep(shared.clone()));
        if let Some(keep) = shared.cfg.retention {
            services.spawn(crate::retention::run(shared.clone(), keep, stop.clone()));
        }
        services.close();
        let app = crate::api::router(shared.clone());
        let inner = stop.clone();
        let graceful = async move {
            shutdown.cancelled().await;
            // Sessions and long polls end on the hub's own token.
            inner.cancel();
        };
        let result = match tls {
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, tls);
                axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
            }
            None => {
                // Assignments and acks are small frames sent back to back:
                // without TCP_NODELAY, Nagle's algorithm delays them by tens
                // of milliseconds.
                let listener = listener.tap_io(|tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
            }
        };
        stop.cancel();
        services.wait().await;
        audit_stop.cancel();
        if let Some(w) = audit
            && let Err(e) = w.await
        {
            tracing::error!(error = %e, "the audit writer failed");
        }
        info!("hub services stopped");
        result.map_err(HubError::Io)
    }
}

//! The hub: shared state, start-up and the HTTP server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use torch_core::TaskId;
use torch_core::routing::{History, HistoryKey, TaxonomyIndex};
use torch_store::{Snapshot, Store, TokenRecord};
use tracing::info;

use crate::auth::{TaskTokens, TokenCache, generate_token, hash_token};
use crate::clock::now_ms;
use crate::config::HubConfig;
use crate::engine::{Cmd, Engine};
use crate::error::HubError;
use crate::leader::Role;
use crate::lifecycle::{LifeCmd, Lifecycle};
use crate::stats::Stats;

/// State shared by every handler and session.
pub(crate) struct Shared<S> {
    pub(crate) store: Arc<S>,
    pub(crate) engine: mpsc::Sender<Cmd>,
    pub(crate) cfg: HubConfig,
    pub(crate) tokens: TokenCache,
    pub(crate) task_tokens: TaskTokens,
    /// Unfinished tasks (blocked, queued, leased), for load shedding.
    pub(crate) backlog: AtomicI64,
    /// Bumped after every store write, to wake event long-polls.
    pub(crate) events_gen: watch::Sender<u64>,
    pub(crate) stats: Stats,
    pub(crate) started: Instant,
    pub(crate) session_seq: AtomicU64,
    /// Fires when the hub stops: sessions and long-polls end.
    pub(crate) shutdown: CancellationToken,
    /// Outcomes of similar tasks, read by task analysis (in memory; rebuilt as tasks finish).
    pub(crate) history: Mutex<History>,
    /// History keys of tasks whose outcome is still to be recorded.
    pub(crate) history_keys: Mutex<HashMap<TaskId, HistoryKey>>,
    /// The routing taxonomy, compiled once.
    pub(crate) taxonomy: TaxonomyIndex,
    /// The lifecycle manager's inbox.
    pub(crate) life: mpsc::UnboundedSender<LifeCmd>,
    /// Leader or follower (hubs sharing a store).
    pub(crate) role: watch::Sender<Role>,
    /// Forwards requests to the leader (followers).
    pub(crate) proxy: reqwest::Client,
    /// Group commit of agents' reports for a networked store.
    pub(crate) batcher: Option<crate::batch::Batcher>,
    /// This hub's id among the hubs sharing a store (`<url>#<uuid>`), set
    /// when it starts serving.
    pub(crate) hub_id: std::sync::OnceLock<String>,
}

impl<S> Shared<S> {
    /// Wakes event followers after a write.
    pub(crate) fn bump(&self) {
        self.events_gen.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Adjusts the unfinished-task count.
    pub(crate) fn add_backlog(&self, delta: i64) {
        self.backlog.fetch_add(delta, Ordering::Relaxed);
    }

    /// Whether this hub runs the engine now.
    pub(crate) fn is_leader(&self) -> bool {
        matches!(*self.role.borrow(), Role::Leader { .. })
    }

    /// Tells the lifecycle manager something (never blocks; dropped when it is gone).
    pub(crate) fn notify_life(&self, cmd: LifeCmd) {
        let _ = self.life.send(cmd);
    }
}

impl<S: Store> Shared<S> {
    /// Cancels `task` and its dependents in the store and tells the engine
    /// (dequeue, revoke leases).
    pub(crate) async fn cancel_task(
        &self,
        task: TaskId,
        reason: String,
    ) -> Result<Vec<TaskId>, torch_store::StoreError> {
        let res = self.store.cancel(task, reason.clone(), now_ms()).await?;
        self.bump();
        self.add_backlog(-(res.tasks.len() as i64));
        let _ = self
            .engine
            .send(Cmd::Cancelled {
                tasks: res.tasks.clone(),
                revoked: res.revoked,
                reason,
            })
            .await;
        Ok(res.tasks)
    }

    /// Appends an event and wakes followers; a failure is logged, not returned.
    pub(crate) async fn event(
        &self,
        stream: &'static str,
        kind: &str,
        agent: Option<torch_core::AgentId>,
        task: Option<TaskId>,
        data: serde_json::Value,
    ) {
        let ev = torch_store::NewEvent {
            stream,
            kind: kind.to_string(),
            task,
            agent,
            data: data.to_string(),
        };
        match self.store.append_event(ev, now_ms()).await {
            Ok(()) => self.bump(),
            Err(e) => tracing::warn!(error = %e, kind, "could not record an event"),
        }
    }
}

/// A started hub: the engine runs; call [`Hub::serve`] to accept connections.
pub struct Hub<S: Store> {
    shared: Arc<Shared<S>>,
    engine: Option<Engine<S>>,
    lifecycle: Option<Lifecycle<S>>,
    /// Set on first start: the admin token, shown once.
    pub admin_token: Option<String>,
}

impl<S: Store> Hub<S> {
    /// Loads state from `store`, creates the admin token on first start (or
    /// uses `bootstrap_admin` if given and no admin exists yet), and prepares
    /// the engine.
    pub async fn start(
        cfg: HubConfig,
        store: S,
        bootstrap_admin: Option<String>,
    ) -> Result<Hub<S>, HubError> {
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
                    created_ms: now_ms(),
                })
                .await?;
            info!("created the admin token (shown once)");
            admin_token = Some(token);
        }
        // With a shared store the state is loaded when this hub wins the
        // leadership; until then it is a follower with an idle engine.
        let shared_store = store.shared().is_some();
        let (snapshot, role) = if shared_store {
            (Snapshot::default(), Role::Follower { leader: None })
        } else {
            (store.load().await?, Role::Leader { fence: 1 })
        };
        let taxonomy_index = cfg.routing.taxonomy.compile();
        let (tx, rx) = mpsc::channel(8192);
        let (events_gen, _) = watch::channel(0u64);
        let (life_tx, life_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store: store.clone(),
            engine: tx.clone(),
            cfg,
            tokens: TokenCache::default(),
            task_tokens: TaskTokens::new(&secret),
            backlog: AtomicI64::new(snapshot.backlog as i64),
            events_gen,
            stats: Stats::new(),
            started: Instant::now(),
            session_seq: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            history: Mutex::new(History::new()),
            history_keys: Mutex::new(HashMap::new()),
            taxonomy: taxonomy_index,
            life: life_tx,
            batcher: shared_store.then(|| crate::batch::Batcher::spawn(store.clone())),
            role: watch::channel(role).0,
            hub_id: std::sync::OnceLock::new(),
            // Connecting fails fast (a leader whose machine vanished), so a
            // submission can be handed off instead of waiting; an answer
            // may take long (a large batch).
            proxy: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(2))
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .map_err(|e| HubError::Config(format!("http client: {e}")))?,
        });
        info!(
            queued = snapshot.queued.len(),
            leased = snapshot.leased.len(),
            backlog = snapshot.backlog,
            "state loaded"
        );
        let engine = Engine::new(shared.clone(), rx, tx, snapshot, now_ms());
        let lifecycle = Lifecycle::new(shared.clone(), life_rx);
        Ok(Hub {
            shared,
            engine: Some(engine),
            lifecycle: Some(lifecycle),
            admin_token,
        })
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
                created_ms: now_ms(),
            })
            .await?;
        Ok(token)
    }

    /// Serves the API and agent sessions on `listener` until `shutdown` fires.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), HubError> {
        let engine = self.engine.take();
        let inner = self.shared.shutdown.clone();
        let outer = shutdown.clone();
        tokio::spawn(async move {
            outer.cancelled().await;
            inner.cancel();
        });
        let engine_task = engine.map(|e| tokio::spawn(e.run(self.shared.shutdown.clone())));
        if self.shared.store.shared().is_some() {
            let addr = listener.local_addr()?;
            let me = self
                .shared
                .cfg
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("http://{addr}"));
            tokio::spawn(crate::leader::run(
                self.shared.clone(),
                me,
                self.shared.shutdown.clone(),
            ));
        }
        if let Some(keep) = self.shared.cfg.retention {
            tokio::spawn(crate::retention::run(
                self.shared.clone(),
                keep,
                self.shared.shutdown.clone(),
            ));
        }
        let life_task = self
            .lifecycle
            .take()
            .map(|l| tokio::spawn(l.run(self.shared.shutdown.clone())));
        let app = crate::api::router(self.shared.clone());
        let sd = shutdown.clone();
        // Assignments and acks are small frames sent back to back: without
        // TCP_NODELAY, Nagle's algorithm delays them by tens of milliseconds.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { sd.cancelled().await })
            .await;
        shutdown.cancel();
        if let Some(t) = life_task
            && let Err(e) = t.await
        {
            tracing::error!(error = %e, "lifecycle task failed");
        }
        if let Some(t) = engine_task
            && let Err(e) = t.await
        {
            tracing::error!(error = %e, "engine task failed");
        }
        result.map_err(HubError::Io)
    }
}

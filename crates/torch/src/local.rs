//! Running a hub in this process and agents as child processes: shared by
//! `serve`, `up`, `demo` and `bench`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use torch_hub::{Hub, HubConfig};
use torch_store::sqlite::{SqliteOptions, SqliteStore};
#[cfg(feature = "redis")]
use torch_store_redis::{RedisOptions, RedisStore};

use crate::config::{Config, SyncMode};

/// A hub running inside this process.
pub(crate) struct LocalHub {
    /// Base URL, e.g. `http://127.0.0.1:7700`.
    pub(crate) url: String,
    /// Admin token created on first start, if this was the first start.
    pub(crate) first_admin_token: Option<String>,
    /// Extra tokens minted for this run: (role, token).
    pub(crate) session_tokens: Vec<(String, String)>,
    /// Stops the hub.
    pub(crate) shutdown: CancellationToken,
    handle: JoinHandle<Result<(), torch_hub::HubError>>,
    /// The built-in node, when it runs (it stops its agents on shutdown).
    node: Option<JoinHandle<()>>,
}

impl LocalHub {
    /// A session token of the given role.
    pub(crate) fn token(&self, role: &str) -> Option<&str> {
        self.session_tokens
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, t)| t.as_str())
    }

    /// Stops the hub and waits for it.
    pub(crate) async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(node) = self.node {
            let _ = node.await;
        }
        self.handle
            .await
            .context("hub task panicked")?
            .context("hub stopped with an error")
    }
}

/// Opens the embedded store in `data_dir`.
pub(crate) fn open_store(data_dir: &Path, sync: SyncMode) -> Result<SqliteStore> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let path = data_dir.join("torch.db");
    let opts = SqliteOptions {
        synchronous_full: sync == SyncMode::Full,
        ..SqliteOptions::default()
    };
    SqliteStore::open(&path, opts).with_context(|| format!("opening store {}", path.display()))
}

/// Starts a hub on `listen` over the configured store (`[store] url`: Redis
/// when set, else the embedded store in `data_dir`), minting tokens with the
/// given roles for this run (stored hashed like any other token).
pub(crate) async fn start_hub(
    cfg: &Config,
    hub_cfg: HubConfig,
    listen: &str,
    data_dir: &Path,
    mint: &[&str],
) -> Result<LocalHub> {
    let mut hub_cfg = hub_cfg;
    // The audit signing key lives in the data dir the hub really uses.
    hub_cfg.audit.key_path = Some(data_dir.join("audit.key"));
    hub_cfg.data_dir = Some(data_dir.to_path_buf());
    match cfg.store.url.as_deref() {
        #[cfg(feature = "redis")]
        Some(url) if is_redis_url(url) => {
            let store = open_redis(cfg, url).await?;
            start_with(cfg, hub_cfg, listen, data_dir, mint, store).await
        }
        #[cfg(not(feature = "redis"))]
        Some(url) if is_redis_url(url) => Err(crate::exit::exit(
            crate::exit::BAD_INPUT,
            format!(
                "this torch was built without the Redis store (cargo feature `redis`), so it cannot open {}: build it with the feature (on by default), or leave the store url unset for the embedded store",
                redact(url)
            ),
        )),
        Some(url) => Err(crate::exit::exit(
            crate::exit::BAD_INPUT,
            format!(
                "store url {:?} is not supported: use redis://host:port/db or rediss://…, or leave it unset for the embedded store",
                redact(url)
            ),
        )),
        None => {
            let store = open_store(data_dir, cfg.store.sync)?;
            start_with(cfg, hub_cfg, listen, data_dir, mint, store).await
        }
    }
}

/// Whether `url` names a Redis store.
fn is_redis_url(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("rediss://")
}

/// Opens the Redis store at `url` with the `[store]` settings.
#[cfg(feature = "redis")]
async fn open_redis(cfg: &Config, url: &str) -> Result<RedisStore> {
    let ca = match &cfg.store.redis_ca_file {
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("reading store.redis-ca-file {}", p.display()))?,
        ),
        None => None,
    };
    let opts = RedisOptions {
        maxlen: cfg.store.redis_maxlen,
        tls_root_ca_pem: ca,
        ..RedisOptions::default()
    };
    RedisStore::open(url, opts)
        .await
        .with_context(|| format!("opening the Redis store at {}", redact(url)))
}

/// A store URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

async fn start_with<S: torch_store::Store>(
    cfg: &Config,
    hub_cfg: HubConfig,
    listen: &str,
    data_dir: &Path,
    mint: &[&str],
    store: S,
) -> Result<LocalHub> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen} (is another hub running? use --listen)"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let scheme = if cfg.tls.server.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}");
    let want_node = cfg.lifecycle.local_node && !hub_cfg.lifecycle.templates.is_empty();
    let hub = Hub::start(hub_cfg, store, None)
        .await
        .context("starting the hub")?;
    let first_admin_token = hub.admin_token.clone();
    let mut session_tokens = Vec::new();
    for role in mint {
        let token = hub
            .create_token(role, &format!("{role} (local session)"))
            .await
            .context("storing a session token")?;
        session_tokens.push((role.to_string(), token));
    }
    let local_node = if want_node {
        Some(
            hub.create_token("node", "local node")
                .await
                .context("storing the local node's token")?,
        )
    } else {
        None
    };
    let shutdown = CancellationToken::new();
    let sd = shutdown.clone();
    let tls = cfg.tls.server.clone();
    let handle = tokio::spawn(async move {
        match tls {
            Some(tls) => hub.serve_tls(listener, tls, sd).await,
            None => hub.serve(listener, sd).await,
        }
    });
    let node = match local_node {
        Some(token) => Some(start_local_node(
            cfg,
            &url,
            token,
            data_dir,
            shutdown.clone(),
        )?),
        None => None,
    };
    Ok(LocalHub {
        node,
        url,
        first_admin_token,
        session_tokens,
        shutdown,
        handle,
    })
}

/// Runs the hub's built-in node in this process: it starts template agents
/// as child processes of this binary; they stop with the hub.
fn start_local_node(
    cfg: &Config,
    url: &str,
    token: String,
    data_dir: &Path,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>> {
    let exe = std::env::current_exe().context("locating the torch binary")?;
    let host = hostname();
    let mut nc = torch_agent::node::NodeConfig::new(url, token, format!("{host}-local"), exe);
    nc.max_agents = cfg.lifecycle.local_node_max_agents;
    nc.ca_file = cfg.tls.ca_file.clone();
    nc.work_root = data_dir.join("agents");
    nc.log_dir = Some(data_dir.join("logs"));
    std::fs::create_dir_all(data_dir.join("logs"))
        .with_context(|| format!("creating {}", data_dir.join("logs").display()))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = torch_agent::node::run_node(nc, shutdown).await {
            tracing::error!(error = %e, "local node stopped");
        }
    }))
}

/// This machine's host name (for node names), or `node`.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// How to start local agent processes.
pub(crate) struct AgentSpawn<'a> {
    pub(crate) hub: &'a str,
    pub(crate) token: &'a str,
    pub(crate) name: String,
    pub(crate) skills: &'a str,
    pub(crate) slots: u32,
    pub(crate) work_dir: PathBuf,
    pub(crate) log_file: Option<PathBuf>,
    /// Config file for the agent's `[agent]` section, if one was given.
    pub(crate) config: Option<PathBuf>,
    /// More `torch agent` arguments (e.g. `--sandbox-write DIR`).
    pub(crate) extra: Vec<String>,
}

/// Starts `torch agent` as a child process (killed when dropped).
pub(crate) fn spawn_agent(a: AgentSpawn<'_>) -> Result<Child> {
    let exe = std::env::current_exe().context("locating the torch binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("agent")
        .arg("--hub")
        .arg(a.hub)
        .arg("--name")
        .arg(&a.name)
        .arg("--skills")
        .arg(a.skills)
        .arg("--slots")
        .arg(a.slots.to_string())
        .arg("--work-dir")
        .arg(&a.work_dir)
        .args(&a.extra)
        .env("TORCH_TOKEN", a.token)
        .env_remove("TORCH_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(c) = &a.config {
        cmd.arg("--config").arg(c);
    }
    match &a.log_file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening agent log {}", p.display()))?;
            let f2 = f.try_clone().context("duplicating agent log handle")?;
            cmd.stdout(Stdio::from(f)).stderr(Stdio::from(f2));
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    cmd.spawn()
        .with_context(|| format!("starting agent {}", a.name))
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Stops child agents: SIGTERM, then SIGKILL after `grace`.
pub(crate) async fn stop_agents(children: &mut [Child], grace: std::time::Duration) {
    for c in children.iter() {
        if let Some(pid) = c.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    for c in children.iter_mut() {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(remaining, c.wait()).await.is_err() {
            let _ = c.kill().await;
        }
    }
}

/// Waits until at least `n` agents are connected to the hub behind `client`.
pub(crate) async fn wait_agents(
    client: &crate::client::Client,
    n: usize,
    limit: std::time::Duration,
    hint: &str,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let list: torch_api::rest::AgentList = client.get("/api/v1/agents").await?;
        let connected = list
            .agents
            .iter()
            .filter(|a| a.state != "disconnected")
            .count();
        if connected >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(crate::exit::exit(
                crate::exit::ERROR,
                format!("only {connected} of {n} agents connected within {limit:?}{hint}"),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

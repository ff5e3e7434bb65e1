//! The store itself: options, opening (server and layout checks, script
//! loading) and the one connection every request goes through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, Value};
use torch_store::StoreError;
use tracing::{info, warn};

use crate::consumer::StreamConsumer;
use crate::keys::Keys;
use crate::scripts;
use crate::value::map_err;

/// Version of the key layout this build writes (`{prefix}:version`).
const LAYOUT_VERSION: &str = "2";

/// Tuning for [`RedisStore::open`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Approximate bound on each event stream (`XTRIM … MAXLEN ~ maxlen`
    /// after each writing script).
    pub maxlen: u64,
    /// Key prefix; every key is `{<prefix>}:…` (one hash slot). Two stores
    /// with different prefixes share a server without seeing each other.
    pub key_prefix: String,
    /// How long one command may take before it fails as unavailable.
    pub response_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// For `rediss://`: PEM certificate(s) of the CA to trust instead of
    /// the system's roots (e.g. a self-signed dev CA).
    pub tls_root_ca_pem: Option<Vec<u8>>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            maxlen: 100_000,
            key_prefix: "torch".into(),
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            tls_root_ca_pem: None,
        }
    }
}

/// The Redis [`torch_store::Store`]. See the crate docs for the layout and
/// guarantees.
///
/// Cheap to share behind an `Arc`; any number of stores (in one process or
/// on many machines) may use the same server and prefix at once.
pub struct RedisStore {
    pub(crate) client: Client,
    pub(crate) conn: ConnectionManager,
    /// The leader lease's own connection: a renewal must not queue behind
    /// the hub's other requests on the shared one (a long backlog there
    /// would make the leader step down while Redis is fine).
    pub(crate) leader_conn: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) opts: RedisOptions,
    /// The server, without credentials, for messages.
    pub(crate) target: String,
    pub(crate) trips: AtomicU64,
    /// The leader's consumer of the hand-off stream (see `handoff.rs`).
    pub(crate) handoff: tokio::sync::Mutex<Option<StreamConsumer>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.opts.key_prefix)
            .finish()
    }
}

/// `url` without its password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Makes sure rustls has a process-wide crypto provider (ring, the one this
/// crate builds) unless the program installed one already.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, `rediss://…` for TLS,
    /// with `user:password@` if needed), checks the server (Redis 7 or
    /// newer) and the key layout version, and loads the scripts.
    ///
    /// Fails with [`StoreError::Unavailable`] when the server cannot be
    /// reached, [`StoreError::Invalid`] for a bad URL or options, and
    /// [`StoreError::Corrupt`] when the prefix holds data of a newer layout.
    pub async fn open(url: &str, opts: RedisOptions) -> Result<RedisStore, StoreError> {
        let target = redact(url);
        if opts.key_prefix.is_empty() || opts.key_prefix.contains(['{', '}']) {
            return Err(StoreError::Invalid(format!(
                "redis key prefix {:?} must be non-empty and without braces",
                opts.key_prefix
            )));
        }
        if opts.maxlen == 0 {
            return Err(StoreError::Invalid(
                "redis stream maxlen must be at least 1".into(),
            ));
        }
        let tls = url.starts_with("rediss://") || url.starts_with("valkeys://");
        if tls {
            ensure_crypto_provider();
        }
        let client = match (&opts.tls_root_ca_pem, tls) {
            (Some(ca), true) => Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            _ => Client::open(url),
        }
        .map_err(|e| StoreError::Invalid(format!("bad redis URL {target}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(opts.response_timeout))
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_number_of_retries(4)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(config.clone())
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {target}: {e}")))?;
        let leader_conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {target}: {e}")))?;
        let store = RedisStore {
            client,
            conn,
            leader_conn,
            keys: Keys::new(&opts.key_prefix),
            opts,
            target,
            trips: AtomicU64::new(0),
            handoff: tokio::sync::Mutex::new(None),
        };
        store.check_server().await?;
        info!(target = %store.target, prefix = %store.opts.key_prefix, "redis store opened");
        Ok(store)
    }

    /// Version and layout checks, warnings about settings that lose data,
    /// and script loading: one pipelined round trip (plus one for the
    /// eviction policy, which managed services may refuse to tell).
    async fn check_server(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("INFO").arg("server");
        pipe.cmd("INFO").arg("persistence");
        pipe.cmd("SET")
            .arg(self.keys.version())
            .arg(LAYOUT_VERSION)
            .arg("NX")
            .ignore();
        pipe.cmd("GET").arg(self.keys.version());
        for src in scripts::sources() {
            pipe.cmd("SCRIPT").arg("LOAD").arg(src).ignore();
        }
        let mut conn = self.conn.clone();
        let (server, persistence, version): (String, String, Option<String>) = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("checking the server", e))?;
        let field = |info: &str, name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        let server_version = field(&server, "redis_version").unwrap_or_default();
        let major: u32 = server_version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(StoreError::Unavailable(format!(
                "{} runs redis {server_version:?}; the store needs 7.0 or newer (script flags)",
                self.target
            )));
        }
        match version.as_deref() {
            Some(LAYOUT_VERSION) => {}
            other => {
                return Err(StoreError::Corrupt(format!(
                    "keys under {{{}}} on {} have layout version {other:?}; this build \
                     reads version {LAYOUT_VERSION}",
                    self.opts.key_prefix, self.target
                )));
            }
        }
        if field(&persistence, "aof_enabled").as_deref() == Some("0") {
            warn!(
                target = %self.target,
                "redis has no append-only file: acknowledged writes are lost if redis restarts \
                 (use appendonly yes, appendfsync always or everysec)"
            );
        }
        let policy: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        if let Ok(policy) = policy
            && let Some(p) = policy.get(1)
            && p != "noeviction"
        {
            warn!(
                target = %self.target,
                policy = %p,
                "redis may evict keys when full, which would lose tasks; \
                 use maxmemory-policy noeviction"
            );
        }
        Ok(())
    }

    pub(crate) fn unavailable(&self, doing: &str, e: redis::RedisError) -> StoreError {
        match map_err(e) {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("{doing} on {}: {m}", self.target))
            }
            other => other,
        }
    }

    /// Requests sent to Redis so far (script calls, commands and pipelines,
    /// each one round trip), for measuring.
    pub fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// The connection for one request.
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.conn.clone()
    }

    /// Runs a writing script with the common arguments (prefix, `now`,
    /// maxlen) followed by `args`.
    pub(crate) async fn eval(
        &self,
        script: &Script,
        now: u64,
        args: &[String],
    ) -> Result<Value, StoreError> {
        let mut inv = script.key(self.keys.fence());
        inv.arg(&self.keys.tag).arg(now).arg(self.opts.maxlen);
        for a in args {
            inv.arg(a.as_str());
        }
        let mut conn = self.conn();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("writing", e))
    }

    /// Runs the read-only script (`read.lua`): operation `op` with `args`.
    pub(crate) async fn read_script(&self, op: &str, args: &[String]) -> Result<Value, StoreError> {
        let mut inv = scripts::SCRIPTS.read.key(self.keys.fence());
        inv.arg(&self.keys.tag).arg(op);
        for a in args {
            inv.arg(a.as_str());
        }
        let mut conn = self.conn();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("reading", e))
    }

    /// Sends one command.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("reading", e))
    }
}

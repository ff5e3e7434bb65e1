//! The per-task hub socket: how a task whose network is `hub` reaches the
//! hub (for `torch progress`, `torch msg`, `torch spawn`, MCP) from inside
//! a network namespace that has only loopback.
//!
//! The agent listens on a Unix socket made for this one attempt and pipes
//! each connection to the hub's TCP address; the task's `torch` CLI finds
//! it in `TORCH_HUB_SOCKET`. Path sockets live in the file system, not in a
//! network namespace, so this is the only way out; the task-scoped token
//! still limits what the task can do at the hub. The same forwarder, pointed
//! at the agent's own message endpoint, is the task's `TORCH_AGENT_SOCKET`
//! (for `torch msg` and MCP). The socket is removed when the attempt ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpStream, UnixListener};
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Longest socket path we create (`sun_path` holds 108 bytes).
const MAX_SOCKET_PATH: usize = 100;

/// A listening per-task socket; closed and removed on drop.
pub(crate) struct HubSocket {
    path: PathBuf,
    task: JoinHandle<()>,
}

/// `host:port` of each hub URL (`http://host:port[/…]`, comma-separated).
pub(crate) fn hub_addrs(hub_url: &str) -> Vec<String> {
    hub_url
        .split(',')
        .filter_map(|u| {
            let u = u.trim();
            let rest = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("ws://"))?;
            let hostport = rest.split('/').next()?;
            (!hostport.is_empty()).then(|| hostport.to_string())
        })
        .collect()
}

/// The dir for sockets: `<work_root>/.s` when short enough, else a dir in
/// the temp dir.
pub(crate) fn socket_dir(work_root: &Path) -> PathBuf {
    let dir = work_root.join(".s");
    if dir.as_os_str().len() + 24 < MAX_SOCKET_PATH {
        dir
    } else {
        std::env::temp_dir().join(format!("torch-s-{}", std::process::id()))
    }
}

impl HubSocket {
    /// Listens on a fresh socket in `dir` and forwards every connection to
    /// the first of `hubs` that accepts.
    pub(crate) fn open(dir: &Path, hubs: Arc<Vec<String>>) -> std::io::Result<HubSocket> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.sock", SEQ.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let task = tokio::spawn(async move {
            // The connections die with the accept loop (the set is dropped
            // when the attempt's socket is).
            let mut conns = JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    Some(_) = conns.join_next() => continue,
                };
                let Ok((mut inbound, _)) = accepted else {
                    return;
                };
                let hubs = hubs.clone();
                conns.spawn(async move {
                    for addr in hubs.iter() {
                        if let Ok(mut out) = TcpStream::connect(addr.as_str()).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            return;
                        }
                    }
                    debug!("no hub reachable for a task's hub socket");
                });
            }
        });
        Ok(HubSocket { path, task })
    }

    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HubSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_hub_urls() {
        assert_eq!(
            hub_addrs("http://127.0.0.1:7700, ws://h:1/base,https://x:2"),
            ["127.0.0.1:7700", "h:1"]
        );
        assert!(socket_dir(Path::new("/w")).ends_with(".s"));
        let long = "/x".repeat(60);
        assert!(!socket_dir(Path::new(&long)).starts_with(&long));
    }
}

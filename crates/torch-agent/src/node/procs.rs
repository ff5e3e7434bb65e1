//! The node's agent processes: starting `torch agent` for a spawn order,
//! watching each child until it ends, and signalling it.
//!
//! Each child is owned by one watcher task, which is also the only place that
//! signals it. The child is reaped only when the watcher polls its `wait`, so
//! a signal sent from the watcher can never hit a recycled pid.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use torch_api::node::{
    ENV_AGENT_ID, ENV_AGENT_TEMPLATE, ENV_NODE_PID, NodeAgent, NodeMessage, SpawnOrder,
};
use torch_core::AgentId;

use super::NodeConfig;
use super::procfs::Usage;

/// Environment variable `torch agent` reads its token from (`--token`'s env).
const ENV_TOKEN: &str = "TORCH_TOKEN";
/// Orders a watcher may hold at once; more are dropped (a stop is pending).
const CTL_CAPACITY: usize = 4;

/// What the node asks a watcher to do to its child.
#[derive(Clone, Copy, Debug)]
enum Ctl {
    /// SIGTERM now, SIGKILL once `grace` has passed.
    Terminate { grace: Duration },
}

/// A child process ended (sent by its watcher).
#[derive(Debug)]
pub(crate) struct ProcExit {
    agent_id: AgentId,
    pid: u32,
    status: Result<ExitStatus, String>,
}

/// One running agent process.
struct AgentProc {
    pid: u32,
    template: String,
    started_ms: u64,
    /// A termination was ordered by the hub (reported in `Exited`).
    requested: bool,
    ctl: mpsc::Sender<Ctl>,
    workdir: PathBuf,
}

/// Every agent process this node started and has not seen end yet.
pub(crate) struct Procs {
    cfg: NodeConfig,
    agents: HashMap<AgentId, AgentProc>,
    events: mpsc::Sender<ProcExit>,
    /// Watchers and work-dir cleanups.
    pub(crate) tracker: TaskTracker,
    /// Keep agents' work dirs after they exit (`--keep-workdirs` was passed).
    keep_workdirs: bool,
}

impl Procs {
    /// `cfg` paths must be absolute; `events` needs room for one message per
    /// possible agent (each watcher sends exactly one).
    pub(crate) fn new(cfg: NodeConfig, events: mpsc::Sender<ProcExit>) -> Self {
        let keep_workdirs = cfg.extra_agent_args.iter().any(|a| a == "--keep-workdirs");
        Procs {
            agents: HashMap::new(),
            events,
            tracker: TaskTracker::new(),
            keep_workdirs,
            cfg,
        }
    }

    /// How many agent processes are alive (or not yet seen to end).
    pub(crate) fn len(&self) -> usize {
        self.agents.len()
    }

    /// Pids of every agent process.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.agents.values().map(|a| a.pid).collect()
    }

    /// Each agent with its measured usage (zero when it was not sampled).
    pub(crate) fn describe(&self, usage: &HashMap<u32, Usage>) -> Vec<NodeAgent> {
        let mut out: Vec<NodeAgent> = self
            .agents
            .iter()
            .map(|(id, a)| {
                let u = usage.get(&a.pid).copied().unwrap_or_default();
                NodeAgent {
                    agent_id: *id,
                    pid: a.pid,
                    template: a.template.clone(),
                    cpu: u.cpu,
                    rss_bytes: u.rss_bytes,
                    started_ms: a.started_ms,
                }
            })
            .collect();
        out.sort_by_key(|a| a.started_ms);
        out
    }

    /// Carries out a spawn order; the answer for the hub.
    pub(crate) fn spawn(&mut self, order: &SpawnOrder) -> NodeMessage {
        let agent_id = order.agent_id;
        if let Some(a) = self.agents.get(&agent_id) {
            // A resent order: the process is already there.
            debug!(%agent_id, pid = a.pid, "spawn order for a running agent; answering again");
            return NodeMessage::Spawned {
                agent_id,
                pid: a.pid,
            };
        }
        let max = usize::try_from(self.cfg.max_agents).unwrap_or(usize::MAX);
        if self.agents.len() >= max {
            warn!(%agent_id, max_agents = self.cfg.max_agents, "spawn refused: node at capacity");
            return NodeMessage::SpawnFailed {
                agent_id,
                error: format!(
                    "node {} runs {} agents already (max-agents {})",
                    self.cfg.name,
                    self.agents.len(),
                    self.cfg.max_agents
                ),
            };
        }
        match self.start(order) {
            Ok(pid) => NodeMessage::Spawned { agent_id, pid },
            Err(error) => {
                warn!(%agent_id, template = %order.template, %error, "spawn failed");
                NodeMessage::SpawnFailed { agent_id, error }
            }
        }
    }

    fn start(&mut self, order: &SpawnOrder) -> Result<u32, String> {
        let agent_id = order.agent_id;
        let workdir = self.cfg.work_root.join(agent_id.to_string());
        std::fs::create_dir_all(&workdir)
            .map_err(|e| format!("cannot create work dir {}: {e}", workdir.display()))?;
        let template = serde_json::to_string(&order.template_spec)
            .map_err(|e| format!("cannot encode the template: {e}"))?;
        let mut cmd = Command::new(&self.cfg.torch_exe);
        cmd.arg("agent")
            .arg("--hub")
            .arg(&self.cfg.hub_url)
            .arg("--name")
            .arg(&order.name)
            .arg("--work-dir")
            .arg(&workdir)
            .args(
                self.cfg
                    .ca_file
                    .iter()
                    .flat_map(|ca| [OsStr::new("--ca-file"), ca.as_os_str()]),
            )
            .args(&self.cfg.extra_agent_args)
            // In the environment, not on the command line, where `ps` shows it.
            .env(ENV_TOKEN, &self.cfg.token)
            .env(ENV_AGENT_ID, agent_id.to_string())
            .env(ENV_NODE_PID, std::process::id().to_string())
            .env(ENV_AGENT_TEMPLATE, template)
            .stdin(Stdio::null())
            // Own group: a Ctrl-C at the node's terminal must not reach the
            // agents directly; the node stops them in order.
            .process_group(0)
            .kill_on_drop(false);
        match &self.cfg.log_dir {
            Some(dir) => {
                let path = dir.join(format!("{agent_id}.log"));
                let log = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("cannot open log {}: {e}", path.display()))?;
                let err = log
                    .try_clone()
                    .map_err(|e| format!("cannot open log {}: {e}", path.display()))?;
                cmd.stdout(log).stderr(err);
            }
            None => {
                cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.cfg.torch_exe.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| "the started process has no pid".to_string())?;
        let (ctl_tx, ctl_rx) = mpsc::channel(CTL_CAPACITY);
        self.tracker
            .spawn(watch(agent_id, pid, child, ctl_rx, self.events.clone()));
        info!(%agent_id, pid, template = %order.template, name = %order.name, depth = order.depth, "agent process started");
        self.agents.insert(
            agent_id,
            AgentProc {
                pid,
                template: order.template.clone(),
                started_ms: unix_ms(),
                requested: false,
                ctl: ctl_tx,
                workdir,
            },
        );
        Ok(pid)
    }

    /// Carries out a terminate order: SIGTERM now, SIGKILL after `grace`.
    /// False when no such agent runs here.
    pub(crate) fn terminate(&mut self, agent_id: AgentId, grace: Duration, reason: &str) -> bool {
        let Some(a) = self.agents.get_mut(&agent_id) else {
            debug!(%agent_id, "terminate order for an agent not running here");
            return false;
        };
        info!(%agent_id, pid = a.pid, grace_ms = grace.as_millis() as u64, %reason, "terminating agent");
        a.requested = true;
        if a.ctl.try_send(Ctl::Terminate { grace }).is_err() {
            debug!(%agent_id, "a stop is already pending");
        }
        true
    }

    /// Stops every agent (node shutdown): SIGTERM, SIGKILL after `grace`.
    /// Not a hub order, so their exits are reported with `requested: false`
    /// unless the hub had asked already.
    pub(crate) fn terminate_all(&mut self, grace: Duration) {
        for a in self.agents.values() {
            let _ = a.ctl.try_send(Ctl::Terminate { grace });
        }
    }

    /// Records an exit; the message for the hub.
    pub(crate) fn on_exit(&mut self, ev: ProcExit) -> NodeMessage {
        let requested = match self.agents.remove(&ev.agent_id) {
            Some(a) => {
                if !self.keep_workdirs {
                    self.remove_workdir(ev.agent_id, a.workdir);
                }
                a.requested
            }
            None => {
                warn!(agent_id = %ev.agent_id, "exit of an unknown agent process");
                debug_assert!(false, "every watcher belongs to a recorded agent");
                false
            }
        };
        let (code, signal) = match &ev.status {
            Ok(status) => (status.code(), status.signal()),
            Err(_) => (None, None),
        };
        match &ev.status {
            Ok(_) if requested || code == Some(0) => {
                info!(agent_id = %ev.agent_id, pid = ev.pid, ?code, ?signal, requested, "agent process ended")
            }
            Ok(_) => {
                warn!(agent_id = %ev.agent_id, pid = ev.pid, ?code, ?signal, "agent process ended unexpectedly")
            }
            Err(e) => {
                warn!(agent_id = %ev.agent_id, pid = ev.pid, error = %e, "lost track of an agent process")
            }
        }
        NodeMessage::Exited {
            agent_id: ev.agent_id,
            pid: ev.pid,
            code,
            signal,
            requested,
        }
    }

    fn remove_workdir(&self, agent_id: AgentId, dir: PathBuf) {
        self.tracker.spawn(async move {
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(%agent_id, error = %e, dir = %dir.display(), "cannot remove an agent's work dir");
            }
        });
    }
}

/// Owns one child until it ends: applies stop orders, then reports the exit.
async fn watch(
    agent_id: AgentId,
    pid: u32,
    mut child: Child,
    mut ctl: mpsc::Receiver<Ctl>,
    events: mpsc::Sender<ProcExit>,
) {
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let kill_at = tokio::time::sleep_until(far);
    tokio::pin!(kill_at);
    let mut armed = false;
    let mut ctl_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|e| format!("cannot wait for the process: {e}")),
            msg = ctl.recv(), if ctl_open => match msg {
                Some(Ctl::Terminate { grace }) => {
                    // Not reaped: we have not polled `wait` since it last
                    // returned pending, so the pid is still this child's.
                    signal(agent_id, pid, Signal::SIGTERM);
                    let at = Instant::now() + grace;
                    if !armed || at < kill_at.deadline() {
                        kill_at.as_mut().reset(at);
                        armed = true;
                    }
                }
                None => ctl_open = false,
            },
            () = &mut kill_at, if armed => {
                warn!(%agent_id, pid, "agent still running after its grace; killing it");
                armed = false;
                if let Err(e) = child.start_kill() {
                    warn!(%agent_id, pid, error = %e, "SIGKILL failed");
                }
            }
        }
    };
    let exit = ProcExit {
        agent_id,
        pid,
        status,
    };
    if events.send(exit).await.is_err() {
        debug!(%agent_id, pid, "the node is gone; exit not reported");
    }
}

fn signal(agent_id: AgentId, pid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    match kill(Pid::from_raw(raw), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            warn!(%agent_id, pid, error = %e, signal = %sig, "signalling an agent process failed")
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

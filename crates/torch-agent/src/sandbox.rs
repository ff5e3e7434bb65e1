//! Task processes: a cleared environment, an own process group, and killing
//! that whole group.
//!
//! A spawned process is never reaped before its group has been SIGKILLed: the
//! exit is observed with `waitid(WNOWAIT)`, which leaves the zombie (and with
//! it the pid that is also the group id) in place, so a later `killpg` cannot
//! hit an unrelated group that reused the id.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tracing::warn;

use torch_api::ws::Assignment;
use torch_api::{ENV_ATTEMPT, ENV_CA_FILE, ENV_HUB, ENV_TASK_ID, ENV_TASK_TOKEN, ENV_WORKDIR};

use crate::config::AgentConfig;

/// Search path used when neither the agent nor the spec provides `PATH`.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment of one task process, in the order it is applied.
pub(crate) type Env = Vec<(OsString, OsString)>;

/// How a process ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Never started, or its end could not be observed; the text says why.
    Unknown(String),
}

/// What every task process is built from; shared by all runners.
pub(crate) struct Sandbox {
    /// Allowlisted variables from the agent's own environment, except `PATH`.
    base_env: Env,
    /// The agent's `PATH`, when allowlisted.
    agent_path: Option<OsString>,
    /// Directory of the `torch` binary, prepended to every task's `PATH`.
    torch_dir: Option<PathBuf>,
    supervisor: Option<PathBuf>,
    hub_url: String,
    /// The agent's own endpoint, for the task's `torch msg`.
    agent_url: Option<String>,
    /// The CA the hub is verified with, handed to tasks as `TORCH_CA_FILE`.
    ca_file: Option<PathBuf>,
}

/// The agent's own token variable: never handed to a task (which gets its
/// own task-scoped token), whatever the allowlist says.
const AGENT_TOKEN_VAR: &str = "TORCH_TOKEN";

/// The variables of `vars` that `allowlist` lets through, in allowlist order
/// and each once: exact names, or prefixes written `PREFIX*`.
fn allowed_env(allowlist: &[String], vars: impl Iterator<Item = (OsString, OsString)>) -> Env {
    let vars: Vec<(OsString, OsString)> = vars.filter(|(k, _)| k != AGENT_TOKEN_VAR).collect();
    let mut out: Env = Vec::new();
    for entry in allowlist {
        let matches = |name: &OsStr| match entry.strip_suffix('*') {
            Some(prefix) => name.to_str().is_some_and(|n| n.starts_with(prefix)),
            None => name == entry.as_str(),
        };
        for (name, value) in &vars {
            if matches(name) && !out.iter().any(|(n, _)| n == name) {
                out.push((name.clone(), value.clone()));
            }
        }
    }
    out
}

impl Sandbox {
    /// Snapshots the allowlisted part of the agent's environment (exact
    /// names, and `PREFIX*` patterns matched against every variable).
    pub(crate) fn new(cfg: &AgentConfig, agent_url: Option<String>) -> Self {
        let mut base_env = Vec::new();
        let mut agent_path = None;
        for (name, value) in allowed_env(&cfg.env_allowlist, std::env::vars_os()) {
            if name == "PATH" {
                agent_path = Some(value);
            } else {
                base_env.push((name, value));
            }
        }
        Sandbox {
            base_env,
            agent_path,
            torch_dir: cfg
                .supervisor
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_path_buf),
            supervisor: cfg.supervisor.clone(),
            hub_url: cfg.hub_url.clone(),
            agent_url,
            ca_file: cfg.ca_file.clone(),
        }
    }

    /// The value of an allowlisted variable of the agent's own environment.
    pub(crate) fn base_var(&self, name: &str) -> Option<&OsStr> {
        self.base_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// Allowlisted agent vars, then the executor's (`executor_env`: its
    /// `HOME`, `TMPDIR` and `env`), then the spec's `env`, then `PATH` (with
    /// the torch dir first), then the `TORCH_*` variables, which always win.
    pub(crate) fn task_env(&self, a: &Assignment, workdir: &Path, executor_env: &Env) -> Env {
        let mut env = self.base_env.clone();
        env.extend(executor_env.iter().cloned());
        let mut path = self.agent_path.clone();
        for (k, v) in &a.env {
            if k == "PATH" {
                path = Some(OsString::from(v));
            } else {
                env.push((OsString::from(k), OsString::from(v)));
            }
        }
        let mut full_path = OsString::new();
        if let Some(dir) = &self.torch_dir {
            full_path.push(dir);
            full_path.push(":");
        }
        full_path.push(path.as_deref().unwrap_or(OsStr::new(FALLBACK_PATH)));
        env.push(("PATH".into(), full_path));
        env.push((ENV_HUB.into(), OsString::from(&self.hub_url)));
        if let Some(ca) = &self.ca_file {
            env.push((ENV_CA_FILE.into(), ca.as_os_str().to_owned()));
        }
        env.push((ENV_TASK_ID.into(), a.task_id.to_string().into()));
        env.push((ENV_TASK_TOKEN.into(), OsString::from(&a.task_token)));
        env.push((ENV_ATTEMPT.into(), a.attempt.to_string().into()));
        env.push((ENV_WORKDIR.into(), workdir.as_os_str().to_owned()));
        if let Some(url) = &self.agent_url {
            env.push((torch_api::msg::ENV_AGENT_URL.into(), OsString::from(url)));
        }
        env
    }

    /// The directory of the `torch` binary, when known.
    pub(crate) fn torch_dir(&self) -> Option<&Path> {
        self.torch_dir.as_deref()
    }

    /// Starts a task: under the supervisor when one is configured (which
    /// applies the rlimits and sandbox layers in `sandbox_args` and writes
    /// the task's exit status to `status_file`), else directly. The task's
    /// stdin is `stdin` (a file) or `/dev/null`.
    pub(crate) fn spawn_task(
        &self,
        argv: &[String],
        env: &Env,
        workdir: &Path,
        status_file: &Path,
        stdin: Option<&Path>,
        sandbox_args: &[OsString],
    ) -> Result<Proc, String> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| "the command is empty".to_string())?;
        let mut cmd = match &self.supervisor {
            Some(sup) => {
                let mut c = Command::new(sup);
                c.arg("__supervise")
                    .arg("--status")
                    .arg(status_file)
                    .args(sandbox_args);
                if let Some(path) = stdin {
                    c.arg("--stdin").arg(path);
                }
                c.arg("--").args(argv).stdin(Stdio::piped());
                c
            }
            None => {
                let input = match stdin {
                    None => Stdio::null(),
                    Some(path) => std::fs::File::open(path)
                        .map(Stdio::from)
                        .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
                };
                let mut c = Command::new(program);
                c.args(args).stdin(input);
                c
            }
        };
        cmd.stderr(Stdio::piped());
        Proc::spawn(cmd, env, workdir).map_err(|e| match &self.supervisor {
            Some(sup) => format!("cannot start the supervisor {}: {e}", sup.display()),
            None => format!("cannot start `{program}`: {e}"),
        })
    }
}

/// Starts a success-criterion check command (directly, never supervised).
pub(crate) fn spawn_check(argv: &[String], env: &Env, workdir: &Path) -> Result<Proc, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "the check command is empty".to_string())?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::piped());
    Proc::spawn(cmd, env, workdir).map_err(|e| format!("cannot start `{program}`: {e}"))
}

/// A running process that leads its own process group.
pub(crate) struct Proc {
    child: Child,
    pgid: Pid,
    sigchld: SignalStream,
    /// The supervisor's lifeline: it kills the group when this closes.
    stdin: Option<ChildStdin>,
    /// Captured stdout, until taken.
    pub(crate) stdout: Option<ChildStdout>,
    /// Captured stderr, until taken.
    pub(crate) stderr: Option<ChildStderr>,
    reaped: bool,
}

impl Proc {
    fn spawn(mut cmd: Command, env: &Env, workdir: &Path) -> io::Result<Proc> {
        // Listen before spawning so the child's SIGCHLD cannot be missed.
        let sigchld = signal(SignalKind::child())?;
        cmd.env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(workdir)
            .stdout(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn()?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| io::Error::other("spawned process has no pid"))?;
        Ok(Proc {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            pgid: Pid::from_raw(pid),
            sigchld,
            reaped: false,
        })
    }

    /// Waits until the group leader has ended, without reaping it.
    pub(crate) async fn wait_exit(&mut self) -> Exit {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
        loop {
            match waitid(Id::Pid(self.pgid), flags) {
                Ok(WaitStatus::Exited(_, code)) => return Exit::Code(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Exit::Signal(sig as i32),
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Exit::Unknown(format!("cannot observe the process: {e}")),
            }
            if self.sigchld.recv().await.is_none() {
                return Exit::Unknown("SIGCHLD notifications stopped".into());
            }
        }
    }

    /// SIGTERM to the group, up to `grace` for the leader to end, then SIGKILL.
    pub(crate) async fn terminate(&mut self, grace: Duration) -> Exit {
        self.signal_group(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.wait_exit()).await {
            Ok(exit) => exit,
            Err(_) => {
                self.signal_group(Signal::SIGKILL);
                self.wait_exit().await
            }
        }
    }

    /// SIGKILLs whatever is left of the group, then reaps the leader.
    pub(crate) async fn reap(&mut self) {
        self.signal_group(Signal::SIGKILL);
        if let Err(e) = self.child.wait().await {
            warn!(error = %e, "reaping a task process failed");
        }
        self.reaped = true;
        self.stdin = None;
    }

    fn signal_group(&self, sig: Signal) {
        match killpg(self.pgid, sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => warn!(error = %e, signal = %sig, "signalling a task's process group failed"),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Only when a runner is torn down mid-task (runtime shutdown): never
        // leave the group running behind us.
        if !self.reaped {
            self.signal_group(Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_names_and_prefixes() {
        let vars = [
            ("PATH", "/bin"),
            ("CARGO_HOME", "/c"),
            ("CARGO_TARGET_DIR", "/t"),
            ("CARGOX", "no"),
            ("SECRET", "s"),
            ("HOME", "/h"),
            ("TORCH_TOKEN", "agent-secret"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let list: Vec<String> = [
            "HOME",
            "CARGO_*",
            "PATH",
            "CARGO_HOME",
            "MISSING",
            "TORCH_*",
        ]
        .map(String::from)
        .to_vec();
        let got = allowed_env(&list, vars.into_iter());
        let names: Vec<&str> = got.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            ["HOME", "CARGO_HOME", "CARGO_TARGET_DIR", "PATH"],
            "never the agent's token"
        );
        assert!(
            allowed_env(&["*".into()], std::env::vars_os()).len() > 1,
            "`*` passes all"
        );
    }
}

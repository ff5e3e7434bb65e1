//! Per-task cgroups, v2 or else v1, by direct writes to cgroupfs.
//!
//! Each attempt gets its own cgroup, `torch-<agent pid>-<n>`, created under
//! the agent's own cgroup (so the machine's limits on the agent still bind
//! its tasks). The supervisor joins it before anything else, so every
//! descendant of the task is in it, including those that leave the process
//! group (`setsid`, double fork); at the end of the attempt the agent kills
//! everything in it and removes it.
//!
//! With v2, the controllers must be enabled in the parent's
//! `cgroup.subtree_control`; when the agent's cgroup holds processes (the
//! "no internal processes" rule) the agent first moves itself into a leaf
//! `torch-agent-<pid>`. With v1 (or a hybrid machine whose v2 mount has no
//! controllers) each controller is its own hierarchy and the task gets a
//! directory in each. A controller that is missing is reported as missing,
//! never silently skipped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::{debug, warn};

/// The controllers tasks use.
pub(crate) const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// CFS period for the CPU bandwidth limit (100 ms, the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Which cgroup hierarchy tasks get.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// Unified hierarchy: task cgroups under `base`.
    V2 {
        /// The parent of the task cgroups (its subtree_control has the
        /// controllers in `enabled`).
        base: PathBuf,
    },
    /// Legacy hierarchies: a parent dir per controller, when mounted.
    V1 {
        /// Parent under the `memory` hierarchy.
        memory: Option<PathBuf>,
        /// Parent under the `pids` hierarchy.
        pids: Option<PathBuf>,
        /// Parent under the `cpu` hierarchy.
        cpu: Option<PathBuf>,
    },
    /// No usable cgroup hierarchy.
    None,
}

/// The machine's cgroup set-up, found once at agent start.
#[derive(Clone, Debug)]
pub(crate) struct Cgroups {
    pub(crate) backend: Backend,
    /// Usable controllers, of [`CONTROLLERS`].
    pub(crate) controllers: Vec<&'static str>,
    /// Why cgroups (or some controllers) are unavailable.
    pub(crate) problem: Option<String>,
}

/// Limits for one task's cgroup.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CgLimits {
    pub(crate) memory: Option<u64>,
    pub(crate) pids: Option<u64>,
    pub(crate) cpus: Option<f64>,
}

/// One task's cgroup (one dir per hierarchy with v1).
#[derive(Debug)]
pub(crate) struct TaskCgroup {
    /// Every dir the task joins; the first is used to list its processes.
    dirs: Vec<PathBuf>,
    v2: bool,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
}

/// One line of `/proc/self/mountinfo` that mounts a cgroup hierarchy.
struct Mount {
    root: String,
    point: PathBuf,
    v2: bool,
    options: Vec<String>,
}

fn cgroup_mounts() -> Vec<Mount> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let v2 = match r[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        out.push(Mount {
            root: l[3].to_string(),
            point: PathBuf::from(l[4]),
            v2,
            options: r[2].split(',').map(str::to_string).collect(),
        });
    }
    out
}

/// `hierarchy id → (controllers, path)` from `/proc/self/cgroup`.
fn own_cgroups() -> Vec<(Vec<String>, String)> {
    let Ok(text) = fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrl = it.next()?;
            let path = it.next()?;
            let ctrls = ctrl
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((ctrls, path.to_string()))
        })
        .collect()
}

/// The mount point joined with `path` made relative to the mount's root.
fn dir_of(m: &Mount, path: &str) -> PathBuf {
    let rel = path
        .strip_prefix(m.root.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    if rel.is_empty() {
        m.point.clone()
    } else {
        m.point.join(rel)
    }
}

fn writable_dir(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
}

impl Cgroups {
    /// Finds the hierarchy to use: v2 when the agent's v2 cgroup can hand
    /// out at least one controller, else the v1 controller hierarchies.
    /// Also removes cgroups left by agents that died mid-task.
    pub(crate) fn detect() -> Cgroups {
        let mounts = cgroup_mounts();
        let own = own_cgroups();
        let mut problems = Vec::new();
        if let Some(m) = mounts.iter().find(|m| m.v2)
            && let Some((_, path)) = own.iter().find(|(c, _)| c.is_empty())
        {
            let own_dir = dir_of(m, path);
            match v2_base(&own_dir) {
                Ok((base, controllers)) if !controllers.is_empty() => {
                    sweep(&base);
                    let missing: Vec<&str> = CONTROLLERS
                        .iter()
                        .copied()
                        .filter(|c| !controllers.contains(c))
                        .collect();
                    return Cgroups {
                        backend: Backend::V2 { base },
                        problem: (!missing.is_empty()).then(|| {
                            format!(
                                "cgroup v2 does not delegate {} to the agent",
                                missing.join(", ")
                            )
                        }),
                        controllers,
                    };
                }
                Ok(_) => problems.push(format!(
                    "cgroup v2 at {} has no controllers enabled",
                    m.point.display()
                )),
                Err(e) => problems.push(e),
            }
        }
        let mut parents: [Option<PathBuf>; 3] = [None, None, None];
        for (i, name) in CONTROLLERS.iter().enumerate() {
            let Some(m) = mounts
                .iter()
                .find(|m| !m.v2 && m.options.iter().any(|o| o == name))
            else {
                continue;
            };
            let Some((_, path)) = own.iter().find(|(c, _)| c.iter().any(|c| c == name)) else {
                continue;
            };
            let dir = dir_of(m, path);
            if writable_dir(&dir) {
                sweep(&dir);
                parents[i] = Some(dir);
            } else {
                problems.push(format!(
                    "the agent cannot create cgroups in {}",
                    dir.display()
                ));
            }
        }
        let controllers: Vec<&'static str> = CONTROLLERS
            .iter()
            .zip(&parents)
            .filter(|(_, p)| p.is_some())
            .map(|(c, _)| *c)
            .collect();
        if controllers.is_empty() {
            if problems.is_empty() {
                problems.push("no cgroup hierarchy is mounted".into());
            }
            return Cgroups {
                backend: Backend::None,
                controllers,
                problem: Some(problems.join("; ")),
            };
        }
        let [memory, pids, cpu] = parents;
        let missing: Vec<&str> = CONTROLLERS
            .iter()
            .copied()
            .filter(|c| !controllers.contains(c))
            .collect();
        if !missing.is_empty() {
            problems.push(format!("no v1 hierarchy for {}", missing.join(", ")));
        }
        Cgroups {
            backend: Backend::V1 { memory, pids, cpu },
            controllers,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }

    /// `"v2"`, `"v1"` or `"none"`.
    pub(crate) fn version(&self) -> &'static str {
        match self.backend {
            Backend::V2 { .. } => "v2",
            Backend::V1 { .. } => "v1",
            Backend::None => "none",
        }
    }

    /// Treats `controller` as unavailable (the operator disabled it).
    pub(crate) fn disable(&mut self, controller: &str) {
        self.controllers.retain(|c| *c != controller);
        if let Backend::V1 { memory, pids, cpu } = &mut self.backend {
            let slot = match controller {
                "memory" => memory,
                "pids" => pids,
                _ => cpu,
            };
            *slot = None;
        }
        let why = format!("{controller} disabled by the agent's config");
        self.problem = Some(match self.problem.take() {
            Some(p) => format!("{p}; {why}"),
            None => why,
        });
    }

    /// True when `controller` can be used.
    pub(crate) fn has(&self, controller: &str) -> bool {
        self.controllers.contains(&controller)
    }

    /// Creates a task cgroup with `limits` (each limit only where its
    /// controller exists; the caller reports the others as missing).
    pub(crate) fn create(&self, limits: &CgLimits) -> Result<Option<TaskCgroup>, String> {
        let name = format!(
            "torch-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        match &self.backend {
            Backend::None => Ok(None),
            Backend::V2 { base } => {
                let dir = base.join(&name);
                mkdir(&dir)?;
                let cg = TaskCgroup {
                    dirs: vec![dir.clone()],
                    v2: true,
                    memory: self.has("memory").then(|| dir.clone()),
                    pids: self.has("pids").then(|| dir.clone()),
                };
                let set = || -> Result<(), String> {
                    if let (Some(m), true) = (limits.memory, self.has("memory")) {
                        write(&dir.join("memory.max"), &m.to_string())?;
                        // No swap: the limit must end the task, not slow it.
                        let _ = fs::write(dir.join("memory.swap.max"), "0");
                        let _ = fs::write(dir.join("memory.oom.group"), "1");
                    }
                    if let (Some(p), true) = (limits.pids, self.has("pids")) {
                        write(&dir.join("pids.max"), &p.to_string())?;
                    }
                    if let (Some(c), true) = (limits.cpus, self.has("cpu")) {
                        let quota = cpu_quota(c);
                        write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                    }
                    Ok(())
                };
                match set() {
                    Ok(()) => Ok(Some(cg)),
                    Err(e) => {
                        cg.remove_now();
                        Err(e)
                    }
                }
            }
            Backend::V1 { memory, pids, cpu } => {
                let mut cg = TaskCgroup {
                    dirs: Vec::new(),
                    v2: false,
                    memory: None,
                    pids: None,
                };
                let result = (|| -> Result<(), String> {
                    // pids first: it lists the processes for the kill, and
                    // exists even without a limit.
                    if let Some(parent) = pids {
                        let dir = parent.join(&name);
                        mkdir(&dir)?;
                        cg.dirs.push(dir.clone());
                        if let Some(p) = limits.pids {
                            write(&dir.join("pids.max"), &p.to_string())?;
                        }
                        cg.pids = Some(dir);
                    }
                    if let (Some(parent), Some(m)) = (memory, limits.memory) {
                        let dir = parent.join(&name);
                        mkdir(&dir)?;
                        cg.dirs.push(dir.clone());
                        write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                        let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), m.to_string());
                        cg.memory = Some(dir);
                    }
                    if let (Some(parent), Some(c)) = (cpu, limits.cpus) {
                        let dir = parent.join(&name);
                        mkdir(&dir)?;
                        cg.dirs.push(dir.clone());
                        write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                        write(&dir.join("cpu.cfs_quota_us"), &cpu_quota(c).to_string())?;
                    }
                    if cg.dirs.is_empty()
                        && let Some(parent) = memory.as_ref().or(cpu.as_ref())
                    {
                        // No pids hierarchy and no limits: still track the task.
                        let dir = parent.join(&name);
                        mkdir(&dir)?;
                        cg.dirs.push(dir);
                    }
                    Ok(())
                })();
                match result {
                    Ok(()) => Ok((!cg.dirs.is_empty()).then_some(cg)),
                    Err(e) => {
                        cg.remove_now();
                        Err(e)
                    }
                }
            }
        }
    }
}

fn cpu_quota(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64) as u64).max(1000)
}

/// The v2 parent for task cgroups under the agent's own cgroup, and the
/// controllers it could enable there.
fn v2_base(own: &Path) -> Result<(PathBuf, Vec<&'static str>), String> {
    let available = fs::read_to_string(own.join("cgroup.controllers")).map_err(|e| {
        format!(
            "cannot read {}: {e}",
            own.join("cgroup.controllers").display()
        )
    })?;
    let wanted: Vec<&'static str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    if wanted.is_empty() {
        return Ok((own.to_path_buf(), wanted));
    }
    if !writable_dir(own) {
        return Err(format!(
            "the agent cannot create cgroups in {} (delegate it: systemd Delegate=yes)",
            own.display()
        ));
    }
    let enable = |dir: &Path| -> Vec<&'static str> {
        wanted
            .iter()
            .copied()
            .filter(|c| fs::write(dir.join("cgroup.subtree_control"), format!("+{c}")).is_ok())
            .collect()
    };
    let mut enabled = enable(own);
    if enabled.is_empty() {
        // "No internal processes": move the agent into a leaf of its own,
        // then enable the controllers for the task cgroups beside it.
        let leaf = own.join(format!("torch-agent-{}", std::process::id()));
        mkdir(&leaf)?;
        write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
        enabled = enable(own);
    }
    Ok((own.to_path_buf(), enabled))
}

fn mkdir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create the cgroup {}: {e}", dir.display())),
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))
}

fn pids_in(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// A counter from a flat-keyed file such as `memory.events` (`key N` lines).
fn counter(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// Kills and removes the task cgroups of agents that are gone (an agent
/// killed mid-task cannot remove its own).
fn sweep(parent: &Path) {
    let Ok(rd) = fs::read_dir(parent) else { return };
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("torch-")) else {
            continue;
        };
        let pid = rest
            .split('-')
            .next_back()
            .filter(|_| rest.starts_with("agent-"));
        let pid = pid.or_else(|| rest.split('-').next());
        let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid == std::process::id() as i32 || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let cg = TaskCgroup {
            dirs: vec![entry.path()],
            v2: false,
            memory: None,
            pids: None,
        };
        cg.kill_all_blocking();
        cg.remove_now();
        debug!(path = %entry.path().display(), "removed a cgroup left by a dead agent");
    }
}

impl TaskCgroup {
    /// The `cgroup.procs` files the supervisor writes its pid to.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// True when the OOM killer ended a process of the task.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory else {
            return false;
        };
        if self.v2 {
            counter(&dir.join("memory.events"), "oom_kill") > 0
        } else {
            counter(&dir.join("memory.oom_control"), "oom_kill") > 0
        }
    }

    /// True when a fork was refused at the process limit.
    pub(crate) fn pids_exceeded(&self) -> bool {
        self.pids
            .as_ref()
            .is_some_and(|d| counter(&d.join("pids.events"), "max") > 0)
    }

    /// SIGKILLs every process in the cgroup until it is empty (bounded).
    pub(crate) fn kill_all_blocking(&self) {
        let Some(dir) = self.dirs.first() else { return };
        if self.v2 && fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for _ in 0..200 {
            let pids = pids_in(dir);
            if pids.is_empty() {
                return;
            }
            for p in pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        warn!(path = %dir.display(), "processes kept appearing in a task cgroup");
    }

    /// One pass: SIGKILLs every process in the cgroup now (the attempt's
    /// end; [`TaskCgroup::finish`] later makes sure it is empty).
    pub(crate) fn kill_listed(&self) {
        let Some(dir) = self.dirs.first() else { return };
        if self.v2 && fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for p in pids_in(dir) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }

    /// SIGKILLs every process in the cgroup until it is empty (bounded),
    /// without blocking the runtime.
    pub(crate) async fn kill_all(&self) {
        let Some(dir) = self.dirs.first() else { return };
        if self.v2 && fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for _ in 0..500 {
            let pids = pids_in(dir);
            if pids.is_empty() {
                return;
            }
            for p in pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        warn!(path = %dir.display(), "processes kept appearing in a task cgroup");
    }

    /// Kills what is left, then removes the dirs, waiting (bounded) for the
    /// killed processes to be gone.
    pub(crate) async fn finish(&self) {
        self.kill_all().await;
        for _ in 0..250 {
            if self.try_remove() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        warn!(dirs = ?self.dirs, "a task cgroup could not be removed");
    }

    fn remove_now(&self) {
        for _ in 0..250 {
            if self.try_remove() {
                return;
            }
            std::thread::sleep(Duration::from_millis(4));
        }
    }

    /// Removes every dir that is still there; true when none is left.
    fn try_remove(&self) -> bool {
        let mut done = true;
        for d in &self.dirs {
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => done = false,
            }
        }
        done
    }
}

impl Drop for TaskCgroup {
    /// When an attempt is torn down before its end (runtime shutdown):
    /// never leave its processes running; the next agent removes the dirs
    /// if they are still busy now.
    fn drop(&mut self) {
        if self.dirs.iter().any(|d| d.exists()) {
            self.kill_listed();
            let _ = self.try_remove();
        }
    }
}

//! One attempt's sandbox: which layers to apply (as supervisor arguments),
//! the report of what the attempt gets, or the refusal of a strict policy.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use tracing::warn;

use torch_core::lifecycle::SandboxLimits;
use torch_core::sandbox::{
    FilesPolicy, NetworkPolicy, Requirement, SandboxLayers, SandboxLevel, SandboxPolicy,
    SandboxProbe, SandboxReport, TaskSandbox, min_limit,
};

use super::cgroup::{CgLimits, Cgroups, TaskCgroup};
use crate::supervise::limit_args;

/// What the agent knows about its machine, found once at start.
#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) probe: SandboxProbe,
    pub(crate) cgroups: Cgroups,
}

impl Machine {
    /// Probes this machine, treating the `disabled` layers (`files`,
    /// `network`, `memory`, `pids`, `cpu`, `syscalls`) as unavailable.
    pub(crate) fn detect(disabled: &[String]) -> Machine {
        let mut cgroups = Cgroups::detect();
        for c in super::cgroup::CONTROLLERS {
            if disabled.iter().any(|d| d == c) {
                cgroups.disable(c);
            }
        }
        let probe = super::probe::probe(&cgroups, disabled);
        Machine { probe, cgroups }
    }
}

/// Where the task lives, for the file rules.
pub(crate) struct Paths<'a> {
    pub(crate) workdir: &'a Path,
    pub(crate) tmpdir: &'a Path,
    /// The directory of the `torch` binary (read and execute).
    pub(crate) torch_dir: Option<&'a Path>,
}

/// One attempt's sandbox.
#[derive(Debug)]
pub(crate) struct Plan {
    /// `__supervise` options (limits and layers).
    pub(crate) args: Vec<OsString>,
    /// The task's cgroup, when there is one.
    pub(crate) cgroup: Option<TaskCgroup>,
    /// What the attempt gets (the supervisor may still degrade a layer it
    /// fails to apply; see [`Plan::degrade`]).
    pub(crate) report: SandboxReport,
    /// The task reaches the hub through a per-task socket.
    pub(crate) hub_socket: bool,
    /// The limits in force, for naming the one that ended the task.
    pub(crate) limits: SandboxLimits,
}

/// The limits of the agent (its template) narrowed by the task's own.
pub(crate) fn task_limits(agent: &SandboxLimits, task: Option<&TaskSandbox>) -> SandboxLimits {
    let mut l = agent.clone();
    if let Some(t) = task {
        l.memory = min_limit(l.memory, t.memory);
        l.processes = min_limit(l.processes, t.processes);
        l.cpu_secs = min_limit(l.cpu_secs, t.cpu_secs);
    }
    l
}

/// Plans an attempt: `Err` carries the refusal of a strict policy on a
/// machine that lacks a layer it needs (the probe's problem and fix).
pub(crate) fn plan(
    machine: &Machine,
    policy: &SandboxPolicy,
    limits: SandboxLimits,
    paths: &Paths<'_>,
) -> Result<Plan, String> {
    let probe = &machine.probe;
    let cg = &machine.cgroups;
    let v = |c: &str| {
        if cg.has(c) {
            format!("cgroup-{}", cg.version())
        } else {
            String::new()
        }
    };
    let mut missing: Vec<&'static str> = Vec::new();
    let mut args: Vec<OsString> = Vec::new();
    let flag = |args: &mut Vec<OsString>, f: &str, value: Option<&Path>| {
        args.push(f.into());
        if let Some(p) = value {
            args.push(p.as_os_str().to_owned());
        }
    };

    let files = match policy.files() {
        FilesPolicy::Off => "off".to_string(),
        FilesPolicy::Workdir if probe.landlock_abi > 0 => {
            flag(&mut args, "--landlock", None);
            for p in [paths.workdir, paths.tmpdir]
                .into_iter()
                .chain(policy.write.iter().map(PathBuf::as_path))
            {
                flag(&mut args, "--rw", Some(p));
            }
            for p in paths
                .torch_dir
                .into_iter()
                .chain(policy.read.iter().map(PathBuf::as_path))
            {
                flag(&mut args, "--ro", Some(p));
            }
            format!("landlock-abi-{}", probe.landlock_abi)
        }
        FilesPolicy::Workdir => {
            missing.push("files");
            "missing".into()
        }
    };

    let net = policy.network();
    let network = match net {
        NetworkPolicy::Host => "host".to_string(),
        _ if probe.network_namespaces => {
            flag(&mut args, "--netns", None);
            if net == NetworkPolicy::Hub {
                "netns+hub-socket"
            } else {
                "netns"
            }
            .to_string()
        }
        _ if probe.landlock_abi >= 4 => {
            flag(&mut args, "--deny-tcp", None);
            missing.push("network");
            "landlock-tcp".to_string()
        }
        _ => {
            missing.push("network");
            "missing".into()
        }
    };

    let cg_limits = CgLimits {
        memory: limits.memory.filter(|_| cg.has("memory")),
        pids: limits.processes.filter(|_| cg.has("pids")),
        cpus: policy.cpus.filter(|_| cg.has("cpu")),
    };
    let memory = match limits.memory {
        None => "off".to_string(),
        Some(_) if cg.has("memory") => v("memory"),
        Some(_) => {
            missing.push("memory");
            "rlimit".into()
        }
    };
    let pids = if cg.has("pids") || (limits.processes.is_none() && cg.version() != "none") {
        // The cgroup also lets the agent kill every process of the task.
        match limits.processes {
            Some(_) => v("pids"),
            None => format!("cgroup-{}", cg.version()),
        }
    } else {
        missing.push("pids");
        if limits.processes.is_some() {
            "rlimit"
        } else {
            "missing"
        }
        .to_string()
    };
    let mut cpu_parts = Vec::new();
    if policy.cpus.is_some() {
        if cg.has("cpu") {
            cpu_parts.push(v("cpu"));
        } else {
            missing.push("cpu");
        }
    }
    if limits.cpu_secs.is_some() {
        cpu_parts.push("rlimit".into());
    }
    let cpu = if cpu_parts.is_empty() {
        if missing.contains(&"cpu") {
            "missing"
        } else {
            "off"
        }
        .to_string()
    } else {
        cpu_parts.join("+")
    };
    let syscalls = if policy.files() == FilesPolicy::Off {
        // `files = "off"` is an agent CLI that brings its own sandbox (Codex
        // runs its commands under bubblewrap, which needs the user
        // namespaces and mounts the filter denies): its syscalls are left
        // to it, and the evidence says `off`.
        "off".to_string()
    } else if probe.seccomp {
        flag(&mut args, "--seccomp", None);
        "seccomp".to_string()
    } else {
        missing.push("syscalls");
        "missing".into()
    };

    if policy.requirement() == Requirement::Strict && !missing.is_empty() {
        return Err(refusal(probe, &missing));
    }
    if policy.requirement() == Requirement::Strict {
        flag(&mut args, "--strict", None);
    }

    // RLIMIT_AS only where no memory cgroup holds the limit (an address
    // space limit breaks runtimes that reserve more than they touch).
    let mut rlimits = limits.clone();
    if cg_limits.memory.is_some() {
        rlimits.memory = None;
    }

    let cgroup = match cg.create(&cg_limits) {
        Ok(c) => c,
        Err(e) if policy.requirement() == Requirement::Strict => return Err(e),
        Err(e) => {
            warn!(error = %e, "no cgroup for this task; its limits fall back to rlimits");
            rlimits.memory = limits.memory;
            None
        }
    };
    let mut layer = |name: &'static str, l: String| {
        if cgroup.is_none() && l.starts_with("cgroup") {
            if !missing.contains(&name) {
                missing.push(name);
            }
            "missing".to_string()
        } else {
            l
        }
    };
    let (memory, pids, cpu) = (
        layer("memory", memory),
        layer("pids", pids),
        layer("cpu", cpu),
    );
    args.extend(limit_args(&rlimits));
    if let Some(c) = &cgroup {
        for f in c.procs_files() {
            flag(&mut args, "--cgroup", Some(&f));
        }
    }
    let layers = SandboxLayers {
        files,
        network,
        memory,
        pids,
        cpu,
        syscalls,
    };
    Ok(Plan {
        args,
        cgroup,
        report: SandboxReport {
            level: level(&layers, &missing),
            layers,
            missing: missing.iter().map(|m| m.to_string()).collect(),
        },
        hub_socket: net == NetworkPolicy::Hub,
        limits,
    })
}

fn level(layers: &SandboxLayers, missing: &[&str]) -> SandboxLevel {
    let all = [
        &layers.files,
        &layers.network,
        &layers.memory,
        &layers.pids,
        &layers.cpu,
        &layers.syscalls,
    ];
    if all
        .iter()
        .all(|l| *l == "off" || *l == "missing" || *l == "host")
    {
        SandboxLevel::None
    } else if missing.is_empty() {
        SandboxLevel::Full
    } else {
        SandboxLevel::Partial
    }
}

/// The message of a strict refusal: each missing layer with the probe's
/// problem and fix.
fn refusal(probe: &SandboxProbe, missing: &[&str]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|layer| match probe.missing(layer) {
            Some(m) => format!("{layer}: {} (fix: {})", m.problem, m.fix),
            None => format!("{layer}: not available"),
        })
        .collect();
    format!(
        "sandbox.require = \"strict\" but this machine lacks {}",
        parts.join("; ")
    )
}

/// The report of an attempt run without the supervisor: no layer at all.
pub(crate) fn unsupervised() -> SandboxReport {
    let off = || "off".to_string();
    SandboxReport {
        level: SandboxLevel::None,
        layers: SandboxLayers {
            files: off(),
            network: off(),
            memory: off(),
            pids: off(),
            cpu: off(),
            syscalls: off(),
        },
        missing: Vec::new(),
    }
}

impl Plan {
    /// Marks `layer` missing after the supervisor failed to apply it.
    pub(crate) fn degrade(&mut self, layer: &str) {
        let r = &mut self.report;
        let slot = match layer {
            "files" => &mut r.layers.files,
            "network" => &mut r.layers.network,
            "syscalls" => &mut r.layers.syscalls,
            _ => return,
        };
        *slot = "missing".into();
        if !r.missing.iter().any(|m| m == layer) {
            r.missing.push(layer.to_string());
        }
        if r.level == SandboxLevel::Full {
            r.level = SandboxLevel::Partial;
        }
    }
}

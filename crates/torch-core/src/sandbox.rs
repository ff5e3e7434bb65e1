//! Task sandbox settings and what a task actually got.
//!
//! Three places ask for isolation: the agent's own config and its template
//! (`[sandbox]`, written by the operator: [`SandboxPolicy`]) and the task's
//! spec (`sandbox`, written by the submitter: [`TaskSandbox`]). They are
//! combined with [`SandboxPolicy::tighten`] so the most restrictive setting
//! of each wins: a task can narrow its template's sandbox, never widen it.
//!
//! The agent probes the machine at start ([`SandboxProbe`]) and records on
//! every attempt the isolation it really applied ([`SandboxReport`]), so a
//! missing layer is never a silent downgrade.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::lifecycle::opt_bytes;

/// What network a task may reach.
///
/// Ordered from most to least restrictive (`None < Hub < Host`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum NetworkPolicy {
    /// A fresh network namespace with loopback only; the hub is unreachable
    /// too (`torch progress` and friends fail with "hub unreachable").
    None,
    /// Loopback only, plus the hub through a per-task Unix socket the agent
    /// forwards (`TORCH_HUB_SOCKET`): what `torch progress`, `torch msg`,
    /// `torch spawn` and MCP need, nothing else.
    #[default]
    Hub,
    /// The host's network, unrestricted (opt-in, e.g. an LLM CLI calling its API).
    Host,
}

impl NetworkPolicy {
    /// The lowercase name used in configs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPolicy::None => "none",
            NetworkPolicy::Hub => "hub",
            NetworkPolicy::Host => "host",
        }
    }
}

/// What a task may see of the file system.
///
/// Ordered from most to least restrictive (`Workdir < Off`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FilesPolicy {
    /// Read-write in the work dir and its temp dir, read-only in the system
    /// paths and the listed `read` paths, nothing else (Landlock).
    #[default]
    Workdir,
    /// No file rules (opt-in, operator only).
    Off,
}

/// Whether a missing layer stops a task.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// Run with what the machine offers and record what is missing.
    #[default]
    BestEffort,
    /// Refuse to run (the task fails `fatal`) when a layer the policy needs
    /// is missing on this machine.
    Strict,
}

/// The operator's sandbox settings: `[agent.sandbox]` in `torch.toml` and
/// `[templates.NAME.sandbox]`. Unset fields take the defaults: files in the
/// work dir, network `hub`, best effort.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SandboxPolicy {
    /// `"strict"` refuses to run when a needed layer is missing; default
    /// `"best-effort"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require: Option<Requirement>,
    /// `"workdir"` (default) or `"off"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesPolicy>,
    /// `"none"`, `"hub"` (default) or `"host"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkPolicy>,
    /// Extra read-only paths (a toolchain, a repository).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<PathBuf>,
    /// Extra read-write paths (a shared output dir). Operator-only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<PathBuf>,
    /// CPU bandwidth in cores (`1.5` = one and a half cores), enforced by
    /// the cgroup's CPU controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

/// A task spec's `sandbox` field: it may only tighten what its agent's
/// policy and template allow (see [`SandboxPolicy::tighten`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskSandbox {
    /// `"strict"` refuses to run on an agent missing a needed layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require: Option<Requirement>,
    /// `"none"`, `"hub"` or `"host"`; never wider than the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkPolicy>,
    /// Memory limit (cgroup), `"512MiB"` or bytes; never above the template's.
    #[serde(with = "opt_bytes", skip_serializing_if = "Option::is_none", default)]
    pub memory: Option<u64>,
    /// Process limit (cgroup `pids`); never above the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// CPU seconds (`RLIMIT_CPU`); never above the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_secs: Option<u64>,
    /// CPU bandwidth in cores; never above the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

impl TaskSandbox {
    /// Why the field is invalid, if it is.
    pub fn problem(&self) -> Option<String> {
        if let Some(c) = self.cpus
            && !(c.is_finite() && c > 0.0)
        {
            return Some(format!("sandbox.cpus must be a positive number, got {c}"));
        }
        if self.processes == Some(0) || self.cpu_secs == Some(0) || self.memory == Some(0) {
            return Some("sandbox limits must be positive".into());
        }
        None
    }
}

/// The smaller of two optional limits (an absent limit is unlimited).
pub fn min_limit<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y < x { y } else { x }),
        (x, y) => x.or(y),
    }
}

impl SandboxPolicy {
    /// `self` narrowed by `other` (another operator policy, e.g. the
    /// template over the agent's config): the stricter of each setting, the
    /// union of strictness, and `other`'s paths added only when `self` has
    /// none listed (a template's paths replace an empty agent list).
    pub fn tighten(&self, other: &SandboxPolicy) -> SandboxPolicy {
        SandboxPolicy {
            require: self.require.max(other.require),
            files: min_opt(self.files, other.files),
            network: min_opt(self.network, other.network),
            read: union(&self.read, &other.read),
            write: union(&self.write, &other.write),
            cpus: min_limit(self.cpus, other.cpus),
        }
    }

    /// The policy a task gets: `self` narrowed by the task's own field.
    pub fn for_task(&self, task: Option<&TaskSandbox>) -> SandboxPolicy {
        let Some(t) = task else {
            return self.clone();
        };
        SandboxPolicy {
            require: self.require.max(t.require),
            files: self.files,
            network: min_opt(self.network, t.network),
            read: self.read.clone(),
            write: self.write.clone(),
            cpus: min_limit(self.cpus, t.cpus),
        }
    }

    /// The requirement, defaulted.
    pub fn requirement(&self) -> Requirement {
        self.require.unwrap_or_default()
    }

    /// The file policy, defaulted.
    pub fn files(&self) -> FilesPolicy {
        self.files.unwrap_or_default()
    }

    /// The network policy, defaulted.
    pub fn network(&self) -> NetworkPolicy {
        self.network.unwrap_or_default()
    }
}

fn min_opt<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn union(a: &[PathBuf], b: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = a.to_vec();
    for p in b {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// What the agent found on its machine at start (sent in `hello`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxProbe {
    /// Landlock ABI level, 0 when Landlock is unavailable.
    pub landlock_abi: u32,
    /// New user namespaces can be created.
    pub user_namespaces: bool,
    /// New network namespaces can be created (directly as root, or inside a
    /// user namespace).
    pub network_namespaces: bool,
    /// Seccomp filters can be installed.
    pub seccomp: bool,
    /// The cgroup hierarchy tasks get: `"v2"`, `"v1"` or `"none"`.
    pub cgroup: String,
    /// Controllers usable for task cgroups (of `memory`, `pids`, `cpu`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
    /// Each missing layer with what to change on the machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingLayer>,
}

/// A layer the machine cannot provide, and how to get it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingLayer {
    /// One of `files`, `network`, `memory`, `pids`, `cpu`, `syscalls`.
    pub layer: String,
    /// What is wrong.
    pub problem: String,
    /// What to change on the machine.
    pub fix: String,
}

impl SandboxProbe {
    /// The missing entry for `layer`, if the machine lacks it.
    pub fn missing(&self, layer: &str) -> Option<&MissingLayer> {
        self.missing.iter().find(|m| m.layer == layer)
    }
}

/// How well an attempt was isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxLevel {
    /// Every layer the policy asked for was applied.
    Full,
    /// Some layers were missing on this machine (listed in `missing`).
    Partial,
    /// No layer was applied.
    None,
    /// Anything newer than this build understands.
    #[serde(other)]
    Unknown,
}

impl SandboxLevel {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxLevel::Full => "full",
            SandboxLevel::Partial => "partial",
            SandboxLevel::None => "none",
            SandboxLevel::Unknown => "unknown",
        }
    }
}

/// What each layer was for one attempt: the mechanism used (`landlock-abi-7`,
/// `netns`, `cgroup-v1`, `seccomp`, `rlimit`…), `off` when the policy did
/// not ask for it, `missing` when the machine could not provide it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLayers {
    /// File access.
    pub files: String,
    /// Network access.
    pub network: String,
    /// Memory limit.
    pub memory: String,
    /// Process limit.
    pub pids: String,
    /// CPU limit.
    pub cpu: String,
    /// System-call filter.
    pub syscalls: String,
}

/// The isolation an attempt actually got (in its evidence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// Overall level.
    pub level: SandboxLevel,
    /// Each layer.
    pub layers: SandboxLayers,
    /// Layers the policy asked for that the machine lacked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.layers;
        write!(
            f,
            "{} (files {}, network {}, memory {}, pids {}, cpu {}, syscalls {})",
            self.level.as_str(),
            l.files,
            l.network,
            l.memory,
            l.pids,
            l.cpu,
            l.syscalls
        )?;
        if !self.missing.is_empty() {
            write!(f, "; missing: {}", self.missing.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_restrictive_setting_wins() {
        let agent = SandboxPolicy {
            network: Some(NetworkPolicy::Host),
            read: vec!["/opt/a".into()],
            ..SandboxPolicy::default()
        };
        let template = SandboxPolicy {
            network: Some(NetworkPolicy::Hub),
            files: Some(FilesPolicy::Off),
            require: Some(Requirement::Strict),
            cpus: Some(2.0),
            read: vec!["/opt/b".into()],
            ..SandboxPolicy::default()
        };
        let p = agent.tighten(&template);
        assert_eq!(p.network(), NetworkPolicy::Hub);
        assert_eq!(p.files(), FilesPolicy::Off, "only one side set it");
        assert_eq!(p.requirement(), Requirement::Strict);
        assert_eq!(p.read.len(), 2);

        let wide = TaskSandbox {
            network: Some(NetworkPolicy::Host),
            cpus: Some(8.0),
            ..TaskSandbox::default()
        };
        let t = p.for_task(Some(&wide));
        assert_eq!(t.network(), NetworkPolicy::Hub, "a task cannot widen");
        assert_eq!(t.cpus, Some(2.0));
        let narrow = TaskSandbox {
            network: Some(NetworkPolicy::None),
            cpus: Some(0.5),
            ..TaskSandbox::default()
        };
        let t = p.for_task(Some(&narrow));
        assert_eq!(t.network(), NetworkPolicy::None);
        assert_eq!(t.cpus, Some(0.5));
        assert_eq!(SandboxPolicy::default().network(), NetworkPolicy::Hub);
        assert_eq!(min_limit(Some(3), None), Some(3));
        assert_eq!(min_limit(Some(3), Some(2)), Some(2));

        let json = r#"{"network":"none","memory":"64MiB","processes":32}"#;
        let t: TaskSandbox = serde_json::from_str(json).unwrap();
        assert_eq!(t.memory, Some(64 << 20));
        assert!(t.problem().is_none());
        assert!(serde_json::from_str::<TaskSandbox>(r#"{"files":"off"}"#).is_err());
        let bad = TaskSandbox {
            cpus: Some(0.0),
            ..TaskSandbox::default()
        };
        assert!(bad.problem().is_some());
    }
}

//! The task sandbox: probing the machine, planning each attempt's layers
//! and applying them.
//!
//! - `probe`: which layers this machine offers (sent in `hello`, printed by
//!   `torch agent --check-sandbox`).
//! - `plan`: one attempt's layers from the policy, the limits and the
//!   probe: supervisor arguments, the cgroup, the report, or a strict
//!   refusal.
//! - `cgroup`: per-task cgroups (v2, else v1): limits, kill-all, OOM and
//!   pids events.
//! - `files`: Landlock (files, TCP fallback, signal and abstract-socket
//!   scoping), applied by the supervisor.
//! - `netns`: a private network namespace with loopback, applied by the
//!   supervisor.
//! - `syscalls`: the seccomp filter, built and applied by the supervisor.
//! - `hubsock`: the per-task Unix socket forwarded to the hub.
//! - `verdict`: naming the limit or the wall that ended an attempt.

pub(crate) mod cgroup;
pub(crate) mod files;
pub(crate) mod hubsock;
pub(crate) mod netns;
pub(crate) mod plan;
pub(crate) mod probe;
pub(crate) mod syscalls;
pub(crate) mod verdict;

pub use probe::render;

/// Probes this machine's sandbox layers (what `hello` reports).
pub fn probe_machine() -> torch_core::sandbox::SandboxProbe {
    plan::Machine::detect(&[]).probe
}

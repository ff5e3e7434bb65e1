//! Naming what ended a failed attempt: a limit (`oom`, `pids_exceeded`,
//! `cpu_time`) from the cgroup's event counters and the CPU time the
//! supervisor measured, or a sandbox wall (`sandbox_denied`) from the error
//! the kernel gave the task.

use torch_core::OutcomeKind;
use torch_core::lifecycle::{SandboxLimits, format_bytes};
use torch_core::sandbox::SandboxReport;

use super::cgroup::TaskCgroup;
use crate::sandbox::Exit;

/// `SIGXCPU`: the soft `RLIMIT_CPU` was reached.
const SIGXCPU: i32 = 24;

/// Error texts the kernel's refusals print as (through `strerror`), each
/// with the layer that can cause it.
const DENIALS: &[(&str, &str)] = &[
    ("Permission denied", "files"),
    ("Read-only file system", "files"),
    ("Operation not permitted", "syscalls"),
    ("Network is unreachable", "network"),
    ("Connection refused", "network"),
    ("Cannot assign requested address", "network"),
    ("Bad system call", "syscalls"),
];

/// What the attempt saw, for the verdict.
pub(crate) struct Seen<'a> {
    pub(crate) exit: &'a Exit,
    /// CPU time of the task's processes, from the supervisor.
    pub(crate) cpu_ms: Option<u64>,
    pub(crate) cgroup: Option<&'a TaskCgroup>,
    pub(crate) limits: &'a SandboxLimits,
    pub(crate) report: &'a SandboxReport,
    pub(crate) stderr_tail: &'a str,
    pub(crate) stdout_tail: &'a str,
}

/// The limit or wall that explains a failed attempt, if any.
pub(crate) fn name_the_limit(s: &Seen<'_>) -> Option<(OutcomeKind, String)> {
    if let Some(cg) = s.cgroup {
        if cg.oom_killed() {
            let limit = s.limits.memory.map(format_bytes).unwrap_or_default();
            return Some((
                OutcomeKind::Oom,
                format!("killed by the out-of-memory killer at its memory limit {limit}"),
            ));
        }
        if cg.pids_exceeded() {
            let limit = s.limits.processes.unwrap_or_default();
            return Some((
                OutcomeKind::PidsExceeded,
                format!("hit its process limit ({limit} processes)"),
            ));
        }
    }
    if let Some(secs) = s.limits.cpu_secs {
        let spent = s.cpu_ms.is_some_and(|ms| ms + 50 >= secs * 1000);
        if spent || *s.exit == Exit::Signal(SIGXCPU) {
            return Some((
                OutcomeKind::CpuTime,
                format!("used up its CPU time ({secs} s)"),
            ));
        }
    }
    denial(s)
}

fn layer_on(report: &SandboxReport, layer: &str) -> bool {
    let l = &report.layers;
    let v = match layer {
        "files" => &l.files,
        "network" => &l.network,
        _ => &l.syscalls,
    };
    v != "off" && v != "missing" && v != "host"
}

fn denial(s: &Seen<'_>) -> Option<(OutcomeKind, String)> {
    for text in [s.stderr_tail, s.stdout_tail] {
        for line in text.lines().rev() {
            for (needle, layer) in DENIALS {
                if line.contains(needle) && layer_on(s.report, layer) {
                    let line: String = line.trim().chars().take(200).collect();
                    return Some((
                        OutcomeKind::SandboxDenied,
                        format!("sandbox denied ({layer}): {line}"),
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use torch_core::sandbox::{SandboxLayers, SandboxLevel};

    #[test]
    fn limits_and_walls_are_named() {
        let report = SandboxReport {
            level: SandboxLevel::Full,
            layers: SandboxLayers {
                files: "landlock-abi-7".into(),
                network: "netns".into(),
                memory: "off".into(),
                pids: "cgroup-v1".into(),
                cpu: "rlimit".into(),
                syscalls: "seccomp".into(),
            },
            missing: Vec::new(),
        };
        let limits = SandboxLimits {
            cpu_secs: Some(1),
            ..SandboxLimits::default()
        };
        let exit = Exit::Code(1);
        let seen = |stderr: &'static str, cpu_ms: Option<u64>| Seen {
            exit: &exit,
            cpu_ms,
            cgroup: None,
            limits: &limits,
            report: &report,
            stderr_tail: stderr,
            stdout_tail: "",
        };
        let (k, why) = name_the_limit(&seen("", Some(1000))).unwrap();
        assert_eq!(
            (k, why.as_str()),
            (OutcomeKind::CpuTime, "used up its CPU time (1 s)")
        );
        let (k, why) = name_the_limit(&seen("cat: /root/x: Permission denied\n", Some(3))).unwrap();
        assert_eq!(k, OutcomeKind::SandboxDenied);
        assert!(why.contains("(files)") && why.contains("/root/x"), "{why}");
        let (k, _) = name_the_limit(&seen("unshare: Operation not permitted", None)).unwrap();
        assert_eq!(k, OutcomeKind::SandboxDenied);
        assert!(name_the_limit(&seen("plain failure", Some(3))).is_none());
    }
}

//! The system-call layer: a seccomp filter refusing what a task never needs.
//!
//! Refused with `EPERM`: mounting and pivoting, `ptrace` and cross-process
//! memory access, kexec, kernel modules, swap, reboot, BPF, new namespaces
//! (`unshare`, `setns`, and `clone` with any `CLONE_NEW*` flag — so no new
//! user namespace inside the sandbox) and `open_by_handle_at`. `clone3` gets
//! `ENOSYS`, because its flags sit in memory a filter cannot read; the C
//! library then falls back to `clone`, whose flags the filter does check.
//! Everything else is allowed. The programs are built by the supervisor
//! before it restricts itself, then installed last (after Landlock). A root
//! supervisor also drops the dangerous capabilities from the bounding set
//! (`CAP_SYS_PTRACE`, `CAP_SYS_ADMIN`, …), so a root task cannot read the
//! agent's memory or environment through `/proc` either.

use std::collections::BTreeMap;

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Every `CLONE_NEW*` flag.
const CLONE_NEW_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME
];

/// Syscalls refused outright.
const DENIED: &[i64] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_bpf,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_open_by_handle_at,
];

/// The two filters (refusals with `EPERM`, then `clone3` with `ENOSYS`).
pub(crate) struct Filters {
    deny: BpfProgram,
    clone3: BpfProgram,
}

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))
}

/// Builds the filters for this machine's architecture.
pub(crate) fn build() -> Result<Filters, String> {
    let err = |e: seccompiler::BackendError| format!("seccomp: {e}");
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&n| (n, Vec::new())).collect();
    let mut clone_rules = Vec::new();
    for flag in CLONE_NEW_FLAGS {
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(err)?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(err)?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )
    .map_err(err)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(err)?;
    Ok(Filters {
        deny: deny.try_into().map_err(err)?,
        clone3: clone3.try_into().map_err(err)?,
    })
}

impl Filters {
    /// Installs both on the calling thread (sets `no_new_privs`).
    pub(crate) fn apply(&self) -> Result<(), String> {
        seccompiler::apply_filter(&self.deny).map_err(|e| format!("seccomp: {e}"))?;
        seccompiler::apply_filter(&self.clone3).map_err(|e| format!("seccomp: {e}"))
    }
}

/// Capabilities a task never keeps, even as root: dropped from the
/// bounding set, so the task's `execve` leaves them out of its permitted
/// set (reading another process's memory or environment, namespaces and
/// mounts, raw devices, modules, the clock).
const DROPPED_CAPS: &[caps::Capability] = &[
    caps::Capability::CAP_SYS_PTRACE,
    caps::Capability::CAP_SYS_ADMIN,
    caps::Capability::CAP_SYS_MODULE,
    caps::Capability::CAP_SYS_RAWIO,
    caps::Capability::CAP_SYS_BOOT,
    caps::Capability::CAP_SYS_TIME,
    caps::Capability::CAP_NET_ADMIN,
    caps::Capability::CAP_DAC_READ_SEARCH,
    caps::Capability::CAP_MKNOD,
    caps::Capability::CAP_MAC_ADMIN,
    caps::Capability::CAP_MAC_OVERRIDE,
    caps::Capability::CAP_BPF,
    caps::Capability::CAP_PERFMON,
    caps::Capability::CAP_AUDIT_CONTROL,
    caps::Capability::CAP_SYSLOG,
];

/// Drops [`DROPPED_CAPS`] from the bounding set (needs `CAP_SETPCAP`, so
/// only a root supervisor does it; others hold none of them anyway).
pub(crate) fn drop_capabilities() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    for &c in DROPPED_CAPS {
        caps::drop(None, caps::CapSet::Bounding, c).map_err(|e| format!("dropping {c}: {e}"))?;
    }
    Ok(())
}

/// True when a seccomp filter can be installed here, found by installing a
/// harmless one on a short-lived thread of our own.
pub(crate) fn probe() -> bool {
    let trial = std::thread::Builder::new()
        .name("seccomp-probe".into())
        .spawn(|| build().and_then(|f| f.apply()).is_ok());
    trial.ok().and_then(|t| t.join().ok()).unwrap_or(false)
}

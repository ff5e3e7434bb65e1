//! The file (and fallback TCP) layer: a Landlock ruleset the supervisor
//! applies to itself right before it starts the task, which inherits it.
//!
//! Read-write: the work dir, its temp dir and the operator's `write` paths.
//! Read and execute: the system paths, the `torch` binary's directory and
//! the operator's `read` paths. Everything else (the agent's and hub's data
//! dirs, other tasks' work dirs, `$HOME`) is out of reach. The ruleset also
//! scopes signals and abstract Unix sockets to the sandbox (ABI 6), so a task
//! can neither signal the agent nor reach an abstract socket outside, and
//! Landlock denies `ptrace` of any process outside the sandbox.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};

/// The newest ABI whose rights we ask for (the crate and kernel negotiate
/// down, and the result says what was enforced).
const TARGET_ABI: ABI = ABI::V6;

/// System paths a task may read and execute.
pub(crate) const SYSTEM_READ: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/dev",
    "/run/systemd/resolve",
];

/// Device files a task may also write.
const DEVICES_RW: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/pts",
    "/dev/ptmx",
];

/// What the supervisor restricts the task to.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FileRules {
    /// Read-write trees.
    pub(crate) write: Vec<PathBuf>,
    /// Read-only (and executable) trees, beyond [`SYSTEM_READ`].
    pub(crate) read: Vec<PathBuf>,
}

/// What Landlock enforced.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The kernel's Landlock ABI.
    pub(crate) abi: i32,
    /// Every requested right was enforced.
    pub(crate) full: bool,
}

fn abi_number(status: LandlockStatus) -> i32 {
    match status {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.unwrap_or(effective_abi as i32),
        _ => 0,
    }
}

/// Restricts the calling thread (and the processes it starts). `files`:
/// apply the file rules; `deny_tcp`: refuse every TCP bind and connect
/// (the network fallback where namespaces are unavailable; needs ABI 4).
pub(crate) fn restrict(rules: Option<&FileRules>, deny_tcp: bool) -> Result<Applied, String> {
    let err = |e: landlock::RulesetError| format!("landlock: {e}");
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::BestEffort);
    if rules.is_some() {
        ruleset = ruleset
            .handle_access(AccessFs::from_all(TARGET_ABI))
            .map_err(err)?;
    }
    if deny_tcp {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(err)?;
    }
    ruleset = ruleset.scope(Scope::from_all(TARGET_ABI)).map_err(err)?;
    let mut created = ruleset.create().map_err(err)?;
    if let Some(r) = rules {
        let read = AccessFs::from_read(TARGET_ABI);
        let all = AccessFs::from_all(TARGET_ABI);
        let system = SYSTEM_READ.iter().map(Path::new);
        created = created
            .add_rules(path_beneath_rules(system, read))
            .map_err(err)?
            .add_rules(path_beneath_rules(&r.read, read))
            .map_err(err)?
            .add_rules(path_beneath_rules(DEVICES_RW.iter().map(Path::new), all))
            .map_err(err)?
            .add_rules(path_beneath_rules(&r.write, all))
            .map_err(err)?;
    }
    let status = created.restrict_self().map_err(err)?;
    let abi = abi_number(status.landlock);
    match status.ruleset {
        RulesetStatus::NotEnforced => Err(format!(
            "landlock is not enforced (kernel ABI {abi}): enable it (lsm=landlock,... on the kernel command line)"
        )),
        RulesetStatus::PartiallyEnforced => Ok(Applied { abi, full: false }),
        RulesetStatus::FullyEnforced => Ok(Applied { abi, full: true }),
    }
}

/// The kernel's Landlock ABI, found by restricting a short-lived thread of
/// our own (Landlock binds only the calling thread): 0 when unavailable.
pub(crate) fn probe_abi() -> i32 {
    let trial = std::thread::Builder::new()
        .name("landlock-probe".into())
        .spawn(|| {
            Ruleset::default()
                .handle_access(AccessFs::from_all(ABI::V1))
                .and_then(|r| r.create())
                .and_then(|r| r.restrict_self())
                .map(|s| abi_number(s.landlock))
                .unwrap_or(0)
        });
    trial.ok().and_then(|t| t.join().ok()).unwrap_or(0)
}

//! The capability probe: which sandbox layers this machine offers, each
//! found by trying it where trying is cheap and harmless (on a short-lived
//! thread of the agent), with what to change for each missing one.

use std::fs;

use nix::sched::{CloneFlags, unshare};
use nix::unistd::getuid;

use torch_core::sandbox::{MissingLayer, SandboxProbe};

use super::cgroup::Cgroups;
use super::{files, syscalls};

fn read_num(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether new user namespaces can be created, and why not.
fn user_namespaces() -> Result<(), String> {
    if read_num("/proc/sys/user/max_user_namespaces") == Some(0) {
        return Err("user.max_user_namespaces is 0".into());
    }
    if getuid().is_root() {
        return Ok(());
    }
    if read_num("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return Err("kernel.unprivileged_userns_clone is 0".into());
    }
    if read_num("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return Err("AppArmor restricts unprivileged user namespaces".into());
    }
    Ok(())
}

/// Whether a network namespace can be created: as root, by creating one on
/// a short-lived thread (namespaces are per thread); otherwise it needs a
/// user namespace.
fn network_namespaces(userns: &Result<(), String>) -> Result<(), String> {
    if !getuid().is_root() {
        return userns.clone();
    }
    let trial = std::thread::Builder::new()
        .name("netns-probe".into())
        .spawn(|| unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string()));
    match trial.map(|t| t.join()) {
        Ok(Ok(r)) => r.map_err(|e| format!("unshare(CLONE_NEWNET) failed: {e}")),
        _ => Err("cannot start a probe thread".into()),
    }
}

const CGROUP_FIX: &str = "use cgroup v2 with the controller enabled and delegated to the agent \
    (systemd: Delegate=yes on the agent's unit; containers: --cgroupns=private with a writable \
    /sys/fs/cgroup), or mount the v1 controller; the agent must be able to create directories \
    in its own cgroup";

/// Probes every layer; the `disabled` ones are reported missing.
pub(crate) fn probe(cgroups: &Cgroups, disabled: &[String]) -> SandboxProbe {
    let off = |layer: &str| disabled.iter().any(|d| d == layer);
    const OFF: &str = "disabled by the agent's config (--sandbox-disable)";
    let landlock_abi = if off("files") { 0 } else { files::probe_abi() };
    let userns = user_namespaces();
    let netns = if off("network") {
        Err(OFF.to_string())
    } else {
        network_namespaces(&userns)
    };
    let seccomp = !off("syscalls") && syscalls::probe();
    let mut missing = Vec::new();
    let mut miss = |layer: &str, problem: String, fix: &str| {
        missing.push(MissingLayer {
            layer: layer.into(),
            problem,
            fix: fix.into(),
        })
    };
    if landlock_abi == 0 {
        miss(
            "files",
            "Landlock is not available".into(),
            "boot a kernel >= 5.13 built with CONFIG_SECURITY_LANDLOCK=y and `landlock` in its \
             `lsm=` list (check /sys/kernel/security/lsm)",
        );
    }
    if let Err(why) = &netns {
        let fallback = if landlock_abi >= 4 {
            " (Landlock ABI >= 4 still refuses TCP; UDP stays open)"
        } else {
            ""
        };
        miss(
            "network",
            format!("cannot create network namespaces: {why}{fallback}"),
            "run the agent as root, or allow unprivileged user namespaces \
             (sysctl user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1 \
             kernel.apparmor_restrict_unprivileged_userns=0); in Docker, a seccomp profile \
             that allows unshare/clone of namespaces",
        );
    }
    for c in super::cgroup::CONTROLLERS {
        if !cgroups.has(c) {
            let why = cgroups.problem.clone().unwrap_or_default();
            let layer = if c == "cpu" { "cpu" } else { c };
            miss(
                layer,
                format!("no {c} cgroup controller: {why}"),
                CGROUP_FIX,
            );
        }
    }
    if !seccomp {
        miss(
            "syscalls",
            "seccomp filters cannot be installed".into(),
            "use a kernel built with CONFIG_SECCOMP_FILTER=y; inside a container, a runtime \
             that lets processes add their own filters",
        );
    }
    SandboxProbe {
        landlock_abi: u32::try_from(landlock_abi).unwrap_or(0),
        user_namespaces: userns.is_ok(),
        network_namespaces: netns.is_ok(),
        seccomp,
        cgroup: cgroups.version().into(),
        controllers: cgroups.controllers.iter().map(|c| c.to_string()).collect(),
        missing,
    }
}

/// The probe as text for `torch agent --check-sandbox`.
pub fn render(p: &SandboxProbe) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = String::new();
    let landlock = if p.landlock_abi == 0 {
        "no".to_string()
    } else {
        format!("ABI {}", p.landlock_abi)
    };
    out.push_str(&format!("landlock            {landlock}\n"));
    out.push_str(&format!("user namespaces     {}\n", yes(p.user_namespaces)));
    out.push_str(&format!(
        "network namespaces  {}\n",
        yes(p.network_namespaces)
    ));
    out.push_str(&format!("seccomp             {}\n", yes(p.seccomp)));
    let ctrls = if p.controllers.is_empty() {
        String::new()
    } else {
        format!(" ({})", p.controllers.join(", "))
    };
    out.push_str(&format!("cgroup              {}{ctrls}\n", p.cgroup));
    if p.missing.is_empty() {
        out.push_str("\nevery layer is available\n");
    } else {
        for m in &p.missing {
            out.push_str(&format!(
                "\nmissing {}: {}\n  fix: {}\n",
                m.layer, m.problem, m.fix
            ));
        }
    }
    out
}

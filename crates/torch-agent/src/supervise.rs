//! The per-task supervisor, run as
//! `torch __supervise --status FILE [OPTIONS] -- ARGV…` with the options
//! `--stdin FILE` (the task's stdin instead of `/dev/null`), the limits
//! `--cpu-secs N`, `--memory BYTES`, `--open-files N`, `--processes N`, and
//! the sandbox layers `--cgroup PROCS_FILE` (repeatable), `--netns`,
//! `--deny-tcp`, `--landlock` with `--rw PATH` / `--ro PATH` (repeatable),
//! `--seccomp` and `--strict` (a layer that cannot be applied fails the
//! task instead of being reported as missing).
//!
//! The agent starts it as the leader of a fresh process group, with the task's
//! environment and work dir already applied, stdout/stderr on the capture
//! pipes and stdin on a pipe whose write end only the agent holds. The
//! supervisor then:
//!
//! 0. opens FILE (it lies outside the task's writable paths), joins the
//!    task's cgroups (so every descendant is in them, whatever it does to
//!    its process group), and enters a private network namespace (first,
//!    while single-threaded: a user namespace needs that);
//! 1. blocks SIGTERM/SIGINT/SIGHUP/SIGQUIT for itself (a group SIGTERM must
//!    reach the task, while the supervisor stays to report the task's status;
//!    `std::process::Command` resets the signal mask in the child);
//! 2. watches its stdin on a thread: EOF means the agent died, so it SIGKILLs
//!    the whole group, itself included;
//! 3. sets the limits on itself with `setrlimit` (the task inherits them; a
//!    limit that cannot be set fails the task rather than run it unconfined):
//!    `RLIMIT_CPU` (SIGXCPU at N seconds, SIGKILL one second later),
//!    `RLIMIT_AS`, `RLIMIT_NOFILE` and `RLIMIT_NPROC` (which counts every
//!    process of the user and does not bind root);
//! 4. applies Landlock (files, TCP fallback, scoping), then the seccomp
//!    filter (built before), to itself; the task inherits both;
//! 5. spawns ARGV in the same process group, stdin `/dev/null` (or the
//!    `--stdin` file), stdout/stderr inherited;
//! 6. when the task exits, writes `exit N`, `signal N` (or `error MESSAGE` if
//!    the task could not start) to FILE, then `cpu_ms N` (the CPU time of
//!    the task's waited-for processes) and a `degraded LAYER WHY` line for
//!    each layer it could not apply, then SIGKILLs the group, so no
//!    background child outlives the task even if the agent is gone by now
//!    (the agent then kills the whole cgroup).
//!
//! The agent observes the supervisor's death without reaping it, kills the
//! group again (harmless), reads FILE and only then reaps.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::unistd::{Pid, getpgrp, getpid, setpgid};

use torch_core::lifecycle::SandboxLimits;

use crate::confine::files::{self, FileRules};
use crate::confine::{netns, syscalls};

/// A parsed `__supervise` command line.
#[derive(Debug, PartialEq)]
struct Args {
    status_file: PathBuf,
    stdin: Option<PathBuf>,
    limits: SandboxLimits,
    layers: Layers,
    argv: Vec<OsString>,
}

/// The sandbox layers to apply.
#[derive(Debug, Default, PartialEq)]
struct Layers {
    cgroups: Vec<PathBuf>,
    netns: bool,
    deny_tcp: bool,
    files: Option<FileRules>,
    seccomp: bool,
    strict: bool,
}

/// The status file, opened before the sandbox closes the path.
struct Status {
    file: Option<File>,
    path: PathBuf,
    degraded: Vec<String>,
}

impl Status {
    fn open(path: &PathBuf) -> Status {
        let file = File::create(path)
            .map_err(|e| {
                say(&format!(
                    "cannot create the status file {}: {e}",
                    path.display()
                ))
            })
            .ok();
        Status {
            file,
            path: path.clone(),
            degraded: Vec::new(),
        }
    }

    fn write(&mut self, line: &str) {
        let mut text = format!("{line}\n");
        for d in &self.degraded {
            text.push_str(&format!("degraded {d}\n"));
        }
        let Some(f) = self.file.as_mut() else { return };
        if let Err(e) = f.write_all(text.as_bytes()) {
            say(&format!(
                "cannot write the status file {}: {e}",
                self.path.display()
            ));
        }
    }

    /// A layer could not be applied: fatal under `--strict`, else recorded.
    fn layer_failed(&mut self, strict: bool, layer: &str, why: &str) -> Result<(), String> {
        if strict {
            return Err(format!("sandbox layer {layer} could not be applied: {why}"));
        }
        say(&format!("sandbox layer {layer} not applied: {why}"));
        self.degraded.push(format!("{layer} {why}"));
        Ok(())
    }
}

/// The `__supervise` arguments that carry `limits` (wall time is the agent's
/// business); the agent puts them between `--status FILE` and `--`.
pub(crate) fn limit_args(limits: &SandboxLimits) -> Vec<OsString> {
    let mut out = Vec::new();
    for (flag, value) in [
        ("--cpu-secs", limits.cpu_secs),
        ("--memory", limits.memory),
        ("--open-files", limits.open_files),
        ("--processes", limits.processes),
    ] {
        if let Some(v) = value {
            out.push(OsString::from(flag));
            out.push(OsString::from(v.to_string()));
        }
    }
    out
}

/// Entry point of the hidden `torch __supervise` subcommand; returns the
/// process exit code (in practice the supervisor ends by its own SIGKILL).
///
/// `args` are the command-line arguments after the program name: an optional
/// leading `__supervise`, then `--status FILE [OPTIONS] -- PROGRAM [ARGS…]`
/// (options in the module docs). Stdin must be a pipe held open by the
/// agent: when it reaches EOF the whole process group is killed.
pub fn supervise_main(args: Vec<OsString>) -> i32 {
    let Args {
        status_file,
        stdin,
        limits,
        layers,
        argv,
    } = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(msg) => {
            say(&format!("usage error: {msg}"));
            return 2;
        }
    };
    // Killing "our group" must never hit someone else's processes: lead one.
    if getpgrp() != getpid()
        && let Err(e) = setpgid(Pid::from_raw(0), Pid::from_raw(0))
    {
        say(&format!("cannot lead a process group: {e}"));
        return 2;
    }
    let mut status = Status::open(&status_file);
    // Before any thread exists (a user namespace needs a single thread).
    if let Err(msg) = enter(&layers, &mut status) {
        return give_up(&mut status, &msg, 2);
    }
    let mut blocked = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        blocked.add(sig);
    }
    if let Err(e) = blocked.thread_block() {
        say(&format!("cannot block termination signals: {e}"));
    }

    let watcher = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let mut buf = [0u8; 64];
            let mut stdin = io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            // The agent is gone: nobody will report or clean up, so take
            // everything down now.
            kill_group();
        });
    if let Err(e) = watcher {
        say(&format!("cannot watch stdin: {e}"));
        kill_group();
        return 1;
    }

    let task_stdin = match &stdin {
        None => Stdio::null(),
        Some(path) => match File::open(path) {
            Ok(f) => Stdio::from(f),
            Err(e) => {
                return give_up(
                    &mut status,
                    &format!("cannot open the task's stdin {}: {e}", path.display()),
                    2,
                );
            }
        },
    };
    // Last things before the spawn: the limits and the sandbox bind the
    // supervisor too.
    if let Err(msg) = apply_limits(&limits) {
        return give_up(&mut status, &msg, 2);
    }
    if let Err(msg) = restrict(&layers, &mut status) {
        return give_up(&mut status, &msg, 2);
    }
    let program = argv[0].clone();
    let mut child = match Command::new(&program)
        .args(&argv[1..])
        .stdin(task_stdin)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            let msg = format!("cannot start `{}`: {e}", program.to_string_lossy());
            return give_up(&mut status, &msg, 127);
        }
    };

    let line = match child.wait() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => format!("error unexpected wait status {status:?}"),
        },
        Err(e) => format!("error cannot wait for the task: {e}"),
    };
    let line = match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let ms = |t: nix::sys::time::TimeVal| {
                t.tv_sec().max(0) as u64 * 1000 + t.tv_usec().max(0) as u64 / 1000
            };
            format!("{line}\ncpu_ms {}", ms(u.user_time()) + ms(u.system_time()))
        }
        Err(_) => line,
    };
    status.write(&line);
    kill_group();
    0
}

/// Step 0: cgroups, then the network namespace.
fn enter(layers: &Layers, status: &mut Status) -> Result<(), String> {
    let pid = getpid().to_string();
    for procs in &layers.cgroups {
        if let Err(e) = std::fs::write(procs, &pid) {
            // The agent planned it: failing to join is never a silent skip.
            return Err(format!("cannot join the cgroup {}: {e}", procs.display()));
        }
    }
    if layers.netns
        && let Err(why) = netns::enter_private_netns()
    {
        status.layer_failed(layers.strict, "network", &why)?;
    }
    Ok(())
}

/// Step 4: Landlock, then seccomp (built first: once Landlock binds, nothing
/// new may be needed).
fn restrict(layers: &Layers, status: &mut Status) -> Result<(), String> {
    let filters = if layers.seccomp {
        match syscalls::build() {
            Ok(f) => Some(f),
            Err(why) => {
                status.layer_failed(layers.strict, "syscalls", &why)?;
                None
            }
        }
    } else {
        None
    };
    if layers.files.is_some() || layers.deny_tcp {
        match files::restrict(layers.files.as_ref(), layers.deny_tcp) {
            Ok(applied) if applied.full => {}
            Ok(applied) => {
                let why = format!(
                    "landlock ABI {} enforces only part of the rules",
                    applied.abi
                );
                if layers.deny_tcp && applied.abi < 4 {
                    status.layer_failed(layers.strict, "network", &why)?;
                }
            }
            Err(why) => {
                let layer = if layers.files.is_some() {
                    "files"
                } else {
                    "network"
                };
                status.layer_failed(layers.strict, layer, &why)?;
            }
        }
    }
    if let Some(f) = filters {
        if let Err(why) = syscalls::drop_capabilities() {
            status.layer_failed(layers.strict, "syscalls", &why)?;
        }
        if let Err(why) = f.apply() {
            status.layer_failed(layers.strict, "syscalls", &why)?;
        }
    }
    Ok(())
}

fn parse_args(args: Vec<OsString>) -> Result<Args, String> {
    let mut it = args.into_iter().peekable();
    if it.peek().is_some_and(|a| a == "__supervise") {
        it.next();
    }
    if it.next().is_none_or(|a| a != "--status") {
        return Err("expected --status FILE [OPTIONS] -- PROGRAM [ARGS...]".into());
    }
    let status_file = PathBuf::from(it.next().ok_or("--status needs a file")?);
    let mut stdin = None;
    let mut limits = SandboxLimits::default();
    let mut layers = Layers::default();
    // Options until `--`, or until the program when a front end already
    // consumed the separator.
    while let Some(flag) = it.next_if(|a| a.to_str().is_some_and(is_option)) {
        let flag = flag.to_string_lossy().into_owned();
        match flag.as_str() {
            "--" => break,
            "--netns" => layers.netns = true,
            "--deny-tcp" => layers.deny_tcp = true,
            "--landlock" => {
                layers.files.get_or_insert_with(FileRules::default);
            }
            "--seccomp" => layers.seccomp = true,
            "--strict" => layers.strict = true,
            _ => {}
        }
        if SWITCHES.contains(&flag.as_str()) {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let path = PathBuf::from(&value);
        match flag.as_str() {
            "--stdin" => stdin = Some(path),
            "--cgroup" => layers.cgroups.push(path),
            "--rw" => layers
                .files
                .get_or_insert_with(FileRules::default)
                .write
                .push(path),
            "--ro" => layers
                .files
                .get_or_insert_with(FileRules::default)
                .read
                .push(path),
            _ => {}
        }
        if PATH_OPTIONS.contains(&flag.as_str()) {
            continue;
        }
        let n = number(&flag, &value)?;
        let slot = match flag.as_str() {
            "--cpu-secs" => &mut limits.cpu_secs,
            "--memory" => &mut limits.memory,
            "--open-files" => &mut limits.open_files,
            _ => &mut limits.processes,
        };
        *slot = Some(n);
    }
    let argv: Vec<OsString> = it.collect();
    if argv.is_empty() {
        return Err("no program given".into());
    }
    Ok(Args {
        status_file,
        stdin,
        limits,
        layers,
        argv,
    })
}

/// Options without a value.
const SWITCHES: &[&str] = &[
    "--netns",
    "--deny-tcp",
    "--landlock",
    "--seccomp",
    "--strict",
];
/// Options whose value is a path.
const PATH_OPTIONS: &[&str] = &["--stdin", "--cgroup", "--rw", "--ro"];

fn is_option(arg: &str) -> bool {
    arg == "--"
        || SWITCHES.contains(&arg)
        || PATH_OPTIONS.contains(&arg)
        || matches!(
            arg,
            "--cpu-secs" | "--memory" | "--open-files" | "--processes"
        )
}

fn number(flag: &str, value: &OsStr) -> Result<u64, String> {
    value
        .to_str()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} needs a positive integer, got {value:?}"))
}

/// Sets each given limit (soft and hard) on this process, never above the
/// hard limit it already has.
fn apply_limits(limits: &SandboxLimits) -> Result<(), String> {
    // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one, so a
    // task that ignores SIGXCPU still ends a second later.
    let wanted = [
        (Resource::RLIMIT_CPU, "cpu-secs", limits.cpu_secs, 1),
        (Resource::RLIMIT_AS, "memory", limits.memory, 0),
        (Resource::RLIMIT_NOFILE, "open-files", limits.open_files, 0),
        (Resource::RLIMIT_NPROC, "processes", limits.processes, 0),
    ];
    for (resource, name, value, hard_extra) in wanted {
        let Some(value) = value else { continue };
        let (_, current_hard) =
            getrlimit(resource).map_err(|e| format!("cannot read the {name} limit: {e}"))?;
        let hard = value.saturating_add(hard_extra).min(current_hard);
        let soft = value.min(hard);
        setrlimit(resource, soft, hard)
            .map_err(|e| format!("cannot set the {name} limit to {value}: {e}"))?;
    }
    Ok(())
}

/// Reports a task that never started, takes the group down, returns `code`.
fn give_up(status: &mut Status, msg: &str, code: i32) -> i32 {
    say(msg);
    status.write(&format!("error {msg}"));
    kill_group();
    code
}

/// SIGKILLs our process group, ourselves included (we lead it: see
/// [`supervise_main`]).
fn kill_group() {
    let _ = killpg(getpgrp(), Signal::SIGKILL);
}

/// The supervisor's stderr is the task's stderr log: messages land there.
fn say(msg: &str) {
    let _ = writeln!(io::stderr(), "torch supervise: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_forms() {
        let ok = |v: &[&str]| parse_args(v.iter().map(OsString::from).collect());
        let a = ok(&["__supervise", "--status", "/t/s", "--", "sh", "-c", "x"]).unwrap();
        assert_eq!(a.status_file, PathBuf::from("/t/s"));
        assert_eq!(a.argv, ["sh", "-c", "x"]);
        assert_eq!((a.stdin, a.limits), (None, SandboxLimits::default()));
        assert_eq!(a.layers, Layers::default());
        let a = ok(&[
            "--status",
            "/t/s",
            "--cgroup",
            "/c/procs",
            "--netns",
            "--landlock",
            "--rw",
            "/w",
            "--ro",
            "/r",
            "--seccomp",
            "--",
            "true",
        ])
        .unwrap();
        assert_eq!(a.layers.cgroups, [PathBuf::from("/c/procs")]);
        assert!(a.layers.netns && a.layers.seccomp && !a.layers.strict);
        let files = a.layers.files.unwrap();
        assert_eq!((files.write.len(), files.read.len()), (1, 1));
        assert_eq!(a.argv, ["true"]);
        assert!(ok(&["--status", "/t/s", "--", "true"]).is_ok());
        assert!(ok(&["--status", "/t/s", "--"]).is_err());
        let a = ok(&["--status", "/t/s", "true", "--", "x"]).unwrap();
        assert_eq!(a.argv, ["true", "--", "x"], "separator already consumed");
        assert!(ok(&["true"]).is_err());
        assert_eq!(supervise_main(vec!["--bogus".into()]), 2);

        let limits = SandboxLimits {
            cpu_secs: Some(2),
            memory: Some(512 << 20),
            open_files: Some(16),
            processes: Some(64),
            wall_time: None,
        };
        let mut line: Vec<OsString> = ["--status", "/t/s", "--stdin", "/t/p"]
            .iter()
            .map(OsString::from)
            .collect();
        line.extend(limit_args(&limits));
        line.extend(["--", "prog", "--memory", "1"].map(OsString::from));
        let a = parse_args(line).unwrap();
        assert_eq!(a.stdin, Some(PathBuf::from("/t/p")));
        assert_eq!(a.limits, limits);
        assert_eq!(
            a.argv,
            ["prog", "--memory", "1"],
            "the task's own flags stay"
        );
        // Separator consumed by a front end, limits before the program.
        let a = ok(&["--status", "/t/s", "--open-files", "8", "prog"]).unwrap();
        assert_eq!(a.limits.open_files, Some(8));
        assert_eq!(a.argv, ["prog"]);
        assert!(ok(&["--status", "/t/s", "--cpu-secs", "0", "--", "p"]).is_err());
        assert!(ok(&["--status", "/t/s", "--memory", "lots", "--", "p"]).is_err());
        assert!(ok(&["--status", "/t/s", "--processes"]).is_err());
        assert!(limit_args(&SandboxLimits::default()).is_empty());
    }
}

//! The per-task supervisor, run as
//! `torch __supervise --status FILE [OPTIONS] -- ARGV…` with the options
//! `--stdin FILE` (the task's stdin instead of `/dev/null`) and the limits
//! `--cpu-secs N`, `--memory BYTES`, `--open-files N`, `--processes N`.
//!
//! The agent starts it as the leader of a fresh process group, with the task's
//! environment and work dir already applied, stdout/stderr on the capture
//! pipes and stdin on a pipe whose write end only the agent holds. The
//! supervisor then:
//!
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
//! 4. spawns ARGV in the same process group, stdin `/dev/null` (or the
//!    `--stdin` file), stdout/stderr inherited;
//! 5. when the task exits, writes `exit N`, `signal N` (or `error MESSAGE` if
//!    the task could not start) to FILE, then SIGKILLs the group, so no
//!    background child outlives the task even if the agent is gone by now.
//!
//! The agent observes the supervisor's death without reaping it, kills the
//! group again (harmless), reads FILE and only then reaps.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::unistd::{Pid, getpgrp, getpid, setpgid};

use torch_core::lifecycle::SandboxLimits;

/// A parsed `__supervise` command line.
#[derive(Debug, PartialEq)]
struct Args {
    status_file: PathBuf,
    stdin: Option<PathBuf>,
    limits: SandboxLimits,
    argv: Vec<OsString>,
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
                    &status_file,
                    &format!("cannot open the task's stdin {}: {e}", path.display()),
                    2,
                );
            }
        },
    };
    // Last thing before the spawn: the limits bind the supervisor too.
    if let Err(msg) = apply_limits(&limits) {
        return give_up(&status_file, &msg, 2);
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
            return give_up(&status_file, &msg, 127);
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
    write_status(&status_file, &line);
    kill_group();
    0
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
    // Options until `--`, or until the program when a front end already
    // consumed the separator.
    while let Some(flag) = it.next_if(|a| a.to_str().is_some_and(is_option)) {
        let flag = flag.to_string_lossy().into_owned();
        if flag == "--" {
            break;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--stdin" {
            stdin = Some(PathBuf::from(value));
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
        argv,
    })
}

fn is_option(arg: &str) -> bool {
    matches!(
        arg,
        "--" | "--stdin" | "--cpu-secs" | "--memory" | "--open-files" | "--processes"
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
fn give_up(status_file: &PathBuf, msg: &str, code: i32) -> i32 {
    say(msg);
    write_status(status_file, &format!("error {msg}"));
    kill_group();
    code
}

fn write_status(path: &PathBuf, line: &str) {
    if let Err(e) = std::fs::write(path, format!("{line}\n")) {
        say(&format!(
            "cannot write the status file {}: {e}",
            path.display()
        ));
    }
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

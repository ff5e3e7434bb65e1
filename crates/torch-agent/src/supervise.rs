//! The per-task supervisor, run as `torch __supervise --status FILE -- ARGV…`.
//!
//! The agent starts it as the leader of a fresh process group, with the task's
//! environment and work dir already applied, stdout/stderr on the capture
//! pipes and stdin on a pipe whose write end only the agent holds. The
//! supervisor then:
//!
//! 1. blocks SIGTERM/SIGINT/SIGHUP/SIGQUIT for itself (a group SIGTERM must
//!    reach the task, while the supervisor stays to report the task's status;
//!    `std::process::Command` resets the signal mask in the child);
//! 2. spawns ARGV in the same process group, stdin `/dev/null`, stdout/stderr
//!    inherited;
//! 3. watches its stdin on a thread: EOF means the agent died, so it SIGKILLs
//!    the whole group, itself included;
//! 4. when the task exits, writes `exit N`, `signal N` (or `error MESSAGE` if
//!    the task could not start) to FILE, then SIGKILLs the group, so no
//!    background child outlives the task even if the agent is gone by now.
//!
//! The agent observes the supervisor's death without reaping it, kills the
//! group again (harmless), reads FILE and only then reaps.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, Signal, killpg};
use nix::unistd::{Pid, getpgrp, getpid, setpgid};

/// Entry point of the hidden `torch __supervise` subcommand; returns the
/// process exit code (in practice the supervisor ends by its own SIGKILL).
///
/// `args` are the command-line arguments after the program name: an optional
/// leading `__supervise`, then `--status FILE -- PROGRAM [ARGS…]`. Stdin must
/// be a pipe held open by the agent: when it reaches EOF the whole process
/// group is killed.
pub fn supervise_main(args: Vec<OsString>) -> i32 {
    let (status_file, argv) = match parse_args(args) {
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

    let program = argv[0].clone();
    let mut child = match Command::new(&program)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            let msg = format!("cannot start `{}`: {e}", program.to_string_lossy());
            say(&msg);
            write_status(&status_file, &format!("error {msg}"));
            kill_group();
            return 127;
        }
    };

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

fn parse_args(args: Vec<OsString>) -> Result<(PathBuf, Vec<OsString>), String> {
    let mut it = args.into_iter().peekable();
    if it.peek().is_some_and(|a| a == "__supervise") {
        it.next();
    }
    if it.next().is_none_or(|a| a != "--status") {
        return Err("expected --status FILE -- PROGRAM [ARGS...]".into());
    }
    let status = it.next().ok_or("--status needs a file")?;
    // Tolerate a front end that already consumed the `--` separator.
    if it.peek().is_some_and(|a| a == "--") {
        it.next();
    }
    let argv: Vec<OsString> = it.collect();
    if argv.is_empty() {
        return Err("no program given".into());
    }
    Ok((PathBuf::from(status), argv))
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
        let (status, argv) =
            ok(&["__supervise", "--status", "/t/s", "--", "sh", "-c", "x"]).unwrap();
        assert_eq!(status, PathBuf::from("/t/s"));
        assert_eq!(argv, ["sh", "-c", "x"]);
        assert!(ok(&["--status", "/t/s", "--", "true"]).is_ok());
        assert!(ok(&["--status", "/t/s", "--"]).is_err());
        let (_, argv) = ok(&["--status", "/t/s", "true", "--", "x"]).unwrap();
        assert_eq!(argv, ["true", "--", "x"], "separator already consumed");
        assert!(ok(&["true"]).is_err());
        assert_eq!(supervise_main(vec!["--bogus".into()]), 2);
    }
}

//! The per-task supervisor. This test binary (harness = false) doubles as the
//! `torch` binary: run as `<exe> __supervise …` it is the supervisor, run as
//! `<exe> __agent HUB_URL WORK_ROOT` it is an agent process the tests can
//! `kill -9`. Without those it runs the tests below in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use torch_api::ws::HubMessage;
use torch_core::OutcomeKind;
use torch_core::lifecycle::{Executor, OutputFormat, PromptVia, SandboxLimits};

use common::*;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "__supervise") {
        std::process::exit(torch_agent::supervise_main(args));
    }
    if args.first().is_some_and(|a| a == "__agent") {
        agent_process(&args[1], &args[2]);
        return;
    }
    let filter = args.iter().find(|a| !a.to_string_lossy().starts_with('-'));
    let tests: [(&str, fn()); 6] = [
        (
            "supervisor_kills_its_group_when_stdin_closes",
            supervisor_kills_its_group_when_stdin_closes,
        ),
        (
            "supervisor_reports_status_and_cleans_up",
            supervisor_reports_status_and_cleans_up,
        ),
        (
            "supervised_tasks_through_the_agent",
            supervised_tasks_through_the_agent,
        ),
        (
            "tasks_die_with_a_killed_agent",
            tasks_die_with_a_killed_agent,
        ),
        (
            "limits_and_stdin_through_the_supervisor",
            limits_and_stdin_through_the_supervisor,
        ),
        (
            "git_works_in_a_sandboxed_worktree",
            git_works_in_a_sandboxed_worktree,
        ),
    ];
    let mut ran = 0;
    for (name, test) in tests {
        if filter.is_some_and(|f| !name.contains(&*f.to_string_lossy())) {
            continue;
        }
        println!("test {name} ...");
        test();
        println!("test {name} ... ok");
        ran += 1;
    }
    println!("test result: ok. {ran} passed");
}

fn exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Polls `cond` (synchronously) until it holds, or panics after [`DEADLINE`].
fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `<exe> __supervise --status DIR/status -- sh -c SCRIPT` the way the
/// agent does: own process group, stdin a pipe we hold.
fn supervise(dir: &Path, script: &str) -> Child {
    Command::new(exe())
        .args(["__supervise", "--status"])
        .arg(dir.join("status"))
        .args(["--", "sh", "-c", script])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

fn wait_child(child: &mut Child) -> std::process::ExitStatus {
    let mut status = None;
    poll_until("the supervisor exits", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

fn supervisor_kills_its_group_when_stdin_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut sup = supervise(
        dir.path(),
        "echo $$ >> pids; sleep 100 & echo $! >> pids; sleep 100 & echo $! >> pids; wait",
    );
    let pid_file = dir.path().join("pids");
    poll_until("the task wrote its pids", || {
        read_pids(&pid_file).len() == 3
    });
    let pids = read_pids(&pid_file);
    assert!(pids.iter().all(|p| alive(*p)));
    // The agent dies: the write end of the supervisor's stdin closes.
    drop(sup.stdin.take());
    let status = wait_child(&mut sup);
    assert_eq!(
        status.signal(),
        Some(9),
        "the supervisor killed its own group"
    );
    poll_until("every task process is gone", || {
        pids.iter().all(|p| !alive(*p))
    });
    assert!(
        std::fs::read_to_string(dir.path().join("status"))
            .unwrap_or_default()
            .is_empty(),
        "no status (the file is opened at start): the task did not finish"
    );
}

fn supervisor_reports_status_and_cleans_up() {
    let cases = [
        ("exit 7", "exit 7"),
        ("kill -USR1 $$", "signal 10"),
        ("sleep 100 & echo $! > pids; exit 0", "exit 0"),
        ("exec no-such-program-xyz", "exit 127"),
    ];
    for (script, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut sup = supervise(dir.path(), script);
        let status = wait_child(&mut sup);
        assert_eq!(
            status.signal(),
            Some(9),
            "{script}: ends by killing its group"
        );
        let got = std::fs::read_to_string(dir.path().join("status")).unwrap();
        assert_eq!(got.lines().next(), Some(want), "{script}");
        assert!(
            got.lines().nth(1).is_some_and(|l| l.starts_with("cpu_ms ")),
            "{script}: the CPU time follows: {got}"
        );
        for pid in read_pids(&dir.path().join("pids")) {
            poll_until("the background child is gone", || !alive(pid));
        }
    }
    // A program that cannot start at all.
    let dir = tempfile::tempdir().unwrap();
    let mut sup = Command::new(exe())
        .args(["__supervise", "--status"])
        .arg(dir.path().join("status"))
        .args(["--", "no-such-program-xyz"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_child(&mut sup);
    let got = std::fs::read_to_string(dir.path().join("status")).unwrap();
    assert!(
        got.starts_with("error cannot start `no-such-program-xyz`"),
        "{got}"
    );
}

fn supervised_tasks_through_the_agent() {
    block_on(async {
        let mut bad_exit = sh("exit 7");
        bad_exit.success.exit_codes = vec![7];
        let mut timed = sh("sleep 100 & echo $! >> pids; sleep 100 & echo $! >> pids; wait");
        timed.timeout_ms = Some(300);
        let tasks = [
            bad_exit,
            sh("kill -USR1 $$"),
            assign(&["no-such-program-xyz"]),
            timed.clone(),
            sh("echo $PATH"),
            sh("sleep 100 & echo $! > pids; echo bye"),
        ];
        let (r, root) = run_all(|cfg| cfg.supervisor = Some(exe()), &tasks).await;
        assert_eq!(
            r[0].outcome.kind,
            OutcomeKind::Succeeded,
            "{:?}",
            r[0].outcome
        );
        assert_eq!(r[0].outcome.evidence.exit_code, Some(7));
        assert_eq!(r[1].outcome.kind, OutcomeKind::Failed);
        assert_eq!(r[1].outcome.evidence.signal, Some(10));
        assert_eq!(
            r[1].outcome.reason.as_deref(),
            Some("criterion not met: exit_code in [0] (killed by signal 10)")
        );
        let reason = r[2].outcome.reason.as_deref().unwrap();
        assert!(
            reason.contains("cannot start `no-such-program-xyz`"),
            "{reason}"
        );
        assert_eq!(r[3].outcome.kind, OutcomeKind::TimedOut);
        let pids = read_pids(&workdir(root.path(), &timed).join("pids"));
        assert_eq!(pids.len(), 2);
        eventually("timed-out children are gone", || {
            pids.iter().all(|p| !alive(*p))
        })
        .await;
        let path = r[4].logs.as_ref().unwrap().stdout.clone();
        let torch_dir = exe().parent().unwrap().display().to_string();
        assert!(
            path.starts_with(&format!("{torch_dir}:")),
            "PATH starts with the torch dir: {path}"
        );
        assert_eq!(r[5].outcome.kind, OutcomeKind::Succeeded);
        assert_eq!(r[5].logs.as_ref().unwrap().stdout, "bye\n");
        let leftover = read_pids(&workdir(root.path(), &tasks[5]).join("pids"));
        eventually("no background child outlives its task", || {
            !alive(leftover[0])
        })
        .await;
        assert!(
            !workdir(root.path(), &tasks[0])
                .join(".torch-exit-status")
                .exists()
        );
    });
}

/// Body of `<exe> __agent HUB_URL WORK_ROOT`.
fn agent_process(url: &OsString, root: &OsString) {
    block_on(async {
        let mut cfg = torch_agent::AgentConfig::new(url.to_string_lossy(), TOKEN, "doomed");
        cfg.work_root = PathBuf::from(root);
        cfg.supervisor = Some(exe());
        cfg.keep_workdirs = true;
        torch_agent::run(cfg, CancellationToken::new())
            .await
            .unwrap();
    });
}

fn tasks_die_with_a_killed_agent() {
    block_on(async {
        let hub = Hub::start().await;
        let root = tempfile::tempdir().unwrap();
        let mut agent = Command::new(exe())
            .arg("__agent")
            .arg(&hub.url)
            .arg(root.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut conn = hub.accept().await;
        conn.welcome(agent_id()).await;
        let t = sh("echo $$ >> pids; sleep 100 & echo $! >> pids; wait");
        conn.send(vec![HubMessage::Assign(t.clone())]).await;
        let pid_file = workdir(root.path(), &t).join("pids");
        eventually("the task wrote its pids", || {
            read_pids(&pid_file).len() == 2
        })
        .await;
        let pids = read_pids(&pid_file);
        assert!(pids.iter().all(|p| alive(*p)));
        kill(Pid::from_raw(agent.id() as i32), Signal::SIGKILL).unwrap();
        agent.wait().unwrap();
        eventually("the task group died with its agent", || {
            pids.iter().all(|p| !alive(*p))
        })
        .await;
    });
}

/// Opens /dev/null 64 times at once (paste holds every input open).
const OPEN_64: &str = "paste $(for i in $(seq 64); do echo /dev/null; done) && echo opened";

fn limits_and_stdin_through_the_supervisor() {
    block_on(async {
        let limits = SandboxLimits {
            cpu_secs: Some(1),
            memory: Some(512 << 20),
            open_files: Some(16),
            processes: None,
            wall_time: None,
        };
        let shown = sh("ulimit -t; ulimit -v; ulimit -n");
        let files = sh(OPEN_64);
        let mut spin = sh("while :; do :; done");
        spin.timeout_ms = Some(20_000);
        let small = sh("echo fits");
        let mut from_stdin = assign(&[]);
        from_stdin.command = None;
        from_stdin.prompt = Some("prompt on stdin".into());
        let tasks = [shown, files, spin, small, from_stdin];
        let (r, _root) = run_all(
            |cfg| {
                cfg.supervisor = Some(exe());
                cfg.limits = limits;
                cfg.executor = Some(Executor {
                    command: vec!["cat".into()],
                    prompt_via: PromptVia::Stdin,
                    output: OutputFormat::Text,
                    ..Executor::default()
                });
            },
            &tasks,
        )
        .await;
        let out = |i: usize| {
            r[i].logs
                .as_ref()
                .map(|l| l.stdout.clone())
                .unwrap_or_default()
        };
        // With a memory cgroup the limit is the cgroup's, not RLIMIT_AS.
        let sb = r[0]
            .outcome
            .evidence
            .sandbox
            .clone()
            .expect("sandbox report");
        let as_limit = if sb.layers.memory.starts_with("cgroup") {
            "unlimited"
        } else {
            "524288"
        };
        assert_eq!(
            out(0),
            format!("1\n{as_limit}\n16\n"),
            "the task inherits the limits ({sb})"
        );
        assert_eq!(r[1].outcome.kind, OutcomeKind::Failed, "{:?}", r[1].outcome);
        let err = &r[1].outcome.evidence.stderr_tail;
        assert!(err.contains("Too many open files"), "{err}");
        assert!(!out(1).contains("opened"));
        assert_eq!(
            r[2].outcome.kind,
            OutcomeKind::CpuTime,
            "{:?}",
            r[2].outcome
        );
        let sig = r[2].outcome.evidence.signal;
        assert!(
            sig == Some(Signal::SIGXCPU as i32) || sig == Some(9),
            "a spinning task dies of its CPU limit: {:?}",
            r[2].outcome
        );
        assert!(r[2].outcome.evidence.duration_ms < 15_000);
        assert_eq!(
            r[3].outcome.kind,
            OutcomeKind::Succeeded,
            "{:?}",
            r[3].outcome
        );
        assert_eq!(
            out(4),
            "prompt on stdin",
            "supervised stdin from the prompt file"
        );

        // Without limits the same task opens all 64.
        let (r, _root) = run_all(|cfg| cfg.supervisor = Some(exe()), &[sh(OPEN_64)]).await;
        assert_eq!(
            r[0].outcome.kind,
            OutcomeKind::Succeeded,
            "{:?}",
            r[0].outcome
        );
        assert!(r[0].logs.as_ref().unwrap().stdout.ends_with("opened\n"));
    });
}

/// A task in a worktree of a local repository, under the sandbox: git reads
/// the repository's git dir (allowed read-only), the runtime commits.
fn git_works_in_a_sandboxed_worktree() {
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "--quiet", "-m", "init"]);
    let mut task = sh("git log -1 --format=%s && echo x > f && git status --short f");
    task.checkout = Some(torch_api::ws::Checkout {
        repository: repo.display().to_string(),
        base: None,
    });
    block_on(async {
        let (r, _root) = run_all(|cfg| cfg.supervisor = Some(exe()), &[task.clone()]).await;
        let o = &r[0].outcome;
        assert_eq!(o.kind, OutcomeKind::Succeeded, "{o:?}");
        assert_eq!(r[0].logs.as_ref().unwrap().stdout, "init\n?? f\n");
        println!("sandbox: {}", o.evidence.sandbox.as_ref().unwrap());
    });
    let branch = format!("torch/{}/{}", task.task_id, task.attempt);
    assert_eq!(
        git(&repo, &["show", "--name-only", "--format=", &branch]),
        "f"
    );
    let listed = git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("worktree ").count(), 1, "{listed}");
}

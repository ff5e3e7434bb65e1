//! One task attempt: fresh work dir, spawn, watch (timeout, cancel, shutdown),
//! capture output, judge, report.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::fs::File;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, instrument, warn};

use torch_api::ENV_HUB_SOCKET;
use torch_api::msg::ENV_AGENT_SOCKET;
use torch_api::ws::{Assignment, FinishReport, HeldTask, ProgressReport, TaskLogs};
use torch_core::lifecycle::{
    DEFAULT_RESUME_PROMPT, Executor, OutputFormat, Placeholders, PromptVia, SandboxLimits,
};
use torch_core::sandbox::{FilesPolicy, Requirement, SandboxPolicy};
use torch_core::{Evidence, Outcome, OutcomeKind};

use crate::activity;
use crate::capture::{Capture, EVIDENCE_TAIL_BYTES, REPORT_TAIL_BYTES, drain_while};
use crate::confine::hubsock::HubSocket;
use crate::confine::plan::{self, Machine, Paths, Plan, task_limits};
use crate::confine::verdict::{self, Seen};
use crate::criteria::{self, Workspace};
use crate::home;
use crate::output;
use crate::resume;
use crate::sandbox::{Env, Exit, Sandbox};
use crate::status::{StatusExtras, supervised_exit};
use crate::worktree::{self, Worktree};

/// Stdout chunks the live reader may fall behind by before chunks are dropped.
const TAP_CHUNKS: usize = 256;
/// Suffix of the file, beside the work dir (out of the task's reach), where
/// the supervisor writes the task's exit status.
const STATUS_SUFFIX: &str = ".status";
/// The task's temp dir (its `TMPDIR`), inside the work dir.
const TMP_DIR: &str = ".tmp";
const STDOUT_LOG: &str = "stdout.log";
const STDERR_LOG: &str = "stderr.log";
/// For prompt tasks: the assignment as JSON (without its token), the
/// executor's `{task_file}`.
pub(crate) const TASK_FILE: &str = "task.json";
/// For prompt tasks: the prompt alone, as text (also the executor's stdin
/// with `prompt-via = "stdin"`).
pub(crate) const PROMPT_FILE: &str = "prompt.txt";

/// Why a running task is being stopped early.
#[derive(Debug)]
pub(crate) enum StopReason {
    /// The hub cancelled it.
    Cancelled(String),
    /// The agent is shutting down.
    Shutdown,
}

/// What runners tell the session.
#[derive(Debug)]
pub(crate) enum RunnerEvent {
    /// The task's process is running.
    Started(HeldTask),
    /// What the task's agent CLI is doing, from its output stream.
    Progress(ProgressReport),
    /// The attempt ended; `workdir` is removed once the hub acks the report.
    Finished {
        /// The report to deliver.
        report: Box<FinishReport>,
        /// The attempt's work dir, if one was created.
        workdir: Option<PathBuf>,
    },
}

/// Everything runners share.
pub(crate) struct RunnerCtx {
    pub(crate) sandbox: Sandbox,
    pub(crate) work_root: PathBuf,
    pub(crate) kill_grace: Duration,
    pub(crate) max_log_bytes: u64,
    pub(crate) supervised: bool,
    /// Runs tasks that have a prompt and no command.
    pub(crate) executor: Option<Executor>,
    /// Cap on every attempt's run time (the template's `wall-time`).
    pub(crate) wall_time: Option<Duration>,
    /// The sandbox layers this machine offers.
    pub(crate) machine: Machine,
    /// The operator's sandbox policy (agent config and template).
    pub(crate) policy: SandboxPolicy,
    /// The template's resource limits.
    pub(crate) limits: SandboxLimits,
    /// `host:port` of each hub, for the per-task hub sockets.
    pub(crate) hubs: Arc<Vec<String>>,
    /// `host:port` of the agent's own message endpoint, for the per-task
    /// agent sockets (empty when the agent does not listen).
    pub(crate) endpoint_addrs: Arc<Vec<String>>,
    /// Where the per-task hub sockets are made.
    pub(crate) socket_dir: PathBuf,
}

/// Runs one attempt to its end and sends its report. `a.command` must be a
/// real (non-empty, non-noop) command, or `a.prompt` set and `ctx.executor`
/// present.
#[instrument(skip_all, fields(task_id = %a.task_id, attempt = a.attempt))]
pub(crate) async fn run_task(
    ctx: Arc<RunnerCtx>,
    a: Assignment,
    mut stop: oneshot::Receiver<StopReason>,
    events: mpsc::Sender<RunnerEvent>,
) {
    // An executor that can resume, on a prompt task: the previous attempt's
    // work dir and session, if this agent kept them.
    let resumable = a.command.as_ref().is_none_or(|c| c.is_empty())
        && ctx.executor.as_ref().is_some_and(|e| !e.resume.is_empty());
    let kept = match resumable {
        true => resume::take(&ctx.work_root, a.task_id).await,
        false => None,
    };
    let (workdir, mut session) = match kept {
        Some(k) => {
            info!(session = %k.session, dir = %k.dir.display(), "resuming the previous attempt's session");
            (k.dir, Some(k.session))
        }
        None => (
            ctx.work_root.join(format!("{}-{}", a.task_id, a.attempt)),
            None,
        ),
    };
    let started = Instant::now();
    let (checkout, mut unprepared) = match prepare(&a, &workdir, session.is_some()).await {
        Ok(w) => (w, None),
        Err(reason) => {
            warn!(reason = %reason, "cannot prepare the attempt's work dir");
            (None, Some(reason))
        }
    };
    let read = checkout
        .as_ref()
        .map(Worktree::read_paths)
        .unwrap_or_default();
    let mut pauses = 0;
    let (outcome, logs, ran) = loop {
        if let Some(reason) = unprepared.take() {
            let outcome = Outcome::failed(OutcomeKind::Failed, reason, evidence_since(started));
            break (outcome, None, resume::Ran::default());
        }
        let run = attempt(
            &ctx,
            &a,
            &workdir,
            session.as_deref(),
            &read,
            &mut stop,
            &events,
        );
        match run.await {
            Err((kind, reason)) => {
                break (
                    Outcome::failed(kind, reason, evidence_since(started)),
                    None,
                    resume::Ran::default(),
                );
            }
            Ok((outcome, logs, ran)) => {
                let limited = ran
                    .rate_limit
                    .as_ref()
                    .filter(|_| resumable && ran.session.is_some() && pauses < resume::MAX_PAUSES);
                let Some(limit) = limited else {
                    break (outcome, logs, ran);
                };
                let wait = limit
                    .retry_after
                    .or(ctx.executor.as_ref().and_then(|e| e.rate_limit_pause))
                    .unwrap_or(resume::DEFAULT_PAUSE);
                if let Err(why) =
                    resume::pause(wait, &a, ran.activity.clone(), &mut stop, &events).await
                {
                    let (kind, reason) = match why {
                        StopReason::Cancelled(w) => {
                            (OutcomeKind::Cancelled, format!("cancelled: {w}"))
                        }
                        StopReason::Shutdown => (OutcomeKind::Failed, "agent shutting down".into()),
                    };
                    break (Outcome::failed(kind, reason, outcome.evidence), logs, ran);
                }
                pauses += 1;
                session = ran.session;
            }
        }
    };
    info!(
        outcome = outcome.kind.as_str(),
        duration_ms = outcome.evidence.duration_ms,
        reason = outcome.reason.as_deref().unwrap_or(""),
        "task finished"
    );
    let outcome = match &checkout {
        Some(w) => w.record(&a, outcome).await,
        None => outcome,
    };
    // Not done and the CLI named its session: keep the dir for a retry.
    let keep = resumable
        && matches!(outcome.kind, OutcomeKind::Failed | OutcomeKind::TimedOut)
        && ran.session.is_some();
    if keep && let Some(s) = &ran.session {
        let kept = resume::Kept {
            dir: workdir.clone(),
            session: s.clone(),
        };
        resume::keep(&ctx.work_root, a.task_id, &kept).await;
    }
    if let Some(w) = checkout.filter(|_| !keep) {
        w.remove().await;
    }
    let report = FinishReport {
        task_id: a.task_id,
        fence: a.fence,
        attempt: a.attempt,
        outcome,
        logs,
    };
    let finished = RunnerEvent::Finished {
        report: Box::new(report),
        workdir: (!keep).then_some(workdir),
    };
    if events.send(finished).await.is_err() {
        warn!("the agent session is gone; dropping the report");
    }
}

/// A fresh work dir (unless a resumed session keeps its own) and, for a
/// task with a repository, the attempt's checkout there. `Err`: why the
/// attempt cannot run.
async fn prepare(
    a: &Assignment,
    workdir: &Path,
    resumed: bool,
) -> Result<Option<Worktree>, String> {
    if !resumed {
        fresh_dir(workdir)
            .await
            .map_err(|e| format!("cannot create work dir {}: {e}", workdir.display()))?;
    }
    let Some(c) = &a.checkout else {
        return Ok(None);
    };
    let made = match resumed {
        false => Worktree::create(c, a.task_id, a.attempt, workdir).await,
        true => Worktree::adopt(c, a.task_id, a.attempt, workdir).await,
    };
    made.map(Some).map_err(|e| e.to_string())
}

fn evidence_since(started: Instant) -> Evidence {
    Evidence {
        duration_ms: millis(started.elapsed()),
        ..Evidence::default()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why the watch loop stopped the task.
enum Stopped {
    TimedOut,
    By(StopReason),
}

/// What to start for an attempt.
struct Launch {
    argv: Vec<String>,
    /// A file to use as the task's stdin (`None`: `/dev/null`).
    stdin: Option<PathBuf>,
    /// How to read the verdict from stdout.
    output: OutputFormat,
    /// The executor's own variables (home, tmpdir, `env`).
    env: Env,
}

/// Why an attempt could not run: the outcome kind and the reason.
type NotRun = (OutcomeKind, String);

fn not_run(reason: String) -> NotRun {
    (OutcomeKind::Failed, reason)
}

/// The task's own command, or the executor's rendered for its prompt (after
/// writing [`TASK_FILE`] and [`PROMPT_FILE`] into the work dir).
async fn launch(
    ctx: &RunnerCtx,
    a: &Assignment,
    workdir: &Path,
    session: Option<&str>,
) -> Result<Launch, NotRun> {
    if let Some(argv) = a.command.as_ref().filter(|c| !c.is_empty()) {
        return Ok(Launch {
            argv: argv.clone(),
            stdin: None,
            output: OutputFormat::Text,
            env: Env::new(),
        });
    }
    let (Some(exec), Some(prompt)) = (&ctx.executor, &a.prompt) else {
        return Err((
            OutcomeKind::Fatal,
            "task has neither a command nor a prompt for the executor".into(),
        ));
    };
    let task_file = workdir.join(TASK_FILE);
    let prompt_file = workdir.join(PROMPT_FILE);
    let json = task_json(a).map_err(|e| not_run(format!("cannot encode the task: {e}")))?;
    // A resumed session has the task's prompt already: it is told to go on.
    let prompt = match session {
        Some(_) => exec
            .resume_prompt
            .clone()
            .unwrap_or_else(|| DEFAULT_RESUME_PROMPT.to_string()),
        None => prompt.clone(),
    };
    write(&task_file, json.as_bytes()).await?;
    write(&prompt_file, prompt.as_bytes()).await?;
    let mut values = Placeholders {
        session: session.map(str::to_string),
        prompt,
        workdir: workdir.display().to_string(),
        task_file: task_file.display().to_string(),
        task_id: a.task_id.to_string(),
        task_name: a.name.clone(),
        ..Placeholders::default()
    };
    let env = home::prepare(
        exec,
        &ctx.work_root,
        ctx.sandbox.base_var("HOME"),
        &mut values,
    )
    .await
    .map_err(not_run)?;
    let argv = exec.render(&values).map_err(|e| {
        (
            OutcomeKind::Fatal,
            format!("cannot build the executor command: {e}"),
        )
    })?;
    Ok(Launch {
        argv,
        stdin: (exec.prompt_via == PromptVia::Stdin).then_some(prompt_file),
        output: exec.output,
        env,
    })
}

/// The assignment as the executor sees it in [`TASK_FILE`]: everything but
/// the task token (which is in `TORCH_TASK_TOKEN`).
fn task_json(a: &Assignment) -> serde_json::Result<String> {
    let mut v = serde_json::to_value(a)?;
    if let Some(obj) = v.as_object_mut() {
        obj.remove("task_token");
    }
    serde_json::to_string_pretty(&v)
}

async fn write(path: &Path, bytes: &[u8]) -> Result<(), NotRun> {
    tokio::fs::write(path, bytes)
        .await
        .map_err(|e| not_run(format!("cannot write {}: {e}", path.display())))
}

/// The attempt's time limit: the spec's timeout or the agent's wall time,
/// whichever is shorter.
fn effective_timeout(spec_ms: Option<u64>, wall_time: Option<Duration>) -> Option<u64> {
    let wall_ms = wall_time.map(millis);
    match (spec_ms, wall_ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One run of the task's process in the prepared work dir (see
/// [`prepare`]); with `session`, the executor resumes that session. `read`:
/// more paths the sandbox lets the task read.
async fn attempt(
    ctx: &RunnerCtx,
    a: &Assignment,
    workdir: &Path,
    session: Option<&str>,
    read: &[PathBuf],
    stop: &mut oneshot::Receiver<StopReason>,
    events: &mpsc::Sender<RunnerEvent>,
) -> Result<(Outcome, Option<TaskLogs>, resume::Ran), NotRun> {
    let launch = launch(ctx, a, workdir, session).await?;
    let stdout_log = workdir.join(STDOUT_LOG);
    let out_file = create(&stdout_log).await.map_err(not_run)?;
    let err_file = create(&workdir.join(STDERR_LOG)).await.map_err(not_run)?;
    let mut env = ctx.sandbox.task_env(a, workdir, &launch.env);
    let mut status_file = workdir.as_os_str().to_owned();
    status_file.push(STATUS_SUFFIX);
    let status_file = PathBuf::from(status_file);
    let timeout_ms = effective_timeout(a.timeout_ms, ctx.wall_time);

    let started = Instant::now();
    let confined = confine(ctx, a, workdir, read, &mut env).await?;
    // An executor that gives its CLI a temp dir of its own (Claude Code's,
    // under the agent's home) keeps it over the sandbox's `.tmp`.
    if let Some(own) = launch.env.iter().find(|(k, _)| k == "TMPDIR") {
        env.push(own.clone());
    }
    let (mut plan, _sockets) = match confined {
        Some((plan, sockets)) => (Some(plan), sockets),
        None => (None, Vec::new()),
    };
    if let Some(p) = &plan {
        env.extend(worktree::confined_env(a, &p.report.layers.files));
    }
    let no_args = Vec::new();
    let sandbox_args = plan.as_ref().map_or(&no_args, |p| &p.args);
    let spawned = ctx.sandbox.spawn_task(
        &launch.argv,
        &env,
        workdir,
        &status_file,
        launch.stdin.as_deref(),
        sandbox_args,
    );
    let mut proc = match spawned {
        Ok(p) => p,
        Err(e) => {
            if let Some(cg) = plan.as_ref().and_then(|p| p.cgroup.as_ref()) {
                cg.finish().await;
            }
            return Err(not_run(e));
        }
    };
    let cgroup = plan.as_ref().and_then(|p| p.cgroup.as_ref());
    let held = HeldTask {
        task_id: a.task_id,
        fence: a.fence,
    };
    if events.send(RunnerEvent::Started(held)).await.is_err() {
        warn!("the agent session is gone; stopping the task");
    }

    let mut out = Capture::new(Some(out_file), ctx.max_log_bytes, REPORT_TAIL_BYTES);
    let mut err = Capture::new(Some(err_file), ctx.max_log_bytes, REPORT_TAIL_BYTES);
    // An agent CLI's stream, read as it comes: activity and waiting as progress.
    let follower = (launch.output != OutputFormat::Text).then(|| {
        let (tap, chunks) = mpsc::channel(TAP_CHUNKS);
        out.set_tap(tap);
        tokio::spawn(activity::follow(
            chunks,
            launch.output,
            a.task_id,
            a.fence,
            events.clone(),
        ))
    });
    let (o, e) = (proc.stdout.take(), proc.stderr.take());
    let grace = ctx.kill_grace;
    let (leader_exit, stopped) = drain_while(&mut out, o, &mut err, e, async {
        let timeout = async {
            match timeout_ms {
                Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            exit = proc.wait_exit() => (exit, None),
            () = timeout => {
                warn!(timeout_ms, "task timed out; stopping its process group");
                (proc.terminate(grace).await, Some(Stopped::TimedOut))
            }
            Ok(reason) = &mut *stop, if !stop.is_terminated() => {
                info!(?reason, "stopping task");
                (proc.terminate(grace).await, Some(Stopped::By(reason)))
            }
        };
        // Everything the task started, whatever its process group.
        if let Some(cg) = cgroup {
            cg.kill_listed();
        }
        proc.reap().await;
        result
    })
    .await;
    let duration_ms = millis(started.elapsed());
    out.untap();
    let mut last_live = None;
    if let Some(f) = follower {
        match f.await {
            Ok(live) => last_live = live.activity,
            Err(e) => warn!(error = %e, "the output follower failed"),
        }
    }
    let (exit, extras) = if ctx.supervised {
        supervised_exit(&status_file, leader_exit).await
    } else {
        (leader_exit, StatusExtras::default())
    };
    let report = plan.as_mut().map(|p| {
        for layer in &extras.degraded {
            p.degrade(layer);
        }
        p.report.clone()
    });

    if out.file_truncated() || err.file_truncated() {
        warn!(
            stdout_bytes = out.total(),
            stderr_bytes = err.total(),
            max_log_bytes = ctx.max_log_bytes,
            "task output exceeded the log cap; the log files hold only the beginning"
        );
    }
    // The session the CLI started, even when it was killed before its
    // result (its first events name it).
    let mut ran = resume::Ran {
        activity: last_live,
        ..resume::Ran::default()
    };
    if launch.output != OutputFormat::Text {
        let head = resume::read_head(&stdout_log).await;
        ran.session = output::session_of(launch.output, &head);
    }
    let mut evidence = Evidence {
        exit_code: match exit {
            Exit::Code(c) => Some(c),
            _ => None,
        },
        signal: match exit {
            Exit::Signal(s) => Some(s),
            _ => None,
        },
        duration_ms,
        criteria: Vec::new(),
        stdout_tail: out.tail_text(EVIDENCE_TAIL_BYTES),
        stderr_tail: err.tail_text(EVIDENCE_TAIL_BYTES),
        sandbox: Some(report.clone().unwrap_or_else(plan::unsupervised)),
        session_id: ran.session.clone(),
        ..Evidence::default()
    };
    let outcome = match (stopped, exit) {
        (Some(Stopped::TimedOut), _) => {
            let ms = timeout_ms.unwrap_or_default();
            let reason = format!("timed out after {ms} ms");
            Outcome::failed(OutcomeKind::TimedOut, reason, evidence)
        }
        (Some(Stopped::By(StopReason::Cancelled(why))), _) => Outcome::failed(
            OutcomeKind::Cancelled,
            format!("cancelled: {why}"),
            evidence,
        ),
        (Some(Stopped::By(StopReason::Shutdown)), _) => {
            Outcome::failed(OutcomeKind::Failed, "agent shutting down", evidence)
        }
        (None, Exit::Unknown(why)) => Outcome::failed(OutcomeKind::Failed, why, evidence),
        (None, exit) => {
            let ws = Workspace {
                dir: workdir,
                stdout_log: &stdout_log,
                max_stdout: ctx.max_log_bytes,
                env: &env,
            };
            evidence.criteria = criteria::evaluate(&a.success, &exit, &ws).await;
            if launch.output != OutputFormat::Text {
                // Right after the exit code: an executor that reports an
                // error fails the attempt even when it exited 0, and its
                // own words are the reason, not the exit code.
                let verdict = executor_verdict(launch.output, &out, &stdout_log).await;
                let at = evidence.criteria.len().min(1);
                evidence
                    .criteria
                    .insert(at, output::criterion(launch.output, verdict.as_ref()));
                evidence.agent_error = match &verdict {
                    Some(v) => v.error.clone(),
                    None => Some(output::no_result(launch.output)),
                };
                if let Some(v) = verdict {
                    evidence.usage = v.usage;
                    if v.session_id.is_some() {
                        evidence.session_id = v.session_id;
                    }
                    ran.rate_limit = v.rate_limit;
                }
            }
            let reason = match &evidence.agent_error {
                Some(e) => Some(output::reason(e)),
                None => criteria::first_failure(&evidence.criteria),
            };
            match reason {
                None => Outcome::succeeded(evidence),
                Some(reason) => {
                    let named = plan.as_ref().zip(report.as_ref()).and_then(|(p, r)| {
                        verdict::name_the_limit(&Seen {
                            exit: &exit,
                            cpu_ms: extras.cpu_ms,
                            cgroup: p.cgroup.as_ref(),
                            limits: &p.limits,
                            report: r,
                            stderr_tail: &evidence.stderr_tail,
                            stdout_tail: &evidence.stdout_tail,
                        })
                    });
                    match named {
                        Some((kind, why)) => Outcome::failed(kind, why, evidence),
                        None => Outcome::failed(OutcomeKind::Failed, reason, evidence),
                    }
                }
            }
        }
    };
    if let Some(cg) = plan.as_ref().and_then(|p| p.cgroup.as_ref()) {
        cg.finish().await;
    }
    // `truncated`: some output is kept nowhere in full (not in these tails,
    // or not in the capped log files).
    let logs = (out.total() > 0 || err.total() > 0).then(|| TaskLogs {
        stdout: out.tail_text(REPORT_TAIL_BYTES),
        stderr: err.tail_text(REPORT_TAIL_BYTES),
        truncated: out.tail_truncated()
            || err.tail_truncated()
            || out.file_truncated()
            || err.file_truncated(),
    });
    if ran.session.is_none() {
        ran.session = outcome.evidence.session_id.clone();
    }
    Ok((outcome, logs, ran))
}

/// The executor's verdict from the captured stdout tail or, when the tail
/// holds none and the log file has all of stdout, from the log file.
async fn executor_verdict(
    format: OutputFormat,
    out: &Capture,
    stdout_log: &Path,
) -> Option<output::Verdict> {
    if let Some(v) = output::parse(format, &out.tail_text(REPORT_TAIL_BYTES)) {
        return Some(v);
    }
    if !out.tail_truncated() || out.file_truncated() {
        return None;
    }
    let text = tokio::fs::read(stdout_log).await.ok()?;
    output::parse(format, &String::from_utf8_lossy(&text))
}

/// Removes what an earlier run left at `dir`, then creates it empty.
async fn fresh_dir(dir: &Path) -> io::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    tokio::fs::create_dir_all(dir).await
}

async fn create(path: &Path) -> Result<File, String> {
    File::create(path)
        .await
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// The sandbox of an attempt: its plan and, for network `hub`, its hub
/// socket and agent socket (`None` when the agent runs tasks without the
/// supervisor). Adds `TMPDIR`, `TORCH_HUB_SOCKET` and `TORCH_AGENT_SOCKET`
/// to `env`. A strict policy on a machine
/// that lacks a layer refuses here: the task fails `fatal` without running.
async fn confine(
    ctx: &RunnerCtx,
    a: &Assignment,
    workdir: &Path,
    read: &[PathBuf],
    env: &mut crate::sandbox::Env,
) -> Result<Option<(Plan, Vec<HubSocket>)>, NotRun> {
    let mut policy = ctx.policy.for_task(a.sandbox.as_ref());
    policy.read.extend(read.iter().cloned());
    if !ctx.supervised {
        if policy.requirement() == Requirement::Strict {
            return Err((
                OutcomeKind::Fatal,
                "sandbox.require = \"strict\" but this agent runs tasks without the supervisor"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let tmpdir = workdir.join(TMP_DIR);
    tokio::fs::create_dir_all(&tmpdir)
        .await
        .map_err(|e| not_run(format!("cannot create {}: {e}", tmpdir.display())))?;
    // With files confined, the work dir's `.tmp` is the only place the task
    // can write temp files; unconfined (an LLM CLI template's `files =
    // "off"`), it keeps the agent's TMPDIR (Codex's sandbox shares one).
    if policy.files() != FilesPolicy::Off {
        env.push(("TMPDIR".into(), tmpdir.clone().into_os_string()));
    }
    let limits = task_limits(&ctx.limits, a.sandbox.as_ref());
    let paths = Paths {
        workdir,
        tmpdir: &tmpdir,
        torch_dir: ctx.sandbox.torch_dir(),
    };
    let plan = plan::plan(&ctx.machine, &policy, limits, &paths)
        .map_err(|refusal| (OutcomeKind::Fatal, refusal))?;
    let mut sockets = Vec::new();
    if plan.hub_socket {
        let s = HubSocket::open(&ctx.socket_dir, ctx.hubs.clone())
            .map_err(|e| not_run(format!("cannot open the task's hub socket: {e}")))?;
        env.push((ENV_HUB_SOCKET.into(), s.path().as_os_str().to_owned()));
        sockets.push(s);
        // `torch msg` and MCP talk to the agent's own endpoint, which the
        // namespace cannot reach either.
        if !ctx.endpoint_addrs.is_empty() {
            let s = HubSocket::open(&ctx.socket_dir, ctx.endpoint_addrs.clone())
                .map_err(|e| not_run(format!("cannot open the task's agent socket: {e}")))?;
            env.push((ENV_AGENT_SOCKET.into(), s.path().as_os_str().to_owned()));
            sockets.push(s);
        }
    }
    Ok(Some((plan, sockets)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        let wall = Some(Duration::from_secs(2));
        assert_eq!(effective_timeout(Some(500), wall), Some(500));
        assert_eq!(effective_timeout(Some(5000), wall), Some(2000));
        assert_eq!(effective_timeout(None, wall), Some(2000));
        assert_eq!(effective_timeout(Some(7), None), Some(7));
        assert_eq!(effective_timeout(None, None), None);
    }
}

//! `torch submit`: from a file, stdin, or inline; `--wait` follows to the end.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use anyhow::{Context, Result};
use torch_api::rest::{EventPage, EventPayload, SubmitRequest, SubmitResponse, TaskView};
use torch_core::events::streams::TASK_STREAMS;
use torch_core::spec::SpecFormat;
use torch_core::validate::{ValidTask, parse_and_validate, validate_batch};
use torch_core::{EventData, EventKind, TaskId, TaskSpec, TaskState};

use crate::cli::SubmitArgs;
use crate::client::{Client, EventFollower};
use crate::exit::{BAD_INPUT, TASK_FAILED, exit};
use crate::output;

/// Reads and validates a spec file (`-` for stdin) with located errors.
pub(crate) fn read_specs(file: &str) -> Result<Vec<ValidTask>> {
    let (source, text) = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading specs from stdin")?;
        ("<stdin>".to_string(), s)
    } else {
        let text = std::fs::read_to_string(file)
            .map_err(|e| exit(BAD_INPUT, format!("cannot read {file}: {e}")))?;
        (file.to_string(), text)
    };
    let format = SpecFormat::detect(&source, &text);
    parse_and_validate(&source, &text, format).map_err(|e| exit(BAD_INPUT, e.to_string()))
}

fn inline_spec(args: &SubmitArgs) -> Result<TaskSpec> {
    let mut skills = Vec::new();
    for s in &args.skills {
        skills.push(
            s.parse()
                .map_err(|e| exit(BAD_INPUT, format!("--skill {s:?}: {e}")))?,
        );
    }
    let timeout = match &args.timeout {
        Some(t) => Some(
            humantime::parse_duration(t)
                .map_err(|e| exit(BAD_INPUT, format!("--timeout {t:?}: {e}")))?,
        ),
        None => None,
    };
    Ok(TaskSpec {
        name: args.name.clone(),
        prompt: args.prompt.clone(),
        command: (!args.command.is_empty()).then(|| args.command.clone()),
        skills,
        priority: args.priority.unwrap_or(0),
        timeout,
        max_retries: args.retries,
        ..TaskSpec::default()
    })
}

pub(crate) async fn run(args: SubmitArgs) -> Result<()> {
    let (source, specs) = match &args.file {
        Some(f) => {
            if !args.command.is_empty() {
                return Err(exit(
                    BAD_INPUT,
                    "give either a spec file or a command after --, not both",
                ));
            }
            if !args.skills.is_empty()
                || args.name.is_some()
                || args.priority.is_some()
                || args.timeout.is_some()
                || args.retries.is_some()
                || args.prompt.is_some()
            {
                return Err(exit(
                    BAD_INPUT,
                    "--skill, --name, --priority, --timeout, --retries and --prompt describe an inline task; put them in the spec file instead",
                ));
            }
            let valid = read_specs(f)?;
            (
                f.clone(),
                valid.into_iter().map(|v| v.spec).collect::<Vec<_>>(),
            )
        }
        None => {
            if args.command.is_empty() && args.prompt.is_none() {
                return Err(exit(
                    BAD_INPUT,
                    "nothing to submit: give a spec file, `-` for stdin, or a command after `--` (e.g. torch submit --skill sh -- echo hi)",
                ));
            }
            let spec = inline_spec(&args)?;
            validate_batch("command line", vec![spec.clone()])
                .map_err(|e| exit(BAD_INPUT, e.to_string()))?;
            ("command line".to_string(), vec![spec])
        }
    };
    let client = Client::new(&args.hub.hub, args.hub.token.clone())?;
    let start_after = if args.wait {
        let page: EventPage = client.get("/api/v1/events?tail=true").await?;
        page.last_id
    } else {
        0
    };
    let n = specs.len();
    let spin = (n >= SPIN_FROM).then(|| crate::bars::spinner(&format!("submitting {n} tasks")));
    let resp: SubmitResponse = client
        .post(
            "/api/v1/tasks",
            &SubmitRequest {
                tasks: specs,
                source: Some(source),
            },
        )
        .await?;
    if let Some(s) = spin {
        s.finish_and_clear();
    }
    for t in &resp.tasks {
        for w in &t.warnings {
            eprintln!("warning: {}: {w}", t.name);
        }
    }
    if !args.wait {
        if args.json {
            return output::json(&resp);
        }
        for t in &resp.tasks {
            let dup = if t.duplicate {
                " (existing, same idempotency key)"
            } else {
                ""
            };
            output::line(format!("{}  {}  {}{dup}", t.id, t.state, t.name))?;
        }
        return Ok(());
    }
    let names: Vec<(TaskId, String)> = resp.tasks.iter().map(|t| (t.id, t.name.clone())).collect();
    let finals = wait_for(&client, &names, start_after, args.json).await?;
    if args.json {
        output::json(&finals)?;
    } else {
        let mut t = output::table(&["TASK", "STATE", "ATTEMPT", "REASON", "ID"]);
        for v in &finals {
            t.add_row(vec![
                v.name.clone(),
                v.state.to_string(),
                v.attempt.to_string(),
                v.reason
                    .clone()
                    .or_else(|| v.outcome.as_ref().and_then(|o| o.reason.clone()))
                    .unwrap_or_default(),
                v.id.to_string(),
            ]);
        }
        output::line(t.to_string())?;
    }
    let failed = finals
        .iter()
        .filter(|v| v.state != TaskState::Succeeded)
        .count();
    if failed > 0 {
        return Err(exit(
            TASK_FAILED,
            format!("{failed} of {} task(s) did not succeed", finals.len()),
        ));
    }
    Ok(())
}

/// Batches at least this large get a spinner while they are submitted.
const SPIN_FROM: usize = 100;
/// Waiting on at least this many tasks shows a bar instead of one line per event.
const BAR_FROM: usize = 10;

/// Follows the task streams until every task in `names` is terminal. On a
/// terminal, many tasks get a progress bar (their events are not printed).
pub(crate) async fn wait_for(
    client: &Client,
    order: &[(TaskId, String)],
    after: u64,
    quiet: bool,
) -> Result<Vec<TaskView>> {
    let names: HashMap<TaskId, String> = order.iter().cloned().collect();
    let mut pending: HashSet<TaskId> = names.keys().copied().collect();
    // Tasks may have finished before we started following.
    for id in names.keys() {
        let v: TaskView = client.get(&format!("/api/v1/tasks/{id}")).await?;
        if v.state.is_terminal() {
            pending.remove(id);
        }
    }
    let bar = (order.len() >= BAR_FROM).then(|| {
        let b = crate::bars::bar(order.len() as u64, "tasks");
        b.set_position((order.len() - pending.len()) as u64);
        b
    });
    let quiet = quiet || bar.as_ref().is_some_and(|b| !b.is_hidden());
    let mut follower = EventFollower::new(after, &TASK_STREAMS.join(","), 2000, 60);
    while !pending.is_empty() {
        let page = follower.next(client).await?;
        for e in page.events {
            let Some(id) = e.task_id else { continue };
            let Some(name) = names.get(&id) else { continue };
            if !quiet {
                print_event(name, &e.kind, &e.data)?;
            }
            if e.kind.parse().is_ok_and(|k| TASK_ENDS.contains(&k))
                && pending.remove(&id)
                && let Some(b) = &bar
            {
                b.inc(1);
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut finals = Vec::with_capacity(order.len());
    for (id, _) in order {
        finals.push(
            client
                .get::<TaskView>(&format!("/api/v1/tasks/{id}"))
                .await?,
        );
    }
    Ok(finals)
}

/// The events that end a task: `torch submit --wait` and `torch wait`
/// stop following a task at one of them.
pub(crate) const TASK_ENDS: [EventKind; 3] = [
    EventKind::TaskSucceeded,
    EventKind::TaskDead,
    EventKind::TaskCancelled,
];

/// One line about event `kind` of task `name`, for `--wait`: the fields
/// it names from the typed data; only the kind for data this build does
/// not know.
fn print_event(name: &str, kind: &str, data: &EventPayload) -> Result<()> {
    use EventKind as K;
    let line = match (kind.parse(), data.known()) {
        (Ok(K::TaskSubmitted), _) => return Ok(()),
        (Ok(K::TaskReady), _) => format!("{name}: ready"),
        (_, Some(EventData::TaskAssigned(a))) => format!(
            "{name}: assigned (attempt {}, fence {})",
            a.attempt, a.fence
        ),
        (Ok(K::TaskStarted), _) => format!("{name}: running"),
        (_, Some(EventData::TaskProgress(p))) => {
            format!("{name}: {:>3.0}% {}", p.percent, shown(&p.message))
        }
        (Ok(K::TaskSucceeded), _) => format!("{name}: ✔ succeeded"),
        (_, Some(EventData::TaskFailed(f))) => {
            format!("{name}: ✘ attempt failed: {} (retrying)", shown(&f.reason))
        }
        (_, Some(EventData::TaskLeaseExpired(f))) => {
            format!("{name}: lease expired: {}", shown(&f.reason))
        }
        (_, Some(EventData::TaskDead(d))) => format!("{name}: ✘ dead: {}", shown(&d.reason)),
        (_, Some(EventData::TaskCancelled(c))) => {
            format!("{name}: cancelled: {}", shown(&c.reason))
        }
        _ => format!("{name}: {kind}"),
    };
    output::line(line)
}

/// A field as these lines have always shown it: its JSON text without the
/// quotes around it (so a missing message shows as `null`).
fn shown(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

//! Scenario 5, failure recovery: the agent running a task is `kill -9`ed
//! mid-run; its lease expires, the task is requeued and completes on another
//! agent exactly once (the killed attempt's process group dies with its
//! supervisor, and its late report could not count: it holds an old fence).
//! Then an agent that fails everything trips its circuit breaker and the rest
//! of the work goes around it.

use std::time::{Duration, Instant};

use anyhow::Result;
use torch_core::routing::breaker::BreakerState;
use torch_core::{EventKind, TaskState};

use super::Verdict;
use super::stage::{Narrator, Stage};
use crate::exit::{ERROR, exit};

const THRESHOLD: u32 = 3;
/// Slots of the flaky agent: tasks already running when its breaker opens
/// still end (and fail), so at most `THRESHOLD + FLAKY_SLOTS - 1` fail there.
const FLAKY_SLOTS: u32 = 2;

/// Appends one line to `completions` when it finishes: the proof of "once".
const LONG: &str = r#"
[[task]]
name = "migrate-db"
skills = ["sh"]
max_retries = 2
command = ["sh", "-c", "torch progress 10 \"attempt $TORCH_ATTEMPT started\"; sleep 3; echo \"attempt $TORCH_ATTEMPT\" >> \"$DEMO_DIR/completions\"; echo migrated"]
"#;

/// Tasks that fail on the agent named `flaky` (its work dir says so).
fn batch(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"[[task]]
name = "job-{i}"
skills = ["sh"]
max_retries = 3
backoff = {{ initial = "100ms" }}
command = ["sh", "-c", "case \"$TORCH_WORKDIR\" in */work/flaky/*) echo 'disk full' >&2; exit 1;; esac; sleep 0.2; echo ok"]

"#
            )
        })
        .collect()
}

pub(super) async fn run(say: &Narrator, keep: bool) -> Result<Verdict> {
    let mut stage = Stage::start("recovery", keep, |_, hub, _| {
        hub.routing.breaker.failure_threshold = THRESHOLD;
        hub.routing.breaker.cooldown = Duration::from_secs(600);
        Ok(())
    })
    .await?;
    // Part 1: only `alpha` is up when the task arrives, so it gets it.
    stage.agent("alpha", "sh", 1)?;
    stage.wait_agents(1).await?;
    let after = stage.tail().await?;
    let resp = stage.submit("recovery scenario", LONG).await?;
    let task_id = resp
        .tasks
        .first()
        .map(|t| t.id)
        .ok_or_else(|| exit(ERROR, "the task was not accepted"))?;
    wait_running(&stage, task_id).await?;
    let pid = stage.kill9("alpha")?;
    say.line(format!(
        "  migrate-db running on alpha: kill -9 {pid} (alpha's lease is 3s)"
    ))?;
    stage.agent("beta", "sh", 1)?;
    stage.wait_agents(1).await?;
    let finals = stage.wait(&resp, after, Duration::from_secs(60)).await?;
    let task = finals
        .first()
        .ok_or_else(|| exit(ERROR, "the task vanished"))?;
    let names = stage.agent_names().await?;
    let finisher = task
        .last_agent_id
        .and_then(|a| names.get(&a).cloned())
        .unwrap_or_default();
    let completions =
        std::fs::read_to_string(stage.artifacts.join("completions")).unwrap_or_default();
    let ended = stage
        .events(
            after,
            &[
                EventKind::TaskLeaseExpired,
                EventKind::TaskSucceeded,
                EventKind::TaskFailed,
            ],
        )
        .await?;
    let count = |k: EventKind| {
        ended
            .iter()
            .filter(|e| {
                e.task_id == Some(task_id) && e.kind.parse::<EventKind>().is_ok_and(|x| x == k)
            })
            .count()
    };
    let (expired, succeeded) = (
        count(EventKind::TaskLeaseExpired),
        count(EventKind::TaskSucceeded),
    );
    say.line(format!(
        "  lease expired {expired}×, requeued, finished on {finisher} at attempt {}: {} succeeded event(s), completions file: {:?}",
        task.attempt,
        succeeded,
        completions.lines().collect::<Vec<_>>()
    ))?;
    let once = task.state == TaskState::Succeeded
        && finisher == "beta"
        && expired >= 1
        && succeeded == 1
        && completions.lines().count() == 1;

    // Part 2: a flaky agent joins; its breaker opens at the third failure.
    stage.agent("flaky", "sh", FLAKY_SLOTS)?;
    stage.wait_agents(2).await?;
    let after = stage.tail().await?;
    let resp = stage.submit("recovery scenario", &batch(10)).await?;
    say.line(format!(
        "  flaky joins (fails every task); 10 tasks submitted, breaker threshold {THRESHOLD}"
    ))?;
    let finals = stage.wait(&resp, after, Duration::from_secs(60)).await?;
    let all_ok = finals.iter().all(|t| t.state == TaskState::Succeeded);
    let agents = stage.agents().await?;
    let flaky = agents.iter().find(|a| a.name == "flaky");
    let flaky_id = flaky.map(|a| a.id);
    let breaker = flaky.and_then(|a| a.routing.as_ref());
    let open = breaker.is_some_and(|r| !matches!(r.breaker, BreakerState::Closed { .. }));
    let failed_on_flaky = stage
        .events(after, &[EventKind::TaskFailed])
        .await?
        .iter()
        .filter(|e| e.agent_id.is_some() && e.agent_id == flaky_id)
        .count();
    say.line(format!(
        "  {failed_on_flaky} attempt(s) failed on flaky, then its breaker {}; all 10 {}",
        if open { "opened" } else { "stayed closed" },
        if all_ok {
            "succeeded on beta"
        } else {
            "did not succeed"
        }
    ))?;
    stage.stop(say).await?;
    let breaker_ok = open && all_ok && (failed_on_flaky as u32) < THRESHOLD + FLAKY_SLOTS;
    Ok(Verdict::new(
        once && breaker_ok,
        format!(
            "agent kill -9ed mid-task: lease expired, task completed on {finisher} exactly once ({succeeded} success, {} completion); the breaker {} flaky after {failed_on_flaky} failure(s) (threshold {THRESHOLD}, plus tasks already running on it) and {} of 10 tasks succeeded elsewhere",
            completions.lines().count(),
            if open { "excluded" } else { "did not exclude" },
            finals
                .iter()
                .filter(|t| t.state == TaskState::Succeeded)
                .count()
        ),
    ))
}

/// Waits until the task has started (its first progress report is in).
async fn wait_running(stage: &Stage, id: torch_core::TaskId) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: torch_api::rest::TaskView = stage.client.get(&format!("/api/v1/tasks/{id}")).await?;
        if v.progress.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(exit(ERROR, "the task did not start within 20s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

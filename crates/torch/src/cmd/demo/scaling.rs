//! Scenario 4, auto-scaling: waves of growing size arrive for a template with
//! no agents; the autoscaler scales its pool up from the queue (reactive) and
//! the rising arrival rate (predictive), then, once the pool has been idle,
//! back down to its minimum.

use std::time::{Duration, Instant};

use anyhow::Result;
use torch_core::lifecycle::{ScaleAction, parse_templates};
use torch_core::{EventData, EventKind, TaskState};

use super::Verdict;
use super::stage::{Narrator, Stage};
use crate::exit::{ERROR, exit};

const MAX: u32 = 4;

fn templates() -> String {
    format!(
        r#"
[templates.worker]
skills = ["burst"]
slots = 1
min = 0
max = {MAX}
idle-timeout = "2s"
executor = {{ command = ["sh", "-c", "{{prompt}}"] }}

[templates.worker.scaling]
interval = "250ms"
horizon = "2s"
up-cooldown = "500ms"
down-cooldown = "1s"
"#
    )
}

/// One wave of `n` tasks of 700 ms.
fn wave(n: usize, w: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[task]]\nname = \"wave{w}-{i}\"\nskills = [\"burst\"]\nprompt = \"sleep 0.7; echo done\"\n\n"
            )
        })
        .collect()
}

pub(super) async fn run(say: &Narrator, keep: bool) -> Result<Verdict> {
    let stage = Stage::start("scaling", keep, |cfg, hub, _| {
        hub.lifecycle.templates = parse_templates("demo templates", &templates())
            .map_err(|e| exit(ERROR, format!("demo templates: {e}")))?;
        hub.lifecycle.tick = Duration::from_millis(250);
        hub.lifecycle.terminate_grace = Duration::from_secs(2);
        hub.lifecycle.spawn.node_cpu_max = 1.0;
        hub.lifecycle.spawn.node_mem_max = 1.0;
        cfg.lifecycle.local_node_max_agents = MAX + 2;
        Ok(())
    })
    .await?;
    say.line(format!(
        "  template worker: 1 slot, min 0, max {MAX}, idle-timeout 2s; no agent running"
    ))?;
    let after = stage.tail().await?;
    let started = Instant::now();
    let mut submitted = Vec::new();
    for (w, n) in [2usize, 4, 8].into_iter().enumerate() {
        let resp = stage.submit("scaling scenario", &wave(n, w + 1)).await?;
        say.line(format!(
            "  +{:.1}s wave {}: {n} tasks of 700 ms",
            started.elapsed().as_secs_f64(),
            w + 1
        ))?;
        submitted.extend(resp.tasks);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let total = submitted.len();
    let all = torch_api::rest::SubmitResponse { tasks: submitted };
    let finals = stage.wait(&all, after, Duration::from_secs(90)).await?;
    let drained_at = Instant::now();
    let done_s = started.elapsed().as_secs_f64();
    let succeeded = finals
        .iter()
        .filter(|t| t.state == TaskState::Succeeded)
        .count();
    // Back to min: every worker gone.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut down_s = None;
    while Instant::now() < deadline {
        let up = stage
            .agents()
            .await?
            .iter()
            .filter(|a| {
                a.state != "disconnected"
                    && a.managed.as_ref().is_some_and(|m| m.template == "worker")
            })
            .count();
        if up == 0 {
            down_s = Some(drained_at.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = stage
        .events(after, &[EventKind::ScalingDecision, EventKind::AgentReady])
        .await?;
    let (mut ups, mut downs, mut predictive, mut ready, mut peak) = (0, 0, 0, 0, 0u32);
    let mut first_up = None;
    for e in &events {
        match e.data.known() {
            Some(EventData::ScalingDecision(d)) if d.template == "worker" => {
                peak = peak.max(d.desired);
                match d.action {
                    ScaleAction::Up { .. } => {
                        ups += 1;
                        // Predictive: demand beyond what is busy or queued
                        // now, from the forecast growth of arrivals.
                        let reactive = d.inputs.busy_slots as f64 + d.inputs.queue_depth as f64;
                        if d.demand > reactive + 0.05 {
                            predictive += 1;
                        }
                        if first_up.is_none() {
                            first_up = Some(d.reason.clone());
                            say.line(format!("  first decision: {}", d.reason))?;
                        }
                    }
                    ScaleAction::Down { .. } => downs += 1,
                    ScaleAction::Hold => {}
                }
            }
            Some(EventData::AgentReady(r)) if r.template == "worker" => ready += 1,
            _ => {}
        }
    }
    say.line(format!(
        "  {ups} scale-up decision(s) ({predictive} with forecast growth), {ready} agents ready, pool desired peaked at {peak}; {downs} scale-down decision(s)"
    ))?;
    let autonomy = stage.autonomy().await?;
    let adapt = autonomy["adapt_seconds"].as_f64();
    say.line(format!(
        "  autonomy: time to adapt {} (mean of {} change(s) of target)",
        adapt.map_or_else(|| "-".into(), |s| format!("{s:.1}s")),
        autonomy["adapt_samples"]
    ))?;
    stage.stop(say).await?;
    let ok = succeeded == total && ups > 0 && peak == MAX && downs > 0 && down_s.is_some();
    Ok(Verdict::new(
        ok,
        format!(
            "{total} tasks in 3 growing waves: pool 0→{peak} ({ups} up decision(s), {predictive} predictive), {succeeded}/{total} succeeded by {done_s:.1}s, mean time to adapt {}; {}",
            adapt.map_or_else(|| "-".into(), |s| format!("{s:.1}s")),
            match down_s {
                Some(s) => format!(
                    "back to 0 agents {s:.1}s after the queue drained ({downs} down decision(s))"
                ),
                None => "the pool did not scale back down within 45s".into(),
            }
        ),
    ))
}

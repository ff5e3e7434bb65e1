//! Scenario 2, agent self-spawning: a planning agent's task records what it
//! learned in its memory, spawns a `reviewer` helper that inherits the
//! `repo.*` keys (not the others) and delegates a subtask to it; the helper's
//! own attempt to spawn another helper is refused by the depth limit, and the
//! helper is drained when its parent task ends.

use std::time::{Duration, Instant};

use anyhow::Result;
use torch_core::TaskState;
use torch_core::lifecycle::parse_templates;

use super::Verdict;
use super::stage::{Narrator, Stage};
use crate::exit::{ERROR, exit};

const TEMPLATES: &str = r#"
[templates.planner]
skills = ["plan"]
slots = 1
min = 1
max = 1
executor = { command = ["sh", "-c", "{prompt}"] }

[templates.reviewer]
skills = ["review"]
slots = 1
min = 0
max = 2
inherit = "all"
executor = { command = ["sh", "-c", "{prompt}"] }
"#;

/// The parent task: memory, then `torch delegate --helper`. The child spec is
/// written with the demo dir in its env so the child can leave its proof.
const PARENT: &str = r#"
[[task]]
name = "plan-release"
skills = ["plan"]
timeout = "60s"
command = ["sh", "-c", '''
set -e
torch memory put repo.style "tabs, 100 columns"
torch memory put private.draft "not for helpers"
cat > child.toml <<EOF
[[task]]
name = "review-diff"
skills = ["review"]
env = { DEMO_DIR = "$DEMO_DIR" }
command = ["sh", "-c", "torch memory get repo.style > \"\$DEMO_DIR/style.txt\"; torch memory get private.draft > \"\$DEMO_DIR/leak.txt\" 2>&1 || true; torch spawn --template reviewer --timeout 10s > \"\$DEMO_DIR/cascade.txt\" 2>&1 || echo refused >> \"\$DEMO_DIR/cascade.txt\""]
EOF
torch delegate --helper reviewer --inherit 'repo.*' --wait child.toml
''']
"#;

pub(super) async fn run(say: &Narrator, keep: bool) -> Result<Verdict> {
    let stage = Stage::start("spawning", keep, |cfg, hub, artifacts| {
        // The reviewer's subtask leaves its proof in the artifacts dir.
        let templates = format!(
            "{TEMPLATES}\n[templates.reviewer.sandbox]\nwrite = [{:?}]\n",
            artifacts.display().to_string()
        );
        hub.lifecycle.templates = parse_templates("demo templates", &templates)
            .map_err(|e| exit(ERROR, format!("demo templates: {e}")))?;
        hub.lifecycle.tick = Duration::from_millis(250);
        hub.lifecycle.terminate_grace = Duration::from_secs(2);
        // Helpers may not start helpers: depth 0 (the planner) → 1 only.
        hub.lifecycle.spawn.max_depth = 1;
        hub.lifecycle.spawn.node_cpu_max = 1.0;
        hub.lifecycle.spawn.node_mem_max = 1.0;
        cfg.lifecycle.local_node_max_agents = 8;
        Ok(())
    })
    .await?;
    say.line(
        "  templates: planner (min 1) and reviewer (helpers, inherit allowed); spawn depth limit 1",
    )?;
    wait_template(&stage, "planner", Duration::from_secs(30)).await?;
    let after = stage.tail().await?;
    let resp = stage.submit("spawning scenario", PARENT).await?;
    say.line("  the planner's task puts repo.style and private.draft in its memory, then runs")?;
    say.line("  $ torch delegate --helper reviewer --inherit 'repo.*' --wait child.toml")?;
    let finals = stage.wait(&resp, after, Duration::from_secs(90)).await?;
    let parent = finals
        .into_iter()
        .next()
        .ok_or_else(|| exit(ERROR, "the parent task vanished"))?;
    let children: torch_api::rest::TaskList = stage
        .client
        .get(&format!("/api/v1/tasks?parent={}", parent.id))
        .await?;
    let child = children.tasks.first();
    let names = stage.agent_names().await?;
    let helper = child.and_then(|c| c.last_agent_id);
    let helper_name = helper
        .and_then(|h| names.get(&h).cloned())
        .unwrap_or_else(|| "none".into());
    let read = |f: &str| std::fs::read_to_string(stage.artifacts.join(f)).unwrap_or_default();
    let style = read("style.txt").trim().to_string();
    let leak = read("leak.txt");
    let cascade = read("cascade.txt");
    say.line(format!(
        "  helper {helper_name} ran {}: inherited repo.style = {style:?}; private.draft: {}",
        child.map(|c| c.name.as_str()).unwrap_or("no subtask"),
        first_line(&leak)
    ))?;
    say.line(format!(
        "  the helper's own spawn: {}",
        first_line(&cascade)
    ))?;
    // The helper is drained once its parent task has ended.
    let drained = wait_template_gone(&stage, "reviewer", Duration::from_secs(30)).await;
    say.line(format!(
        "  after the parent ended: reviewer helpers {}",
        if drained {
            "drained and stopped"
        } else {
            "still running"
        }
    ))?;
    let autonomy = stage.autonomy().await?;
    say.line(format!(
        "  autonomy: {} self-spawn event(s), success rate {}",
        autonomy["self_spawn_events"], autonomy["self_spawn_success_rate"]
    ))?;
    stage.stop(say).await?;
    let refused = cascade.contains("depth") && cascade.contains("refused");
    let ok = parent.state == TaskState::Succeeded
        && child.is_some_and(|c| c.state == TaskState::Succeeded)
        && style == "tabs, 100 columns"
        && !leak.contains("not for helpers")
        && refused
        && drained;
    Ok(Verdict::new(
        ok,
        format!(
            "the planner's task spawned helper {helper_name}, which inherited repo.style only and finished its subtask ({}); a cascade spawn was {}; the helper {} when the parent ended",
            child
                .map(|c| c.state.to_string())
                .unwrap_or_else(|| "missing".into()),
            if refused {
                "refused by the depth limit"
            } else {
                "not refused"
            },
            if drained {
                "was drained"
            } else {
                "was not drained"
            }
        ),
    ))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("(nothing)").trim()
}

/// Waits until an agent of `template` is ready.
async fn wait_template(stage: &Stage, template: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let ready = stage.agents().await?.iter().any(|a| {
            a.state != "disconnected"
                && a.managed
                    .as_ref()
                    .is_some_and(|m| m.template == template && m.phase == "ready")
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(exit(
                ERROR,
                format!("no {template} agent was ready within {}s", limit.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every agent of `template` is gone within `limit`.
async fn wait_template_gone(stage: &Stage, template: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match stage.agents().await {
            Ok(agents)
                if !agents.iter().any(|a| {
                    a.state != "disconnected"
                        && a.managed.as_ref().is_some_and(|m| m.template == template)
                }) =>
            {
                return true;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    false
}

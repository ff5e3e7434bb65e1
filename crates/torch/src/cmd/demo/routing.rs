//! Scenario 1, intelligent task routing: a task that names only `sh` but
//! talks about a Rust crate's tests is analysed (skills inferred from its
//! prompt and paths, a complexity estimate) and goes to the best of four
//! agents; `torch explain` shows why.

use std::time::Duration;

use anyhow::Result;
use torch_core::TaskState;

use super::Verdict;
use super::stage::{Narrator, Stage};
use crate::cmd::explain::explanation_text;

/// The fleet: (name, skills, slots).
const AGENTS: [(&str, &str, u32); 4] = [
    ("generalist", "sh,python:0.6,rust:0.4", 2),
    ("rust-expert", "sh,rust:0.95,testing:0.8", 2),
    ("py-dev", "sh,python:0.9,testing:0.6", 2),
    ("writer", "docs:0.9", 1),
];

/// The agent the task should reach: the only one strong in both inferred skills.
const BEST: &str = "rust-expert";

const TASK: &str = r#"
[[task]]
name = "fix-parser-regression"
skills = ["sh"]
prompt = "The cargo test for the Rust parser crate fails on nested generics: find the bug, fix it and add a regression test."
context = { paths = ["crates/parser/src/lib.rs", "crates/parser/Cargo.toml", "crates/parser/tests/generics.rs"] }
command = ["sh", "-c", "torch progress 40 reproducing; sleep 0.3; torch progress 80 fixing; echo 'test generics::nested ... ok'"]
success = { stdout_matches = "nested \\.\\.\\. ok" }
"#;

pub(super) async fn run(say: &Narrator, keep: bool) -> Result<Verdict> {
    let mut stage = Stage::start("routing", keep, |_, _, _| Ok(())).await?;
    for (name, skills, slots) in AGENTS {
        stage.agent(name, skills, slots)?;
        say.line(format!("  agent {name:<12} skills {skills}"))?;
    }
    stage.wait_agents(AGENTS.len()).await?;
    let after = stage.tail().await?;
    let resp = stage.submit("routing scenario", TASK).await?;
    say.line("  submitted a task that requires only `sh`; its prompt and paths say more")?;
    let finals = stage.wait(&resp, after, Duration::from_secs(60)).await?;
    let Some(task) = finals.into_iter().next() else {
        return Ok(Verdict::new(false, "the task was not found after it ended"));
    };
    let names = stage.agent_names().await?;
    let inferred: Vec<String> = task
        .analysis
        .as_ref()
        .map(|a| {
            a.preferred
                .iter()
                .map(|i| format!("{} ({})", i.skill, i.source))
                .collect()
        })
        .unwrap_or_default();
    let complexity = task
        .analysis
        .as_ref()
        .map(|a| format!("{:?} {:.2}", a.complexity.level, a.complexity.score))
        .unwrap_or_else(|| "none".into());
    say.line(format!(
        "  analysis: inferred {}; complexity {complexity}",
        if inferred.is_empty() {
            "nothing".to_string()
        } else {
            inferred.join(", ")
        }
    ))?;
    let Some(mut e) = task.explanation.clone() else {
        stage.stop(say).await?;
        return Ok(Verdict::new(
            false,
            format!(
                "the task ended {} without a routing explanation",
                task.state
            ),
        ));
    };
    say.line(format!("  $ torch explain {}", task.id))?;
    for l in explanation_text(&task, &mut e, &names).lines() {
        say.line(format!("  {l}"))?;
    }
    let chosen = names.get(&e.chosen).cloned().unwrap_or_default();
    let best_total = e
        .candidates
        .iter()
        .map(|c| c.total)
        .fold(f64::MIN, f64::max);
    let chosen_total = e
        .candidates
        .iter()
        .find(|c| c.agent == e.chosen)
        .map(|c| c.total)
        .unwrap_or(f64::MIN);
    let runner_up = e
        .candidates
        .iter()
        .filter(|c| c.agent != e.chosen)
        .map(|c| c.total)
        .fold(f64::MIN, f64::max);
    let inferred_rust = task
        .analysis
        .as_ref()
        .is_some_and(|a| a.preferred.iter().any(|i| i.skill.name == "rust"));
    stage.stop(say).await?;
    let ok = task.state == TaskState::Succeeded
        && chosen == BEST
        && chosen_total >= best_total
        && inferred_rust;
    Ok(Verdict::new(
        ok,
        format!(
            "analysed (inferred {} skill(s), complexity {complexity}) and routed to {chosen} with score {chosen_total:.3} over {} other candidate(s) (next best {runner_up:.3}), {} rejected; task {}",
            inferred.len(),
            e.candidates.len().saturating_sub(1),
            e.rejected_counts.values().sum::<u32>(),
            task.state
        ),
    ))
}

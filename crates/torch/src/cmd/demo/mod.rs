//! `torch demo`: the build/test/report pipeline, or the five sprint-review
//! scenarios, each on its own fresh embedded store with real agent processes,
//! each ending in a one-line verdict.

mod pipeline;
mod recovery;
mod routing;
mod scaling;
mod spawning;
mod stage;
mod teams;

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::cli::DemoArgs;
use crate::exit::{ERROR, exit};
use crate::output;
use stage::Narrator;

/// What one scenario concluded.
pub(super) struct Verdict {
    /// Whether everything the scenario shows happened as designed.
    ok: bool,
    /// One line saying what happened, with the figures.
    verdict: String,
}

impl Verdict {
    fn new(ok: bool, verdict: impl Into<String>) -> Verdict {
        Verdict {
            ok,
            verdict: verdict.into(),
        }
    }
}

/// One line of `--json` output.
#[derive(Serialize)]
struct ScenarioReport {
    number: u8,
    name: &'static str,
    ok: bool,
    verdict: String,
    seconds: f64,
}

/// The scenarios, in order: number and name.
const SCENARIOS: [(u8, &str); 5] = [
    (1, "Intelligent task routing"),
    (2, "Agent self-spawning"),
    (3, "Team collaboration"),
    (4, "Auto-scaling"),
    (5, "Failure recovery"),
];

pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    let Some(which) = args.scenario.as_deref() else {
        return pipeline::run(args.keep).await;
    };
    let numbers: Vec<u8> = match which {
        "all" => SCENARIOS.iter().map(|(n, _)| *n).collect(),
        n => vec![n.parse().map_err(|_| exit(ERROR, "unknown scenario"))?],
    };
    let say = Narrator::new(!args.json);
    let mut reports = Vec::new();
    for number in numbers {
        let name = SCENARIOS
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, name)| *name)
            .ok_or_else(|| exit(ERROR, format!("no scenario {number}")))?;
        say.line(format!("\n━━ {number}. {name} ━━"))?;
        let started = Instant::now();
        let result = match number {
            1 => routing::run(&say, args.keep).await,
            2 => spawning::run(&say, args.keep).await,
            3 => teams::run(&say, args.keep).await,
            4 => scaling::run(&say, args.keep).await,
            _ => recovery::run(&say, args.keep).await,
        };
        // A scenario that could not even run is a failed scenario, with the
        // error as its verdict; the others still run.
        let v = result.unwrap_or_else(|e| Verdict::new(false, format!("error: {e:#}")));
        let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        say.line(format!(
            "{} {number}. {name} ({seconds:.1}s): {}",
            if v.ok { "✔" } else { "✘" },
            v.verdict
        ))?;
        reports.push(ScenarioReport {
            number,
            name,
            ok: v.ok,
            verdict: v.verdict,
            seconds,
        });
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.number.to_string())
        .collect();
    if args.json {
        output::json(&serde_json::json!({ "scenarios": reports }))?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(exit(
            ERROR,
            format!("scenario(s) {} did not end as designed", failed.join(", ")),
        ))
    }
}

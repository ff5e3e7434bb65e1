//! `torch explain TASK` and `torch analyze SPEC`.

use std::collections::HashMap;

use anyhow::Result;
use comfy_table::Table;
use torch_api::rest::{AgentList, AnalyzeResponse, SubmitRequest, TaskView};
use torch_core::AgentId;
use torch_core::routing::Explanation;
use torch_core::routing::score::TORCH_FACTORS;

use crate::cli::{HubArgs, OutArgs};
use crate::client::Client;
use crate::cmd::submit::read_specs;
use crate::exit::{ERROR, exit};
use crate::output;

pub(crate) async fn explain(hub: HubArgs, out: OutArgs, id: String) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let task: TaskView = client.get(&format!("/api/v1/tasks/{id}")).await?;
    let Some(mut e) = task.explanation.clone() else {
        return Err(exit(
            ERROR,
            format!(
                "task {} ({}) has not been assigned yet: nothing to explain (state {})",
                task.name, task.id, task.state
            ),
        ));
    };
    if out.json {
        return output::json(&serde_json::json!({
            "task_id": task.id,
            "name": task.name,
            "state": task.state,
            "attempt": task.attempt,
            "explanation": e,
            "analysis": task.analysis,
        }));
    }
    let names: HashMap<_, _> = client
        .get::<AgentList>("/api/v1/agents")
        .await
        .map(|l| l.agents.into_iter().map(|a| (a.id, a.name)).collect())
        .unwrap_or_default();
    output::line(explanation_text(&task, &mut e, &names))?;
    Ok(())
}

/// `torch explain` as text: who got the task and why, one row per
/// candidate, then the rejections. `names` maps agent ids to names.
pub(crate) fn explanation_text(
    task: &TaskView,
    e: &mut Explanation,
    names: &HashMap<AgentId, String>,
) -> String {
    in_documented_order(e);
    let name = |a: &AgentId| {
        names
            .get(a)
            .cloned()
            .unwrap_or_else(|| a.to_string()[..8].to_string())
    };
    let mut text = format!(
        "task {} ({}) attempt {}: assigned to {} by policy {} ({:?}), {} feasible candidate(s)\n{}",
        task.name,
        task.id,
        task.attempt,
        name(&e.chosen),
        e.policy,
        e.mode,
        e.feasible,
        candidates_table(e, &name)
    );
    if !e.rejected.is_empty() {
        text.push_str("\nrejected:");
        for r in &e.rejected {
            let reason = serde_json::to_string(&r.reason).unwrap_or_default();
            text.push_str(&format!("\n  {:<20} {reason}", name(&r.agent)));
        }
        let counts: Vec<String> = e
            .rejected_counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        text.push_str(&format!("\n  totals: {}", counts.join(", ")));
    }
    text
}

/// Puts every candidate's factors in the documented order (skill, load,
/// performance, affinity, cost), then any other factor by name. The JSON
/// `factors` map keeps no order once read through `serde_json::Value`.
fn in_documented_order(e: &mut Explanation) {
    for c in &mut e.candidates {
        c.factors.sort_by(|a, b| {
            let rank = |n: &str| {
                TORCH_FACTORS
                    .iter()
                    .position(|f| *f == n)
                    .unwrap_or(TORCH_FACTORS.len())
            };
            (rank(&a.name), &a.name).cmp(&(rank(&b.name), &b.name))
        });
    }
}

/// One row per candidate: its total, each factor's value (the weight in the
/// header) and its load.
fn candidates_table(e: &Explanation, name: &dyn Fn(&AgentId) -> String) -> Table {
    let mut header = vec!["AGENT".to_string(), "TOTAL".to_string()];
    if let Some(c) = e.candidates.first() {
        header.extend(
            c.factors
                .iter()
                .map(|f| format!("{} ×{:.2}", f.name.to_uppercase(), f.weight)),
        );
    }
    header.push("LOAD".into());
    let hdr: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = output::table(&hdr);
    for c in &e.candidates {
        let mut row = vec![
            format!(
                "{}{}",
                if c.agent == e.chosen { "→ " } else { "  " },
                name(&c.agent)
            ),
            format!("{:.3}", c.total),
        ];
        row.extend(c.factors.iter().map(|f| format!("{:.2}", f.value)));
        row.push(c.used.to_string());
        t.add_row(row);
    }
    t
}

pub(crate) async fn analyze(hub: HubArgs, out: OutArgs, file: String) -> Result<()> {
    let valid = read_specs(&file)?;
    let specs: Vec<_> = valid.into_iter().map(|v| v.spec).collect();
    let names: Vec<String> = specs.iter().map(|s| s.display_name()).collect();
    let client = Client::new(&hub.hub, hub.token)?;
    let resp: AnalyzeResponse = client
        .post(
            "/api/v1/analyze",
            &SubmitRequest {
                tasks: specs,
                source: Some(file),
            },
        )
        .await?;
    if out.json {
        return output::json(&resp);
    }
    let mut t = output::table(&[
        "TASK",
        "REQUIRED",
        "PREFERRED (inferred from)",
        "COMPLEXITY",
        "TEAM",
        "WARNINGS",
    ]);
    for (name, a) in names.iter().zip(resp.analyses) {
        let req: Vec<String> = a.required.iter().map(|s| s.to_string()).collect();
        let pref: Vec<String> = a
            .preferred
            .iter()
            .map(|i| format!("{} ({})", i.skill, i.source))
            .collect();
        t.add_row(vec![
            name.clone(),
            req.join(", "),
            pref.join("\n"),
            format!("{:?} {:.2}", a.complexity.level, a.complexity.score),
            if a.needs_team {
                "yes".into()
            } else {
                "no".into()
            },
            a.warnings.join("\n"),
        ]);
    }
    output::line(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: explanations are compact (`factors` is a map), and a map
    /// read through `serde_json::Value` comes back alphabetical, so the table
    /// printed AFFINITY, COST, LOAD, PERFORMANCE, SKILL.
    #[test]
    fn factors_print_in_the_documented_order_then_unknown_ones_alphabetically() {
        let a = "00000000-0000-7000-8000-000000000001";
        let b = "00000000-0000-7000-8000-000000000002";
        let factors = serde_json::json!({
            "skill": 0.9, "load": 0.8, "performance": 0.7, "affinity": 0.6,
            "cost": 0.5, "zeal": 0.4, "freshness": 0.3,
        });
        let raw = serde_json::json!({
            "policy": "torch", "chosen": a, "mode": "greedy",
            "weights": {"skill": 0.35, "load": 0.25, "performance": 0.2, "affinity": 0.1,
                        "cost": 0.05, "zeal": 0.03, "freshness": 0.02},
            "candidates": [
                {"agent": a, "total": 0.7, "used": 0, "factors": factors},
                {"agent": b, "total": 0.6, "used": 1, "factors": factors},
            ],
            "feasible": 2, "rejected": [], "rejected_counts": {}, "not_examined": 0,
        });
        let mut e: Explanation = serde_json::from_value(raw).expect("explanation");
        in_documented_order(&mut e);
        let names = |id: &AgentId| {
            if id.to_string() == a {
                "alpha".to_string()
            } else {
                "beta".to_string()
            }
        };
        let text = candidates_table(&e, &names).to_string();
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "AGENT",
                "TOTAL",
                "SKILL",
                "×0.35",
                "LOAD",
                "×0.25",
                "PERFORMANCE",
                "×0.20",
                "AFFINITY",
                "×0.10",
                "COST",
                "×0.05",
                "FRESHNESS",
                "×0.02",
                "ZEAL",
                "×0.03",
                "LOAD",
            ],
            "{text}"
        );
        for (line, agent, used) in [(lines[1], "alpha", "0"), (lines[2], "beta", "1")] {
            let cells: Vec<&str> = line.split_whitespace().filter(|c| *c != "→").collect();
            assert_eq!(
                cells[2..],
                ["0.90", "0.80", "0.70", "0.60", "0.50", "0.30", "0.40", used],
                "values follow their headers: {text}"
            );
            assert_eq!(cells[0], agent, "{text}");
        }
    }
}

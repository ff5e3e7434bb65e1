//! `torch explain TASK` and `torch analyze SPEC`.

use std::collections::HashMap;

use anyhow::Result;
use torch_api::rest::{AgentList, AnalyzeResponse, SubmitRequest, TaskView};
use torch_core::routing::{Explanation, TaskAnalysis};

use crate::cli::{HubArgs, OutArgs};
use crate::client::Client;
use crate::cmd::submit::read_specs;
use crate::exit::{ERROR, exit};
use crate::output;

pub(crate) async fn explain(hub: HubArgs, out: OutArgs, id: String) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let task: TaskView = client.get(&format!("/api/v1/tasks/{id}")).await?;
    let Some(raw) = task.explanation.clone() else {
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
            "explanation": raw,
            "analysis": task.analysis,
        }));
    }
    let e: Explanation = serde_json::from_value(raw).map_err(|err| {
        exit(
            ERROR,
            format!("the hub returned an explanation this torch cannot read: {err}"),
        )
    })?;
    let names: HashMap<_, _> = client
        .get::<AgentList>("/api/v1/agents")
        .await
        .map(|l| l.agents.into_iter().map(|a| (a.id, a.name)).collect())
        .unwrap_or_default();
    let name = |a: &torch_core::AgentId| {
        names
            .get(a)
            .cloned()
            .unwrap_or_else(|| a.to_string()[..8].to_string())
    };
    output::line(format!(
        "task {} ({}) attempt {}: assigned to {} by policy {} ({:?}), {} feasible candidate(s)",
        task.name,
        task.id,
        task.attempt,
        name(&e.chosen),
        e.policy,
        e.mode,
        e.feasible
    ))?;
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
    output::line(t.to_string())?;
    if !e.rejected.is_empty() {
        output::line("rejected:")?;
        for r in &e.rejected {
            output::line(format!(
                "  {:<20} {}",
                name(&r.agent),
                serde_json::to_string(&r.reason)?
            ))?;
        }
        let counts: Vec<String> = e
            .rejected_counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        output::line(format!("  totals: {}", counts.join(", ")))?;
    }
    Ok(())
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
    for (name, raw) in names.iter().zip(resp.analyses) {
        let a: TaskAnalysis = serde_json::from_value(raw)
            .map_err(|err| exit(ERROR, format!("unreadable analysis from the hub: {err}")))?;
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

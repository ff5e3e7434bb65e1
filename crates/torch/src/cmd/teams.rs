//! `torch teams list|show` and, inside a task, `torch team status|members`.

use anyhow::Result;
use torch_api::rest::{TeamList, TeamView};
use torch_api::{ENV_TASK_ID, ENV_TASK_TOKEN};

use crate::cli_teams::{TeamArgs, TeamCmd, TeamsCmd};
use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};
use crate::output::{self, age, now_ms};

/// `torch teams …`.
pub(crate) async fn teams(cmd: TeamsCmd) -> Result<()> {
    match cmd {
        TeamsCmd::List { hub, out } => {
            let client = Client::new(&hub.hub, hub.token)?;
            let list: TeamList = client.get("/api/v1/teams").await?;
            if out.json {
                return output::json(&list);
            }
            if list.teams.is_empty() {
                return output::line("no teams");
            }
            let now = now_ms();
            let mut rows = vec![vec![
                "TEAM".to_string(),
                "NAME".into(),
                "STATE".into(),
                "LEADER".into(),
                "TERM".into(),
                "MEMBERS".into(),
                "PROGRESS".into(),
                "FORMED".into(),
            ]];
            for t in &list.teams {
                let leader = t
                    .members
                    .iter()
                    .find(|m| m.leader)
                    .map_or_else(|| t.leader.to_string(), |m| m.name.clone());
                rows.push(vec![
                    t.id.to_string(),
                    t.name.clone(),
                    format!("{} ({})", t.state, t.task_state),
                    leader,
                    t.term.to_string(),
                    t.members.len().to_string(),
                    format!("{:.0}% ({}/{})", t.progress * 100.0, t.done, t.total),
                    age(t.formed_ms, now),
                ]);
            }
            print_rows(&rows)
        }
        TeamsCmd::Show { hub, out, id } => {
            let client = Client::new(&hub.hub, hub.token)?;
            let view: TeamView = client.get(&format!("/api/v1/teams/{id}")).await?;
            if out.json {
                return output::json(&view);
            }
            print_team(&view)
        }
    }
}

/// `torch team …`.
pub(crate) async fn team(cmd: TeamCmd) -> Result<()> {
    let (args, members_only) = match cmd {
        TeamCmd::Status(a) => (a, false),
        TeamCmd::Members(a) => (a, true),
    };
    let view = own_team(&args).await?;
    if args.out.json {
        return if members_only {
            output::json(
                &serde_json::json!({ "team": view.id, "leader": view.leader, "term": view.term, "members": view.members }),
            )
        } else {
            output::json(&view)
        };
    }
    if members_only {
        output::line(format!("team {} (term {})", view.id, view.term))?;
        return print_members(&view);
    }
    print_team(&view)
}

/// The team of `--task`, else of this task.
pub(crate) async fn own_team(args: &TeamArgs) -> Result<TeamView> {
    let task = match &args.task {
        Some(t) => t.clone(),
        None => std::env::var(ENV_TASK_ID).map_err(|_| {
            exit(
                BAD_INPUT,
                format!("`torch team` runs inside a task ({ENV_TASK_ID}) or with --task ID"),
            )
        })?,
    };
    let token = args
        .hub
        .token
        .clone()
        .or_else(|| std::env::var(ENV_TASK_TOKEN).ok());
    let client = Client::new(&args.hub.hub, token)?;
    client.get(&format!("/api/v1/teams/{task}")).await
}

fn print_members(v: &TeamView) -> Result<()> {
    let mut rows = vec![vec![
        "AGENT".to_string(),
        "NAME".into(),
        "ROLE".into(),
        "STATE".into(),
        "COST".into(),
        "SUBTASK".into(),
    ]];
    for m in &v.members {
        let name = if m.leader {
            format!("{} (leader)", m.name)
        } else {
            m.name.clone()
        };
        let name = match &m.template {
            Some(t) => format!("{name} [spawned: {t}]"),
            None => name,
        };
        rows.push(vec![
            m.agent_id.to_string(),
            name,
            m.role.clone(),
            m.state.clone(),
            format!("{:.3}", m.cost),
            m.subtask.map_or_else(|| "-".into(), |s| s.to_string()),
        ]);
    }
    print_rows(&rows)
}

fn print_team(v: &TeamView) -> Result<()> {
    output::line(format!("team:      {} ({})", v.id, v.name))?;
    output::line(format!("state:     {} (task {})", v.state, v.task_state))?;
    output::line(format!(
        "leader:    {} (term {}): {}",
        v.leader, v.term, v.leader_reason
    ))?;
    output::line(format!(
        "progress:  {:.0}% ({}/{} subtasks ended)",
        v.progress * 100.0,
        v.done,
        v.total
    ))?;
    if let Some(r) = &v.repository {
        output::line(format!(
            "repo:      {r} → {}",
            v.integration_branch.as_deref().unwrap_or("-")
        ))?;
    }
    output::line("members:")?;
    print_members(v)?;
    if !v.subtasks.is_empty() {
        output::line("subtasks:")?;
        let mut rows = vec![vec![
            "TASK".to_string(),
            "NAME".into(),
            "ROLE".into(),
            "STATE".into(),
            "PROGRESS".into(),
            "AGENT".into(),
        ]];
        for s in &v.subtasks {
            rows.push(vec![
                s.id.to_string(),
                s.name.clone(),
                s.role.clone().unwrap_or_else(|| "-".into()),
                s.state.clone(),
                format!("{:.0}%", s.progress * 100.0),
                s.agent.map_or_else(|| "-".into(), |a| a.to_string()),
            ]);
        }
        print_rows(&rows)?;
    }
    if !v.merges.is_empty() {
        output::line("merge queue:")?;
        for m in &v.merges {
            let detail = match m.state.as_str() {
                "landed" => m.commit.clone().unwrap_or_default(),
                "conflict" => format!(
                    "in {}; follow-up {}",
                    m.paths.join(", "),
                    m.follow_up.map_or_else(|| "-".into(), |t| t.to_string())
                ),
                _ => String::new(),
            };
            output::line(format!("  {:<9} {} {detail}", m.state, m.branch))?;
        }
    }
    if let Some(total) = v.explanation.get("total_cost") {
        output::line(format!("formation: total cost {total}"))?;
    }
    if let Some(roles) = v.explanation.get("roles").and_then(|r| r.as_object()) {
        for (role, r) in roles {
            let cands: Vec<String> = r["candidates"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            format!(
                                "{} {:.3}",
                                c["name"].as_str().unwrap_or("?"),
                                c["cost"].as_f64().unwrap_or(0.0)
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            output::line(format!("  {role}: {}", cands.join(", ")))?;
            if let Some(rej) = r["rejected"].as_array() {
                for x in rej {
                    output::line(format!(
                        "    rejected {}: {}",
                        x["name"].as_str().unwrap_or("?"),
                        x["why"].as_str().unwrap_or("")
                    ))?;
                }
            }
        }
    }
    if !v.history.is_empty() {
        output::line("history:")?;
        for h in &v.history {
            output::line(format!(
                "  {:>4} ago {:<22} {}",
                age(h.at_ms, now_ms()),
                h.kind,
                h.text
            ))?;
        }
    }
    Ok(())
}

/// Prints `rows` as a table, the first row being the header.
fn print_rows(rows: &[Vec<String>]) -> Result<()> {
    let Some((header, body)) = rows.split_first() else {
        return Ok(());
    };
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = output::table(&header);
    for r in body {
        t.add_row(r.clone());
    }
    output::line(t.to_string())
}

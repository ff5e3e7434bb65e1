//! `torch usage [--since D] [--json]`: tokens and dollars used, totalled
//! from the usage stored with attempts; `torch usage report` from inside a
//! task adds to the running attempt's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use torch_api::rest::{UsageGroup, UsageReport, UsageReported, UsageSummary};
use torch_api::{ENV_HUB, ENV_TASK_ID, ENV_TASK_TOKEN};

use crate::cli::{UsageArgs, UsageCmd};
use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};
use crate::output;

pub(crate) async fn run(args: UsageArgs) -> Result<()> {
    match args.cmd {
        Some(UsageCmd::Report {
            tokens_in,
            tokens_out,
            cost_usd,
            json,
        }) => {
            let req = UsageReport {
                tokens_in,
                tokens_out,
                cost_usd,
            };
            report(req, json).await
        }
        None => summary(args).await,
    }
}

async fn report(req: UsageReport, json: bool) -> Result<()> {
    let var = |k: &str| {
        std::env::var(k).map_err(|_| {
            exit(
                BAD_INPUT,
                format!(
                    "{k} is not set: `torch usage report` runs inside a task started by a torch agent"
                ),
            )
        })
    };
    let hub = var(ENV_HUB)?;
    let task = var(ENV_TASK_ID)?;
    let token = var(ENV_TASK_TOKEN)?;
    if !(req.cost_usd.is_finite() && req.cost_usd >= 0.0) {
        return Err(exit(
            BAD_INPUT,
            format!("--cost-usd {} must be a non-negative number", req.cost_usd),
        ));
    }
    let client = Client::new(&hub, Some(token))?;
    let r: UsageReported = client
        .post(&format!("/api/v1/tasks/{task}/usage"), &req)
        .await?;
    if json {
        return output::json(&r);
    }
    if let Some(why) = &r.budget_exceeded {
        output::line(format!(
            "budget exceeded: {why}; the hub is stopping this task"
        ))?;
    }
    Ok(())
}

/// `--since`: a duration ago or an RFC 3339 time, as unix ms.
fn since_ms(s: &str) -> Result<u64> {
    let at = match humantime::parse_duration(s) {
        Ok(ago) => SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(s)
            .or_else(|_| humantime::parse_rfc3339_weak(&format!("{s} 00:00:00")))
            .map_err(|_| {
                exit(
                    BAD_INPUT,
                    format!("--since {s:?} is neither a duration (24h) nor a time (2026-12-01T00:00:00Z)"),
                )
            })?,
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64)
}

async fn summary(args: UsageArgs) -> Result<()> {
    let path = match &args.since {
        Some(s) => format!("/api/v1/usage?since_ms={}", since_ms(s)?),
        None => "/api/v1/usage".to_string(),
    };
    let client = Client::new(&args.hub.hub, args.hub.token)?;
    let u: UsageSummary = client.get(&path).await?;
    if args.out.json {
        return output::json(&u);
    }
    let t = &u.totals;
    output::line(format!(
        "{} tasks: {} tokens in, {} tokens out, ${:.4}",
        t.tasks, t.tokens_in, t.tokens_out, t.cost_usd
    ))?;
    for (title, groups) in [("TENANT", &u.by_tenant), ("TEMPLATE", &u.by_template)] {
        output::line("")?;
        let mut table = output::table(&[title, "TASKS", "TOKENS IN", "TOKENS OUT", "COST USD"]);
        for g in groups {
            table.add_row(row(g));
        }
        output::line(table.to_string())?;
    }
    Ok(())
}

fn row(g: &UsageGroup) -> Vec<String> {
    vec![
        g.name.clone(),
        g.totals.tasks.to_string(),
        g.totals.tokens_in.to_string(),
        g.totals.tokens_out.to_string(),
        format!("{:.4}", g.totals.cost_usd),
    ]
}

//! `torch tasks list|show|cancel|retry|logs`.

use anyhow::Result;
use torch_api::rest::{CancelRequest, CancelResponse, LogsView, TaskList, TaskView};

use crate::cli::{HubArgs, OutArgs};
use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};
use crate::output::{self, age, now_ms};

fn client(hub: HubArgs) -> Result<Client> {
    Client::new(&hub.hub, hub.token)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Most tasks one `GET /api/v1/tasks` returns: the hub caps `limit` there
/// (docs/api.md). A longer listing follows the `before` cursor.
const API_PAGE: usize = 1000;

pub(crate) async fn list(
    hub: HubArgs,
    out: OutArgs,
    state: Option<String>,
    label: Option<String>,
    limit: usize,
) -> Result<()> {
    if limit == 0 {
        return Err(exit(BAD_INPUT, "--limit must be at least 1"));
    }
    let mut filters = String::new();
    if let Some(s) = state {
        filters.push_str(&format!("&state={}", encode(&s)));
    }
    if let Some(l) = label {
        filters.push_str(&format!("&label={}", encode(&l)));
    }
    let list = fetch_pages(&client(hub)?, &filters, limit).await?;
    if out.json {
        return output::json(&list);
    }
    let now = now_ms();
    let mut t = output::table(&["NAME", "STATE", "PRI", "ATTEMPTS", "PROGRESS", "AGE", "ID"]);
    for v in &list.tasks {
        let progress = v
            .progress
            .as_ref()
            .map(|p| {
                format!(
                    "{:.0}% {}",
                    p.percent,
                    p.message.clone().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        t.add_row(vec![
            v.name.clone(),
            v.state.to_string(),
            v.priority.to_string(),
            v.attempt.to_string(),
            progress,
            age(v.created_ms, now),
            v.id.to_string(),
        ]);
    }
    output::line(t.to_string())?;
    let counts: Vec<String> = list
        .counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    output::line(format!("total: {}", counts.join(", ")))
}

/// Up to `limit` tasks, newest first, a page at a time. The counts are the
/// first page's (a snapshot over the whole store).
async fn fetch_pages(client: &Client, filters: &str, limit: usize) -> Result<TaskList> {
    let mut tasks: Vec<TaskView> = Vec::new();
    let mut counts = None;
    let mut before: Option<u64> = None;
    loop {
        let want = (limit - tasks.len()).min(API_PAGE);
        let mut q = format!("/api/v1/tasks?limit={want}{filters}");
        if let Some(b) = before {
            q.push_str(&format!("&before={b}"));
        }
        let page: TaskList = client.get(&q).await?;
        let got = page.tasks.len();
        counts.get_or_insert(page.counts);
        before = page.tasks.last().map(|t| t.seq);
        tasks.extend(page.tasks);
        if got < want || tasks.len() >= limit {
            break;
        }
        // A hub older than `seq` sends 0: it cannot be paged.
        if before.is_none_or(|seq| seq == 0) {
            eprintln!(
                "warning: output cut at {} tasks: this hub does not support paging",
                tasks.len()
            );
            break;
        }
    }
    tasks.truncate(limit);
    Ok(TaskList {
        tasks,
        counts: counts.unwrap_or_default(),
    })
}

pub(crate) async fn show(hub: HubArgs, out: OutArgs, id: String) -> Result<()> {
    let v: TaskView = client(hub)?
        .get(&format!("/api/v1/tasks/{}", encode(&id)))
        .await?;
    if out.json {
        return output::json(&v);
    }
    let mut lines = vec![
        format!("task      {} ({})", v.name, v.id),
        format!("state     {}", v.state),
        format!("priority  {}", v.priority),
        format!("attempt   {} of {}", v.attempt, v.max_retries + 1),
    ];
    if let Some(c) = &v.spec.command {
        lines.push(format!("command   {}", c.join(" ")));
    }
    if !v.spec.skills.is_empty() {
        let s: Vec<String> = v.spec.skills.iter().map(|s| s.to_string()).collect();
        lines.push(format!("skills    {}", s.join(", ")));
    }
    if !v.depends_on.is_empty() {
        let d: Vec<String> = v.depends_on.iter().map(|d| d.to_string()).collect();
        lines.push(format!("depends   {}", d.join(", ")));
    }
    if let Some(l) = &v.lease {
        lines.push(format!("lease     agent {} fence {}", l.agent_id, l.fence));
    }
    if let Some(t) = &v.team {
        lines.push(format!(
            "team      {} ({}, {}): {:.0}% ({}/{} subtasks ended), {} members, leader {} (term {})",
            t.id,
            t.role.as_deref().unwrap_or("delegated"),
            t.state,
            t.progress * 100.0,
            t.done,
            t.total,
            t.members,
            t.leader,
            t.term
        ));
    }
    if let Some(p) = &v.progress {
        lines.push(format!(
            "progress  {:.0}% {} ({} ago)",
            p.percent,
            p.message.clone().unwrap_or_default(),
            age(p.updated_ms, now_ms())
        ));
    }
    if let Some(a) = &v.activity {
        lines.push(format!(
            "activity  turn {}, {}{} tokens ({} ago)",
            a.turns,
            a.last_tool
                .as_ref()
                .map(|t| format!("last tool {t}, "))
                .unwrap_or_default(),
            a.tokens_so_far,
            age(a.at_ms, now_ms())
        ));
    }
    if let Some(w) = &v.waiting {
        let mut line = format!("waiting   {}", w.reason);
        if let Some(d) = &w.detail {
            line.push_str(&format!(" ({d})"));
        }
        if let Some(until) = w.until_ms {
            let left = until.saturating_sub(now_ms());
            line.push_str(&format!(" until {until} (in {} ms)", left));
        }
        lines.push(line);
    }
    if let Some(r) = &v.reason {
        lines.push(format!("reason    {r}"));
    }
    if let Some(o) = &v.outcome {
        lines.push(format!(
            "outcome   {}{}",
            o.kind.as_str(),
            o.reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
        let e = &o.evidence;
        lines.push(format!(
            "evidence  exit {} signal {} in {} ms",
            e.exit_code.map_or("-".into(), |c| c.to_string()),
            e.signal.map_or("-".into(), |c| c.to_string()),
            e.duration_ms
        ));
        if let Some(err) = &e.agent_error {
            lines.push(format!("agent err {}: {}", err.kind, err.detail));
        }
        if let Some(u) = &e.usage {
            lines.push(format!("usage     {}", usage_line(u)));
        }
        if let Some(s) = &e.session_id {
            lines.push(format!("session   {s}"));
        }
        if let Some(sb) = &e.sandbox {
            lines.push(format!("sandbox   {sb}"));
        }
        for c in &e.criteria {
            lines.push(format!(
                "          {} {} — {}",
                if c.ok { "✔" } else { "✘" },
                c.criterion,
                c.detail
            ));
        }
        if !e.stdout_tail.is_empty() {
            lines.push(format!("stdout    …{}", e.stdout_tail.trim_end()));
        }
        if !e.stderr_tail.is_empty() {
            lines.push(format!("stderr    …{}", e.stderr_tail.trim_end()));
        }
    }
    output::line(lines.join("\n"))
}

/// `3,000 tokens in (800 cached), 50 out, $0.0100 (claude-code result)`.
fn usage_line(u: &torch_core::Usage) -> String {
    let cost = u.cost_usd.map(|c| format!(", ${c:.4}")).unwrap_or_default();
    format!(
        "{} tokens in ({} cached), {} out{cost} ({})",
        u.tokens_in, u.tokens_cached, u.tokens_out, u.source
    )
}

pub(crate) async fn cancel(
    hub: HubArgs,
    out: OutArgs,
    id: String,
    reason: Option<String>,
) -> Result<()> {
    let resp: CancelResponse = client(hub)?
        .post(
            &format!("/api/v1/tasks/{}/cancel", encode(&id)),
            &CancelRequest { reason },
        )
        .await?;
    if out.json {
        return output::json(&resp);
    }
    output::line(format!("cancelled {} task(s)", resp.cancelled.len()))?;
    for t in &resp.cancelled {
        output::line(format!("  {t}"))?;
    }
    Ok(())
}

pub(crate) async fn retry(hub: HubArgs, out: OutArgs, id: String) -> Result<()> {
    let v: TaskView = client(hub)?
        .post(
            &format!("/api/v1/tasks/{}/retry", encode(&id)),
            &serde_json::json!({}),
        )
        .await?;
    if out.json {
        return output::json(&v);
    }
    output::line(format!("{}  {}  {}", v.id, v.state, v.name))
}

pub(crate) async fn logs(hub: HubArgs, out: OutArgs, id: String) -> Result<()> {
    let l: LogsView = client(hub)?
        .get(&format!("/api/v1/tasks/{}/logs", encode(&id)))
        .await?;
    if out.json {
        return output::json(&l);
    }
    let mut s = format!(
        "== stdout (attempt {}){} ==\n",
        l.attempt,
        if l.truncated { ", tail only" } else { "" }
    );
    s.push_str(&l.stdout);
    if !l.stderr.is_empty() {
        s.push_str("\n== stderr ==\n");
        s.push_str(&l.stderr);
    }
    output::line(s)
}

//! `torch lock`, `torch locks` and `torch help`: locks, the wait-for
//! graph and help requests, from inside a task (task token) or as an
//! operator.

use std::time::Duration;

use anyhow::Result;
use torch_api::ENV_TASK_TOKEN;
use torch_api::coord::{
    HelpAsk, HelpList, HelpView, LockAcquire, LockFence, LockGrantView, LockList, LockReleased,
};

use crate::cli::{HelpCmd, LockCmd, LocksCmd, OutArgs, TaskHubArgs};
use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};
use crate::output::{self, age, now_ms};

/// Room on top of a wait for the answer to come back.
const ANSWER_SLACK: Duration = Duration::from_secs(30);

/// A client with the given token or, inside a task, the task token; its
/// requests may last `wait` plus some slack.
fn client(hub: &TaskHubArgs, wait: Duration) -> Result<Client> {
    let token = hub
        .token
        .clone()
        .or_else(|| std::env::var(ENV_TASK_TOKEN).ok());
    Client::with_timeout(
        &hub.hub,
        token,
        wait.max(Duration::from_secs(90)) + ANSWER_SLACK,
    )
}

pub(crate) fn duration(what: &str, s: &str) -> Result<Duration> {
    humantime::parse_duration(s).map_err(|e| exit(BAD_INPUT, format!("{what} {s:?}: {e}")))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn grant_line(g: &LockGrantView) -> String {
    let what = if g.path { "path" } else { "lock" };
    format!(
        "{what} {} {} fence {} until {} ({})",
        g.name,
        g.mode,
        g.fence,
        g.expires_ms,
        age_until(g.expires_ms)
    )
}

fn age_until(t: u64) -> String {
    let now = now_ms();
    if t > now {
        format!(
            "in {}",
            humantime::format_duration(Duration::from_secs((t - now).div_ceil(1000)))
        )
    } else {
        "expired".into()
    }
}

/// Acquires a lock (`POST /api/v1/locks`), waiting as the request says.
pub(crate) async fn acquire_lock(client: &Client, req: &LockAcquire) -> Result<LockGrantView> {
    client.post("/api/v1/locks", req).await
}

/// Releases a held lock; a stale fence or a lock not held is an error.
pub(crate) async fn release_lock(client: &Client, req: &LockFence) -> Result<LockReleased> {
    client.post("/api/v1/locks/release", req).await
}

/// Asks peers with the skill for help (`POST /api/v1/help`).
pub(crate) async fn request_help(client: &Client, req: &HelpAsk) -> Result<HelpView> {
    client.post("/api/v1/help", req).await
}

/// Accepts a help request: the first accept wins, the others get 409.
pub(crate) async fn accept_help(client: &Client, id: &str) -> Result<HelpView> {
    client
        .post(&format!("/api/v1/help/{id}/accept"), &serde_json::json!({}))
        .await
}

/// `torch lock …`.
pub(crate) async fn lock(cmd: LockCmd) -> Result<()> {
    match cmd {
        LockCmd::Acquire {
            hub,
            out,
            name,
            path,
            shared,
            ttl,
            wait,
        } => {
            let ttl = duration("--ttl", &ttl)?;
            let wait = wait.as_deref().map(|w| duration("--wait", w)).transpose()?;
            let client = client(&hub, wait.unwrap_or_default())?;
            let req = LockAcquire {
                name,
                path,
                shared,
                ttl_ms: Some(ms(ttl)),
                wait_ms: wait.map(ms),
            };
            let g = acquire_lock(&client, &req).await?;
            print_grant(&g, out)
        }
        LockCmd::Renew {
            hub,
            out,
            name,
            fence,
            ttl,
        } => {
            let ttl = duration("--ttl", &ttl)?;
            let client = client(&hub, Duration::ZERO)?;
            let req = LockFence {
                name,
                fence,
                ttl_ms: Some(ms(ttl)),
            };
            let g: LockGrantView = client.post("/api/v1/locks/renew", &req).await?;
            print_grant(&g, out)
        }
        LockCmd::Release {
            hub,
            out,
            name,
            fence,
        } => {
            let client = client(&hub, Duration::ZERO)?;
            let req = LockFence {
                name,
                fence,
                ttl_ms: None,
            };
            let r = release_lock(&client, &req).await?;
            if out.json {
                return output::json(&r);
            }
            output::line(format!("released {} fence {}", r.name, r.fence))
        }
    }
}

fn print_grant(g: &LockGrantView, out: OutArgs) -> Result<()> {
    if out.json {
        output::json(g)
    } else {
        output::line(grant_line(g))
    }
}

/// `torch locks list`.
pub(crate) async fn locks(cmd: LocksCmd) -> Result<()> {
    let LocksCmd::List { hub, out } = cmd;
    let client = client(&hub, Duration::ZERO)?;
    let list: LockList = client.get("/api/v1/locks").await?;
    if out.json {
        return output::json(&list);
    }
    let now = now_ms();
    let mut t = output::table(&["LOCK", "KIND", "WHO", "MODE", "FENCE", "STATE"]);
    for l in &list.locks {
        let kind = if l.path { "path" } else { "name" };
        for h in &l.holders {
            t.add_row(vec![
                l.name.clone(),
                kind.into(),
                h.holder.clone(),
                h.mode.clone(),
                h.fence.to_string(),
                format!("held, expires {}", age_until(h.expires_ms)),
            ]);
        }
        for (i, w) in l.waiters.iter().enumerate() {
            t.add_row(vec![
                l.name.clone(),
                kind.into(),
                w.waiter.clone(),
                w.mode.clone(),
                "-".into(),
                format!("waiting #{} for {}", i + 1, age(w.since_ms, now)),
            ]);
        }
    }
    output::line(t.to_string())?;
    if !list.waits.is_empty() {
        output::line("waits:")?;
        for e in &list.waits {
            output::line(format!("  {e}"))?;
        }
    }
    Ok(())
}

fn help_line(h: &HelpView) -> String {
    let who = match (&h.accepted_by, &h.helper) {
        (Some(by), _) => format!(
            ", accepted by {by}{}",
            h.accepted_agent
                .map(|a| format!(" (agent {a})"))
                .unwrap_or_default()
        ),
        (None, Some(helper)) => format!(", helper agent {helper} spawned"),
        _ => format!(", offered to {} peer(s)", h.offered_to.len()),
    };
    format!(
        "{} {} {}:{}{who}: {}",
        h.id, h.state, h.skill, h.level, h.text
    )
}

/// `torch help …`.
pub(crate) async fn help(cmd: HelpCmd) -> Result<()> {
    match cmd {
        HelpCmd::Request {
            hub,
            out,
            skill,
            timeout,
            wait,
            text,
        } => {
            let timeout = duration("--timeout", &timeout)?;
            let client = client(&hub, if wait { timeout } else { Duration::ZERO })?;
            let req = HelpAsk {
                skill,
                level: None,
                text: text.join(" "),
                timeout_ms: Some(ms(timeout)),
                wait,
            };
            let h = request_help(&client, &req).await?;
            if out.json {
                return output::json(&h);
            }
            output::line(help_line(&h))
        }
        HelpCmd::List { hub, out, all } => {
            let client = client(&hub, Duration::ZERO)?;
            let path = if all {
                "/api/v1/help?all=true"
            } else {
                "/api/v1/help"
            };
            let list: HelpList = client.get(path).await?;
            if out.json {
                return output::json(&list);
            }
            for h in &list.requests {
                output::line(help_line(h))?;
            }
            Ok(())
        }
        HelpCmd::Accept { hub, out, id } => {
            let client = client(&hub, Duration::ZERO)?;
            let h = accept_help(&client, &id).await?;
            if out.json {
                return output::json(&h);
            }
            output::line(help_line(&h))
        }
    }
}

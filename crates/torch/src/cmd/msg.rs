//! `torch peers` and `torch msg send|inbox|ack|list`.
//!
//! Inside a task (`TORCH_AGENT_URL` and `TORCH_TASK_TOKEN` set, no
//! `--token`), `send`, `inbox` and `ack` go to the task's own agent runtime,
//! which signs with its key and talks to the peer directly. `send` with an
//! admin token goes to the hub, which signs with its own key.

use std::io::Read;

use anyhow::Result;
use torch_api::ENV_TASK_TOKEN;
use torch_api::msg::{
    AckRequest, AckResult, ENV_AGENT_URL, Inbox, LOCAL_PREFIX, MessageList, PeerList, Recipient,
    SendRequest, SendResult,
};

use crate::cli::TaskHubArgs;
use crate::cli_msg::{MsgAckArgs, MsgCmd, MsgInboxArgs, MsgListArgs, MsgSendArgs, PeersArgs};
use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};
use crate::output;

/// A client for the hub: the given token, else the task's.
fn hub_client(hub: &TaskHubArgs) -> Result<Client> {
    let token = hub
        .token
        .clone()
        .or_else(|| std::env::var(ENV_TASK_TOKEN).ok());
    Client::new(&hub.hub, token)
}

/// A client for the task's own agent runtime, when inside a task; its
/// requests may last `timeout`.
pub(crate) fn agent_client_with(timeout: std::time::Duration) -> Result<Option<Client>> {
    match (
        std::env::var(ENV_AGENT_URL).ok(),
        std::env::var(ENV_TASK_TOKEN).ok(),
    ) {
        (Some(url), Some(token)) if !url.is_empty() => {
            Ok(Some(Client::for_agent(&url, Some(token), timeout)?))
        }
        _ => Ok(None),
    }
}

fn agent_client() -> Result<Option<Client>> {
    agent_client_with(std::time::Duration::from_secs(120))
}

/// The task's own agent runtime, or the error saying this is not a task
/// whose agent listens for messages.
pub(crate) fn inside_task_with(timeout: std::time::Duration) -> Result<Client> {
    agent_client_with(timeout)?.ok_or_else(|| {
        exit(
            BAD_INPUT,
            format!(
                "{ENV_AGENT_URL} and {ENV_TASK_TOKEN} are not set: this runs inside a task started by a torch agent that listens for messages"
            ),
        )
    })
}

fn inside_task() -> Result<Client> {
    inside_task_with(std::time::Duration::from_secs(120))
}

/// The peers the hub shows this token, filtered (`GET /api/v1/peers`).
pub(crate) async fn list_peers(
    client: &Client,
    skill: Option<&str>,
    team: Option<&str>,
    state: Option<&str>,
) -> Result<PeerList> {
    let mut q = Vec::new();
    for (k, v) in [("skill", skill), ("team", team), ("state", state)] {
        if let Some(v) = v {
            q.push(format!("{k}={}", urlencode(v)));
        }
    }
    client.get(&format!("/api/v1/peers?{}", q.join("&"))).await
}

/// Percent-encodes a query value.
fn urlencode(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Sends through the task's own agent runtime, which signs and delivers.
pub(crate) async fn send_from_task(agent: &Client, req: &SendRequest) -> Result<SendResult> {
    agent.post(&format!("{LOCAL_PREFIX}/msg/send"), req).await
}

/// The task's inbox, waiting up to `wait_ms` for a first message.
pub(crate) async fn read_inbox(
    agent: &Client,
    wait_ms: Option<u64>,
    thread: Option<&str>,
) -> Result<Inbox> {
    let mut q = Vec::new();
    if let Some(w) = wait_ms {
        q.push(format!("wait_ms={w}"));
    }
    if let Some(t) = thread {
        q.push(format!("thread={}", urlencode(t)));
    }
    agent
        .get(&format!("{LOCAL_PREFIX}/msg/inbox?{}", q.join("&")))
        .await
}

/// Acks messages: they leave the inbox.
pub(crate) async fn ack_messages(agent: &Client, req: &AckRequest) -> Result<AckResult> {
    agent.post(&format!("{LOCAL_PREFIX}/msg/ack"), req).await
}

/// `torch peers`.
pub(crate) async fn peers(a: PeersArgs) -> Result<()> {
    let client = hub_client(&a.hub)?;
    let list = list_peers(
        &client,
        a.skill.as_deref(),
        a.team.as_deref(),
        a.state.as_deref(),
    )
    .await?;
    if a.out.json {
        return output::json(&list);
    }
    let mut t = output::table(&["ID", "NAME", "STATE", "TEAM", "SKILLS", "ENDPOINT", "TASKS"]);
    for p in &list.peers {
        let skills: Vec<String> = p.skills.iter().map(|s| s.to_string()).collect();
        t.add_row(vec![
            p.agent_id.to_string(),
            p.name.clone(),
            p.state.clone(),
            p.team.clone().unwrap_or_default(),
            skills.join(","),
            p.endpoint.clone().unwrap_or_else(|| "-".into()),
            p.task_ids.len().to_string(),
        ]);
    }
    output::line(t.to_string())
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| exit(BAD_INPUT, format!("{what} {s:?}: {e}")))
}

fn duration_ms(what: &str, s: &str) -> Result<u64> {
    humantime::parse_duration(s)
        .map(|d| d.as_millis() as u64)
        .map_err(|e| exit(BAD_INPUT, format!("{what} {s:?}: {e}")))
}

/// `torch msg …`.
pub(crate) async fn run(cmd: MsgCmd) -> Result<()> {
    match cmd {
        MsgCmd::Send(a) => send(a).await,
        MsgCmd::Inbox(a) => inbox(a).await,
        MsgCmd::Ack(a) => ack(a).await,
        MsgCmd::List(a) => list(a).await,
    }
}

async fn send(a: MsgSendArgs) -> Result<()> {
    let text = if a.text == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| exit(BAD_INPUT, format!("reading the message from stdin: {e}")))?;
        s
    } else {
        a.text.clone()
    };
    let body = if a.body_json {
        serde_json::from_str(&text)
            .map_err(|e| exit(BAD_INPUT, format!("the message is not JSON: {e}")))?
    } else {
        serde_json::Value::String(text)
    };
    let req = SendRequest {
        recipient: Recipient {
            to: a.to.as_deref().map(|s| parse("--to", s)).transpose()?,
            task: a.task.as_deref().map(|s| parse("--task", s)).transpose()?,
            team: a.team.clone(),
        },
        thread: a.thread.clone(),
        reply_to: a
            .reply_to
            .as_deref()
            .map(|s| parse("--reply-to", s))
            .transpose()?,
        kind: a.kind.clone(),
        body,
        ttl_ms: a
            .ttl
            .as_deref()
            .map(|s| duration_ms("--ttl", s))
            .transpose()?,
    };
    let local = match a.hub.token {
        Some(_) => None,
        None => agent_client()?,
    };
    let res: SendResult = match local {
        Some(c) => send_from_task(&c, &req).await?,
        None => hub_client(&a.hub)?.post("/api/v1/messages", &req).await?,
    };
    if a.out.json {
        return output::json(&res);
    }
    output::line(format!("{} {}", res.id, res.delivery.as_str()))
}

async fn inbox(a: MsgInboxArgs) -> Result<()> {
    let wait_ms = a
        .wait
        .as_deref()
        .map(|w| duration_ms("--wait", w))
        .transpose()?;
    let client = inside_task_with(
        std::time::Duration::from_millis(wait_ms.unwrap_or(0))
            + std::time::Duration::from_secs(120),
    )?;
    let inbox = read_inbox(&client, wait_ms, a.thread.as_deref()).await?;
    if a.out.json {
        return output::json(&inbox);
    }
    let mut t = output::table(&["ID", "FROM", "KIND", "THREAD", "DELIVERY", "BODY"]);
    for m in &inbox.messages {
        let body = match &m.body {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        t.add_row(vec![
            m.id.to_string(),
            m.from_name.clone().unwrap_or_else(|| m.from.clone()),
            m.kind.clone(),
            m.thread.clone().unwrap_or_default(),
            m.delivery.as_str().to_string(),
            body.replace('\n', " "),
        ]);
    }
    output::line(t.to_string())
}

async fn ack(a: MsgAckArgs) -> Result<()> {
    let client = inside_task()?;
    let ids = a
        .ids
        .iter()
        .map(|s| parse("message id", s))
        .collect::<Result<Vec<_>>>()?;
    let res = ack_messages(&client, &AckRequest { ids }).await?;
    if a.out.json {
        return output::json(&res);
    }
    output::line(format!("{} acked", res.acked))
}

async fn list(a: MsgListArgs) -> Result<()> {
    let client = hub_client(&a.hub)?;
    let agent: torch_core::AgentId = parse("--agent", &a.agent)?;
    let list: MessageList = client
        .get(&format!("/api/v1/messages?agent={agent}"))
        .await?;
    if a.out.json {
        return output::json(&list);
    }
    let mut t = output::table(&["ID", "FROM", "KIND", "THREAD", "SENT", "BYTES"]);
    let now = output::now_ms();
    for m in &list.messages {
        t.add_row(vec![
            m.id.to_string(),
            m.from.clone(),
            m.kind.clone(),
            m.thread.clone().unwrap_or_default(),
            output::age(m.sent_ms, now),
            m.bytes.to_string(),
        ]);
    }
    output::line(t.to_string())
}

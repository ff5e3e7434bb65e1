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

/// A client for the task's own agent runtime, when inside a task.
fn agent_client() -> Result<Option<Client>> {
    match (
        std::env::var(ENV_AGENT_URL).ok(),
        std::env::var(ENV_TASK_TOKEN).ok(),
    ) {
        (Some(url), Some(token)) if !url.is_empty() => {
            Ok(Some(Client::for_agent(&url, Some(token))?))
        }
        _ => Ok(None),
    }
}

fn inside_task() -> Result<Client> {
    agent_client()?.ok_or_else(|| {
        exit(
            BAD_INPUT,
            format!(
                "{ENV_AGENT_URL} and {ENV_TASK_TOKEN} are not set: this runs inside a task started by a torch agent that listens for messages"
            ),
        )
    })
}

/// `torch peers`.
pub(crate) async fn peers(a: PeersArgs) -> Result<()> {
    let client = hub_client(&a.hub)?;
    let mut q = Vec::new();
    for (k, v) in [("skill", &a.skill), ("team", &a.team), ("state", &a.state)] {
        if let Some(v) = v {
            q.push(format!("{k}={v}"));
        }
    }
    let path = format!("/api/v1/peers?{}", q.join("&"));
    let list: PeerList = client.get(&path).await?;
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
        Some(c) => c.post(&format!("{LOCAL_PREFIX}/msg/send"), &req).await?,
        None => hub_client(&a.hub)?.post("/api/v1/messages", &req).await?,
    };
    if a.out.json {
        return output::json(&res);
    }
    output::line(format!("{} {}", res.id, res.delivery.as_str()))
}

async fn inbox(a: MsgInboxArgs) -> Result<()> {
    let client = inside_task()?;
    let mut q = Vec::new();
    if let Some(w) = &a.wait {
        q.push(format!("wait_ms={}", duration_ms("--wait", w)?));
    }
    if let Some(t) = &a.thread {
        q.push(format!("thread={t}"));
    }
    let inbox: Inbox = client
        .get(&format!("{LOCAL_PREFIX}/msg/inbox?{}", q.join("&")))
        .await?;
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
    let res: AckResult = client
        .post(&format!("{LOCAL_PREFIX}/msg/ack"), &AckRequest { ids })
        .await?;
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

//! `torch bench collab`, the message part (under the `messages` key of the
//! JSON): direct and relayed messages between in-process
//! agents on an in-process hub (embedded store).
//!
//! Every agent runs the real runtime: its own endpoint, on-disk inbox,
//! signing and verification. A message is sent the way a task sends one:
//! `POST /local/v1/msg/send` to the sending agent, which signs it and POSTs
//! it to the recipient, which verifies and stores it before answering. So
//! the **send latency** (client side, µs) is the whole round trip until the
//! recipient has the message in its inbox (direct), or until the hub has it
//! durably (relayed). The **delivery latency** (ms) is, per
//! `message.delivered` event, the recipient's clock when it stored the
//! message (`at_ms` of the event data) minus the envelope's `sent_ms` (set
//! by the sender just before signing): for relayed messages it covers the
//! hub keeping it and pushing it to a recipient that listens on no endpoint
//! (reachable through its hub session only).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use torch_api::msg::{LOCAL_PREFIX, PeerList, Recipient, SendRequest, SendResult};
use torch_core::AgentId;

use crate::cli_msg::CollabBenchArgs;
use crate::client::Client;
use crate::config::Config;
use crate::exit::{BAD_INPUT, ERROR, exit};
use crate::local::start_hub;

/// One agent under test.
struct Peer {
    id: AgentId,
    endpoint: Option<String>,
}

/// The message figures (the `messages` object).
pub(crate) async fn measure(args: &CollabBenchArgs) -> Result<Value> {
    if args.agents < 4 || args.messages == 0 || args.concurrency == 0 {
        return Err(exit(
            BAD_INPUT,
            "--agents must be at least 4; --messages and --concurrency positive",
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("torch-bench-collab-")
        .tempdir()?;
    let cfg = Config::default();
    let mut hub_cfg = cfg.hub.clone();
    hub_cfg.messages.relay_cap = 1_000_000;
    hub_cfg.messages.rate = 1e9;
    hub_cfg.messages.burst = u32::MAX;
    let hub = start_hub(
        &cfg,
        hub_cfg,
        "127.0.0.1:0",
        dir.path(),
        &["admin", "agent"],
    )
    .await?;
    let admin = Client::new(&hub.url, hub.token("admin").map(str::to_string))?;
    let agent_token = hub.token("agent").unwrap_or_default().to_string();
    let local_token = torch_hub::generate_token();
    let relayed_n = (args.agents / 5).max(1);
    if !args.json {
        eprintln!(
            "starting {} agents ({} reachable only through the hub)…",
            args.agents, relayed_n
        );
    }
    let stop = CancellationToken::new();
    let mut agents = tokio::task::JoinSet::new();
    for i in 0..args.agents {
        let mut ac = torch_agent::AgentConfig::new(
            hub.url.clone(),
            agent_token.clone(),
            format!("peer-{i}"),
        );
        ac.work_root = dir.path().join(format!("agent-{i}"));
        ac.data_dir = Some(dir.path().join(format!("agent-{i}/data")));
        ac.local_token = Some(local_token.clone());
        ac.messages.rate = 1e9;
        ac.messages.burst = u32::MAX;
        ac.messages.inbox_cap = 10_000_000;
        ac.listen = if i < relayed_n {
            torch_agent::Listen::Off
        } else {
            torch_agent::Listen::Addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        };
        let sd = stop.clone();
        agents.spawn(async move { torch_agent::run(ac, sd).await });
    }
    let peers = wait_peers(&admin, args.agents as usize).await?;
    let (hidden, open): (Vec<&Peer>, Vec<&Peer>) = peers.iter().partition(|p| p.endpoint.is_none());
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| exit(ERROR, format!("http client: {e}")))?;
    let open: Arc<Vec<(AgentId, String)>> = Arc::new(
        open.iter()
            .filter_map(|p| p.endpoint.clone().map(|e| (p.id, e)))
            .collect(),
    );
    let hidden: Arc<Vec<AgentId>> = Arc::new(hidden.iter().map(|p| p.id).collect());

    // Warm up: every sender learns the registry once.
    for (i, (_, ep)) in open.iter().enumerate() {
        let to = open[(i + 1) % open.len()].0;
        send(&http, ep, &local_token, to, 0).await?;
    }
    if !args.json {
        eprintln!(
            "direct: {} messages, {} at once…",
            args.messages, args.concurrency
        );
    }
    let targets = open.clone();
    let (direct_lat, direct_secs) = phase(
        &http,
        &open,
        &local_token,
        args.messages,
        args.concurrency,
        move |k| targets[(k * 7 + 1 + k / targets.len()) % targets.len()].0,
    )
    .await?;
    let relayed_messages = (args.messages / 4).max(1);
    if !args.json {
        eprintln!("relayed: {relayed_messages} messages to agents without an endpoint…");
    }
    let hid = hidden.clone();
    let (relay_lat, relay_secs) = phase(
        &http,
        &open,
        &local_token,
        relayed_messages,
        args.concurrency,
        move |k| hid[k % hid.len()],
    )
    .await?;
    // Wait for the hub to hand everything over.
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in hidden.iter() {
        loop {
            let kept: Value = admin.get(&format!("/api/v1/messages?agent={id}")).await?;
            if kept["messages"].as_array().is_some_and(Vec::is_empty) {
                break;
            }
            if Instant::now() > deadline {
                return Err(exit(
                    ERROR,
                    "relayed messages were not delivered within 120 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (direct_e2e, relayed_e2e) = delivery_latency(&admin).await?;
    stop.cancel();
    while agents.join_next().await.is_some() {}
    hub.stop().await?;

    let report = json!({
        "messages": {
            "agents": args.agents,
            "agents_without_endpoint": relayed_n,
            "direct": {
                "messages": args.messages,
                "msgs_per_sec": args.messages as f64 / direct_secs,
                "send_latency_us": quantiles(&direct_lat),
                "delivery_latency_ms": quantiles(&direct_e2e),
            },
            "relayed": {
                "messages": relayed_messages,
                "msgs_per_sec": relayed_messages as f64 / relay_secs,
                "send_latency_us": quantiles(&relay_lat),
                "delivery_latency_ms": quantiles(&relayed_e2e),
            },
            "concurrency": args.concurrency,
            "store": "sqlite",
        }
    });
    Ok(report["messages"].clone())
}

fn quantiles(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.5),
        "p99": h.value_at_quantile(0.99),
        "max": h.max(),
    })
}

/// The peers once `n` are connected.
async fn wait_peers(admin: &Client, n: usize) -> Result<Vec<Peer>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: PeerList = admin.get("/api/v1/peers").await?;
        let up: Vec<Peer> = list
            .peers
            .iter()
            .filter(|p| p.state != "disconnected")
            .map(|p| Peer {
                id: p.agent_id,
                endpoint: p.endpoint.clone(),
            })
            .collect();
        if up.len() >= n {
            return Ok(up);
        }
        if Instant::now() > deadline {
            return Err(exit(
                ERROR,
                format!("only {} of {n} agents connected", up.len()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    to: AgentId,
    k: usize,
) -> Result<SendResult> {
    let req = SendRequest {
        recipient: Recipient {
            to: Some(to),
            ..Recipient::default()
        },
        thread: None,
        reply_to: None,
        kind: None,
        body: json!(format!("bench message {k}")),
        ttl_ms: None,
    };
    let resp = http
        .post(format!("{endpoint}{LOCAL_PREFIX}/msg/send"))
        .bearer_auth(token)
        .json(&req)
        .send()
        .await
        .map_err(|e| exit(ERROR, format!("send: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(exit(ERROR, format!("send answered {status}: {body}")));
    }
    resp.json()
        .await
        .map_err(|e| exit(ERROR, format!("send answer: {e}")))
}

/// Sends `total` messages from the open agents in turn, `concurrency` at
/// once, to `to(k)`; returns the send latencies (µs) and the elapsed time.
async fn phase(
    http: &reqwest::Client,
    open: &Arc<Vec<(AgentId, String)>>,
    token: &str,
    total: u32,
    concurrency: u32,
    to: impl Fn(usize) -> AgentId + Send + Sync + 'static,
) -> Result<(Histogram<u64>, f64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let to = Arc::new(to);
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, open, next, to) = (http.clone(), open.clone(), next.clone(), to.clone());
        let token = token.to_string();
        workers.spawn(async move {
            let mut h = Histogram::<u64>::new(3).map_err(|e| exit(ERROR, e.to_string()))?;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total as usize {
                    return Ok::<_, anyhow::Error>(h);
                }
                let (from, ep) = &open[k % open.len()];
                let mut dest = to(k);
                if dest == *from {
                    dest = open[(k + 1) % open.len()].0;
                }
                let t = Instant::now();
                send(&http, ep, &token, dest, k).await?;
                let _ = h.record(t.elapsed().as_micros() as u64);
            }
        });
    }
    let mut all = Histogram::<u64>::new(3).map_err(|e| exit(ERROR, e.to_string()))?;
    while let Some(r) = workers.join_next().await {
        let h = r.map_err(|e| exit(ERROR, format!("worker: {e}")))??;
        all.add(h).map_err(|e| exit(ERROR, e.to_string()))?;
    }
    Ok((all, start.elapsed().as_secs_f64()))
}

/// Send → delivered (ms) per message from the peer events, direct and relayed.
async fn delivery_latency(admin: &Client) -> Result<(Histogram<u64>, Histogram<u64>)> {
    let mut sent = std::collections::HashMap::new();
    let mut delivered = Vec::new();
    let mut after = 0u64;
    // Events arrive from agents asynchronously; give the last ones a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let page: torch_api::rest::EventPage = admin
            .get(&format!(
                "/api/v1/events?after={after}&stream=nova.torch.collaboration.peer&limit=5000"
            ))
            .await?;
        if page.events.is_empty() {
            break;
        }
        after = page.last_id;
        for e in page.events {
            let data = serde_json::to_value(&e.data)?;
            let id = data["id"].as_str().unwrap_or_default().to_string();
            match e.kind.as_str() {
                "message.sent" => {
                    sent.insert(id, e.at_ms);
                }
                "message.delivered" => {
                    let how = data["delivery"].as_str().unwrap_or_default().to_string();
                    // The recipient's clock when it stored the message
                    // minus the envelope's `sent_ms` (the sender's clock,
                    // the same machine's); the hub's own event times
                    // only say when the events reached it.
                    let span = data["at_ms"]
                        .as_u64()
                        .zip(data["sent_ms"].as_u64())
                        .map(|(at, sent)| at.saturating_sub(sent));
                    delivered.push((id, e.at_ms, how, span));
                }
                _ => {}
            }
        }
    }
    let mut direct = Histogram::<u64>::new(3).map_err(|e| exit(ERROR, e.to_string()))?;
    let mut relayed = Histogram::<u64>::new(3).map_err(|e| exit(ERROR, e.to_string()))?;
    for (id, at, how, span) in delivered {
        let Some(ms) = span.or_else(|| sent.get(&id).map(|s| at.saturating_sub(*s))) else {
            continue;
        };
        let h = if how == "relayed" {
            &mut relayed
        } else {
            &mut direct
        };
        let _ = h.record(ms);
    }
    Ok((direct, relayed))
}

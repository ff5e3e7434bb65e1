//! `torch bench metrics`: how long `GET /metrics` takes with many agents
//! connected. An embedded hub (SQLite store in a temp dir) takes `--agents`
//! agents, each a real WebSocket session speaking the agent protocol (hello,
//! heartbeats; they run no tasks), then `/metrics` is fetched `--samples`
//! times over loopback HTTP. The latency is the client's (request sent to
//! last byte read), so it bounds the render time from above; the report
//! also gives the body size and the number of series.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;
use torch_api::ws::{AgentMessage, Hello, HubMessage};
use torch_core::Skill;

use crate::cli_bench::MetricsBenchArgs;
use crate::config::Config;
use crate::exit::{BAD_INPUT, exit};
use crate::local::start_hub;
use crate::output;

/// Requests before the timed ones (first render, connection set-up).
const WARMUP: usize = 3;

pub(crate) async fn run(args: MetricsBenchArgs) -> Result<()> {
    if args.agents == 0 || args.samples == 0 {
        return Err(exit(BAD_INPUT, "--agents and --samples must be positive"));
    }
    let report = measure(&args).await?;
    if args.json {
        return output::json(&report);
    }
    let l = &report["metrics_ms"];
    output::line(format!(
        "/metrics with {} agents: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} bytes, {} series)",
        report["agents"], l["p50"], l["p90"], l["p99"], l["max"], report["bytes"], report["series"]
    ))
}

async fn measure(args: &MetricsBenchArgs) -> Result<Value> {
    let dir = tempfile::Builder::new()
        .prefix("torch-bench-metrics-")
        .tempdir()?;
    let cfg = Config::default();
    let mut hub_cfg = cfg.hub.clone();
    // The bench's own requests and joins must not meet the per-token limit.
    hub_cfg.token_rate_limit = 0;
    let hub = start_hub(
        &cfg,
        hub_cfg,
        "127.0.0.1:0",
        dir.path(),
        &["admin", "agent"],
    )
    .await?;
    let admin = hub.token("admin").unwrap_or_default().to_string();
    let agent_token = hub.token("agent").unwrap_or_default().to_string();
    let ws_url = format!("{}/api/v1/agent/ws", hub.url.replacen("http", "ws", 1));
    if !args.json {
        eprintln!("connecting {} agents…", args.agents);
    }
    let stop = CancellationToken::new();
    let mut sessions = JoinSet::new();
    let joined = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(args.agents);
    for n in 0..args.agents {
        let (url, token, stop, ready) = (
            ws_url.clone(),
            agent_token.clone(),
            stop.clone(),
            ready_tx.clone(),
        );
        sessions.spawn(session(url, token, n, stop, ready));
    }
    // A session stays open after its welcome; count the welcomes.
    for _ in 0..args.agents {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => anyhow::bail!("an agent could not join: {e}"),
            None => anyhow::bail!("the agents' sessions ended"),
        }
    }
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", hub.url);
    let agents_url = format!("{}/api/v1/agents", hub.url);
    // Every agent is registered before measuring.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list: Value = http
            .get(&agents_url)
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        let n = list["agents"].as_array().map_or(0, Vec::len);
        if n >= args.agents {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {n} of {} agents joined in 120 s", args.agents);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let join_s = joined.elapsed().as_secs_f64();
    let mut hist = Histogram::<u64>::new(3).context("histogram")?;
    let mut bytes = 0;
    let mut series = 0;
    for i in 0..WARMUP + args.samples {
        let t = Instant::now();
        let body = http
            .get(&url)
            .bearer_auth(&admin)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let us = t.elapsed().as_micros() as u64;
        if i >= WARMUP {
            hist.record(us.max(1)).context("record")?;
        }
        bytes = body.len();
        series = body
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
    }
    stop.cancel();
    while sessions.join_next().await.is_some() {}
    let ms = |q: f64| (hist.value_at_quantile(q) as f64 / 10.0).round() / 100.0;
    Ok(json!({
        "agents": args.agents,
        "samples": args.samples,
        "join_s": (join_s * 100.0).round() / 100.0,
        "metrics_ms": {
            "p50": ms(0.5),
            "p90": ms(0.9),
            "p99": ms(0.99),
            "max": (hist.max() as f64 / 10.0).round() / 100.0,
        },
        "bytes": bytes,
        "series": series,
    }))
}

/// One agent: hello, then heartbeats until `stop`.
async fn session(
    url: String,
    token: String,
    n: usize,
    stop: CancellationToken,
    ready: tokio::sync::mpsc::Sender<Result<(), String>>,
) {
    let fail = |e: String| {
        let ready = ready.clone();
        async move {
            let _ = ready.send(Err(e)).await;
        }
    };
    let mut req = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()).await,
    };
    match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(v) => {
            req.headers_mut().insert("authorization", v);
        }
        Err(e) => return fail(e.to_string()).await,
    }
    let mut ws = match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => ws,
        Err(e) => return fail(format!("agent {n}: {e}")).await,
    };
    let hello = AgentMessage::Hello(Hello {
        name: format!("bench-{n}"),
        agent_id: None,
        skills: vec![Skill {
            name: format!("skill{}", n % 20),
            level: 1.0,
        }],
        slots: 4,
        labels: Default::default(),
        cost: None,
        version: env!("CARGO_PKG_VERSION").into(),
        running: Vec::new(),
        sandbox: None,
        public_key: None,
        endpoint: None,
    });
    let Ok(text) = serde_json::to_string(&[hello]) else {
        return fail("hello does not serialise".into()).await;
    };
    if let Err(e) = ws.send(Message::text(text)).await {
        return fail(format!("agent {n}: {e}")).await;
    }
    let heartbeat = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                // A frame is a JSON array of messages.
                let msgs: Vec<HubMessage> = serde_json::from_str(&t).unwrap_or_default();
                if let Some(HubMessage::Welcome { heartbeat_ms, .. }) = msgs.first() {
                    break Duration::from_millis((*heartbeat_ms).max(100));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return fail(format!("agent {n}: {e}")).await,
            None => return fail(format!("agent {n}: closed before welcome")).await,
        }
    };
    let _ = ready.send(Ok(())).await;
    let beat = match serde_json::to_string(&[AgentMessage::Heartbeat {
        running: Vec::new(),
    }]) {
        Ok(b) => b,
        Err(_) => return,
    };
    let mut tick = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                if ws.send(Message::text(beat.clone())).await.is_err() {
                    break;
                }
            }
            m = ws.next() => match m {
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    let _ = ws.close(None).await;
}

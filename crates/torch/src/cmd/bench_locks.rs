//! `torch bench collab`, the lock part (under the `locks` key of the JSON): runs an embedded hub in this process and
//! measures, over HTTP as any client would:
//! 1. acquire + release round trips of one client, one after another, and
//!    of `--clients` clients at once on their own locks;
//! 2. deadlock detection: `n - 1` parties wait in a ring of `n` locks, and
//!    the time the closing wait takes to come back refused (`409
//!    deadlock`), for rings of 2 and 10 (the floor: < 10 ms).

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use torch_api::coord::{LockAcquire, LockFence, LockGrantView, LockList, LockReleased};
use torch_api::rest::{CreateTokenRequest, CreateTokenResponse, Role};

use crate::cli_msg::CollabBenchArgs;
use crate::client::Client;
use crate::config::Config;
use crate::exit::{BAD_INPUT, ERROR, exit};
use crate::local::start_hub;

/// The floor the closing wait must be refused within, in ms (DESIGN.md).
const DEADLOCK_FLOOR_MS: f64 = 10.0;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn summary(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    json!({
        "n": v.len(),
        "p50": round(percentile(&v, 50.0)),
        "p99": round(percentile(&v, 99.0)),
        "max": round(v.last().copied().unwrap_or(0.0)),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn acquire(client: &Client, name: &str, wait_ms: Option<u64>) -> Result<LockGrantView> {
    let req = LockAcquire {
        name: Some(name.to_string()),
        ttl_ms: Some(60_000),
        wait_ms,
        ..LockAcquire::default()
    };
    client.post("/api/v1/locks", &req).await
}

async fn release(client: &Client, g: &LockGrantView) -> Result<()> {
    let req = LockFence {
        name: g.name.clone(),
        fence: g.fence,
        ttl_ms: None,
    };
    let _: LockReleased = client.post("/api/v1/locks/release", &req).await?;
    Ok(())
}

/// `rounds` acquire + release round trips on `name`; their latencies (ms).
async fn round_trips(client: &Client, name: &str, rounds: u32) -> Result<Vec<f64>> {
    let mut lat = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let t = Instant::now();
        let g = acquire(client, name, None).await?;
        release(client, &g).await?;
        lat.push(ms(t.elapsed()));
    }
    Ok(lat)
}

/// One ring of `n` parties: the closing wait's latency (ms) until refused.
async fn ring(parties: &[Client], admin: &Client, n: usize, round_no: u32) -> Result<f64> {
    let name = |i: usize| format!("ring{n}-{round_no}-{i}");
    let mut held = Vec::with_capacity(n);
    for (i, p) in parties.iter().take(n).enumerate() {
        held.push(acquire(p, &name(i), None).await?);
    }
    let mut waiters = tokio::task::JoinSet::new();
    for (i, p) in parties.iter().take(n - 1).enumerate() {
        let p = p.clone();
        let lock = name(i + 1);
        waiters.spawn(async move { acquire(&p, &lock, Some(30_000)).await });
    }
    // Until every other party waits.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list: LockList = admin.get("/api/v1/locks").await?;
        let waiting = list
            .locks
            .iter()
            .filter(|l| l.name.starts_with(&format!("ring{n}-{round_no}-")))
            .map(|l| l.waiters.len())
            .sum::<usize>();
        if waiting == n - 1 {
            break;
        }
        if Instant::now() > deadline {
            return Err(exit(ERROR, format!("the ring of {n} did not form")));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t = Instant::now();
    let closing = acquire(&parties[n - 1], &name(0), Some(30_000)).await;
    let took = ms(t.elapsed());
    match closing {
        Err(e) if format!("{e:#}").contains("deadlock") => {}
        Err(e) => return Err(e.context("the closing wait failed for another reason")),
        Ok(_) => {
            return Err(exit(
                ERROR,
                format!("the closing wait of a ring of {n} was granted"),
            ));
        }
    }
    // Cancel the waits (dropping their requests), then release the ring.
    waiters.abort_all();
    while waiters.join_next().await.is_some() {}
    for (i, g) in held.iter().enumerate() {
        // A cancelled waiter may have been granted in between: ignore
        // errors and free whatever is held by the admin.
        if release(&parties[i], g).await.is_err() {
            continue;
        }
    }
    Ok(took)
}

/// The lock figures (the `locks` object).
pub(crate) async fn measure(args: &CollabBenchArgs) -> Result<Value> {
    if args.rounds == 0 || args.clients == 0 || args.cycles == 0 {
        return Err(exit(
            BAD_INPUT,
            "--rounds, --clients and --cycles must be positive",
        ));
    }
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("torch-bench-collab-")
        .tempdir()?;
    let cfg = Config::default();
    let hub = start_hub(&cfg, cfg.hub.clone(), "127.0.0.1:0", dir.path(), &["admin"]).await?;
    let admin_token = hub.token("admin").map(str::to_string);
    let admin = Client::new(&hub.url, admin_token.clone())?;

    say(&format!("{} acquire/release round trips…", args.rounds));
    // Warm up connections and the store.
    round_trips(&admin, "warm", 50).await?;
    let t = Instant::now();
    let seq = round_trips(&admin, "bench", args.rounds).await?;
    let seq_rate = f64::from(args.rounds) / t.elapsed().as_secs_f64();

    say(&format!("{} clients at once…", args.clients));
    let mut clients = Vec::new();
    for i in 0..args.clients {
        let tok: CreateTokenResponse = admin
            .post(
                "/api/v1/tokens",
                &CreateTokenRequest {
                    role: Role::Submitter,
                    name: Some(format!("bench-client-{i}")),
                    tenant: None,
                    expires_in_ms: None,
                },
            )
            .await?;
        clients.push(Client::new(&hub.url, Some(tok.token))?);
    }
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let c = c.clone();
        let rounds = args.rounds;
        set.spawn(async move { round_trips(&c, &format!("bench-{i}"), rounds).await });
    }
    let mut conc = Vec::new();
    while let Some(r) = set.join_next().await {
        conc.extend(r.map_err(|e| exit(ERROR, format!("bench client: {e}")))??);
    }
    let conc_rate = conc.len() as f64 / t.elapsed().as_secs_f64();

    let mut detect = serde_json::Map::new();
    let mut worst_p99: f64 = 0.0;
    for n in [2usize, 10] {
        say(&format!(
            "deadlock detection, rings of {n} ({} times)…",
            args.cycles
        ));
        let parties: Vec<Client> = {
            let mut v = Vec::new();
            for i in 0..n {
                let tok: CreateTokenResponse = admin
                    .post(
                        "/api/v1/tokens",
                        &CreateTokenRequest {
                            role: Role::Submitter,
                            name: Some(format!("ring{n}-party-{i}")),
                            tenant: None,
                            expires_in_ms: None,
                        },
                    )
                    .await?;
                v.push(Client::new(&hub.url, Some(tok.token))?);
            }
            v
        };
        let mut lat = Vec::new();
        for r in 0..args.cycles {
            lat.push(ring(&parties, &admin, n, r).await?);
        }
        let s = summary(lat);
        worst_p99 = worst_p99.max(s["p99"].as_f64().unwrap_or(0.0));
        detect.insert(format!("ring_{n}"), s);
    }
    let result = json!({
        "locks": {
            "store": "sqlite",
            "round_trips": args.rounds,
            "round_trips_per_sec": round(seq_rate),
            "round_trip_ms": summary(seq),
            "clients": args.clients,
            "concurrent_round_trips_per_sec": round(conc_rate),
            "concurrent_round_trip_ms": summary(conc),
            "deadlock_detected_ms": Value::Object(detect),
            "deadlock_floor_ms": DEADLOCK_FLOOR_MS,
            "deadlock_floor_met": worst_p99 < DEADLOCK_FLOOR_MS,
        }
    });
    hub.stop().await?;
    Ok(result["locks"].clone())
}

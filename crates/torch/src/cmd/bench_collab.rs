//! `torch bench collab`: the collaboration figures, each part on its own
//! embedded hub — `messages` (direct and relayed messages between in-process
//! agents, [`super::bench_msgs`]) and `locks` (lock round trips and deadlock
//! detection, [`super::bench_locks`]).

use anyhow::Result;
use serde_json::json;

use crate::cli_msg::CollabBenchArgs;
use crate::output;

pub(crate) async fn run(args: CollabBenchArgs) -> Result<()> {
    if !args.json {
        eprintln!(
            "messages: {} agents, {} direct messages…",
            args.agents, args.messages
        );
    }
    let messages = super::bench_msgs::measure(&args).await?;
    if !args.json {
        eprintln!(
            "locks: {} round trips, {} clients, {} rings per size…",
            args.rounds, args.clients, args.cycles
        );
    }
    let locks = super::bench_locks::measure(&args).await?;
    let report = json!({ "messages": messages, "locks": locks });
    if args.json {
        return output::json(&report);
    }
    let m = &report["messages"];
    for k in ["direct", "relayed"] {
        output::line(format!(
            "{k:>8}: {:>9.0} msg/s  send p50 {} µs p99 {} µs  delivery p50 {} ms p99 {} ms",
            m[k]["msgs_per_sec"].as_f64().unwrap_or_default(),
            m[k]["send_latency_us"]["p50"],
            m[k]["send_latency_us"]["p99"],
            m[k]["delivery_latency_ms"]["p50"],
            m[k]["delivery_latency_ms"]["p99"],
        ))?;
    }
    let l = &report["locks"];
    output::line(format!(
        "   locks: {} round trips/s (p50 {} ms, p99 {} ms); {} clients: {} round trips/s",
        l["round_trips_per_sec"],
        l["round_trip_ms"]["p50"],
        l["round_trip_ms"]["p99"],
        l["clients"],
        l["concurrent_round_trips_per_sec"]
    ))?;
    for (k, v) in l["deadlock_detected_ms"].as_object().into_iter().flatten() {
        output::line(format!(
            "deadlock detected at the closing wait, {k}: p50 {} ms, p99 {} ms (floor {} ms)",
            v["p50"], v["p99"], l["deadlock_floor_ms"]
        ))?;
    }
    Ok(())
}

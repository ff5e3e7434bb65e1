//! `torch stats`: the hub's counters, assignment latency and the autonomy
//! metrics, from `GET /api/v1/stats`.

use anyhow::Result;
use serde_json::Value;

use crate::cli::{HubArgs, OutArgs};
use crate::client::Client;
use crate::output;

/// The autonomy keys in the order the sprint plan lists them, with a label
/// and how to print the value.
const AUTONOMY: [(&str, &str, Unit); 9] = [
    ("self_spawn_events", "self-spawn events", Unit::Count),
    ("self_spawn_success_rate", "self-spawn success", Unit::Ratio),
    (
        "tasks_without_intervention_pct",
        "tasks without intervention",
        Unit::Percent,
    ),
    ("tasks_per_agent_hour", "tasks per agent-hour", Unit::Number),
    ("adapt_seconds", "time to adapt (mean)", Unit::Seconds),
    (
        "team_formation_success_rate",
        "team formation success",
        Unit::Ratio,
    ),
    ("messages_delivered_rate", "messages delivered", Unit::Ratio),
    ("help_accept_rate", "help requests accepted", Unit::Ratio),
    ("adapt_samples", "adaptations measured", Unit::Count),
];

#[derive(Clone, Copy)]
enum Unit {
    Count,
    Ratio,
    Percent,
    Number,
    Seconds,
}

fn show(v: &Value, unit: Unit) -> String {
    let Some(x) = v.as_f64() else {
        return "-".into();
    };
    match unit {
        Unit::Count => format!("{x:.0}"),
        Unit::Ratio => format!("{:.1} %", x * 100.0),
        Unit::Percent => format!("{x:.1} %"),
        Unit::Number => format!("{x:.1}"),
        Unit::Seconds => format!("{x:.1} s"),
    }
}

pub(crate) async fn run(hub: HubArgs, out: OutArgs) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let stats: Value = client.get("/api/v1/stats").await?;
    if out.json {
        return output::json(&stats);
    }
    let lat = &stats["assign_latency_ms"];
    output::line(format!(
        "store {}: {} assigned, {} finished, {} leases expired, {} stale reports refused",
        stats["store"].as_str().unwrap_or("?"),
        stats["assigned"],
        stats["finished"],
        stats["leases_expired"],
        stats["stale_refused"]
    ))?;
    output::line(format!(
        "assignment latency: p50 {} ms, p99 {} ms, max {} ms ({} samples)",
        lat["p50"], lat["p99"], lat["max"], lat["count"]
    ))?;
    let mut t = output::table(&["AUTONOMY", "VALUE"]);
    for (key, label, unit) in AUTONOMY {
        t.add_row(vec![label.to_string(), show(&stats["autonomy"][key], unit)]);
    }
    output::line(t.to_string())?;
    output::line("(- : nothing measured yet)")
}

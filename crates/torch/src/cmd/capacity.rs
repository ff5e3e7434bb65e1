//! `torch capacity`: measured load per pool and the recommended pool sizes.

use anyhow::Result;
use torch_api::rest::{CapacityReport, PoolKey};

use crate::cli::{HubArgs, OutArgs};
use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};
use crate::output;

pub(crate) async fn run(hub: HubArgs, out: OutArgs, window: Option<String>) -> Result<()> {
    let mut path = "/api/v1/capacity".to_string();
    if let Some(w) = window {
        humantime::parse_duration(&w)
            .map_err(|e| exit(BAD_INPUT, format!("--window {w:?}: {e} (e.g. 15m, 1h)")))?;
        path.push_str(&format!("?window={w}"));
    }
    let client = Client::new(&hub.hub, hub.token)?;
    let report: CapacityReport = client.get(&path).await?;
    if out.json {
        return output::json(&report);
    }
    let mut t = output::table(&[
        "POOL",
        "ARRIVALS/S",
        "SERVICE",
        "UTIL",
        "S2S P95",
        "FORECAST/S",
        "AGENTS",
        "RECOMMENDED",
    ]);
    for p in &report.pools {
        let pool = match &p.pool {
            PoolKey::Template(n) => format!("template {n}"),
            PoolKey::Skill(n) => format!("skill {n}"),
        };
        t.add_row(vec![
            pool,
            format!("{:.3}", p.arrival_per_s),
            format!("{:.3}s", p.service_s),
            format!("{:.0}%", p.utilisation * 100.0),
            format!("{:.0}ms", p.schedule_to_start_p95_ms),
            p.forecast.map_or_else(|| "-".into(), |f| format!("{f:.3}")),
            format!("{} x{}", p.agents, p.slots_per_agent),
            p.recommended_agents.to_string(),
        ]);
    }
    output::line(t.to_string())?;
    let h = &report.headroom;
    let pct = |x: Option<f64>| x.map_or_else(|| "unknown".into(), |v| format!("{:.0}%", v * 100.0));
    output::line(format!(
        "headroom: cpu {} before 80 %, memory {} before 70 %{}",
        pct(h.cpu),
        pct(h.memory),
        h.agents.map_or_else(String::new, |n| format!(
            " ({n} more agents of the average size)"
        ))
    ))?;
    output::line(format!(
        "window {}s, target p95 schedule-to-start {} ms; model: {}",
        report.window_ms / 1000,
        report.target_ms,
        report.model
    ))
}

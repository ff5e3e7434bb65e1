//! `torch agents list`.

use anyhow::Result;
use torch_api::rest::AgentList;

use crate::cli::{HubArgs, OutArgs};
use crate::client::Client;
use crate::output::{self, age, now_ms};

pub(crate) async fn list(hub: HubArgs, out: OutArgs) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let list: AgentList = client.get("/api/v1/agents").await?;
    if out.json {
        return output::json(&list);
    }
    let now = now_ms();
    let mut t = output::table(&[
        "NAME", "STATE", "RUNNING", "SKILLS", "DONE", "TEMPLATE", "CPU", "RSS", "SEEN", "ID",
    ]);
    for a in &list.agents {
        let skills: Vec<String> = a.skills.iter().map(|s| s.to_string()).collect();
        let m = a.managed.as_ref();
        let template = m.map_or_else(
            || "-".to_string(),
            |m| match m.phase.as_str() {
                "ready" => m.template.clone(),
                phase => format!("{} ({phase})", m.template),
            },
        );
        t.add_row(vec![
            a.name.clone(),
            a.state.clone(),
            format!("{}/{}", a.running, a.slots),
            skills.join(","),
            a.completed.to_string(),
            template,
            m.and_then(|m| m.cpu)
                .map_or_else(|| "-".into(), |c| format!("{:.0}%", c * 100.0)),
            m.and_then(|m| m.rss_bytes)
                .map_or_else(|| "-".into(), super::lifecycle::human_bytes),
            age(a.last_seen_ms, now),
            a.id.to_string(),
        ]);
    }
    output::line(t.to_string())?;
    output::line(format!("{} agent(s)", list.agents.len()))
}

//! `torch alerts`: alerts firing now and recent changes.

use anyhow::Result;
use torch_api::rest::{AlertList, AlertView};

use crate::cli::{HubArgs, OutArgs};
use crate::client::Client;
use crate::output::{self, age, now_ms};

pub(crate) async fn run(hub: HubArgs, out: OutArgs) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let list: AlertList = client.get("/api/v1/alerts").await?;
    if out.json {
        return output::json(&list);
    }
    let now = now_ms();
    let row = |a: &AlertView, when: u64| {
        vec![
            a.alert.clone(),
            a.severity.clone(),
            a.state.clone(),
            format!("{} = {:.3} (threshold {})", a.signal, a.value, a.threshold),
            age(when, now),
            a.summary.clone(),
        ]
    };
    if list.firing.is_empty() {
        output::line(format!("no alert firing ({} rules)", list.rules))?;
    } else {
        let mut t = output::table(&["ALERT", "SEVERITY", "STATE", "VALUE", "SINCE", "SUMMARY"]);
        for a in &list.firing {
            t.add_row(row(a, a.fired_ms));
        }
        output::line(t.to_string())?;
    }
    if !list.recent.is_empty() {
        output::line("\nrecent:")?;
        let mut t = output::table(&["ALERT", "SEVERITY", "STATE", "VALUE", "AGO", "SUMMARY"]);
        for a in &list.recent {
            t.add_row(row(a, a.resolved_ms.unwrap_or(a.fired_ms)));
        }
        output::line(t.to_string())?;
    }
    Ok(())
}

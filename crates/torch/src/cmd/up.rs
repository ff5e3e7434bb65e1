//! `torch up`: a hub on the embedded store plus local agents, in one process tree.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;

use crate::cli::UpArgs;
use crate::config::Config;
use crate::local::{AgentSpawn, shutdown_signal, spawn_agent, start_hub, stop_agents};

pub(crate) async fn run(
    mut cfg: Config,
    args: UpArgs,
    config_path: Option<std::path::PathBuf>,
) -> Result<()> {
    if let Some(d) = args.data_dir {
        cfg.store.data_dir = d;
    }
    let agents = args.agents.unwrap_or(cfg.up.agents);
    let slots = args.slots.unwrap_or(cfg.up.slots);
    let skills = args.skills.unwrap_or_else(|| cfg.up.skills.clone());
    let listen = args.listen.unwrap_or_else(|| cfg.hub.listen.clone());
    let data_dir = cfg.store.data_dir.clone();
    let hub = start_hub(
        &cfg,
        cfg.hub.clone(),
        &listen,
        &data_dir,
        &["admin", "agent"],
    )
    .await?;
    let admin = hub.token("admin").unwrap_or_default().to_string();
    let agent_token = hub.token("agent").unwrap_or_default().to_string();
    let log_dir = data_dir.join("logs");
    std::fs::create_dir_all(&log_dir)?;
    let mut children = Vec::new();
    for i in 0..agents {
        children.push(spawn_agent(AgentSpawn {
            hub: &hub.url,
            token: &agent_token,
            name: format!("local-{}", i + 1),
            skills: &skills,
            slots,
            work_dir: data_dir.join("work").join(format!("local-{}", i + 1)),
            log_file: Some(log_dir.join(format!("agent-{}.log", i + 1))),
            config: config_path.clone(),
            extra: Vec::new(),
        })?);
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Nova Torch is up: hub {} with {agents} agent(s) × {slots} slot(s), skills {skills}",
            hub.url
        )?;
        writeln!(
            out,
            "data dir {} (agent logs in {})",
            data_dir.display(),
            log_dir.display()
        )?;
        writeln!(
            out,
            "\n    export TORCH_HUB={} TORCH_TOKEN={admin}\n",
            hub.url
        )?;
        if let Some(t) = &hub.first_admin_token {
            writeln!(
                out,
                "Permanent admin token of this data dir (shown once): {t}\n"
            )?;
        }
        writeln!(
            out,
            "Then: torch submit --skill sh -- echo hello   |   torch tasks list   |   torch watch"
        )?;
        writeln!(out, "Ctrl-C stops everything.")?;
        out.flush()?;
    }
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = async {
            // If every agent exits on its own, stay up: the hub is still useful.
            std::future::pending::<()>().await
        } => {}
    }
    tracing::info!("stopping agents and hub");
    stop_agents(&mut children, Duration::from_secs(10)).await;
    hub.stop().await
}

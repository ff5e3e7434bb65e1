//! `torch node`: start and stop agent processes on this machine for the hub.

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::cli::NodeArgs;
use crate::exit::{ERROR, exit};
use crate::local::{hostname, shutdown_signal};

pub(crate) async fn run(args: NodeArgs, ca_file: Option<std::path::PathBuf>) -> Result<()> {
    let exe = std::env::current_exe().context("locating the torch binary")?;
    let name = args.name.unwrap_or_else(hostname);
    let mut nc = torch_agent::node::NodeConfig::new(args.hub, args.token, name, exe);
    nc.ca_file = ca_file;
    nc.max_agents = args.max_agents;
    let root = match args.work_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("torch-node-{}", std::process::id())),
    };
    std::fs::create_dir_all(root.join("logs"))
        .with_context(|| format!("creating {}", root.join("logs").display()))?;
    nc.work_root = root.join("agents");
    nc.log_dir = Some(root.join("logs"));
    let shutdown = CancellationToken::new();
    let sd = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        sd.cancel();
    });
    torch_agent::node::run_node(nc, shutdown)
        .await
        .map_err(|e| exit(ERROR, format!("node stopped: {e}")))
}

//! `torch serve`: the hub.

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::local::{shutdown_signal, start_hub};

pub(crate) async fn run(mut cfg: Config, args: ServeArgs) -> Result<()> {
    if let Some(d) = args.data_dir {
        cfg.store.data_dir = d;
    }
    if let Some(url) = args.store {
        cfg.store.url = Some(url);
    }
    let listen = args.listen.unwrap_or_else(|| cfg.hub.listen.clone());
    let hub = start_hub(&cfg, cfg.hub.clone(), &listen, &cfg.store.data_dir, &[]).await?;
    match &cfg.store.url {
        Some(store) => {
            tracing::info!(url = %hub.url, store = %crate::local::redact(store), "hub listening")
        }
        None => {
            tracing::info!(url = %hub.url, data_dir = %cfg.store.data_dir.display(), "hub listening")
        }
    }
    if let Some(token) = &hub.first_admin_token {
        if let Some(path) = &args.admin_token_file {
            write_secret(path, token)?;
        }
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "\nAdmin token (shown once; store it safely):\n\n    {token}\n"
        )?;
        writeln!(
            err,
            "    export TORCH_HUB={} TORCH_TOKEN={token}\n",
            cfg.hub.advertise_url.as_deref().unwrap_or(&hub.url)
        )?;
    }
    if let Some(path) = &args.url_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &hub.url)
            .and_then(|_| std::fs::rename(&tmp, path))
            .with_context(|| format!("writing url file {}", path.display()))?;
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    hub.stop().await
}

fn write_secret(path: &std::path::Path, token: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing admin token file {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    Ok(())
}

//! `torch serve`: the hub.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::ServeArgs;
use crate::config::{Config, ServeTls};
use crate::local::{shutdown_signal, start_hub};

pub(crate) async fn run(mut cfg: Config, args: ServeArgs, ca_file: Option<PathBuf>) -> Result<()> {
    if let Some(d) = args.data_dir {
        cfg.store.data_dir = d;
    }
    if let Some(url) = args.store {
        cfg.store.url = Some(url);
    }
    let listen = args.listen.unwrap_or_else(|| cfg.hub.listen.clone());
    cfg.tls = serve_tls(
        &args.tls_cert,
        &args.tls_key,
        &args.tls_self_signed,
        &args.tls_names,
        ca_file,
    )?;
    if let Some(ca) = &cfg.tls.ca_file {
        let client = torch_tls::client_config(Some(ca))
            .with_context(|| format!("reading the CA file {}", ca.display()))?;
        cfg.hub.tls_client = Some(client);
    }
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
        let ca = match &cfg.tls.ca_file {
            Some(ca) => format!(" TORCH_CA_FILE={}", ca.display()),
            None => String::new(),
        };
        writeln!(
            err,
            "    export TORCH_HUB={} TORCH_TOKEN={token}{ca}\n",
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

/// The TLS of `torch serve` from its flags: a given certificate and key, or
/// a CA and certificate made (once) in the `--tls-self-signed` directory.
/// `ca_file` (`--ca-file`) is the CA trusted for other hubs; with a
/// self-signed set-up it defaults to the set-up's own CA.
fn serve_tls(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    self_signed: &Option<PathBuf>,
    names: &[String],
    ca_file: Option<PathBuf>,
) -> Result<ServeTls> {
    match (cert, key, self_signed) {
        (Some(cert), Some(key), _) => Ok(ServeTls {
            server: Some(
                torch_tls::server_config(cert, key).context("loading --tls-cert and --tls-key")?,
            ),
            ca_file,
        }),
        (_, _, Some(dir)) => {
            let made = torch_tls::self_signed(dir, names)
                .with_context(|| format!("making a CA and certificate in {}", dir.display()))?;
            if made.created {
                let mut err = std::io::stderr().lock();
                writeln!(
                    err,
                    "\nMade a CA and a TLS certificate in {}: give {} to agents, nodes \
                     and the CLI (--ca-file or TORCH_CA_FILE).\n",
                    dir.display(),
                    made.ca.display()
                )?;
            }
            Ok(ServeTls {
                server: Some(
                    torch_tls::server_config(&made.cert, &made.key)
                        .context("loading the self-signed certificate")?,
                ),
                ca_file: ca_file.or(Some(made.ca)),
            })
        }
        _ => Ok(ServeTls {
            server: None,
            ca_file,
        }),
    }
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

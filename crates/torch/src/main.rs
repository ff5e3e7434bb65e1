//! `torch`: the Nova Torch binary. Every role is a subcommand; see `torch --help`.

// The binary is where output to the terminal belongs (libraries use tracing).
#![allow(clippy::print_stderr, clippy::print_stdout)]

mod bars;
mod cli;
mod cli_audit;
mod cli_bench;
mod cli_coord;
mod cli_msg;
mod cli_teams;
mod client;
mod cmd;
mod config;
mod exit;
mod local;
mod output;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

/// mimalloc instead of glibc's malloc: the hub allocates many small,
/// short-lived buffers per task (JSON, frames, Redis arguments), and glibc's
/// `malloc`/`free` took about a quarter of its CPU in `torch bench
/// throughput` (docs/benchmarks.md). Built without transparent huge pages
/// (`no_thp`): with them an idle agent's RSS grew from 11 to 19 MB and the
/// agents' CPU per task more than doubled (page faults on 2 MB pages).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(filter: Option<&str>, default: &str) {
    let filter =
        EnvFilter::try_new(filter.unwrap_or(default)).unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    // The build's one TLS crypto provider (ring), for every HTTP client made
    // with reqwest's `rustls-no-provider`; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if let Command::Supervise { args } = cli.cmd {
        let code = torch_agent::supervise_main(args);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let server_like = matches!(
        cli.cmd,
        Command::Serve(_) | Command::Agent(_) | Command::Up(_) | Command::Node(_)
    );
    init_logging(
        cli.log.as_deref(),
        if server_like { "info" } else { "warn" },
    );
    // Agents are small: one thread. Everything else gets the multi-thread runtime.
    let rt = if matches!(cli.cmd, Command::Agent(_)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("torch: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match rt.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let io_kind = e
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind)
                .or_else(|| {
                    e.downcast_ref::<serde_json::Error>()
                        .and_then(serde_json::Error::io_error_kind)
                });
            if io_kind == Some(std::io::ErrorKind::BrokenPipe) {
                return ExitCode::SUCCESS;
            }
            let code = e
                .downcast_ref::<exit::Exit>()
                .map_or(exit::ERROR, |x| x.code);
            eprintln!("torch: {e:#}");
            ExitCode::from(code)
        }
    }
}

//! Subcommand dispatch.

mod agent;
mod agents;
mod alerts;
mod audit;
mod bench;
mod bench_collab;
mod bench_locks;
mod bench_metrics;
mod bench_msgs;
mod bench_routing;
mod bench_spawn;
mod capacity;
mod coord;
mod demo;
mod explain;
pub(crate) mod lifecycle;
mod mcp;
mod msg;
mod node;
mod probe;
mod progress;
mod serve;
mod stats;
mod submit;
mod tasks;
mod teams;
mod token;
mod top;
mod up;
mod usage;
mod validate;
mod watch;
mod wiring;

use anyhow::Result;

use crate::cli::{AgentsCmd, BenchCmd, Cli, Command, TasksCmd, TemplatesCmd, TokenCmd};
use crate::config;

/// Runs the parsed command.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    let cfg_path = cli.config.clone();
    let ca_file = cli.ca_file.clone();
    crate::client::set_ca_file(ca_file.clone())?;
    let load = || config::load(cfg_path.as_deref());
    match cli.cmd {
        Command::Serve(a) => serve::run(load()?, a, ca_file).await,
        Command::Agent(a) => agent::run(load()?, a, ca_file).await,
        Command::Up(a) => up::run(load()?, a, cfg_path.clone()).await,
        Command::Submit(a) => submit::run(a).await,
        Command::Audit { cmd } => audit::run(cmd).await,
        Command::Tasks { cmd } => match cmd {
            TasksCmd::List {
                hub,
                out,
                state,
                label,
                limit,
            } => tasks::list(hub, out, state, label, limit).await,
            TasksCmd::Show { hub, out, id } => tasks::show(hub, out, id).await,
            TasksCmd::Cancel {
                hub,
                out,
                id,
                reason,
            } => tasks::cancel(hub, out, id, reason).await,
            TasksCmd::Retry { hub, out, id } => tasks::retry(hub, out, id).await,
            TasksCmd::Logs { hub, out, id } => tasks::logs(hub, out, id).await,
        },
        Command::Agents { cmd } => match cmd {
            AgentsCmd::List { hub, out } => agents::list(hub, out).await,
            AgentsCmd::Scaling {
                hub,
                out,
                template,
                limit,
            } => lifecycle::scaling(hub, out, template, limit).await,
            AgentsCmd::Nodes { hub, out } => lifecycle::nodes(hub, out).await,
            AgentsCmd::Drain { hub, id, reason } => lifecycle::drain(hub, id, reason).await,
        },
        Command::Node(a) => node::run(a, ca_file).await,
        Command::Templates { cmd } => match cmd {
            TemplatesCmd::List { out } => lifecycle::templates_list(&load()?, out),
            TemplatesCmd::Check { files, no_run } => lifecycle::templates_check(&files, !no_run),
        },
        Command::Spawn(a) => lifecycle::spawn(a).await,
        Command::Delegate(a) => lifecycle::delegate(a).await,
        Command::Wait(a) => lifecycle::wait(a).await,
        Command::Memory { cmd } => lifecycle::memory(cmd).await,
        Command::Lock { cmd } => coord::lock(cmd).await,
        Command::Locks { cmd } => coord::locks(cmd).await,
        Command::Help { cmd } => coord::help(cmd).await,
        Command::Watch(a) => watch::run(a).await,
        Command::Stats { hub, out } => stats::run(hub, out).await,
        Command::Mcp => mcp::run().await,
        Command::Peers(a) => msg::peers(a).await,
        Command::Teams { cmd } => teams::teams(cmd).await,
        Command::Team { cmd } => teams::team(cmd).await,
        Command::Msg { cmd } => msg::run(cmd).await,
        Command::Token { cmd } => match cmd {
            TokenCmd::Create {
                hub,
                out,
                role,
                name,
                tenant,
                expires,
            } => {
                let args = token::CreateArgs {
                    role,
                    name,
                    tenant,
                    expires,
                };
                token::create(hub, out, args).await
            }
            TokenCmd::List { hub, out } => token::list(hub, out).await,
            TokenCmd::Revoke { hub, out, id } => token::revoke(hub, out, id).await,
        },
        Command::Progress(a) => progress::run(a).await,
        Command::Usage(a) => usage::run(a).await,
        Command::Validate(a) => validate::run(a),
        Command::Explain { hub, out, id } => explain::explain(hub, out, id).await,
        Command::Analyze { hub, out, file } => explain::analyze(hub, out, file).await,
        Command::Alerts { hub, out } => alerts::run(hub, out).await,
        Command::Capacity { hub, out, window } => capacity::run(hub, out, window).await,
        Command::Top { hub } => top::run(hub).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Bench { cmd } => match cmd {
            BenchCmd::Throughput(a) => bench::throughput(a).await,
            BenchCmd::Spawn(a) => bench_spawn::run(a).await,
            BenchCmd::Collab(a) => bench_collab::run(a).await,
            BenchCmd::Metrics(a) => bench_metrics::run(a).await,
            BenchCmd::Routing { seed, json } => bench_routing::run(seed, json),
        },
        Command::Supervise { .. } => Ok(()),
    }
}

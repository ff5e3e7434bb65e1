//! `torch agent`: join a hub and run tasks.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use torch_core::skill::parse_skill_list;

use crate::cli::AgentArgs;
use crate::config::Config;
use crate::exit::{BAD_INPUT, exit};
use crate::local::shutdown_signal;

pub(crate) async fn run(cfg: Config, args: AgentArgs) -> Result<()> {
    let skills = parse_skill_list(&args.skills)
        .map_err(|e| exit(BAD_INPUT, format!("--skills {:?}: {e}", args.skills)))?;
    if args.slots == 0 || args.slots > 10_000 {
        return Err(exit(BAD_INPUT, "--slots must be between 1 and 10000"));
    }
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| exit(BAD_INPUT, format!("--label {l:?} must be key=value")))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let name = args
        .name
        .unwrap_or_else(|| format!("agent-{}", std::process::id()));
    let work_root = match args.work_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("torch-agent-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work_root)
        .with_context(|| format!("creating work dir {}", work_root.display()))?;
    let mut ac = torch_agent::AgentConfig::new(args.hub, args.token, name);
    ac.skills = skills;
    ac.slots = args.slots;
    ac.labels = labels;
    if let Some(c) = args.cost {
        if !(c.is_finite() && c >= 0.0) {
            return Err(exit(
                BAD_INPUT,
                format!("--cost must be a non-negative number, got {c}"),
            ));
        }
        ac.cost = Some(c);
    }
    ac.work_root = work_root;
    ac.supervisor = torch_binary_on_path(&ac.work_root);
    ac.env_allowlist = cfg.agent.env_allowlist;
    ac.kill_grace = cfg.agent.kill_grace;
    ac.max_log_bytes = cfg.agent.max_log_bytes;
    ac.keep_workdirs = args.keep_workdirs;
    let shutdown = CancellationToken::new();
    let sd = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        sd.cancel();
    });
    torch_agent::run(ac, shutdown)
        .await
        .map_err(|e| exit(crate::exit::ERROR, format!("agent stopped: {e}")))
}

/// The path of this binary as `…/torch`, so tasks can call `torch progress`
/// even when the binary was installed under another file name: in that case a
/// `torch` symlink in the work root points at it.
fn torch_binary_on_path(work_root: &std::path::Path) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    if exe.file_name().is_some_and(|n| n == "torch") {
        return Some(exe);
    }
    let dir = work_root.join(".bin");
    let link = dir.join("torch");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::remove_file(&link);
    match std::os::unix::fs::symlink(&exe, &link) {
        Ok(()) => Some(link),
        Err(e) => {
            tracing::warn!(error = %e, "could not link `torch` into the work dir; tasks may not find `torch` on PATH");
            Some(exe)
        }
    }
}

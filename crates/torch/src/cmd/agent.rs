//! `torch agent`: join a hub and run tasks.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use torch_api::node::{ENV_AGENT_ID, ENV_AGENT_TEMPLATE};
use torch_core::AgentId;
use torch_core::lifecycle::{AgentTemplate, validate_template};
use torch_core::sandbox::SandboxPolicy;
use torch_core::skill::parse_skill_list;

use crate::cli::AgentArgs;
use crate::config::Config;
use crate::exit::{BAD_INPUT, exit};
use crate::local::shutdown_signal;

/// The `--skills` and `--slots` defaults without a template; given flags
/// override a template's values.
const DEFAULT_SKILLS: &str = "sh";
const DEFAULT_SLOTS: u32 = 4;

pub(crate) async fn run(
    cfg: Config,
    args: AgentArgs,
    ca_file: Option<std::path::PathBuf>,
) -> Result<()> {
    if args.check_sandbox {
        return check_sandbox(args.json);
    }
    let token = args
        .token
        .clone()
        .ok_or_else(|| exit(BAD_INPUT, "--token (or TORCH_TOKEN) is required"))?;
    let template = template_from_env()?;
    let policy = sandbox_policy(cfg.agent.sandbox.clone(), &args)?;
    let agent_id = agent_id_from_env()?;
    let skills_arg = args.skills.as_deref().unwrap_or(DEFAULT_SKILLS);
    let skills = parse_skill_list(skills_arg)
        .map_err(|e| exit(BAD_INPUT, format!("--skills {skills_arg:?}: {e}")))?;
    let slots = args.slots.unwrap_or(DEFAULT_SLOTS);
    if slots == 0 || slots > 10_000 {
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
    let mut ac = torch_agent::AgentConfig::new(args.hub, token, name);
    ac.ca_file = ca_file;
    ac.env_allowlist = cfg.agent.env_allowlist;
    ac.sandbox = policy;
    const LAYERS: [&str; 6] = ["files", "network", "memory", "pids", "cpu", "syscalls"];
    if let Some(bad) = cfg
        .agent
        .sandbox_disable
        .iter()
        .find(|l| !LAYERS.contains(&l.as_str()))
    {
        return Err(exit(
            BAD_INPUT,
            format!("agent.sandbox-disable: unknown layer {bad:?} (expected one of {LAYERS:?})"),
        ));
    }
    ac.sandbox_disabled = cfg.agent.sandbox_disable.clone();
    for layer in &args.sandbox_disable {
        if !ac.sandbox_disabled.contains(layer) {
            ac.sandbox_disabled.push(layer.clone());
        }
    }
    if let Some(t) = &template {
        ac.apply_template(t)
            .map_err(|e| exit(BAD_INPUT, format!("{ENV_AGENT_TEMPLATE}: {e}")))?;
    }
    if template.is_none() || args.skills.is_some() {
        ac.skills = skills;
    }
    if template.is_none() || args.slots.is_some() {
        ac.slots = slots;
    }
    ac.labels.extend(labels);
    ac.agent_id = agent_id;
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
    ac.kill_grace = cfg.agent.kill_grace;
    ac.max_log_bytes = cfg.agent.max_log_bytes;
    ac.keep_workdirs = args.keep_workdirs;
    ac.data_dir = Some(
        args.data_dir
            .clone()
            .unwrap_or_else(|| ac.work_root.join("agent-data")),
    );
    ac.listen = match args.listen.as_deref() {
        None => torch_agent::Listen::Auto,
        Some("off") => torch_agent::Listen::Off,
        Some(a) => torch_agent::Listen::Addr(
            a.parse()
                .map_err(|e| exit(BAD_INPUT, format!("--listen {a:?}: {e}")))?,
        ),
    };
    ac.messages = cfg.collaboration.agent_limits();
    let shutdown = CancellationToken::new();
    let sd = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        sd.cancel();
    });
    watch_node(shutdown.clone());
    torch_agent::run(ac, shutdown)
        .await
        .map_err(|e| exit(crate::exit::ERROR, format!("agent stopped: {e}")))
}

/// `torch agent --check-sandbox [--json]`.
fn check_sandbox(json: bool) -> Result<()> {
    let probe = torch_agent::probe_machine();
    if json {
        crate::output::json(&probe)?;
    } else {
        crate::output::line(torch_agent::render_probe(&probe).trim_end())?;
    }
    if probe.missing.is_empty() {
        Ok(())
    } else {
        Err(exit(
            crate::exit::ERROR,
            format!(
                "{} sandbox layer(s) missing on this machine",
                probe.missing.len()
            ),
        ))
    }
}

/// The config's `[agent.sandbox]` with the `--sandbox-*` flags applied.
fn sandbox_policy(mut p: SandboxPolicy, args: &AgentArgs) -> Result<SandboxPolicy> {
    fn parse<T: serde::de::DeserializeOwned>(what: &str, v: &str) -> Result<T> {
        serde_json::from_value(serde_json::Value::String(v.to_string()))
            .map_err(|e| exit(BAD_INPUT, format!("--sandbox-{what} {v:?}: {e}")))
    }
    if let Some(n) = &args.sandbox_network {
        p.network = Some(parse("network", n)?);
    }
    if let Some(r) = &args.sandbox_require {
        p.require = Some(parse("require", r)?);
    }
    for (list, add) in [
        (&mut p.write, &args.sandbox_write),
        (&mut p.read, &args.sandbox_read),
    ] {
        for path in add {
            let abs = std::path::absolute(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            list.push(abs);
        }
    }
    Ok(p)
}

/// The template a node handed over in `TORCH_AGENT_TEMPLATE` (JSON), checked.
fn template_from_env() -> Result<Option<AgentTemplate>> {
    let Some(json) = std::env::var_os(ENV_AGENT_TEMPLATE) else {
        return Ok(None);
    };
    let json = json
        .into_string()
        .map_err(|_| exit(BAD_INPUT, format!("{ENV_AGENT_TEMPLATE} is not UTF-8")))?;
    let mut t: AgentTemplate = serde_json::from_str(&json)
        .map_err(|e| exit(BAD_INPUT, format!("{ENV_AGENT_TEMPLATE}: {e}")))?;
    // The name is not part of the template body; validation needs one.
    if t.name.is_empty() {
        t.name = "from-env".into();
    }
    validate_template(&t).map_err(|e| exit(BAD_INPUT, format!("{ENV_AGENT_TEMPLATE}: {e}")))?;
    Ok(Some(t))
}

/// The id the hub chose for this agent (`TORCH_AGENT_ID`), if a node set it.
fn agent_id_from_env() -> Result<Option<AgentId>> {
    match std::env::var(ENV_AGENT_ID) {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| exit(BAD_INPUT, format!("{ENV_AGENT_ID} {s:?}: {e}"))),
        _ => Ok(None),
    }
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

/// An agent started by a node stops when the node process is gone (it was
/// re-parented): a crashed node leaves no agents behind.
fn watch_node(shutdown: CancellationToken) {
    let Some(node) = std::env::var(torch_api::node::ENV_NODE_PID)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if nix::unistd::getppid().as_raw() != node {
                tracing::warn!(
                    node_pid = node,
                    "the node that started this agent is gone; stopping"
                );
                shutdown.cancel();
                return;
            }
        }
    });
}

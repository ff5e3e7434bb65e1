//! Agent lifecycle commands: `torch spawn`, `delegate`, `wait`, `memory`,
//! `agents scaling`, `agents nodes`.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::Result;
use torch_api::coord::{WaitDone, WaitRequest};
use torch_api::rest::{
    AgentList, EventPage, MemoryEntryView, MemoryList, MemoryPut, NodeList, ScalingList,
    SpawnRequest, SpawnResponse, SubmitRequest, SubmitResponse, TaskView,
};
use torch_api::{ENV_TASK_ID, ENV_TASK_TOKEN};
use torch_core::lifecycle::ScaleAction;
use torch_core::{AgentId, TaskId};

use crate::cli::{DelegateArgs, HubArgs, MemoryCmd, OutArgs, SpawnArgs, TaskHubArgs, WaitArgs};
use crate::client::Client;
use crate::cmd::submit::{read_specs, wait_for};
use crate::exit::{BAD_INPUT, ERROR, TASK_FAILED, exit};
use crate::output::{self, age, now_ms};

/// A client with the given token, or inside a task the task token.
fn client(hub: &TaskHubArgs) -> Result<Client> {
    let token = hub
        .token
        .clone()
        .or_else(|| std::env::var(ENV_TASK_TOKEN).ok());
    Client::new(&hub.hub, token)
}

fn duration(what: &str, s: &str) -> Result<Duration> {
    humantime::parse_duration(s).map_err(|e| exit(BAD_INPUT, format!("{what} {s:?}: {e}")))
}

/// Waits until the agent registered (its managed phase leaves `starting`).
async fn wait_ready(client: &Client, agent: AgentId, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let list: AgentList = client.get("/api/v1/agents").await?;
        let me = list.agents.iter().find(|a| a.id == agent);
        if let Some(a) = me
            && a.state != "disconnected"
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(exit(
                ERROR,
                format!(
                    "agent {agent} did not register within {}s (see the node's log)",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn spawn_helper(
    client: &Client,
    template: &str,
    inherit: Option<String>,
    outlive_parent: bool,
) -> Result<SpawnResponse> {
    let req = SpawnRequest {
        template: template.to_string(),
        inherit,
        outlive_parent: outlive_parent.then_some(true),
    };
    client.post("/api/v1/agents/spawn", &req).await
}

/// `torch spawn --template T`.
pub(crate) async fn spawn(args: SpawnArgs) -> Result<()> {
    let timeout = duration("--timeout", &args.timeout)?;
    let client = client(&args.hub)?;
    let resp = spawn_helper(&client, &args.template, args.inherit, args.outlive_parent).await?;
    if !args.no_wait {
        wait_ready(&client, resp.agent_id, timeout).await?;
    }
    if args.out.json {
        return output::json(&resp);
    }
    let inherited = if resp.inherited.is_empty() {
        String::new()
    } else {
        format!(", inherited {}", resp.inherited.join(","))
    };
    output::line(format!(
        "{} {} ({} on {}, depth {}{inherited})",
        if args.no_wait { "ordered" } else { "ready" },
        resp.agent_id,
        resp.name,
        resp.node,
        resp.depth
    ))
}

/// `torch delegate SPEC [--helper T]`.
pub(crate) async fn delegate(args: DelegateArgs) -> Result<()> {
    if std::env::var(ENV_TASK_ID).is_err() && args.hub.token.is_none() {
        return Err(exit(
            BAD_INPUT,
            "`torch delegate` runs inside a task (TORCH_TASK_TOKEN) or with --token",
        ));
    }
    let client = client(&args.hub)?;
    let mut specs: Vec<_> = read_specs(&args.file)?
        .into_iter()
        .map(|v| v.spec)
        .collect();
    let helper = match &args.helper {
        Some(t) => {
            let h = spawn_helper(&client, t, args.inherit.clone(), false).await?;
            wait_ready(&client, h.agent_id, Duration::from_secs(60)).await?;
            // Pin every child to the helper (its `torch.id` label).
            for s in &mut specs {
                s.labels
                    .insert("agent.torch.id".into(), h.agent_id.to_string());
            }
            Some(h)
        }
        None => None,
    };
    if let Some(role) = &args.team {
        let task = std::env::var(ENV_TASK_ID).map_err(|_| {
            exit(
                BAD_INPUT,
                format!("`torch delegate --team` runs inside a team's task ({ENV_TASK_ID})"),
            )
        })?;
        route_to_role(&client, &task, role, &mut specs).await?;
    }
    let after = client
        .get::<EventPage>("/api/v1/events?tail=true")
        .await?
        .last_id;
    let resp: SubmitResponse = client
        .post(
            "/api/v1/tasks",
            &SubmitRequest {
                tasks: specs,
                source: Some(args.file.clone()),
            },
        )
        .await?;
    if args.out.json && !args.wait {
        return output::json(&serde_json::json!({ "tasks": resp.tasks, "helper": helper }));
    }
    if !args.out.json {
        if let Some(h) = &helper {
            output::line(format!("helper {} ({})", h.agent_id, h.name))?;
        }
        for t in &resp.tasks {
            output::line(format!("{} {} {}", t.id, t.state, t.name))?;
        }
    }
    if args.wait {
        let order: Vec<(TaskId, String)> =
            resp.tasks.iter().map(|t| (t.id, t.name.clone())).collect();
        let ids: Vec<TaskId> = order.iter().map(|(t, _)| *t).collect();
        let timeout = duration("--timeout", &args.timeout)?;
        // The hub holds the wait (in the wait-for graph, with its timeout)
        // while the events are followed for the progress lines.
        let waiter = wait_client(&args.hub, timeout)?;
        let (_, finals) = tokio::try_join!(
            register_wait(&waiter, &ids, timeout),
            wait_for(&client, &order, after, args.out.json)
        )?;
        return finish_wait(&finals, args.out);
    }
    Ok(())
}

/// Routes `specs` to the member in `role` of the team of `task` (an idle
/// one first when the role has several), labelled with the team and role.
pub(crate) async fn route_to_role(
    client: &Client,
    task: &str,
    role: &str,
    specs: &mut [torch_core::TaskSpec],
) -> Result<()> {
    let team: torch_api::rest::TeamView = client.get(&format!("/api/v1/teams/{task}")).await?;
    let members: Vec<_> = team.members.iter().filter(|m| m.role == role).collect();
    let Some(member) = members
        .iter()
        .min_by_key(|m| (m.state != "idle", m.agent_id))
        .copied()
    else {
        let roles: Vec<&str> = team.members.iter().map(|m| m.role.as_str()).collect();
        return Err(exit(
            BAD_INPUT,
            format!(
                "team {} has no member in role {role:?} (roles: {})",
                team.id,
                roles.join(", ")
            ),
        ));
    };
    for s in specs.iter_mut() {
        s.labels
            .insert("agent.torch.id".into(), member.agent_id.to_string());
        s.labels.insert("torch.team".into(), team.id.to_string());
        s.labels.insert("torch.role".into(), role.to_string());
    }
    Ok(())
}

/// `torch wait ID…`: one wait in the hub's wait-for graph (refused at
/// once, exit 6, when it would close a cycle), bounded by `--timeout`
/// (exit 5).
pub(crate) async fn wait(args: WaitArgs) -> Result<()> {
    let mut ids = Vec::new();
    for id in &args.ids {
        let t: TaskId = id
            .parse()
            .map_err(|_| exit(BAD_INPUT, format!("{id:?} is not a task id")))?;
        ids.push(t);
    }
    let timeout = duration("--timeout", &args.timeout)?;
    let client = wait_client(&args.hub, timeout)?;
    let done = register_wait(&client, &ids, timeout).await?;
    let mut finals = Vec::with_capacity(done.tasks.len());
    for t in &done.tasks {
        finals.push(
            client
                .get::<TaskView>(&format!("/api/v1/tasks/{}", t.id))
                .await?,
        );
    }
    finish_wait(&finals, args.out)
}

/// A client whose requests may last a wait of `timeout`.
fn wait_client(hub: &TaskHubArgs, timeout: Duration) -> Result<Client> {
    let token = hub
        .token
        .clone()
        .or_else(|| std::env::var(ENV_TASK_TOKEN).ok());
    Client::with_timeout(&hub.hub, token, timeout + Duration::from_secs(30))
}

/// Waits in the hub until every task in `ids` ended (`POST /api/v1/waits`).
/// A hub that cannot be reached, is stopping or has no leader ends the wait
/// it held: the wait is made again every second for what is left of
/// `timeout`, so a hub restart does not end it.
async fn register_wait(client: &Client, ids: &[TaskId], timeout: Duration) -> Result<WaitDone> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let req = WaitRequest {
            tasks: ids.to_vec(),
            timeout_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1),
        };
        match client.post("/api/v1/waits", &req).await {
            Err(e) if retryable(&e) && left > Duration::from_secs(1) => {
                tracing::warn!("{e:#}; waiting again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            r => return r,
        }
    }
}

/// An error after which the same wait may be made again.
fn retryable(e: &anyhow::Error) -> bool {
    const AGAIN: [&str; 5] = [
        "(hub_stopping)",
        "(no_leader)",
        "(leader_unreachable)",
        "(not_leader)",
        "(store_unavailable)",
    ];
    e.downcast_ref::<crate::exit::Exit>().is_some_and(|x| {
        x.code == crate::exit::UNREACHABLE || AGAIN.iter().any(|c| x.message.contains(c))
    })
}

fn finish_wait(finals: &[TaskView], out: OutArgs) -> Result<()> {
    if out.json {
        output::json(&finals)?;
    } else {
        for t in finals {
            output::line(format!("{} {} {}", t.id, t.state, t.name))?;
        }
    }
    let failed = finals
        .iter()
        .filter(|t| t.state != torch_core::TaskState::Succeeded)
        .count();
    if failed > 0 {
        return Err(exit(
            TASK_FAILED,
            format!("{failed} of {} task(s) did not succeed", finals.len()),
        ));
    }
    Ok(())
}

fn agent_query(agent: &Option<String>) -> String {
    match agent {
        Some(a) => format!("?agent={a}"),
        None => String::new(),
    }
}

fn check_key(key: &str) -> Result<String> {
    if key.is_empty() || key.contains('/') || key.contains('?') || key.contains('#') {
        return Err(exit(
            BAD_INPUT,
            format!("memory key {key:?} must be non-empty without '/', '?' or '#'"),
        ));
    }
    Ok(key.replace('%', "%25").replace(' ', "%20"))
}

/// `torch memory get|put|list`.
pub(crate) async fn memory(cmd: MemoryCmd) -> Result<()> {
    match cmd {
        MemoryCmd::Get { hub, agent, key } => {
            let client = client(&hub)?;
            let path = format!("/api/v1/memory/{}{}", check_key(&key)?, agent_query(&agent));
            let e: MemoryEntryView = client.get(&path).await?;
            output::line(e.value)
        }
        MemoryCmd::Put {
            hub,
            agent,
            key,
            value,
        } => {
            let value = if value == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| exit(BAD_INPUT, format!("reading the value from stdin: {e}")))?;
                s
            } else {
                value
            };
            let client = client(&hub)?;
            let path = format!("/api/v1/memory/{}{}", check_key(&key)?, agent_query(&agent));
            let _: serde_json::Value = client.put(&path, &MemoryPut { value }).await?;
            Ok(())
        }
        MemoryCmd::List { hub, out, agent } => {
            let client = client(&hub)?;
            let list: MemoryList = client
                .get(&format!("/api/v1/memory{}", agent_query(&agent)))
                .await?;
            if out.json {
                return output::json(&list);
            }
            let now = now_ms();
            let mut t = output::table(&["KEY", "VALUE", "UPDATED", "INHERITED FROM"]);
            for e in &list.entries {
                let mut v = e.value.replace('\n', " ");
                if v.chars().count() > 60 {
                    v = v.chars().take(57).collect::<String>() + "...";
                }
                t.add_row(vec![
                    e.key.clone(),
                    v,
                    age(e.updated_ms, now),
                    e.inherited_from.map(|a| a.to_string()).unwrap_or_default(),
                ]);
            }
            output::line(t.to_string())?;
            output::line(format!(
                "{} key(s) of agent {}",
                list.entries.len(),
                list.agent_id
            ))
        }
    }
}

/// `torch agents scaling`.
pub(crate) async fn scaling(
    hub: HubArgs,
    out: OutArgs,
    template: Option<String>,
    limit: usize,
) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let mut path = format!("/api/v1/agents/scaling?limit={limit}");
    if let Some(t) = &template {
        path.push_str(&format!("&template={t}"));
    }
    let list: ScalingList = client.get(&path).await?;
    if out.json {
        return output::json(&list);
    }
    let now = now_ms();
    let mut t = output::table(&[
        "WHEN", "TEMPLATE", "ACTION", "DESIRED", "QUEUE", "OLDEST", "FORECAST", "REASON",
    ]);
    for d in &list.decisions {
        let action = match &d.action {
            ScaleAction::Up { count } => format!("up {count}"),
            ScaleAction::Down { agents } => format!("down {}", agents.len()),
            ScaleAction::Hold => "hold".into(),
        };
        t.add_row(vec![
            age(d.at_ms, now),
            d.template.clone(),
            action,
            d.desired.to_string(),
            d.inputs.queue_depth.to_string(),
            format!("{}ms", d.inputs.oldest_wait_ms),
            d.forecast
                .map(|f| format!("{f:.1}"))
                .unwrap_or_else(|| "-".into()),
            d.reason.clone(),
        ]);
    }
    output::line(t.to_string())?;
    output::line(format!("{} decision(s)", list.decisions.len()))
}

/// `torch agents nodes`.
pub(crate) async fn nodes(hub: HubArgs, out: OutArgs) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let list: NodeList = client.get("/api/v1/nodes").await?;
    if out.json {
        return output::json(&list);
    }
    let now = now_ms();
    let mut t = output::table(&["NODE", "CONNECTED", "AGENTS", "CPUS", "CPU", "MEM", "SEEN"]);
    for n in &list.nodes {
        t.add_row(vec![
            n.name.clone(),
            n.connected.to_string(),
            format!("{}/{}", n.agents, n.max_agents),
            n.cpus.to_string(),
            format!("{:.0}%", n.cpu_used * 100.0),
            format!(
                "{:.0}% of {}",
                n.mem_used * 100.0,
                human_bytes(n.mem_total_bytes)
            ),
            age(n.last_seen_ms, now),
        ]);
    }
    output::line(t.to_string())?;
    output::line(format!("{} node(s)", list.nodes.len()))
}

/// Bytes for people: `512 KiB`, `1.5 GiB`.
pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `torch agents drain ID`.
pub(crate) async fn drain(hub: HubArgs, id: String, reason: Option<String>) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let v: serde_json::Value = client
        .post(
            &format!("/api/v1/agents/{id}/drain"),
            &serde_json::json!({ "reason": reason }),
        )
        .await?;
    let terminates = v.get("terminates").and_then(|t| t.as_bool()) == Some(true);
    output::line(if terminates {
        format!("draining {id}; its node stops it once its tasks finish")
    } else {
        format!("draining {id}; it takes no new work (no node runs it, so stop it yourself)")
    })
}

/// `torch templates list`.
pub(crate) fn templates_list(cfg: &crate::config::Config, out: OutArgs) -> Result<()> {
    let templates = &cfg.hub.lifecycle.templates;
    if out.json {
        // The name is the table key or file name, not a field of the body:
        // put it in each entry.
        let mut named = Vec::with_capacity(templates.len());
        for t in templates {
            let mut v = serde_json::to_value(t)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("name".into(), serde_json::Value::String(t.name.clone()));
            }
            named.push(v);
        }
        return output::json(&named);
    }
    let mut t = output::table(&["NAME", "ROLE", "SKILLS", "SLOTS", "MIN..MAX", "EXECUTOR"]);
    for tpl in templates {
        t.add_row(vec![
            tpl.name.clone(),
            tpl.role.clone(),
            tpl.skills.join(","),
            tpl.slots.to_string(),
            format!("{}..{}", tpl.min, tpl.max),
            tpl.executor.command.join(" "),
        ]);
    }
    output::line(t.to_string())?;
    output::line(format!("{} template(s)", templates.len()))
}

/// `torch templates check FILE…`: every file is checked; all errors are
/// shown, and a template's `torch mcp` wiring is printed as generated. With `run`, each template's program is looked up and run with
/// `--version`; a missing one fails the check (exit 1).
pub(crate) fn templates_check(files: &[std::path::PathBuf], run: bool) -> Result<()> {
    use torch_core::lifecycle::{parse_template_file, parse_templates};
    let mut errors = Vec::new();
    let mut missing = Vec::new();
    for path in files {
        let source = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{source}: cannot read: {e}"));
                continue;
            }
        };
        let has_tables = text
            .parse::<toml::Table>()
            .map(|t| t.contains_key("templates"))
            .unwrap_or(false);
        let result = if has_tables {
            parse_templates(&source, &text)
        } else {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            parse_template_file(&source, &name, &text).map(|t| vec![t])
        };
        match result {
            Ok(ts) => {
                let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
                output::line(format!("{source}: ok ({})", names.join(", ")))?;
                for t in &ts {
                    for l in super::wiring::mcp_wiring(t) {
                        output::line(format!("  {l}"))?;
                    }
                }
                for t in ts.iter().filter(|_| run) {
                    let p = super::probe::probe(t);
                    for l in &p.lines {
                        output::line(format!("  {l}"))?;
                    }
                    if p.missing {
                        missing.push(format!("{source}: {}", p.lines.join("; ")));
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(exit(BAD_INPUT, errors.join("\n")));
    }
    if !missing.is_empty() {
        return Err(exit(
            crate::exit::ERROR,
            format!("cannot run here:\n{}", missing.join("\n")),
        ));
    }
    Ok(())
}

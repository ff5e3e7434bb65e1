//! `torch demo` with no scenario: a hub and three agents run a small build/test/report DAG of
//! real shell tasks on a fresh embedded store, with live progress.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use torch_api::rest::{AgentList, EventPage, SubmitRequest, SubmitResponse};
use torch_core::TaskState;
use torch_core::spec::{SpecFormat, TaskSpec};
use torch_core::validate::parse_and_validate;

use crate::client::Client;
use crate::cmd::submit::wait_for;
use crate::config::Config;
use crate::exit::{ERROR, exit};
use crate::local::{AgentSpawn, spawn_agent, start_hub, stop_agents, wait_agents};
use crate::output;

/// The pipeline. `$DEMO_DIR` is shared by all tasks; each still runs in its own work dir.
const PIPELINE: &str = r#"
[[task]]
name = "checkout"
priority = 10
skills = ["sh"]
command = ["sh", "-c", "torch progress 30 cloning; sleep 0.3; mkdir -p \"$DEMO_DIR/src\" && echo 'fn main() {}' > \"$DEMO_DIR/src/main.rs\"; torch progress 100 done"]
success = { check = ["sh", "-c", "test -f \"$DEMO_DIR/src/main.rs\""] }

[[task]]
name = "build-core"
priority = 5
skills = ["rust:0.8"]
depends_on = ["checkout"]
command = ["sh", "-c", "for p in 25 50 75; do torch progress $p compiling; sleep 0.2; done; echo core > \"$DEMO_DIR/core.bin\""]

[[task]]
name = "build-cli"
priority = 5
skills = ["rust"]
depends_on = ["checkout"]
command = ["sh", "-c", "sleep 0.4; echo cli > \"$DEMO_DIR/cli.bin\""]

[[task]]
name = "lint"
priority = 1
skills = ["python"]
depends_on = ["checkout"]
command = ["sh", "-c", "sleep 0.2; echo 'lint: 0 warnings'"]
success = { stdout_matches = "0 warnings" }

[[task]]
name = "unit-tests"
priority = 3
skills = ["python:0.7"]
depends_on = ["build-core", "build-cli"]
max_retries = 2
backoff = { initial = "500ms" }
# Flaky: fails on its first attempt, passes on the retry.
command = ["sh", "-c", "if [ ! -f \"$DEMO_DIR/flaky.once\" ]; then touch \"$DEMO_DIR/flaky.once\"; echo 'test_network ... FAILED' >&2; exit 1; fi; echo '42 passed'"]
success = { stdout_matches = "\\d+ passed" }

[[task]]
name = "integration"
priority = 3
skills = ["python"]
depends_on = ["build-core"]
command = ["sh", "-c", "torch progress 50 'starting services'; sleep 0.3; echo 'integration: 7 passed'"]
success = { stdout_matches = "passed", exit_codes = [0] }

[[task]]
name = "slow-benchmark"
priority = 0
skills = ["sh"]
depends_on = ["build-core"]
timeout = "1500ms"
max_retries = 0
# Hangs (and forks a child): the timeout kills its whole process group.
command = ["sh", "-c", "sleep 60 & sleep 60"]

[[task]]
name = "publish-benchmark"
skills = ["sh"]
depends_on = ["slow-benchmark"]
command = ["echo", "never runs: its dependency times out"]

[[task]]
name = "report"
priority = 2
skills = ["docs"]
depends_on = ["unit-tests", "integration", "lint"]
command = ["sh", "-c", "ls \"$DEMO_DIR\" > \"$DEMO_DIR/report.txt\"; echo report ready"]
success = { check = ["sh", "-c", "test -s \"$DEMO_DIR/report.txt\""] }
"#;

pub(super) async fn run(keep: bool) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("torch-demo-")
        .tempdir()
        .context("creating the demo data dir")?;
    let data_dir = dir.path().to_path_buf();
    let demo_dir = data_dir.join("artifacts");
    std::fs::create_dir_all(&demo_dir)?;
    let cfg = Config::default();
    let mut hub_cfg = cfg.hub.clone();
    hub_cfg.lease = Duration::from_secs(5);
    hub_cfg.heartbeat = Duration::from_secs(1);
    let hub = start_hub(&cfg, hub_cfg, "127.0.0.1:0", &data_dir, &["admin", "agent"]).await?;
    let admin = hub.token("admin").unwrap_or_default().to_string();
    let agent_token = hub.token("agent").unwrap_or_default().to_string();
    output::line(format!(
        "▶ hub {} on a fresh embedded store in {}",
        hub.url,
        data_dir.display()
    ))?;
    let agents = [
        ("builder", "sh,rust:0.9", 2),
        ("tester", "sh,python:0.8", 2),
        ("writer", "sh,docs,python:0.5", 1),
    ];
    let mut children = Vec::new();
    for (name, skills, slots) in agents {
        children.push(spawn_agent(AgentSpawn {
            hub: &hub.url,
            token: &agent_token,
            name: name.into(),
            skills,
            slots,
            work_dir: data_dir.join("work").join(name),
            log_file: Some(data_dir.join(format!("{name}.log"))),
            config: None,
            // The pipeline's tasks share `$DEMO_DIR`, outside their work dirs.
            extra: vec!["--sandbox-write".into(), demo_dir.display().to_string()],
        })?);
        output::line(format!(
            "▶ agent {name:<8} skills {skills:<18} slots {slots}"
        ))?;
    }
    let client = Client::new(&hub.url, Some(admin))?;
    wait_agents(
        &client,
        agents.len(),
        Duration::from_secs(20),
        " (see agent logs in the data dir)",
    )
    .await?;
    let mut specs: Vec<TaskSpec> = parse_and_validate("demo pipeline", PIPELINE, SpecFormat::Toml)
        .map_err(|e| exit(ERROR, format!("demo pipeline invalid: {e}")))?
        .into_iter()
        .map(|v| v.spec)
        .collect();
    for s in &mut specs {
        s.env
            .insert("DEMO_DIR".into(), demo_dir.display().to_string());
    }
    let after = client
        .get::<EventPage>("/api/v1/events?tail=true")
        .await?
        .last_id;
    let started = Instant::now();
    let resp: SubmitResponse = client
        .post(
            "/api/v1/tasks",
            &SubmitRequest {
                tasks: specs,
                source: Some("demo pipeline".into()),
            },
        )
        .await?;
    output::line(format!(
        "▶ submitted {} tasks (a DAG with priorities, skills, a flaky test and a hanging benchmark)\n",
        resp.tasks.len()
    ))?;
    let names: Vec<_> = resp.tasks.iter().map(|t| (t.id, t.name.clone())).collect();
    let finals = wait_for(&client, &names, after, false).await?;
    let elapsed = started.elapsed();
    let agent_names: HashMap<_, _> = client
        .get::<AgentList>("/api/v1/agents")
        .await?
        .agents
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let mut t = output::table(&["TASK", "STATE", "ATTEMPTS", "AGENT", "TIME", "WHY"]);
    for v in &finals {
        let agent = v
            .last_agent_id
            .and_then(|a| agent_names.get(&a).cloned())
            .unwrap_or_default();
        let time = v
            .outcome
            .as_ref()
            .map(|o| format!("{} ms", o.evidence.duration_ms))
            .unwrap_or_default();
        let why = v
            .reason
            .clone()
            .or_else(|| v.outcome.as_ref().and_then(|o| o.reason.clone()))
            .unwrap_or_default();
        t.add_row(vec![
            v.name.clone(),
            v.state.to_string(),
            v.attempt.to_string(),
            agent,
            time,
            why,
        ]);
    }
    output::line(format!("\n{t}"))?;
    let state = |n: &str| finals.iter().find(|v| v.name == n).map(|v| v.state);
    let ok = finals
        .iter()
        .filter(|v| !matches!(v.name.as_str(), "slow-benchmark" | "publish-benchmark"))
        .all(|v| v.state == TaskState::Succeeded)
        && state("slow-benchmark") == Some(TaskState::Dead)
        && state("publish-benchmark") == Some(TaskState::Cancelled);
    output::line(format!(
        "\n{} in {:.1}s: every task that could succeed did (the flaky test on its retry); the hanging benchmark timed out and its dependent was cancelled.",
        if ok {
            "✔ demo complete"
        } else {
            "✘ demo ended unexpectedly"
        },
        elapsed.as_secs_f64()
    ))?;
    stop_agents(&mut children, Duration::from_secs(5)).await;
    hub.stop().await?;
    if keep {
        let kept = dir.keep();
        output::line(format!("data dir kept at {}", kept.display()))?;
    }
    if ok {
        Ok(())
    } else {
        Err(exit(ERROR, "the demo pipeline did not end as designed"))
    }
}

//! What every demo scenario stands on: a hub on a fresh embedded store in a
//! temporary dir, agent processes started and stopped by name, and a
//! narrator that stays quiet under `--json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::Child;
use torch_api::rest::{
    AgentList, AgentView, EventPage, EventView, SubmitRequest, SubmitResponse, TaskView,
};
use torch_core::spec::{SpecFormat, TaskSpec};
use torch_core::validate::parse_and_validate;
use torch_core::{EventKind, TaskId};
use torch_hub::HubConfig;

use crate::client::{Client, EventFollower};
use crate::cmd::submit::wait_for;
use crate::config::Config;
use crate::exit::{ERROR, exit};
use crate::local::{AgentSpawn, LocalHub, spawn_agent, start_hub, stop_agents, wait_agents};
use crate::output;

/// Prints the narration, or nothing under `--json`.
pub(super) struct Narrator {
    on: bool,
}

impl Narrator {
    pub(super) fn new(on: bool) -> Narrator {
        Narrator { on }
    }

    /// Prints one line (or a table) when narrating.
    pub(super) fn line(&self, s: impl AsRef<str>) -> Result<()> {
        if self.on {
            output::line(s)?;
        }
        Ok(())
    }
}

/// A hub with agents for one scenario.
pub(super) struct Stage {
    dir: Option<tempfile::TempDir>,
    hub: Option<LocalHub>,
    /// Admin client of the hub.
    pub(super) client: Client,
    /// Where tasks may leave files for the scenario to check.
    pub(super) artifacts: PathBuf,
    agent_token: String,
    agents: Vec<(String, Child)>,
    keep: bool,
}

impl Stage {
    /// Starts a hub on a fresh embedded store; `tweak` adjusts its settings
    /// (templates, spawn limits, lease) before it starts, given the
    /// artifacts dir (which tasks may write: the sandbox allows it).
    pub(super) async fn start(
        prefix: &str,
        keep: bool,
        tweak: impl FnOnce(&mut Config, &mut HubConfig, &Path) -> Result<()>,
    ) -> Result<Stage> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("torch-demo-{prefix}-"))
            .tempdir()
            .context("creating the demo data dir")?;
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir_all(&artifacts)
            .with_context(|| format!("creating {}", artifacts.display()))?;
        let mut cfg = Config::default();
        let mut hub_cfg = cfg.hub.clone();
        hub_cfg.lease = Duration::from_secs(3);
        hub_cfg.heartbeat = Duration::from_millis(500);
        tweak(&mut cfg, &mut hub_cfg, &artifacts)?;
        let hub = start_hub(
            &cfg,
            hub_cfg,
            "127.0.0.1:0",
            dir.path(),
            &["admin", "agent"],
        )
        .await?;
        let admin = hub.token("admin").unwrap_or_default().to_string();
        let agent_token = hub.token("agent").unwrap_or_default().to_string();
        let client = Client::new(&hub.url, Some(admin))?;
        Ok(Stage {
            dir: Some(dir),
            hub: Some(hub),
            client,
            artifacts,
            agent_token,
            agents: Vec::new(),
            keep,
        })
    }

    fn data_dir(&self) -> Result<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .ok_or_else(|| exit(ERROR, "the demo stage is already torn down"))
    }

    fn hub_url(&self) -> Result<String> {
        self.hub
            .as_ref()
            .map(|h| h.url.clone())
            .ok_or_else(|| exit(ERROR, "the demo hub is already stopped"))
    }

    /// Starts an agent process `name` with `skills` (`rust:0.9,sh`) and `slots`.
    pub(super) fn agent(&mut self, name: &str, skills: &str, slots: u32) -> Result<()> {
        let data = self.data_dir()?;
        let url = self.hub_url()?;
        let child = spawn_agent(AgentSpawn {
            hub: &url,
            token: &self.agent_token,
            name: name.into(),
            skills,
            slots,
            work_dir: data.join("work").join(name),
            log_file: Some(data.join(format!("{name}.log"))),
            config: None,
            // Tasks leave their proof in the artifacts dir, outside their
            // work dirs: the sandbox allows writing there and nowhere else.
            extra: vec![
                "--sandbox-write".into(),
                self.artifacts.display().to_string(),
            ],
        })?;
        self.agents.push((name.to_string(), child));
        Ok(())
    }

    /// Waits until `n` agents are connected.
    pub(super) async fn wait_agents(&self, n: usize) -> Result<()> {
        wait_agents(
            &self.client,
            n,
            Duration::from_secs(20),
            " (see the agent logs in the demo's data dir; --keep keeps it)",
        )
        .await
    }

    /// `kill -9` of the agent process `name`; returns its pid.
    pub(super) fn kill9(&mut self, name: &str) -> Result<u32> {
        let (_, child) = self
            .agents
            .iter_mut()
            .find(|(n, _)| n == name)
            .ok_or_else(|| exit(ERROR, format!("no demo agent named {name}")))?;
        let pid = child
            .id()
            .ok_or_else(|| exit(ERROR, format!("agent {name} already exited")))?;
        child
            .start_kill()
            .with_context(|| format!("kill -9 of agent {name}"))?;
        Ok(pid)
    }

    /// The last event id, to follow events from now on.
    pub(super) async fn tail(&self) -> Result<u64> {
        Ok(self
            .client
            .get::<EventPage>("/api/v1/events?tail=true")
            .await?
            .last_id)
    }

    /// Validates `toml` (a `[[task]]` document) and submits it; `$DEMO_DIR`
    /// is set in every task's environment.
    pub(super) async fn submit(&self, what: &str, toml: &str) -> Result<SubmitResponse> {
        let mut specs: Vec<TaskSpec> = parse_and_validate(what, toml, SpecFormat::Toml)
            .map_err(|e| exit(ERROR, format!("{what} invalid: {e}")))?
            .into_iter()
            .map(|v| v.spec)
            .collect();
        for s in &mut specs {
            s.env
                .insert("DEMO_DIR".into(), self.artifacts.display().to_string());
        }
        self.client
            .post(
                "/api/v1/tasks",
                &SubmitRequest {
                    tasks: specs,
                    source: Some(what.into()),
                },
            )
            .await
    }

    /// Follows the tasks from event `after` until each has ended.
    pub(super) async fn wait(
        &self,
        resp: &SubmitResponse,
        after: u64,
        limit: Duration,
    ) -> Result<Vec<TaskView>> {
        let names: Vec<(TaskId, String)> =
            resp.tasks.iter().map(|t| (t.id, t.name.clone())).collect();
        tokio::time::timeout(limit, wait_for(&self.client, &names, after, true))
            .await
            .map_err(|_| {
                exit(
                    ERROR,
                    format!("the tasks did not end within {}s", limit.as_secs()),
                )
            })?
    }

    /// Every event of `kinds` after event `after`, up to now.
    pub(super) async fn events(&self, after: u64, kinds: &[EventKind]) -> Result<Vec<EventView>> {
        let mut follower = EventFollower::of_kinds(after, kinds, 0, 3);
        let mut all = Vec::new();
        loop {
            let page = follower.next(&self.client).await?;
            if page.events.is_empty() {
                break;
            }
            all.extend(
                page.events
                    .into_iter()
                    .filter(|e| e.kind.parse().is_ok_and(|k| kinds.contains(&k))),
            );
        }
        Ok(all)
    }

    /// The hub's autonomy metrics (`/api/v1/stats` → `autonomy`).
    pub(super) async fn autonomy(&self) -> Result<serde_json::Value> {
        let stats: serde_json::Value = self.client.get("/api/v1/stats").await?;
        Ok(stats["autonomy"].clone())
    }

    /// The hub's agents.
    pub(super) async fn agents(&self) -> Result<Vec<AgentView>> {
        Ok(self.client.get::<AgentList>("/api/v1/agents").await?.agents)
    }

    /// Agent names by id.
    pub(super) async fn agent_names(&self) -> Result<HashMap<torch_core::AgentId, String>> {
        Ok(self
            .agents()
            .await?
            .into_iter()
            .map(|a| (a.id, a.name))
            .collect())
    }

    /// Stops the agents and the hub; keeps the data dir when asked.
    pub(super) async fn stop(mut self, say: &Narrator) -> Result<()> {
        let mut children: Vec<Child> = self.agents.drain(..).map(|(_, c)| c).collect();
        stop_agents(&mut children, Duration::from_secs(5)).await;
        if let Some(hub) = self.hub.take() {
            hub.stop().await?;
        }
        if let Some(dir) = self.dir.take()
            && self.keep
        {
            say.line(format!("  data dir kept at {}", dir.keep().display()))?;
        }
        Ok(())
    }
}

impl Drop for Stage {
    /// A scenario that failed half-way still stops its hub (and with it the
    /// built-in node's agents); agent processes are killed on drop.
    fn drop(&mut self) {
        if let Some(hub) = &self.hub {
            hub.shutdown.cancel();
        }
    }
}

//! The task tools: `get_task`, `report_progress`, `delegate_task`,
//! `spawn_helper`, `wait_task`.

use std::time::{Duration, Instant};

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{ProgressNotificationParam, RequestMetaObject};
use rmcp::{Peer, RoleServer, schemars, tool, tool_router};
use serde::{Deserialize, Serialize};
use torch_api::rest::{
    ProgressRequest, SpawnRequest, SpawnResponse, SubmitRequest, SubmitResponse, TaskView,
};
use torch_core::spec::TaskSpec;

use super::{PROGRESS_EVERY, TorchMcp, WAIT_MAX_SECONDS, tool_error};

/// `get_task` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct GetTaskInput {
    /// The task to read; this task when omitted.
    #[serde(default)]
    task_id: Option<String>,
}

/// A task as the tools report it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct TaskSummary {
    /// Its id.
    id: String,
    /// Its name.
    name: String,
    /// `blocked`, `queued`, `assigned`, `running`, `succeeded`, `dead` or `cancelled`.
    state: String,
    /// Attempt number (1 for the first).
    attempt: u32,
    /// Last progress, percent.
    progress_percent: Option<f64>,
    /// Last progress message.
    progress_message: Option<String>,
    /// Why it ended this way, when it did.
    reason: Option<String>,
    /// Exit code of its last finished attempt.
    exit_code: Option<i32>,
}

impl From<TaskView> for TaskSummary {
    fn from(t: TaskView) -> Self {
        TaskSummary {
            id: t.id.to_string(),
            name: t.name,
            state: t.state.to_string(),
            attempt: t.attempt,
            progress_percent: t.progress.as_ref().map(|p| p.percent),
            progress_message: t.progress.and_then(|p| p.message),
            reason: t
                .reason
                .or_else(|| t.outcome.as_ref().and_then(|o| o.reason.clone())),
            exit_code: t.outcome.and_then(|o| o.evidence.exit_code),
        }
    }
}

/// `report_progress` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ProgressInput {
    /// Percent done, 0 to 100.
    percent: f64,
    /// What is happening now.
    #[serde(default)]
    message: Option<String>,
}

/// `report_progress` output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct ProgressOutput {
    /// The hub recorded it.
    recorded: bool,
    /// The percent recorded.
    percent: f64,
}

/// One subtask for `delegate_task`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SubtaskInput {
    /// Its name.
    name: String,
    /// A prompt for the agent that takes it (run by its template's executor).
    #[serde(default)]
    prompt: Option<String>,
    /// Or a command to run, as argv (`["sh", "-c", "…"]`).
    #[serde(default)]
    command: Option<Vec<String>>,
    /// Skills it requires (`rust`, `python:0.7`).
    #[serde(default)]
    skills: Vec<String>,
    /// Priority (higher first).
    #[serde(default)]
    priority: i32,
}

/// `delegate_task` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct DelegateInput {
    /// The subtasks; they become this task's children.
    tasks: Vec<SubtaskInput>,
    /// Inside a team's task: route the subtasks to the team's member in
    /// this role (they count in the team's progress).
    #[serde(default)]
    team_role: Option<String>,
}

/// `delegate_task` output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct DelegateOutput {
    /// The new tasks' ids, in order.
    task_ids: Vec<String>,
}

/// `spawn_helper` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SpawnInput {
    /// The template to start the helper from.
    template: String,
    /// Memory keys the helper copies from this agent (a glob such as `repo.*`).
    #[serde(default)]
    inherit: Option<String>,
}

/// `spawn_helper` output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct SpawnOutput {
    /// The helper's agent id.
    agent_id: String,
    /// Its name.
    name: String,
    /// Its spawn depth.
    depth: u32,
    /// Memory keys it inherited.
    inherited: Vec<String>,
    /// The label that pins a task to it: `agent.torch.id = <agent_id>`.
    pin_label: String,
}

/// `wait_task` input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct WaitInput {
    /// The tasks to wait for.
    task_ids: Vec<String>,
    /// Give up after this many seconds (default 600, at most 3600).
    #[serde(default)]
    timeout_seconds: Option<u64>,
}

/// `wait_task` output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct WaitOutput {
    /// Every task has ended.
    done: bool,
    /// Every task succeeded.
    all_succeeded: bool,
    /// The tasks as they are now.
    tasks: Vec<TaskSummary>,
}

#[tool_router(router = tasks_router, vis = "pub(super)")]
impl TorchMcp {
    async fn task(&self, id: &str) -> Result<TaskSummary, String> {
        let v: TaskView = self
            .client
            .get(&format!("/api/v1/tasks/{id}"))
            .await
            .map_err(tool_error)?;
        Ok(v.into())
    }

    /// Reads a task: this one by default.
    #[tool(
        description = "Read a task's state, attempt, progress and outcome (this task when task_id is omitted)."
    )]
    async fn get_task(
        &self,
        Parameters(input): Parameters<GetTaskInput>,
    ) -> Result<Json<TaskSummary>, String> {
        let id = input.task_id.unwrap_or_else(|| self.task_id.clone());
        Ok(Json(self.task(&id).await?))
    }

    /// Reports this task's progress.
    #[tool(
        description = "Report this task's progress (percent 0-100 and a message); it shows in `torch tasks show` and counts as activity."
    )]
    async fn report_progress(
        &self,
        Parameters(input): Parameters<ProgressInput>,
    ) -> Result<Json<ProgressOutput>, String> {
        if !(0.0..=100.0).contains(&input.percent) {
            return Err(format!(
                "percent {} must be between 0 and 100",
                input.percent
            ));
        }
        let _: serde_json::Value = self
            .client
            .post(
                &format!("/api/v1/tasks/{}/progress", self.task_id),
                &ProgressRequest {
                    percent: input.percent,
                    message: input.message,
                },
            )
            .await
            .map_err(tool_error)?;
        Ok(Json(ProgressOutput {
            recorded: true,
            percent: input.percent,
        }))
    }

    /// Submits subtasks as this task's children.
    #[tool(
        description = "Delegate subtasks: submit them as children of this task (cancelled if this task ends first). Each needs a prompt or a command. In a team's task, team_role routes them to the member in that role."
    )]
    async fn delegate_task(
        &self,
        Parameters(input): Parameters<DelegateInput>,
    ) -> Result<Json<DelegateOutput>, String> {
        if input.tasks.is_empty() {
            return Err("tasks is empty".to_string());
        }
        let mut specs = Vec::with_capacity(input.tasks.len());
        for (i, t) in input.tasks.into_iter().enumerate() {
            if t.prompt.is_none() && t.command.is_none() {
                return Err(format!(
                    "tasks[{i}] ({}) needs a prompt or a command",
                    t.name
                ));
            }
            let mut skills = Vec::with_capacity(t.skills.len());
            for s in &t.skills {
                skills.push(
                    s.parse()
                        .map_err(|e| format!("tasks[{i}].skills: {s:?}: {e}"))?,
                );
            }
            specs.push(TaskSpec {
                name: Some(t.name),
                prompt: t.prompt,
                command: t.command,
                skills,
                priority: t.priority,
                ..TaskSpec::default()
            });
        }
        if let Some(role) = &input.team_role {
            crate::cmd::lifecycle::route_to_role(&self.client, &self.task_id, role, &mut specs)
                .await
                .map_err(tool_error)?;
        }
        let resp: SubmitResponse = self
            .client
            .post(
                "/api/v1/tasks",
                &SubmitRequest {
                    tasks: specs,
                    source: Some("torch mcp delegate_task".into()),
                },
            )
            .await
            .map_err(tool_error)?;
        Ok(Json(DelegateOutput {
            task_ids: resp.tasks.iter().map(|t| t.id.to_string()).collect(),
        }))
    }

    /// Starts a helper agent from a template.
    #[tool(
        description = "Spawn a helper agent from a template (within the spawn limits); pin tasks to it with the returned label."
    )]
    async fn spawn_helper(
        &self,
        Parameters(input): Parameters<SpawnInput>,
    ) -> Result<Json<SpawnOutput>, String> {
        let resp: SpawnResponse = self
            .client
            .post(
                "/api/v1/agents/spawn",
                &SpawnRequest {
                    template: input.template,
                    inherit: input.inherit,
                    outlive_parent: None,
                },
            )
            .await
            .map_err(tool_error)?;
        Ok(Json(SpawnOutput {
            agent_id: resp.agent_id.to_string(),
            name: resp.name,
            depth: resp.depth,
            inherited: resp.inherited,
            pin_label: format!("agent.torch.id={}", resp.agent_id),
        }))
    }

    /// Waits until tasks end, with progress notifications.
    #[tool(
        description = "Wait until the given tasks end (or the timeout passes), sending progress notifications every few seconds so the client's idle watchdog never fires."
    )]
    async fn wait_task(
        &self,
        Parameters(input): Parameters<WaitInput>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<Json<WaitOutput>, String> {
        if input.task_ids.is_empty() {
            return Err("task_ids is empty".to_string());
        }
        let limit = Duration::from_secs(input.timeout_seconds.unwrap_or(600).min(WAIT_MAX_SECONDS));
        let started = Instant::now();
        let mut last_note = Instant::now();
        let token = meta.get_progress_token();
        loop {
            let mut tasks = Vec::with_capacity(input.task_ids.len());
            for id in &input.task_ids {
                tasks.push(self.task(id).await?);
            }
            let ended = tasks
                .iter()
                .filter(|t| matches!(t.state.as_str(), "succeeded" | "dead" | "cancelled"))
                .count();
            if ended == tasks.len() || started.elapsed() >= limit {
                return Ok(Json(WaitOutput {
                    done: ended == tasks.len(),
                    all_succeeded: tasks.iter().all(|t| t.state == "succeeded"),
                    tasks,
                }));
            }
            if let Some(tok) = &token
                && last_note.elapsed() >= PROGRESS_EVERY
            {
                last_note = Instant::now();
                let _ = peer
                    .notify_progress(
                        ProgressNotificationParam::new(tok.clone(), ended as f64)
                            .with_total(tasks.len() as f64)
                            .with_message(format!("{ended} of {} task(s) ended", tasks.len())),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
